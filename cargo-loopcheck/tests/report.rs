//! What `cargo loopcheck test` reports, on the fixture tests/fixtures/report, under cargo test
//! and nextest: the root cause of a failure that another failure hides (a tokio server task
//! that fails to bind, and the dropped readiness channel the test then fails on), parametrized
//! cases, the runner's skipped count, a run stopped by SIGTERM or SIGINT, a workspace binary
//! named as such, and advice about directories loopcheck did not create.
#![cfg(target_os = "linux")]

mod support;

use support::{copy_tree, json, stderr, wait_bounded};

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use cargo_loopcheck::Exit;
use serde_json::Value;

/// A copy of the fixture with a port this process holds written in, under a package name of
/// its own: copies share one target directory, where one name means one set of binaries.
struct Fixture {
    dir: tempfile::TempDir,
    package: String,
    /// The port `server_task` and the first parametrized case bind, held here all along.
    held: TcpListener,
}

impl Fixture {
    fn new(package: &str) -> Fixture {
        let lease = loopcheck::reserve_port().expect("lease a port");
        let held = TcpListener::bind(("127.0.0.1", lease.port())).expect("hold the leased port");
        let dir = tempfile::tempdir().expect("temporary directory");
        let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
        let repository = manifest_dir.parent().unwrap();
        copy_tree(&manifest_dir.join("tests/fixtures/report"), dir.path());
        std::fs::copy(
            repository.join("tests/fixtures/harness/Cargo.lock"),
            dir.path().join("Cargo.lock"),
        )
        .expect("copy the lock file");
        let substitute = |file: &str, from: &str, to: &str| {
            let path = dir.path().join(file);
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(text.contains(from), "{file} lacks {from}");
            std::fs::write(&path, text.replace(from, to)).unwrap();
        };
        substitute("Cargo.toml", "LOOPCHECK_PATH", &repository.display().to_string());
        substitute(
            "Cargo.toml",
            "name = \"report\"",
            &format!("name = \"{package}\""),
        );
        substitute(
            "tests/server_task.rs",
            "/*HELD_PORT*/ 1",
            &lease.port().to_string(),
        );
        Fixture {
            dir,
            package: package.to_owned(),
            held,
        }
    }

    fn line_of(&self, file: &str, text: &str) -> usize {
        let source = std::fs::read_to_string(self.dir.path().join(file)).unwrap();
        1 + source
            .lines()
            .position(|line| line.contains(text))
            .unwrap_or_else(|| panic!("{file} has no `{text}`"))
    }

    fn target_dir() -> PathBuf {
        // The harness fixture's build: only the fixture itself compiles.
        Path::new(env!("CARGO_TARGET_TMPDIR")).join("harness-fixture")
    }

    /// `cargo loopcheck COMMAND --manifest-path .. ARGS` on this fixture.
    fn command(&self, command: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cargo-loopcheck"));
        cmd.args(["loopcheck", command, "--manifest-path"])
            .arg(self.dir.path().join("Cargo.toml"))
            .args(args)
            .env("CARGO_TARGET_DIR", Fixture::target_dir())
            .env_remove("CARGO_TERM_COLOR")
            .env_remove("NO_COLOR")
            .env_remove("REPORT_READY")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    fn test(&self, args: &[&str], backtrace: &str) -> Output {
        let mut command = self.command("test", args);
        command.env("RUST_BACKTRACE", backtrace);
        wait_bounded(
            command.spawn().expect("run cargo-loopcheck"),
            Duration::from_secs(600),
        )
    }
}

fn code(output: &Output) -> Option<i32> {
    output.status.code()
}

fn test<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["tests"]
        .as_array()
        .expect("tests")
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no test `{name}` in {report:#}"))
}

/// The JUnit report at `path`, parsed back, and the failure text of `binary`'s test `name`
/// (`None` when it passed).
fn junit_case(path: &Path, binary: &str, name: &str) -> (quick_junit::TestCase, Option<(String, String)>) {
    let xml = std::fs::read_to_string(path).expect("the JUnit report is written");
    let report = quick_junit::Report::deserialize_from_str(&xml).expect("valid JUnit");
    let case = report
        .test_suites
        .iter()
        .filter(|s| s.name.as_str() == binary)
        .flat_map(|s| &s.test_cases)
        .find(|c| c.name.as_str() == name)
        .unwrap_or_else(|| panic!("no {binary} {name} in {xml}"))
        .clone();
    let failure = match &case.status {
        quick_junit::TestCaseStatus::NonSuccess {
            message, description, ..
        } => Some((
            message
                .as_ref()
                .map(|m| m.as_str().to_owned())
                .unwrap_or_default(),
            description
                .as_ref()
                .map(|d| d.as_str().to_owned())
                .unwrap_or_default(),
        )),
        _ => None,
    };
    (case, failure)
}

/// The report of the server task's failure, under `runner`, the same under both.
fn the_root_cause_is_shown_and_blamed(runner: &str, package: &str) {
    let fixture = Fixture::new(package);
    let junit = fixture.dir.path().join("report.xml");
    let filter = ["--", "--test", "server_task"];
    let args = [
        &[runner, "--format", "json", "--junit", junit.to_str().unwrap()][..],
        &filter,
    ]
    .concat();
    // With backtraces on, as in CI: the report and JUnit leave their frames out.
    let output = fixture.test(&args, "1");
    assert_eq!(code(&output), Some(Exit::FOUND.into()), "{}", stderr(&output));
    let report = json(&output);
    let binary = format!("{}::server_task", fixture.package);

    let task = test(&report, "server_task_fails_to_bind");
    assert_eq!(task["status"], "failed");
    assert_eq!(task["file"], "tests/server_task.rs");
    assert_eq!(
        task["line"],
        fixture.line_of("tests/server_task.rs", "async fn server_task_fails_to_bind")
    );
    let message = task["message"].as_str().expect("a message");
    let root = message
        .find("AddrInUse")
        .unwrap_or_else(|| panic!("the root cause is shown: {message}"));
    let last = message
        .find("RecvError")
        .unwrap_or_else(|| panic!("the last panic is shown: {message}"));
    assert!(root < last, "{message}");
    assert!(message.contains("then, the last of 2 panics:"), "{message}");
    assert!(!message.contains("stack backtrace"), "{message}");
    let diagnoses = task["diagnoses"].as_array().expect("diagnoses");
    assert_eq!(diagnoses.len(), 1, "{task:#}");
    assert_eq!(diagnoses[0]["code"], "LC001", "{task:#}");
    assert_eq!(
        diagnoses[0]["processes"][0]["pid"],
        std::process::id(),
        "{task:#}"
    );
    assert_eq!(
        diagnoses[0]["addr"],
        fixture.held.local_addr().unwrap().to_string()
    );

    // A parametrized case has its base function's place.
    let case = test(&report, "binds_its_case::case_1");
    assert_eq!(case["status"], "failed");
    assert_eq!(case["file"], "tests/server_task.rs");
    assert_eq!(
        case["line"],
        fixture.line_of("tests/server_task.rs", "fn binds_its_case(")
    );
    assert_eq!(test(&report, "binds_its_case::case_2")["status"], "passed");

    // JUnit: each panic once, the root cause in the message, no frames of std or tokio.
    let (_, failure) = junit_case(&junit, &binary, "server_task_fails_to_bind");
    let (message, description) = failure.expect("a failure");
    assert!(message.starts_with("LC001"), "{message}");
    assert!(message.contains("AddrInUse"), "{message}");
    assert_eq!(description.matches("kind: AddrInUse").count(), 1, "{description}");
    assert_eq!(
        description.matches("Failed to wait for server").count(),
        1,
        "{description}"
    );
    assert!(!description.contains("tokio::runtime"), "{description}");
    assert!(!description.contains("std::panicking"), "{description}");
    assert!(
        description.contains("at ./tests/server_task.rs:"),
        "own frames stay: {description}"
    );
    assert!(
        description.contains("frames of std and dependencies left out"),
        "{description}"
    );
    assert!(description.contains("error[LC001]"), "{description}");

    // Human: both panics under the heading, the runner's skipped count in the summary.
    let human = fixture.test(&[&[runner, "--color", "never"][..], &filter].concat(), "0");
    assert_eq!(code(&human), Some(Exit::FOUND.into()));
    let text = stderr(&human);
    let heading = format!(
        "FAIL {binary} server_task_fails_to_bind (tests/server_task.rs:{})",
        fixture.line_of("tests/server_task.rs", "async fn server_task_fails_to_bind")
    );
    let report_part = &text[text
        .find(&heading)
        .unwrap_or_else(|| panic!("{heading} in {text}"))..];
    let root = report_part
        .find("kind: AddrInUse")
        .expect("the root cause under the heading");
    let last = report_part
        .find("RecvError")
        .expect("the last panic under the heading");
    assert!(root < last, "{report_part}");
    assert!(
        text.contains(&format!(
            "FAIL {binary} binds_its_case::case_1 (tests/server_task.rs:{})",
            fixture.line_of("tests/server_task.rs", "fn binds_its_case(")
        )),
        "{text}"
    );
    let summary = text
        .lines()
        .find(|l| l.trim_start().starts_with("Summary") && l.contains("tests with"))
        .unwrap_or_else(|| panic!("a summary line: {text}"));
    assert!(
        summary.contains("1 passed, 2 failed, 0 flaky, 1 skipped"),
        "{summary}"
    );
    assert!(summary.contains("4 tests"), "{summary}");
    // The holder's command is on one line, whatever it is.
    for line in report_part.lines().filter(|l| l.contains("held by pid")) {
        assert!(line.contains('`') && line.matches('`').count() % 2 == 0, "{line}");
    }
}

#[test]
fn the_root_cause_of_a_server_task_is_shown_and_blamed_under_cargo_test() {
    the_root_cause_is_shown_and_blamed("--cargo-test", "report-cargo");
}

#[test]
fn the_root_cause_of_a_server_task_is_shown_and_blamed_under_nextest() {
    if support::nextest_installed() {
        the_root_cause_is_shown_and_blamed("--nextest", "report-nextest");
    }
}

/// Whether process `pid` is gone (or dead and not yet reaped).
fn ended(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat.rsplit_once(") ").and_then(|(_, rest)| rest.chars().next());
    matches!(state, None | Some('Z' | 'X'))
}

/// Starts `cargo loopcheck test` on the quick and slow binaries, waits until the slow test
/// says the quick ones (`after`, comma-separated) are done, sends it `signal`, and returns what
/// it reported, with the slow test's pid.
fn stop_mid_run(fixture: &Fixture, args: &[&str], after: &str, signal: i32) -> (Output, u32) {
    let ready = fixture.dir.path().join("ready");
    let mut command = fixture.command("test", args);
    command
        .env("REPORT_READY", &ready)
        .env("REPORT_AFTER", after)
        .env("RUST_BACKTRACE", "0");
    let mut child = command.spawn().expect("run cargo-loopcheck");
    let started = Instant::now();
    let slow = loop {
        if let Some(pid) = std::fs::read_to_string(&ready)
            .ok()
            .and_then(|t| t.trim().parse().ok())
        {
            break pid;
        }
        if child.try_wait().expect("wait").is_some() {
            let output = wait_bounded(child, Duration::from_secs(1));
            panic!("the run ended before the slow test started:\n{}", stderr(&output));
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "the slow test never started"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    // SAFETY: kill has no memory preconditions; the pid is the child this test started.
    unsafe { libc::kill(pid, signal) };
    let signalled = Instant::now();
    let output = wait_bounded(child, Duration::from_secs(120));
    assert!(
        signalled.elapsed() < Duration::from_secs(60),
        "the run took {:?} to stop",
        signalled.elapsed()
    );
    (output, slow)
}

fn sigterm_leaves_a_report_and_junit(runner: &str, package: &str) {
    let fixture = Fixture::new(package);
    let junit = fixture.dir.path().join("stopped.xml");
    let args = [
        runner,
        "--color",
        "never",
        "--junit",
        junit.to_str().unwrap(),
        "--",
        "--test",
        "quick",
        "--test",
        "slow",
    ];
    let (output, slow) = stop_mid_run(&fixture, &args, "passes,fails", libc::SIGTERM);
    let text = stderr(&output);
    assert_eq!(
        code(&output),
        Some(Exit::FOUND.into()),
        "a test had failed: {text}"
    );
    assert!(
        text.contains("the run was stopped by SIGTERM before it ended"),
        "{text}"
    );
    let quick = format!("{}::quick", fixture.package);
    assert!(
        text.contains(&format!("FAIL {quick} fails (tests/quick.rs:")),
        "{text}"
    );
    assert!(text.contains("Summary"), "{text}");
    // The slow test was ended by the signal that stopped the run: it did not finish, and did
    // not fail (nextest calls it a `test abort`; cargo test never reports it).
    let slow_binary = format!("{}::slow", fixture.package);
    assert!(!text.contains(&format!("FAIL {slow_binary}")), "{text}");
    assert!(
        text.contains("the report covers the 2 test(s) that had finished"),
        "{text}"
    );
    let written = std::fs::read_to_string(&junit).expect("the JUnit report is written");
    assert!(!written.contains("outlasts_the_run"), "{written}");
    let (_, failure) = junit_case(&junit, &quick, "fails");
    let (_, description) = failure.expect("`fails` failed");
    assert!(description.contains("arithmetic"), "{description}");
    assert!(junit_case(&junit, &quick, "passes").1.is_none());
    let gone = (0..200).any(|_| {
        std::thread::sleep(Duration::from_millis(25));
        ended(slow)
    });
    assert!(gone, "the runner's tests were stopped: pid {slow} still runs");
}

#[test]
fn sigterm_mid_run_stops_the_runner_and_reports_under_cargo_test() {
    sigterm_leaves_a_report_and_junit("--cargo-test", "stop-cargo");
}

#[test]
fn sigterm_mid_run_stops_the_runner_and_reports_under_nextest() {
    if support::nextest_installed() {
        sigterm_leaves_a_report_and_junit("--nextest", "stop-nextest");
    }
}

#[test]
fn sigint_with_nothing_failed_could_not_run() {
    let fixture = Fixture::new("interrupted");
    let junit = fixture.dir.path().join("interrupted.xml");
    let args = [
        "--cargo-test",
        "--color",
        "never",
        "--junit",
        junit.to_str().unwrap(),
        "--",
        "--test",
        "quick",
        "--test",
        "slow",
        "--",
        "passes",
        "outlasts_the_run",
    ];
    let (output, slow) = stop_mid_run(&fixture, &args, "passes", libc::SIGINT);
    let text = stderr(&output);
    assert_eq!(code(&output), Some(Exit::COULD_NOT_RUN.into()), "{text}");
    assert!(
        text.contains("the run was stopped by SIGINT before it ended"),
        "{text}"
    );
    assert!(text.contains("1 passed, 0 failed"), "{text}");
    let quick = format!("{}::quick", fixture.package);
    assert!(junit_case(&junit, &quick, "passes").1.is_none());
    assert!((0..200).any(|_| {
        std::thread::sleep(Duration::from_millis(25));
        ended(slow)
    }));
}

#[test]
fn a_server_built_from_a_bin_target_is_the_workspaces_binary() {
    let fixture = Fixture::new("binary");
    let build = Command::new(env!("CARGO"))
        .args(["build", "--quiet", "--bin", "server", "--manifest-path"])
        .arg(fixture.dir.path().join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", Fixture::target_dir())
        .status()
        .expect("run cargo build");
    assert!(build.success());
    let lease = loopcheck::reserve_port().expect("lease a port");
    let addr = format!("127.0.0.1:{}", lease.port());
    drop(lease);
    let mut server = Command::new(Fixture::target_dir().join("debug/server"))
        .arg(&addr)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the server");
    let mut line = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut line)
        .expect("the server says it listens");
    assert_eq!(line.trim(), format!("listening on {addr}"));
    let port = addr.rsplit_once(':').unwrap().1;
    let output = wait_bounded(
        fixture
            .command("ports", &["--port", port, "--color", "never"])
            .spawn()
            .expect("run ports"),
        Duration::from_secs(120),
    );
    drop(server.stdin.take());
    let _ = server.kill();
    let _ = server.wait();
    let text = stderr(&output);
    assert!(
        text.contains("the workspace's binary `server` of `binary`"),
        "{text}"
    );
    assert!(!text.contains("test binary"), "{text}");
}

#[test]
fn a_registry_directory_loopcheck_did_not_create_is_never_chmodded() {
    let fixture = Fixture::new("etc");
    for command in ["doctor", "test"] {
        let mut cmd = fixture.command(command, &["--color", "never"]);
        cmd.env("LOOPCHECK_DIR", "/etc");
        let output = wait_bounded(cmd.spawn().expect("run"), Duration::from_secs(120));
        let text = stderr(&output);
        assert_ne!(code(&output), Some(0), "{text}");
        assert!(text.contains("/etc"), "{text}");
        assert!(!text.contains("chmod"), "{command}: {text}");
        assert!(text.contains("private directory"), "{command}: {text}");
    }
}

/// `probe` of an address that is not on this host, inside a network namespace this test
/// creates (only a loopback, down): nothing can leave it, and the attempt fails at once.
#[test]
fn a_probe_of_another_host_says_what_it_saw_not_that_nothing_listens() {
    let works = Command::new("unshare")
        .args(["-n", "true"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !works {
        support::skip("`unshare -n` cannot create a network namespace here");
        return;
    }
    let mut command = Command::new("unshare");
    command
        .arg("-n")
        .arg(env!("CARGO_BIN_EXE_cargo-loopcheck"))
        .args([
            "loopcheck",
            "probe",
            "10.200.0.2:80",
            "--timeout",
            "500ms",
            "--format",
            "json",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let output = wait_bounded(command.spawn().expect("run unshare"), Duration::from_secs(60));
    assert_eq!(code(&output), Some(Exit::FOUND.into()), "{}", stderr(&output));
    let diagnosis = json(&output);
    let summary = diagnosis["summary"].as_str().expect("a summary");
    assert!(!summary.contains("nothing listens"), "{diagnosis:#}");
    assert!(summary.contains("unreachable"), "{diagnosis:#}");
    assert_eq!(diagnosis["code"], "LC006");
    assert!(
        diagnosis["evidence"]
            .to_string()
            .contains("not visible to a scan from here"),
        "{diagnosis:#}"
    );
}
