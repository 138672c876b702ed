//! One copy of the suite: the runner started with the copy's run directory, and its results
//! read back (nextest's JUnit report, or cargo test's output).

use std::path::{Path, PathBuf};

use super::exec::{self, Invocation};
use super::junit;
use super::libtest;
use super::model::{Execution, RunnerKind, Status};
use super::targets::Targets;
use crate::error::{Error, Result};
use crate::workspace::Workspace;

/// One copy of the suite, run to its end.
pub(crate) struct FinishedCopy {
    dir: PathBuf,
    echoed: bool,
    /// The nextest profile the user chose, whose JUnit settings may win over ours.
    user_profile: Option<String>,
    started: std::time::SystemTime,
    pub(crate) run: exec::RunOutput,
}

/// The nextest profile of a run, when the user chose none: the user's `default` settings,
/// plus a JUnit report where this run reads it. A repository's configuration cannot move the
/// report of a profile it does not know. (No `tool:` prefix: nextest makes a directory of the
/// name, and Windows allows no colon in one.)
const NEXTEST_PROFILE: &str = "loopcheck-run";

/// Runs one copy of the suite with `LOOPCHECK_RUN_DIR=dir`.
pub(crate) fn run_copy(invocation: &Invocation, dir: &Path, echo: bool) -> Result<FinishedCopy> {
    let user_profile = match invocation.runner {
        RunnerKind::Nextest => invocation.user_profile(),
        RunnerKind::CargoTest => None,
    };
    let mut own = Vec::new();
    if invocation.runner == RunnerKind::Nextest {
        let profile = user_profile.as_deref().unwrap_or(NEXTEST_PROFILE);
        let config = dir.join("nextest.toml");
        // The store too is the copy's: where a repository's own `junit.path` puts the report
        // of the user's profile, copies running at once do not overwrite each other's.
        let text = format!(
            "# Written by cargo-loopcheck for one run: where nextest puts its JUnit report.\n[store]\ndir = {}\n\n[profile.{}.junit]\npath = {}\nstore-success-output = false\nstore-failure-output = true\n",
            toml_string(&dir.join("store").to_string_lossy()),
            toml_string(profile),
            toml_string(&dir.join("junit.xml").to_string_lossy())
        );
        std::fs::write(&config, text).map_err(|source| Error::Io {
            action: "write",
            path: config.clone(),
            source,
        })?;
        let mut flag = std::ffi::OsString::from("loopcheck:");
        flag.push(&config);
        own.push("--tool-config-file".into());
        own.push(flag);
        if user_profile.is_none() {
            own.push("--profile".into());
            own.push(NEXTEST_PROFILE.into());
        }
    }
    let mut command = invocation.command(false, &own);
    command.env(loopcheck::lease::RUN_DIR_VAR, dir);
    let started = std::time::SystemTime::now();
    let run = exec::run(command, echo, &dir.join("output.log"))?;
    Ok(FinishedCopy {
        dir: dir.to_path_buf(),
        echoed: echo,
        user_profile,
        started,
        run,
    })
}

impl FinishedCopy {
    /// The copy's results: nextest's JUnit report, or cargo test's output; an error when the
    /// runner did not run the tests.
    pub(crate) fn executions(
        self,
        invocation: &Invocation,
        targets: &Targets,
        workspace: &Workspace,
    ) -> Result<Vec<Execution>> {
        let status = self.run.status;
        // A run stopped by a signal is read for whatever it finished.
        let stopped = self.run.stopped.is_some();
        let failed_to_run = |detail: String| Error::RunnerFailed {
            command: invocation.shown(false),
            status: exec::describe(status),
            detail,
        };
        let build_failed = || Error::BuildFailed {
            command: invocation.shown(false),
            status: exec::describe(status),
        };
        let not_echoed = |output: &str| {
            if self.echoed {
                String::new()
            } else {
                format!("; its last lines:\n{}", exec::tail(output, 15))
            }
        };
        match invocation.runner {
            RunnerKind::Nextest => {
                match status.code() {
                    _ if stopped => {}
                    Some(0 | 100) => {}
                    Some(101) => return Err(build_failed()),
                    Some(4) => return Err(failed_to_run(": no test matched the filters".into())),
                    _ => return Err(failed_to_run(not_echoed(&self.run.output))),
                }
                let ours = self.dir.join("junit.xml");
                // A repository configuration that sets the JUnit path of the user's profile
                // wins over ours: then the report is the one nextest just wrote there, under
                // its store directory (`target/nextest` of the workspace by default).
                let profile = self.user_profile.as_deref().unwrap_or(NEXTEST_PROFILE);
                let stores = [
                    self.dir.join("store").join(profile),
                    workspace.root.join("target").join("nextest").join(profile),
                    workspace.target_dir.join("nextest").join(profile),
                ];
                let found = if ours.exists() {
                    Some(ours.clone())
                } else {
                    stores.iter().find_map(|store| fresh_xml(store, self.started))
                };
                let path = match found {
                    Some(path) => path,
                    None if stopped => return Ok(Vec::new()),
                    None => {
                        return Err(failed_to_run(format!(
                            ", and wrote no JUnit report, neither at {} nor under {}",
                            ours.display(),
                            stores[0].display()
                        )));
                    }
                };
                let xml = std::fs::read_to_string(&path).map_err(|source| Error::Io {
                    action: "read",
                    path: path.clone(),
                    source,
                })?;
                let unreadable = |e: quick_junit::DeserializeError| {
                    failed_to_run(format!(
                        ", and its JUnit report {} is unreadable: {e}",
                        path.display()
                    ))
                };
                let mut executions = junit::read(&xml).map_err(unreadable)?;
                // The tests that the stopping signal ended did not finish: like those cargo test
                // had not finished, they are not in the report.
                if let Some(stop) = self.run.stopped {
                    let interrupted = junit::aborted_by(&xml, stop.name()).map_err(unreadable)?;
                    executions.retain(|e| {
                        !interrupted
                            .iter()
                            .any(|(binary, name)| *binary == e.binary && *name == e.name)
                    });
                }
                let failed = executions
                    .iter()
                    .any(|e| matches!(e.status, Status::Failed | Status::Flaky));
                if status.code() == Some(100) && !failed && !stopped {
                    return Err(failed_to_run(format!(
                        ", a failure, but its JUnit report {} shows none: another run may have written over it",
                        path.display()
                    )));
                }
                Ok(executions)
            }
            RunnerKind::CargoTest => {
                let executions = libtest::parse(&self.run.output, &|line| targets.id_of(line));
                let failed = executions.iter().any(|e| e.status == Status::Failed);
                let compile_error = self.run.output.contains("error: could not compile")
                    || self.run.output.contains("error[E");
                match status.code() {
                    _ if stopped => Ok(executions),
                    // cargo says every test passed: a "failure" read off the output is a test
                    // printing libtest output of its own.
                    Some(0) => Ok(executions
                        .into_iter()
                        .filter(|e| e.status != Status::Failed)
                        .collect()),
                    Some(101) if failed => Ok(executions),
                    // cargo builds every test binary before it runs the first one.
                    Some(101) if compile_error && !libtest::any_binary_ran(&self.run.output) => {
                        Err(build_failed())
                    }
                    _ => Err(failed_to_run(not_echoed(&self.run.output))),
                }
            }
        }
    }
}

/// The newest `.xml` file under `dir` (three levels at most) written since `since`.
fn fresh_xml(dir: &Path, since: std::time::SystemTime) -> Option<PathBuf> {
    fn walk(
        dir: &Path,
        depth: u32,
        since: std::time::SystemTime,
        best: &mut Option<(std::time::SystemTime, PathBuf)>,
    ) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() && depth > 0 {
                walk(&path, depth - 1, since, best);
            } else if path.extension().is_some_and(|e| e == "xml")
                && let Ok(modified) = meta.modified()
                && modified >= since
                && best.as_ref().is_none_or(|(newest, _)| modified > *newest)
            {
                *best = Some((modified, path));
            }
        }
    }
    let mut best = None;
    walk(dir, 3, since, &mut best);
    best.map(|(_, path)| path)
}

/// A TOML basic string.
fn toml_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_strings_escape() {
        assert_eq!(toml_string(r#"C:\a "b""#), r#""C:\\a \"b\"""#);
        assert_eq!(toml_string("a\nb"), "\"a\\u000Ab\"");
    }
}
