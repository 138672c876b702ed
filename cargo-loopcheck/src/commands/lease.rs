//! `cargo loopcheck lease`: run a command that is not Rust test code (a shell script, a
//! docker-compose file, a setup script) with leased ports in its environment.
//!
//! The command inherits the leases' lock files, so the leases live exactly as long as it
//! does: when it exits this process gives them back, and when this process is killed with
//! `SIGKILL` the command still holds them until it exits. Either way the kernel releases the
//! locks; no daemon and no clean-up are involved.

use std::ffi::OsString;
use std::io::Write;
use std::process::ExitStatus;

use loopcheck::PortLease;
use loopcheck::lease::LeaseStatus;
use serde::Serialize;

use crate::cli::{Common, LeaseArgs};
use crate::error::{Error, Result};
use crate::term::{Format, Term};

/// The first port.
pub const PORT_VAR: &str = "LOOPCHECK_PORT";
/// Every port, comma-separated.
pub const PORTS_VAR: &str = "LOOPCHECK_PORTS";

/// What `--format json` prints on stdout before the command starts.
#[derive(Serialize)]
struct Leased<'a> {
    format_version: u32,
    /// The command, as shown to people and recorded as the leases' test.
    command: &'a str,
    /// The pid that holds the leases (this process; the command inherits them).
    pid: u32,
    ports: &'a [u16],
    contiguous: bool,
}

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
    let leases = lease(args, &command)?;
    let ports: Vec<u16> = leases.iter().map(PortLease::port).collect();

    match format {
        // One line, flushed before the command writes to the same stdout: a script can read it
        // while the command holds the ports.
        Format::Json => {
            let leased = Leased {
                format_version: crate::report::json::FORMAT_VERSION,
                command: &command,
                pid: std::process::id(),
                ports: &ports,
                contiguous: args.block.is_some(),
            };
            let line = serde_json::to_string(&leased)
                .map_err(std::io::Error::other)
                .map_err(Error::Output)?;
            let mut out = std::io::stdout().lock();
            writeln!(out, "{line}")
                .and_then(|()| out.flush())
                .map_err(Error::Output)?;
        }
        _ => term.success("Leased", &format!("{} for `{command}`", list(&ports))),
    }

    let mut child = std::process::Command::new(program);
    child.args(program_args).env(PORT_VAR, ports[0].to_string()).env(
        PORTS_VAR,
        ports.iter().map(u16::to_string).collect::<Vec<_>>().join(","),
    );
    for (i, port) in ports.iter().enumerate() {
        child.env(format!("{PORT_VAR}_{i}"), port.to_string());
    }
    #[cfg(unix)]
    inherit(&leases, program)?;

    signals::install();
    let mut child = child.spawn().map_err(|source| Error::Spawn {
        program: program.to_string_lossy().into_owned(),
        source,
    })?;
    signals::started(child.id());
    signals::exited(child.id());
    let status = child.wait().map_err(|source| Error::Spawn {
        program: program.to_string_lossy().into_owned(),
        source,
    })?;
    drop(leases);
    Ok(exit_code(status))
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

/// `20000-20003` for a contiguous run, else `20000, 20007`.
fn list(ports: &[u16]) -> String {
    let contiguous = ports.windows(2).all(|w| w[1] == w[0].wrapping_add(1));
    match ports {
        [one] => one.to_string(),
        [first, .., last] if contiguous => format!("{first}-{last}"),
        _ => ports.iter().map(u16::to_string).collect::<Vec<_>>().join(", "),
    }
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
    status.code().map_or(1, |code| code as u8)
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

/// SIGTERM, SIGINT and SIGHUP sent to this process are passed on to the command, and this
/// process waits for the command to end. A signal the terminal sent (Ctrl-C, a hangup) reached
/// the command already, through its process group, and is not sent twice.
#[cfg(unix)]
mod signals {
    use std::sync::atomic::{AtomicI32, Ordering};

    static CHILD: AtomicI32 = AtomicI32::new(0);
    static PENDING: AtomicI32 = AtomicI32::new(0);
    const DONE: i32 = -1;

    extern "C" fn forward(signal: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
        // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler.
        let sent_by_a_process = info.is_null() || unsafe { (*info).si_code } <= 0;
        if !sent_by_a_process {
            return;
        }
        match CHILD.load(Ordering::SeqCst) {
            0 => PENDING.store(signal, Ordering::SeqCst),
            // The command has exited: its pid may soon name another process.
            DONE => {}
            // SAFETY: kill is async-signal-safe; the pid is our own child, not yet waited for.
            child => unsafe {
                libc::kill(child, signal);
            },
        }
    }

    pub(super) fn install() {
        for signal in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            // SAFETY: a zeroed sigaction with a handler that only touches atomics and calls kill.
            unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = forward as *const () as usize;
                action.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
                libc::sigemptyset(&mut action.sa_mask);
                libc::sigaction(signal, &action, std::ptr::null_mut());
            }
        }
    }

    pub(super) fn started(pid: u32) {
        let pid = libc::pid_t::try_from(pid).unwrap_or(0);
        CHILD.store(pid, Ordering::SeqCst);
        let pending = PENDING.swap(0, Ordering::SeqCst);
        if pending != 0 && pid > 0 {
            // SAFETY: a signal to our own child, which has not been waited for.
            unsafe {
                libc::kill(pid, pending);
            }
        }
    }

    /// Waits until the command has exited, without reaping it, and stops forwarding: while it
    /// is not reaped its pid cannot be reused, so no signal can reach another process.
    pub(super) fn exited(pid: u32) {
        let pid: libc::id_t = pid;
        loop {
            // SAFETY: a zeroed siginfo for waitid to fill; WNOWAIT leaves the child to wait().
            let rc = unsafe {
                let mut info: libc::siginfo_t = std::mem::zeroed();
                libc::waitid(libc::P_PID, pid, &mut info, libc::WEXITED | libc::WNOWAIT)
            };
            if rc == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                break;
            }
        }
        CHILD.store(DONE, Ordering::SeqCst);
    }
}

/// Elsewhere a console's Ctrl-C reaches every process attached to it, the command included.
#[cfg(not(unix))]
mod signals {
    pub(super) fn install() {}
    pub(super) fn started(_pid: u32) {}
    pub(super) fn exited(_pid: u32) {}
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
    fn port_lists_name_runs() {
        assert_eq!(list(&[20000]), "20000");
        assert_eq!(list(&[20000, 20001, 20002]), "20000-20002");
        assert_eq!(list(&[20000, 20005]), "20000, 20005");
    }
}
