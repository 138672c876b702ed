//! After an isolated test: what it left running in its namespace. The wrapper is a child
//! subreaper (`PR_SET_CHILD_SUBREAPER`), so everything the test started and abandoned is
//! reparented to it; those descendants are the leftovers. Each is reported, LC012 when it
//! listens (on the namespace's sockets) and LC013 otherwise, then ended: SIGTERM, a short
//! grace, SIGKILL. Nothing outside the wrapper's own process tree is ever signalled.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use loopcheck::diagnose::process_ref;
use loopcheck::report::{Code, Diagnosis};
use loopcheck::scan::{self, ProcessInfo, ScanOptions};

/// How long a leftover gets after SIGTERM before SIGKILL.
const GRACE: Duration = Duration::from_millis(200);

/// How long reaping may take in all.
const REAP_LIMIT: Duration = Duration::from_secs(5);

/// Makes this process the reaper of its orphaned descendants.
pub(super) fn become_subreaper() -> std::io::Result<()> {
    // SAFETY: prctl with plain values.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The live descendants of this process, parents before children, leaving out `spare` (the
/// dialer) and its own descendants. Read through `/proc/PID/task/TID/children`, so the cost
/// is that of the descendants, not of every process on the host.
fn descendants(spare: &[u32]) -> Vec<u32> {
    let mut found = Vec::new();
    let mut queue = vec![std::process::id()];
    while let Some(pid) = queue.pop() {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            let Ok(children) = std::fs::read_to_string(task.path().join("children")) else {
                continue;
            };
            for child in children.split_whitespace().filter_map(|c| c.parse::<u32>().ok()) {
                if !spare.contains(&child) && !found.contains(&child) && found.len() < 4096 {
                    found.push(child);
                    queue.push(child);
                }
            }
        }
    }
    found
}

/// Reports and ends what was left running; `who` names the test (or binary) that left it:
/// ``test `a::b` ``. Zombies (exited, not yet reaped) are reaped,
/// not reported.
pub(super) fn end_leftovers(who: &str, spare: &[u32]) -> Vec<Diagnosis> {
    let pids = descendants(spare);
    if pids.is_empty() {
        return Vec::new();
    }
    let processes: Vec<ProcessInfo> = pids
        .iter()
        .filter_map(|&pid| ProcessInfo::read(pid))
        .filter(|p| p.state != Some('Z'))
        .collect();
    let table = if processes.is_empty() {
        None
    } else {
        scan::scan_with(&ScanOptions::listeners()).ok()
    };
    let mut diagnoses: Vec<Diagnosis> = processes
        .iter()
        .map(|process| {
            let listening: Vec<SocketAddr> = table
                .iter()
                .flat_map(|t| {
                    t.sockets
                        .iter()
                        .filter(|s| t.owners(s).any(|o| o.pid == process.pid))
                })
                .map(|s| s.local)
                .collect();
            leftover(who, process, &listening)
        })
        .collect();
    let killed = terminate(&processes);
    for (diagnosis, process) in diagnoses.iter_mut().zip(&processes) {
        diagnosis.evidence.push(if killed.contains(&process.pid) {
            format!(
                "--isolate sent it SIGTERM, and SIGKILL {} ms later",
                GRACE.as_millis()
            )
        } else {
            "--isolate ended it with SIGTERM".to_owned()
        });
    }
    reap(spare);
    diagnoses
}

fn leftover(who: &str, process: &ProcessInfo, listening: &[SocketAddr]) -> Diagnosis {
    let (pid, command) = (process.pid, process.command());
    let mut diagnosis = match listening.first() {
        Some(&addr) => {
            let all: Vec<String> = listening.iter().map(ToString::to_string).collect();
            Diagnosis::new(
                Code::LeakedListener,
                Some(addr),
                format!(
                    "{who} ended and its process pid {pid} `{command}` still listened on {} in the test's network namespace",
                    all.join(", ")
                ),
                "stop the server before the test returns (keep its `Child` and kill and wait for it, for example in a guard's `Drop`); without --isolate it would outlive the test and hold its port",
            )
        }
        None => Diagnosis::new(
            Code::LeakedChild,
            None,
            format!(
                "{who} ended and its child pid {pid} `{command}` was still running in the test's network namespace"
            ),
            "keep the `Child` and end it before the test returns (`child.kill()` then `child.wait()`, for example in a guard's `Drop`)",
        ),
    };
    let role = if listening.is_empty() { "child" } else { "listener" };
    diagnosis.processes.push(process_ref(process, role));
    diagnosis
}

/// SIGTERM to each, then SIGKILL to those still alive after [`GRACE`]; returns the pids that
/// needed SIGKILL. A process is signalled through a pidfd opened while its start time still
/// matches what was read, so a reused pid is never hit.
fn terminate(processes: &[ProcessInfo]) -> Vec<u32> {
    let handles: Vec<(&ProcessInfo, Option<Pidfd>)> = processes.iter().map(|p| (p, Pidfd::open(p))).collect();
    for (_, handle) in &handles {
        if let Some(handle) = handle {
            handle.signal(libc::SIGTERM);
        }
    }
    let started = Instant::now();
    let alive = |handles: &[(&ProcessInfo, Option<Pidfd>)]| -> Vec<u32> {
        handles
            .iter()
            .filter(|(p, h)| h.is_some() && running(p))
            .map(|(p, _)| p.pid)
            .collect()
    };
    // Bounded by time and count: the leftovers reparented to this process only leave
    // zombies behind, which are reaped here as they come.
    for _ in 0..100 {
        reap_ready();
        if alive(&handles).is_empty() || started.elapsed() >= GRACE {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let stubborn = alive(&handles);
    for (process, handle) in &handles {
        if stubborn.contains(&process.pid)
            && let Some(handle) = handle
        {
            handle.signal(libc::SIGKILL);
        }
    }
    stubborn
}

/// Whether `process` still runs: the same process (by start time), not yet a zombie.
fn running(process: &ProcessInfo) -> bool {
    ProcessInfo::read(process.pid)
        .is_some_and(|now| now.start_time == process.start_time && now.state != Some('Z'))
}

/// Reaps every exited child without waiting.
fn reap_ready() {
    let mut status = 0;
    // SAFETY: waitpid with WNOHANG writes the status of an exited child, if any.
    while unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) } > 0 {}
}

/// Waits until no descendant but `spare` is left: killed ones become zombies, then reaped;
/// descendants started meanwhile are killed too.
fn reap(spare: &[u32]) {
    let started = Instant::now();
    for _ in 0..1000 {
        reap_ready();
        let left = descendants(spare);
        if left.is_empty() || started.elapsed() > REAP_LIMIT {
            return;
        }
        for pid in left {
            if let Some(process) = ProcessInfo::read(pid).filter(|p| p.state != Some('Z'))
                && let Some(handle) = Pidfd::open(&process)
            {
                handle.signal(libc::SIGKILL);
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// A process handle that survives pid reuse.
struct Pidfd(std::os::fd::OwnedFd);

impl Pidfd {
    /// Opens `process`'s pidfd, if it is still the process that was read.
    fn open(process: &ProcessInfo) -> Option<Pidfd> {
        use std::os::fd::FromRawFd;
        // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, process.pid as libc::pid_t, 0) };
        if fd < 0 {
            return None;
        }
        // SAFETY: a fresh descriptor owned by nothing else.
        let handle = Pidfd(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) });
        let same = ProcessInfo::read(process.pid).is_some_and(|now| now.start_time == process.start_time);
        same.then_some(handle)
    }

    fn signal(&self, signal: i32) {
        use std::os::fd::AsRawFd;
        // SAFETY: sends a signal through a pidfd this struct owns.
        unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.0.as_raw_fd(),
                signal,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            );
        }
    }
}
