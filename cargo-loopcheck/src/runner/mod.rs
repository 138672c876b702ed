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

mod blame;
mod exec;
mod exposure;
mod junit;
mod libtest;
mod model;
mod panics;
mod signals;
mod teardown;
mod timeline;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use model::{
    Counts, Execution, Flake, RunnerKind, Status, TestReport, TestRun, TimelineSummary, ZombieReport,
};

use crate::Exit;
use crate::cli::{Common, TestArgs};
use crate::error::{Error, Result};
use crate::report::test_human as output;
use crate::term::{Format, Term};
use crate::workspace::Workspace;
use crate::zombies;
use blame::{Blamer, Targets};
#[cfg(target_os = "linux")]
pub(crate) use blame::{Record, failure_message, mentioned_addrs};
use exec::Invocation;

/// How long a zombie gets after SIGTERM before SIGKILL, with `--reap`.
const REAP_GRACE: Duration = Duration::from_secs(3);

/// How many runs are kept under the registry's `runs` directory.
const KEEP_RUNS: usize = 10;

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
    signals::install();
    let invocation = Invocation {
        cargo: std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()),
        runner,
        manifest_path: common.manifest_path.clone(),
        color: term.colors(),
        args: args.args.clone(),
        env: isolation.as_ref().map(|i| i.env.clone()).unwrap_or_default(),
    };
    let run_id = new_run_id();
    // Absolute: the tests and nextest resolve it from directories of their own.
    let registry = loopcheck::lease::checked_registry_dir()?;
    let runs = std::path::absolute(&registry)
        .map_err(|source| Error::Io {
            action: "read",
            path: registry.clone(),
            source,
        })?
        .join("runs");
    let run_root = runs.join(&run_id);
    create_private_dir(&run_root)?;
    let setup = Setup {
        common,
        term,
        human: format == Format::Human,
        runs: &runs,
        run_id: &run_id,
    };

    // Zombies are ended before the run; otherwise the workspace is read, and zombies looked
    // for, while the first round runs: `cargo metadata` costs as much as a small suite.
    let mut prepared: Option<Prepared> = if args.reap {
        Some(setup.prepare(true, &[])?)
    } else {
        None
    };

    // Copies that start together race for ports together: build first, so that none of them
    // waits for another's build.
    if runner == RunnerKind::CargoTest && args.concurrent > 1 {
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
    }

    let single = args.repeat == 1 && args.concurrent == 1;
    let mut executions = Vec::new();
    let mut unattributed = Vec::new();
    let mut copies_run = 0;
    let mut skipped_unlisted = 0;
    let mut timeline_summary = TimelineSummary::default();
    // A round that cannot run ends the hunt, but the rounds before it are still reported.
    let mut stopped: Option<Error> = None;
    // A SIGTERM or SIGINT ends the run too; the tests that finished are reported.
    let mut interrupted: Option<signals::Stop> = None;
    'rounds: for round in 0..args.repeat {
        if let Some(stop) = signals::received() {
            // Before the first round, nothing ran and the workspace is not read yet.
            if round == 0 {
                return Err(Error::Interrupted {
                    signal: stop.name(),
                    finished: 0,
                });
            }
            interrupted = Some(stop);
            break;
        }
        let copies: Vec<PathBuf> = (0..args.concurrent)
            .map(|copy| run_root.join(format!("{run_id}.{round}.{copy}")))
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
        // The socket timeline of the round: who held which port while the tests ran.
        let sampler = timeline::Sampler::start();
        let (results, fresh) = std::thread::scope(|scope| {
            let handles: Vec<_> = copies
                .iter()
                .map(|dir| {
                    let invocation = &invocation;
                    scope.spawn(move || run_copy(invocation, dir, single))
                })
                .collect();
            let fresh = prepared.is_none().then(|| setup.prepare(false, &copies));
            let results: Vec<Result<Finished>> = handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
                .collect();
            (results, fresh)
        });
        let round_timeline = sampler.stop();
        round_timeline.add_to(&mut timeline_summary, round == 0);
        if let Some(fresh) = fresh {
            prepared = Some(fresh?);
        }
        let Some((workspace, targets, _)) = prepared.as_ref() else {
            unreachable!("the workspace is read during the first round")
        };
        // Holders of a failure's port are looked for while the round's leftovers live.
        let mut blamer = Blamer::new(workspace, targets, args.concurrent, &round_timeline, runner);
        for (copy, (result, dir)) in results.into_iter().zip(&copies).enumerate() {
            let mut runner_skipped = None;
            if let Ok(finished) = &result {
                interrupted = interrupted.or(finished.run.stopped);
                if runner == RunnerKind::Nextest {
                    runner_skipped = junit::skipped_in_summary(&finished.run.output);
                }
            }
            let read = result.and_then(|finished| finished.executions(&invocation, targets, workspace));
            let mut round_executions = match read {
                Ok(found) => found,
                Err(error) => {
                    teardown::after_failed_round(term, dir, args.keep_leftovers);
                    if executions.is_empty() {
                        return Err(error);
                    }
                    stopped = Some(error);
                    break 'rounds;
                }
            };
            copies_run += 1;
            if let Some(count) = runner_skipped {
                let listed = round_executions
                    .iter()
                    .filter(|e| e.status == Status::Skipped)
                    .count();
                let listed = u32::try_from(listed).unwrap_or(u32::MAX);
                skipped_unlisted = skipped_unlisted.max(count.saturating_sub(listed));
            }
            unattributed.extend(blame::attach_records(
                &mut round_executions,
                targets,
                blame::read_records(dir),
            ));
            // The leftovers are the evidence: they are ended only once the failures that
            // their sockets explain have been explained.
            let leftovers = blame::leftovers(dir);
            for execution in &mut round_executions {
                blamer.explain(execution, dir);
            }
            exposure::flag_wildcard_holders(&mut round_executions);
            for (leftover, diagnosis) in teardown::end(leftovers, args.keep_leftovers) {
                let nextest = leftover.binary_id.as_deref().zip(leftover.test_name.as_deref());
                let full = leftover.process.loopcheck_test.as_deref();
                match blame::find_execution(&mut round_executions, targets, full, nextest) {
                    Some(execution) => model::merge(&mut execution.leaks, &[diagnosis]),
                    None => model::merge(&mut unattributed, &[diagnosis]),
                }
            }
            if !single {
                let copy = u32::try_from(copy).unwrap_or(u32::MAX);
                output::progress(
                    term,
                    (round, args.repeat),
                    (copy, args.concurrent),
                    &round_executions,
                );
            }
            executions.extend(round_executions);
        }
        if interrupted.is_some() {
            break;
        }
    }
    let Some((_, _, zombies)) = prepared else {
        unreachable!("the workspace is read during the first round")
    };

    let tests = sort_tests(model::aggregate(&executions));
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
        leaks: unattributed,
        runs: copies_run,
        skipped_unlisted,
        timeline: timeline_summary,
    };

    crate::report::emit_test_run(&report, format, term, &run_root)?;
    crate::report::summary::append(term, || crate::report::summary::test_run(&report));
    // Written after the report is out, so a bad path loses nothing else.
    if let Some(path) = &args.junit {
        let written = crate::report::junit::write(&report, panics::trim_backtraces)
            .map_err(std::io::Error::other)
            .and_then(|xml| std::fs::write(path, xml));
        if let Err(source) = written {
            return Err(Error::Io {
                action: "write",
                path: path.clone(),
                source,
            });
        }
    }
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

/// One copy of the suite, run to its end.
struct Finished {
    dir: PathBuf,
    echoed: bool,
    /// The nextest profile the user chose, whose JUnit settings may win over ours.
    user_profile: Option<String>,
    started: std::time::SystemTime,
    run: exec::Finished,
}

/// The nextest profile of a run, when the user chose none: the user's `default` settings,
/// plus a JUnit report where this run reads it. A repository's configuration cannot move the
/// report of a profile it does not know. (No `tool:` prefix: nextest makes a directory of the
/// name, and Windows allows no colon in one.)
const NEXTEST_PROFILE: &str = "loopcheck-run";

/// Runs one copy of the suite with `LOOPCHECK_RUN_DIR=dir`.
fn run_copy(invocation: &Invocation, dir: &Path, echo: bool) -> Result<Finished> {
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
    Ok(Finished {
        dir: dir.to_path_buf(),
        echoed: echo,
        user_profile,
        started,
        run,
    })
}

impl Finished {
    /// The copy's results: nextest's JUnit report, or cargo test's output; an error when the
    /// runner did not run the tests.
    fn executions(
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
                let executions = junit::read(&xml).map_err(|e| {
                    failed_to_run(format!(
                        ", and its JUnit report {} is unreadable: {e}",
                        path.display()
                    ))
                })?;
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

type Prepared = (Workspace, Targets, Vec<ZombieReport>);

/// What reading the workspace needs.
struct Setup<'a> {
    common: &'a Common,
    term: &'a Term,
    human: bool,
    runs: &'a Path,
    run_id: &'a str,
}

impl Setup<'_> {
    /// The workspace, its test targets and its zombies (with `reap`, ended), which are shown
    /// at once (human output); old runs are pruned meanwhile. Processes of this run's `copies`
    /// are no zombies, even orphaned.
    fn prepare(&self, reap: bool, copies: &[PathBuf]) -> Result<Prepared> {
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
                let outcome = reap.then(|| zombies::end(&zombie, REAP_GRACE));
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

/// `YYYYMMDDTHHMMSS-PID`: sortable, and unique on a host at one time.
fn new_run_id() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}-{}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        std::process::id()
    )
}

fn create_private_dir(path: &Path) -> Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(path).map_err(|source| Error::Io {
        action: "create",
        path: path.to_path_buf(),
        source,
    })
}

/// Removes all but the newest [`KEEP_RUNS`] run directories (their names sort by time), never
/// `current`, nor one whose `cargo loopcheck test` still runs (its pid ends the name).
fn prune_runs(runs: &Path, current: &str) {
    let Ok(entries) = std::fs::read_dir(runs) else {
        return;
    };
    let mut dirs: Vec<(PathBuf, String)> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()) && e.file_name() != current)
        .map(|e| (e.path(), e.file_name().to_string_lossy().into_owned()))
        .collect();
    dirs.sort();
    let excess = dirs.len().saturating_sub(KEEP_RUNS - 1);
    for (dir, name) in &dirs[..excess] {
        let pid = name.rsplit_once('-').and_then(|(_, pid)| pid.parse::<u32>().ok());
        if !pid.is_some_and(running) {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Whether a process with this pid runs (a reused pid errs on the side of keeping).
fn running(pid: u32) -> bool {
    #[cfg(unix)]
    {
        let Ok(pid) = libc::pid_t::try_from(pid) else {
            return false;
        };
        // SAFETY: signal 0 only checks that the process exists and may be signalled.
        let sent = unsafe { libc::kill(pid, 0) } == 0;
        sent || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
    }
    #[cfg(not(unix))]
    {
        let _ = pid;
        false
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
    fn run_ids_sort_by_time() {
        let id = new_run_id();
        let (stamp, pid) = id.split_once('-').unwrap();
        assert_eq!(stamp.len(), 15, "{id}");
        assert_eq!(&stamp[8..9], "T");
        assert!(stamp.starts_with("20"), "{id}");
        assert_eq!(pid, std::process::id().to_string());
    }

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

    #[test]
    fn pruning_keeps_the_newest_runs_and_those_still_running() {
        let runs = tempfile::tempdir().unwrap();
        let me = std::process::id();
        let gone = 999_999_999;
        let names: Vec<String> = (0..14)
            .map(|i| format!("20260101T0000{i:02}-{}", if i < 2 { me } else { gone }))
            .collect();
        for name in &names {
            std::fs::create_dir(runs.path().join(name)).unwrap();
        }
        let current = names.last().unwrap();
        prune_runs(runs.path(), current);
        let mut left: Vec<String> = std::fs::read_dir(runs.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        let mut expected: Vec<String> = names[..2].to_vec();
        expected.extend_from_slice(&names[names.len() - KEEP_RUNS..]);
        assert_eq!(
            left, expected,
            "running ones, the current one and the nine newest before it"
        );
    }

    #[test]
    fn toml_strings_escape() {
        assert_eq!(toml_string(r#"C:\a "b""#), r#""C:\\a \"b\"""#);
        assert_eq!(toml_string("a\nb"), "\"a\\u000Ab\"");
    }
}
