//! The pieces of a socket sampler (Linux): a listener dump on a kept netlink socket, owner
//! search that starts with chosen processes, and cheap reads of `/proc`. `cargo loopcheck test`
//! builds its socket timeline from these, every few milliseconds while a suite runs.

use std::collections::HashMap;

use super::process::{ProcessReader, find_env};
use super::procfs::{LastPid, ProcFs};
use super::sock_diag::{Dumper, Family, Query, TCP_LISTEN_BIT, UDP_UNCONNECTED_BIT};
use super::{ProcessInfo, Protocol, ScanError, SocketEntry};

/// What every sample asks the kernel: listening TCP and unconnected (bound) UDP sockets, over
/// IPv4 and IPv6 (TCP in one dump). Connected sockets and `TIME_WAIT` are filtered out by the
/// kernel.
const LISTENERS: [Query; 3] = [
    Query {
        protocol: Protocol::Tcp,
        family: Family::Both,
        states: TCP_LISTEN_BIT,
    },
    Query {
        protocol: Protocol::Udp,
        family: Family::V4,
        states: UDP_UNCONNECTED_BIT,
    },
    Query {
        protocol: Protocol::Udp,
        family: Family::V6,
        states: UDP_UNCONNECTED_BIT,
    },
];

/// A kept `/proc` handle and netlink socket for sampling the host's listeners again and again.
///
/// ```
/// # #[cfg(target_os = "linux")] {
/// let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
/// let port = listener.local_addr()?.port();
/// let mut watch = loopcheck::scan::Watch::open()?;
/// let mut sockets = Vec::new();
/// watch.listeners(&mut sockets)?;
/// let mine = sockets.iter().find(|s| s.local.port() == port).expect("listed");
/// let owners = watch.owners(&[mine.inode.unwrap()], &[std::process::id()], false);
/// assert_eq!(owners[&mine.inode.unwrap()], [std::process::id()]);
/// # }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Watch {
    proc: ProcFs,
    last_pid: Option<LastPid>,
    dumper: Dumper,
    buf: Vec<u8>,
    link: Vec<u8>,
    /// User names by uid, read from `/etc/passwd` once.
    users: Option<HashMap<u32, String>>,
}

impl Watch {
    /// Opens `/proc` and a netlink `sock_diag` socket.
    ///
    /// # Errors
    ///
    /// [`ScanError::SockDiag`] when netlink is refused, [`ScanError::Read`] when `/proc` is
    /// missing.
    pub fn open() -> Result<Watch, ScanError> {
        let proc = ProcFs::open().map_err(|source| ScanError::Read {
            path: "/proc".into(),
            source,
        })?;
        let last_pid = same_pid_namespace(&proc).then(LastPid::open).and_then(Result::ok);
        Ok(Watch {
            proc,
            last_pid,
            dumper: Dumper::open().map_err(ScanError::SockDiag)?,
            buf: Vec::with_capacity(4096),
            link: vec![0; libc::PATH_MAX as usize + 1],
            users: None,
        })
    }

    /// Appends the host's listening TCP and unconnected UDP sockets to `out`, without owners.
    /// [`SocketEntry::recv_queue`] of a TCP listener is its accept queue (connections
    /// waiting for `accept()`), [`SocketEntry::send_queue`] its backlog.
    ///
    /// # Errors
    ///
    /// [`ScanError::SockDiag`] when the dump fails.
    pub fn listeners(&mut self, out: &mut Vec<SocketEntry>) -> Result<(), ScanError> {
        self.dumper
            .dump(&LISTENERS, out)
            .map(drop)
            .map_err(ScanError::SockDiag)
    }

    /// The holders of the sockets `inodes`, looked for in the processes `first`, then, with
    /// `full`, through all of `/proc`. An inode nobody was seen holding maps to an empty list.
    pub fn owners(&self, inodes: &[u64], first: &[u32], full: bool) -> HashMap<u64, Vec<u32>> {
        super::owners::find(&self.proc, inodes.iter().copied(), first, full).pids
    }

    /// Reads process `pid`; `None` when it is gone.
    pub fn process(&mut self, pid: u32) -> Option<ProcessInfo> {
        let mut reader = ProcessReader::with_users(&self.proc, self.users.take());
        let process = reader.read(pid);
        self.users = reader.into_users();
        process
    }

    /// Appends the pids of every process to `out` (one `/proc` directory listing).
    pub fn pids(&self, out: &mut Vec<u32>) {
        if let Ok(pids) = self.proc.pids() {
            out.extend(pids);
        }
    }

    /// The last pid the kernel handed out (in this pid namespace); `None` where the kernel
    /// does not say. Unchanged since the last look means no process started meanwhile.
    pub fn last_pid(&self) -> Option<u32> {
        self.last_pid.as_ref()?.read()
    }

    /// Appends the pids from `first` up to `out` (and perhaps `first - 1`): a listing of
    /// only the processes started since a pid was handed out, while pids have not wrapped
    /// around. `false` when this kernel cannot list from a pid (`out` is left alone).
    pub fn pids_from(&self, first: u32, out: &mut Vec<u32>) -> bool {
        match self.proc.pids_from(first) {
            Ok(pids) => {
                out.extend(pids);
                true
            }
            Err(_) => false,
        }
    }

    /// Whether a TCP socket still listens on `addr` (or its family's wildcard address): one
    /// exact lookup, no dump; `None` when the kernel cannot be asked.
    pub fn tcp_listening(&self, addr: std::net::SocketAddr) -> Option<bool> {
        super::tcp_listening(addr).ok()
    }

    /// Whether process `pid` exists (runs, or has ended and is not reaped yet).
    pub fn exists(&self, pid: u32) -> bool {
        self.proc.exists(pid)
    }

    /// The children of process `pid`: those of each of its threads (Linux 3.5 and later).
    pub fn children(&mut self, pid: u32) -> Vec<u32> {
        let mut children = Vec::new();
        let Ok(mut tasks) = self.proc.open_dir(pid, c"task") else {
            return children;
        };
        let dir = tasks.fd();
        while let Some(tid) = tasks.next_name() {
            let mut path = tid.to_bytes().to_vec();
            path.extend_from_slice(b"/children\0");
            let Ok(path) = std::ffi::CStr::from_bytes_with_nul(&path) else {
                continue;
            };
            if super::procfs::read_at(dir, path, &mut self.buf).is_ok() {
                children.extend(
                    self.buf
                        .split(|b| b.is_ascii_whitespace())
                        .filter_map(super::procfs::parse_u32),
                );
            }
        }
        children
    }

    /// The parent of process `pid`; `None` when it is gone or has none.
    pub fn parent(&mut self, pid: u32) -> Option<u32> {
        self.proc.read(pid, c"stat", &mut self.buf).ok()?;
        super::process::parse_stat(&self.buf)?.ppid
    }

    /// The executable of process `pid`, cheaply (one `readlink`): it changes when the process
    /// runs `exec`.
    pub fn exe(&mut self, pid: u32) -> Option<std::path::PathBuf> {
        use std::os::unix::ffi::OsStrExt;

        let path = self.proc.readlink(pid, c"exe", &mut self.link).ok()?;
        Some(std::path::PathBuf::from(std::ffi::OsStr::from_bytes(path)))
    }

    /// The values of the environment variables `keys` of process `pid`, in order; all `None`
    /// when its environment is unreadable (another user's process, or gone).
    pub fn environment(&mut self, pid: u32, keys: &[&str]) -> Vec<Option<String>> {
        if self.proc.read(pid, c"environ", &mut self.buf).is_err() {
            return vec![None; keys.len()];
        }
        keys.iter()
            .map(|key| find_env(&self.buf, key.as_bytes()))
            .collect()
    }
}

/// Whether `/proc` shows this process's own pid namespace, whose last pid `ns_last_pid` is: a
/// `/proc` mounted from another namespace numbers processes differently.
fn same_pid_namespace(proc: &ProcFs) -> bool {
    let mut link = [0u8; 16];
    proc.readlink_root(c"self", &mut link)
        .ok()
        .and_then(super::procfs::parse_u32)
        == Some(std::process::id())
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sees_a_child_and_its_listener() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .expect("sleep runs");
        let mut watch = Watch::open().unwrap();
        let mut pids = Vec::new();
        watch.pids(&mut pids);
        let parent = watch.parent(child.id());
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(pids.contains(&child.id()), "{pids:?}");
        assert_eq!(parent, Some(std::process::id()));

        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut sockets = Vec::new();
        watch.listeners(&mut sockets).unwrap();
        let entry = sockets
            .iter()
            .find(|s| s.local.port() == port && s.protocol == Protocol::Tcp)
            .expect("our listener is listed");
        let inode = entry.inode.unwrap();
        let owners = watch.owners(&[inode], &[], true);
        assert_eq!(owners[&inode], [std::process::id()]);
        let me = std::process::id();
        assert_eq!(watch.parent(me), ProcessInfo::read(me).and_then(|p| p.ppid));
        assert_eq!(watch.exe(me), std::env::current_exe().ok());
        assert_eq!(watch.process(me).map(|p| p.pid), Some(me));
        let path = watch.environment(me, &["PATH", "LOOPCHECK_NO_SUCH_VAR"]);
        assert_eq!(path[0], std::env::var("PATH").ok());
        assert_eq!(path[1], None);
    }

    #[test]
    fn lists_only_the_processes_started_since_a_pid() {
        let mut watch = Watch::open().unwrap();
        let Some(before) = watch.last_pid() else {
            crate::sys::skip_test("this kernel has no /proc/sys/kernel/ns_last_pid");
            return;
        };
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .expect("sleep runs");
        let pid = child.id();
        let after = watch.last_pid();
        let mut since = Vec::new();
        let listed = watch.pids_from(before + 1, &mut since);
        let children = watch.children(std::process::id());
        let exists = watch.exists(pid);
        child.kill().unwrap();
        child.wait().unwrap();
        let gone = watch.exists(pid);

        assert!(after.is_some_and(|after| after >= pid), "{after:?} >= {pid}");
        assert!(listed, "this kernel lists /proc from a pid");
        assert!(since.contains(&pid), "{pid} in {since:?}");
        // Only the new ones (the one before them may be listed too), in order.
        assert!(since.iter().all(|&p| p >= before), "{since:?} from {before}");
        assert!(since.is_sorted(), "{since:?}");
        assert!(!since.contains(&1) || before <= 1);
        assert!(children.contains(&pid), "{pid} in {children:?}");
        assert!(exists && !gone, "the child exists, then is reaped");
        // From past the last pid, only what started since (likely nothing) is listed.
        let beyond = after.unwrap_or(pid) + 1;
        let mut newer = Vec::new();
        assert!(watch.pids_from(beyond, &mut newer));
        assert!(newer.iter().all(|&p| p + 1 >= beyond), "{newer:?} from {beyond}");
    }
}
