//! Reaching host services from inside (`--isolate-allow PORT`): the namespace's
//! `127.0.0.1:PORT` and `[::1]:PORT` listen in the wrapper, and each connection is relayed to
//! the host's service on PORT over a socket opened in the host's namespace.
//!
//! Sockets stay in the namespace they were created in, so host-side sockets come from a
//! *dialer*: a process forked before the wrapper leaves the host's namespace, which connects
//! on request and hands the connected socket back over a Unix socket (`SCM_RIGHTS`). That
//! works for root and for an unprivileged user alike (who could not `setns` back). The
//! forwarders listen on loopback only, inside the namespace, and live exactly as long as the
//! wrapper, that is the test.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long the dialer waits for the host's service to accept.
const DIAL_TIMEOUT: Duration = Duration::from_secs(5);

/// The host-side end of the forwarders.
#[derive(Debug)]
pub(super) struct Dialer {
    socket: Mutex<OwnedFd>,
    /// The dialer process, which the cleanup after the test leaves alone.
    pub(super) pid: u32,
}

impl Dialer {
    /// Forks the dialer. Call it while the process has a single thread (a fork copies only
    /// the calling thread, so no lock can be held by another) and is still in the host's
    /// network namespace.
    pub(super) fn start() -> io::Result<Dialer> {
        let mut fds: [RawFd; 2] = [-1; 2];
        // SAFETY: socketpair writes two descriptors into `fds`.
        if unsafe {
            libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
                0,
                fds.as_mut_ptr(),
            )
        } != 0
        {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: both are fresh descriptors owned by nothing else.
        let (ours, theirs) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let parent = std::process::id();
        // SAFETY: the process has one thread (the caller's promise), so the child may run
        // ordinary Rust code; it never returns from `serve`.
        match unsafe { libc::fork() } {
            -1 => Err(io::Error::last_os_error()),
            0 => {
                drop(ours);
                // SAFETY: prctl and getppid take plain values. The dialer ends with the
                // wrapper, even when the wrapper is killed.
                unsafe {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    if libc::getppid() as u32 != parent {
                        libc::_exit(0);
                    }
                }
                detach_stdio();
                serve(&theirs);
                // SAFETY: ends the forked child without running the parent's exit handlers.
                unsafe { libc::_exit(0) }
            }
            pid => Ok(Dialer {
                socket: Mutex::new(ours),
                pid: pid as u32,
            }),
        }
    }

    /// A connection to the host's service on `port`, over IPv6 first when `v6`, else IPv4
    /// first; the other family when the first refuses.
    pub(super) fn dial(&self, port: u16, v6: bool) -> io::Result<TcpStream> {
        let socket = self.socket.lock().unwrap_or_else(|e| e.into_inner());
        let [high, low] = port.to_be_bytes();
        let request = [u8::from(v6), high, low];
        // SAFETY: sends three bytes from a live buffer.
        if unsafe { libc::send(socket.as_raw_fd(), request.as_ptr().cast(), 3, 0) } != 3 {
            return Err(io::Error::last_os_error());
        }
        let (status, fd) = receive(socket.as_raw_fd())?;
        match fd {
            Some(fd) => Ok(TcpStream::from(fd)),
            None => Err(io::Error::from_raw_os_error(status)),
        }
    }
}

/// Points stdin, stdout and stderr at /dev/null, so that the dialer holds none of the test's
/// pipes open.
fn detach_stdio() {
    // SAFETY: open and dup2 on a constant path and standard descriptors.
    unsafe {
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        if null >= 0 {
            for fd in 0..3 {
                libc::dup2(null, fd);
            }
            if null > 2 {
                libc::close(null);
            }
        }
    }
}

/// The dialer's loop: one request (family, port) in, one connected socket or an errno out,
/// until the wrapper closes its end.
fn serve(socket: &OwnedFd) {
    loop {
        let mut request = [0u8; 3];
        // SAFETY: receives at most three bytes into a live buffer.
        let n = unsafe { libc::recv(socket.as_raw_fd(), request.as_mut_ptr().cast(), 3, 0) };
        if n != 3 {
            return;
        }
        let port = u16::from_be_bytes([request[1], request[2]]);
        let v4 = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
        let v6 = SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), port);
        let order = if request[0] == 1 { [v6, v4] } else { [v4, v6] };
        let mut last = io::Error::from(io::ErrorKind::ConnectionRefused);
        let mut connected = None;
        for addr in order {
            match TcpStream::connect_timeout(&addr, DIAL_TIMEOUT) {
                Ok(stream) => {
                    connected = Some(stream);
                    break;
                }
                Err(err) => last = err,
            }
        }
        let sent = match &connected {
            Some(stream) => send(socket.as_raw_fd(), 0, Some(stream.as_raw_fd())),
            None => send(
                socket.as_raw_fd(),
                last.raw_os_error().unwrap_or(libc::ECONNREFUSED),
                None,
            ),
        };
        if sent.is_err() {
            return;
        }
    }
}

/// Sends `status` (0, or an errno) and, with it, `fd` as `SCM_RIGHTS`.
fn send(socket: RawFd, status: i32, fd: Option<RawFd>) -> io::Result<()> {
    let mut payload = status.to_ne_bytes();
    let mut iov = libc::iovec {
        iov_base: payload.as_mut_ptr().cast(),
        iov_len: payload.len(),
    };
    // u64 elements keep the control buffer aligned for cmsghdr.
    let mut control = [0u64; 4];
    // SAFETY: an all-zero msghdr is valid; the pointers set below outlive the sendmsg call,
    // and the control buffer holds CMSG_SPACE(sizeof(int)) bytes.
    unsafe {
        let mut message: libc::msghdr = std::mem::zeroed();
        message.msg_iov = &mut iov;
        message.msg_iovlen = 1;
        if let Some(fd) = fd {
            message.msg_control = control.as_mut_ptr().cast();
            message.msg_controllen = libc::CMSG_SPACE(size_of::<RawFd>() as u32) as _;
            let header = libc::CMSG_FIRSTHDR(&message);
            (*header).cmsg_level = libc::SOL_SOCKET;
            (*header).cmsg_type = libc::SCM_RIGHTS;
            (*header).cmsg_len = libc::CMSG_LEN(size_of::<RawFd>() as u32) as _;
            std::ptr::write_unaligned(libc::CMSG_DATA(header).cast::<RawFd>(), fd);
        }
        if libc::sendmsg(socket, &message, 0) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Receives a status and, when it is 0, the descriptor that came with it.
fn receive(socket: RawFd) -> io::Result<(i32, Option<OwnedFd>)> {
    let mut payload = [0u8; 4];
    let mut iov = libc::iovec {
        iov_base: payload.as_mut_ptr().cast(),
        iov_len: payload.len(),
    };
    let mut control = [0u64; 4];
    // SAFETY: as in `send`; a received descriptor is owned by exactly one OwnedFd.
    unsafe {
        let mut message: libc::msghdr = std::mem::zeroed();
        message.msg_iov = &mut iov;
        message.msg_iovlen = 1;
        message.msg_control = control.as_mut_ptr().cast();
        message.msg_controllen = std::mem::size_of_val(&control) as _;
        let n = libc::recvmsg(socket, &mut message, libc::MSG_CMSG_CLOEXEC);
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        if n == 0 {
            return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
        }
        let status = i32::from_ne_bytes(payload);
        let header = libc::CMSG_FIRSTHDR(&message);
        let fd = (!header.is_null()
            && (*header).cmsg_level == libc::SOL_SOCKET
            && (*header).cmsg_type == libc::SCM_RIGHTS)
            .then(|| OwnedFd::from_raw_fd(std::ptr::read_unaligned(libc::CMSG_DATA(header).cast::<RawFd>())));
        Ok((status, fd))
    }
}

/// Listens on `127.0.0.1:PORT` and `[::1]:PORT` of the namespace for each of `ports` and
/// relays every connection to the host's service through `dialer`. Returns the addresses
/// that listen; one that cannot be bound (no IPv6 in the namespace) is skipped.
pub(super) fn start(ports: &[u16], dialer: Arc<Dialer>) -> Vec<SocketAddr> {
    let mut listening = Vec::new();
    for &port in ports {
        for ip in [IpAddr::V4(Ipv4Addr::LOCALHOST), IpAddr::V6(Ipv6Addr::LOCALHOST)] {
            let Ok(listener) = TcpListener::bind((ip, port)) else {
                continue;
            };
            listening.push(SocketAddr::new(ip, port));
            let dialer = Arc::clone(&dialer);
            std::thread::spawn(move || {
                for client in listener.incoming().flatten() {
                    let dialer = Arc::clone(&dialer);
                    std::thread::spawn(move || match dialer.dial(port, ip.is_ipv6()) {
                        Ok(host) => relay(client, host),
                        Err(err) => eprintln!(
                            "loopcheck: --isolate-allow {port}: cannot reach the host's service on port {port}: {err}"
                        ),
                    });
                }
            });
        }
    }
    listening
}

/// Copies bytes both ways until both sides have closed, passing half-closes on.
fn relay(client: TcpStream, host: TcpStream) {
    let (Ok(client_in), Ok(host_out)) = (client.try_clone(), host.try_clone()) else {
        return;
    };
    let upstream = std::thread::spawn(move || {
        let _ = io::copy(&mut &client_in, &mut &host_out);
        let _ = host_out.shutdown(std::net::Shutdown::Write);
    });
    let _ = io::copy(&mut &host, &mut &client);
    let _ = client.shutdown(std::net::Shutdown::Write);
    let _ = upstream.join();
}
