//! After a run, `cargo loopcheck test` ends what the tests left running and reports each as
//! LC013 with what it did; `--keep-leftovers` keeps them. The fixture
//! (tests/fixtures/leftover) is one plain `#[test]` that spawns a `sleep` and returns.
#![cfg(target_os = "linux")]

mod support;

use std::io::Read;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use loopcheck::scan::ProcessInfo;
use serde_json::Value;

/// `cargo loopcheck test --cargo-test --format json ARGS` on a fresh copy of the fixture.
fn run(args: &[&str]) -> (tempfile::TempDir, Output) {
    run_fixture("leftover", &["Cargo.toml", "tests/spawns.rs"], None, args)
}

/// `cargo loopcheck test --cargo-test --format json ARGS` on a fresh copy of
/// `tests/fixtures/NAME` (its `files`), with `port` written in for `/*PORT*/ 1`.
fn run_fixture(name: &str, files: &[&str], port: Option<u16>, args: &[&str]) -> (tempfile::TempDir, Output) {
    let dir = tempfile::tempdir().unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::create_dir(dir.path().join("tests")).unwrap();
    for file in files {
        let text = std::fs::read_to_string(fixture.join(file)).unwrap();
        let text = match port {
            Some(port) => text.replace("/*PORT*/ 1", &port.to_string()),
            None => text,
        };
        std::fs::write(dir.path().join(file), text).unwrap();
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_cargo-loopcheck"))
        .args([
            "loopcheck",
            "test",
            "--cargo-test",
            "--format",
            "json",
            "--manifest-path",
        ])
        .arg(dir.path().join("Cargo.toml"))
        .args(args)
        .env(
            "CARGO_TARGET_DIR",
            Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-fixture")),
        )
        .env_remove("CARGO_TERM_COLOR")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            buf
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + Duration::from_secs(300);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("cargo loopcheck test took longer than 300s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let output = Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    };
    (dir, output)
}

/// The run's LC013 for the fixture's `sleep`, and the sleep's pid.
fn leaked_sleep(output: &Output) -> (Value, u32) {
    let report: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}); stderr:\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    assert_eq!(report["tests"][0]["status"], "passed", "{report:#}");
    let leaks: Vec<&Value> = report["leaks"].as_array().unwrap().iter().collect();
    assert_eq!(leaks.len(), 1, "one leftover, the sleep: {report:#}");
    let leak = leaks[0].clone();
    assert_eq!(leak["code"], "LC013", "{report:#}");
    let process = &leak["processes"][0];
    assert!(
        process["command"].as_str().unwrap().starts_with("sleep 120"),
        "{report:#}"
    );
    (leak.clone(), process["pid"].as_u64().unwrap() as u32)
}

fn alive(pid: u32) -> bool {
    alive_as(pid, "sleep")
}

fn alive_as(pid: u32, name: &str) -> bool {
    ProcessInfo::read(pid).is_some_and(|p| p.state != Some('Z') && p.name.starts_with(name))
}

fn python3() -> bool {
    let found = Command::new("python3")
        .arg("-c")
        .arg("pass")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        support::skip("python3 is not installed, so no foreign leftover listener can be run");
    }
    found
}

/// A leftover is evidence: test A leaves a python3 listener on a fixed port and test B then
/// fails to bind it. B's LC001 names the leftover's pid (it was still alive when the failure
/// was explained), and the leftover is ended after that.
#[test]
fn a_leftover_holder_is_blamed_before_it_is_ended() {
    if !python3() {
        return;
    }
    let lease = loopcheck::reserve_port().expect("lease a port");
    let (_dir, output) = run_fixture(
        "leftover-holder",
        &["Cargo.toml", "tests/holder.rs"],
        Some(lease.port()),
        &[],
    );
    let report: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}); stderr:\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    let tests = report["tests"].as_array().unwrap();
    let test = |name: &str| {
        tests
            .iter()
            .find(|t| t["name"].as_str().is_some_and(|n| n.ends_with(name)))
            .unwrap_or_else(|| panic!("no test {name}: {report:#}"))
    };
    let holder = test("a_leaves_a_listener_running");
    let leak = holder["leaks"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(report["leaks"].as_array().into_iter().flatten())
        .find(|l| {
            l["processes"][0]["command"]
                .as_str()
                .is_some_and(|c| c.contains("python"))
        })
        .unwrap_or_else(|| panic!("the python3 leftover is reported: {report:#}"));
    let pid = leak["processes"][0]["pid"].as_u64().unwrap() as u32;
    let ended = !alive_as(pid, "python");
    if !ended {
        // SAFETY: kill has no memory preconditions; the pid is the fixture's python3.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    }
    assert!(ended, "pid {pid} was ended after the report: {leak:#}");

    let failed = test("b_binds_the_same_port");
    assert_eq!(failed["status"], "failed", "{report:#}");
    let lc001 = failed["diagnoses"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["code"] == "LC001")
        .unwrap_or_else(|| panic!("LC001 for the failed bind: {failed:#}"));
    assert!(
        lc001["processes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["pid"].as_u64() == Some(u64::from(pid))),
        "LC001 names the leftover's pid {pid}: {lc001:#}"
    );
    let text = lc001.to_string();
    assert!(!text.contains("short-lived"), "{lc001:#}");
}

#[test]
fn leftovers_are_ended_after_the_run_or_kept_on_request() {
    let (_dir, output) = run(&[]);
    let (leak, pid) = leaked_sleep(&output);
    let summary = leak["summary"].as_str().unwrap();
    assert!(
        summary.contains("after the run, cargo loopcheck ended it with SIGTERM"),
        "{summary}"
    );
    assert!(
        !leak["fix"].as_str().unwrap().contains(&format!("kill {pid}")),
        "{leak:#}"
    );
    assert!(!alive(pid), "pid {pid} was ended");

    let (_dir, output) = run(&["--keep-leftovers"]);
    let (leak, pid) = leaked_sleep(&output);
    let kept = alive(pid);
    if kept {
        // SAFETY: kill has no memory preconditions; the pid is the fixture's sleep.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    }
    assert!(kept, "pid {pid} is left running");
    let summary = leak["summary"].as_str().unwrap();
    assert!(
        summary.contains(&format!(
            "left running after the run, as --keep-leftovers asks; `kill {pid}` ends it"
        )),
        "{summary}"
    );
}
