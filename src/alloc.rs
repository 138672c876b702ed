//! Handing out ports and sockets.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use socket2::{Domain, Socket, Type};

use crate::error::{Error, Result};
use crate::lease::{Attempt, Lease, Registry};
use crate::policy::{self, PortPolicy};

/// A leased port: no other thread or process using loopcheck gets it until this is dropped
/// or its holder exits.
///
/// `port()` was free when it was leased: bindable on `127.0.0.1` and, where IPv6 exists, on
/// `[::1]`, with no connection left on it in `TIME_WAIT`. Code that binds by itself (a child
/// server, a config file) may use the number; code that can take a socket should prefer
/// [`into_listener`](PortLease::into_listener), which leaves no gap between lease and bind.
///
/// ```
/// let lease = loopcheck::reserve_port()?;
/// let addr = lease.addr();
/// let listener = lease.into_listener()?; // the lease lives as long as the listener
/// assert_eq!(listener.local_addr()?, addr);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct PortLease {
    pub(crate) ip: IpAddr,
    pub(crate) lease: Lease,
}

impl PortLease {
    /// The leased port.
    pub fn port(&self) -> u16 {
        self.lease.port()
    }

    /// The address to use with the port: `127.0.0.1` for leases from [`reserve_port`].
    pub fn ip(&self) -> IpAddr {
        self.ip
    }

    /// `ip():port()`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::new(self.ip, self.port())
    }

    /// Binds a TCP listener on [`addr`](PortLease::addr); the lease is held as long as the
    /// listener is open.
    pub fn into_listener(self) -> Result<TcpListener> {
        let addr = self.addr();
        let listener = bind_leased(addr, TcpListener::bind)?;
        hold_while_open(self.lease, &listener);
        Ok(listener)
    }

    /// Binds a UDP socket on [`addr`](PortLease::addr); the lease is held as long as the
    /// socket is open.
    pub fn into_udp_socket(self) -> Result<UdpSocket> {
        let addr = self.addr();
        let socket = bind_leased(addr, UdpSocket::bind)?;
        hold_while_open(self.lease, &socket);
        Ok(socket)
    }

    /// Gives the port back now (dropping the lease does the same).
    pub fn release(self) {
        drop(self);
    }

    /// Names `pid`, a child process that inherited the lease's descriptor ([`AsFd`]), as the
    /// holder in the lease's record; dropping the lease afterwards leaves the lock to the
    /// processes that still have the descriptor. Hidden: `cargo loopcheck lease` hands its
    /// leases to its command this way, and the contract's API does not include it.
    ///
    /// [`AsFd`]: std::os::fd::AsFd
    #[doc(hidden)]
    pub fn hand_over(&mut self, pid: u32) {
        let ip = self.ip;
        self.lease.hand_over(ip, pid);
    }
}

/// How long a bind of a leased port waits out `AddrInUse` (see [`bind_leased`]).
const INHERITED_PROBE_WAIT: std::time::Duration = std::time::Duration::from_millis(100);

/// Binds the leased `addr`, trying again for up to [`INHERITED_PROBE_WAIT`] while it is in
/// use. No loopcheck process holds a leased port, but the probe that proved it free may still
/// be bound for a moment: a child that another thread of this process forked (tests spawn
/// processes in parallel) has a copy of every descriptor until its `exec` closes them.
fn bind_leased<S>(addr: SocketAddr, bind: impl Fn(SocketAddr) -> io::Result<S>) -> Result<S> {
    let started = std::time::Instant::now();
    // Bounded by the time above and by a count, whatever the clock does.
    for _ in 0..200 {
        match bind(addr) {
            Err(err)
                if err.kind() == io::ErrorKind::AddrInUse && started.elapsed() < INHERITED_PROBE_WAIT =>
            {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            result => return result.map_err(|source| Error::socket("bind", addr, source)),
        }
    }
    bind(addr).map_err(|source| Error::socket("bind", addr, source))
}

/// The lease's lock file: a child process that inherits this descriptor across `exec` (with
/// `FD_CLOEXEC` cleared) holds the lease for as long as it keeps the descriptor open, even
/// after this process exits. `cargo loopcheck lease` hands its leases to its command this way.
#[cfg(unix)]
impl std::os::fd::AsFd for PortLease {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.lease.as_fd()
    }
}

/// A TCP listener on a leased port of this test's loopback address ([`loopback_ip`]).
///
/// The socket is bound while the lease is held, so there is no window in which another
/// process can take the port. The lease is held as long as the listener is open.
///
/// ```
/// use std::io::{Read, Write};
///
/// let listener = loopcheck::tcp_listener()?;
/// let mut client = std::net::TcpStream::connect(listener.local_addr()?)?;
/// let (mut server, _) = listener.accept()?;
/// client.write_all(b"ping")?;
/// let mut buf = [0; 4];
/// server.read_exact(&mut buf)?;
/// assert_eq!(&buf, b"ping");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn tcp_listener() -> Result<TcpListener> {
    tcp_listener_at().map(|(listener, _)| listener)
}

/// [`tcp_listener`] and the address it is bound to, which the caller need not ask for.
pub(crate) fn tcp_listener_at() -> Result<(TcpListener, SocketAddr)> {
    let (lease, (listener, addr)) = allocate(Reuse::Yes, |port| {
        bind_loopback(port, |addr| TcpListener::bind(addr).map(|l| (l, addr)))
    })?;
    lease.write_record(addr.ip());
    hold_while_open(lease, &listener);
    Ok((listener, addr))
}

/// A UDP socket on a leased port of this test's loopback address ([`loopback_ip`]); the lease
/// is held as long as the socket is open.
///
/// ```
/// let a = loopcheck::udp_socket()?;
/// let b = loopcheck::udp_socket()?;
/// a.send_to(b"hi", b.local_addr()?)?;
/// let mut buf = [0; 2];
/// let (len, from) = b.recv_from(&mut buf)?;
/// assert_eq!((&buf[..len], from), (&b"hi"[..], a.local_addr()?));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn udp_socket() -> Result<UdpSocket> {
    udp_socket_at().map(|(socket, _)| socket)
}

/// [`udp_socket`] and the address it is bound to.
pub(crate) fn udp_socket_at() -> Result<(UdpSocket, SocketAddr)> {
    let (lease, (socket, addr)) = allocate(Reuse::Yes, |port| {
        bind_loopback(port, |addr| UdpSocket::bind(addr).map(|s| (s, addr)))
    })?;
    lease.write_record(addr.ip());
    hold_while_open(lease, &socket);
    Ok((socket, addr))
}

/// Leases a port for code that binds by itself: a child server, a configuration file, a
/// library that takes a number. The port is TCP-bindable on `127.0.0.1` and on `[::1]` (where
/// IPv6 exists) and is held until the [`PortLease`] is dropped.
///
/// ```
/// let lease = loopcheck::reserve_port()?;
/// let server = std::net::TcpListener::bind(("127.0.0.1", lease.port()))?;
/// # drop(server);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn reserve_port() -> Result<PortLease> {
    reserve(Protocols::Tcp, IpAddr::V4(Ipv4Addr::LOCALHOST))
}

/// Like [`reserve_port`], for UDP: the port is UDP-bindable on `127.0.0.1` and `[::1]`.
pub fn reserve_udp_port() -> Result<PortLease> {
    reserve(Protocols::Udp, IpAddr::V4(Ipv4Addr::LOCALHOST))
}

/// Like [`reserve_port`], with [`loopback_ip`] as the lease's address: for a `SocketAddr`
/// that a test binds by itself.
pub(crate) fn reserve_on_loopback() -> Result<PortLease> {
    let (lease, ()) = allocate(Reuse::No, |port| {
        crate::prober::isolated(move || {
            probe_here(port, Protocols::Tcp)?;
            // The address handed out must be bindable itself; on a host without the 127/8
            // route this first bind switches the process to 127.0.0.1.
            bind_loopback(port, |addr| {
                Socket::new(Domain::for_address(addr), Type::STREAM, None)?.bind(&addr.into())
            })
        })
    })?;
    let ip = loopback_ip();
    lease.write_record(ip);
    Ok(PortLease { ip, lease })
}

/// Leases `n` distinct ports, as [`reserve_port`] does.
///
/// ```
/// let ports = loopcheck::reserve_ports(3)?;
/// let mut numbers: Vec<u16> = ports.iter().map(|p| p.port()).collect();
/// numbers.dedup();
/// assert_eq!(numbers.len(), 3);
/// # Ok::<(), loopcheck::Error>(())
/// ```
pub fn reserve_ports(n: usize) -> Result<Vec<PortLease>> {
    let policy = allocator()?.policy;
    if n > policy.allocation_len() {
        return Err(Error::RangeTooSmall {
            wanted: n,
            what: "ports",
            range: policy.allocation_display(),
            available: policy.allocation_len(),
        });
    }
    (0..n).map(|_| reserve_port()).collect()
}

/// A drop-in replacement for `portpicker::pick_unused_port`: the same signature, but the
/// port stays leased until this process exits, so no other process using loopcheck can take
/// it between the pick and the bind.
///
/// Prefer [`reserve_port`] where the lease can be kept in a variable: it is returned when
/// dropped instead of at exit.
///
/// ```
/// use loopcheck::pick_unused_port;
///
/// let port = pick_unused_port().expect("a free port");
/// let listener = std::net::TcpListener::bind(("127.0.0.1", port))?;
/// # drop(listener);
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn pick_unused_port() -> Option<u16> {
    let lease = reserve_port().ok()?;
    let port = lease.port();
    release_at_exit();
    KEPT.lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .push(lease);
    Some(port)
}

/// Leases of [`pick_unused_port`], kept until the process exits.
static KEPT: Mutex<Vec<PortLease>> = Mutex::new(Vec::new());

/// Marks the leases this process keeps until exit as returned when it exits normally, so that
/// only a holder that died leaves a stale lease (LC015) behind. The kernel frees the locks
/// either way.
fn release_at_exit() {
    #[cfg(unix)]
    {
        extern "C" fn release() {
            crate::lease::stop_keeping_released_files();
            if let Ok(mut kept) = KEPT.try_lock() {
                kept.clear();
            }
            held::release_all();
        }
        static REGISTERED: std::sync::Once = std::sync::Once::new();
        // SAFETY: `release` only takes locks without blocking and writes to files it owns.
        REGISTERED.call_once(|| unsafe {
            libc::atexit(release);
        });
    }
}

/// This test's loopback address.
///
/// On Linux every address of `127.0.0.0/8` is bound to the loopback interface, so each
/// process gets its own, `127.X.Y.Z` with `X` from 1 to 64, derived from its pid: no two live
/// processes share one, and none is `127.0.0.1`, which other programs use by default. Tests
/// that share a process (`cargo test` runs them as threads) share its address; their ports
/// still never collide. Where other loopback addresses cannot be bound (macOS without an
/// `ifconfig lo0 alias`, other platforms, a Linux host whose loopback lacks the `/8` route),
/// this is `127.0.0.1`.
///
/// ```
/// let ip = loopcheck::loopback_ip();
/// assert!(ip.is_loopback());
/// ```
pub fn loopback_ip() -> IpAddr {
    static OWN: OnceLock<IpAddr> = OnceLock::new();
    if cfg!(target_os = "linux") && !ALIASES_FAILED.load(Ordering::Relaxed) {
        *OWN.get_or_init(|| IpAddr::V4(per_process_ip(crate::lease::own_pid())))
    } else {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    }
}

/// Set when binding this process's own loopback address failed: it is not probed up front,
/// because that would cost a bind on every process's first allocation.
static ALIASES_FAILED: AtomicBool = AtomicBool::new(false);

/// Binds `ip:port` with `bind`; when a per-process address turns out not to be configured,
/// falls back to `127.0.0.1` for the rest of the process.
fn bind_loopback<T>(port: u16, bind: impl Fn(SocketAddr) -> io::Result<T>) -> io::Result<T> {
    let ip = loopback_ip();
    match bind(SocketAddr::new(ip, port)) {
        Err(err)
            if err.kind() == io::ErrorKind::AddrNotAvailable && ip != IpAddr::V4(Ipv4Addr::LOCALHOST) =>
        {
            ALIASES_FAILED.store(true, Ordering::Relaxed);
            bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port))
        }
        result => result,
    }
}

/// `127.X.Y.Z` from a pid: pids stay below 2^22 on Linux, so `X` is 1 to 64 and the mapping is
/// one-to-one.
fn per_process_ip(pid: u32) -> Ipv4Addr {
    let [_, x, y, z] = pid.to_be_bytes();
    Ipv4Addr::new(127, 1 + (x & 0x3f), y, z)
}

#[derive(Clone, Copy)]
pub(crate) enum Protocols {
    Tcp,
    Udp,
}

fn reserve(protocols: Protocols, ip: IpAddr) -> Result<PortLease> {
    let (lease, ()) = allocate(Reuse::No, |port| probe(port, protocols))?;
    lease.write_record(ip);
    Ok(PortLease { ip, lease })
}

/// Whether `port` can be bound on `127.0.0.1` and `[::1]` right now. The probe sockets set no
/// `SO_REUSEADDR`, so a port with connections in `TIME_WAIT` fails too: the number is safe
/// for code that binds without that option.
pub(crate) fn probe(port: u16, protocols: Protocols) -> io::Result<()> {
    crate::prober::isolated(move || probe_here(port, protocols))
}

/// [`probe`] on this thread.
fn probe_here(port: u16, protocols: Protocols) -> io::Result<()> {
    let ty = match protocols {
        Protocols::Tcp => Type::STREAM,
        Protocols::Udp => Type::DGRAM,
    };
    let v4 = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
    Socket::new(Domain::IPV4, ty, None)?.bind(&v4.into())?;
    if policy::ipv6_available() {
        let v6 = SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), port);
        Socket::new(Domain::IPV6, ty, None)?.bind(&v6.into())?;
    }
    Ok(())
}

pub(crate) struct Allocator {
    pub(crate) policy: &'static PortPolicy,
    pub(crate) registry: &'static Registry,
    /// Index of the window's first port in the allocation range.
    pub(crate) window_base: usize,
    pub(crate) window: usize,
    /// Shared by the threads of this process, so that two of them never try the same port at
    /// once; starts at a random place so that processes spread over the window.
    pub(crate) cursor: AtomicUsize,
}

pub(crate) fn allocator() -> Result<&'static Allocator> {
    static ALLOCATOR: OnceLock<Allocator> = OnceLock::new();
    if let Some(allocator) = ALLOCATOR.get() {
        return Ok(allocator);
    }
    let policy = PortPolicy::current()?;
    let registry = Registry::get()?;
    let (window_base, window) = policy.allocation_window();
    // Spreads processes over the window; any value works, so no random source is needed.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let seed = (crate::lease::own_pid() as usize).wrapping_mul(2_654_435_761) ^ nanos as usize;
    Ok(ALLOCATOR.get_or_init(|| Allocator {
        policy,
        registry,
        window_base,
        window,
        cursor: AtomicUsize::new(seed % window),
    }))
}

impl Allocator {
    /// The port for the `attempt`-th try of one allocation: the window first, then the rest
    /// of the range in order.
    fn candidate(&self, attempt: usize) -> u16 {
        let len = self.policy.allocation_len();
        let index = if attempt < self.window {
            self.window_base + self.cursor.fetch_add(1, Ordering::Relaxed) % self.window
        } else {
            self.window_base + attempt
        };
        self.policy.nth_port(index % len)
    }
}

/// Whether an allocation may first try ports this process leased before.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Reuse {
    /// For a socket bound at once: `SO_REUSEADDR` (TCP) makes a port whose last connection
    /// is in `TIME_WAIT` as good as any, and the bind proves the rest.
    Yes,
    /// For a number handed out: it must be free of `TIME_WAIT` too, which a port used
    /// moments ago rarely is, so fresh ports are cheaper.
    No,
}

/// How many kept lease files one allocation tries before fresh ports.
const REUSE_ATTEMPTS: usize = 2;

/// Leases a port on which `bind` succeeds, trying each allocatable port at most about once.
fn allocate<T>(reuse: Reuse, mut bind: impl FnMut(u16) -> io::Result<T>) -> Result<(Lease, T)> {
    let allocator = allocator()?;
    release_closed_sockets();
    if reuse == Reuse::Yes {
        for _ in 0..REUSE_ATTEMPTS {
            let Some(attempt) = allocator.registry.try_reacquire() else {
                break;
            };
            if let Attempt::Acquired(lease) = attempt
                && allocator.policy.is_allocatable(lease.port())
                && let Ok(socket) = bind(lease.port())
            {
                return Ok((lease, socket));
            }
        }
    }
    let (mut leased, mut unbindable, mut unusable) = (0, 0, 0);
    for attempt in 0..allocator.policy.allocation_len() {
        let port = allocator.candidate(attempt);
        let lease = match allocator.registry.try_acquire(port) {
            Attempt::Acquired(lease) => lease,
            Attempt::Held => {
                leased += 1;
                continue;
            }
            Attempt::Unusable => {
                unusable += 1;
                continue;
            }
            Attempt::OutOfFiles(source) => {
                return Err(Error::TooManyOpenFiles {
                    action: "open a lease file",
                    source,
                });
            }
        };
        match bind(port) {
            Ok(socket) => return Ok((lease, socket)),
            // In use by a program that does not lease, or (Windows) in an excluded range.
            Err(err)
                if matches!(
                    err.kind(),
                    io::ErrorKind::AddrInUse | io::ErrorKind::PermissionDenied
                ) =>
            {
                unbindable += 1;
            }
            Err(source) => {
                let addr = SocketAddr::new(loopback_ip(), port);
                return Err(Error::socket("bind", addr, source));
            }
        }
    }
    Err(Error::Exhausted {
        range: allocator.policy.allocation_display(),
        leased,
        unbindable,
        unusable,
    })
}

/// Leases whose socket was handed out as a std type: the lease must live as long as the socket,
/// which carries no hook for that, so they are kept here and let go once the socket is closed.
#[cfg(unix)]
mod held {
    use std::os::fd::{AsRawFd, RawFd};
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use crate::lease::Lease;

    struct Held {
        #[cfg_attr(
            not(test),
            expect(dead_code, reason = "held for its Drop, which gives the port back")
        )]
        lease: Lease,
        fd: RawFd,
        /// The socket's device and inode: an fd number can be reused by another socket, an
        /// inode cannot while the first socket lives; the device tells a file of another file
        /// system whose inode number happens to be the same.
        identity: (u64, u64),
    }

    static HELD: Mutex<Vec<Held>> = Mutex::new(Vec::new());

    /// Held leases are checked on every `SWEEP_EVERY`th allocation, at most `CHECKS_PER_SWEEP`
    /// of them, so that neither a closed socket nor a test holding hundreds of open ones adds a
    /// syscall to every allocation. Until checked, a closed socket's port stays leased, which
    /// only makes other processes skip it.
    const SWEEP_EVERY: usize = 8;
    const CHECKS_PER_SWEEP: usize = 16;

    fn identity(fd: RawFd) -> Option<(u64, u64)> {
        let mut stat = std::mem::MaybeUninit::<libc::stat>::uninit();
        // SAFETY: `stat` is valid for writes; fstat on a closed fd fails with EBADF.
        let rc = unsafe { libc::fstat(fd, stat.as_mut_ptr()) };
        if rc != 0 {
            return None;
        }
        // SAFETY: fstat returned 0, so it initialised `stat`.
        let stat = unsafe { stat.assume_init() };
        #[allow(
            clippy::unnecessary_cast,
            reason = "st_dev and st_ino are narrower than u64 on some platforms"
        )]
        Some((stat.st_dev as u64, stat.st_ino as u64))
    }

    pub(super) fn hold_while_open(lease: Lease, socket: &impl AsRawFd) {
        let fd = socket.as_raw_fd();
        let Some(identity) = identity(fd) else { return };
        super::release_at_exit();
        HELD.lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Held { lease, fd, identity });
    }

    /// Gives back every held lease; called at normal process exit.
    pub(super) fn release_all() {
        // try_lock: a thread that exits the process while holding the lock must not hang it.
        if let Ok(mut held) = HELD.try_lock() {
            held.clear();
        }
    }

    pub(crate) fn release_closed_sockets() {
        static CALLS: AtomicUsize = AtomicUsize::new(0);
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        if !CALLS.fetch_add(1, Ordering::Relaxed).is_multiple_of(SWEEP_EVERY) {
            return;
        }
        let mut held = HELD.lock().unwrap_or_else(|p| p.into_inner());
        if held.is_empty() {
            return;
        }
        let len = held.len();
        let mut index = NEXT.fetch_add(CHECKS_PER_SWEEP, Ordering::Relaxed) % len;
        for _ in 0..CHECKS_PER_SWEEP.min(len) {
            if identity(held[index].fd) == Some(held[index].identity) {
                index += 1;
            } else {
                held.swap_remove(index);
            }
            if index >= held.len() {
                index = 0;
            }
            if held.is_empty() {
                break;
            }
        }
    }

    #[cfg(test)]
    pub(super) fn is_held(port: u16) -> bool {
        HELD.lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|h| h.lease.port() == port)
    }
}

/// Without a cheap way to tell that a socket handle was closed, leases of sockets handed out
/// as std types are kept until the process exits.
#[cfg(not(unix))]
mod held {
    use std::sync::Mutex;

    use crate::lease::Lease;

    static HELD: Mutex<Vec<Lease>> = Mutex::new(Vec::new());

    pub(super) fn hold_while_open<S>(lease: Lease, _socket: &S) {
        HELD.lock().unwrap_or_else(|p| p.into_inner()).push(lease);
    }

    pub(crate) fn release_closed_sockets() {}
}

use held::hold_while_open;
pub(crate) use held::release_closed_sockets;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_process_addresses_are_distinct_and_never_127_0_0_1() {
        let pids = [1u32, 2, 255, 256, 65535, 65536, 4_194_303, 32768];
        let ips: Vec<Ipv4Addr> = pids.iter().map(|&p| per_process_ip(p)).collect();
        for (i, ip) in ips.iter().enumerate() {
            assert_eq!(ip.octets()[0], 127);
            assert!((1..=64).contains(&ip.octets()[1]), "{ip}");
            assert!(ips[i + 1..].iter().all(|other| other != ip), "{ip} repeats");
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_closed_listeners_lease_is_released_on_the_next_allocation() {
        let listener = tcp_listener().unwrap();
        let port = listener.local_addr().unwrap().port();
        assert!(held::is_held(port));
        drop(listener);
        // Other tests of this binary allocate concurrently; each call checks a few leases.
        for _ in 0..1024 {
            if !held::is_held(port) {
                break;
            }
            drop(reserve_port().unwrap());
        }
        assert!(!held::is_held(port));
    }
}
