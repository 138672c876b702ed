//! The command line, as clap sees it.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::term::{ColorWhen, Format};

/// `cargo` as seen by this binary: cargo runs `cargo-loopcheck loopcheck ARGS`.
#[derive(Debug, Parser)]
#[command(name = "cargo", bin_name = "cargo", version, disable_help_subcommand = true)]
pub enum Cargo {
    /// Find zombie listeners, lint hard-coded ports and explain socket failures in tests.
    Loopcheck(Loopcheck),
}

/// `cargo loopcheck`.
#[derive(Debug, Args)]
#[command(
    version,
    about = "Find zombie listeners, lint hard-coded ports and explain socket failures in tests",
    after_help = "Exit codes: 0 clean, 1 problems found, 2 usage error, 3 could not run.\nDocs: `cargo loopcheck explain CODE` shows a diagnostic code's documentation."
)]
pub struct Loopcheck {
    /// Settings shared by every command.
    #[command(flatten)]
    pub common: Common,
    /// What to do; `check` when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Flags every command takes.
#[derive(Debug, Args)]
pub struct Common {
    /// Path to the workspace's Cargo.toml.
    #[arg(long, global = true, value_name = "PATH")]
    pub manifest_path: Option<PathBuf>,
    /// Output format: human text on stderr, or data on stdout.
    #[arg(
        long = "message-format",
        visible_alias = "format",
        global = true,
        value_enum,
        default_value = "human",
        value_name = "FMT",
        action = clap::ArgAction::Append,
        value_delimiter = ','
    )]
    pub message_formats: Vec<Format>,
    /// The one format of `--message-format`, once [`Common::resolve_format`] has checked it.
    #[arg(skip)]
    pub format: Format,
    /// Coloring of human output [default: CARGO_TERM_COLOR, else auto].
    #[arg(long, global = true, value_enum, value_name = "WHEN")]
    pub color: Option<ColorWhen>,
}

impl Common {
    /// Settles `--message-format` as cargo does: the flag may repeat and take comma-separated
    /// values, and together they must name one kind of output; a second kind (even the same
    /// one again, as in cargo's `json,json`) is a usage error with cargo's words.
    pub fn resolve_format(&mut self) -> crate::Result<()> {
        match self.message_formats.as_slice() {
            [] => self.format = Format::Human,
            [one] => self.format = *one,
            [..] => {
                return Err(crate::Error::Usage(
                    "cannot specify two kinds of `message-format` arguments".into(),
                ));
            }
        }
        Ok(())
    }
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Preflight: zombie listeners, stale leases, host problems and lint findings (the default).
    Check,
    /// Lint test code for hard-coded ports, wildcard binds and racy port picking.
    Lint,
    /// Check the host: loopback, `localhost`, port ranges, firewall on lo, the lease registry.
    Doctor,
    /// List sockets, marked with leases, this workspace's test binaries and zombies.
    Ports(PortsArgs),
    /// Connect to an address and explain the outcome: who answered, or why nobody did.
    Probe(ProbeArgs),
    /// End zombie listeners left by this workspace's tests (a dry run without --yes).
    Reap(ReapArgs),
    /// Run the tests (nextest, else cargo test) and explain each failure: who held the port.
    Test(TestArgs),
    /// Show the documentation of a diagnostic code.
    Explain(ExplainArgs),
    /// Run a command with leased ports in LOOPCHECK_PORT, LOOPCHECK_PORT_0.. and LOOPCHECK_PORTS.
    Lease(LeaseArgs),
    /// Print a shell completion script for `cargo loopcheck` to stdout.
    Completions(CompletionsArgs),
    /// The target runner of `test --isolate`: runs one test binary in a network namespace.
    #[command(name = "__isolate", hide = true)]
    Isolate(HiddenIsolateArgs),
}

/// `cargo loopcheck lease`.
#[derive(Debug, Args)]
#[command(
    after_help = "The ports stay leased as long as CMD runs, and as long as a process CMD started in the background holds them; the exit status is CMD's (128+N when a signal N ended it).\n\nExamples:\n  cargo loopcheck lease -- sh -c 'exec my-server --port \"$LOOPCHECK_PORT\"'\n  cargo loopcheck lease --count 2 -- docker compose up\n  cargo loopcheck lease --block 4 -- ./start-node.sh"
)]
pub struct LeaseArgs {
    /// Lease N distinct ports [default: 1].
    #[arg(long, value_name = "N", conflicts_with = "block", value_parser = clap::value_parser!(u16).range(1..=4096))]
    pub count: Option<u16>,
    /// Lease N contiguous ports: LOOPCHECK_PORT, LOOPCHECK_PORT+1, ...
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=4096))]
    pub block: Option<u16>,
    /// The command to run with the ports, and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "CMD", allow_hyphen_values = true)]
    pub command: Vec<std::ffi::OsString>,
}

/// `cargo loopcheck test`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  cargo loopcheck test\n  cargo loopcheck test --junit junit.xml -- -p server --features tls\n  cargo loopcheck test --concurrent 2 --repeat 5\n  cargo loopcheck test --nextest -- --partition count:1/3\n  cargo loopcheck test --isolate --isolate-allow 5432"
)]
pub struct TestArgs {
    /// Run the tests with `cargo nextest run` [default when cargo-nextest is installed].
    #[arg(long, conflicts_with = "cargo_test")]
    pub nextest: bool,
    /// Run the tests with `cargo test`.
    #[arg(long)]
    pub cargo_test: bool,
    /// Run the suite N times, one run after another, to expose flaky tests.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub repeat: u32,
    /// Run K copies of the suite at once, as CI jobs or worktrees sharing a host would.
    #[arg(long, value_name = "K", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub concurrent: u32,
    /// End this workspace's zombie listeners before the run, instead of warning about them.
    #[arg(long)]
    pub reap: bool,
    /// Leave the processes the tests left running (for debugging) instead of ending them after
    /// the run; they are reported either way.
    #[arg(long)]
    pub keep_leftovers: bool,
    /// Also write the results as JUnit XML to FILE, diagnoses included.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Network isolation of the tests.
    #[command(flatten)]
    pub isolate: IsolateArgs,
    /// Arguments for the runner, after `--`: filters, `-p`, `--features`, nextest's
    /// `--partition`; after a second `--`, the test binaries' own.
    #[arg(last = true, value_name = "ARGS", allow_hyphen_values = true)]
    pub args: Vec<std::ffi::OsString>,
}

/// The `--isolate` flags of `cargo loopcheck test`.
#[derive(Debug, Args)]
pub struct IsolateArgs {
    /// Run each test process in a private network namespace with its own loopback (Linux), so
    /// that fixed ports collide with nothing; `--isolate=require` fails (exit 3) instead of
    /// running without isolation where it is unavailable.
    #[arg(long, value_enum, value_name = "WHEN", num_args = 0..=1, require_equals = true, default_missing_value = "available")]
    pub isolate: Option<Isolation>,
    /// With --isolate: `127.0.0.1:PORT` and `[::1]:PORT` inside reach the host's service on PORT
    /// (repeatable).
    #[arg(long, value_name = "PORT", requires = "isolate", value_parser = clap::value_parser!(u16).range(1..))]
    pub isolate_allow: Vec<u16>,
    /// With --isolate: tests whose name, or `binary::name`, contains PATTERN run without
    /// isolation (repeatable).
    #[arg(long, value_name = "PATTERN", requires = "isolate")]
    pub isolate_exclude: Vec<String>,
}

/// When `--isolate` insists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Isolation {
    /// Isolate where possible, else run without isolation and warn (plain `--isolate`).
    #[value(hide = true)]
    Available,
    /// Isolate, or fail with exit code 3.
    Require,
}

/// The hidden `__isolate` subcommand.
#[derive(Debug, Args)]
pub struct HiddenIsolateArgs {
    /// Only check whether isolation works here.
    #[arg(long)]
    pub check: bool,
    /// Enter namespaces and keep them, for the run's tests to join, until stdin closes.
    #[arg(long)]
    pub hold: bool,
    /// The test binary and its arguments, as cargo or nextest pass them to a target runner.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, value_name = "COMMAND")]
    pub command: Vec<std::ffi::OsString>,
}

/// `cargo loopcheck reap`.
#[derive(Debug, Args)]
pub struct ReapArgs {
    /// End them: SIGTERM, then SIGKILL to those still running after 3 seconds.
    #[arg(long)]
    pub yes: bool,
}

/// `cargo loopcheck ports`.
#[derive(Debug, Args)]
pub struct PortsArgs {
    /// Only sockets on this local port (repeatable).
    #[arg(long, value_name = "PORT")]
    pub port: Vec<u16>,
    /// Only sockets held by this process (repeatable).
    #[arg(long, value_name = "PID")]
    pub pid: Vec<u32>,
    /// Every socket in every state on every address, not only listeners on loopback and
    /// wildcard addresses.
    #[arg(long)]
    pub all: bool,
}

/// `cargo loopcheck probe`.
#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// The address: `127.0.0.1:8080`, `[::1]:8080` or `localhost:8080`.
    #[arg(value_name = "ADDR")]
    pub addr: String,
    /// How long to wait for the connection, such as `500ms`, `2s`.
    #[arg(long, default_value = "1s", value_parser = parse_duration, value_name = "DURATION")]
    pub timeout: std::time::Duration,
}

/// `cargo loopcheck explain`.
#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// A code (`LC001`) or its name (`port-in-use`).
    #[arg(value_name = "CODE")]
    pub code: String,
}

/// `cargo loopcheck completions`.
#[derive(Debug, Args)]
#[command(
    after_help = "Install (docs/cli.md has PowerShell and elvish):\n  bash (bash-completion 2.12+), in ~/.local/share/bash-completion/completions/:\n    cargo loopcheck completions bash > cargo-loopcheck\n  zsh, in a directory of $fpath:\n    cargo loopcheck completions zsh > _cargo-loopcheck\n  fish, in ~/.config/fish/completions/:\n    cargo loopcheck completions fish > cargo-loopcheck.fish"
)]
pub struct CompletionsArgs {
    /// The shell to complete in.
    #[arg(value_name = "SHELL", value_enum)]
    pub shell: clap_complete::Shell,
}

/// Parses a duration such as `250ms`, `2s` or `1m`.
///
/// ```
/// use std::time::Duration;
/// use cargo_loopcheck::cli::parse_duration;
/// assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
/// assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
/// assert!(parse_duration("2 weeks").is_err());
/// assert!(parse_duration("0s").is_err());
/// ```
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration such as `500ms`, `2s` or `1m`"))?;
    if number == 0 {
        return Err(format!("`{text}` is no time to wait: give at least `1ms`"));
    }
    match unit {
        "ms" => Ok(Duration::from_millis(number)),
        "s" => Ok(Duration::from_secs(number)),
        "m" => Ok(Duration::from_secs(number.saturating_mul(60))),
        _ => Err(format!("`{text}` has no unit: write `500ms`, `2s` or `1m`")),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn format_of(args: &[&str]) -> crate::Result<Format> {
        let Cargo::Loopcheck(mut parsed) =
            Cargo::try_parse_from([&["cargo", "loopcheck"], args].concat()).expect("parses");
        parsed.common.resolve_format().map(|()| parsed.common.format)
    }

    #[test]
    fn message_format_is_settled_as_cargo_settles_it() {
        assert_eq!(format_of(&["lint"]).unwrap(), Format::Human);
        assert_eq!(
            format_of(&["lint", "--message-format", "sarif"]).unwrap(),
            Format::Sarif
        );
        assert_eq!(format_of(&["--format=json", "lint"]).unwrap(), Format::Json);
        for twice in [
            &["lint", "--message-format", "json", "--format", "json"][..],
            &["lint", "--message-format", "json,sarif"],
            &["lint", "--message-format", "human", "--message-format", "github"],
        ] {
            let err = format_of(twice).unwrap_err();
            assert_eq!(
                err.to_string(),
                "cannot specify two kinds of `message-format` arguments"
            );
            assert_eq!(err.exit_code(), crate::Exit::USAGE);
        }
    }
}
