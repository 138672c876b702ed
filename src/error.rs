use std::io;
use std::path::PathBuf;

/// What can go wrong while handing out a port or reading the host's port policy.
///
/// Messages are lower-case and name the value at fault; the underlying cause, if any, is
/// available through [`std::error::Error::source`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `LOOPCHECK_PORT_RANGE` (or another setting) holds a value that cannot be used.
    #[error(
        "invalid `{variable}` value `{value}`: {reason}; expected `LO-HI` with 1024 <= LO <= HI <= 65535, for example `LOOPCHECK_PORT_RANGE=20000-29999`"
    )]
    InvalidRange {
        /// The environment variable that was read.
        variable: &'static str,
        /// The value as found.
        value: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The allocation range left no port that is outside the kernel's ephemeral and reserved
    /// ranges.
    #[error(
        "no port is left for allocation: {range} lies entirely inside the ephemeral or reserved ports ({ephemeral}); set `LOOPCHECK_PORT_RANGE` to a range outside them"
    )]
    EmptyRange {
        /// The configured range, `LO-HI`.
        range: String,
        /// The kernel ranges it collides with.
        ephemeral: String,
    },

    /// Every port of the allocation range is leased, or could not be bound.
    #[error(
        "no free port in {range}: {leased} leased by live processes, {unbindable} in use by other programs, {unusable} with unusable lease files; release leases or widen the range with `LOOPCHECK_PORT_RANGE`"
    )]
    Exhausted {
        /// The allocation range, as `LO-HI[,LO-HI..]`.
        range: String,
        /// Ports whose lease is held by a live process (this one included).
        leased: usize,
        /// Ports that are not leased but could not be bound.
        unbindable: usize,
        /// Ports whose lease file could not be opened or repaired.
        unusable: usize,
    },

    /// No run of `len` contiguous ports of the allocation range could be leased and bound.
    #[error(
        "no {len} contiguous free ports in {range}: {leased} ports leased by live processes, {unbindable} in use by other programs, {unusable} with unusable lease files; release leases or widen the range with `LOOPCHECK_PORT_RANGE`"
    )]
    NoBlock {
        /// The block's length.
        len: usize,
        /// The allocation range, as `LO-HI[,LO-HI..]`.
        range: String,
        /// Ports found leased by live processes (this one included) while looking.
        leased: usize,
        /// Ports found not leased but not bindable.
        unbindable: usize,
        /// Ports whose lease file could not be opened or repaired.
        unusable: usize,
    },

    /// The allocation range cannot hold what was asked, however free it is.
    #[error(
        "{wanted} {what} cannot fit in the allocation range {range}, which has {available} at most; widen it with `LOOPCHECK_PORT_RANGE=LO-HI`"
    )]
    RangeTooSmall {
        /// How many ports were asked for.
        wanted: usize,
        /// `ports` or `contiguous ports`.
        what: &'static str,
        /// The allocation range, as `LO-HI[,LO-HI..]`.
        range: String,
        /// The most the range can give: all its ports, or its longest contiguous piece.
        available: usize,
    },

    /// The lease registry directory is unsafe or unusable.
    #[error("lease directory `{}` is unsafe: {reason}", path.display())]
    UnsafeDir {
        /// The directory.
        path: PathBuf,
        /// Why it was refused.
        reason: String,
    },

    /// An I/O operation on the lease registry failed.
    #[error("cannot {action} `{}`", path.display())]
    Registry {
        /// What was being done, such as `create directory`.
        action: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },

    /// A socket operation failed.
    #[error("cannot {action} {addr}")]
    Socket {
        /// What was being done, such as `bind`.
        action: &'static str,
        /// The address involved.
        addr: std::net::SocketAddr,
        /// The cause.
        #[source]
        source: io::Error,
    },

    /// This process, or the whole system, has no file descriptor left for a lease file or a
    /// socket (`EMFILE`, `ENFILE`).
    #[error(
        "cannot {action}: too many open files; raise the limit of open files with `ulimit -n` (for example `ulimit -n 4096`), or close the files and sockets the tests keep open"
    )]
    TooManyOpenFiles {
        /// What was being done, such as `open a lease file`.
        action: &'static str,
        /// The cause.
        #[source]
        source: io::Error,
    },

    /// `reserve_ports(0)` or a similar request that cannot be met by its shape.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
}

impl Error {
    /// [`Error::Socket`], or [`Error::TooManyOpenFiles`] when the cause is running out of file
    /// descriptors: then the address is not at fault, and the limit is what to change.
    pub(crate) fn socket(action: &'static str, addr: std::net::SocketAddr, source: io::Error) -> Error {
        if crate::sys::is_out_of_files(&source) {
            Error::TooManyOpenFiles { action, source }
        } else {
            Error::Socket { action, addr, source }
        }
    }
}

/// `Result` with [`Error`] as its error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
