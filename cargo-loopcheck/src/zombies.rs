//! Zombie listeners of a workspace: what `check` reports and `reap` ends.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use loopcheck::diagnose::{ZombieListener, cargo_target_dir, zombie_listeners};
use loopcheck::report::{Code, Finding};
use loopcheck::scan::{ProcessInfo, ScanOptions};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::workspace::Workspace;

/// A leftover process of this workspace's tests, with every address it listens on.
#[derive(Debug, Clone, Serialize)]
pub struct Zombie {
    /// Its pid.
    pub pid: u32,
    /// Its command line.
    pub command: String,
    /// Its executable.
    pub exe: Option<PathBuf>,
    /// Its user.
    pub user: Option<String>,
    /// The `LOOPCHECK_TEST` it carries.
    pub test: Option<String>,
    /// The workspace package whose test binary it is, if any.
    pub package: Option<String>,
    /// What its executable is to the workspace: `test binary of `PACKAGE``, `the
    /// workspace's binary `NAME` of `PACKAGE``.
    #[serde(skip)]
    pub built: Option<String>,
    /// How long it has been running, in seconds, where known.
    pub age_secs: Option<u64>,
    /// Why it is a leftover.
    pub reason: String,
    /// The addresses it listens on.
    pub addrs: Vec<SocketAddr>,
    #[serde(skip)]
    process: ProcessInfo,
}

impl Zombie {
    /// The LC002 finding for this zombie, one per zombie (its first address).
    pub fn finding(&self) -> Finding {
        let addrs: Vec<String> = self.addrs.iter().map(ToString::to_string).collect();
        let age = self
            .age_secs
            .map(|s| format!(", running for {}", human_age(s)))
            .unwrap_or_default();
        let package = self
            .built
            .as_deref()
            .map(|built| format!(" ({built})"))
            .unwrap_or_default();
        let mut f = Finding::new(
            Code::ZombieListener,
            format!(
                "zombie listener on {}: pid {}{package}{age}; {}",
                addrs.join(", "),
                self.pid,
                self.reason
            ),
        );
        f.port = self.addrs.first().map(SocketAddr::port);
        f.pid = Some(self.pid);
        f.command = Some(self.command.clone());
        f.suggestion = Some(format!(
            "end it with `cargo loopcheck reap --yes` (or `kill {}`)",
            self.pid
        ));
        f
    }

    /// Its findings: LC002, and LC011 for each wildcard address it listens on, which exposes
    /// that port beyond loopback.
    pub fn findings(&self) -> Vec<Finding> {
        let mut findings = vec![self.finding()];
        for wildcard in self.addrs.iter().filter(|a| a.ip().is_unspecified()) {
            let mut f = Finding::new(
                Code::WildcardBind,
                format!(
                    "zombie listener pid {} listens on {wildcard}, every address of this host: it is reachable from the network",
                    self.pid
                ),
            );
            f.port = Some(wildcard.port());
            f.pid = Some(self.pid);
            f.command = Some(self.command.clone());
            f.suggestion = Some(
                "end it (`cargo loopcheck reap --yes`), and bind servers to loopback (`127.0.0.1`, or `loopcheck::loopback_ip()` in tests)"
                    .to_owned(),
            );
            findings.push(f);
        }
        findings
    }
}

fn human_age(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m {}s", secs / 60, secs % 60),
        _ => format!("{}h {}m", secs / 3600, secs % 3600 / 60),
    }
}

/// Seconds since `start_time` (clock ticks after boot), from `/proc/uptime` (Linux).
fn age_secs(start_time: Option<u64>) -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: sysconf has no preconditions.
        let ticks = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) })
            .ok()
            .filter(|t| *t > 0)?;
        let uptime: f64 = std::fs::read_to_string("/proc/uptime")
            .ok()?
            .split_whitespace()
            .next()?
            .parse()
            .ok()?;
        Some((uptime as u64).saturating_sub(start_time? / ticks))
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = start_time;
        None
    }
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// Whether a zombie belongs to `workspace`: its executable lies in the workspace's target
/// directory, or it carries the `LOOPCHECK_TEST` of a test (which, orphaned, has ended).
fn belongs(zombie: &ZombieListener, workspace: &Workspace) -> bool {
    let in_target = zombie
        .process
        .exe
        .as_deref()
        .and_then(cargo_target_dir)
        .is_some_and(|dir| same_dir(&dir, &workspace.target_dir));
    in_target || zombie.process.loopcheck_test.is_some()
}

/// The zombie listeners of `workspace`, one entry per process, owned by this user.
pub(crate) fn find(workspace: &Workspace) -> Result<Vec<Zombie>> {
    let table = loopcheck::scan::scan_with(&ScanOptions::listeners()).map_err(Error::Scan)?;
    let me = loopcheck::sys::current_uid();
    let mut zombies: Vec<Zombie> = Vec::new();
    for found in zombie_listeners(&table) {
        // Never a process of another user, whatever it is.
        if me.is_some() && found.process.uid != me {
            continue;
        }
        if !belongs(&found, workspace) {
            continue;
        }
        if let Some(existing) = zombies.iter_mut().find(|z| z.pid == found.process.pid) {
            existing.addrs.push(found.socket.local);
            continue;
        }
        let process = found.process;
        zombies.push(Zombie {
            pid: process.pid,
            command: process.command(),
            exe: process.exe.clone(),
            user: process.user.clone(),
            test: process.loopcheck_test.clone(),
            package: process
                .exe
                .as_deref()
                .and_then(|exe| workspace.package_of_binary(exe))
                .map(str::to_owned),
            built: process
                .exe
                .as_deref()
                .and_then(|exe| workspace.describe_binary(exe)),
            age_secs: age_secs(process.start_time),
            reason: found.reason,
            addrs: vec![found.socket.local],
            process,
        });
    }
    Ok(zombies)
}

/// How long a process being ended gets to exit after SIGTERM before SIGKILL: `reap`,
/// `test --reap` and the teardown of a run's leftovers all wait this long.
pub(crate) const END_GRACE: Duration = Duration::from_secs(3);

/// What ending one process came to (`reap`, `test --reap`, a run's teardown).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EndOutcome {
    /// Dry run: it would be ended.
    WouldEnd,
    /// It exited after SIGTERM.
    Terminated,
    /// It needed SIGKILL.
    Killed,
    /// It had already exited, or its pid now names another process: left alone.
    Gone,
    /// Signalling failed, or it is still running.
    Failed,
    /// It belongs to another user: never signalled, left running.
    Foreign,
}

/// Ends `zombie`: SIGTERM, up to `grace` to exit, then SIGKILL. Before each signal the process
/// is read again, and left alone unless it is still the same process (same start time), still
/// this user's and still orphaned.
pub(crate) fn end(zombie: &Zombie, grace: Duration) -> EndOutcome {
    end_process(&zombie.process, grace, &|now| {
        matches!(
            loopcheck::diagnose::classify(now),
            loopcheck::diagnose::Provenance::Zombie { .. }
        )
    })
}

/// Ends `process` as [`end`] ends a zombie: SIGTERM, up to `grace` to exit, then SIGKILL.
/// Before each signal the process is read again, and left alone unless it is still the same
/// process (same pid and start time, through a pidfd where the kernel has them), this user's
/// (the current uid, whoever started it), and `still_ours` still holds for it.
pub(crate) fn end_process(
    process: &ProcessInfo,
    grace: Duration,
    still_ours: &dyn Fn(&ProcessInfo) -> bool,
) -> EndOutcome {
    end_processes(std::slice::from_ref(process), grace, still_ours)
        .pop()
        .unwrap_or(EndOutcome::Gone)
}

/// Ends each of `processes` as [`end_process`] does, all at once: SIGTERM to every one, one
/// grace period shared by all (polled, no thread per process), SIGKILL to the survivors.
/// The outcomes are in the order of `processes`.
#[cfg(unix)]
pub(crate) fn end_processes(
    processes: &[ProcessInfo],
    grace: Duration,
    still_ours: &dyn Fn(&ProcessInfo) -> bool,
) -> Vec<EndOutcome> {
    let mut outcomes = vec![EndOutcome::Gone; processes.len()];
    let mut handles: Vec<Option<Handle>> = Vec::with_capacity(processes.len());
    for (process, outcome) in processes.iter().zip(&mut outcomes) {
        // The handle is taken before the check, so the check and the signals concern one
        // process even if the pid is reused in between.
        let handle = Handle::open(process.pid).and_then(|handle| match identity(process, still_ours) {
            Identity::Same => Some(handle),
            Identity::Foreign => {
                *outcome = EndOutcome::Foreign;
                None
            }
            Identity::Changed => None,
        });
        let handle = handle.and_then(|handle| match handle.signal(libc::SIGTERM) {
            Ok(()) => Some(handle),
            Err(err) => {
                *outcome = failed_signal(&err);
                None
            }
        });
        handles.push(handle);
    }
    wait_all(
        processes,
        &mut handles,
        &mut outcomes,
        grace,
        EndOutcome::Terminated,
    );
    for ((process, handle), outcome) in processes.iter().zip(&mut handles).zip(&mut outcomes) {
        let Some(live) = handle.as_ref() else {
            continue;
        };
        // Still alive after the grace: SIGKILL only if it is still the process we signalled
        // and still ours; if it changed meanwhile, it is left alone and was not ended.
        let result = match identity(process, still_ours) {
            Identity::Same => live.signal(libc::SIGKILL).map_err(|err| failed_signal(&err)),
            Identity::Foreign => Err(EndOutcome::Foreign),
            Identity::Changed if !alive(process) => Err(EndOutcome::Terminated),
            Identity::Changed => Err(EndOutcome::Failed),
        };
        if let Err(done) = result {
            *outcome = done;
            *handle = None;
        }
    }
    wait_all(
        processes,
        &mut handles,
        &mut outcomes,
        Duration::from_secs(5),
        EndOutcome::Killed,
    );
    for (handle, outcome) in handles.iter().zip(&mut outcomes) {
        if handle.is_some() {
            *outcome = EndOutcome::Failed;
        }
    }
    outcomes
}

/// Waits up to `limit` for the processes that still have a handle to exit; each that does
/// gets `exited` and loses its handle.
#[cfg(unix)]
fn wait_all(
    processes: &[ProcessInfo],
    handles: &mut [Option<Handle>],
    outcomes: &mut [EndOutcome],
    limit: Duration,
    exited: EndOutcome,
) {
    let deadline = std::time::Instant::now() + limit;
    loop {
        for ((process, handle), outcome) in processes.iter().zip(&mut *handles).zip(&mut *outcomes) {
            if handle.is_some() && !alive(process) {
                *outcome = exited;
                *handle = None;
            }
        }
        if handles.iter().all(Option::is_none) || std::time::Instant::now() >= deadline {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What a process read again is, compared with the snapshot it was found in.
#[cfg(unix)]
enum Identity {
    /// The same process, still this user's and still ours.
    Same,
    /// The same process, but another user's: never signalled.
    Foreign,
    /// Exited, replaced by another process under its pid, or no longer ours.
    Changed,
}

#[cfg(unix)]
fn identity(process: &ProcessInfo, still_ours: &dyn Fn(&ProcessInfo) -> bool) -> Identity {
    let Some(now) = ProcessInfo::read(process.pid) else {
        return Identity::Changed;
    };
    if now.start_time != process.start_time || now.state == Some('Z') {
        return Identity::Changed;
    }
    if now.uid.is_none() || now.uid != loopcheck::sys::current_uid() || now.uid != process.uid {
        return Identity::Foreign;
    }
    if still_ours(&now) {
        Identity::Same
    } else {
        Identity::Changed
    }
}

/// One process to signal. On Linux a pidfd, which keeps naming the same process even after it
/// exits and its pid is reused; elsewhere (or on kernels before 5.3) the bare pid.
#[cfg(unix)]
struct Handle {
    pid: libc::pid_t,
    #[cfg(target_os = "linux")]
    pidfd: Option<std::os::fd::OwnedFd>,
}

#[cfg(unix)]
impl Handle {
    /// `None` when the process is already gone.
    fn open(pid: u32) -> Option<Handle> {
        let pid = libc::pid_t::try_from(pid).ok()?;
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::FromRawFd;
            // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
            let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
            if fd >= 0 {
                // SAFETY: the kernel just returned this fd, and nothing else owns it.
                let pidfd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) };
                return Some(Handle {
                    pid,
                    pidfd: Some(pidfd),
                });
            }
            match std::io::Error::last_os_error().raw_os_error() {
                Some(libc::ESRCH) => None,
                _ => Some(Handle { pid, pidfd: None }),
            }
        }
        #[cfg(not(target_os = "linux"))]
        Some(Handle { pid })
    }

    fn signal(&self, signal: libc::c_int) -> std::io::Result<()> {
        #[cfg(target_os = "linux")]
        if let Some(pidfd) = &self.pidfd {
            use std::os::fd::AsRawFd;
            // SAFETY: a signal through a pidfd this process owns; no siginfo, no flags.
            let rc = unsafe {
                libc::syscall(
                    libc::SYS_pidfd_send_signal,
                    pidfd.as_raw_fd(),
                    signal,
                    std::ptr::null::<libc::siginfo_t>(),
                    0,
                )
            };
            return if rc == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            };
        }
        // SAFETY: a signal to a pid checked to be this user's orphaned process just before.
        let rc = unsafe { libc::kill(self.pid, signal) };
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }
}

/// The outcome of a `kill` that failed: `Gone` when the process had already exited.
#[cfg(unix)]
fn failed_signal(err: &std::io::Error) -> EndOutcome {
    if err.raw_os_error() == Some(libc::ESRCH) {
        EndOutcome::Gone
    } else {
        EndOutcome::Failed
    }
}

/// Ending processes is not supported on this platform.
#[cfg(not(unix))]
pub(crate) fn end_processes(
    processes: &[ProcessInfo],
    _grace: Duration,
    _still_ours: &dyn Fn(&ProcessInfo) -> bool,
) -> Vec<EndOutcome> {
    vec![EndOutcome::Failed; processes.len()]
}

/// Whether the process of the snapshot still runs (not exited, not a defunct entry, its pid
/// not reused).
#[cfg(unix)]
fn alive(process: &ProcessInfo) -> bool {
    ProcessInfo::read(process.pid).is_some_and(|p| p.start_time == process.start_time && p.state != Some('Z'))
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// A zombie as [`find`] builds it for the workspace's bin target `dev-server`, listening on
    /// `addrs`.
    fn zombie(addrs: &[&str]) -> Zombie {
        let dir = tempfile::tempdir().unwrap();
        let workspace = crate::workspace::fixture(dir.path());
        let exe = workspace.target_dir.join("debug").join("dev-server");
        let process = ProcessInfo::read(std::process::id()).expect("this process");
        Zombie {
            pid: 4242,
            command: format!("{} --listen", exe.display()),
            package: workspace.package_of_binary(&exe).map(str::to_owned),
            built: workspace.describe_binary(&exe),
            exe: Some(exe),
            user: None,
            test: None,
            age_secs: Some(5),
            reason: "its parent is gone".into(),
            addrs: addrs.iter().map(|a| a.parse().unwrap()).collect(),
            process,
        }
    }

    #[test]
    fn a_wildcard_zombie_also_gets_lc011_for_each_wildcard_address() {
        // loopcheck:allow(LC010): test data the code under test parses or prints, never bound
        let exposed = zombie(&["127.0.0.1:8080", "0.0.0.0:9090", "[::]:9091"]);
        assert_eq!(exposed.package.as_deref(), Some("tools"));
        let findings = exposed.findings();
        let codes: Vec<Code> = findings.iter().map(|f| f.code).collect();
        assert_eq!(
            codes,
            [Code::ZombieListener, Code::WildcardBind, Code::WildcardBind]
        );
        assert_eq!(findings[1].port, Some(9090));
        assert_eq!(findings[1].pid, Some(4242));
        assert!(
            // loopcheck:allow(LC010): test data the code under test parses or prints, never bound
            findings[1].message.contains("0.0.0.0:9090"),
            "{}",
            findings[1].message
        );
        assert_eq!(findings[2].port, Some(9091));
        assert!(
            // loopcheck:allow(LC010): test data the code under test parses or prints, never bound
            findings[2].message.contains("[::]:9091"),
            "{}",
            findings[2].message
        );
        assert!(
            findings[0]
                .message
                .contains("(the workspace's binary `dev-server` of `tools`)"),
            "{}",
            findings[0].message
        );
        // loopcheck:allow(LC010): test data the code under test parses or prints, never bound
        let loopback = zombie(&["127.0.0.1:8080", "[::1]:8080"]).findings();
        assert_eq!(loopback.len(), 1);
    }

    /// A child of this test, once it has exec'd `name`, and its snapshot.
    #[allow(
        clippy::zombie_processes,
        reason = "the caller waits for the child it is handed"
    )]
    fn spawned(command: &mut std::process::Command, name: &str) -> (std::process::Child, ProcessInfo) {
        let mut child = command.stdin(std::process::Stdio::null()).spawn().expect("spawn");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(info) = ProcessInfo::read(child.id()).filter(|p| p.name == name) {
                return (child, info);
            }
            if std::time::Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{name} did not start");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn sigterm_then_sigkill_for_a_process_that_ignores_sigterm() {
        let (mut stubborn, stubborn_info) = spawned(
            std::process::Command::new("sh").args(["-c", "trap '' TERM; exec sleep 96"]),
            "sleep",
        );
        let (mut polite, polite_info) = spawned(std::process::Command::new("sleep").arg("95"), "sleep");
        let outcomes = end_processes(&[stubborn_info, polite_info], Duration::from_millis(300), &|_| {
            true
        });
        let stubborn_status = stubborn.wait().unwrap();
        let polite_status = polite.wait().unwrap();
        assert_eq!(outcomes, [EndOutcome::Killed, EndOutcome::Terminated]);
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(stubborn_status.signal(), Some(libc::SIGKILL));
        assert_eq!(polite_status.signal(), Some(libc::SIGTERM));
    }

    #[test]
    fn another_users_process_is_never_signalled() {
        if !loopcheck::sys::test_needs_root("only root can start a process of another user to test this") {
            return;
        }
        let Ok(setpriv) = which("setpriv") else {
            loopcheck::sys::skip_test("setpriv is not installed");
            return;
        };
        let (mut child, info) = spawned(
            std::process::Command::new(setpriv).args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "sleep",
                "97",
            ]),
            "sleep",
        );
        assert_eq!(info.uid, Some(65534));
        let outcome = end_process(&info, Duration::from_millis(200), &|_| true);
        let still_alive = alive(&info);
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(outcome, EndOutcome::Foreign);
        assert!(still_alive, "another user's process was signalled");
    }

    fn which(name: &str) -> std::result::Result<PathBuf, ()> {
        std::env::split_paths(&std::env::var_os("PATH").ok_or(())?)
            .map(|dir| dir.join(name))
            .find(|path| path.is_file())
            .ok_or(())
    }
}
