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
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use loopcheck::report::Diagnosis;

use super::cleanup;
use super::forward::{self, Dialer};
use super::namespace::{self, Entered, Unavailable};
use super::record;
use super::settings::{CONFIG_VAR, Config};
use crate::ExitCode;
use crate::runner::Record;

/// How much of a test's output is kept for its diagnosis: the end, where the panic is.
const KEPT_OUTPUT: usize = 256 * 1024;

/// How long the copies of the test's output may take to finish once everything it started
/// has been ended.
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
            ExitCode::OK
        }
        Err(unavailable) => {
            println!("{}", serde_json::json!({ "why": unavailable.why, "fix": unavailable.fix }));
            ExitCode::COULD_NOT_RUN
        }
    }
}

/// `__isolate PROGRAM ARGS..`: runs one test binary isolated.
pub(super) fn run(command: &[OsString]) -> u8 {
    let Some((program, args)) = command.split_first() else {
        eprintln!("error: cargo-loopcheck __isolate: no test binary to run");
        return ExitCode::USAGE;
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
        eprintln!("loopcheck: `{binary}` runs without isolation: it matches --isolate-exclude `{pattern}`");
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
                return ExitCode::COULD_NOT_RUN;
            }
        }
    };
    if let Err(unavailable) = enter_isolated() {
        // `cargo loopcheck test` checked beforehand; this is a host that changed meanwhile.
        eprintln!("loopcheck: {unavailable}");
        return ExitCode::COULD_NOT_RUN;
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
            return ExitCode::COULD_NOT_RUN;
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
    exit_like(status)
}

/// The exclusion pattern that keeps this test (nextest) or binary (cargo test: one of its
/// tests, as its `--list` shows them with the same filters) out of isolation.
fn excluded(config: &Config, binary: &str, nextest_test: Option<&str>, full: &[OsString]) -> Option<String> {
    if config.exclude.is_empty() {
        return None;
    }
    if let Some(test) = nextest_test {
        return config.excluded(binary, test).map(str::to_owned);
    }
    if let Some(pattern) = config.excluded(binary, "") {
        return Some(pattern.to_owned());
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
        .find_map(|test| config.excluded(binary, test).map(|p| format!("{p}` (test `{test}`")))
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
    ExitCode::COULD_NOT_RUN
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
/// which it keeps seeing.
fn run_test(full: &[OsString], config: &Config) -> std::io::Result<(ExitStatus, Option<Tee>)> {
    let mut command = Command::new(&full[0]);
    command.args(&full[1..]);
    environment(&mut command, config);
    // SAFETY: isatty takes a descriptor.
    let tee = unsafe { libc::isatty(1) == 0 && libc::isatty(2) == 0 };
    if tee {
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
    }
    // SAFETY: prctl is async-signal-safe; the test dies with this process, even by SIGKILL.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    install_forwarding();
    let mut child = command.spawn()?;
    CHILD.store(child.id() as i32, Ordering::SeqCst);
    let pending = PENDING.swap(0, Ordering::SeqCst);
    if pending != 0 {
        // SAFETY: kill takes plain values; the child is ours and not yet reaped.
        unsafe { libc::kill(child.id() as i32, pending) };
    }
    let output = tee.then(|| Tee::start(child.stdout.take(), child.stderr.take()));
    let status = child.wait();
    CHILD.store(0, Ordering::SeqCst);
    Ok((status?, output))
}

/// The copies of a test's stdout and stderr to this process's, keeping the last
/// [`KEPT_OUTPUT`] bytes of both.
struct Tee {
    kept: Arc<Mutex<Vec<u8>>>,
    done: mpsc::Receiver<()>,
    copies: usize,
}

impl Tee {
    fn start(stdout: Option<std::process::ChildStdout>, stderr: Option<std::process::ChildStderr>) -> Tee {
        let kept = Arc::new(Mutex::new(Vec::new()));
        let (sender, done) = mpsc::channel();
        let mut copies = 0;
        let streams: [(Option<Box<dyn Read + Send>>, bool); 2] = [
            (stdout.map(|s| Box::new(s) as Box<dyn Read + Send>), true),
            (stderr.map(|s| Box::new(s) as Box<dyn Read + Send>), false),
        ];
        for (stream, is_stdout) in streams {
            let Some(mut stream) = stream else { continue };
            copies += 1;
            let kept = Arc::clone(&kept);
            let sender = sender.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 16 * 1024];
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    // A closed stdout or stderr must not stop the test: its output is kept.
                    if is_stdout {
                        let mut out = std::io::stdout().lock();
                        let _ = out.write_all(&buf[..n]).and_then(|()| out.flush());
                    } else {
                        let _ = std::io::stderr().lock().write_all(&buf[..n]);
                    }
                    let mut kept = kept.lock().unwrap_or_else(|e| e.into_inner());
                    kept.extend_from_slice(&buf[..n]);
                    if kept.len() > 2 * KEPT_OUTPUT {
                        let excess = kept.len() - KEPT_OUTPUT;
                        kept.drain(..excess);
                    }
                }
                let _ = sender.send(());
            });
        }
        Tee { kept, done, copies }
    }

    /// Waits (boundedly) for both copies to end, and returns what was kept.
    fn finish(self) -> String {
        let deadline = std::time::Instant::now() + DRAIN_LIMIT;
        for _ in 0..self.copies {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if self.done.recv_timeout(left).is_err() {
                break;
            }
        }
        let kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        String::from_utf8_lossy(&kept).into_owned()
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
