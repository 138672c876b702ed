//! SIGTERM and SIGINT during `cargo loopcheck test`: a CI job's timeout, or Ctrl-C.
//!
//! The runner runs in a process group of its own, so that a signal reaches this process
//! first: it then stops the runner's whole group (cargo, nextest or the test binaries, and
//! what the tests started), waits for it to end, and reports the tests that had finished,
//! with JUnit. The handler only records the signal in an atomic; the runner's wait loop,
//! which wakes every [`POLL`], acts on it.

use std::process::Command;
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// How often a wait for the runner looks for a signal.
pub(crate) const POLL: Duration = Duration::from_millis(100);

/// How long the runner's group gets to end after the signal is passed on, before SIGKILL:
/// nextest uses it to end its tests and write its JUnit report.
const GRACE: Duration = Duration::from_secs(10);

/// The first signal received, 0 before any.
static FIRST: AtomicI32 = AtomicI32::new(0);
/// How many were received.
static COUNT: AtomicU32 = AtomicU32::new(0);

/// A signal that stops the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stop(i32);

impl Stop {
    /// `SIGTERM`, `SIGINT`.
    pub(crate) fn name(self) -> &'static str {
        #[cfg(unix)]
        {
            match self.0 {
                libc::SIGTERM => "SIGTERM",
                libc::SIGINT => "SIGINT",
                _ => "a signal",
            }
        }
        #[cfg(not(unix))]
        {
            "a signal"
        }
    }
}

/// Records SIGTERM and SIGINT from now on instead of dying of them. Elsewhere than Unix,
/// nothing changes: Ctrl-C ends the run as before, without a report.
pub(crate) fn install() {
    #[cfg(unix)]
    for signal in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: a zeroed sigaction with a handler that only touches atomics, which is
        // async-signal-safe; SA_RESTART keeps the waits of other threads going.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = record as extern "C" fn(libc::c_int) as libc::sighandler_t;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
    }
}

#[cfg(unix)]
extern "C" fn record(signal: libc::c_int) {
    let _ = FIRST.compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst);
    COUNT.fetch_add(1, Ordering::SeqCst);
}

/// The first SIGTERM or SIGINT received since [`install`], if any.
pub(crate) fn received() -> Option<Stop> {
    match FIRST.load(Ordering::SeqCst) {
        0 => None,
        signal => Some(Stop(signal)),
    }
}

/// Starts `command` in a process group of its own (whose id is its pid), so that a terminal's
/// Ctrl-C reaches this process, which stops the group, rather than the runner alone.
pub(crate) fn own_group(command: &mut Command) {
    #[cfg(unix)]
    std::os::unix::process::CommandExt::process_group(command, 0);
    #[cfg(not(unix))]
    let _ = command;
}

/// Stops a runner started with [`own_group`] once a signal came: the signal is passed on to
/// its group, and SIGKILL follows after [`GRACE`] or at a second signal.
#[derive(Debug, Default)]
pub(crate) struct Stopper {
    /// When the signal was passed on.
    passed_on: Option<Instant>,
    killed: bool,
}

impl Stopper {
    /// Called at each wake of the wait for the runner `pid`; returns the signal once one came.
    pub(crate) fn check(&mut self, pid: u32) -> Option<Stop> {
        self.step(pid, received(), COUNT.load(Ordering::SeqCst))
    }

    /// [`check`](Stopper::check) with the signal and how many came.
    fn step(&mut self, pid: u32, stop: Option<Stop>, count: u32) -> Option<Stop> {
        let stop = stop?;
        match self.passed_on {
            None => {
                signal_group(pid, stop.0);
                self.passed_on = Some(Instant::now());
            }
            Some(at) if !self.killed && (at.elapsed() >= GRACE || count > 1) => {
                #[cfg(unix)]
                signal_group(pid, libc::SIGKILL);
                self.killed = true;
            }
            Some(_) => {}
        }
        Some(stop)
    }
}

/// Sends `signal` to the process group `pid` leads: the runner this run started, never
/// anything else (the group id is the runner's own pid, alive until it is waited for).
fn signal_group(pid: u32, signal: i32) {
    #[cfg(unix)]
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill has no memory preconditions.
        unsafe { libc::kill(-pid, signal) };
    }
    #[cfg(not(unix))]
    let _ = (pid, signal);
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn a_group_is_stopped_whole_and_killed_at_a_second_signal() {
        // A shell that ignores SIGTERM, with a child of its own in its group.
        let dir = tempfile::tempdir().unwrap();
        let background = dir.path().join("background");
        let mut command = Command::new("sh");
        command
            .args([
                "-c",
                "trap '' TERM; sleep 30 & echo $! > \"$1\"; sleep 30; wait",
                "sh",
            ])
            .arg(&background);
        own_group(&mut command);
        let mut child = command.spawn().expect("sh runs");
        let pid = child.id();
        std::thread::sleep(Duration::from_millis(200));
        let mut stopper = Stopper::default();
        assert_eq!(stopper.step(pid, None, 0), None, "no signal yet");
        let term = Some(Stop(libc::SIGTERM));
        assert_eq!(stopper.step(pid, term, 1).map(Stop::name), Some("SIGTERM"));
        std::thread::sleep(Duration::from_millis(300));
        assert!(child.try_wait().unwrap().is_none(), "the shell ignores SIGTERM");
        stopper.step(pid, term, 2);
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "SIGKILL ends the group"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGKILL));
        // The shell's child went with it: gone, or dead and not yet reaped by its new parent.
        let sleep = std::fs::read_to_string(&background).unwrap();
        let ended = (0..100).any(|_| {
            let stat = std::fs::read_to_string(format!("/proc/{}/stat", sleep.trim())).unwrap_or_default();
            let state = stat.rsplit_once(") ").and_then(|(_, rest)| rest.chars().next());
            std::thread::sleep(Duration::from_millis(20));
            matches!(state, None | Some('Z' | 'X'))
        });
        assert!(ended, "the shell's child {sleep} outlived its group");
        assert_eq!(Stop(libc::SIGINT).name(), "SIGINT");
    }
}
