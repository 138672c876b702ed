//! `cargo loopcheck test` against the bare runner on the same passing suite, paired: each
//! round runs the bare runner, `cargo loopcheck test`, and `cargo loopcheck test` without its
//! socket timeline (`LOOPCHECK_TIMELINE=off`), in a rotating order, and the ratios of the
//! medians and the medians of the paired ratios are reported.
//!
//! ```sh
//! cargo bench -p cargo-loopcheck --bench test_command            # 15 rounds, 50 tests a binary
//! BENCH_ROUNDS=31 BENCH_TESTS=200 cargo bench -p cargo-loopcheck --bench test_command
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
    let mut pairs = vec![("cargo test", bare(&["test"]), "--cargo-test")];
    if nextest {
        pairs.push(("cargo nextest run", bare(&["nextest", "run"]), "--nextest"));
    } else {
        eprintln!("cargo-nextest is not installed: the nextest pair is skipped");
    }

    println!(
        "| runner | bare median | `cargo loopcheck test` median | ratio of medians | median of paired ratios | without the timeline (`LOOPCHECK_TIMELINE=off`) | paired ratio, timeline on / off |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (name, mut bare, flag) in pairs {
        let mut wrapped = wrapped(flag);
        let mut untimed = wrapped_off(&wrapped_command(flag, &manifest));
        for command in [&mut bare, &mut wrapped, &mut untimed] {
            command
                .env("CARGO_TARGET_DIR", &target)
                .env("CARGO_TERM_COLOR", "never")
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            // Warm-up: the build, and the page cache.
            assert!(time(command).1, "{name}: the suite must pass");
        }
        let mut times = [Vec::new(), Vec::new(), Vec::new()];
        let mut ratios = Vec::new();
        let mut timeline_ratios = Vec::new();
        for round in 0..rounds {
            // The three commands in a rotating order, so that none always runs first.
            let mut taken = [Duration::ZERO; 3];
            for step in 0..3 {
                let which = (round + step) % 3;
                let command = match which {
                    0 => &mut bare,
                    1 => &mut wrapped,
                    _ => &mut untimed,
                };
                taken[which] = time(command).0;
            }
            for (all, t) in times.iter_mut().zip(taken) {
                all.push(t);
            }
            ratios.push(taken[1].as_secs_f64() / taken[0].as_secs_f64());
            timeline_ratios.push(taken[1].as_secs_f64() / taken[2].as_secs_f64());
        }
        let [b, w, u] = times.map(|mut t| median(&mut t));
        ratios.sort_by(f64::total_cmp);
        timeline_ratios.sort_by(f64::total_cmp);
        println!(
            "| {name} | {:.0} ms | {:.0} ms | {:.3}x | {:.3}x | {:.0} ms | {:.3}x |",
            b.as_secs_f64() * 1e3,
            w.as_secs_f64() * 1e3,
            w.as_secs_f64() / b.as_secs_f64(),
            ratios[ratios.len() / 2],
            u.as_secs_f64() * 1e3,
            timeline_ratios[timeline_ratios.len() / 2]
        );
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
