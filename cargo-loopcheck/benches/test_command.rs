//! `cargo loopcheck test` against the bare runner on the same passing suite, paired: each
//! round runs both, in alternating order, and the ratio of the medians is reported.
//!
//! ```sh
//! cargo bench -p cargo-loopcheck --bench test_command            # 15 rounds, 50 tests a binary
//! BENCH_ROUNDS=31 BENCH_TESTS=200 cargo bench -p cargo-loopcheck --bench test_command
//! BENCH_ISOLATE=1 cargo bench -p cargo-loopcheck --bench test_command   # --isolate vs without,
//!                                     # and nextest with `env` as target runner vs without
//! ```
//!
//! The suite: 4 test binaries of 50 tests each (`BENCH_TESTS`), every test a loopback round trip (two binaries
//! with `#[loopback_test]`, two with plain `#[test]`s and `loopcheck::tcp_listener()`). It is
//! written under the bench's target tmp directory and built before timing starts.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn main() {
    // `cargo bench` passes `--bench`; anything else (`cargo test --benches`) only checks that
    // this builds.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(15);
    let tests: usize = std::env::var("BENCH_TESTS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(50);
    let manifest = write_suite(tests);
    println!("{} tests in 4 binaries, {rounds} paired rounds\n", 4 * tests);
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("harness-fixture");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let nextest = Command::new("cargo-nextest")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());

    let bare = |runner: &[&str]| {
        let mut command = Command::new(&cargo);
        command.args(runner).arg("--manifest-path").arg(&manifest);
        command
    };
    let wrapped = |flag: &str| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_cargo-loopcheck"));
        command
            .args(["loopcheck", "test", flag, "--manifest-path"])
            .arg(&manifest);
        command
    };
    // With BENCH_ISOLATE, the baseline is `cargo loopcheck test` and the other `--isolate`.
    let isolate = std::env::var_os("BENCH_ISOLATE").is_some();
    let pair = |flag: &str, runner: &[&str]| {
        if isolate {
            let mut isolated = wrapped(flag);
            isolated.arg("--isolate=require");
            (wrapped(flag), isolated)
        } else {
            (bare(runner), wrapped(flag))
        }
    };
    let (base, other) = pair("--cargo-test", &["test"]);
    let mut pairs = vec![("cargo test", base, other)];
    if nextest {
        let (base, other) = pair("--nextest", &["nextest", "run"]);
        pairs.push(("cargo nextest run", base, other));
        // The floor of any target runner: `env`, which only execs the test, against none.
        if isolate && let Some(var) = host_runner_var() {
            let mut floor = bare(&["nextest", "run"]);
            floor.env(var, "/usr/bin/env");
            pairs.push((
                "cargo nextest run, bare vs `env` as target runner",
                bare(&["nextest", "run"]),
                floor,
            ));
        }
    } else {
        eprintln!("cargo-nextest is not installed: the nextest pair is skipped");
    }

    let (base_name, other_name) = if isolate {
        ("`cargo loopcheck test`", "`--isolate`")
    } else {
        ("bare", "`cargo loopcheck test`")
    };
    println!(
        "| runner | {base_name} median | {other_name} median | ratio of medians | median of paired ratios |"
    );
    println!("|---|---:|---:|---:|---:|");
    for (name, mut bare, mut wrapped) in pairs {
        for command in [&mut bare, &mut wrapped] {
            command
                .env("CARGO_TARGET_DIR", &target)
                .env("CARGO_TERM_COLOR", "never")
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            // Warm-up: the build, and the page cache.
            assert!(time(command).1, "{name}: the suite must pass");
        }
        let mut bare_times = Vec::new();
        let mut wrapped_times = Vec::new();
        let mut ratios = Vec::new();
        for round in 0..rounds {
            let (b, w) = if round % 2 == 0 {
                let b = time(&mut bare).0;
                (b, time(&mut wrapped).0)
            } else {
                let w = time(&mut wrapped).0;
                (time(&mut bare).0, w)
            };
            bare_times.push(b);
            wrapped_times.push(w);
            ratios.push(w.as_secs_f64() / b.as_secs_f64());
        }
        let b = median(&mut bare_times);
        let w = median(&mut wrapped_times);
        ratios.sort_by(f64::total_cmp);
        println!(
            "| {name} | {:.0} ms | {:.0} ms | {:.3}x | {:.3}x |",
            b.as_secs_f64() * 1e3,
            w.as_secs_f64() * 1e3,
            w.as_secs_f64() / b.as_secs_f64(),
            ratios[ratios.len() / 2]
        );
    }
}

/// `CARGO_TARGET_<HOST>_RUNNER`, from `rustc -vV`.
fn host_runner_var() -> Option<String> {
    let output = Command::new("rustc").arg("-vV").output().ok()?;
    let host = String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_owned))?;
    Some(format!(
        "CARGO_TARGET_{}_RUNNER",
        host.to_uppercase().replace(['-', '.'], "_")
    ))
}

fn time(command: &mut Command) -> (Duration, bool) {
    let started = Instant::now();
    let status = command.status().expect("run the suite");
    (started.elapsed(), status.success())
}

fn median(times: &mut [Duration]) -> Duration {
    times.sort();
    times[times.len() / 2]
}

/// Writes the suite (once per content) and returns its manifest.
fn write_suite(tests_per_binary: usize) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("bench-suite-{tests_per_binary}"));
    let repository = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    std::fs::create_dir_all(dir.join("tests")).unwrap();
    std::fs::create_dir_all(dir.join("src")).unwrap();
    let manifest = format!(
        "[package]\nname = \"bench-suite-{tests_per_binary}\"\nversion = \"0.1.0\"\nedition = \"2024\"\npublish = false\n\n\
[dev-dependencies]\nloopcheck = {{ path = {:?}, features = [\"tokio\"] }}\n\
tokio = {{ version = \"1\", default-features = false, features = [\"rt\", \"net\", \"macros\"] }}\n\n[workspace]\n",
        repository.display().to_string()
    );
    write_if_changed(&dir.join("Cargo.toml"), &manifest);
    if !dir.join("Cargo.lock").exists() {
        std::fs::copy(
            repository.join("tests/fixtures/harness/Cargo.lock"),
            dir.join("Cargo.lock"),
        )
        .unwrap();
    }
    write_if_changed(&dir.join("src/lib.rs"), "");
    for binary in 0..4 {
        let harnessed = binary % 2 == 0;
        let mut source = String::from(
            "use std::io::{Read, Write};\nuse std::net::{TcpListener, TcpStream};\n\n\
fn round_trip(listener: TcpListener) {\n    let addr = listener.local_addr().unwrap();\n    \
let server = std::thread::spawn(move || {\n        let (mut stream, _) = listener.accept().unwrap();\n        \
let mut buf = [0; 4];\n        stream.read_exact(&mut buf).unwrap();\n        stream.write_all(&buf).unwrap();\n    });\n    \
let mut client = TcpStream::connect(addr).unwrap();\n    client.write_all(b\"ping\").unwrap();\n    \
let mut buf = [0; 4];\n    client.read_exact(&mut buf).unwrap();\n    assert_eq!(&buf, b\"ping\");\n    server.join().unwrap();\n}\n",
        );
        for test in 0..tests_per_binary {
            if harnessed {
                source.push_str(&format!(
                    "\n#[loopcheck::loopback_test]\nfn round_trip_{test}(listener: TcpListener) {{\n    round_trip(listener);\n}}\n"
                ));
            } else {
                source.push_str(&format!(
                    "\n#[test]\nfn round_trip_{test}() {{\n    round_trip(loopcheck::tcp_listener().unwrap());\n}}\n"
                ));
            }
        }
        write_if_changed(&dir.join(format!("tests/net_{binary}.rs")), &source);
    }
    dir.join("Cargo.toml")
}

/// Keeps the mtime of an unchanged file, so cargo does not rebuild it.
fn write_if_changed(path: &Path, text: &str) {
    if std::fs::read_to_string(path).ok().as_deref() != Some(text) {
        std::fs::write(path, text).unwrap();
    }
}
