use std::io;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

use super::Backend;

/// Why a socket scan failed.
///
/// Missing pieces of an otherwise successful scan (hidden owners, an absent IPv6 table) are
/// not errors: they are reported in [`SocketTable::limitations`](super::SocketTable::limitations).
///
/// ```
/// use loopcheck::scan::{self, Backend, ScanError, ScanOptions};
///
/// let options = ScanOptions { backend: Some(Backend::Lsof), ..ScanOptions::all() };
/// match scan::scan_with(&options) {
///     Ok(table) => println!("{} sockets", table.sockets.len()),
///     Err(ScanError::ProgramNotFound { program }) => println!("skipped: no `{program}`"),
///     Err(error) => println!("error: {error}"),
/// }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScanError {
    /// No backend works on this platform.
    #[error("no socket backend available on this platform: install `lsof`")]
    NoBackend,
    /// A forced [`Backend`] does not exist on this platform.
    #[error("the `{backend}` socket backend is not available on this platform")]
    Unsupported {
        /// The backend asked for.
        backend: Backend,
    },
    /// The netlink `NETLINK_SOCK_DIAG` query failed (only when that backend was forced;
    /// otherwise the scan falls back to `/proc/net`).
    #[error("netlink sock_diag query failed")]
    SockDiag(#[source] io::Error),
    /// A system file could not be read.
    #[error("cannot read `{}`", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The program a backend runs is not installed (not found on `PATH`).
    #[error("`{program}` was not found on `PATH`")]
    ProgramNotFound {
        /// The program's name.
        program: &'static str,
    },
    /// The program a backend runs could not be started, or its output not read.
    #[error("cannot run `{}`", program.display())]
    Spawn {
        /// The program.
        program: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The program a backend runs did not finish in time, and was killed.
    #[error("`{}` did not finish within {} s", program.display(), timeout.as_secs())]
    Timeout {
        /// The program.
        program: PathBuf,
        /// How long it was given.
        timeout: Duration,
    },
    /// The program a backend runs reported failure.
    #[error("`{}` failed ({status}): {stderr}", program.display())]
    Failed {
        /// The program.
        program: PathBuf,
        /// How it exited.
        status: ExitStatus,
        /// The start of its standard error, trimmed.
        stderr: String,
    },
}
