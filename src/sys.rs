//! Small facts about this process and user that several modules need.

/// The effective user id, on platforms that have one.
#[cfg(unix)]
pub(crate) fn current_uid() -> Option<u32> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    Some(unsafe { libc::geteuid() })
}

/// The effective user id, on platforms that have one.
#[cfg(not(unix))]
pub(crate) fn current_uid() -> Option<u32> {
    None
}

/// Reads a small /proc file with one `read`: processes pay for this on their first
/// allocation and tests after their body, and `read_to_string` spends a `statx` and a second
/// `read` on it.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub(crate) fn read_small(path: impl AsRef<std::path::Path>) -> Option<String> {
    use std::io::Read;
    let path = path.as_ref();
    let mut buf = [0u8; 4096];
    let len = std::fs::File::open(path).ok()?.read(&mut buf).ok()?;
    if len == buf.len() {
        return std::fs::read_to_string(path).ok();
    }
    Some(String::from_utf8_lossy(&buf[..len]).into_owned())
}
