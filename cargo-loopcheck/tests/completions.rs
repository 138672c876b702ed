//! `cargo loopcheck completions SHELL`, run as a user would, and the bash script run by bash.

mod support;

use std::process::{Command, Output};

use cargo_loopcheck::Exit;
use cargo_loopcheck::cli::Cargo;
use clap::CommandFactory;

fn completions(shell: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cargo-loopcheck"))
        .args(["loopcheck", "completions", shell])
        .output()
        .expect("run cargo-loopcheck")
}

/// Every subcommand of `cargo loopcheck`, from the parser itself.
fn subcommands() -> Vec<String> {
    let cargo = Cargo::command();
    let loopcheck = cargo.find_subcommand("loopcheck").expect("loopcheck");
    loopcheck
        .get_subcommands()
        .map(|c| c.get_name().to_owned())
        .collect()
}

#[test]
fn every_shell_gets_a_script_naming_every_subcommand() {
    let subcommands = subcommands();
    assert!(subcommands.len() >= 9, "{subcommands:?}");
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let output = completions(shell);
        assert_eq!(output.status.code(), Some(Exit::OK.into()), "{shell}");
        let script = String::from_utf8(output.stdout).expect("UTF-8");
        assert!(script.len() > 1000, "{shell}: {script}");
        assert!(script.contains("message-format"), "{shell}");
        for subcommand in &subcommands {
            assert!(script.contains(subcommand.as_str()), "{shell} lacks {subcommand}");
        }
    }
}

#[test]
fn an_unknown_shell_is_a_usage_error() {
    let output = completions("tcsh");
    assert_eq!(output.status.code(), Some(Exit::USAGE.into()));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("possible values: bash, elvish, fish, powershell, zsh"),
        "{stderr}"
    );
}

/// What bash completes after `words`, with the script loaded as bash-completion would load it
/// for the `cargo-loopcheck` command, which cargo's completion forwards `cargo loopcheck` to.
fn bash_complete(script: &str, words: &[&str]) -> Option<Vec<String>> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cargo-loopcheck.bash");
    std::fs::write(&path, script).unwrap();
    let words: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let program = format!(
        r#"source "$1"
COMP_WORDS=({words})
COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ))
_cargo_loopcheck cargo-loopcheck "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD-1]}}"
complete -p cargo-loopcheck >/dev/null || exit 9
printf '%s\n' "${{COMPREPLY[@]}}""#,
        words = words.join(" ")
    );
    let output = match Command::new("bash")
        .arg("-c")
        .arg(program)
        .arg("bash")
        .arg(&path)
        .output()
    {
        Ok(output) => output,
        Err(err) => {
            support::skip(&format!(
                "bash cannot run ({err}), so the bash script is not exercised"
            ));
            return None;
        }
    };
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    Some(
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(str::to_owned)
            .collect(),
    )
}

#[test]
fn bash_completes_subcommands_flags_and_values() {
    let script = String::from_utf8(completions("bash").stdout).unwrap();
    let Some(top) = bash_complete(&script, &["cargo-loopcheck", ""]) else {
        return;
    };
    for subcommand in subcommands() {
        assert!(top.contains(&subcommand), "{subcommand} not in {top:?}");
    }
    assert!(!top.contains(&"help".to_owned()), "no `help` subcommand: {top:?}");
    let formats = bash_complete(&script, &["cargo-loopcheck", "lint", "--message-format", ""]).unwrap();
    assert_eq!(formats, ["human", "json", "github", "sarif"]);
    let shells = bash_complete(&script, &["cargo-loopcheck", "completions", ""]).unwrap();
    for shell in ["bash", "elvish", "fish", "powershell", "zsh"] {
        assert!(shells.contains(&shell.to_owned()), "{shell} not in {shells:?}");
    }
    let test_flags = bash_complete(&script, &["cargo-loopcheck", "test", "--re"]).unwrap();
    assert!(test_flags.contains(&"--repeat".to_owned()), "{test_flags:?}");
}

#[test]
fn help_is_stable() {
    let output = Command::new(env!("CARGO_BIN_EXE_cargo-loopcheck"))
        .args(["loopcheck", "completions", "--help"])
        .output()
        .expect("run cargo-loopcheck");
    assert_eq!(output.status.code(), Some(Exit::OK.into()));
    insta::assert_snapshot!("help_completions", String::from_utf8_lossy(&output.stdout));
}
