//! `reserve_port_block(4)` against `reserve_port()`, measured in one process, interleaved.
//!
//! `cargo bench --bench block` prints a Markdown row: the median and p90 of each, and the ratio
//! of the medians (target: at most 4x). The block and the single port are dropped outside the
//! timed part.

use std::time::Instant;

const ROUNDS: usize = 5_000;

fn main() {
    // Warm: the policy, the registry and the window's files exist before the first timing.
    for _ in 0..200 {
        drop(loopcheck::reserve_port().expect("port"));
        drop(loopcheck::reserve_port_block(4).expect("block"));
    }
    let mut single = Vec::with_capacity(ROUNDS);
    let mut block = Vec::with_capacity(ROUNDS);
    for round in 0..ROUNDS {
        // Alternate which goes first, so that neither always meets the other's cache.
        let mut time_single = || {
            let start = Instant::now();
            let lease = loopcheck::reserve_port().expect("port");
            single.push(start.elapsed().as_secs_f64() * 1e6);
            drop(lease);
        };
        if round % 2 == 0 {
            time_single();
        }
        let start = Instant::now();
        let leased = loopcheck::reserve_port_block(4).expect("block");
        block.push(start.elapsed().as_secs_f64() * 1e6);
        drop(leased);
        if round % 2 == 1 {
            time_single();
        }
    }
    let (single_median, single_p90) = stats(&mut single);
    let (block_median, block_p90) = stats(&mut block);
    println!("| call | median | p90 |");
    println!("|---|---:|---:|");
    println!("| `reserve_port()` | {single_median:.1} us | {single_p90:.1} us |");
    println!("| `reserve_port_block(4)` | {block_median:.1} us | {block_p90:.1} us |");
    println!(
        "\nmedian ratio: {:.2}x (target <= 4x), {ROUNDS} interleaved rounds",
        block_median / single_median
    );
}

fn stats(samples: &mut [f64]) -> (f64, f64) {
    samples.sort_by(f64::total_cmp);
    (samples[samples.len() / 2], samples[samples.len() * 9 / 10])
}
