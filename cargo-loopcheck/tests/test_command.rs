//! `cargo loopcheck test` on a fixture suite (tests/fixtures/suite), under cargo test and
//! nextest: a plain test whose hard-coded port this test process holds, a `#[loopback_test]`,
//! a leaking test, a failure unrelated to sockets, and two binaries racing for one port.
#![cfg(target_os = "linux")]

mod schema;
mod support;

use support::{code, copy_tree, json, run_bounded, stderr};

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use cargo_loopcheck::Exit;
use loopcheck::PortLease;
use serde_json::Value;

/// A copy of the fixture suite with this process's ports written in, under a package name of
/// its own: copies share one target directory, where one name means one set of binaries.
struct Suite {
    dir: tempfile::TempDir,
    /// The package name.
    package: String,
    /// The port `net::held_port` hard-codes, held by this process all along.
    held: TcpListener,
    /// The port both race binaries hard-code; leased so that no other test takes it.
    _race: PortLease,
}

impl Suite {
    fn new(package: &str) -> Suite {
        let held_lease = loopcheck::reserve_port().expect("lease a port");
        let held = TcpListener::bind(("127.0.0.1", held_lease.port())).expect("hold the leased port");
        let race = loopcheck::reserve_port().expect("lease a port");
        let dir = tempfile::tempdir().expect("temporary directory");
        let template = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/suite");
        let repository = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        copy_tree(&template, dir.path());
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
        substitute("Cargo.toml", "name = \"suite\"", &format!("name = \"{package}\""));
        substitute("tests/net.rs", "/*HELD_PORT*/ 1", &held_lease.port().to_string());
        for file in ["tests/race_a.rs", "tests/race_b.rs"] {
            substitute(file, "/*RACE_PORT*/ 1", &race.port().to_string());
        }
        Suite {
            dir,
            package: package.to_owned(),
            held,
            _race: race,
        }
    }

    /// The line of the suite's `file` that contains `text`, from 1.
    fn line_of(&self, file: &str, text: &str) -> usize {
        let source = std::fs::read_to_string(self.dir.path().join(file)).unwrap();
        1 + source
            .lines()
            .position(|line| line.contains(text))
            .unwrap_or_else(|| panic!("{file} has no `{text}`"))
    }

    /// `cargo loopcheck test ARGS` on this suite.
    fn run(&self, args: &[&str]) -> Output {
        let mut command = Command::new(env!("CARGO_BIN_EXE_cargo-loopcheck"));
        command
            .args(["loopcheck", "test", "--manifest-path"])
            .arg(self.dir.path().join("Cargo.toml"))
            .args(args)
            // The fixture shares the harness fixture's build: only the suite itself compiles.
            .env(
                "CARGO_TARGET_DIR",
                Path::new(env!("CARGO_TARGET_TMPDIR")).join("harness-fixture"),
            )
            .env("RUST_BACKTRACE", "0")
            .env_remove("CARGO_TERM_COLOR")
            .env_remove("NO_COLOR");
        let output = run_bounded(command, Duration::from_secs(600));
        self.end_leftovers();
        output
    }

    /// Ends what the suite's tests left running (`net::leaks_child`'s `sleep`): the processes
    /// whose `CARGO_MANIFEST_DIR`, inherited from a test binary of this suite, is this suite's
    /// directory. Nothing else carries it.
    fn end_leftovers(&self) {
        let wanted = format!("CARGO_MANIFEST_DIR={}", self.dir.path().display());
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
                continue;
            };
            let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
                continue;
            };
            if environ.split(|&b| b == 0).any(|var| var == wanted.as_bytes()) {
                // SAFETY: kill has no memory preconditions; the pid is a leftover of this suite.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}

fn test<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["tests"]
        .as_array()
        .expect("tests")
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no test `{name}` in {report:#}"))
}

fn codes(diagnoses: &Value) -> Vec<&str> {
    diagnoses
        .as_array()
        .expect("diagnoses")
        .iter()
        .map(|d| d["code"].as_str().expect("code"))
        .collect()
}

/// The checks shared by both runners: what a user relies on in the JSON report.
fn check_report(suite: &Suite, output: &Output, runner: &str) -> Value {
    assert_eq!(code(output), Exit::FOUND, "{}", stderr(output));
    let report = json(output);
    schema::assert_valid("test", &report);
    assert_eq!(report["runner"], runner);
    assert!(report["run_id"].as_str().is_some_and(|id| !id.is_empty()));

    let held = test(&report, "held_port");
    assert_eq!(held["status"], "failed");
    assert_eq!(held["binary"], format!("{}::net", suite.package));
    assert_eq!(held["file"], "tests/net.rs");
    assert_eq!(held["line"], suite.line_of("tests/net.rs", "fn held_port"));
    assert_eq!(codes(&held["diagnoses"]), ["LC001"], "{held:#}");
    let holder = &held["diagnoses"][0]["processes"][0];
    assert_eq!(
        holder["pid"],
        std::process::id(),
        "the holder is this test process: {held:#}"
    );
    assert!(holder["command"].as_str().is_some_and(|c| !c.is_empty()));
    assert_eq!(
        held["diagnoses"][0]["addr"],
        suite.held.local_addr().unwrap().to_string()
    );

    for name in ["wrong_sum", "unrelated_after_a_network_log"] {
        let unrelated = test(&report, name);
        assert_eq!(unrelated["status"], "failed");
        assert!(
            codes(&unrelated["diagnoses"]).is_empty(),
            "no false blame: {unrelated:#}"
        );
    }

    let harnessed = test(&report, "nobody_listens");
    assert_eq!(harnessed["status"], "failed");
    assert_eq!(harnessed["binary"], format!("{}::harnessed", suite.package));
    assert_eq!(codes(&harnessed["diagnoses"]), ["LC005"], "{harnessed:#}");

    for passed in ["passes", "gets_a_listener", "tests::adds", "panics_as_expected"] {
        assert_eq!(test(&report, passed)["status"], "passed", "{passed}");
    }
    assert_eq!(report["flaky"], serde_json::json!([]));
    assert!(report["zombies"].is_array());
    report
}

#[test]
fn cargo_test_failures_are_explained_in_json_and_junit() {
    let suite = Suite::new("suite-cargo");
    let junit = suite.dir.path().join("report.xml");
    let output = suite.run(&[
        "--cargo-test",
        "--format",
        "json",
        "--junit",
        junit.to_str().unwrap(),
        "--",
        "--lib",
        "--test",
        "net",
        "--test",
        "harnessed",
    ]);
    let report = check_report(&suite, &output, "cargo-test");
    // cargo test gives a leaked process no test name: the run reports it on its own.
    let leak = report["leaks"]
        .as_array()
        .expect("leaks")
        .iter()
        .find(|l| l["code"] == "LC013")
        .unwrap_or_else(|| panic!("the leaked sleep is reported: {report:#}"));
    assert!(
        leak["processes"][0]["command"]
            .as_str()
            .unwrap()
            .starts_with("sleep")
    );

    let xml = std::fs::read_to_string(&junit).expect("the JUnit report is written");
    let parsed = quick_junit::Report::deserialize_from_str(&xml).expect("valid JUnit");
    let case = parsed
        .test_suites
        .iter()
        .find(|s| s.name.as_str() == format!("{}::net", suite.package))
        .and_then(|s| s.test_cases.iter().find(|c| c.name.as_str() == "held_port"))
        .expect("held_port in the JUnit report");
    let property = |name: &str| {
        case.properties
            .iter()
            .find(|p| p.name.as_str() == name)
            .map(|p| p.value.as_str().to_owned())
    };
    assert_eq!(property("loopcheck.diagnosis.0.code").as_deref(), Some("LC001"));
    assert_eq!(
        property("loopcheck.diagnosis.0.pid"),
        Some(std::process::id().to_string())
    );
    match &case.status {
        quick_junit::TestCaseStatus::NonSuccess {
            message, description, ..
        } => {
            assert!(
                message.as_ref().unwrap().as_str().starts_with("LC001"),
                "{message:?}"
            );
            let description = description.as_ref().unwrap().as_str();
            assert!(description.contains("Address already in use"), "{description}");
            assert!(description.contains("error[LC001]"), "{description}");
        }
        other => panic!("held_port is a failure in JUnit: {other:?}"),
    }
    let passed = parsed
        .test_suites
        .iter()
        .flat_map(|s| &s.test_cases)
        .find(|c| c.name.as_str() == "passes")
        .expect("passes in the JUnit report");
    assert!(matches!(
        passed.status,
        quick_junit::TestCaseStatus::Success { .. }
    ));
}

#[test]
fn nextest_failures_are_explained_in_json_human_and_github() {
    if !support::nextest_installed() {
        return;
    }
    let suite = Suite::new("suite-nextest");
    let filter = ["--", "--lib", "--test", "net", "--test", "harnessed"];
    let output = suite.run(&[&["--nextest", "--format", "json"][..], &filter].concat());
    let report = check_report(&suite, &output, "nextest");
    // nextest names the test in its environment, which the leaked child inherits.
    let leaks = &test(&report, "leaks_child")["leaks"];
    assert_eq!(codes(leaks), ["LC013"], "{report:#}");

    // Without a runner flag, an installed nextest is the runner.
    let human = suite.run(&[&["--color", "never"][..], &filter].concat());
    assert_eq!(code(&human), Exit::FOUND);
    let text = stderr(&human);
    assert!(text.contains("tests with cargo nextest run:"), "{text}");
    assert!(
        text.contains(&format!(
            "FAIL {}::net held_port (tests/net.rs:{})",
            suite.package,
            suite.line_of("tests/net.rs", "fn held_port")
        )),
        "{text}"
    );
    assert!(text.contains("error[LC001]"), "{text}");
    assert!(text.contains(&format!("pid {}", std::process::id())), "{text}");
    assert!(text.contains("no socket explains this failure"), "{text}");
    assert!(human.stdout.is_empty(), "human output stays on stderr");

    // The repository's `ci` profile writes its JUnit report where its configuration says.
    let ci = [&filter[..], &["--profile", "ci"]].concat();
    let github = suite.run(&[&["--nextest", "--format", "github"][..], &ci].concat());
    assert_eq!(code(&github), Exit::FOUND);
    let annotations = String::from_utf8_lossy(&github.stdout);
    let held = annotations
        .lines()
        .find(|l| l.contains("held_port"))
        .unwrap_or_else(|| panic!("an annotation for held_port: {annotations}"));
    assert!(
        held.starts_with(&format!(
            "::error file=tests/net.rs,line={},title=test held_port failed%3A LC001::",
            suite.line_of("tests/net.rs", "fn held_port")
        )),
        "{held}"
    );
    assert!(held.contains(&format!("pid {}", std::process::id())), "{held}");
}

fn check_flake(suite: &Suite, output: &Output) {
    assert_eq!(code(output), Exit::FOUND, "{}", stderr(output));
    let report = json(output);
    schema::assert_valid("test", &report);
    let flaky = report["flaky"].as_array().expect("flaky");
    assert!(
        !flaky.is_empty(),
        "two copies racing for one port flake: {report:#}"
    );
    for flake in flaky {
        let binary = flake["binary"].as_str().unwrap();
        assert!(
            binary.starts_with(&format!("{}::race_", suite.package)),
            "{flake:#}"
        );
        assert!(flake["failures"].as_u64().unwrap() >= 1);
        assert!(flake["runs"].as_u64().unwrap() >= 2);
        assert!(
            flake["codes"].as_array().unwrap().iter().any(|c| c == "LC001"),
            "each failure is a port in use: {flake:#}"
        );
    }
    assert_eq!(report["runs"], 2);
    // A port that is free again by the time of the diagnosis is blamed on the other binary
    // that hard-codes it, not on the test's own constant.
    for test in report["tests"].as_array().unwrap() {
        let own = test["file"].as_str().unwrap_or_default();
        for diagnosis in test["diagnoses"].as_array().unwrap() {
            if diagnosis["summary"]
                .as_str()
                .unwrap()
                .contains("nothing holds it now")
            {
                let evidence = diagnosis["evidence"].to_string();
                let other = if own.ends_with("race_a.rs") {
                    "race_b.rs"
                } else {
                    "race_a.rs"
                };
                assert!(evidence.contains(other), "{diagnosis:#}");
                assert!(!evidence.contains(own), "{diagnosis:#}");
            }
        }
    }
}

/// Two copies at once of the two race binaries, under `runner` (`--cargo-test`, `--nextest`).
fn hunt_the_race(package: &str, runner: &str) {
    let suite = Suite::new(package);
    let output = suite.run(&[
        runner,
        "--concurrent",
        "2",
        "--format",
        "json",
        "--",
        "--test",
        "race_a",
        "--test",
        "race_b",
    ]);
    check_flake(&suite, &output);
}

#[test]
fn concurrent_copies_expose_two_binaries_sharing_a_port_under_cargo_test() {
    hunt_the_race("race-cargo", "--cargo-test");
}

#[test]
fn concurrent_copies_expose_two_binaries_sharing_a_port_under_nextest() {
    if support::nextest_installed() {
        hunt_the_race("race-nextest", "--nextest");
    }
}

#[test]
fn a_build_failure_could_not_run() {
    let suite = Suite::new("broken");
    let net = suite.dir.path().join("tests/net.rs");
    let mut source = std::fs::read_to_string(&net).unwrap();
    source.push_str(
        "
fn broken( {
",
    );
    std::fs::write(&net, source).unwrap();
    let output = suite.run(&["--cargo-test", "--", "--test", "net"]);
    assert_eq!(code(&output), Exit::COULD_NOT_RUN, "{}", stderr(&output));
    assert!(
        stderr(&output).contains("the build failed"),
        "{}",
        stderr(&output)
    );
    if support::nextest_installed() {
        let output = suite.run(&["--nextest", "--", "--test", "net"]);
        assert_eq!(code(&output), Exit::COULD_NOT_RUN, "{}", stderr(&output));
        assert!(
            stderr(&output).contains("the build failed"),
            "{}",
            stderr(&output)
        );
    }
}

#[test]
fn an_unwritable_junit_path_is_an_error_after_the_report() {
    let suite = Suite::new("junit-path");
    let missing = suite.dir.path().join("no-such-dir/report.xml");
    let output = suite.run(&[
        "--cargo-test",
        "--color",
        "never",
        "--junit",
        missing.to_str().unwrap(),
        "--",
        "--lib",
    ]);
    assert_eq!(code(&output), Exit::COULD_NOT_RUN, "{}", stderr(&output));
    let text = stderr(&output);
    assert!(
        text.contains("Summary 1 tests with cargo test: 1 passed"),
        "the report comes first: {text}"
    );
    assert!(
        text.contains("cannot write") && text.contains("report.xml"),
        "{text}"
    );
}

#[test]
fn missing_cargo_or_nextest_could_not_run() {
    let suite = Suite::new("missing");
    let empty = tempfile::tempdir().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_cargo-loopcheck"));
    command
        .args(["loopcheck", "test", "--nextest", "--manifest-path"])
        .arg(suite.dir.path().join("Cargo.toml"))
        // cargo itself is found through $CARGO; nextest is looked for on PATH.
        .env("PATH", empty.path())
        .env("CARGO", env!("CARGO"));
    let output = run_bounded(command, Duration::from_secs(120));
    assert_eq!(code(&output), Exit::COULD_NOT_RUN, "{}", stderr(&output));
    assert!(
        stderr(&output).contains("cargo-nextest is not installed"),
        "{}",
        stderr(&output)
    );

    let mut command = Command::new(env!("CARGO_BIN_EXE_cargo-loopcheck"));
    command
        .args(["loopcheck", "test", "--cargo-test", "--manifest-path"])
        .arg(suite.dir.path().join("Cargo.toml"))
        .env("CARGO", "/nonexistent/cargo");
    let output = run_bounded(command, Duration::from_secs(120));
    assert_eq!(code(&output), Exit::COULD_NOT_RUN, "{}", stderr(&output));
    assert!(
        stderr(&output).contains("/nonexistent/cargo"),
        "{}",
        stderr(&output)
    );
}
