//! Bringing up `lo` in a fresh network namespace, where it starts down: with it up, the
//! namespace has 127.0.0.0/8 and, where IPv6 is enabled, `::1`.

use std::io;

/// Sets `IFF_UP` on `lo` with the `SIOCGIFFLAGS`/`SIOCSIFFLAGS` ioctls (no `ip` binary, no
/// netlink), which needs `CAP_NET_ADMIN` over the namespace: its creator has it.
pub(super) fn up() -> io::Result<()> {
    use std::os::fd::{FromRawFd, OwnedFd};

    // SAFETY: plain socket creation; the fd is owned below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor that nothing else owns.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: an all-zero ifreq is valid: an empty name and zero flags.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (slot, byte) in request.ifr_name.iter_mut().zip(b"lo") {
        *slot = *byte as libc::c_char;
    }
    let raw = std::os::fd::AsRawFd::as_raw_fd(&socket);
    // SAFETY: both ioctls read and write one ifreq, which outlives the calls.
    unsafe {
        if libc::ioctl(raw, libc::SIOCGIFFLAGS, &mut request) < 0 {
            return Err(io::Error::last_os_error());
        }
        request.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(raw, libc::SIOCSIFFLAGS, &request) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}
