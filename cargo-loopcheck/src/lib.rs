//! `cargo loopcheck`: the command-line face of [`loopcheck`].
//!
//! Every command is a function of this library; `main.rs` only calls [`main`]. The commands
//! and their flags are documented in `docs/cli.md` and by `cargo loopcheck --help`.

#![warn(missing_docs)]

// Plumbing: the command line, the terminal, the workspace, errors and exit codes.
pub mod cli;
mod error;
mod exit;
pub mod term;
// Not API: public because the integration tests in `tests/` load workspaces with it.
#[doc(hidden)]
pub mod workspace;

// What the user runs, and how its results are shown.
pub mod commands;
pub mod report;

// The engines. `lint` and `runner` are public, not API: the integration tests in `tests/` call
// the lint directly, and `benches/timeline.rs` drives the runner's sampler.
mod isolate;
#[doc(hidden)]
pub mod lint;
#[doc(hidden)]
pub mod runner;
mod zombies;

use std::ffi::OsString;

use clap::Parser;

pub use error::{Error, Result};
pub use exit::Exit;

use crate::cli::{Cargo, Command};
use crate::term::Term;

/// Runs `cargo loopcheck` with the process's arguments and returns its exit code.
pub fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(run(std::env::args_os()))
}

/// Runs `cargo loopcheck` with `args` (the program name first) and returns its exit code.
///
/// ```
/// use cargo_loopcheck::{Exit, run};
///
/// assert_eq!(run(["cargo-loopcheck", "loopcheck", "explain", "LC001"]), Exit::OK);
/// assert_eq!(run(["cargo-loopcheck", "loopcheck", "explain", "LC999"]), Exit::USAGE);
/// ```
pub fn run<I, T>(args: I) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    // The target runner of `test --isolate` starts once per test process: it skips clap.
    if let [_, loopcheck, hidden, command @ ..] = args.as_slice()
        && loopcheck == "loopcheck"
        && hidden == "__isolate"
        && command
            .first()
            .is_none_or(|first| !first.to_string_lossy().starts_with("--"))
    {
        return isolate::run_hidden(false, false, command);
    }
    let Cargo::Loopcheck(mut args) = match Cargo::try_parse_from(args) {
        Ok(args) => args,
        Err(err) => {
            let _ = err.print();
            return if err.use_stderr() { Exit::USAGE } else { Exit::OK };
        }
    };
    let term = Term::new(args.common.color);
    if let Err(err) = args.common.resolve_format() {
        term.error_chain(&err);
        return err.exit_code();
    }
    let result = match args.command.as_ref().unwrap_or(&Command::Check) {
        Command::Check => commands::check::run(&args.common, &term),
        Command::Lint => commands::lint::run(&args.common, &term),
        Command::Doctor => commands::doctor::run(&args.common, &term),
        Command::Ports(ports) => commands::ports::run(&args.common, ports, &term),
        Command::Reap(reap) => commands::reap::run(&args.common, reap, &term),
        Command::Probe(probe) => commands::probe::run(&args.common, probe, &term),
        Command::Test(test) => commands::test::run(&args.common, test, &term),
        Command::Explain(explain) => commands::explain::run(&args.common, explain, &term),
        Command::Lease(lease) => commands::lease::run(&args.common, lease, &term),
        Command::Completions(completions) => commands::completions::run(&args.common, completions),
        Command::Isolate(hidden) => Ok(isolate::run_hidden(hidden.check, hidden.hold, &hidden.command)),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            term.error_chain(&err);
            err.exit_code()
        }
    }
}
