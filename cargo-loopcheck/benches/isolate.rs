//! What `--isolate` costs one test process: `true` run bare; through the wrapper without a
//! namespace (its `--list` path: the exec of cargo-loopcheck only); through the wrapper in a
//! fresh namespace (created, `lo` up, the test, the leftover check, and the namespace's
//! teardown, which the kernel finishes in a worker after the wrapper exits); and through the
//! wrapper joining a namespace kept for the run, as `cargo loopcheck test --isolate` does.
//! Interleaved, one sample of each per round; medians and p99s, and the namespace's own share
//! as paired differences.
//!
//! ```sh
//! cargo bench -p cargo-loopcheck --bench isolate                 # 300 rounds
//! BENCH_SAMPLES=1000 cargo bench -p cargo-loopcheck --bench isolate
//! ```
//!
//! The whole-suite ratio is `BENCH_ISOLATE=1 cargo bench -p cargo-loopcheck --bench test_command`.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    if cfg!(not(target_os = "linux")) {
        eprintln!("--isolate exists only on Linux");
        return;
    }
    let samples: usize = std::env::var("BENCH_SAMPLES")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(300);
    let exe = env!("CARGO_BIN_EXE_cargo-loopcheck");
    let check = Command::new(exe)
        .args(["loopcheck", "__isolate", "--check"])
        .output()
        .expect("run cargo-loopcheck");
    if !check.status.success() {
        eprintln!(
            "isolation is unavailable here: {}",
            String::from_utf8_lossy(&check.stdout)
        );
        return;
    }
    let true_path = "/bin/true";
    let bare = || {
        let mut command = Command::new(true_path);
        command.stdout(Stdio::null()).stderr(Stdio::null());
        command
    };
    let through = |extra: &[&str]| {
        let mut command = Command::new(exe);
        command
            .args(["loopcheck", "__isolate", true_path])
            .args(extra)
            .env_remove("LOOPCHECK_RUN_DIR")
            .env_remove("LOOPCHECK_ISOLATE")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        command
    };
    let mut holder = Command::new(exe)
        .args(["loopcheck", "__isolate", "--hold"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start a holder");
    let mut ready = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.stdout.take().unwrap()),
        &mut ready,
    )
    .expect("holder ready");
    assert!(ready.contains("available"), "{ready}");
    let mut joining = through(&[]);
    joining.env("LOOPCHECK_ISOLATE", format!("{{\"pool\":[{}]}}", holder.id()));
    let mut commands = [bare(), through(&["--list"]), through(&[]), joining];
    for command in &mut commands {
        assert!(command.status().unwrap().success(), "warm-up");
    }
    let mut times: [Vec<Duration>; 4] = Default::default();
    for round in 0..samples {
        for i in 0..4 {
            // Rotated, so that no variant always follows the same one.
            let at = (i + round) % 4;
            let started = Instant::now();
            let status = commands[at].status().expect("run");
            times[at].push(started.elapsed());
            assert!(status.success());
        }
    }
    drop(holder.stdin.take());
    let _ = holder.wait();
    let paired = |of: &[Duration]| -> Vec<Duration> {
        of.iter()
            .zip(&times[1])
            .map(|(isolated, wrapped)| isolated.saturating_sub(*wrapped))
            .collect()
    };
    let fresh = paired(&times[2]);
    let kept = paired(&times[3]);
    println!("{samples} rounds, one process each\n");
    println!("| per test process | median | p99 |");
    println!("|---|---:|---:|");
    for (name, values) in [
        ("`true`", &times[0]),
        ("through the wrapper, not isolated (`--list`)", &times[1]),
        ("through the wrapper, a fresh namespace", &times[2]),
        ("through the wrapper, joining a kept namespace", &times[3]),
        ("fresh namespace: setup + teardown (paired difference)", &fresh),
        ("kept namespace: join + check (paired difference)", &kept),
    ] {
        let (median, p99) = percentiles(values);
        println!("| {name} | {:.2} ms | {:.2} ms |", ms(median), ms(p99));
    }
}

fn percentiles(values: &[Duration]) -> (Duration, Duration) {
    let mut sorted = values.to_vec();
    sorted.sort();
    let p99 = sorted[(sorted.len() * 99 / 100).min(sorted.len() - 1)];
    (sorted[sorted.len() / 2], p99)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
