//! The hidden `cargo loopcheck __isolate` subcommand: the target runner that cargo and
//! nextest start each test binary through under `cargo loopcheck test --isolate`.
//!
//! It enters a network namespace of its own, brings `lo` up, starts the `--isolate-allow`
//! forwarders, runs the test (through the user's own runner, if one was configured), passes
//! signals on, then ends and records what the test left, diagnoses a socket failure inside
//! the namespace, and exits as the test did. Listing tests (`--list`), excluded tests and
//! binaries run as they would without it.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use loopcheck::report::Diagnosis;

use super::cleanup;
use super::forward::{self, Dialer};
use super::namespace::{self, Entered, Unavailable};
use super::record;
use super::settings::{CONFIG_VAR, Config};
use crate::Exit;
use loopcheck::run::RunRecord as Record;

/// How much of a test's output is kept for its diagnosis: the end, where the panic is.
const KEPT_OUTPUT: usize = 256 * 1024;

/// How long copying the test's output may take once everything it started has been ended.
const DRAIN_LIMIT: Duration = Duration::from_secs(2);

/// Enters a namespace and brings `lo` up: all isolation needs of the host.
pub(super) fn enter_isolated() -> Result<Entered, Unavailable> {
    let entered = namespace::enter()?;
    super::loopback::up().map_err(|err| {
        Unavailable::new(
            format!("a network namespace was created but its loopback cannot be brought up ({err})"),
            "run the tests where network namespaces are fully available (as root, or with unprivileged user namespaces), or without --isolate",
        )
    })?;
    Ok(entered)
}

/// `__isolate --check`: whether isolation works here, as JSON on stdout (an [`Unavailable`]
/// when not) and exit code 0 or 3.
pub(super) fn check() -> u8 {
    match enter_isolated() {
        Ok(entered) => {
            println!("{}", serde_json::json!({ "available": entered.to_string() }));
            Exit::OK
        }
        Err(unavailable) => {
            println!(
                "{}",
                serde_json::json!({ "why": unavailable.why, "fix": unavailable.fix })
            );
            Exit::COULD_NOT_RUN
        }
    }
}

/// `__isolate PROGRAM ARGS..`: runs one test binary isolated.
pub(super) fn run(command: &[OsString]) -> u8 {
    let Some((program, args)) = command.split_first() else {
        eprintln!("error: cargo-loopcheck __isolate: no test binary to run");
        return Exit::USAGE;
    };
    let config = Config::from_env();
    let exe = PathBuf::from(program);
    let mut full: Vec<OsString> = config.runner.iter().map(OsString::from).collect();
    full.extend(command.iter().cloned());

    let nextest_test = std::env::var("NEXTEST_TEST_NAME").ok().filter(|n| !n.is_empty());
    let binary = std::env::var("NEXTEST_BINARY_ID")
        .ok()
        .filter(|b| !b.is_empty())
        .unwrap_or_else(|| crate_of(&exe));
    if args.iter().any(|a| a == "--list") {
        return exec(&full, &config);
    }
    if let Some(pattern) = excluded(&config, &binary, nextest_test.as_deref(), &full) {
        let what = match &nextest_test {
            Some(test) => format!("`{binary} {test}`"),
            None => format!("`{binary}`"),
        };
        eprintln!("loopcheck: {what} runs without isolation: it matches {pattern}");
        return exec(&full, &config);
    }

    // While the process has one thread: the dialer is forked, then the namespace entered.
    let dialer = if config.allow.is_empty() {
        None
    } else {
        match Dialer::start() {
            Ok(dialer) => Some(Arc::new(dialer)),
            Err(err) => {
                eprintln!("loopcheck: cannot start the --isolate-allow forwarder: {err}");
                return Exit::COULD_NOT_RUN;
            }
        }
    };
    let joined = super::pool::join(&config.pool);
    if joined.is_none()
        && let Err(unavailable) = enter_isolated()
    {
        // `cargo loopcheck test` checked beforehand; this is a host that changed meanwhile.
        eprintln!("loopcheck: {unavailable}");
        return Exit::COULD_NOT_RUN;
    }
    if let Err(err) = cleanup::become_subreaper() {
        eprintln!("loopcheck: cannot collect the test's leftovers: {err}");
    }
    if let Some(dialer) = &dialer {
        forward::start(&config.allow, Arc::clone(dialer));
    }
    let spare: Vec<u32> = dialer.iter().map(|d| d.pid).collect();

    let (status, output) = match run_test(&full, &config) {
        Ok(finished) => finished,
        Err(err) => {
            eprintln!("loopcheck: cannot run `{}`: {err}", full[0].to_string_lossy());
            return Exit::COULD_NOT_RUN;
        }
    };

    let who = match &nextest_test {
        Some(name) => format!("test `{name}`"),
        None => format!("a test of `{binary}`"),
    };
    let leaks = cleanup::end_leftovers(&who, &spare);
    let output = output.map(|tee| tee.finish()).unwrap_or_default();
    let records = records(&exe, nextest_test.as_deref(), status, &output, leaks, &config);
    if let Some(dir) = std::env::var_os(loopcheck::lease::RUN_DIR_VAR)
        && let Err(err) = record::write(Path::new(&dir), &records)
    {
        eprintln!("loopcheck: cannot write the isolated test's records: {err}");
    }
    drop(joined);
    exit_like(status)
}

/// Why this test (nextest) or binary (cargo test: one of its tests, as its `--list` shows
/// them with the same filters) stays out of isolation: the `--isolate-exclude` pattern it
/// matches, in words.
fn excluded(config: &Config, binary: &str, nextest_test: Option<&str>, full: &[OsString]) -> Option<String> {
    if config.exclude.is_empty() {
        return None;
    }
    let matched = |test: &str| {
        config
            .excluded(binary, test)
            .map(|p| format!("--isolate-exclude `{p}`"))
    };
    if let Some(test) = nextest_test {
        return matched(test);
    }
    if let Some(pattern) = matched("") {
        return Some(pattern);
    }
    let listed = Command::new(&full[0])
        .args(&full[1..])
        .args(["--list", "--format", "terse"])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    String::from_utf8_lossy(&listed.stdout)
        .lines()
        .filter_map(|line| line.strip_suffix(": test"))
        .find_map(|test| {
            matched(test).map(|why| {
                format!("{why} (its test `{test}`; under cargo test a binary's tests share one process)")
            })
        })
}

/// The crate name of a test binary: `deps/fixed_a-0123abcd` is `fixed_a`.
fn crate_of(exe: &Path) -> String {
    let stem = exe.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
    stem.rsplit_once('-').map_or(&*stem, |(name, _)| name).to_owned()
}

/// The test's environment: this tool's settings gone, the user's runner variable as it was.
fn environment(command: &mut Command, config: &Config) {
    command.env_remove(CONFIG_VAR);
    if let Some(var) = &config.runner_var {
        match &config.runner_var_value {
            Some(value) => command.env(var, value),
            None => command.env_remove(var),
        };
    }
}

/// Replaces this process with the test, unisolated.
fn exec(full: &[OsString], config: &Config) -> u8 {
    let mut command = Command::new(&full[0]);
    command.args(&full[1..]);
    environment(&mut command, config);
    let err = command.exec();
    eprintln!("loopcheck: cannot run `{}`: {err}", full[0].to_string_lossy());
    Exit::COULD_NOT_RUN
}

/// The test process, while it runs: signals this process gets go to it.
static CHILD: AtomicI32 = AtomicI32::new(0);
/// A signal that came before the test started, delivered once it has.
static PENDING: AtomicI32 = AtomicI32::new(0);

/// The signals passed on to the test: those a runner or a user sends to stop it.
const FORWARDED: [libc::c_int; 6] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

extern "C" fn forward_signal(signal: libc::c_int) {
    let child = CHILD.load(Ordering::SeqCst);
    if child > 0 {
        // SAFETY: kill is async-signal-safe.
        unsafe { libc::kill(child, signal) };
    } else {
        PENDING.store(signal, Ordering::SeqCst);
    }
}

fn install_forwarding() {
    for signal in FORWARDED {
        // SAFETY: a zeroed sigaction with a handler that only calls async-signal-safe code.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = forward_signal as extern "C" fn(libc::c_int) as usize;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
    }
}

/// Runs the test to its end. Its output is copied through this process, and the end of it
/// kept for the diagnosis, unless it writes to a terminal (`--no-capture` in a terminal),
/// which it keeps seeing. One thread does it all: it polls the two pipes and a pidfd of the
/// test, which becomes readable when the test exits.
fn run_test(full: &[OsString], config: &Config) -> std::io::Result<(ExitStatus, Option<Tee>)> {
    let mut command = Command::new(&full[0]);
    command.args(&full[1..]);
    environment(&mut command, config);
    // SAFETY: isatty takes a descriptor.
    let tee = unsafe { libc::isatty(1) == 0 && libc::isatty(2) == 0 };
    if tee {
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
    }
    // No `pre_exec`, so that std spawns with posix_spawn (vfork), not a fork of this large
    // process: a tenth of a millisecond per test. The test shares this process's group, which
    // nextest signals as a whole when it ends a test that took too long.
    install_forwarding();
    let mut child = command.spawn()?;
    let pid = child.id() as i32;
    CHILD.store(pid, Ordering::SeqCst);
    let pending = PENDING.swap(0, Ordering::SeqCst);
    if pending != 0 {
        // SAFETY: kill takes plain values; the child is ours and not yet reaped.
        unsafe { libc::kill(pid, pending) };
    }
    let mut output = None;
    if tee {
        let mut copy = Tee::new(child.stdout.take(), child.stderr.take());
        // SAFETY: pidfd_open takes a pid and flags; the child is not reaped yet.
        let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as RawFd;
        if pidfd >= 0 {
            // SAFETY: a fresh descriptor that nothing else owns.
            let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
            copy.pump(Some(pidfd.as_raw_fd()), None);
        }
        output = Some(copy);
    }
    let status = child.wait();
    CHILD.store(0, Ordering::SeqCst);
    Ok((status?, output))
}

/// The copy of a test's stdout and stderr to this process's, which keeps the last
/// [`KEPT_OUTPUT`] bytes of both.
struct Tee {
    /// The pipes still open, and whether each is the test's stdout.
    streams: Vec<(std::fs::File, bool)>,
    kept: Vec<u8>,
}

impl Tee {
    fn new(stdout: Option<std::process::ChildStdout>, stderr: Option<std::process::ChildStderr>) -> Tee {
        let mut streams = Vec::new();
        if let Some(out) = stdout {
            streams.push((std::fs::File::from(OwnedFd::from(out)), true));
        }
        if let Some(err) = stderr {
            streams.push((std::fs::File::from(OwnedFd::from(err)), false));
        }
        Tee {
            streams,
            kept: Vec::new(),
        }
    }

    /// Copies what comes until every pipe is closed, or `until` becomes readable, or
    /// `deadline` passes.
    fn pump(&mut self, until: Option<RawFd>, deadline: Option<std::time::Instant>) {
        let mut buf = [0u8; 16 * 1024];
        // Bounded by the deadline, or by the test's end (`until`), whichever is given.
        loop {
            let mut fds: Vec<libc::pollfd> = self
                .streams
                .iter()
                .map(|(file, _)| libc::pollfd {
                    fd: file.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                })
                .collect();
            if let Some(fd) = until {
                fds.push(libc::pollfd {
                    fd,
                    events: libc::POLLIN,
                    revents: 0,
                });
            }
            if fds.is_empty() {
                return;
            }
            let timeout = deadline.map_or(-1, |d| {
                d.saturating_duration_since(std::time::Instant::now())
                    .as_millis()
                    .min(i32::MAX as u128) as i32
            });
            // SAFETY: polls a live array of pollfds of the given length.
            let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
            if ready < 0 {
                if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return;
            }
            if ready == 0 {
                return;
            }
            let mut closed = Vec::new();
            for (at, (file, is_stdout)) in self.streams.iter_mut().enumerate() {
                if fds[at].revents == 0 {
                    continue;
                }
                match file.read(&mut buf) {
                    Ok(0) | Err(_) => closed.push(at),
                    Ok(n) => {
                        // A closed stdout or stderr must not stop the test: its output is kept.
                        if *is_stdout {
                            let mut out = std::io::stdout().lock();
                            let _ = out.write_all(&buf[..n]).and_then(|()| out.flush());
                        } else {
                            let _ = std::io::stderr().lock().write_all(&buf[..n]);
                        }
                        self.kept.extend_from_slice(&buf[..n]);
                        if self.kept.len() > 2 * KEPT_OUTPUT {
                            let excess = self.kept.len() - KEPT_OUTPUT;
                            self.kept.drain(..excess);
                        }
                    }
                }
            }
            for at in closed.into_iter().rev() {
                self.streams.remove(at);
            }
            if until.is_some() && fds.last().is_some_and(|f| f.revents != 0) {
                return;
            }
        }
    }

    /// Copies the rest (boundedly: the leftovers that held the pipes are gone by now) and
    /// returns what was kept.
    fn finish(mut self) -> String {
        self.pump(None, Some(std::time::Instant::now() + DRAIN_LIMIT));
        String::from_utf8_lossy(&self.kept).into_owned()
    }
}

/// The records of this run of the binary: one per failed test with a socket diagnosis, and
/// the leftovers, under the test they came from where known.
fn records(
    exe: &Path,
    nextest_test: Option<&str>,
    status: ExitStatus,
    output: &str,
    leaks: Vec<Diagnosis>,
    config: &Config,
) -> Vec<Record> {
    let mut records = Vec::new();
    if let Some(test) = nextest_test {
        let diagnoses = if status.success() {
            Vec::new()
        } else {
            record::failure_diagnoses(output, &config.allow)
        };
        if !diagnoses.is_empty() || !leaks.is_empty() {
            records.push(Record {
                name: record::record_name(exe, test),
                diagnoses,
                leaks,
                ..Record::default()
            });
        }
        return records;
    }
    // cargo test: one process for all tests of the binary.
    if !status.success() {
        for execution in crate::runner::failed_in_libtest(output) {
            let diagnoses = record::failure_diagnoses(&execution.output, &config.allow);
            if !diagnoses.is_empty() {
                records.push(Record {
                    name: record::record_name(exe, &execution.name),
                    diagnoses,
                    leaks: Vec::new(),
                    ..Record::default()
                });
            }
        }
    }
    for leak in leaks {
        // Under cargo test only `LOOPCHECK_TEST` ties a leftover to its test; the others
        // are the run's.
        let name = leak
            .processes
            .first()
            .and_then(|p| p.test.clone())
            .unwrap_or_else(|| crate_of(exe));
        match records.iter_mut().find(|r| r.name == name) {
            Some(record) => record.leaks.push(leak),
            None => records.push(Record {
                name,
                diagnoses: Vec::new(),
                leaks: vec![leak],
                ..Record::default()
            }),
        }
    }
    records
}

/// Exits as the test did: its exit code, or the signal that killed it.
fn exit_like(status: ExitStatus) -> u8 {
    if let Some(code) = status.code() {
        return u8::try_from(code).unwrap_or(1);
    }
    if let Some(signal) = status.signal() {
        let _ = std::io::stdout().flush();
        // SAFETY: restores the default action and raises the signal on this process.
        unsafe {
            libc::signal(signal, libc::SIG_DFL);
            libc::raise(signal);
        }
        return u8::try_from(128 + signal).unwrap_or(u8::MAX);
    }
    1
}
