//! The socket timeline of `cargo loopcheck test` on a fixture (tests/fixtures/timeline): holders
//! that are gone by the end of the run are named, with their test, binary and pid; a listener
//! that never accepts is LC006; a dev server of another language on a helper's port is named;
//! failures no socket explains are left alone. And `probe` on a listener that never accepts.
#![cfg(target_os = "linux")]

mod support;

use support::{copy_tree, json, run_bounded};

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use cargo_loopcheck::Exit;
use loopcheck::PortLease;
use serde_json::Value;

/// A copy of the fixture with leased ports written in, and the foreign processes on them.
struct Fixture {
    dir: tempfile::TempDir,
    package: String,
    /// The library's `SERVICE_PORT`, where this process listens and never accepts.
    service: TcpListener,
    /// A dev server of another language on the devserver helper's port, where one could start.
    dev_server: Option<DevServer>,
    _leases: Vec<PortLease>,
}

struct DevServer {
    child: Child,
    port: u16,
}

impl Drop for DevServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Fixture {
    fn new(package: &str) -> Fixture {
        let lease = || loopcheck::reserve_port().expect("lease a port");
        let (upgrade, greet, tls, backend, service) = (lease(), lease(), lease(), lease(), lease());
        let service_port = service.port();
        let service_listener =
            TcpListener::bind(("127.0.0.1", service_port)).expect("a listener that never accepts");
        let dir = tempfile::tempdir().expect("temporary directory");
        let template = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/timeline");
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
        substitute(
            "Cargo.toml",
            "name = \"timeline\"",
            &format!("name = \"{package}\""),
        );
        let crate_name = package.replace('-', "_");
        substitute("tests/service.rs", "timeline::", &format!("{crate_name}::"));
        substitute("src/lib.rs", "/*SERVICE_PORT*/ 1", &service_port.to_string());
        for file in ["tests/upgrade.rs", "tests/rebind.rs"] {
            substitute(file, "/*UPGRADE_PORT*/ 1", &upgrade.port().to_string());
        }
        for file in ["tests/greeter.rs", "tests/protocol.rs"] {
            substitute(file, "/*GREET_PORT*/ 1", &greet.port().to_string());
        }
        substitute("tests/controls.rs", "/*TLS_PORT*/ 1", &tls.port().to_string());
        substitute(
            "tests/devserver.rs",
            "/*BACKEND_PORT*/ 1",
            &backend.port().to_string(),
        );
        let dev_server = DevServer::start(backend.port());
        Fixture {
            dir,
            package: package.to_owned(),
            service: service_listener,
            dev_server,
            _leases: vec![upgrade, greet, tls, backend, service],
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        let mut command = Command::new(env!("CARGO_BIN_EXE_cargo-loopcheck"));
        command
            .args(["loopcheck", "test", "--manifest-path"])
            .arg(self.dir.path().join("Cargo.toml"))
            .args(args)
            .env(
                "CARGO_TARGET_DIR",
                Path::new(env!("CARGO_TARGET_TMPDIR")).join("harness-fixture"),
            )
            .env("RUST_BACKTRACE", "0")
            .env_remove("LOOPCHECK_TIMELINE")
            .env_remove("CARGO_TERM_COLOR")
            .env_remove("NO_COLOR");
        run_bounded(command, Duration::from_secs(300))
    }
}

impl DevServer {
    /// `python3 -m http.server PORT`, else `nc -l`; `None` (said on stderr) when neither runs.
    fn start(port: u16) -> Option<DevServer> {
        let port_text = port.to_string();
        let candidates: [(&str, Vec<&str>); 2] = [
            (
                "python3",
                vec!["-m", "http.server", &port_text, "--bind", "127.0.0.1"],
            ),
            ("nc", vec!["-l", "127.0.0.1", &port_text]),
        ];
        for (program, args) in candidates {
            let Ok(child) = Command::new(program)
                .args(&args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
            else {
                continue;
            };
            let mut server = DevServer { child, port };
            if server.wait_listening() {
                return Some(server);
            }
            drop(server);
        }
        support::skip("the dev server case: neither python3 nor nc could listen here");
        None
    }

    fn wait_listening(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return false;
            }
            let options = loopcheck::scan::ScanOptions {
                tcp: true,
                listen_only: true,
                ports: Some(vec![self.port]),
                ..Default::default()
            };
            if loopcheck::scan::scan_with(&options).is_ok_and(|t| !t.sockets.is_empty()) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
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

fn codes(test: &Value) -> Vec<&str> {
    test["diagnoses"]
        .as_array()
        .expect("diagnoses")
        .iter()
        .map(|d| d["code"].as_str().expect("code"))
        .collect()
}

/// The failures no socket explains stay unexplained.
fn check_controls(report: &Value) {
    for name in ["wrong_sum", "rejects_the_certificate", "fast_under_load"] {
        let control = test(report, name);
        assert_eq!(control["status"], "failed", "{control:#}");
        assert!(codes(control).is_empty(), "no port blame: {control:#}");
    }
}

/// The dev server on the helper's port is named by pid.
fn check_dev_server(fixture: &Fixture, report: &Value) {
    let Some(dev) = &fixture.dev_server else { return };
    let backend = test(report, "starts_backend");
    assert!(
        matches!(backend["status"].as_str(), Some("failed" | "flaky")),
        "{backend:#}"
    );
    let diagnosis = &backend["diagnoses"][0];
    assert_eq!(diagnosis["code"], "LC001", "{backend:#}");
    assert_eq!(diagnosis["processes"][0]["pid"], dev.child.id(), "{backend:#}");
    assert!(
        diagnosis["evidence"].to_string().contains("only candidate"),
        "{backend:#}"
    );
}

#[test]
fn nextest_names_holders_that_left_before_the_end() {
    if !support::nextest_installed() {
        return;
    }
    let fixture = Fixture::new("timeline-nextest");
    let junit = fixture.dir.path().join("report.xml");
    let output = fixture.run(&[
        "--nextest",
        "--format",
        "json",
        "--junit",
        junit.to_str().unwrap(),
        "--",
        "--test-threads",
        "4",
    ]);
    assert_eq!(output.status.code(), Some(i32::from(Exit::FOUND)));
    let report = json(&output);
    let package = &fixture.package;
    assert_eq!(report["timeline"]["recorded"], true, "{:#}", report["timeline"]);
    assert!(report["timeline"]["samples"].as_u64() > Some(10));

    // Two binaries on one fixed port: the one that bound second names the first, gone since.
    let rebind = test(&report, "binds_upgrade_port");
    assert_eq!(rebind["status"], "failed", "{rebind:#}");
    assert_eq!(codes(rebind), ["LC001"], "never LC003: {rebind:#}");
    let diagnosis = &rebind["diagnoses"][0];
    let holder = &diagnosis["processes"][0];
    assert_eq!(holder["test"], "serves_upgrades", "{diagnosis:#}");
    assert_eq!(holder["binary"], format!("{package}::upgrade"), "{diagnosis:#}");
    assert!(holder["pid"].as_u64().is_some_and(|pid| pid > 0), "{diagnosis:#}");
    assert!(holder["first_seen"].as_f64() <= holder["last_seen"].as_f64());
    let summary = diagnosis["summary"].as_str().unwrap();
    assert!(
        summary.contains(&format!(
            "was held by test `serves_upgrades` (binary `{package}::upgrade`, pid {}",
            holder["pid"]
        )),
        "{summary}"
    );
    assert!(summary.contains("this test failed to bind it"), "{summary}");
    // JUnit carries the holder too.
    let xml = std::fs::read_to_string(&junit).expect("the JUnit report");
    for (key, value) in [
        ("test", "serves_upgrades".to_owned()),
        ("pid", holder["pid"].to_string()),
    ] {
        assert!(
            xml.contains(&format!("name=\"loopcheck.diagnosis.0.{key}\" value=\"{value}\"")),
            "{key}={value} in {xml}"
        );
    }

    // A client that reached the other test's server fails on what it heard: a port conflict.
    let ping = test(&report, "answers_ping");
    assert_eq!(ping["status"], "failed", "{ping:#}");
    assert_eq!(codes(ping), ["LC001"], "{ping:#}");
    assert!(
        ping["diagnoses"][0]["summary"]
            .as_str()
            .unwrap()
            .starts_with("port conflict"),
        "{ping:#}"
    );
    assert_eq!(ping["diagnoses"][0]["processes"][0]["test"], "greets", "{ping:#}");

    // A listener that never accepts, reached through the library's constant: LC006, its pid.
    let status = test(&report, "fetches_status");
    assert_eq!(status["status"], "failed", "{status:#}");
    assert_eq!(codes(status), ["LC006"], "{status:#}");
    assert_eq!(
        status["diagnoses"][0]["processes"][0]["pid"],
        std::process::id(),
        "{status:#}"
    );
    assert_eq!(
        status["diagnoses"][0]["addr"],
        fixture.service.local_addr().unwrap().to_string()
    );
    assert!(
        status["diagnoses"][0]["evidence"]
            .to_string()
            .contains("only candidate"),
        "the library's constant names the port: {status:#}"
    );

    check_dev_server(&fixture, &report);
    check_controls(&report);
}

/// Two copies at once of the two binaries on one port: every failure names a holder by test,
/// binary and pid, never LC003.
#[test]
fn concurrent_nextest_copies_name_the_holder() {
    if !support::nextest_installed() {
        return;
    }
    let fixture = Fixture::new("timeline-copies");
    let output = fixture.run(&[
        "--nextest",
        "--concurrent",
        "2",
        "--format",
        "json",
        "--",
        "--test",
        "upgrade",
        "--test",
        "rebind",
    ]);
    assert_eq!(output.status.code(), Some(i32::from(Exit::FOUND)));
    let report = json(&output);
    let rebind = test(&report, "binds_upgrade_port");
    assert!(
        matches!(rebind["status"].as_str(), Some("failed" | "flaky")),
        "{rebind:#}"
    );
    for name in ["binds_upgrade_port", "serves_upgrades"] {
        let failed = test(&report, name);
        if failed["status"] == "passed" {
            continue;
        }
        assert_eq!(codes(failed), ["LC001"], "never LC003: {failed:#}");
        let holder = &failed["diagnoses"][0]["processes"][0];
        assert_eq!(holder["test"], "serves_upgrades", "{failed:#}");
        assert_eq!(holder["binary"], format!("{}::upgrade", fixture.package));
        assert!(holder["pid"].as_u64().is_some(), "{failed:#}");
    }
}

#[test]
fn concurrent_cargo_test_copies_name_the_other_copy() {
    let fixture = Fixture::new("timeline-cargo");
    let output = fixture.run(&[
        "--cargo-test",
        "--concurrent",
        "2",
        "--format",
        "json",
        "--",
        "--test",
        "upgrade",
        "--test",
        "devserver",
    ]);
    assert_eq!(output.status.code(), Some(i32::from(Exit::FOUND)));
    let report = json(&output);
    let serves = test(&report, "serves_upgrades");
    assert_eq!(serves["status"], "flaky", "one copy bound first: {serves:#}");
    assert_eq!(codes(serves), ["LC001"], "never LC003: {serves:#}");
    let holder = &serves["diagnoses"][0]["processes"][0];
    assert_eq!(
        holder["binary"],
        format!("{}::upgrade", fixture.package),
        "{serves:#}"
    );
    assert!(holder["pid"].as_u64().is_some(), "{serves:#}");
    // cargo test runs a binary's tests in one process: the binary's hard-coded port is named.
    assert!(
        serves["diagnoses"][0]["evidence"]
            .to_string()
            .contains("hard-codes port"),
        "{serves:#}"
    );
    check_dev_server(&fixture, &report);
}

#[test]
fn probe_waits_for_accept_and_names_a_listener_that_never_accepts() {
    // A real listener with a backlog of one that never calls accept().
    let lease = loopcheck::reserve_port().unwrap();
    let listener = TcpListener::bind(("127.0.0.1", lease.port())).unwrap();
    let addr = listener.local_addr().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_cargo-loopcheck"))
        .args(["loopcheck", "--format", "json", "probe", "--timeout", "300ms"])
        .arg(addr.to_string())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(i32::from(Exit::FOUND)), "{output:?}");
    let diagnosis = json(&output);
    assert_eq!(diagnosis["code"], "LC006", "{diagnosis:#}");
    assert_eq!(diagnosis["processes"][0]["pid"], std::process::id());

    // A server that accepts is answered at once. (The first connection accepted is the one the
    // probe above left in the queue.)
    let output = std::thread::scope(|scope| {
        scope.spawn(|| {
            for _ in 0..2 {
                let _ = listener.accept();
            }
        });
        Command::new(env!("CARGO_BIN_EXE_cargo-loopcheck"))
            .args(["loopcheck", "--format", "json", "probe", "--timeout", "2s"])
            .arg(addr.to_string())
            .output()
            .unwrap()
    });
    let diagnosis = json(&output);
    assert_eq!(output.status.code(), Some(0), "{diagnosis:#}");
    assert_eq!(diagnosis["code"], "LC001", "{diagnosis:#}");
}
