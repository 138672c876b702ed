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

use super::Unavailable;

#[cfg(target_os = "linux")]
use loopcheck::scan::{self, ScanOptions};

/// The holders of a run; dropping them ends them (their stdin closes, and they are killed).
#[derive(Debug)]
pub(crate) struct Pool {
    holders: Vec<Child>,
}

impl Pool {
    /// Starts `slots` holders, which enter their namespaces meanwhile; see [`Pool::ready`].
    pub(super) fn start(exe: &std::path::Path, slots: usize) -> Result<Pool, Unavailable> {
        let mut pool = Pool { holders: Vec::new() };
        for _ in 0..slots.max(1) {
            let child = Command::new(exe)
                .args(["loopcheck", "__isolate", "--hold"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|err| {
                    Unavailable::new(
                        format!("`{}` cannot be started ({err})", exe.display()),
                        "reinstall cargo-loopcheck",
                    )
                })?;
            pool.holders.push(child);
        }
        Ok(pool)
    }

    /// Waits until every holder is in its namespaces: how isolation works here, or why it
    /// does not (the holders are the availability check of a run).
    pub(super) fn ready(&mut self) -> Result<String, Unavailable> {
        let mut how = None;
        for holder in &mut self.holders {
            let mut line = String::new();
            if let Some(stdout) = holder.stdout.take() {
                let _ = BufReader::new(stdout).read_line(&mut line);
            }
            let answer = super::parse_answer(line.as_bytes(), true)?;
            how.get_or_insert(answer);
        }
        Ok(how.unwrap_or_default())
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

/// `__isolate --hold`: enters namespaces, answers as `__isolate --check` does (one JSON
/// line), and keeps them until stdin closes.
#[cfg(target_os = "linux")]
pub(super) fn hold() -> u8 {
    use std::io::Read;
    // SAFETY: prctl with plain values: the holder never outlives the run.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    if super::wrapper::check() != crate::Exit::OK {
        return crate::Exit::COULD_NOT_RUN;
    }
    let mut rest = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut rest);
    crate::Exit::OK
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
