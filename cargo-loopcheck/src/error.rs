use std::path::PathBuf;

use crate::Exit;

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

    /// `cargo loopcheck lease` found no ports to lease.
    #[error("cannot lease {what} for `{command}`{holders}")]
    NoPorts {
        /// What was asked for: `2 ports`, `a block of 4 ports`.
        what: String,
        /// The command the ports were for.
        command: String,
        /// Who holds the range's leases, as `; held in RANGE: ...`, or nothing.
        holders: String,
        /// Why the library could not lease them.
        #[source]
        source: Box<loopcheck::Error>,
    },

    /// The platform cannot do what was asked.
    #[error("not supported on this platform: {0}")]
    Unsupported(&'static str),

    /// Writing output failed.
    #[error("cannot write output")]
    Output(#[source] std::io::Error),

    /// A program could not be started: cargo missing from `PATH`, for example.
    #[error("cannot run `{program}`")]
    Spawn {
        /// The program.
        program: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },

    /// `--nextest` was given and cargo-nextest is not installed.
    #[error(
        "cargo-nextest is not installed: install it with `cargo install cargo-nextest --locked`, or run the tests with --cargo-test"
    )]
    NoNextest,

    /// The tests did not build.
    #[error("the build failed: `{command}` exited with {status}; no test ran")]
    BuildFailed {
        /// The command, as a user would type it.
        command: String,
        /// Its exit status.
        status: String,
    },

    /// The runner stopped for a reason other than failing tests.
    #[error("`{command}` did not run the tests: it exited with {status}{detail}")]
    RunnerFailed {
        /// The command, as a user would type it.
        command: String,
        /// Its exit status.
        status: String,
        /// What it said last, or what that status means.
        detail: String,
    },

    /// A SIGTERM or SIGINT stopped `test` before the suite ran to its end.
    #[error(
        "the run was stopped by {signal} before it ended: the report covers the {finished} test(s) that had finished"
    )]
    Interrupted {
        /// `SIGTERM` or `SIGINT`.
        signal: &'static str,
        /// How many tests the report covers.
        finished: usize,
    },
    /// `--isolate=require`, and network isolation is unavailable here.
    #[error(transparent)]
    Isolation(Unavailable),

    /// A file or directory of the run could not be created, written or read.
    #[error("cannot {action} `{}`", path.display())]
    Io {
        /// What was tried: `create`, `write`, `read`.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// The exit code this error ends the process with.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) => Exit::USAGE,
            _ => Exit::COULD_NOT_RUN,
        }
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why isolation cannot be had here, and what would make it possible: one line each.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("network isolation is unavailable: {why}; {fix}")]
pub struct Unavailable {
    /// The cause, such as `user namespaces are disabled (user.max_user_namespaces = 0)`.
    pub why: String,
    /// What to do about it.
    pub fix: String,
}

impl Unavailable {
    pub(crate) fn new(why: impl Into<String>, fix: impl Into<String>) -> Unavailable {
        Unavailable {
            why: why.into(),
            fix: fix.into(),
        }
    }
}
