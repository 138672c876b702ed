//! `cargo loopcheck lease`: run a command that is not Rust test code (a shell script, a
//! docker-compose file, a setup script) with leased ports in its environment.
//!
//! The command inherits the leases' lock files, and the records name it as their holder, so
//! the leases live as long as it runs, and as long as any process it started still holds the
//! descriptors (a server it put in the background): when it exits this process closes its own
//! copies, and when this process is killed with `SIGKILL` the command still holds them. The
//! kernel releases a lock when the last descriptor goes; no daemon and no clean-up are involved.

use std::ffi::OsString;
use std::process::ExitStatus;

use loopcheck::PortLease;
use loopcheck::lease::LeaseStatus;

use crate::cli::{Common, LeaseArgs};
use crate::error::{Error, Result};
use crate::report::lease::{Leased, list};
use crate::runner::signals;
use crate::term::{Format, Term};

/// The first port.
pub const PORT_VAR: &str = "LOOPCHECK_PORT";
/// Every port, comma-separated.
pub const PORTS_VAR: &str = "LOOPCHECK_PORTS";

/// Runs `lease`: leases the ports, runs the command with them, and returns its exit status.
pub fn run(common: &Common, args: &LeaseArgs, term: &Term) -> Result<u8> {
    let format = common
        .format
        .expect_one_of("lease", &[Format::Human, Format::Json])?;
    let Some((program, program_args)) = args.command.split_first() else {
        return Err(Error::Usage(
            "`cargo loopcheck lease` needs a command after `--`: `cargo loopcheck lease -- CMD [ARGS]`"
                .into(),
        ));
    };
    let command = shown(&args.command);
    loopcheck::lease::set_holder_name(command.clone());
    #[cfg_attr(not(unix), allow(unused_mut))]
    let mut leases = lease(args, &command)?;
    let ports: Vec<u16> = leases.iter().map(PortLease::port).collect();

    Leased::new(&command, &ports, args.block.is_some()).emit(format, term)?;

    let mut child = std::process::Command::new(program);
    // A lease inside a lease (a script run by `cargo loopcheck lease` that runs it again): the
    // outer command's variables go, so that no `LOOPCHECK_PORT_N` of the outer leases looks
    // like one of ours.
    for (key, _) in std::env::vars_os() {
        if is_port_var(&key.to_string_lossy()) {
            child.env_remove(key);
        }
    }
    child.args(program_args).env(PORT_VAR, ports[0].to_string()).env(
        PORTS_VAR,
        ports.iter().map(u16::to_string).collect::<Vec<_>>().join(","),
    );
    for (i, port) in ports.iter().enumerate() {
        child.env(format!("{PORT_VAR}_{i}"), port.to_string());
    }
    #[cfg(unix)]
    inherit(&leases, program)?;

    signals::install(signals::PASSED_ON);
    let mut child = child.spawn().map_err(|source| Error::Spawn {
        program: program.to_string_lossy().into_owned(),
        source,
    })?;
    let pid = child.id();
    // CMD holds the locks from now on, with whatever it starts that keeps the descriptors:
    // the records name it, which outlives this process if this one is killed, and this
    // process, at its end, closes its copies without unlocking what they still hold.
    #[cfg(unix)]
    for lease in &mut leases {
        lease.hand_over(pid);
    }
    // A signal is passed on only while CMD is not reaped: it is reaped after the loop.
    let mut exit = signals::Exit::watch(pid);
    let mut stopper = signals::Stopper::new(signals::Reach::Child);
    while !exit.wait(signals::POLL) {
        stopper.check(pid);
    }
    let status = child.wait().map_err(|source| Error::Spawn {
        program: program.to_string_lossy().into_owned(),
        source,
    })?;
    drop(leases);
    Ok(exit_code(status))
}

/// Whether `name` is one of the variables `lease` sets: `LOOPCHECK_PORT`, `LOOPCHECK_PORTS`,
/// `LOOPCHECK_PORT_N` (and not `LOOPCHECK_PORT_RANGE`, the user's setting).
fn is_port_var(name: &str) -> bool {
    name == PORT_VAR
        || name == PORTS_VAR
        || name
            .strip_prefix(PORT_VAR)
            .and_then(|rest| rest.strip_prefix('_'))
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

fn lease(args: &LeaseArgs, command: &str) -> Result<Vec<PortLease>> {
    let (leased, what) = match args.block {
        Some(n) => (
            loopcheck::reserve_port_block(n.into()).map(loopcheck::PortBlock::into_leases),
            format!("a block of {n} contiguous ports"),
        ),
        None => {
            let n = args.count.unwrap_or(1);
            let what = if n == 1 {
                "a port".to_owned()
            } else {
                format!("{n} ports")
            };
            (loopcheck::reserve_ports(n.into()), what)
        }
    };
    leased.map_err(|source| match source {
        loopcheck::Error::Exhausted { .. } | loopcheck::Error::NoBlock { .. } => Error::NoPorts {
            what,
            command: command.to_owned(),
            holders: holders(),
            source: Box::new(source),
        },
        other => Error::Loopcheck(other),
    })
}

/// `; held in RANGE: ports A-B by pid P (`test`), ...`: who holds the allocation range's
/// leases, the biggest holders first.
fn holders() -> String {
    let Ok(policy) = loopcheck::policy::PortPolicy::current() else {
        return String::new();
    };
    let Ok(leases) = loopcheck::lease::leases() else {
        return String::new();
    };
    let mut groups: Vec<(u32, Option<String>, Vec<u16>)> = Vec::new();
    for lease in leases {
        if lease.status != LeaseStatus::Held || !policy.is_allocatable(lease.port) {
            continue;
        }
        let (pid, test) = lease.record.map_or((0, None), |r| (r.pid, r.test));
        match groups.iter_mut().find(|g| g.0 == pid && g.1 == test) {
            Some(group) => group.2.push(lease.port),
            None => groups.push((pid, test, vec![lease.port])),
        }
    }
    if groups.is_empty() {
        return String::new();
    }
    groups.sort_by_key(|g| std::cmp::Reverse(g.2.len()));
    let shown: Vec<String> = groups
        .iter()
        .take(5)
        .map(|(pid, test, ports)| {
            let who = if *pid == 0 {
                "an unknown holder".to_owned()
            } else {
                format!("pid {pid}")
            };
            let test = test.as_deref().map(|t| format!(" (`{t}`)")).unwrap_or_default();
            let noun = if ports.len() == 1 { "port" } else { "ports" };
            format!("{noun} {} by {who}{test}", list(ports))
        })
        .collect();
    let more = match groups.len().saturating_sub(5) {
        0 => String::new(),
        n => format!(", and {n} more holders"),
    };
    format!(
        "; held in {}: {}{more}",
        policy.allocation_display(),
        shown.join(", ")
    )
}

/// The command line as a user would type it: arguments with spaces or quotes are quoted.
fn shown(command: &[OsString]) -> String {
    let words: Vec<String> = command
        .iter()
        .map(|word| {
            let word = word.to_string_lossy();
            let plain = !word.is_empty()
                && word
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
            if plain {
                word.into_owned()
            } else {
                format!("'{}'", word.replace('\'', r"'\''"))
            }
        })
        .collect();
    words.join(" ")
}

/// The command's exit status as ours: its code, or 128+N when signal N ended it (the shell's
/// convention, which survives being passed on by `cargo`).
fn exit_code(status: ExitStatus) -> u8 {
    #[cfg(unix)]
    if let Some(signal) = std::os::unix::process::ExitStatusExt::signal(&status) {
        return 128u8.saturating_add(u8::try_from(signal).unwrap_or(127));
    }
    // Windows exit codes are 32 bits: one that does not fit is a failure, never a wrapped 0.
    status.code().map_or(1, |code| u8::try_from(code).unwrap_or(1))
}

/// Lets the command inherit the leases' lock files: it holds the leases even if this process
/// is killed, and they end when both have exited. `FD_CLOEXEC` is cleared here rather than in
/// a `pre_exec` hook, which would keep std from spawning with `posix_spawn` (a `fork` of this
/// process costs more than everything else `lease` does); no other thread spawns meanwhile.
#[cfg(unix)]
fn inherit(leases: &[PortLease], program: &std::ffi::OsStr) -> Result<()> {
    use std::os::fd::{AsFd, AsRawFd};

    for lease in leases {
        let fd = lease.as_fd().as_raw_fd();
        // SAFETY: fcntl on a descriptor this process owns and keeps open; only its flags change.
        if unsafe { libc::fcntl(fd, libc::F_SETFD, 0) } == -1 {
            return Err(Error::Spawn {
                program: program.to_string_lossy().into_owned(),
                source: std::io::Error::last_os_error(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_shown_as_typed() {
        let words = |w: &[&str]| w.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(shown(&words(&["sleep", "1"])), "sleep 1");
        assert_eq!(
            shown(&words(&["sh", "-c", "echo $X; it's"])),
            r"sh -c 'echo $X; it'\''s'"
        );
        assert_eq!(shown(&words(&["a", ""])), "a ''");
    }

    #[test]
    fn only_the_variables_lease_sets_are_replaced() {
        for name in [
            "LOOPCHECK_PORT",
            "LOOPCHECK_PORTS",
            "LOOPCHECK_PORT_0",
            "LOOPCHECK_PORT_12",
        ] {
            assert!(is_port_var(name), "{name}");
        }
        for name in [
            "LOOPCHECK_PORT_RANGE",
            "LOOPCHECK_PORT_",
            "LOOPCHECK_PORTX",
            "LOOPCHECK_DIR",
        ] {
            assert!(!is_port_var(name), "{name}");
        }
    }
}
