//! The report of `cargo loopcheck test`: one model, rendered as human text, JSON, JUnit and
//! GitHub annotations.

use std::collections::BTreeSet;

use loopcheck::report::Diagnosis;
use serde::Serialize;

pub use super::reap::ZombieReport;

/// A test's result in one run, or over all runs of a flake hunt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// It passed (every time).
    Passed,
    /// It failed (every time).
    Failed,
    /// It both passed and failed: across runs, or within one run through the runner's retries.
    Flaky,
    /// It did not run: ignored or filtered out at runtime.
    Skipped,
}

/// One execution of one test, as a runner reported it.
#[derive(Debug, Clone)]
pub struct Execution {
    /// The test binary, named as nextest names it: `package`, `package::test_target`,
    /// `package::bin/name`.
    pub binary: String,
    /// The test's path in its binary: `tests::adds`.
    pub name: String,
    /// How it went.
    pub status: Status,
    /// What it printed when it failed: the panic message, captured output.
    pub output: String,
    /// Why it failed, where a socket explains it.
    pub diagnoses: Vec<Diagnosis>,
    /// What it left behind.
    pub leaks: Vec<Diagnosis>,
    /// Its source file, relative to the workspace root, where found.
    pub file: Option<String>,
    /// The line of its function, where found.
    pub line: Option<u32>,
    /// Whether its function is an `async fn` (`#[tokio::test]`), where found.
    pub asynchronous: bool,
}

impl Execution {
    pub(crate) fn new(binary: impl Into<String>, name: impl Into<String>, status: Status) -> Self {
        Execution {
            binary: binary.into(),
            name: name.into(),
            status,
            output: String::new(),
            diagnoses: Vec::new(),
            leaks: Vec::new(),
            file: None,
            line: None,
            asynchronous: false,
        }
    }
}

/// A test of the report.
#[derive(Debug, Clone, Serialize)]
pub struct TestReport {
    /// The test's path in its binary.
    pub name: String,
    /// The test binary.
    pub binary: String,
    /// How it went, over all runs.
    pub status: Status,
    /// Why it failed, where a socket explains it.
    pub diagnoses: Vec<Diagnosis>,
    /// What it left behind: LC012 listeners, LC013 processes.
    pub leaks: Vec<Diagnosis>,
    /// How many times it ran.
    pub runs: u32,
    /// How many of those failed.
    pub failures: u32,
    /// The first lines of its failure output.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Its source file, relative to the workspace root, where found.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// The line of its function, where found.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    /// Its whole failure output (of the first failed run), for JUnit.
    #[serde(skip)]
    pub output: String,
}

impl TestReport {
    /// Whether it needs attention: it failed or flaked.
    pub fn is_bad(&self) -> bool {
        matches!(self.status, Status::Failed | Status::Flaky)
    }

    /// The diagnostic codes attached to it, sorted.
    pub fn codes(&self) -> Vec<String> {
        let codes: BTreeSet<String> = self
            .diagnoses
            .iter()
            .chain(&self.leaks)
            .map(|d| d.code.to_string())
            .collect();
        codes.into_iter().collect()
    }
}

/// A test that passed in some runs and failed in others.
#[derive(Debug, Clone, Serialize)]
pub struct Flake {
    /// The test's path in its binary.
    pub name: String,
    /// The test binary.
    pub binary: String,
    /// How many times it ran.
    pub runs: u32,
    /// How many of those failed.
    pub failures: u32,
    /// The diagnostic codes of its failures.
    pub codes: Vec<String>,
}

/// Which runner ran the tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum RunnerKind {
    /// `cargo nextest run`.
    #[serde(rename = "nextest")]
    Nextest,
    /// `cargo test`.
    #[serde(rename = "cargo-test")]
    CargoTest,
}

impl RunnerKind {
    /// How people call it.
    pub fn command(self) -> &'static str {
        match self {
            RunnerKind::Nextest => "cargo nextest run",
            RunnerKind::CargoTest => "cargo test",
        }
    }
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct TestRun {
    /// This run's id: the name of its directory under the lease registry's `runs`.
    pub run_id: String,
    /// The runner.
    pub runner: RunnerKind,
    /// Every test that ran, failing ones first.
    pub tests: Vec<TestReport>,
    /// Zombie listeners of this workspace found as the run started (ended before it with
    /// `--reap`).
    pub zombies: Vec<ZombieReport>,
    /// Tests that passed in some runs and failed in others.
    pub flaky: Vec<Flake>,
    /// Leftover processes of the run that no test can be named for.
    pub leaks: Vec<Diagnosis>,
    /// How many times the suite ran, in all.
    pub runs: u32,
    /// Tests the runner skipped without naming them, which `tests` therefore lacks: nextest
    /// leaves ignored and filtered-out tests out of its JUnit report, and counts them in its
    /// summary. Counted in the summary's skipped tests.
    #[serde(skip_serializing_if = "is_zero")]
    pub skipped_unlisted: u32,
    /// What the socket timeline recorded over all rounds.
    pub timeline: TimelineSummary,
}

fn is_zero(count: &u32) -> bool {
    *count == 0
}

/// What the socket timeline recorded: whether it ran, and how much it saw.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TimelineSummary {
    /// Whether a timeline was recorded in every round.
    pub recorded: bool,
    /// The sampling interval, in milliseconds.
    pub interval_ms: u64,
    /// How many samples were taken.
    pub samples: u64,
    /// How many sockets (held by one owner each) were seen.
    pub sockets: usize,
    /// How many processes of the run were seen.
    pub processes: usize,
    /// Sockets and processes not kept, past the memory cap.
    pub dropped: u64,
    /// Why no timeline was recorded, or that some of it was dropped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl TestRun {
    /// The tests that failed or flaked.
    pub fn bad(&self) -> impl Iterator<Item = &TestReport> {
        self.tests.iter().filter(|t| t.is_bad())
    }

    /// The run's counts, as every renderer's summary states them.
    pub fn counts(&self) -> Counts {
        let count = |status| self.tests.iter().filter(|t| t.status == status).count();
        Counts {
            tests: self.tests.len() + self.skipped_unlisted as usize,
            passed: count(Status::Passed),
            failed: count(Status::Failed),
            flaky: count(Status::Flaky),
            skipped: count(Status::Skipped) + self.skipped_unlisted as usize,
            leaks: self.tests.iter().map(|t| t.leaks.len()).sum::<usize>() + self.leaks.len(),
        }
    }
}

/// How many tests ended how, and how many leaks the run left: a [`TestRun`]'s summary line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Every test, the runner's unlisted skips included.
    pub tests: usize,
    /// Tests that passed every time.
    pub passed: usize,
    /// Tests that failed every time.
    pub failed: usize,
    /// Tests that both passed and failed.
    pub flaky: usize,
    /// Tests that did not run, the runner's unlisted skips included.
    pub skipped: usize,
    /// Leaks of tests and of the run.
    pub leaks: usize,
}
