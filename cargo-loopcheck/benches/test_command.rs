//! `cargo loopcheck test` against the bare runner on the same passing suite, paired: each
//! round runs the bare runner, `cargo loopcheck test`, and `cargo loopcheck test` without its
//! socket timeline (`LOOPCHECK_TIMELINE=off`), in a rotating order; the ratios of the medians
//! and the medians of the paired ratios are reported.
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
    let wrapped = |flag: &str| wrapped_command(flag, &manifest);
    // Each row: a baseline, the command measured against it, and optionally a third command
    // that the second is also compared with.
    // Without BENCH_ISOLATE: bare runner, `cargo loopcheck test`, and the same without its
    // socket timeline. With it: `cargo loopcheck test` against `--isolate`, and nextest with
    // `env` as target runner, the floor of any target runner.
    let isolate = std::env::var_os("BENCH_ISOLATE").is_some();
    let row = |flag: &str, runner: &[&str]| -> Vec<Command> {
        if isolate {
            let mut isolated = wrapped(flag);
            isolated.arg("--isolate=require");
            vec![wrapped(flag), isolated]
        } else {
            vec![bare(runner), wrapped(flag), wrapped_off(&wrapped(flag))]
        }
    };
    let mut rows = vec![("cargo test", row("--cargo-test", &["test"]))];
    if nextest {
        rows.push(("cargo nextest run", row("--nextest", &["nextest", "run"])));
        if isolate && let Some(var) = host_runner_var() {
            let mut floor = bare(&["nextest", "run"]);
            floor.env(var, "/usr/bin/env");
            rows.push((
                "cargo nextest run, bare vs `env` as target runner",
                vec![bare(&["nextest", "run"]), floor],
            ));
        }
    }

    if isolate {
        println!(
            "| runner | `cargo loopcheck test` median | `--isolate` median | ratio of medians | median of paired ratios |"
        );
        println!("|---|---:|---:|---:|---:|");
    } else {
        println!(
            "| runner | bare median | `cargo loopcheck test` median | ratio of medians | median of paired ratios | without the timeline (`LOOPCHECK_TIMELINE=off`) | paired ratio, timeline on / off |"
        );
        println!("|---|---:|---:|---:|---:|---:|---:|");
    }
    for (name, mut commands) in rows {
        for command in &mut commands {
            command
                .env("CARGO_TARGET_DIR", &target)
                .env("CARGO_TERM_COLOR", "never")
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            // Warm-up: the build, and the page cache.
            assert!(time(command).1, "{name}: the suite must pass");
        }
        let k = commands.len();
        let mut times = vec![Vec::new(); k];
        let mut ratios = Vec::new();
        let mut third_ratios = Vec::new();
        for round in 0..rounds {
            // A rotating order, so that no command always runs first.
            let mut taken = vec![Duration::ZERO; k];
            for step in 0..k {
                let which = (round + step) % k;
                taken[which] = time(&mut commands[which]).0;
            }
            for (all, t) in times.iter_mut().zip(&taken) {
                all.push(*t);
            }
            ratios.push(taken[1].as_secs_f64() / taken[0].as_secs_f64());
            if k > 2 {
                third_ratios.push(taken[1].as_secs_f64() / taken[2].as_secs_f64());
            }
        }
        let medians: Vec<Duration> = times.iter_mut().map(|t| median(t)).collect();
        let (b, w) = (medians[0], medians[1]);
        let mut line = format!(
            "| {name} | {:.0} ms | {:.0} ms | {:.3}x | {:.3}x |",
            b.as_secs_f64() * 1e3,
            w.as_secs_f64() * 1e3,
            w.as_secs_f64() / b.as_secs_f64(),
            median_ratio(&mut ratios)
        );
        if k > 2 {
            line.push_str(&format!(
                " {:.0} ms | {:.3}x |",
                medians[2].as_secs_f64() * 1e3,
                median_ratio(&mut third_ratios)
            ));
        }
        println!("{line}");
    }
}

/// `cargo loopcheck test FLAG --manifest-path MANIFEST`.
fn wrapped_command(flag: &str, manifest: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cargo-loopcheck"));
    command
        .args(["loopcheck", "test", flag, "--manifest-path"])
        .arg(manifest);
    command
}

/// The same command with the socket timeline turned off.
fn wrapped_off(command: &Command) -> Command {
    let mut off = Command::new(command.get_program());
    off.args(command.get_args()).env("LOOPCHECK_TIMELINE", "off");
    off
}

fn median_ratio(ratios: &mut [f64]) -> f64 {
    ratios.sort_by(f64::total_cmp);
    ratios[ratios.len() / 2]
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
