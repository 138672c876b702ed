//! Reading the workspace for a run: its test targets and its zombie listeners (with `--reap`,
//! ended), while old runs are pruned.

use std::path::{Path, PathBuf};

use super::model::ZombieReport;
use super::output;
use super::runs::prune_runs;
use super::targets::Targets;
use crate::cli::Common;
use crate::error::Result;
use crate::term::Term;
use crate::workspace::Workspace;
use crate::zombies;

pub(crate) type Prepared = (Workspace, Targets, Vec<ZombieReport>);

/// What reading the workspace needs.
pub(crate) struct Setup<'a> {
    pub(crate) common: &'a Common,
    pub(crate) term: &'a Term,
    pub(crate) human: bool,
    pub(crate) runs: &'a Path,
    pub(crate) run_id: &'a str,
}

impl Setup<'_> {
    /// The workspace, its test targets and its zombies (with `reap`, ended), which are shown
    /// at once (human output); old runs are pruned meanwhile. Processes of this run's `copies`
    /// are no zombies, even orphaned.
    pub(crate) fn prepare(&self, reap: bool, copies: &[PathBuf]) -> Result<Prepared> {
        let workspace = Workspace::load(self.common.manifest_path.as_deref())?;
        let targets = Targets::new(&workspace);
        let ours: Vec<u32> = copies
            .iter()
            .flat_map(|dir| loopcheck::scan::processes_of_run(dir))
            .map(|p| p.process.pid)
            .collect();
        let mut zombies = find_zombies(&workspace, reap);
        zombies.retain(|z| !ours.contains(&z.zombie.pid));
        if self.human {
            output::zombies(self.term, &zombies);
        }
        prune_runs(self.runs, self.run_id);
        Ok((workspace, targets, zombies))
    }
}

/// The zombies of the workspace, left alone or, with `reap`, ended.
fn find_zombies(workspace: &Workspace, reap: bool) -> Vec<ZombieReport> {
    match zombies::find(workspace) {
        Ok(found) => found
            .into_iter()
            .map(|zombie| {
                let outcome = reap.then(|| zombies::end(&zombie, zombies::END_GRACE));
                ZombieReport { zombie, outcome }
            })
            .collect(),
        // The run goes on: zombies are a hint, not a precondition.
        Err(error) => {
            eprintln!("warning: cannot look for zombie listeners: {error}");
            Vec::new()
        }
    }
}
