//! The system calls `#[loopback_test]` makes for one test, made directly, without loopcheck:
//! the floor of what the harness can cost while it keeps its safety properties. Written into
//! the crates `benches/harness.rs` generates (`tests/floor/mod.rs`), for its `floor` variant.
//!
//! Per process, at the first test: the ephemeral and reserved port ranges, the registry
//! directory's owner and mode, the services list's cache. Per test: the lease file's open,
//! lock, record and the socket's `fstat` (cross-process exclusivity, crash release, the holder
//! named in diagnoses); after the body, the leak check's sock_diag lookup (LC012) and the
//! children check's `waitid` (LC013); the lease's free mark and its close.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

/// How many lease files the floor's registry has.
const SLOTS: u16 = 1024;

/// A held lease: its open, locked file.
pub(crate) struct Lease(File);

fn registry() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let mut text = String::new();
        for file in [
            "/proc/sys/net/ipv4/ip_local_port_range",
            "/proc/sys/net/ipv4/ip_local_reserved_ports",
        ] {
            text.clear();
            File::open(file)
                .and_then(|mut f| f.read_to_string(&mut text))
                .expect("port ranges");
        }
        // SAFETY: geteuid has no preconditions.
        let uid = unsafe { libc::geteuid() };
        let dir = std::env::temp_dir().join(format!("loopcheck-floor-{uid}"));
        if std::fs::create_dir(&dir).is_ok() {
            // Every lease file, made once, as a registry in use has them.
            for slot in 0..SLOTS {
                std::fs::write(dir.join(format!("slot-{slot}")), "").expect("lease file");
            }
        }
        std::fs::symlink_metadata(&dir).expect("registry directory");
        let _ = std::fs::metadata("/etc/services");
        let cache = dir.join("services-ports");
        if std::fs::metadata(&cache).is_err() {
            std::fs::write(&cache, [0u8; 596]).expect("services cache");
        }
        let mut bytes = Vec::with_capacity(4096);
        File::open(&cache)
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .expect("services cache");
        dir
    })
}

/// Leases `listener`'s port: the lease file's open and lock, its record, the socket's `fstat`.
pub(crate) fn acquire(listener: &TcpListener, addr: SocketAddr) -> Lease {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .custom_flags(libc::O_NOFOLLOW)
        // One of SLOTS files made with the directory: loopcheck's allocator reuses its lease
        // files in the same way, and creating a file (about 1 ms on ext4) is not what a test
        // pays once the registry exists.
        .open(registry().join(format!("slot-{}", addr.port() % SLOTS)))
        .expect("lease file");
    // Not asserted: a port the kernel hands out again right after another test of this
    // process closed it has a lease file still locked for a moment. The call is what counts.
    // SAFETY: flock on a descriptor this function owns.
    let _ = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    let mut record = [b' '; 4096];
    let text = format!(
        r#"{{"state":"held","port":{},"ip":"{}","pid":{}}}"#,
        addr.port(),
        addr.ip(),
        std::process::id()
    );
    record[..text.len()].copy_from_slice(text.as_bytes());
    record[record.len() - 1] = b'\n';
    file.write_at(&record, 0).expect("lease record");
    // SAFETY: all-zero is a valid `stat`.
    let mut stat = unsafe { std::mem::zeroed::<libc::stat>() };
    // SAFETY: `stat` is valid for writes; the listener's descriptor is open.
    assert_eq!(unsafe { libc::fstat(listener.as_raw_fd(), &mut stat) }, 0);
    Lease(file)
}

/// After the body: the leak check (one sock_diag lookup of `addr`), the children check, and
/// the lease's free mark and close.
pub(crate) fn release(lease: Lease, addr: SocketAddr) {
    // Its answer is not asserted: another test may listen on the same port by now.
    let _ = listening(addr);
    // SAFETY: all-zero is a valid `siginfo_t`.
    let mut info = unsafe { std::mem::zeroed::<libc::siginfo_t>() };
    // SAFETY: `info` is valid for writes; WNOHANG makes this return at once.
    unsafe {
        libc::waitid(
            libc::P_ALL,
            0,
            &mut info,
            libc::WNOHANG | libc::WEXITED | libc::WNOWAIT | libc::__WALL,
        )
    };
    lease.0.write_at(b"free", 10).expect("free mark");
}

/// Whether a TCP socket listens on `addr` (IPv4): one exact `SOCK_DIAG_BY_FAMILY` lookup on a
/// netlink socket the process keeps.
fn listening(addr: SocketAddr) -> bool {
    static SOCKET: Mutex<Option<OwnedFd>> = Mutex::new(None);
    let mut socket = SOCKET.lock().unwrap();
    let fd = socket.get_or_insert_with(|| {
        // SAFETY: plain socket creation; the descriptor is owned from here on.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                libc::NETLINK_SOCK_DIAG,
            )
        };
        assert!(fd >= 0, "netlink socket");
        let timeout = libc::timeval {
            tv_sec: 5,
            tv_usec: 0,
        };
        // SAFETY: `timeout` outlives the call.
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&raw const timeout).cast(),
                size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        // SAFETY: `fd` was just created and is owned by nothing else.
        unsafe { OwnedFd::from_raw_fd(fd) }
    });
    let SocketAddr::V4(v4) = addr else {
        panic!("IPv4 only")
    };
    let mut req = [0u8; 72];
    req[0..4].copy_from_slice(&72u32.to_ne_bytes());
    req[4..6].copy_from_slice(&20u16.to_ne_bytes()); // SOCK_DIAG_BY_FAMILY
    req[6..8].copy_from_slice(&(libc::NLM_F_REQUEST as u16).to_ne_bytes());
    req[16] = libc::AF_INET as u8;
    req[17] = libc::IPPROTO_TCP as u8;
    req[20..24].copy_from_slice(&(1u32 << 10).to_ne_bytes()); // TCP_LISTEN
    req[24..26].copy_from_slice(&v4.port().to_be_bytes());
    req[28..32].copy_from_slice(&v4.ip().octets());
    req[64..72].fill(0xff); // no cookie
    // SAFETY: all-zero is a valid sockaddr_nl; the family is set next.
    let mut kernel = unsafe { std::mem::zeroed::<libc::sockaddr_nl>() };
    kernel.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    // SAFETY: `req` and `kernel` outlive the call.
    let sent = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            req.as_ptr().cast(),
            req.len(),
            0,
            (&raw const kernel).cast(),
            size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    assert_eq!(sent, 72);
    let mut reply = [0u8; 4096];
    // SAFETY: `reply` is valid for writes of its length.
    let len = unsafe { libc::recv(fd.as_raw_fd(), reply.as_mut_ptr().cast(), reply.len(), 0) };
    assert!(len >= 16, "netlink reply");
    // A listener answers with its inet_diag_msg (type 20), a closed one with an error.
    u16::from_ne_bytes([reply[4], reply[5]]) == 20
}
