//! `cargo loopcheck completions SHELL`: a completion script, generated from the command line
//! itself by `clap_complete`, so it never falls behind a new flag.
//!
//! The script plugs into the completion cargo already has where the shell lets it:
//! - bash: cargo's completion (bash-completion 2.12 and later) hands `cargo loopcheck ...` to
//!   the completion of the `cargo-loopcheck` command, so the script completes that command.
//! - zsh: cargo's `_cargo` calls a `_cargo-loopcheck` function for a plugin's arguments, so the
//!   script defines that function (put it in `fpath` as `_cargo-loopcheck`).
//! - fish: completions add up, so the script adds `cargo loopcheck ...` to cargo's own; its
//!   helper functions are renamed so that they cannot replace those of fish's cargo completion.
//! - PowerShell and elvish have no completion of cargo to plug into: the script completes
//!   `cargo` with `loopcheck` as its only subcommand.

use std::io::Write;

use clap::{Args, CommandFactory};
use clap_complete::Shell;

use crate::Exit;
use crate::cli::{Cargo, Common, CompletionsArgs, Loopcheck};
use crate::error::{Error, Result};
use crate::term::Format;

/// The completion script for `shell`.
///
/// ```
/// use clap_complete::Shell;
/// let script = cargo_loopcheck::commands::completions::script(Shell::Bash);
/// assert!(script.contains("cargo-loopcheck"));
/// ```
pub fn script(shell: Shell) -> String {
    let (mut command, bin_name) = match shell {
        // clap_complete's bash script names a hyphenated command's subcommands inconsistently,
        // so it is generated for `cargo_loopcheck` and registered for `cargo-loopcheck`.
        Shell::Bash => (loopcheck_command(), "cargo_loopcheck"),
        Shell::Zsh => (loopcheck_command(), "cargo-loopcheck"),
        _ => (Cargo::command(), "cargo"),
    };
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut command, bin_name, &mut out);
    let script = String::from_utf8(out).expect("clap_complete writes UTF-8");
    match shell {
        Shell::Bash => script.replace(" cargo_loopcheck\n", " cargo-loopcheck\n"),
        Shell::Fish => script.replace("__fish_cargo_", "__fish_cargo_loopcheck_"),
        _ => script,
    }
}

/// `cargo loopcheck` as the command `cargo-loopcheck`: what cargo's bash and zsh completions
/// hand a plugin's arguments to.
fn loopcheck_command() -> clap::Command {
    // Built on its own, it would gain the `help` subcommand that cargo's has not.
    Loopcheck::augment_args(clap::Command::new("cargo-loopcheck")).disable_help_subcommand(true)
}

/// Runs `completions`: the script goes to stdout.
pub fn run(common: &Common, args: &CompletionsArgs) -> Result<u8> {
    common.format.expect_one_of("completions", &[Format::Human])?;
    let mut out = std::io::stdout().lock();
    match out
        .write_all(script(args.shell).as_bytes())
        .and_then(|()| out.flush())
    {
        Err(err) if err.kind() != std::io::ErrorKind::BrokenPipe => Err(Error::Output(err)),
        _ => Ok(Exit::OK),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fish_helpers_are_renamed_everywhere() {
        let fish = script(Shell::Fish);
        assert!(fish.contains("__fish_cargo_loopcheck_using_subcommand loopcheck"));
        assert!(
            !fish
                .replace("__fish_cargo_loopcheck_", "")
                .contains("__fish_cargo_"),
            "{fish}"
        );
    }

    #[test]
    fn zsh_defines_the_function_cargo_calls_for_a_plugin() {
        let zsh = script(Shell::Zsh);
        assert!(zsh.starts_with("#compdef cargo-loopcheck"), "{zsh}");
        assert!(zsh.contains("_cargo-loopcheck() {"), "{zsh}");
    }
}
