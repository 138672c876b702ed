//! `cargo loopcheck reap`: end this workspace's zombie listeners, safely.

use crate::Exit;
use crate::cli::{Common, ReapArgs};
use crate::error::{Error, Result};
use crate::report;
use crate::report::reap::{ReapReport, ZombieReport};
use crate::term::{Format, Term};
use crate::workspace::Workspace;
use crate::zombies::{self, EndOutcome};

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
    let results: Vec<ZombieReport> = found
        .into_iter()
        .map(|zombie| {
            let outcome = if args.yes {
                zombies::end(&zombie, zombies::END_GRACE)
            } else {
                EndOutcome::WouldEnd
            };
            ZombieReport {
                zombie,
                outcome: Some(outcome),
            }
        })
        .collect();
    let reaped = ReapReport {
        zombies: results,
        dry_run: !args.yes,
        grace: zombies::END_GRACE,
    };
    report::emit(&reaped, format, term)?;
    let left = reaped.zombies.iter().any(|r| {
        matches!(
            r.outcome,
            Some(EndOutcome::WouldEnd | EndOutcome::Failed | EndOutcome::Foreign)
        )
    });
    Ok(if left { Exit::FOUND } else { Exit::OK })
}
