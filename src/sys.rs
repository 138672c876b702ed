//! Small facts about this process and user that several modules need.
//!
//! Public but hidden from the docs: `cargo loopcheck` needs the same facts, and one definition
//! serves both crates. Not an API for users of the library.

/// The effective user id, on platforms that have one.
#[cfg(unix)]
pub fn current_uid() -> Option<u32> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    Some(unsafe { libc::geteuid() })
}

/// The effective user id, on platforms that have one.
#[cfg(not(unix))]
pub fn current_uid() -> Option<u32> {
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

/// Creates `dir` and its missing parents with mode 0700 (on Unix). A directory that exists
/// already, or that another process created first, is no error; the caller checks it like
/// any existing directory.
pub fn create_private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    match builder.create(dir) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(err) => Err(err),
    }
}

/// Whether `err` says that this process (`EMFILE`) or the system (`ENFILE`) has no file
/// descriptor left.
#[cfg(unix)]
pub(crate) fn is_out_of_files(err: &std::io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

/// Whether `err` says that no socket is left (`WSAEMFILE`).
#[cfg(windows)]
pub(crate) fn is_out_of_files(err: &std::io::Error) -> bool {
    err.raw_os_error() == Some(10024)
}

/// Whether `err` says that no file descriptor is left: never known here.
#[cfg(not(any(unix, windows)))]
pub(crate) fn is_out_of_files(_err: &std::io::Error) -> bool {
    false
}

/// Set to `1` (CI sets it), a test that cannot run its real check fails instead of skipping.
pub const REQUIRE_TOOLS_VAR: &str = "LOOPCHECK_REQUIRE_TOOLS";

/// For a test of either crate that cannot run its real check here (a tool or condition is
/// absent): prints why on stderr, and fails when `LOOPCHECK_REQUIRE_TOOLS=1`, so that a skip
/// is never silent there. The caller returns after it.
pub fn skip_test(reason: &str) {
    eprintln!("skipped: {reason}");
    assert!(
        std::env::var_os(REQUIRE_TOOLS_VAR).is_none_or(|v| v != "1"),
        "{REQUIRE_TOOLS_VAR}=1 and this test cannot run: {reason}"
    );
}

/// For a test that needs root: whether this process runs as root, after a [`skip_test`] with
/// `reason` when not (CI runs as root, so there such a test fails without it).
pub fn test_needs_root(reason: &str) -> bool {
    let root = current_uid() == Some(0);
    if !root {
        skip_test(reason);
    }
    root
}

/// Whether `exe` is a test binary cargo built, `target/debug/deps/NAME-HASH` (a 16-digit hex
/// hash), as `/proc/PID/exe` shows it (with ` (deleted)` once rebuilt). The library's zombie
/// provenance and the CLI's socket timeline both tell test processes this way.
pub fn is_test_binary(exe: &std::path::Path) -> bool {
    let in_deps = exe
        .parent()
        .and_then(std::path::Path::file_name)
        .is_some_and(|d| d == "deps");
    let hashed = exe
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.trim_end_matches(" (deleted)").rsplit_once('-'))
        .is_some_and(|(_, hash)| hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()));
    in_deps && hashed
}
