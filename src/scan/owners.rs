//! Which processes hold which sockets: each `/proc/PID/fd/N` of a socket is a symbolic link
//! to `socket:[INODE]`.

use std::collections::HashMap;
use std::io;

use super::process::parse_decimal;
use super::procfs::{ProcFs, readlink_at};

/// The result of an owner search.
#[derive(Debug, Default)]
pub(crate) struct Owners {
    /// Holders by inode, ascending; an inode nobody was found holding maps to an empty list.
    pub(crate) pids: HashMap<u64, Vec<u32>>,
    /// Processes whose descriptors could not be read (other users' without privileges, or
    /// processes that hide them, like PID 1 in some sandboxes).
    pub(crate) hidden_processes: usize,
}

/// Finds the processes holding the sockets `inodes` (0 is ignored: `TIME_WAIT` sockets have
/// no file).
///
/// The walk starts with the processes `first` (tests usually ask about their own sockets, a
/// test runner about its children's), then, with `full`, goes through `/proc` and stops after
/// the process in which the last wanted inode was found. If some remain, a second pass visits
/// the processes that appeared during the first one, which catches sockets handed to a freshly
/// started process; hidden and closed sockets stay unresolved.
pub(crate) fn find(
    proc: &ProcFs,
    inodes: impl IntoIterator<Item = u64>,
    first: &[u32],
    full: bool,
) -> Owners {
    let pids: HashMap<u64, Vec<u32>> = inodes
        .into_iter()
        .filter(|&i| i != 0)
        .map(|i| (i, Vec::new()))
        .collect();
    let mut walk = Walk {
        proc,
        remaining: pids.len(),
        pids,
        hidden: 0,
        link: [0; 64],
    };
    if walk.remaining > 0 {
        for &pid in first {
            walk.process(pid);
            if walk.remaining == 0 {
                break;
            }
        }
        let visited = |pid: u32| first.contains(&pid);
        let mut seen = Vec::new();
        if full
            && walk.remaining > 0
            && let Ok(all) = proc.pids()
        {
            for pid in all.filter(|&pid| !visited(pid)) {
                seen.push(pid);
                walk.process(pid);
                if walk.remaining == 0 {
                    break;
                }
            }
        }
        if full
            && walk.remaining > 0
            && let Ok(all) = proc.pids()
        {
            seen.sort_unstable();
            for pid in all.filter(|&pid| !visited(pid) && seen.binary_search(&pid).is_err()) {
                walk.process(pid);
                if walk.remaining == 0 {
                    break;
                }
            }
        }
    }
    for holders in walk.pids.values_mut() {
        holders.sort_unstable();
    }
    Owners {
        pids: walk.pids,
        hidden_processes: walk.hidden,
    }
}

struct Walk<'p> {
    proc: &'p ProcFs,
    pids: HashMap<u64, Vec<u32>>,
    /// Wanted inodes without any holder yet.
    remaining: usize,
    hidden: usize,
    /// `socket:[INODE]` needs at most 29 bytes; longer targets (paths) are cut, which is fine
    /// since only the prefix matters.
    link: [u8; 64],
}

impl Walk<'_> {
    fn process(&mut self, pid: u32) {
        let mut fds = match self.proc.open_dir(pid, c"fd") {
            Ok(fds) => fds,
            Err(err) => {
                if denied(&err) {
                    self.hidden += 1;
                }
                // Otherwise the process exited: nothing to see.
                return;
            }
        };
        let dir = fds.fd();
        while let Some(name) = fds.next_name() {
            match readlink_at(dir, name, &mut self.link) {
                Ok(len) => {
                    let Some(inode) = socket_inode(&self.link[..len]) else {
                        continue;
                    };
                    if let Some(holders) = self.pids.get_mut(&inode) {
                        if holders.is_empty() {
                            self.remaining -= 1;
                        }
                        if !holders.contains(&pid) {
                            holders.push(pid);
                        }
                    }
                }
                // A listable directory whose links are unreadable: the process hides them.
                Err(err) if denied(&err) => {
                    self.hidden += 1;
                    return;
                }
                // The descriptor was closed meanwhile.
                Err(_) => {}
            }
        }
    }
}

fn denied(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::EACCES | libc::EPERM))
}

/// The inode of a `socket:[INODE]` link target.
fn socket_inode(target: &[u8]) -> Option<u64> {
    parse_decimal(target.strip_prefix(b"socket:[")?.strip_suffix(b"]")?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_links() {
        assert_eq!(socket_inode(b"socket:[6200]"), Some(6200));
        assert_eq!(socket_inode(b"socket:[18446744073709551615]"), Some(u64::MAX));
        assert_eq!(socket_inode(b"socket:[]"), None);
        assert_eq!(socket_inode(b"socket:[12"), None);
        assert_eq!(socket_inode(b"pipe:[6200]"), None);
        assert_eq!(socket_inode(b"/dev/null"), None);
        assert_eq!(socket_inode(b"anon_inode:[eventpoll]"), None);
    }

    #[test]
    fn finds_own_socket_and_nothing_for_unknown_inodes() {
        use std::os::unix::fs::MetadataExt;

        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let inode = std::fs::metadata(format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(&listener)
        ))
        .map(|m| m.ino())
        .expect("own fd metadata");
        let proc = ProcFs::open().unwrap();
        let me = [std::process::id()];
        let found = find(&proc, [inode, 0], &me, true);
        assert_eq!(
            found.pids.get(&inode).map(Vec::as_slice),
            Some(&[std::process::id()][..])
        );
        assert!(!found.pids.contains_key(&0));

        // An inode no socket has: every process is visited (twice at most) and none matches.
        let found = find(&proc, [u64::MAX], &me, true);
        assert_eq!(found.pids.get(&u64::MAX).map(Vec::len), Some(0));
        assert!(find(&proc, [], &me, true).pids.is_empty());
        // Without the full walk only the first processes are looked at.
        let found = find(&proc, [inode], &[1], false);
        assert_eq!(found.pids.get(&inode).map(Vec::len), Some(0));
    }
}
