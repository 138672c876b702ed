//! Handing bound sockets to a child process with the socket-activation convention.
//!
//! A child server that binds a port by itself can lose it to another process between the
//! parent's choice and the child's bind. Handing it the already-bound socket leaves no such
//! gap. The convention is systemd's `LISTEN_FDS`, as read by the [`listenfd`] crate and many
//! servers: the sockets are the child's file descriptors 3, 4, ...; `LISTEN_FDS` holds their
//! number.
//!
//! `LISTEN_PID` is left unset, because the child's pid is not known before it is spawned and
//! setting a variable between `fork` and `exec` is not safe. `listenfd` accepts that; code that
//! insists on `LISTEN_PID` (systemd's `sd_listen_fds`) does not.
//!
//! [`listenfd`]: https://docs.rs/listenfd

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

/// The first file descriptor of the convention.
pub const LISTEN_FDS_START: RawFd = 3;

/// Prepares `command` so that the spawned child finds `sockets` as its file descriptors 3,
/// 4, ... and `LISTEN_FDS` set to their number.
///
/// The sockets are duplicated now, so they may be dropped before `command` is spawned; the
/// parent keeps its own copies (and their leases) open as long as it keeps the originals.
///
/// ```no_run
/// use std::os::fd::AsFd;
/// use std::process::Command;
///
/// let listener = loopcheck::tcp_listener()?;
/// let addr = listener.local_addr()?;
/// let mut server = Command::new("my-server");
/// loopcheck::activation::pass_sockets(&mut server, [listener.as_fd()])?;
/// let mut child = server.spawn()?;
/// // The child accepts on `addr` from its first instruction: no race, no retry loop.
/// # child.kill()?;
/// # let _ = addr;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn pass_sockets<'a>(
    command: &mut Command,
    sockets: impl IntoIterator<Item = BorrowedFd<'a>>,
) -> io::Result<()> {
    let owned: Vec<OwnedFd> = sockets
        .into_iter()
        .map(|fd| fd.try_clone_to_owned())
        .collect::<io::Result<_>>()?;
    let count = RawFd::try_from(owned.len()).map_err(|_| io::Error::other("too many sockets"))?;
    command
        .env("LISTEN_FDS", count.to_string())
        .env_remove("LISTEN_PID");
    // Filled in the child; allocated here because the child may not allocate.
    let mut staged: Vec<RawFd> = vec![-1; owned.len()];
    // SAFETY: the closure calls only async-signal-safe functions (fcntl, dup2) and touches
    // memory allocated before the fork.
    unsafe {
        command.pre_exec(move || {
            // Move every socket above the target range first, so that placing one at fd 3+i
            // never overwrites another still waiting to be placed.
            for (slot, fd) in staged.iter_mut().zip(&owned) {
                *slot = check(libc::fcntl(
                    fd.as_raw_fd(),
                    libc::F_DUPFD_CLOEXEC,
                    LISTEN_FDS_START + count,
                ))?;
            }
            for (offset, &fd) in (0..).zip(staged.iter()) {
                // dup2 clears close-on-exec on the new descriptor, which is what keeps it open
                // across exec.
                check(libc::dup2(fd, LISTEN_FDS_START + offset))?;
            }
            Ok(())
        });
    }
    Ok(())
}

fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}
