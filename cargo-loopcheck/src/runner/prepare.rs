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
        let mut zombies = find_zombies(&workspace, reap);
        if !zombies.is_empty() && !copies.is_empty() {
            let pids: Vec<u32> = zombies.iter().map(|z| z.zombie.pid).collect();
            let ours = of_run(&pids, copies);
            zombies.retain(|z| !ours.contains(&z.zombie.pid));
        }
        if self.human {
            output::zombies(self.term, &zombies);
        }
        prune_runs(self.runs, self.run_id);
        Ok((workspace, targets, zombies))
    }
}

/// The processes among `pids` (the zombies') that are this run's, as
/// `loopcheck::scan::processes_of_run` tells them: their `LOOPCHECK_RUN_DIR` is one of its
/// `copies`, and they were not started by the build (which sets `CARGO_CRATE_NAME` for the
/// compiler, and `OUT_DIR`, `TARGET` and `HOST` for a build script). Only these processes'
/// environments are read, not every process's: this runs beside the suite, and zombies are
/// few.
fn of_run(pids: &[u32], copies: &[PathBuf]) -> Vec<u32> {
    #[cfg(target_os = "linux")]
    {
        let dirs: Option<Vec<&str>> = copies.iter().map(|dir| dir.to_str()).collect();
        if let (Some(dirs), Ok(mut watch)) = (dirs, loopcheck::scan::Watch::open()) {
            let keys = [
                loopcheck::lease::RUN_DIR_VAR,
                "CARGO_CRATE_NAME",
                "OUT_DIR",
                "TARGET",
                "HOST",
            ];
            return pids
                .iter()
                .copied()
                .filter(|&pid| {
                    let [dir, crate_name, out_dir, target, host] =
                        <[Option<String>; 5]>::try_from(watch.environment(pid, &keys)).unwrap_or_default();
                    let of_build =
                        crate_name.is_some() || (out_dir.is_some() && target.is_some() && host.is_some());
                    !of_build && dir.is_some_and(|dir| dirs.contains(&dir.as_str()))
                })
                .collect();
        }
    }
    // A directory name that is not UTF-8 is compared byte for byte, in a walk of `/proc`.
    copies
        .iter()
        .flat_map(|dir| loopcheck::scan::processes_of_run(dir))
        .map(|p| p.process.pid)
        .filter(|pid| pids.contains(pid))
        .collect()
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

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// A `sleep` whose `LOOPCHECK_RUN_DIR` is `dir`, with the variables `env`; killed and
    /// reaped when dropped.
    struct Sleeper(std::process::Child);

    impl Sleeper {
        fn start(dir: &Path, env: &[(&str, &str)]) -> Sleeper {
            let child = std::process::Command::new("sleep")
                .arg("30")
                .env(loopcheck::lease::RUN_DIR_VAR, dir)
                .envs(env.iter().copied())
                .spawn()
                .expect("start sleep");
            Sleeper(child)
        }
    }

    impl Drop for Sleeper {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    #[test]
    fn only_the_processes_of_this_runs_copies_are_its_own() {
        let root = tempfile::tempdir().unwrap();
        let (copy, other) = (root.path().join("run.0.0"), root.path().join("other.0.0"));
        let ours = Sleeper::start(&copy, &[]);
        let theirs = Sleeper::start(&other, &[]);
        let build = Sleeper::start(&copy, &[("CARGO_CRATE_NAME", "demo")]);
        let script = Sleeper::start(&copy, &[("OUT_DIR", "/o"), ("TARGET", "t"), ("HOST", "h")]);
        let pids = [ours.0.id(), theirs.0.id(), build.0.id(), script.0.id()];
        // Of the run's directory, but started by the build: not the run's.
        assert_eq!(of_run(&pids, std::slice::from_ref(&copy)), [ours.0.id()]);
        assert_eq!(of_run(&pids, std::slice::from_ref(&other)), [theirs.0.id()]);
        assert!(of_run(&pids, &[]).is_empty());
    }
}
