//! Overhead of `#[loopback_test]`: 200 passing tests against the same 200 plain `#[test]`s
//! doing the same bind and connect, in one process (`cargo test`'s test binary) and under
//! `cargo nextest run` (one process per test).
//!
//! `cargo bench --bench harness` generates a crate under `target/bench-harness`, builds it, and
//! prints a Markdown table. Run it on a quiet machine.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const TESTS: usize = 200;
const IN_PROCESS_RUNS: usize = 15;
const NEXTEST_RUNS: usize = 5;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("target/bench-harness");
    generate(&dir, root);
    let binaries = build(&dir);
    let plain = &binaries["plain"];
    let loopback = &binaries["loopback"];

    println!("\n### Harness overhead: {TESTS} passing tests, plain `#[test]` vs `#[loopback_test]`\n");
    println!("| runner | plain | loopback_test | ratio |");
    println!("|---|---:|---:|---:|");
    let (a, b) = paired(IN_PROCESS_RUNS, || run_binary(plain), || run_binary(loopback));
    row("one process (test binary, default threads)", a, b);
    let (a, b) = paired(
        IN_PROCESS_RUNS,
        || run_binary_args(plain, &["--test-threads=1"]),
        || run_binary_args(loopback, &["--test-threads=1"]),
    );
    row("one process, --test-threads=1", a, b);
    if Command::new("cargo")
        .args(["nextest", "--version"])
        .output()
        .is_ok_and(|o| o.status.success())
    {
        let nextest = |target: &'static str| {
            let dir = dir.clone();
            move || run_nextest(&dir, target)
        };
        let (a, b) = paired(NEXTEST_RUNS, nextest("plain"), nextest("loopback"));
        row("cargo nextest run (process per test)", a, b);
    } else {
        println!("| cargo nextest run | skipped: cargo-nextest is not installed | | |");
    }
}

fn row(name: &str, plain: Duration, loopback: Duration) {
    println!(
        "| {name} | {:.1} ms | {:.1} ms | {:.3}x |",
        plain.as_secs_f64() * 1e3,
        loopback.as_secs_f64() * 1e3,
        loopback.as_secs_f64() / plain.as_secs_f64()
    );
}

/// Medians of `runs` alternating runs of `a` and `b`, after one warm-up of each.
fn paired(runs: usize, mut a: impl FnMut(), mut b: impl FnMut()) -> (Duration, Duration) {
    a();
    b();
    let (mut ta, mut tb) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let start = Instant::now();
        a();
        ta.push(start.elapsed());
        let start = Instant::now();
        b();
        tb.push(start.elapsed());
    }
    ta.sort();
    tb.sort();
    (ta[runs / 2], tb[runs / 2])
}

fn run_binary(binary: &Path) {
    run_binary_args(binary, &[]);
}

fn run_binary_args(binary: &Path, args: &[&str]) {
    let status = Command::new(binary)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    assert!(status.is_ok_and(|s| s.success()), "{} failed", binary.display());
}

fn run_nextest(dir: &Path, target: &str) {
    let status = Command::new("cargo")
        .args(["nextest", "run", "--test", target, "--no-fail-fast"])
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", dir.join("target"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    assert!(
        status.is_ok_and(|s| s.success()),
        "nextest run of {target} failed"
    );
}

fn generate(dir: &Path, loopcheck: &Path) {
    std::fs::create_dir_all(dir.join("tests")).expect("bench crate directory");
    std::fs::create_dir_all(dir.join("src")).expect("bench crate directory");
    let manifest = format!(
        "[package]\nname = \"bench-harness\"\nversion = \"0.1.0\"\nedition = \"2024\"\npublish = false\n\n\
         [dev-dependencies]\nloopcheck = {{ path = {:?} }}\n\n[workspace]\n",
        loopcheck.display().to_string()
    );
    std::fs::write(dir.join("Cargo.toml"), manifest).expect("write Cargo.toml");
    std::fs::write(dir.join("src/lib.rs"), "").expect("write lib.rs");
    let mut plain = String::from("use std::net::{TcpListener, TcpStream};\n\n");
    let mut loopback =
        String::from("use std::net::{TcpListener, TcpStream};\nuse loopcheck::loopback_test;\n\n");
    for i in 0..TESTS {
        plain.push_str(&format!(
            "#[test]\nfn t{i:03}() {{\n    let listener = TcpListener::bind(\"127.0.0.1:0\").unwrap();\n    \
             TcpStream::connect(listener.local_addr().unwrap()).unwrap();\n}}\n\n"
        ));
        loopback.push_str(&format!(
            "#[loopback_test]\nfn t{i:03}(listener: TcpListener) {{\n    \
             TcpStream::connect(listener.local_addr().unwrap()).unwrap();\n}}\n\n"
        ));
    }
    std::fs::write(dir.join("tests/plain.rs"), plain).expect("write plain.rs");
    std::fs::write(dir.join("tests/loopback.rs"), loopback).expect("write loopback.rs");
}

/// Builds the test binaries; returns their paths by target name.
fn build(dir: &Path) -> std::collections::HashMap<String, PathBuf> {
    let output = Command::new("cargo")
        .args(["test", "--no-run", "--message-format=json"])
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", dir.join("target"))
        .stderr(Stdio::inherit())
        .output()
        .expect("cargo test --no-run");
    assert!(output.status.success(), "building the bench crate failed");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter_map(|msg| {
            let exe = msg["executable"].as_str()?;
            let name = msg["target"]["name"].as_str()?;
            Some((name.to_owned(), PathBuf::from(exe)))
        })
        .collect()
}
