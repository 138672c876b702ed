//! What `reap` did to each zombie listener, and the words for it.

use std::io::Write as _;
use std::time::Duration;

use serde::Serialize;

use super::Document;
use crate::term::Term;
use crate::zombies::{EndOutcome, Zombie};

/// A zombie listener and what became of it: a row of `reap`'s report, and of `test`'s
/// zombies found before the run.
#[derive(Debug, Clone, Serialize)]
pub struct ZombieReport {
    /// The zombie.
    #[serde(flatten)]
    pub zombie: Zombie,
    /// What ending it did (`would_end` in a dry run of `reap`); in `test`, `null` when it was
    /// left alone (without `--reap`).
    pub outcome: Option<EndOutcome>,
}

/// What `reap` prints: `{"zombies": [..]}`.
#[derive(Serialize)]
pub(crate) struct ReapReport {
    pub(crate) zombies: Vec<ZombieReport>,
    /// Without `--yes`: nothing was signalled.
    #[serde(skip)]
    pub(crate) dry_run: bool,
    /// How long a zombie had between SIGTERM and SIGKILL.
    #[serde(skip)]
    pub(crate) grace: Duration,
}

/// What became of a zombie, in words for a sentence or a table cell (the JSON keeps the
/// snake_case names of the contract).
pub(crate) fn outcome_words(outcome: EndOutcome) -> &'static str {
    match outcome {
        EndOutcome::WouldEnd => "would be ended",
        EndOutcome::Terminated => "terminated",
        EndOutcome::Killed => "killed",
        EndOutcome::Gone => "gone",
        EndOutcome::Failed => "failed",
        EndOutcome::Foreign => "left running (another user's)",
    }
}

impl Document for ReapReport {
    fn human(&self, term: &Term) -> std::io::Result<()> {
        let results = &self.zombies;
        if results.is_empty() {
            term.success("Finished", "no zombie listeners of this workspace");
            return Ok(());
        }
        let mut err = term.stderr();
        let bold = anstyle::Style::new().bold();
        for ZombieReport { zombie, outcome } in results {
            // `reap` gives every zombie an outcome; one without was left alone, as a dry run
            // leaves it.
            let (label, style) = match outcome.unwrap_or(EndOutcome::WouldEnd) {
                EndOutcome::WouldEnd => ("Would end", anstyle::AnsiColor::Yellow.on_default().bold()),
                EndOutcome::Terminated => ("Terminated", anstyle::AnsiColor::Green.on_default().bold()),
                EndOutcome::Killed => ("Killed", anstyle::AnsiColor::Green.on_default().bold()),
                EndOutcome::Gone => ("Gone", anstyle::AnsiColor::Cyan.on_default().bold()),
                EndOutcome::Failed => ("Failed", anstyle::AnsiColor::Red.on_default().bold()),
                EndOutcome::Foreign => ("Left", anstyle::AnsiColor::Yellow.on_default().bold()),
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
        if self.dry_run {
            writeln!(
                err,
                "{bold}note{bold:#}: dry run; run `cargo loopcheck reap --yes` to end them (SIGTERM, then SIGKILL after {}s)",
                self.grace.as_secs()
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_read_as_words() {
        // Not their `Debug` names lower-cased ("wouldend", "foreign").
        assert_eq!(outcome_words(EndOutcome::WouldEnd), "would be ended");
        assert_eq!(
            outcome_words(EndOutcome::Foreign),
            "left running (another user's)"
        );
        assert_eq!(outcome_words(EndOutcome::Terminated), "terminated");
        assert_eq!(outcome_words(EndOutcome::Killed), "killed");
        assert_eq!(outcome_words(EndOutcome::Gone), "gone");
        assert_eq!(outcome_words(EndOutcome::Failed), "failed");
    }
}
