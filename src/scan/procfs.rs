//! `/proc` access through directory file descriptors and `*at` calls, so that walking
//! thousands of entries builds no path strings and allocates nothing per entry.

use std::ffi::CStr;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;

/// An open `/proc`.
pub(crate) struct ProcFs {
    root: OwnedFd,
}

impl ProcFs {
    pub(crate) fn open() -> io::Result<ProcFs> {
        let root = open_at(libc::AT_FDCWD, c"/proc", libc::O_RDONLY | libc::O_DIRECTORY)?;
        Ok(ProcFs { root })
    }

    /// The numeric entries of `/proc`: one per process (threads are not listed).
    pub(crate) fn pids(&self) -> io::Result<Pids> {
        // A fresh open file description, so two walks never share a directory offset.
        let fd = open_at(self.root.as_raw_fd(), c".", libc::O_RDONLY | libc::O_DIRECTORY)?;
        Ok(Pids {
            dir: Dir::from_fd(fd)?,
        })
    }

    /// The processes whose pid is `first` or higher (and perhaps `first - 1`), in order of
    /// pid: the listing starts there instead of at the top, so that a sampler that asks for
    /// the processes started since its last look pays for those, not for every process.
    ///
    /// `/proc`'s directory offset past its fixed entries is a pid plus a constant (258 since
    /// Linux 3.17, which added `thread-self`; 257 before): seeking to 257 + `first` starts
    /// the listing at `first - 1` or at `first`. An offset this kernel does not take is an
    /// error, never a shorter listing than asked for.
    pub(crate) fn pids_from(&self, first: u32) -> io::Result<Pids> {
        const FIRST_PID_OFFSET: i64 = 257;
        let fd = open_at(self.root.as_raw_fd(), c".", libc::O_RDONLY | libc::O_DIRECTORY)?;
        let offset = FIRST_PID_OFFSET + i64::from(first);
        // SAFETY: `fd` is an open directory; lseek has no memory preconditions.
        if unsafe { libc::lseek(fd.as_raw_fd(), offset, libc::SEEK_SET) } != offset {
            return Err(io::Error::last_os_error());
        }
        Ok(Pids {
            dir: Dir::from_fd(fd)?,
        })
    }

    /// Whether `/proc/PID` exists: the process runs, or has ended and is not reaped yet.
    pub(crate) fn exists(&self, pid: u32) -> bool {
        let path = PidPath::new(pid, c"");
        // The path ends in `/`, which names the directory itself.
        let mut stat = std::mem::MaybeUninit::<libc::stat>::uninit();
        // SAFETY: the path is NUL-terminated and `stat` is valid for writes.
        unsafe {
            libc::fstatat(
                self.root.as_raw_fd(),
                path.as_c_str().as_ptr(),
                stat.as_mut_ptr(),
                0,
            ) == 0
        }
    }

    /// Opens directory `/proc/PID/NAME`.
    pub(crate) fn open_dir(&self, pid: u32, name: &CStr) -> io::Result<Dir> {
        let path = PidPath::new(pid, name);
        let fd = open_at(
            self.root.as_raw_fd(),
            path.as_c_str(),
            libc::O_RDONLY | libc::O_DIRECTORY,
        )?;
        Dir::from_fd(fd)
    }

    /// Reads file `/proc/PID/NAME` into `buf`, replacing its contents.
    pub(crate) fn read(&self, pid: u32, name: &CStr, buf: &mut Vec<u8>) -> io::Result<()> {
        let path = PidPath::new(pid, name);
        read_at(self.root.as_raw_fd(), path.as_c_str(), buf)
    }

    /// Reads symbolic link `/proc/NAME` (`self`) into `buf`; the link is cut at `buf.len()`.
    pub(crate) fn readlink_root<'b>(&self, name: &CStr, buf: &'b mut [u8]) -> io::Result<&'b [u8]> {
        let len = readlink_at(self.root.as_raw_fd(), name, buf)?;
        Ok(&buf[..len])
    }

    /// Reads symbolic link `/proc/PID/NAME` into `buf`; the link is cut at `buf.len()`.
    pub(crate) fn readlink<'b>(&self, pid: u32, name: &CStr, buf: &'b mut [u8]) -> io::Result<&'b [u8]> {
        let path = PidPath::new(pid, name);
        let len = readlink_at(self.root.as_raw_fd(), path.as_c_str(), buf)?;
        Ok(&buf[..len])
    }
}

/// The last pid the kernel handed out in this pid namespace (`/proc/sys/kernel/ns_last_pid`,
/// present where the kernel has checkpoint/restore support, as distribution kernels do), kept
/// open: one `pread` tells whether any process started since the last look.
pub(crate) struct LastPid {
    file: File,
}

impl LastPid {
    pub(crate) fn open() -> io::Result<LastPid> {
        let fd = open_at(libc::AT_FDCWD, c"/proc/sys/kernel/ns_last_pid", libc::O_RDONLY)?;
        Ok(LastPid { file: File::from(fd) })
    }

    pub(crate) fn read(&self) -> Option<u32> {
        use std::os::unix::fs::FileExt;
        let mut buf = [0u8; 16];
        let len = self.file.read_at(&mut buf, 0).ok()?;
        let text = buf.get(..len)?;
        parse_u32(text.strip_suffix(b"\n").unwrap_or(text))
    }
}

/// Reads file `path` (absolute, or relative to directory `dir`) into `buf`, replacing its
/// contents. `/proc` files report size 0, so this reads to the end rather than trusting it.
pub(crate) fn read_at(dir: RawFd, path: &CStr, buf: &mut Vec<u8>) -> io::Result<()> {
    buf.clear();
    let fd = open_at(dir, path, libc::O_RDONLY)?;
    File::from(fd).read_to_end(buf)?;
    Ok(())
}

/// Reads symbolic link `name` in directory `dir` into `buf`; returns its length, cut at
/// `buf.len()`.
pub(crate) fn readlink_at(dir: RawFd, name: &CStr, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `name` is NUL-terminated and `buf` is valid for `buf.len()` bytes.
    let len = unsafe { libc::readlinkat(dir, name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if len < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(len.unsigned_abs().min(buf.len()))
}

fn open_at(dir: RawFd, path: &CStr, flags: libc::c_int) -> io::Result<OwnedFd> {
    loop {
        // SAFETY: `path` is NUL-terminated; the returned descriptor is owned by us.
        let fd = unsafe { libc::openat(dir, path.as_ptr(), flags | libc::O_CLOEXEC) };
        if fd >= 0 {
            // SAFETY: `fd` was just returned by `openat` and is owned by nobody else.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// `"PID/NAME"` as a C string on the stack.
struct PidPath {
    buf: [u8; 32],
}

impl PidPath {
    /// `name` must be short (the `/proc/PID` entries this module reads are); a longer one is
    /// cut, which only makes the lookup fail.
    fn new(pid: u32, name: &CStr) -> PidPath {
        let mut buf = [0u8; 32];
        let mut digits = [0u8; 10];
        let mut n = pid;
        let mut count = 0;
        loop {
            digits[count] = b'0' + (n % 10) as u8;
            count += 1;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        let mut len = 0;
        for &d in digits[..count].iter().rev() {
            buf[len] = d;
            len += 1;
        }
        buf[len] = b'/';
        len += 1;
        for &b in name.to_bytes() {
            // Keep the last byte for the terminating NUL.
            if len == buf.len() - 1 {
                break;
            }
            buf[len] = b;
            len += 1;
        }
        PidPath { buf }
    }

    fn as_c_str(&self) -> &CStr {
        // The buffer is zero-filled and `new` never writes its last byte, so a NUL is there.
        CStr::from_bytes_until_nul(&self.buf).unwrap_or(c"")
    }
}

/// An open directory stream (`opendir`/`readdir`).
pub(crate) struct Dir {
    dir: NonNull<libc::DIR>,
}

impl Dir {
    fn from_fd(fd: OwnedFd) -> io::Result<Dir> {
        let raw = fd.into_raw_fd();
        // SAFETY: `raw` is an open directory descriptor; on success the stream owns it.
        let dir = unsafe { libc::fdopendir(raw) };
        match NonNull::new(dir) {
            Some(dir) => Ok(Dir { dir }),
            None => {
                let err = io::Error::last_os_error();
                // SAFETY: `fdopendir` failed, so `raw` is still ours to close.
                drop(unsafe { OwnedFd::from_raw_fd(raw) });
                Err(err)
            }
        }
    }

    /// The stream's descriptor, for `*at` calls relative to this directory.
    pub(crate) fn fd(&self) -> RawFd {
        // SAFETY: `self.dir` is an open stream until drop.
        unsafe { libc::dirfd(self.dir.as_ptr()) }
    }

    /// The next entry's name, skipping `.` and `..`. `None` at the end, and also on a read
    /// error: a directory under `/proc` that vanishes mid-walk simply ends.
    pub(crate) fn next_name(&mut self) -> Option<&CStr> {
        loop {
            // SAFETY: `self.dir` is an open stream; the entry stays valid until the next
            // `readdir` on it, which needs `&mut self`, so the borrow cannot outlive it.
            let entry = unsafe { libc::readdir(self.dir.as_ptr()) };
            if entry.is_null() {
                return None;
            }
            // SAFETY: `d_name` of a returned entry is a NUL-terminated string.
            let name = unsafe { CStr::from_ptr((*entry).d_name.as_ptr()) };
            if name != c"." && name != c".." {
                return Some(name);
            }
        }
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        // SAFETY: `self.dir` is open and is closed only here.
        unsafe { libc::closedir(self.dir.as_ptr()) };
    }
}

/// The pids listed in `/proc`.
pub(crate) struct Pids {
    dir: Dir,
}

impl Iterator for Pids {
    type Item = u32;

    fn next(&mut self) -> Option<u32> {
        loop {
            let name = self.dir.next_name()?;
            if let Some(pid) = parse_u32(name.to_bytes()) {
                return Some(pid);
            }
        }
    }
}

/// Parses a non-empty string of ASCII digits that fits `u32`.
pub(crate) fn parse_u32(digits: &[u8]) -> Option<u32> {
    if digits.is_empty() || digits.len() > 10 {
        return None;
    }
    let mut value: u64 = 0;
    for &b in digits {
        if !b.is_ascii_digit() {
            return None;
        }
        value = value * 10 + u64::from(b - b'0');
    }
    u32::try_from(value).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_paths() {
        assert_eq!(PidPath::new(0, c"fd").as_c_str(), c"0/fd");
        assert_eq!(
            PidPath::new(4294967295, c"environ").as_c_str(),
            c"4294967295/environ"
        );
        let long = PidPath::new(4294967295, c"a-name-far-too-long-for-the-buffer");
        assert_eq!(long.as_c_str().to_bytes().len(), 31);
    }

    #[test]
    fn parses_u32() {
        assert_eq!(parse_u32(b"0"), Some(0));
        assert_eq!(parse_u32(b"4294967295"), Some(u32::MAX));
        assert_eq!(parse_u32(b"4294967296"), None);
        assert_eq!(parse_u32(b""), None);
        assert_eq!(parse_u32(b"12a"), None);
        assert_eq!(parse_u32(b"self"), None);
    }

    #[test]
    fn walks_own_process() {
        let proc = ProcFs::open().expect("/proc is mounted");
        let me = std::process::id();
        assert!(proc.pids().expect("list /proc").any(|pid| pid == me));
        let mut fds = proc.open_dir(me, c"fd").expect("own fd dir");
        let mut count = 0;
        while let Some(name) = fds.next_name() {
            assert!(parse_u32(name.to_bytes()).is_some());
            count += 1;
        }
        assert!(count >= 3, "stdin, stdout and stderr at least");
        let mut buf = Vec::new();
        proc.read(me, c"stat", &mut buf).expect("own stat");
        assert!(buf.starts_with(me.to_string().as_bytes()));
        let mut link = [0u8; 4096];
        assert!(!proc.readlink(me, c"exe", &mut link).expect("own exe").is_empty());
        assert!(proc.read(me, c"no-such-file", &mut buf).is_err());
    }
}
