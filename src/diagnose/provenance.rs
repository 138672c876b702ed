//! Where a process comes from: a leftover of a test run (a zombie, LC002), a live binary of
//! the workspace, or unrelated; and how a diagnosis names a process.

use std::path::{Path, PathBuf};

use crate::report::ProcessRef;
use crate::scan::{ProcessInfo, SocketEntry, SocketTable};

/// Where a process comes from, as far as loopcheck can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Provenance {
    /// A leftover of a test run: orphaned, and a test started it (it carries
    /// `LOOPCHECK_TEST`) or cargo built it (its executable lies in a target directory).
    Zombie {
        /// Why, in words.
        reason: String,
    },
    /// Built in a cargo target directory, with its parent still running: a live server of
    /// that workspace (`cargo run`, a suite in another terminal).
    WorkspaceBinary {
        /// The target directory its executable lies in.
        target_dir: PathBuf,
    },
    /// Nothing ties it to a test run.
    Unrelated,
}

/// Tells whether a process is a leftover of a test run (a zombie listener, LC002).
///
/// A process is a zombie when it is orphaned (its parent is gone: it was reparented to PID 1
/// or to a subreaper such as `systemd --user`) and either carries `LOOPCHECK_TEST` or runs an
/// executable from a cargo target directory. A process from a target directory whose parent
/// still runs is a live server of that workspace, never a zombie.
pub fn classify(process: &ProcessInfo) -> Provenance {
    let target_dir = process.exe.as_deref().and_then(cargo_target_dir);
    let orphan = orphaned(process);
    match (&process.loopcheck_test, target_dir, orphan) {
        (Some(test), _, Some(why)) => Provenance::Zombie {
            reason: format!(
                "it carries LOOPCHECK_TEST={test} and {why}, so the test that started it has ended"
            ),
        },
        (None, Some(dir), Some(why)) => {
            let what = if process.exe.as_deref().is_some_and(crate::sys::is_test_binary) {
                "a test binary"
            } else {
                "a binary"
            };
            Provenance::Zombie {
                reason: format!("it is {what} built in {} and {why}", dir.display()),
            }
        }
        (_, Some(target_dir), None) => Provenance::WorkspaceBinary { target_dir },
        _ => Provenance::Unrelated,
    }
}

/// Why the process counts as orphaned, or `None` when it may still have the parent it was
/// started by.
///
/// A parent that is PID 1 or an init-like subreaper is ambiguous: a server started by
/// `docker run --init` or by an init script has that parent from birth. The process group
/// tells them apart: a child started by a test runner stays in the runner's group (nextest
/// gives each test process its own), and once the runner is gone the group has no leader. An
/// unknown parent (pid 0 after `docker exec`, an unreadable `stat`) never counts.
fn orphaned(process: &ProcessInfo) -> Option<String> {
    let ppid = process.ppid?;
    let adopter = if ppid == 1 {
        "PID 1".to_owned()
    } else {
        match ProcessInfo::read(ppid) {
            None if cfg!(target_os = "linux") => return Some(format!("its parent {ppid} is gone")),
            Some(parent) if is_reaper(&parent) => format!("the subreaper {ppid} `{}`", parent.name),
            _ => return None,
        }
    };
    let pgid = process.pgid?;
    if pgid == process.pid || ProcessInfo::read(pgid).is_some() {
        return None;
    }
    Some(format!(
        "its parent is gone (it was reparented to {adopter}) and so is the leader of its process group, pid {pgid}"
    ))
}

/// Init systems and container inits adopt orphans: a process whose parent is one of them may
/// have lost its real parent.
fn is_reaper(parent: &ProcessInfo) -> bool {
    matches!(
        parent.name.as_str(),
        "systemd"
            | "init"
            | "tini"
            | "dumb-init"
            | "docker-init"
            | "catatonit"
            | "s6-svscan"
            | "runit"
            | "launchd"
    )
}

/// The cargo target directory `exe` lies in: the nearest ancestor with cargo's `CACHEDIR.TAG`.
pub fn cargo_target_dir(exe: &Path) -> Option<PathBuf> {
    let exe = exe.to_str().map_or(exe.to_path_buf(), |s| {
        PathBuf::from(s.trim_end_matches(" (deleted)"))
    });
    exe.ancestors()
        .skip(1)
        .find(|dir| dir.join("CACHEDIR.TAG").is_file())
        .map(Path::to_path_buf)
}

/// How a diagnosis names `process`: pid, command, user, executable and test, with its `role`
/// in the diagnosis (`listener`, `child`, `zombie`).
///
/// ```
/// use loopcheck::{diagnose::process_ref, scan::ProcessInfo};
///
/// if let Some(me) = ProcessInfo::read(std::process::id()) {
///     assert_eq!(process_ref(&me, "listener").pid, std::process::id());
/// }
/// ```
pub fn process_ref(process: &ProcessInfo, role: &str) -> ProcessRef {
    ProcessRef {
        pid: process.pid,
        command: process.command(),
        user: process.user.clone(),
        exe: process.exe.clone(),
        test: process.loopcheck_test.clone(),
        role: role.to_owned(),
        binary: None,
        first_seen: None,
        last_seen: None,
    }
}

/// A listener held by a leftover of a test run (LC002).
#[derive(Debug, Clone)]
pub struct ZombieListener {
    /// The listening socket.
    pub socket: SocketEntry,
    /// The process holding it.
    pub process: ProcessInfo,
    /// Why it counts as a leftover.
    pub reason: String,
}

/// Every listener in `table` whose holder [`classify`] calls a zombie, one entry per process
/// and address.
///
/// ```
/// let table = loopcheck::scan::scan_with(&loopcheck::scan::ScanOptions::listeners())?;
/// for zombie in loopcheck::diagnose::zombie_listeners(&table) {
///     println!("{} held by pid {}: {}", zombie.socket.local, zombie.process.pid, zombie.reason);
/// }
/// # Ok::<(), loopcheck::scan::ScanError>(())
/// ```
pub fn zombie_listeners(table: &SocketTable) -> Vec<ZombieListener> {
    let mut verdicts: std::collections::HashMap<u32, Provenance> = std::collections::HashMap::new();
    let mut zombies = Vec::new();
    for socket in table.sockets.iter().filter(|s| s.is_listener()) {
        for process in table.owners(socket) {
            let verdict = verdicts.entry(process.pid).or_insert_with(|| classify(process));
            if let Provenance::Zombie { reason } = verdict {
                zombies.push(ZombieListener {
                    socket: socket.clone(),
                    process: process.clone(),
                    reason: reason.clone(),
                });
            }
        }
    }
    zombies
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_binaries_are_recognised() {
        assert!(crate::sys::is_test_binary(Path::new(
            "/w/target/debug/deps/alloc-0123456789abcdef"
        )));
        assert!(crate::sys::is_test_binary(Path::new(
            "/w/target/debug/deps/alloc-0123456789abcdef (deleted)"
        )));
        assert!(!crate::sys::is_test_binary(Path::new("/w/target/debug/alloc")));
        assert!(!crate::sys::is_test_binary(Path::new("/usr/bin/python3")));
    }
}
