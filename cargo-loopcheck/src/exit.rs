//! The exit codes of `cargo loopcheck`.

/// Exit codes, as named constants. Scripts and CI can rely on them.
///
/// Named `Exit` rather than `ExitCode` so that it does not shadow [`std::process::ExitCode`],
/// which `main` returns; the constants are the `u8` that value is made from.
///
/// ```
/// use cargo_loopcheck::Exit;
/// assert_eq!(Exit::OK, 0);
/// assert_eq!(Exit::USAGE, 2);
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub struct Exit;

impl Exit {
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
