//! `#[loopback_test]` for real: a fixture crate built and run under `cargo test` and
//! `cargo nextest run` (skipped with the reason where cargo-nextest is absent).
#![cfg(target_os = "linux")]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/harness/Cargo.toml")
}

/// Runs cargo in the fixture; `--manifest-path` goes right after the subcommand, before any
/// `--` that passes the rest to the test binaries.
fn cargo(args: &[&str]) -> Output {
    cargo_with_run_dir(args, None)
}

fn cargo_with_run_dir(args: &[&str], run_dir: Option<&Path>) -> Output {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let subcommand = if args[0] == "nextest" { 2 } else { 1 };
    let mut command = Command::new(cargo);
    command
        .args(&args[..subcommand])
        .arg("--manifest-path")
        .arg(fixture())
        .args(&args[subcommand..])
        .current_dir(fixture().parent().unwrap())
        .env(
            "CARGO_TARGET_DIR",
            Path::new(env!("CARGO_TARGET_TMPDIR")).join("harness-fixture"),
        )
        .env("CARGO_TERM_COLOR", "never")
        .env_remove("LOOPCHECK_RUN_DIR");
    if let Some(dir) = run_dir {
        command.env("LOOPCHECK_RUN_DIR", dir);
    }
    run_bounded(command, Duration::from_secs(600))
}

/// Runs `command` to completion, killing it (by pid) if it takes longer than `limit`.
fn run_bounded(mut command: Command, limit: Duration) -> Output {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run cargo");
    let (mut stdout, mut stderr) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let out = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stdout, &mut buf);
        buf
    });
    let err = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stderr, &mut buf);
        buf
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for cargo") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("`{command:?}` did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The pid the fixture test printed for its child.
fn child_pid(output: &str) -> u32 {
    let line = output
        .lines()
        .find_map(|l| l.split("fixture: child pid ").nth(1))
        .expect("the fixture names its child");
    line.split(' ').next().unwrap().parse().unwrap()
}

fn check_failure_names_the_child(output: &Output) {
    let all = text(output);
    assert!(!output.status.success(), "the test fails: {all}");
    let child = child_pid(&all);
    assert!(
        all.contains("loopcheck: `forms::failing_child_holds_port` failed; its addresses:"),
        "{all}"
    );
    // nextest indents a test's output.
    let headline = all
        .lines()
        .map(str::trim_start)
        .find(|l| l.starts_with("error[LC001]"))
        .unwrap_or_else(|| panic!("no LC001 in {all}"));
    assert!(headline.contains(&format!("in use by pid {child}")), "{headline}");
    assert_eq!(
        all.matches("error[LC001]").count(),
        1,
        "only the address the child holds is blamed: {all}"
    );
    assert!(
        all.contains(&format!("pid {child} is a child of this process")),
        "{all}"
    );
    assert!(
        all.contains("Address already in use"),
        "the body's own message is intact: {all}"
    );
    assert!(
        all.contains(&format!(
            "warning[LC013]: test `forms::failing_child_holds_port` ended and its child pid {child}"
        )),
        "{all}"
    );
}

/// With `LOOPCHECK_RUN_DIR` set, each test writes one complete JSON record there: a line of
/// `records.jsonl`.
fn check_run_records() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run-42");
    std::fs::create_dir(&run_dir).unwrap();
    let output = cargo_with_run_dir(
        &[
            "test",
            "--",
            "--exact",
            "form_port",
            "failing_child_holds_port",
            "leaky_listener_and_child",
        ],
        Some(&run_dir),
    );
    assert!(!output.status.success(), "{}", text(&output));
    let mut records: Vec<serde_json::Value> = std::fs::read_dir(&run_dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .inspect(|path| assert_eq!(path.file_name().unwrap(), "records.jsonl", "{path:?}"))
        .flat_map(|path| {
            let text = std::fs::read_to_string(path).unwrap();
            assert!(text.ends_with('\n'), "every record is a whole line: {text}");
            text.lines()
                .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
                .collect::<Vec<_>>()
        })
        .collect();
    records.sort_by_key(|r| r["name"].as_str().unwrap().to_owned());
    let names: Vec<&str> = records.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "forms::failing_child_holds_port",
            "forms::form_port",
            "forms::leaky_listener_and_child"
        ]
    );
    // The library's reader (what `cargo loopcheck test` reads them with) gives back every field
    // the harness wrote.
    let mut read = loopcheck::run::read_records(&run_dir);
    read.sort_by(|a, b| a.name.cmp(&b.name));
    let reread: Vec<serde_json::Value> = read.iter().map(|r| serde_json::to_value(r).unwrap()).collect();
    assert_eq!(reread, records);
    assert_eq!(read[0].outcome.as_deref(), Some("failed"));
    assert_eq!(read[1].given.len(), 1);
    assert_eq!(read[1].given[0].port, read[1].ports[0]);
    let (failing, passing, leaky) = (&records[0], &records[1], &records[2]);
    assert_eq!(passing["outcome"], "passed");
    assert_eq!(passing["ports"].as_array().unwrap().len(), 1);
    assert!(passing["duration_ms"].is_u64() && passing["pid"].is_u64());
    assert_eq!(failing["outcome"], "failed");
    assert!(
        failing["message"]
            .as_str()
            .unwrap()
            .contains("Address already in use"),
        "{failing}"
    );
    assert_eq!(failing["diagnoses"][0]["code"], "LC001", "{failing}");
    let leak_codes: Vec<&str> = leaky["leaks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["code"].as_str().unwrap())
        .collect();
    assert!(
        leak_codes.contains(&"LC012") && leak_codes.contains(&"LC013"),
        "{leaky}"
    );
}

fn check_leaks_are_reported(output: &Output) {
    let all = text(output);
    let child = child_pid(&all);
    assert!(
        all.contains("warning[LC012]: test `forms::leaky_listener_and_child` ended and"),
        "{all}"
    );
    assert!(all.contains("still bound, by this test process"), "{all}");
    assert!(all.contains(&format!("its child pid {child}")), "{all}");
}

#[test]
fn every_form_works_under_cargo_test_and_nextest() {
    let build = cargo(&["test", "--no-run"]);
    assert!(build.status.success(), "{}", text(&build));

    let passing = cargo(&["test", "--", "--skip", "failing_", "--skip", "leaky_"]);
    let all = text(&passing);
    assert!(passing.status.success(), "{all}");
    assert!(
        all.contains("test forms::form_ignored ... ignored") || all.contains("test form_ignored ... ignored"),
        "{all}"
    );
    assert!(all.contains("passed; 0 failed; 1 ignored"), "{all}");

    check_failure_names_the_child(&cargo(&["test", "--", "--exact", "failing_child_holds_port"]));
    check_run_records();
    check_leaks_are_reported(&cargo(&[
        "test",
        "--",
        "--exact",
        "leaky_listener_and_child",
        "--nocapture",
    ]));

    let nextest = cargo(&["nextest", "--version"]);
    if !nextest.status.success() {
        support::skip("the nextest half: cargo-nextest is not installed");
        return;
    }
    let passing = cargo(&[
        "nextest",
        "run",
        "--no-fail-fast",
        "-E",
        "not test(/^(failing_|leaky_)/)",
    ]);
    let all = text(&passing);
    assert!(passing.status.success(), "{all}");
    assert!(all.contains("0 failed") || !all.contains("FAIL"), "{all}");
    check_failure_names_the_child(&cargo(&[
        "nextest",
        "run",
        "-E",
        "test(=failing_child_holds_port)",
    ]));
    check_leaks_are_reported(&cargo(&[
        "nextest",
        "run",
        "--no-capture",
        "-E",
        "test(=leaky_listener_and_child)",
    ]));
}
