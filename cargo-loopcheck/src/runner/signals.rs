//! SIGTERM and SIGINT (and, for `lease`, SIGHUP) while this tool waits for a child: the
//! runner of `cargo loopcheck test`, or the command of `cargo loopcheck lease`.
//!
//! The handler only records the signal in atomics; the wait loop, which wakes every [`POLL`],
//! acts on it. `test` starts its runner in a process group of its own, so that a signal
//! reaches this process first: it then stops the runner's whole group (cargo, nextest or the
//! test binaries, and what the tests started), waits for it to end, and reports the tests that
//! had finished. `lease`'s command shares this process's group: a signal a process sent is
//! passed on to it, one from the terminal reached it already.
//!
//! A child is signalled only while it is known not to be reaped: [`Exit`] waits for it with a
//! pidfd (or, without one, `waitid(WNOWAIT)` in a thread), which leaves it a zombie whose pid (and group id) no other process can
//! take, and the caller reaps it only after the loop has ended. At a second signal the child
//! (with `test`, its group) is killed with SIGKILL, the signal's default disposition restored
//! and the signal raised again: the tool dies of it, the way the user asked.

use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How often a wait for the child looks for a signal.
pub(crate) const POLL: Duration = Duration::from_millis(100);

/// How long the runner's group gets to end after the signal is passed on, before SIGKILL:
/// nextest uses it to end its tests and write its JUnit report.
const GRACE: Duration = Duration::from_secs(10);

/// The first signal received, 0 before any.
static FIRST: AtomicI32 = AtomicI32::new(0);
/// Whether the first one was sent by a process (`kill`), not by the terminal.
static FIRST_FROM_PROCESS: AtomicBool = AtomicBool::new(false);
/// The last signal received, 0 before any.
static LAST: AtomicI32 = AtomicI32::new(0);
/// How many were received.
static COUNT: AtomicU32 = AtomicU32::new(0);

/// A signal that stops the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stop(i32);

impl Stop {
    /// `SIGTERM`, `SIGINT`, `SIGHUP`.
    pub(crate) fn name(self) -> &'static str {
        #[cfg(unix)]
        {
            match self.0 {
                libc::SIGTERM => "SIGTERM",
                libc::SIGINT => "SIGINT",
                libc::SIGHUP => "SIGHUP",
                _ => "a signal",
            }
        }
        #[cfg(not(unix))]
        {
            "a signal"
        }
    }
}

/// The signals `test` stops its runner at.
#[cfg(unix)]
pub(crate) const STOPPING: &[i32] = &[libc::SIGTERM, libc::SIGINT];
#[cfg(not(unix))]
pub(crate) const STOPPING: &[i32] = &[];

/// The signals `lease` passes on to its command.
#[cfg(unix)]
pub(crate) const PASSED_ON: &[i32] = &[libc::SIGTERM, libc::SIGINT, libc::SIGHUP];
#[cfg(not(unix))]
pub(crate) const PASSED_ON: &[i32] = &[];

/// Records `signals` from now on instead of dying of them. Elsewhere than Unix, nothing
/// changes: Ctrl-C reaches every process of the console, and ends the run without a report.
pub(crate) fn install(signals: &[i32]) {
    #[cfg(unix)]
    for &signal in signals {
        // SAFETY: a zeroed sigaction with a handler that only touches atomics, which is
        // async-signal-safe; SA_RESTART keeps the waits of other threads going.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = record as *const () as usize;
            action.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
    }
    #[cfg(not(unix))]
    let _ = signals;
}

#[cfg(unix)]
extern "C" fn record(signal: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler; a code of 0 or less
    // is a signal a process sent (`kill`, `sigqueue`), above it one of the kernel's (a terminal).
    let from_process = info.is_null() || unsafe { (*info).si_code } <= 0;
    if FIRST
        .compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst)
        .is_ok()
    {
        FIRST_FROM_PROCESS.store(from_process, Ordering::SeqCst);
    }
    LAST.store(signal, Ordering::SeqCst);
    COUNT.fetch_add(1, Ordering::SeqCst);
}

/// The first signal received since [`install`], if any.
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

/// The end of a child, watched without reaping it: until the caller waits for it, its pid
/// names it and nothing else, so signalling it is safe.
pub(crate) struct Exit {
    watch: Watch,
    done: bool,
}

enum Watch {
    /// A pidfd, readable once the child has exited: polled in the waiting thread itself, no
    /// thread and no wake-up in between (Linux 5.3 and later).
    #[cfg(target_os = "linux")]
    Pidfd(std::os::fd::OwnedFd),
    /// A thread blocked in `waitid(WNOWAIT)`, which says when the child has exited.
    Thread(mpsc::Receiver<()>),
}

impl Exit {
    /// Watches the child `pid`, which the caller waits for (reaps) once it has exited.
    pub(crate) fn watch(pid: u32) -> Exit {
        #[cfg(target_os = "linux")]
        if let Some(pidfd) = pidfd_open(pid) {
            return Exit {
                watch: Watch::Pidfd(pidfd),
                done: false,
            };
        }
        Exit::in_thread(pid)
    }

    /// Watches the child `pid` from a thread of its own, where there is no pidfd.
    fn in_thread(pid: u32) -> Exit {
        let (send, exited) = mpsc::channel();
        std::thread::spawn(move || {
            wait_exited(pid);
            let _ = send.send(());
        });
        Exit {
            watch: Watch::Thread(exited),
            done: false,
        }
    }

    /// Waits up to `timeout`, or less when a signal arrives; whether the child has exited.
    pub(crate) fn wait(&mut self, timeout: Duration) -> bool {
        if !self.done {
            self.done = match &self.watch {
                #[cfg(target_os = "linux")]
                Watch::Pidfd(pidfd) => readable(pidfd, timeout),
                Watch::Thread(exited) => {
                    !matches!(exited.recv_timeout(timeout), Err(mpsc::RecvTimeoutError::Timeout))
                }
            };
        }
        self.done
    }
}

/// A pidfd of the child `pid`, or `None` where the kernel has none.
#[cfg(target_os = "linux")]
fn pidfd_open(pid: u32) -> Option<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    let pid = libc::pid_t::try_from(pid).ok()?;
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    let fd = i32::try_from(fd).ok().filter(|fd| *fd >= 0)?;
    // SAFETY: `fd` was just returned by pidfd_open and is owned by nothing else.
    Some(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

/// Whether `pidfd` turns readable (its process exited) within `timeout`; a signal ends the
/// wait early, so that the caller acts on it at once.
#[cfg(target_os = "linux")]
fn readable(pidfd: &std::os::fd::OwnedFd, timeout: Duration) -> bool {
    use std::os::fd::AsRawFd;
    let mut poll = libc::pollfd {
        fd: pidfd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let millis = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: one valid pollfd, its count, and a timeout.
    let ready = unsafe { libc::poll(&mut poll, 1, millis) };
    ready > 0 && poll.revents != 0
}

/// Blocks until the child `pid` has exited, leaving it to be reaped.
fn wait_exited(pid: u32) {
    #[cfg(unix)]
    loop {
        // SAFETY: a zeroed siginfo for waitid to fill; WNOWAIT leaves the child to wait().
        let rc = unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            libc::waitid(libc::P_PID, pid, &mut info, libc::WEXITED | libc::WNOWAIT)
        };
        if rc == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return;
        }
    }
    #[cfg(not(unix))]
    {
        // Without waitid the child is only reaped by its `Child`; nothing is signalled here.
        let _ = pid;
    }
}

/// Whom a signal is passed on to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reach {
    /// The child's process group ([`own_group`]), whatever sent the signal; SIGKILL follows
    /// after [`GRACE`]. `test`'s runner.
    Group,
    /// The child alone, and only a signal a process sent: the terminal's reached it already,
    /// through the group it shares with this process. `lease`'s command.
    Child,
}

/// What to do at a wake of the wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    /// Nothing came, or nothing more to do.
    Wait,
    /// A signal came; the first is passed on.
    Stopped(Stop),
    /// A second one came: the child was killed, and this process dies of the signal.
    Die(i32),
}

/// Passes a signal on to a child while it is not reaped ([`Exit`]).
#[derive(Debug)]
pub(crate) struct Stopper {
    reach: Reach,
    /// When the signal was passed on.
    passed_on: Option<Instant>,
    killed: bool,
}

impl Stopper {
    pub(crate) fn new(reach: Reach) -> Stopper {
        Stopper {
            reach,
            passed_on: None,
            killed: false,
        }
    }

    /// Called at each wake of the wait for the child `pid`, which must not be reaped yet;
    /// returns the signal once one came. At a second signal this process dies of it.
    pub(crate) fn check(&mut self, pid: u32) -> Option<Stop> {
        let from_process = FIRST_FROM_PROCESS.load(Ordering::SeqCst);
        let count = COUNT.load(Ordering::SeqCst);
        match self.step(pid, received(), from_process, count, LAST.load(Ordering::SeqCst)) {
            Action::Wait => received(),
            Action::Stopped(stop) => Some(stop),
            Action::Die(signal) => die_of(signal),
        }
    }

    /// [`check`](Stopper::check) with the first signal, whether a process sent it, how many
    /// came and the last one.
    fn step(&mut self, pid: u32, stop: Option<Stop>, from_process: bool, count: u32, last: i32) -> Action {
        let Some(stop) = stop else {
            return Action::Wait;
        };
        if count > 1 {
            #[cfg(unix)]
            self.kill(pid);
            return Action::Die(last);
        }
        match self.passed_on {
            None => {
                match self.reach {
                    Reach::Group => signal_group(pid, stop.0),
                    Reach::Child if from_process => signal_process(pid, stop.0),
                    Reach::Child => {}
                }
                self.passed_on = Some(Instant::now());
            }
            Some(at) if self.reach == Reach::Group && !self.killed && at.elapsed() >= GRACE => {
                #[cfg(unix)]
                self.kill(pid);
            }
            Some(_) => {}
        }
        Action::Stopped(stop)
    }

    #[cfg(unix)]
    fn kill(&mut self, pid: u32) {
        if !self.killed {
            match self.reach {
                Reach::Group => signal_group(pid, libc::SIGKILL),
                Reach::Child => signal_process(pid, libc::SIGKILL),
            }
            self.killed = true;
        }
    }
}

/// Restores the default disposition of `signal` and raises it: this process ends as the user
/// asked. Returns only if the signal does not end a process (it always does here).
fn die_of(signal: i32) -> Option<Stop> {
    #[cfg(unix)]
    // SAFETY: SIG_DFL for a signal this module handles, then raise; no memory is involved.
    unsafe {
        libc::signal(signal, libc::SIG_DFL);
        libc::raise(signal);
    }
    Some(Stop(signal))
}

/// Sends `signal` to the process group `pid` leads: the runner this run started, never
/// anything else (the group id is the runner's own pid, taken until it is reaped).
fn signal_group(pid: u32, signal: i32) {
    #[cfg(unix)]
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill has no memory preconditions.
        unsafe { libc::kill(-pid, signal) };
    }
    #[cfg(not(unix))]
    let _ = (pid, signal);
}

/// Sends `signal` to the child `pid`, not reaped yet.
fn signal_process(pid: u32, signal: i32) {
    #[cfg(unix)]
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill has no memory preconditions.
        unsafe { libc::kill(pid, signal) };
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
        let mut stopper = Stopper::new(Reach::Group);
        assert_eq!(stopper.step(pid, None, true, 0, 0), Action::Wait, "no signal yet");
        let term = Some(Stop(libc::SIGTERM));
        assert_eq!(
            stopper.step(pid, term, true, 1, libc::SIGTERM),
            Action::Stopped(Stop(libc::SIGTERM))
        );
        std::thread::sleep(Duration::from_millis(300));
        assert!(child.try_wait().unwrap().is_none(), "the shell ignores SIGTERM");
        assert_eq!(
            stopper.step(pid, term, true, 2, libc::SIGTERM),
            Action::Die(libc::SIGTERM)
        );
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

    #[test]
    fn an_exited_child_stays_unreaped_until_its_waiter_reaps_it() {
        // The pidfd watch, and the thread that stands in for it on kernels without pidfds.
        for watch in [Exit::watch, Exit::in_thread] {
            let mut child = Command::new("true").spawn().expect("true runs");
            let pid = child.id();
            let mut exit = watch(pid);
            let started = Instant::now();
            while !exit.wait(POLL) {
                assert!(started.elapsed() < Duration::from_secs(10), "`true` did not exit");
            }
            // Its pid is still its own, a zombie: no other process can take it, or its group.
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let state = stat.rsplit_once(") ").and_then(|(_, rest)| rest.chars().next());
            assert_eq!(state, Some('Z'), "the watcher reaped it: {stat:?}");
            assert!(child.wait().unwrap().success());
            assert!(std::fs::metadata(format!("/proc/{pid}")).is_err(), "reaped now");
        }
    }

    #[test]
    fn a_running_child_is_not_taken_for_exited() {
        for watch in [Exit::watch, Exit::in_thread] {
            let mut child = Command::new("sleep").arg("30").spawn().expect("sleep runs");
            let mut exit = watch(child.id());
            assert!(
                !exit.wait(Duration::from_millis(50)),
                "a sleeping child counted as exited"
            );
            child.kill().unwrap();
            let started = Instant::now();
            while !exit.wait(POLL) {
                assert!(
                    started.elapsed() < Duration::from_secs(10),
                    "the killed child did not exit"
                );
            }
            child.wait().unwrap();
        }
    }

    #[test]
    fn a_terminal_signal_is_not_passed_on_to_a_child_of_this_group() {
        let mut child = Command::new("sleep").arg("30").spawn().expect("sleep runs");
        let pid = child.id();
        let mut stopper = Stopper::new(Reach::Child);
        let int = Some(Stop(libc::SIGINT));
        assert_eq!(
            stopper.step(pid, int, false, 1, libc::SIGINT),
            Action::Stopped(Stop(libc::SIGINT))
        );
        std::thread::sleep(Duration::from_millis(200));
        assert!(
            child.try_wait().unwrap().is_none(),
            "the terminal's signal was sent twice"
        );
        let mut stopper = Stopper::new(Reach::Child);
        stopper.step(pid, int, true, 1, libc::SIGINT);
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGINT));
    }
}
