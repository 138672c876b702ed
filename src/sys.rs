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
