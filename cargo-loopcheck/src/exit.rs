//! The exit codes of `cargo loopcheck`.

/// Exit codes, as named constants. Scripts and CI can rely on them.
///
/// ```
/// use cargo_loopcheck::ExitCode;
/// assert_eq!(ExitCode::OK, 0);
/// assert_eq!(ExitCode::USAGE, 2);
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub struct ExitCode;

impl ExitCode {
    /// Nothing was found: no error finding, every test passed.
    pub const OK: u8 = 0;
    /// Errors were found (a zombie, a host problem, a lint error), a probe failed, or tests
    /// failed or flaked.
    pub const FOUND: u8 = 1;
    /// The command line was wrong: an unknown flag, a malformed address, an unknown code, a
    /// format the command does not support.
    pub const USAGE: u8 = 2;
    /// The command could not run: `cargo metadata` failed, cargo or nextest is missing, the
    /// build failed, a permission was denied.
    pub const COULD_NOT_RUN: u8 = 3;
}
