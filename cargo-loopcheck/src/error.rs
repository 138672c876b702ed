use std::path::PathBuf;

use crate::ExitCode;

/// What stops a `cargo loopcheck` command from doing its job.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The arguments make no sense together, or a value is malformed.
    #[error("{0}")]
    Usage(String),

    /// `cargo metadata` failed, typically a bad `--manifest-path`.
    #[error("cannot read the workspace at `{}`", manifest.as_deref().map_or_else(|| ".".into(), |p| p.display().to_string()))]
    Metadata {
        /// The manifest given with `--manifest-path`, if any.
        manifest: Option<PathBuf>,
        /// The cause.
        #[source]
        source: cargo_metadata::Error,
    },

    /// The socket table could not be read.
    #[error("cannot read the socket table")]
    Scan(#[source] loopcheck::scan::ScanError),

    /// The lease registry or the port policy could not be used.
    #[error(transparent)]
    Loopcheck(#[from] loopcheck::Error),

    /// The platform cannot do what was asked.
    #[error("not supported on this platform: {0}")]
    Unsupported(&'static str),

    /// Writing output failed.
    #[error("cannot write output")]
    Output(#[source] std::io::Error),
}

impl Error {
    /// The exit code this error ends the process with.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) => ExitCode::USAGE,
            _ => ExitCode::COULD_NOT_RUN,
        }
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
