use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;

use serde::Serialize;

use super::ProcessInfo;
// Defined with the report types: run records (`crate::run`) carry it too, and the run
// contract must not import the scanner.
pub use crate::report::Protocol;

/// A snapshot of the host's TCP and UDP sockets, with the processes that hold them.
///
/// Produced by [`scan`](super::scan) and [`scan_with`](super::scan_with). The snapshot is not
/// atomic: sockets opened or closed while it is taken may or may not be in it.
///
/// ```
/// use loopcheck::scan;
///
/// let table = scan::scan()?;
/// for socket in table.listeners_on(8080) {
///     let holders: Vec<String> = table.owners(socket).map(|p| p.command()).collect();
///     println!("{} {} held by {:?}", socket.protocol, socket.local, holders);
/// }
/// # Ok::<(), scan::ScanError>(())
/// ```
#[derive(Debug, Clone, Serialize)]
pub struct SocketTable {
    /// The sockets, sorted by protocol, local port, local address, then remote address.
    pub sockets: Vec<SocketEntry>,
    /// The processes named in any socket's [`pids`](SocketEntry::pids), by pid.
    ///
    /// A pid can be missing here when its process exited between finding the socket and
    /// reading the process.
    pub processes: BTreeMap<u32, ProcessInfo>,
    /// The backend that produced this table.
    pub backend: Backend,
    /// What this snapshot could not see, as sentences for a human, for example
    /// `"owners of 1 socket are hidden: the file descriptors of 1 process are unreadable
    /// (other users' processes, or PID 1's)"`. Empty when nothing is known to be missing.
    pub limitations: Vec<String>,
}

impl SocketTable {
    /// The sockets accepting new peers on local port `port`: TCP sockets in
    /// [`SocketState::Listen`] and unconnected UDP sockets (see [`SocketEntry::is_listener`]).
    ///
    /// Every local address counts: `127.0.0.1`, `[::1]`, wildcards and any other.
    ///
    /// ```
    /// use loopcheck::scan;
    ///
    /// let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    /// let port = listener.local_addr()?.port();
    /// let table = scan::scan()?;
    /// assert!(table.listeners_on(port).any(|s| s.local == listener.local_addr().unwrap()));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn listeners_on(&self, port: u16) -> impl Iterator<Item = &SocketEntry> {
        self.on_port(port).filter(|s| s.is_listener())
    }

    /// Every socket whose *local* port is `port`, in any state: listeners, both ends of
    /// connections accepted on it, and `TIME_WAIT` leftovers.
    ///
    /// ```
    /// use loopcheck::scan::{self, SocketState};
    ///
    /// let table = scan::scan()?;
    /// let time_wait = table.on_port(8080).filter(|s| s.state == SocketState::TimeWait).count();
    /// println!("{time_wait} TIME_WAIT sockets on port 8080");
    /// # Ok::<(), scan::ScanError>(())
    /// ```
    pub fn on_port(&self, port: u16) -> impl Iterator<Item = &SocketEntry> {
        self.sockets.iter().filter(move |s| s.local.port() == port)
    }

    /// The processes holding socket `socket`, as far as they are known and still running.
    ///
    /// ```
    /// use loopcheck::scan;
    ///
    /// let table = scan::scan()?;
    /// for socket in &table.sockets {
    ///     for process in table.owners(socket) {
    ///         println!("{} is held by pid {} ({})", socket.local, process.pid, process.command());
    ///     }
    /// }
    /// # Ok::<(), scan::ScanError>(())
    /// ```
    pub fn owners<'a>(&'a self, socket: &'a SocketEntry) -> impl Iterator<Item = &'a ProcessInfo> {
        socket.pids.iter().filter_map(|pid| self.processes.get(pid))
    }
}

/// One socket (TCP or UDP, IPv4 or IPv6) as the kernel or the backend reported it.
///
/// ```
/// use loopcheck::scan::{self, Protocol, SocketState};
///
/// let table = scan::scan()?;
/// let listening_tcp = table
///     .sockets
///     .iter()
///     .filter(|s| s.protocol == Protocol::Tcp && s.state == SocketState::Listen)
///     .count();
/// println!("{listening_tcp} TCP listeners");
/// # Ok::<(), scan::ScanError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SocketEntry {
    /// TCP or UDP.
    pub protocol: Protocol,
    /// The local address. Wildcards show as `0.0.0.0` or `[::]`; IPv4-mapped IPv6 addresses
    /// (`[::ffff:127.0.0.1]`) stay as the kernel reports them.
    pub local: SocketAddr,
    /// The peer, or `None` when the socket is not connected (listeners, unconnected UDP).
    pub remote: Option<SocketAddr>,
    /// The TCP state; UDP sockets are [`SocketState::Close`] when unconnected and
    /// [`SocketState::Established`] when connected.
    pub state: SocketState,
    /// Bytes received and not yet read. For a TCP listener: connections waiting in the
    /// accept queue (the current backlog).
    pub recv_queue: u32,
    /// Bytes sent and not yet acknowledged. For a TCP listener: the maximum backlog, with the
    /// netlink backend only (`/proc/net` and the other backends report 0).
    pub send_queue: u32,
    /// The socket's owner user id, when the backend reports it: the creator's uid with the
    /// Linux backends, the holding process's uid with `lsof`, never with `netstat`. `None`
    /// for `TIME_WAIT` sockets, which no longer have one.
    pub uid: Option<u32>,
    /// The socket inode (Linux), which links it to the file descriptors that hold it. `None`
    /// when the socket has none (`TIME_WAIT` sockets) or the backend does not report it.
    pub inode: Option<u64>,
    /// The processes holding the socket, ascending. Empty when the owner is unknown: the
    /// socket belongs to no process (`TIME_WAIT`), its holder hides its file descriptors
    /// (other users' processes without root; PID 1 in some containers), or owners were not
    /// requested ([`ScanOptions::owners`](super::ScanOptions::owners)); backends that learn
    /// owners for free (`lsof`, `netstat`) always fill them.
    ///
    /// On Linux the search over `/proc` stops once every socket has an owner, so a socket
    /// shared by several processes (inherited across `fork`) may list only some of them.
    pub pids: Vec<u32>,
}

impl SocketEntry {
    /// Whether the socket accepts new peers on its local address: a TCP socket in
    /// [`SocketState::Listen`], or an unconnected UDP socket ([`SocketState::Close`]), which
    /// receives datagrams from anyone, as `ss -l` counts it.
    ///
    /// ```
    /// use loopcheck::scan;
    ///
    /// let udp = std::net::UdpSocket::bind("127.0.0.1:0")?;
    /// let table = scan::scan()?;
    /// let entry = table.on_port(udp.local_addr()?.port()).next().expect("the socket is listed");
    /// assert!(entry.is_listener());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_listener(&self) -> bool {
        match self.protocol {
            Protocol::Tcp => self.state == SocketState::Listen,
            Protocol::Udp => self.state == SocketState::Close && self.remote.is_none(),
        }
    }
}

/// The state of a socket, named after the kernel's TCP states.
///
/// UDP has no states of its own: the kernel reports an unconnected UDP socket as
/// [`Close`](SocketState::Close) (`ss` prints `UNCONN`) and a connected one as
/// [`Established`](SocketState::Established); this type keeps that convention so the
/// backends agree. `Display` prints the serialized name (`listen`, `time_wait`).
///
/// ```
/// use loopcheck::scan::SocketState;
///
/// assert_eq!(SocketState::TimeWait.to_string(), "time_wait");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SocketState {
    /// A connection is open.
    Established,
    /// An active open sent SYN and waits for the answer.
    SynSent,
    /// A passive open received SYN; the handshake is not complete.
    SynRecv,
    /// The local side closed first and waits for the acknowledgement.
    FinWait1,
    /// The local side closed first; waiting for the peer to close.
    FinWait2,
    /// The local side closed first and the connection ended: the port pair is held for a
    /// while (60 s on Linux) so that stray segments die out.
    TimeWait,
    /// Closed; for UDP, an unconnected socket.
    Close,
    /// The peer closed; the local side has not.
    CloseWait,
    /// The peer closed first; the local side closed and waits for the last acknowledgement.
    LastAck,
    /// Accepting connections.
    Listen,
    /// Both sides closed at the same time.
    Closing,
    /// A state this crate does not know (a newer kernel's, or an unrecognized name).
    Unknown,
}

impl SocketState {
    /// The serialized, lower-case name: `"listen"`, `"time_wait"`...
    ///
    /// ```
    /// assert_eq!(loopcheck::scan::SocketState::FinWait2.as_str(), "fin_wait2");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            SocketState::Established => "established",
            SocketState::SynSent => "syn_sent",
            SocketState::SynRecv => "syn_recv",
            SocketState::FinWait1 => "fin_wait1",
            SocketState::FinWait2 => "fin_wait2",
            SocketState::TimeWait => "time_wait",
            SocketState::Close => "close",
            SocketState::CloseWait => "close_wait",
            SocketState::LastAck => "last_ack",
            SocketState::Listen => "listen",
            SocketState::Closing => "closing",
            SocketState::Unknown => "unknown",
        }
    }

    /// Maps the kernel's `TCP_*` state numbers (`include/net/tcp_states.h`).
    pub(crate) fn from_kernel(state: u8) -> SocketState {
        match state {
            1 => SocketState::Established,
            2 => SocketState::SynSent,
            // 12 is TCP_NEW_SYN_RECV: a request socket, what users know as SYN_RECV.
            3 | 12 => SocketState::SynRecv,
            4 => SocketState::FinWait1,
            5 => SocketState::FinWait2,
            6 => SocketState::TimeWait,
            7 => SocketState::Close,
            8 => SocketState::CloseWait,
            9 => SocketState::LastAck,
            10 => SocketState::Listen,
            11 => SocketState::Closing,
            _ => SocketState::Unknown,
        }
    }

    /// Maps the state names printed by `lsof`, BSD and Windows `netstat`, and `ss`, ignoring
    /// case, `_` and `-` (`FIN_WAIT_1`, `FIN-WAIT-1` and `FIN_WAIT1` are one state).
    pub(crate) fn from_name(name: &str) -> SocketState {
        let mut key = [0u8; 16];
        let mut len = 0;
        for b in name.bytes().filter(|b| !matches!(b, b'_' | b'-' | b' ')) {
            if len == key.len() {
                return SocketState::Unknown;
            }
            key[len] = b.to_ascii_uppercase();
            len += 1;
        }
        match &key[..len] {
            b"ESTABLISHED" | b"ESTAB" => SocketState::Established,
            b"SYNSENT" => SocketState::SynSent,
            b"SYNRECV" | b"SYNRECEIVED" | b"SYNRCVD" => SocketState::SynRecv,
            b"FINWAIT1" => SocketState::FinWait1,
            b"FINWAIT2" => SocketState::FinWait2,
            b"TIMEWAIT" => SocketState::TimeWait,
            b"CLOSE" | b"CLOSED" | b"UNCONN" => SocketState::Close,
            b"CLOSEWAIT" => SocketState::CloseWait,
            b"LASTACK" => SocketState::LastAck,
            b"LISTEN" | b"LISTENING" => SocketState::Listen,
            b"CLOSING" => SocketState::Closing,
            _ => SocketState::Unknown,
        }
    }
}

impl fmt::Display for SocketState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a [`SocketTable`] came from.
///
/// ```
/// use loopcheck::scan::Backend;
///
/// assert_eq!(Backend::SockDiag.to_string(), "sock_diag");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// Linux netlink `NETLINK_SOCK_DIAG` (what `ss` uses): fast and complete. The default on
    /// Linux.
    SockDiag,
    /// Linux `/proc/net/{tcp,tcp6,udp,udp6}`: the fallback when netlink is refused (some
    /// sandboxes). Slower with many sockets; no maximum backlog for listeners.
    ProcNet,
    /// `lsof -F` output, found on `PATH`: the default on macOS and the other Unixes. Sees only
    /// sockets held by processes it may inspect. Can be forced on Linux.
    Lsof,
    /// `netstat -ano` output: the default on Windows.
    Netstat,
}

impl Backend {
    /// The serialized name: `"sock_diag"`, `"proc_net"`, `"lsof"` or `"netstat"`.
    ///
    /// ```
    /// assert_eq!(loopcheck::scan::Backend::ProcNet.as_str(), "proc_net");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::SockDiag => "sock_diag",
            Backend::ProcNet => "proc_net",
            Backend::Lsof => "lsof",
            Backend::Netstat => "netstat",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_names_from_every_tool_map_to_one_state() {
        for name in ["FIN_WAIT_1", "FIN-WAIT-1", "fin_wait1", "FIN_WAIT1"] {
            assert_eq!(SocketState::from_name(name), SocketState::FinWait1, "{name}");
        }
        assert_eq!(SocketState::from_name("LISTENING"), SocketState::Listen);
        assert_eq!(SocketState::from_name("SYN_RECEIVED"), SocketState::SynRecv);
        assert_eq!(SocketState::from_name("UNCONN"), SocketState::Close);
        assert_eq!(SocketState::from_name("ABHÖREN"), SocketState::Unknown);
        assert_eq!(SocketState::from_name(""), SocketState::Unknown);
        assert_eq!(SocketState::from_name(&"X".repeat(100)), SocketState::Unknown);
    }

    #[test]
    fn display_matches_serialization() {
        for state in [
            SocketState::Established,
            SocketState::SynSent,
            SocketState::SynRecv,
            SocketState::FinWait1,
            SocketState::FinWait2,
            SocketState::TimeWait,
            SocketState::Close,
            SocketState::CloseWait,
            SocketState::LastAck,
            SocketState::Listen,
            SocketState::Closing,
            SocketState::Unknown,
        ] {
            let json = serde_json::to_string(&state).unwrap();
            assert_eq!(json, format!("\"{state}\""));
            if state != SocketState::Unknown {
                assert_eq!(SocketState::from_name(state.as_str()), state);
            }
        }
        for backend in [
            Backend::SockDiag,
            Backend::ProcNet,
            Backend::Lsof,
            Backend::Netstat,
        ] {
            assert_eq!(serde_json::to_string(&backend).unwrap(), format!("\"{backend}\""));
        }
    }

    #[test]
    fn kernel_states() {
        assert_eq!(SocketState::from_kernel(10), SocketState::Listen);
        assert_eq!(SocketState::from_kernel(6), SocketState::TimeWait);
        assert_eq!(SocketState::from_kernel(12), SocketState::SynRecv);
        assert_eq!(SocketState::from_kernel(13), SocketState::Unknown);
        assert_eq!(SocketState::from_kernel(0), SocketState::Unknown);
    }
}
