//! `cargo loopcheck reap`: end this workspace's zombie listeners, safely.

use std::io::Write;
use std::time::Duration;

use serde::Serialize;

use crate::Exit;
use crate::cli::{Common, ReapArgs};
use crate::error::{Error, Result};
use crate::term::{Format, Term, print_json};
use crate::workspace::Workspace;
use crate::zombies::{self, Outcome, Zombie};

/// How long a zombie gets to exit after SIGTERM before SIGKILL.
const GRACE: Duration = Duration::from_secs(3);

#[derive(Serialize)]
struct Reaped<'a> {
    #[serde(flatten)]
    zombie: &'a Zombie,
    outcome: Outcome,
}

/// Runs `reap`: a dry run lists the zombies; `--yes` ends them. Exit code 1 when zombies are
/// left (listed by a dry run, or one could not be ended).
pub fn run(common: &Common, args: &ReapArgs, term: &Term) -> Result<u8> {
    let format = common
        .format
        .expect_one_of("reap", &[Format::Human, Format::Json])?;
    if args.yes && !cfg!(target_os = "linux") {
        return Err(Error::Unsupported(
            "ending zombie listeners needs Linux's /proc to tell a zombie from a reused pid",
        ));
    }
    let workspace = Workspace::load(common.manifest_path.as_deref())?;
    let found = zombies::find(&workspace)?;
    let results: Vec<Reaped<'_>> = found
        .iter()
        .map(|zombie| Reaped {
            zombie,
            outcome: if args.yes {
                zombies::end(zombie, GRACE)
            } else {
                Outcome::WouldEnd
            },
        })
        .collect();
    match format {
        Format::Json => print_json(&serde_json::json!({ "zombies": results }))?,
        _ => print_human(term, &results, args.yes).map_err(Error::Output)?,
    }
    let left = results
        .iter()
        .any(|r| matches!(r.outcome, Outcome::WouldEnd | Outcome::Failed | Outcome::Foreign));
    Ok(if left { Exit::FOUND } else { Exit::OK })
}

fn print_human(term: &Term, results: &[Reaped<'_>], yes: bool) -> std::io::Result<()> {
    if results.is_empty() {
        term.success("Finished", "no zombie listeners of this workspace");
        return Ok(());
    }
    let mut err = term.stderr();
    let bold = anstyle::Style::new().bold();
    for Reaped { zombie, outcome } in results {
        let (label, style) = match outcome {
            Outcome::WouldEnd => ("Would end", anstyle::AnsiColor::Yellow.on_default().bold()),
            Outcome::Terminated => ("Terminated", anstyle::AnsiColor::Green.on_default().bold()),
            Outcome::Killed => ("Killed", anstyle::AnsiColor::Green.on_default().bold()),
            Outcome::Gone => ("Gone", anstyle::AnsiColor::Cyan.on_default().bold()),
            Outcome::Failed => ("Failed", anstyle::AnsiColor::Red.on_default().bold()),
            Outcome::Foreign => ("Left", anstyle::AnsiColor::Yellow.on_default().bold()),
        };
        let addrs: Vec<String> = zombie.addrs.iter().map(ToString::to_string).collect();
        writeln!(
            err,
            "{style}{label:>12}{style:#} pid {} {bold}`{}`{bold:#} on {}",
            zombie.pid,
            zombie.command,
            addrs.join(", ")
        )?;
        writeln!(err, "{:>12} {}", "", zombie.reason)?;
    }
    if !yes {
        writeln!(
            err,
            "{bold}note{bold:#}: dry run; run `cargo loopcheck reap --yes` to end them (SIGTERM, then SIGKILL after {}s)",
            GRACE.as_secs()
        )?;
    }
    Ok(())
}
