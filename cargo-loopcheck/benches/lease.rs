//! `cargo-loopcheck loopcheck lease --count 1 -- true` against `true`: what leasing adds to a
//! command's run, paired and interleaved in one run.
//!
//! `cargo bench -p cargo-loopcheck --bench lease` prints a Markdown row: the median wall time of
//! each, and the median of the paired differences (target: at most 2 ms). The binary is run
//! directly: `cargo loopcheck` adds cargo's own start-up, which is cargo's and not ours.

use std::process::{Command, Stdio};
use std::time::Instant;

const ROUNDS: usize = 300;

fn wall(command: &mut Command) -> f64 {
    let start = Instant::now();
    let status = command.status().expect("run");
    assert!(status.success(), "{command:?}: {status}");
    start.elapsed().as_secs_f64() * 1e3
}

fn main() {
    // Found on `PATH` once, and given by its path to both: a `PATH` search (9 failed `execve`s
    // on this machine's `PATH`) would cost both sides alike, and only add noise.
    let truth = which::which("true").expect("`true` on PATH");
    let lease = || {
        let mut command = Command::new(env!("CARGO_BIN_EXE_cargo-loopcheck"));
        command
            .args(["loopcheck", "lease", "--count", "1", "--"])
            .arg(&truth)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        command
    };
    let bare = || {
        let mut command = Command::new(&truth);
        command.stdout(Stdio::null()).stderr(Stdio::null());
        command
    };
    for _ in 0..20 {
        wall(&mut lease());
        wall(&mut bare());
    }
    let (mut leased, mut alone, mut added) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let (with, without) = if round % 2 == 0 {
            let with = wall(&mut lease());
            (with, wall(&mut bare()))
        } else {
            let without = wall(&mut bare());
            (wall(&mut lease()), without)
        };
        leased.push(with);
        alone.push(without);
        added.push(with - without);
    }
    let median = |samples: &mut Vec<f64>| {
        samples.sort_by(f64::total_cmp);
        samples[samples.len() / 2]
    };
    println!("| command | median wall |");
    println!("|---|---:|");
    println!("| `true` | {:.2} ms |", median(&mut alone));
    println!(
        "| `cargo-loopcheck loopcheck lease --count 1 -- true` | {:.2} ms |",
        median(&mut leased)
    );
    println!(
        "\nmedian of the paired differences: {:.2} ms (target <= 2 ms), {ROUNDS} interleaved pairs",
        median(&mut added)
    );
}
