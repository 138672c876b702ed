//! Linux netlink `NETLINK_SOCK_DIAG` dumps (`inet_diag_req_v2`, and `inet_diag_req` for TCP
//! over both families / `inet_diag_msg`), the way `ss` reads the socket tables, written against
//! the kernel's UAPI layouts (`linux/netlink.h`, `linux/sock_diag.h`, `linux/inet_diag.h`).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::sync::atomic::{AtomicBool, Ordering};

use super::{Protocol, SocketEntry, SocketState};

const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// The older request of `inet_diag` (`struct inet_diag_req`), TCP only: the kernel ignores its
/// family for dumps, so one dump walks each table once for IPv4 and IPv6 together, where
/// `SOCK_DIAG_BY_FAMILY` walks it once per family. Its replies carry this type too.
const TCPDIAG_GETSOCK: u16 = 18;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
/// `NLM_F_DUMP_INTR`: the tables changed while the dump ran, so it may be inconsistent.
const NLM_F_DUMP_INTR: u16 = 0x10;
const NLMSG_HDRLEN: usize = 16;
const INET_DIAG_REQ_V2_LEN: usize = 56;
const INET_DIAG_REQ_LEN: usize = 60;
const INET_DIAG_MSG_LEN: usize = 72;

/// Kernel state bits (`1 << TCP_*`) for [`Query::states`].
pub(crate) const ALL_STATES: u32 = u32::MAX;
pub(crate) const TCP_LISTEN_BIT: u32 = 1 << 10;
/// An unconnected UDP socket is in `TCP_CLOSE`.
pub(crate) const UDP_UNCONNECTED_BIT: u32 = 1 << 7;

/// The kernel sends at most 32 KiB per datagram; twice that leaves room for page-size
/// variants, and a larger datagram is detected (`MSG_TRUNC`) rather than misread.
const RECV_BUFFER: usize = 64 * 1024;
/// Far above any real table (a datagram holds ~370 sockets): only a misbehaving peer gets here.
const MAX_DATAGRAMS_PER_DUMP: usize = 1 << 20;
/// Bounds how often a syscall is restarted after `EINTR`.
const MAX_INTERRUPTS: usize = 1000;
const RECV_TIMEOUT_SECS: libc::time_t = 5;

/// The address families a [`Query`] covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Family {
    V4,
    V6,
    /// IPv4 and IPv6 in one dump: TCP only (see [`TCPDIAG_GETSOCK`]); where the kernel
    /// refuses that request, the dump falls back to one query per family.
    Both,
}

/// One dump request: a protocol over one or both address families, restricted to some states.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Query {
    pub(crate) protocol: Protocol,
    pub(crate) family: Family,
    /// A bit mask of `1 << TCP_*` states; the kernel filters on it, so excluded states
    /// (`TIME_WAIT` for listeners) cost nothing.
    pub(crate) states: u32,
}

/// What a dump noticed besides the sockets.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DumpNotes {
    /// The kernel flagged the dump as interrupted by concurrent changes.
    pub(crate) interrupted: bool,
}

/// Runs `queries` one after the other on one netlink socket, appending to `out`.
pub(crate) fn dump(queries: &[Query], out: &mut Vec<SocketEntry>) -> io::Result<DumpNotes> {
    Dumper::open()?.dump(queries, out)
}

/// Set once the kernel refused a [`Family::Both`] request: dumpers opened after it ask per
/// family at once, rather than each paying for a refusal.
static BOTH_FAMILIES_REFUSED: AtomicBool = AtomicBool::new(false);

/// A netlink socket and its receive buffer, kept for repeated dumps (a sampler's): opening
/// them costs as much as a small dump.
pub(crate) struct Dumper {
    socket: NetlinkSocket,
    buf: Vec<u8>,
    seq: u32,
    /// The kernel refused a [`Family::Both`] request once: ask per family from then on.
    one_family_at_a_time: bool,
}

impl Dumper {
    pub(crate) fn open() -> io::Result<Dumper> {
        Ok(Dumper {
            socket: NetlinkSocket::open()?,
            buf: vec![0u8; RECV_BUFFER],
            seq: 0,
            one_family_at_a_time: BOTH_FAMILIES_REFUSED.load(Ordering::Relaxed),
        })
    }

    /// Runs `queries` one after the other, appending to `out`.
    pub(crate) fn dump(&mut self, queries: &[Query], out: &mut Vec<SocketEntry>) -> io::Result<DumpNotes> {
        let mut notes = DumpNotes::default();
        for query in queries {
            if query.family != Family::Both {
                self.query(query, out, &mut notes)?;
                continue;
            }
            if query.protocol == Protocol::Tcp && !self.one_family_at_a_time {
                let kept = out.len();
                match self.query(query, out, &mut notes) {
                    Ok(()) => continue,
                    Err(error)
                        if matches!(
                            error.raw_os_error(),
                            Some(libc::EINVAL | libc::ENOENT | libc::EOPNOTSUPP)
                        ) =>
                    {
                        out.truncate(kept);
                        self.one_family_at_a_time = true;
                        BOTH_FAMILIES_REFUSED.store(true, Ordering::Relaxed);
                    }
                    Err(error) => return Err(error),
                }
            }
            for family in [Family::V4, Family::V6] {
                self.query(&Query { family, ..*query }, out, &mut notes)?;
            }
        }
        Ok(notes)
    }

    /// One dump; [`dump`](Self::dump) sends a [`Family::Both`] query here for TCP only.
    fn query(&mut self, query: &Query, out: &mut Vec<SocketEntry>, notes: &mut DumpNotes) -> io::Result<()> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let (socket, buf) = (&self.socket, &mut self.buf);
        match query.family {
            Family::Both => socket.send(&request_both_families(seq, query.states))?,
            _ => socket.send(&request(seq, query))?,
        }
        let mut finished = false;
        for _ in 0..MAX_DATAGRAMS_PER_DUMP {
            let len = socket.recv(buf)?;
            if parse_datagram(&buf[..len], seq, query.protocol, out, notes)? == Progress::Done {
                finished = true;
                break;
            }
        }
        if !finished {
            return Err(io::Error::other("netlink dump did not end"));
        }
        Ok(())
    }
}

/// `nlmsghdr` + `inet_diag_req_v2`, with an all-zero socket id (no address filter).
fn request(seq: u32, query: &Query) -> [u8; NLMSG_HDRLEN + INET_DIAG_REQ_V2_LEN] {
    let mut req = [0u8; NLMSG_HDRLEN + INET_DIAG_REQ_V2_LEN];
    dump_header(&mut req, SOCK_DIAG_BY_FAMILY, seq);
    let family = if query.family == Family::V6 {
        libc::AF_INET6
    } else {
        libc::AF_INET
    };
    let protocol = match query.protocol {
        Protocol::Tcp => libc::IPPROTO_TCP,
        Protocol::Udp => libc::IPPROTO_UDP,
    };
    req[16] = family as u8;
    req[17] = protocol as u8;
    // idiag_ext 0: no extensions, so every reply is the bare 72-byte message.
    req[20..24].copy_from_slice(&query.states.to_ne_bytes());
    req
}

/// `nlmsghdr` + `inet_diag_req` for a TCP dump of both families: family, address lengths and
/// extensions zero, an all-zero socket id, then the states (`idiag_dbs` zero).
fn request_both_families(seq: u32, states: u32) -> [u8; NLMSG_HDRLEN + INET_DIAG_REQ_LEN] {
    let mut req = [0u8; NLMSG_HDRLEN + INET_DIAG_REQ_LEN];
    dump_header(&mut req, TCPDIAG_GETSOCK, seq);
    let states_at = NLMSG_HDRLEN + 4 + 48;
    req[states_at..states_at + 4].copy_from_slice(&states.to_ne_bytes());
    req
}

/// Writes the `nlmsghdr` of a dump request of type `kind` over the whole of `req`; its
/// `nlmsg_pid` stays 0: the kernel is the destination.
fn dump_header(req: &mut [u8], kind: u16, seq: u32) {
    let len = u32::try_from(req.len()).unwrap_or(u32::MAX);
    let flags = (libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16;
    req[0..4].copy_from_slice(&len.to_ne_bytes());
    req[4..6].copy_from_slice(&kind.to_ne_bytes());
    req[6..8].copy_from_slice(&flags.to_ne_bytes());
    req[8..12].copy_from_slice(&seq.to_ne_bytes());
}

/// Whether a TCP socket listens on `addr`, or on its family's wildcard address: the question
/// a bind of `addr` with `SO_REUSEADDR` answers, asked of the kernel as one exact lookup (no
/// dump) on a netlink socket this process keeps, so it costs a `sendto` and a `recv` instead
/// of a socket's creation, option, bind and close.
pub(crate) fn tcp_listening(addr: SocketAddr) -> io::Result<bool> {
    use std::sync::Mutex;

    static SOCKET: Mutex<Option<(NetlinkSocket, u32)>> = Mutex::new(None);
    let mut guard = SOCKET.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if guard.is_none() {
        *guard = Some((NetlinkSocket::open()?, 0));
    }
    let Some((socket, seq)) = guard.as_mut() else {
        unreachable!("the socket was just opened")
    };
    *seq = seq.wrapping_add(1);
    let query = Query {
        protocol: Protocol::Tcp,
        family: if addr.is_ipv6() { Family::V6 } else { Family::V4 },
        states: TCP_LISTEN_BIT,
    };
    let mut req = request(*seq, &query);
    // An exact lookup: no NLM_F_DUMP.
    req[6..8].copy_from_slice(&(libc::NLM_F_REQUEST as u16).to_ne_bytes());
    // The socket id: local port and address (network byte order); remote all zero; any
    // interface; no cookie.
    let id = NLMSG_HDRLEN + 8;
    req[id..id + 2].copy_from_slice(&addr.port().to_be_bytes());
    match addr.ip() {
        IpAddr::V4(ip) => req[id + 4..id + 8].copy_from_slice(&ip.octets()),
        IpAddr::V6(ip) => req[id + 4..id + 20].copy_from_slice(&ip.octets()),
    }
    req[id + 40..id + 48].fill(0xff);
    socket.send(&req)?;
    let mut buf = [0u8; 4096];
    // Replies to earlier requests that timed out may still be queued: skip them.
    for _ in 0..16 {
        let len = socket.recv(&mut buf)?;
        let mut found = Vec::new();
        let mut notes = DumpNotes::default();
        match parse_datagram(&buf[..len], *seq, Protocol::Tcp, &mut found, &mut notes) {
            Ok(_) if !found.is_empty() => return Ok(true),
            Ok(_) => continue,
            Err(err) if err.raw_os_error() == Some(libc::ENOENT) => return Ok(false),
            Err(err) => {
                // The socket's state is unknown now: the next call opens a new one.
                *guard = None;
                return Err(err);
            }
        }
    }
    *guard = None;
    Err(io::Error::other("no netlink reply to the lookup"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Progress {
    More,
    Done,
}

/// Parses one datagram of a dump reply. Messages of other sequence numbers are ignored.
fn parse_datagram(
    mut buf: &[u8],
    seq: u32,
    protocol: Protocol,
    out: &mut Vec<SocketEntry>,
    notes: &mut DumpNotes,
) -> io::Result<Progress> {
    while !buf.is_empty() {
        let Some(header) = buf.get(..NLMSG_HDRLEN) else {
            return Err(invalid("truncated netlink header"));
        };
        let len = u32::from_ne_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let kind = u16::from_ne_bytes([header[4], header[5]]);
        let flags = u16::from_ne_bytes([header[6], header[7]]);
        let msg_seq = u32::from_ne_bytes([header[8], header[9], header[10], header[11]]);
        if len < NLMSG_HDRLEN || len > buf.len() {
            return Err(invalid("truncated netlink message"));
        }
        let payload = &buf[NLMSG_HDRLEN..len];
        // The last message of a datagram may lack its alignment padding.
        buf = buf.get(len.next_multiple_of(4)..).unwrap_or(&[]);
        if msg_seq != seq {
            continue;
        }
        if flags & NLM_F_DUMP_INTR != 0 {
            notes.interrupted = true;
        }
        match kind {
            NLMSG_DONE => {
                // A dump that failed part-way ends with a negative errno here.
                return match read_i32(payload) {
                    Some(err) if err < 0 => Err(io::Error::from_raw_os_error(-err)),
                    _ => Ok(Progress::Done),
                };
            }
            NLMSG_ERROR => match read_i32(payload) {
                Some(0) => {} // an acknowledgement
                Some(err) => {
                    let errno = err.checked_neg().filter(|&e| e > 0).unwrap_or(libc::EIO);
                    return Err(io::Error::from_raw_os_error(errno));
                }
                None => return Err(invalid("truncated netlink error")),
            },
            SOCK_DIAG_BY_FAMILY | TCPDIAG_GETSOCK => {
                let Some(msg) = payload.get(..INET_DIAG_MSG_LEN) else {
                    return Err(invalid("truncated inet_diag_msg"));
                };
                if let Some(entry) = parse_diag_msg(msg, protocol) {
                    out.push(entry);
                }
            }
            _ => {}
        }
    }
    Ok(Progress::More)
}

fn read_i32(payload: &[u8]) -> Option<i32> {
    let bytes = payload.get(..4)?;
    Some(i32::from_ne_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

fn read_u32(msg: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([msg[at], msg[at + 1], msg[at + 2], msg[at + 3]])
}

/// Decodes an `inet_diag_msg` (exactly [`INET_DIAG_MSG_LEN`] bytes):
/// family, state, timer, retrans, then the socket id (ports and addresses in network byte
/// order, interface, cookie), expires, rqueue, wqueue, uid, inode.
fn parse_diag_msg(msg: &[u8], protocol: Protocol) -> Option<SocketEntry> {
    let family = i32::from(msg[0]);
    let state = SocketState::from_kernel(msg[1]);
    let sport = u16::from_be_bytes([msg[4], msg[5]]);
    let dport = u16::from_be_bytes([msg[6], msg[7]]);
    let src = &msg[8..24];
    let dst = &msg[24..40];
    let interface = read_u32(msg, 40);
    let recv_queue = read_u32(msg, 56);
    let send_queue = read_u32(msg, 60);
    let uid = read_u32(msg, 64);
    let inode = read_u32(msg, 68);

    let address = |bytes: &[u8], port: u16| -> Option<SocketAddr> {
        match family {
            libc::AF_INET => {
                let ip = Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]);
                Some(SocketAddr::new(IpAddr::V4(ip), port))
            }
            libc::AF_INET6 => {
                let mut octets = [0u8; 16];
                octets.copy_from_slice(bytes);
                let ip = Ipv6Addr::from(octets);
                // The interface is the scope of a link-local address; on others it is only
                // a device binding, which an address must not carry.
                let scope = if ip.is_unicast_link_local() { interface } else { 0 };
                Some(SocketAddr::V6(SocketAddrV6::new(ip, port, 0, scope)))
            }
            _ => None,
        }
    };
    let local = address(src, sport)?;
    let remote = address(dst, dport)?;
    let remote = super::addr::peer(remote);
    // TIME_WAIT sockets are no longer tied to a file or a user: the kernel reports 0 for both.
    let time_wait = state == SocketState::TimeWait;
    Some(SocketEntry {
        protocol,
        local,
        remote,
        state,
        recv_queue,
        send_queue,
        uid: (!time_wait).then_some(uid),
        inode: (inode != 0).then_some(u64::from(inode)),
        pids: Vec::new(),
    })
}

fn invalid(what: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

struct NetlinkSocket {
    fd: std::os::fd::OwnedFd,
}

impl NetlinkSocket {
    fn open() -> io::Result<NetlinkSocket> {
        use std::os::fd::{AsRawFd, FromRawFd};

        // SAFETY: plain socket creation; the descriptor is owned below.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                libc::NETLINK_SOCK_DIAG,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just created and is owned by nobody else.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
        // A kernel that never answers must not hang the caller's test.
        let timeout = libc::timeval {
            tv_sec: RECV_TIMEOUT_SECS,
            tv_usec: 0,
        };
        // SAFETY: `timeout` is a valid `timeval` of the given size.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&raw const timeout).cast(),
                size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(NetlinkSocket { fd })
    }

    fn send(&self, message: &[u8]) -> io::Result<()> {
        use std::os::fd::AsRawFd;

        // SAFETY: all-zero is a valid `sockaddr_nl`; the family is set next.
        let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        kernel.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        for _ in 0..MAX_INTERRUPTS {
            // SAFETY: `message` and `kernel` are valid for the lengths passed.
            let sent = unsafe {
                libc::sendto(
                    self.fd.as_raw_fd(),
                    message.as_ptr().cast(),
                    message.len(),
                    0,
                    (&raw const kernel).cast(),
                    size_of::<libc::sockaddr_nl>() as libc::socklen_t,
                )
            };
            if sent >= 0 {
                return if sent.unsigned_abs() == message.len() {
                    Ok(())
                } else {
                    Err(io::Error::new(io::ErrorKind::WriteZero, "short netlink send"))
                };
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
        Err(io::Error::from(io::ErrorKind::Interrupted))
    }

    /// Receives one datagram; an oversized one is an error, never a silent cut.
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        use std::os::fd::AsRawFd;

        for _ in 0..MAX_INTERRUPTS {
            // SAFETY: `buf` is valid for `buf.len()` bytes. With `MSG_TRUNC` netlink returns
            // the datagram's full length, even when longer than `buf`.
            let len = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_TRUNC,
                )
            };
            if len >= 0 {
                let len = len.unsigned_abs();
                if len > buf.len() {
                    return Err(invalid("netlink datagram larger than the receive buffer"));
                }
                return Ok(len);
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
        Err(io::Error::from(io::ErrorKind::Interrupted))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exact_lookup_sees_listeners_only() {
        use std::io::{Read, Write};
        use std::net::{TcpListener, TcpStream};

        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        assert!(tcp_listening(addr).unwrap());
        // Another loopback address on the same port is not the same socket.
        assert!(!tcp_listening(SocketAddr::from(([127, 0, 0, 2], addr.port()))).unwrap());
        // A connection closed by the server side leaves its port in TIME_WAIT: no listener.
        let mut client = TcpStream::connect(addr).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        server.write_all(b"x").unwrap();
        let mut byte = [0u8];
        client.read_exact(&mut byte).unwrap();
        drop(server);
        drop(listener);
        drop(client);
        assert!(!tcp_listening(addr).unwrap());

        if let Ok(v6) = TcpListener::bind("[::1]:0") {
            let addr = v6.local_addr().unwrap();
            assert!(tcp_listening(addr).unwrap());
            drop(v6);
            assert!(!tcp_listening(addr).unwrap());
        }
    }

    fn message(kind: u16, flags: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
        let len = NLMSG_HDRLEN + payload.len();
        let mut msg = Vec::with_capacity(len.next_multiple_of(4));
        msg.extend_from_slice(&(len as u32).to_ne_bytes());
        msg.extend_from_slice(&kind.to_ne_bytes());
        msg.extend_from_slice(&flags.to_ne_bytes());
        msg.extend_from_slice(&seq.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes());
        msg.extend_from_slice(payload);
        msg.resize(len.next_multiple_of(4), 0);
        msg
    }

    #[allow(clippy::too_many_arguments)]
    fn diag(
        family: u8,
        state: u8,
        src: &[u8],
        sport: u16,
        dst: &[u8],
        dport: u16,
        uid: u32,
        inode: u32,
    ) -> Vec<u8> {
        let mut msg = vec![0u8; INET_DIAG_MSG_LEN];
        msg[0] = family;
        msg[1] = state;
        msg[4..6].copy_from_slice(&sport.to_be_bytes());
        msg[6..8].copy_from_slice(&dport.to_be_bytes());
        msg[8..8 + src.len()].copy_from_slice(src);
        msg[24..24 + dst.len()].copy_from_slice(dst);
        msg[40..44].copy_from_slice(&3u32.to_ne_bytes());
        msg[56..60].copy_from_slice(&1u32.to_ne_bytes());
        msg[60..64].copy_from_slice(&128u32.to_ne_bytes());
        msg[64..68].copy_from_slice(&uid.to_ne_bytes());
        msg[68..72].copy_from_slice(&inode.to_ne_bytes());
        msg
    }

    fn parse(buf: &[u8], seq: u32) -> (io::Result<Progress>, Vec<SocketEntry>, DumpNotes) {
        let mut out = Vec::new();
        let mut notes = DumpNotes::default();
        let result = parse_datagram(buf, seq, Protocol::Tcp, &mut out, &mut notes);
        (result, out, notes)
    }

    #[test]
    fn request_layout() {
        let query = Query {
            protocol: Protocol::Udp,
            family: Family::V6,
            states: UDP_UNCONNECTED_BIT,
        };
        let req = request(7, &query);
        assert_eq!(req.len(), 72);
        assert_eq!(u32::from_ne_bytes(req[0..4].try_into().unwrap()), 72);
        assert_eq!(u16::from_ne_bytes([req[4], req[5]]), SOCK_DIAG_BY_FAMILY);
        assert_eq!(u16::from_ne_bytes([req[6], req[7]]), 0x301);
        assert_eq!(u32::from_ne_bytes(req[8..12].try_into().unwrap()), 7);
        assert_eq!(
            (req[16], req[17]),
            (libc::AF_INET6 as u8, libc::IPPROTO_UDP as u8)
        );
        assert_eq!(u32::from_ne_bytes(req[20..24].try_into().unwrap()), 1 << 7);
        assert!(req[24..].iter().all(|&b| b == 0));
    }

    #[test]
    fn multi_part_dump() {
        let listener = diag(
            libc::AF_INET as u8,
            10,
            &[127, 0, 0, 1],
            8080,
            &[0; 4],
            0,
            1000,
            4242,
        );
        let mut loopback6 = [0u8; 16];
        loopback6[15] = 1;
        let connected = diag(
            libc::AF_INET6 as u8,
            1,
            &loopback6,
            8081,
            &loopback6,
            40000,
            0,
            4243,
        );
        let time_wait = diag(
            libc::AF_INET as u8,
            6,
            &[127, 0, 0, 1],
            8080,
            &[127, 0, 0, 1],
            40001,
            0,
            0,
        );
        let multi = libc::NLM_F_MULTI as u16;

        let mut first = message(SOCK_DIAG_BY_FAMILY, multi, 9, &listener);
        first.extend(message(SOCK_DIAG_BY_FAMILY, multi, 9, &connected));
        let (result, out, notes) = parse(&first, 9);
        assert_eq!(result.unwrap(), Progress::More);
        assert!(!notes.interrupted);
        assert_eq!(out.len(), 2);
        // loopcheck:allow(LC010): test data the code under test parses or prints, never bound
        assert_eq!(out[0].local, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(out[0].remote, None);
        assert_eq!(out[0].state, SocketState::Listen);
        assert_eq!((out[0].recv_queue, out[0].send_queue), (1, 128));
        assert_eq!((out[0].uid, out[0].inode), (Some(1000), Some(4242)));
        // loopcheck:allow(LC010): test data the code under test parses or prints, never bound
        assert_eq!(out[1].local, "[::1]:8081".parse().unwrap());
        // loopcheck:allow(LC010): test data the code under test parses or prints, never bound
        assert_eq!(out[1].remote, Some("[::1]:40000".parse().unwrap()));
        assert_eq!(out[1].state, SocketState::Established);

        let mut second = message(SOCK_DIAG_BY_FAMILY, multi | NLM_F_DUMP_INTR, 9, &time_wait);
        second.extend(message(NLMSG_DONE, multi, 9, &0i32.to_ne_bytes()));
        let (result, out, notes) = parse(&second, 9);
        assert_eq!(result.unwrap(), Progress::Done);
        assert!(notes.interrupted);
        assert_eq!(out[0].state, SocketState::TimeWait);
        assert_eq!((out[0].uid, out[0].inode), (None, None));
    }

    #[test]
    fn link_local_keeps_its_scope() {
        let mut ip = [0u8; 16];
        ip[0..2].copy_from_slice(&[0xfe, 0x80]);
        ip[15] = 9;
        let msg = diag(libc::AF_INET6 as u8, 10, &ip, 22, &[0; 16], 0, 0, 1);
        let entry = parse_diag_msg(&msg, Protocol::Tcp).unwrap();
        assert_eq!(entry.local, "[fe80::9%3]:22".parse().unwrap());
        let msg = diag(libc::AF_INET6 as u8, 10, &[0; 16], 22, &[0; 16], 0, 0, 1);
        assert_eq!(
            parse_diag_msg(&msg, Protocol::Tcp).unwrap().local,
            // loopcheck:allow(LC010): test data the code under test parses or prints, never bound
            "[::]:22".parse().unwrap()
        );
        let msg = diag(99, 10, &[0; 16], 22, &[0; 16], 0, 0, 1);
        assert_eq!(parse_diag_msg(&msg, Protocol::Tcp), None);
    }

    #[test]
    fn errors_and_foreign_messages() {
        let (result, ..) = parse(&message(NLMSG_ERROR, 0, 1, &(-libc::EPERM).to_ne_bytes()), 1);
        assert_eq!(result.unwrap_err().raw_os_error(), Some(libc::EPERM));
        let (result, ..) = parse(&message(NLMSG_ERROR, 0, 1, &0i32.to_ne_bytes()), 1);
        assert_eq!(result.unwrap(), Progress::More);
        let (result, ..) = parse(&message(NLMSG_DONE, 0, 1, &(-libc::EBUSY).to_ne_bytes()), 1);
        assert_eq!(result.unwrap_err().raw_os_error(), Some(libc::EBUSY));
        let (result, ..) = parse(&message(NLMSG_DONE, 0, 1, &[]), 1);
        assert_eq!(result.unwrap(), Progress::Done);
        let (result, out, _) = parse(&message(NLMSG_DONE, 0, 2, &[]), 1);
        assert_eq!(
            result.unwrap(),
            Progress::More,
            "another request's message is skipped"
        );
        assert!(out.is_empty());
        let (result, ..) = parse(&message(NLMSG_ERROR, 0, 1, &[1, 2]), 1);
        assert_eq!(result.unwrap_err().kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn truncated_input_is_an_error() {
        let msg = diag(libc::AF_INET as u8, 10, &[127, 0, 0, 1], 1, &[0; 4], 0, 0, 1);
        let full = message(SOCK_DIAG_BY_FAMILY, 0, 1, &msg);
        for cut in [1, NLMSG_HDRLEN - 1, NLMSG_HDRLEN + 10, full.len() - 1] {
            let (result, out, _) = parse(&full[..cut], 1);
            assert_eq!(
                result.unwrap_err().kind(),
                io::ErrorKind::InvalidData,
                "cut at {cut}"
            );
            assert!(out.is_empty());
        }
        let short = message(SOCK_DIAG_BY_FAMILY, 0, 1, &msg[..40]);
        assert!(parse(&short, 1).0.is_err());
        let mut zero_len = message(NLMSG_DONE, 0, 1, &[]);
        zero_len[0..4].copy_from_slice(&0u32.to_ne_bytes());
        assert!(
            parse(&zero_len, 1).0.is_err(),
            "a zero length must not loop forever"
        );
    }

    #[test]
    fn dumps_this_host() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let local = listener.local_addr().unwrap();
        let query = Query {
            protocol: Protocol::Tcp,
            family: Family::V4,
            states: TCP_LISTEN_BIT,
        };
        let mut out = Vec::new();
        match dump(&[query], &mut out) {
            Ok(_) => {
                let entry = out
                    .iter()
                    .find(|s| s.local == local)
                    .expect("own listener is dumped");
                assert_eq!(entry.state, SocketState::Listen);
                assert!(entry.inode.is_some());
                assert!(out.iter().all(|s| s.state == SocketState::Listen));
            }
            Err(err) => crate::sys::skip_test(&format!("netlink sock_diag is unavailable here: {err}")),
        }
    }

    #[test]
    fn one_tcp_dump_covers_both_families_as_two_do() {
        let v4 = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let v6 = crate::policy::ipv6_available()
            .then(|| std::net::TcpListener::bind("[::1]:0").ok())
            .flatten();
        let mut ours: Vec<SocketAddr> = vec![v4.local_addr().unwrap()];
        ours.extend(v6.iter().map(|l| l.local_addr().unwrap()));
        let both = Query {
            protocol: Protocol::Tcp,
            family: Family::Both,
            states: TCP_LISTEN_BIT,
        };
        let mut dumper = match Dumper::open() {
            Ok(dumper) => dumper,
            Err(err) => {
                return crate::sys::skip_test(&format!("netlink sock_diag is unavailable here: {err}"));
            }
        };
        // One request, then (as after a refusal) one per family: the same listeners.
        for one_at_a_time in [false, true] {
            dumper.one_family_at_a_time = one_at_a_time;
            let mut out = Vec::new();
            dumper.dump(&[both], &mut out).unwrap();
            if !one_at_a_time && dumper.one_family_at_a_time {
                crate::sys::skip_test("this kernel refuses TCPDIAG_GETSOCK: only the fallback was tested");
            }
            for addr in &ours {
                let found: Vec<_> = out.iter().filter(|s| s.local == *addr).collect();
                assert_eq!(
                    found.len(),
                    1,
                    "{addr} once, one request per family: {one_at_a_time}"
                );
                assert_eq!(found[0].state, SocketState::Listen);
                assert!(found[0].inode.is_some());
            }
        }
        let req = request_both_families(3, TCP_LISTEN_BIT);
        assert_eq!(u32::from_ne_bytes(req[0..4].try_into().unwrap()), 76);
        assert_eq!(u16::from_ne_bytes([req[4], req[5]]), TCPDIAG_GETSOCK);
        assert_eq!(
            u32::from_ne_bytes(req[68..72].try_into().unwrap()),
            TCP_LISTEN_BIT
        );
    }

    mod fuzz {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600), seq in 0u32..3) {
                let mut out = Vec::new();
                let mut notes = DumpNotes::default();
                let _ = parse_datagram(&bytes, seq, Protocol::Udp, &mut out, &mut notes);
            }
        }
    }
}
