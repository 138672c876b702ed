//! One file per subcommand. A command parses nothing (clap did), runs the engines it needs,
//! and hands its result to [`crate::report`] to render; it returns the exit code.

pub mod check;
pub mod completions;
pub mod doctor;
pub mod explain;
pub mod lease;
pub mod lint;
pub mod ports;
pub mod probe;
pub mod reap;
pub mod test;
