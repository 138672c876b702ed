//! Namespaces kept for the run: creating a network namespace and tearing it down costs a few
//! milliseconds of wall time and kernel work per test, as much as many tests take. So
//! `cargo loopcheck test --isolate` starts a few *holders* (`__isolate --hold`), each of which
//! enters namespaces of its own (brings `lo` up) and waits; each test's wrapper joins a free
//! one (`setns`), held with a lock on the namespace itself (`flock` on `/proc/PID/ns/net`),
//! so no two tests share one at a time. A test's leftovers are ended before its wrapper exits
//! and releases the namespace. One that still listens when a wrapper arrives (its test's
//! wrapper was killed) is passed over for a fresh namespace.

#[cfg(target_os = "linux")]
use std::fs::File;
use std::io::{BufRead, BufReader};
#[cfg(target_os = "linux")]
use std::os::fd::AsRawFd;
use std::process::{Child, Command, Stdio};

#[cfg(target_os = "linux")]
use loopcheck::scan::{self, ScanOptions};

/// The holders of a run; dropping them ends them (their stdin closes, and they are killed).
#[derive(Debug)]
pub struct Pool {
    holders: Vec<Child>,
}

impl Pool {
    /// Starts `slots` holders; `None` when they cannot be started (each test then creates a
    /// namespace of its own).
    pub(super) fn start(exe: &std::path::Path, slots: usize) -> Option<Pool> {
        let mut pool = Pool { holders: Vec::new() };
        for _ in 0..slots {
            let child = Command::new(exe)
                .args(["loopcheck", "__isolate", "--hold"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .ok()?;
            pool.holders.push(child);
        }
        // Each says `ready` once inside its namespaces.
        for holder in &mut pool.holders {
            let mut line = String::new();
            let stdout = holder.stdout.take()?;
            BufReader::new(stdout).read_line(&mut line).ok()?;
            if line.trim() != "ready" {
                return None;
            }
        }
        Some(pool)
    }

    /// The holders' pids, for the wrappers.
    pub(super) fn pids(&self) -> Vec<u32> {
        self.holders.iter().map(Child::id).collect()
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        for holder in &mut self.holders {
            drop(holder.stdin.take());
            let _ = holder.kill();
            let _ = holder.wait();
        }
    }
}

/// `__isolate --hold`: enters namespaces, says `ready`, and keeps them until stdin closes.
#[cfg(target_os = "linux")]
pub(super) fn hold() -> u8 {
    use std::io::{Read, Write};
    // SAFETY: prctl with plain values: the holder never outlives the run.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    if let Err(unavailable) = super::wrapper::enter_isolated() {
        eprintln!("loopcheck: {unavailable}");
        return crate::ExitCode::COULD_NOT_RUN;
    }
    let mut out = std::io::stdout().lock();
    if writeln!(out, "ready").and_then(|()| out.flush()).is_err() {
        return crate::ExitCode::COULD_NOT_RUN;
    }
    drop(out);
    let mut rest = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut rest);
    crate::ExitCode::OK
}

/// A namespace joined for one test: the lock that keeps it this test's until the wrapper
/// exits.
#[cfg(target_os = "linux")]
#[derive(Debug)]
pub(super) struct Joined {
    _lock: File,
}

/// Joins the first free namespace of the `holders`, if any: its user namespace first when it
/// has one of its own (unprivileged), then its network namespace. Call it while the process
/// has one thread.
#[cfg(target_os = "linux")]
pub(super) fn join(holders: &[u32]) -> Option<Joined> {
    for &pid in holders {
        let Ok(net) = File::open(format!("/proc/{pid}/ns/net")) else {
            continue;
        };
        // SAFETY: flock on a descriptor this function owns.
        if unsafe { libc::flock(net.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            continue;
        }
        // Only a holder: a pid reused by anything else is never joined (opening another
        // user's namespace was refused already).
        let ours = std::fs::read(format!("/proc/{pid}/cmdline"))
            .is_ok_and(|cmdline| cmdline.split(|&b| b == 0).any(|arg| arg == b"--hold"));
        if !ours {
            continue;
        }
        let own_user = std::fs::read_link("/proc/self/ns/user").ok();
        let their_user = std::fs::read_link(format!("/proc/{pid}/ns/user")).ok();
        if their_user != own_user {
            let Ok(user) = File::open(format!("/proc/{pid}/ns/user")) else {
                continue;
            };
            // SAFETY: setns with a namespace descriptor this function owns.
            if unsafe { libc::setns(user.as_raw_fd(), libc::CLONE_NEWUSER) } != 0 {
                return None;
            }
        }
        // SAFETY: as above.
        if unsafe { libc::setns(net.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return None;
        }
        // What an earlier test's killed wrapper left listening would meet this test.
        let clean = scan::scan_with(&ScanOptions {
            tcp: true,
            udp: false,
            listen_only: true,
            owners: false,
            ..ScanOptions::default()
        })
        .is_ok_and(|table| table.sockets.is_empty());
        if !clean {
            return None;
        }
        return Some(Joined { _lock: net });
    }
    None
}
