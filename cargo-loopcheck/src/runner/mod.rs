//! `cargo loopcheck test`: runs the suite with nextest or cargo test, and explains each
//! failure: the process that held the port, the test that leaked it, the runs that flaked.
//!
//! A run goes like this:
//! 1. zombie listeners of the workspace are ended first with `--reap`; otherwise they are looked
//!    for, and the workspace read, while the first round runs;
//! 2. with cargo test and several copies, the tests are built first (`cargo test --no-run`),
//!    so that the copies start together;
//! 3. the runner runs `--repeat` times, `--concurrent` copies at once, each copy with its own
//!    `LOOPCHECK_RUN_DIR` under `runs/RUN_ID` of the per-user lease registry, where `#[loopback_test]`s
//!    write their records and nextest writes its JUnit report (configured through
//!    `--tool-config-file`, so the user's files are never touched);
//! 4. after each round: the results (nextest's JUnit, or libtest's output), the records, the
//!    processes still carrying the copy's run directory (leaks), and for every failure that
//!    speaks of a socket error, the addresses of the test's own code, scanned at once;
//! 5. the report: human text on stderr, or JSON or GitHub annotations on stdout, and JUnit
//!    with `--junit FILE`.

mod attach;
mod background;
mod blame;
mod copy;
mod exec;
mod exposure;
mod failure;
mod junit;
mod leftovers;
mod libtest;
mod model;
mod panics;
mod prepare;
mod runs;
pub(crate) mod signals;
mod targets;
mod teardown;
mod timeline;

use std::path::{Path, PathBuf};
use std::time::Duration;

use loopcheck::report::Diagnosis;

pub use model::{
    Counts, Execution, Flake, RunnerKind, Status, TestReport, TestRun, TimelineSummary, ZombieReport,
};

use crate::Exit;
use crate::cli::{Common, TestArgs};
use crate::error::{Error, Result};
use crate::report::test_human as output;
use crate::term::{Format, Term};
use background::Background;
use blame::Blamer;
use copy::{FinishedCopy, run_copy};
use exec::Invocation;
#[cfg(target_os = "linux")]
pub(crate) use failure::{failure_message, mentioned_addrs};
use prepare::{Prepared, Setup};
use runs::{create_private_dir, new_run_id};
use targets::Targets;

/// Runs `cargo loopcheck test`.
pub fn run(common: &Common, args: &TestArgs, term: &Term) -> Result<u8> {
    let format = common
        .format
        .expect_one_of("test", &[Format::Human, Format::Json, Format::Github])?;
    let runner = choose_runner(args)?;
    // Kept to the end of the run: it holds the run's namespaces.
    let isolation = crate::isolate::plan(
        common,
        &args.isolate,
        &args.args,
        runner == RunnerKind::Nextest,
        args.concurrent,
    )?;
    // From here on, SIGTERM and SIGINT stop the runner and leave a report.
    signals::install(signals::STOPPING);
    let invocation = Invocation {
        cargo: std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()),
        runner,
        manifest_path: common.manifest_path.clone(),
        color: term.colors(),
        args: args.args.clone(),
        env: isolation.as_ref().map(|i| i.env.clone()).unwrap_or_default(),
    };
    let run_id = new_run_id();
    let runs = runs_dir()?;
    let run_root = runs.join(&run_id);
    create_private_dir(&run_root)?;
    let run = Run {
        args,
        term,
        invocation,
        setup: Setup {
            common,
            term,
            human: format == Format::Human,
            runs: &runs,
            run_id: &run_id,
        },
        run_root: &run_root,
        single: args.repeat == 1 && args.concurrent == 1,
    };

    // Zombies are ended before the run; otherwise the workspace is read, and zombies looked
    // for, while the first round runs: `cargo metadata` costs as much as a small suite.
    let mut prepared: Option<Prepared> = if args.reap {
        Some(run.setup.prepare(true, &[])?)
    } else {
        None
    };
    // Copies that start together race for ports together: build first, so that none of them
    // waits for another's build.
    if runner == RunnerKind::CargoTest && args.concurrent > 1 {
        build_first(&run.invocation, &run_root)?;
    }
    let mut found = Found::default();
    for round in 0..args.repeat {
        if let Some(stop) = signals::received() {
            // Before the first round, nothing ran and the workspace is not read yet.
            if round == 0 {
                return Err(Error::Interrupted {
                    signal: stop.name(),
                    finished: 0,
                });
            }
            found.interrupted = Some(stop);
            break;
        }
        run.round(round, &mut prepared, &mut found)?;
        if found.stopped.is_some() || found.interrupted.is_some() {
            break;
        }
    }
    let Some((_, _, zombies)) = prepared else {
        unreachable!("the workspace is read during the first round")
    };
    let (report, stopped, interrupted) = found.report(run_id.clone(), runner, zombies);
    write_report(format, term, &report, &run_root, args.junit.as_deref())?;
    exit_code(term, &report, stopped, interrupted)
}

/// The `runs` directory of the lease registry, absolute: the tests and nextest resolve it
/// from directories of their own.
fn runs_dir() -> Result<PathBuf> {
    let registry = loopcheck::lease::checked_registry_dir()?;
    Ok(std::path::absolute(&registry)
        .map_err(|source| Error::Io {
            action: "read",
            path: registry.clone(),
            source,
        })?
        .join("runs"))
}

/// `cargo test --no-run`, before copies that start together.
fn build_first(invocation: &Invocation, run_root: &Path) -> Result<()> {
    let build = exec::run(invocation.command(true, &[]), true, &run_root.join("build.log"))?;
    if let Some(stop) = build.stopped {
        return Err(Error::Interrupted {
            signal: stop.name(),
            finished: 0,
        });
    }
    if !build.status.success() {
        return Err(Error::BuildFailed {
            command: invocation.shown(true),
            status: exec::describe(build.status),
        });
    }
    Ok(())
}

/// What every round of a run shares.
struct Run<'a> {
    args: &'a TestArgs,
    term: &'a Term,
    invocation: Invocation,
    setup: Setup<'a>,
    run_root: &'a Path,
    /// One round of one copy: its output is echoed, and no progress lines are printed.
    single: bool,
}

/// What the rounds found so far.
#[derive(Default)]
struct Found {
    executions: Vec<Execution>,
    /// Leaks that no test of the run is known to have left.
    unattributed: Vec<Diagnosis>,
    copies_run: u32,
    skipped_unlisted: u32,
    timeline: TimelineSummary,
    /// A round that cannot run ends the hunt, but the rounds before it are still reported.
    stopped: Option<Error>,
    /// A SIGTERM or SIGINT ends the run too; the tests that finished are reported.
    interrupted: Option<signals::Stop>,
}

impl Run<'_> {
    /// Runs round `round`: its copies at once, with the socket timeline sampling and, in the
    /// first round, the workspace read meanwhile; then reads and explains each copy. An error
    /// only when a copy cannot be read and nothing was found before it; otherwise such a copy
    /// sets [`Found::stopped`].
    fn round(&self, round: u32, prepared: &mut Option<Prepared>, found: &mut Found) -> Result<()> {
        let copies = self.copy_dirs(round)?;
        // The socket timeline of the round: who held which port while the tests ran.
        let sampler = timeline::Sampler::start();
        let (results, fresh) = std::thread::scope(|scope| {
            let handles: Vec<_> = copies
                .iter()
                .map(|dir| {
                    let invocation = &self.invocation;
                    let single = self.single;
                    scope.spawn(move || run_copy(invocation, dir, single))
                })
                .collect();
            let fresh = prepared.is_none().then(|| self.setup.prepare(false, &copies));
            let results: Vec<Result<FinishedCopy>> = handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
                .collect();
            (results, fresh)
        });
        let round_timeline = sampler.stop();
        // What a lone copy left is read on threads of their own while its results are parsed:
        // the runner has ended, and the cores are idle. Several copies are read one by one, each
        // after the copies before it were explained and torn down, as many threads would only
        // compete for the cores.
        let background = copies.len() == 1;
        let mut gathered: Vec<Gathered> = copies.iter().map(|dir| Gathered::new(dir, background)).collect();
        round_timeline.add_to(&mut found.timeline, round == 0);
        if let Some(fresh) = fresh {
            *prepared = Some(fresh?);
        }
        let Some((workspace, targets, _)) = prepared.as_ref() else {
            unreachable!("the workspace is read during the first round")
        };
        // Holders of a failure's port are looked for while the round's leftovers live.
        let runner = self.invocation.runner;
        let mut blamer = Blamer::new(workspace, targets, self.args.concurrent, &round_timeline, runner);
        for (copy, ((result, dir), gathered)) in results
            .into_iter()
            .zip(&copies)
            .zip(gathered.drain(..))
            .enumerate()
        {
            let mut runner_skipped = None;
            if let Ok(finished) = &result {
                found.interrupted = found.interrupted.or(finished.run.stopped);
                if runner == RunnerKind::Nextest {
                    runner_skipped = junit::skipped_in_summary(&finished.run.output);
                }
            }
            let read = result.and_then(|finished| finished.executions(&self.invocation, targets, workspace));
            let mut round_executions = match read {
                Ok(executions) => executions,
                Err(error) => {
                    teardown::after_failed_round(
                        self.term,
                        gathered.leftovers.join(),
                        self.args.keep_leftovers,
                    );
                    if found.executions.is_empty() {
                        return Err(error);
                    }
                    found.stopped = Some(error);
                    return Ok(());
                }
            };
            found.copies_run += 1;
            if let Some(count) = runner_skipped {
                let listed = round_executions
                    .iter()
                    .filter(|e| e.status == Status::Skipped)
                    .count();
                let listed = u32::try_from(listed).unwrap_or(u32::MAX);
                found.skipped_unlisted = found.skipped_unlisted.max(count.saturating_sub(listed));
            }
            self.explain_copy(&mut round_executions, dir, gathered, targets, &mut blamer, found);
            if !self.single {
                let copy = u32::try_from(copy).unwrap_or(u32::MAX);
                output::progress(
                    self.term,
                    (round, self.args.repeat),
                    (copy, self.args.concurrent),
                    &round_executions,
                );
            }
            found.executions.extend(round_executions);
        }
        Ok(())
    }

    /// The run directories of the round's copies, created, each with its records file.
    fn copy_dirs(&self, round: u32) -> Result<Vec<PathBuf>> {
        let run_id = self.setup.run_id;
        let copies: Vec<PathBuf> = (0..self.args.concurrent)
            .map(|copy| self.run_root.join(format!("{run_id}.{round}.{copy}")))
            .collect();
        for dir in &copies {
            create_private_dir(dir)?;
            // Created here, each test process only opens it: cheaper than a creation in each.
            let records = dir.join(loopcheck::lease::RECORDS_FILE);
            std::fs::File::create(&records).map_err(|source| Error::Io {
                action: "create",
                path: records,
                source,
            })?;
        }
        Ok(copies)
    }

    /// Attaches the copy's records, explains its failures, and ends (or keeps) the processes
    /// it left, attributed to their tests.
    fn explain_copy(
        &self,
        round_executions: &mut [Execution],
        dir: &Path,
        gathered: Gathered,
        targets: &Targets,
        blamer: &mut Blamer<'_>,
        found: &mut Found,
    ) {
        found.unattributed.extend(attach::attach_records(
            round_executions,
            targets,
            gathered.records.join(),
        ));
        // The leftovers are the evidence: they are ended only once the failures that
        // their sockets explain have been explained.
        let leftovers = gathered.leftovers.join();
        for execution in round_executions.iter_mut() {
            blamer.explain(execution, dir);
        }
        exposure::flag_wildcard_holders(round_executions);
        for (leftover, diagnosis) in teardown::end(leftovers, self.args.keep_leftovers) {
            let nextest = leftover.binary_id.as_deref().zip(leftover.test_name.as_deref());
            let full = leftover.process.loopcheck_test.as_deref();
            match attach::find_execution(round_executions, targets, full, nextest) {
                Some(execution) => model::merge(&mut execution.leaks, &[diagnosis]),
                None => model::merge(&mut found.unattributed, &[diagnosis]),
            }
        }
    }
}

/// What a copy left once it ended: its run records, and its processes still running.
struct Gathered {
    records: Background<Vec<loopcheck::run::RunRecord>>,
    leftovers: Background<Vec<(loopcheck::scan::RunProcess, Diagnosis)>>,
}

impl Gathered {
    /// Both for the copy `dir`: read at once on threads of their own (`background`), or when
    /// collected.
    fn new(dir: &Path, background: bool) -> Gathered {
        let (records_dir, leftovers_dir) = (dir.to_path_buf(), dir.to_path_buf());
        let records = move || loopcheck::run::read_records(&records_dir);
        let leftovers = move || leftovers::leftovers(&leftovers_dir);
        if background {
            Gathered {
                records: Background::start("loopcheck-records", records),
                leftovers: Background::start("loopcheck-leftovers", leftovers),
            }
        } else {
            Gathered {
                records: Background::later(records),
                leftovers: Background::later(leftovers),
            }
        }
    }
}

impl Found {
    /// The run's report, and what ended it early, if anything.
    fn report(
        self,
        run_id: String,
        runner: RunnerKind,
        zombies: Vec<ZombieReport>,
    ) -> (TestRun, Option<Error>, Option<signals::Stop>) {
        let tests = sort_tests(model::aggregate(&self.executions));
        let flaky = tests
            .iter()
            .filter(|t| t.status == Status::Flaky)
            .map(|t| Flake {
                name: t.name.clone(),
                binary: t.binary.clone(),
                runs: t.runs,
                failures: t.failures,
                codes: t.diagnoses.iter().map(|d| d.code.to_string()).collect(),
            })
            .collect();
        let report = TestRun {
            run_id,
            runner,
            tests,
            zombies,
            flaky,
            leaks: self.unattributed,
            runs: self.copies_run,
            skipped_unlisted: self.skipped_unlisted,
            timeline: self.timeline,
        };
        (report, self.stopped, self.interrupted)
    }
}

/// The report in `format`, the job summary, and JUnit with `--junit`.
fn write_report(
    format: Format,
    term: &Term,
    report: &TestRun,
    run_root: &Path,
    junit_path: Option<&Path>,
) -> Result<()> {
    crate::report::emit_test_run(report, format, term, run_root)?;
    crate::report::summary::append(term, || crate::report::summary::test_run(report));
    // Written after the report is out, so a bad path loses nothing else.
    if let Some(path) = junit_path {
        let written = crate::report::junit::write(report, panics::trim_backtraces)
            .map_err(std::io::Error::other)
            .and_then(|xml| std::fs::write(path, xml));
        if let Err(source) = written {
            return Err(Error::Io {
                action: "write",
                path: path.to_path_buf(),
                source,
            });
        }
    }
    Ok(())
}

/// The run's exit code, or the error that ended it early.
fn exit_code(
    term: &Term,
    report: &TestRun,
    stopped: Option<Error>,
    interrupted: Option<signals::Stop>,
) -> Result<u8> {
    if let Some(error) = stopped {
        return Err(error);
    }
    if let Some(stop) = interrupted {
        let error = Error::Interrupted {
            signal: stop.name(),
            finished: report.tests.len(),
        };
        // Failures that were seen are what the run found; without any, it found nothing
        // certain, as it did not run to its end.
        if report.bad().next().is_none() {
            return Err(error);
        }
        term.message(loopcheck::report::Severity::Error, &error.to_string());
    }
    Ok(if report.bad().next().is_some() {
        Exit::FOUND
    } else {
        Exit::OK
    })
}

/// The failed tests in one test binary's libtest output (read by `--isolate`'s wrapper).
#[cfg(target_os = "linux")]
pub(crate) fn failed_in_libtest(output: &str) -> Vec<Execution> {
    libtest::parse(output, &|_| String::new())
        .into_iter()
        .filter(|e| e.status == Status::Failed)
        .collect()
}

/// Runs the socket timeline's sampler every `interval` while `work` runs, and returns the
/// loopback and wildcard TCP listeners it saw: address, first and last sighting after the
/// start. For the timeline's catch-rate benchmark; empty where no timeline is recorded.
#[doc(hidden)]
pub fn sample_listeners(
    interval: Duration,
    work: impl FnOnce(),
) -> Vec<(std::net::SocketAddr, Duration, Duration)> {
    let sampler = timeline::Sampler::every(interval);
    work();
    let seen = sampler.stop();
    seen.sockets
        .iter()
        .filter(|h| h.protocol == loopcheck::scan::Protocol::Tcp)
        .map(|h| (h.local, h.first, h.last))
        .collect()
}

/// nextest when asked for, or when installed and cargo test was not asked for.
fn choose_runner(args: &TestArgs) -> Result<RunnerKind> {
    pick_runner(args.nextest, args.cargo_test, || {
        which::which("cargo-nextest").is_ok()
    })
}

fn pick_runner(nextest: bool, cargo_test: bool, installed: impl FnOnce() -> bool) -> Result<RunnerKind> {
    if cargo_test {
        return Ok(RunnerKind::CargoTest);
    }
    match (nextest, installed()) {
        (true, false) => Err(Error::NoNextest),
        (_, true) => Ok(RunnerKind::Nextest),
        (false, false) => Ok(RunnerKind::CargoTest),
    }
}

/// Failed and flaky tests first, then the rest, each group in run order.
fn sort_tests(mut tests: Vec<TestReport>) -> Vec<TestReport> {
    tests.sort_by_key(|t| match t.status {
        Status::Failed => 0,
        Status::Flaky => 1,
        Status::Passed => 2,
        Status::Skipped => 3,
    });
    tests
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nextest_when_installed_cargo_test_otherwise() {
        let pick = |nextest, cargo_test, installed| pick_runner(nextest, cargo_test, || installed);
        assert_eq!(pick(false, false, true).unwrap(), RunnerKind::Nextest);
        assert_eq!(pick(false, false, false).unwrap(), RunnerKind::CargoTest);
        assert_eq!(pick(true, false, true).unwrap(), RunnerKind::Nextest);
        assert!(matches!(pick(true, false, false), Err(Error::NoNextest)));
        assert_eq!(pick(false, true, true).unwrap(), RunnerKind::CargoTest);
        assert_eq!(pick(false, true, false).unwrap(), RunnerKind::CargoTest);
    }
}
