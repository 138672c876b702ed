//! After a round, the processes its tests left running are ended, so that the next CI step or
//! the next run does not meet them: SIGTERM, a grace period, SIGKILL, with the same checks as
//! `reap` (same process by start time and pidfd, this user's). `--keep-leftovers` keeps them.
//! Either way each diagnosis says what became of its process.

use loopcheck::Diagnosis;
use loopcheck::scan::RunProcess;

use crate::term::Term;
use crate::zombies::{self, EndOutcome};

/// Ends each leftover unless `keep`, and records in its diagnosis what was done. They are
/// ended all at once, so that a few that ignore SIGTERM cost one grace period, not one each.
pub(crate) fn end(leftovers: Vec<(RunProcess, Diagnosis)>, keep: bool) -> Vec<(RunProcess, Diagnosis)> {
    let outcomes = if keep {
        vec![EndOutcome::WouldEnd; leftovers.len()]
    } else {
        let processes: Vec<_> = leftovers.iter().map(|(l, _)| l.process.clone()).collect();
        // Each carries this run's marker and was found alive after the run; it is ended only
        // while it is still that process and this user's.
        zombies::end_processes(&processes, zombies::END_GRACE, &|_| true)
    };
    leftovers
        .into_iter()
        .zip(outcomes)
        .map(|(leftover, outcome)| record(leftover, keep, outcome))
        .collect()
}

fn record(
    (leftover, mut diagnosis): (RunProcess, Diagnosis),
    keep: bool,
    outcome: EndOutcome,
) -> (RunProcess, Diagnosis) {
    let pid = leftover.process.pid;
    let done = if keep {
        format!("left running after the run, as --keep-leftovers asks; `kill {pid}` ends it")
    } else {
        match outcome {
            EndOutcome::Terminated => "after the run, cargo loopcheck ended it with SIGTERM".to_owned(),
            EndOutcome::Killed => format!(
                "after the run, cargo loopcheck ended it with SIGKILL: it outlived SIGTERM by {}s",
                zombies::END_GRACE.as_secs()
            ),
            EndOutcome::Gone => "it exited by itself after the run".to_owned(),
            EndOutcome::Foreign => "owned by another user; left running".to_owned(),
            EndOutcome::Failed | EndOutcome::WouldEnd => {
                format!("cargo loopcheck could not end it after the run; `kill {pid}` ends it")
            }
        }
    };
    if !keep && outcome != EndOutcome::Foreign {
        // The hint to end it by hand is void once it is ended, and in `done` otherwise.
        diagnosis.fix = diagnosis
            .fix
            .replace(&format!("; `kill {pid}` ends this one"), "");
    }
    diagnosis.summary = format!("{}; {done}", diagnosis.summary);
    diagnosis.evidence.push(format!("teardown: {done}"));
    (leftover, diagnosis)
}

/// A round that did not run its tests (a setup script failed, the runner crashed) may still
/// have left processes: they are ended (or kept) all the same, and shown on stderr, since the
/// run ends with its error instead of a report.
pub(crate) fn after_failed_round(term: &Term, leftovers: Vec<(RunProcess, Diagnosis)>, keep: bool) {
    for (_, diagnosis) in end(leftovers, keep) {
        term.diagnosis(&diagnosis);
    }
}
