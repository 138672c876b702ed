//! How many short-lived listeners the socket timeline catches at each sampling interval, and
//! what the sampler costs while it waits: the table the timeline's interval is chosen from.
//!
//! ```sh
//! cargo bench -p cargo-loopcheck --bench timeline                 # 40 listeners per cell
//! BENCH_LISTENERS=100 cargo bench -p cargo-loopcheck --bench timeline
//! ```
//!
//! Each listener binds `127.0.0.1:0` at a random phase of the interval, lives 10, 50 or 200 ms,
//! and closes; a cell is the share of listeners the sampler saw. The cost is the CPU time this
//! process spends (sampler thread included) while the sampler runs over an idle second, as a
//! share of one core.

use std::collections::HashSet;
use std::net::TcpListener;
use std::time::{Duration, Instant};

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    if !cfg!(target_os = "linux") {
        eprintln!("the socket timeline is recorded on Linux only: nothing to measure");
        return;
    }
    let listeners: u32 = std::env::var("BENCH_LISTENERS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(40);
    let intervals = [1, 2, 5, 10, 20].map(Duration::from_millis);
    let lifetimes = [10, 50, 200].map(Duration::from_millis);
    println!("{listeners} listeners per cell\n");
    println!(
        "| interval | caught, 10 ms | caught, 50 ms | caught, 200 ms | sampler CPU (share of one core) |"
    );
    println!("|---:|---:|---:|---:|---:|");
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    for interval in intervals {
        let mut row = format!("| {} ms |", interval.as_millis());
        for lifetime in lifetimes {
            let mut opened = Vec::new();
            let seen = cargo_loopcheck::runner::sample_listeners(interval, || {
                for _ in 0..listeners {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    let phase = Duration::from_micros(seed % (interval.as_micros() as u64).max(1));
                    std::thread::sleep(phase);
                    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
                    opened.push(listener.local_addr().unwrap());
                    std::thread::sleep(lifetime);
                    drop(listener);
                }
            });
            let seen: HashSet<_> = seen.into_iter().map(|(addr, _, _)| addr).collect();
            let caught = opened.iter().filter(|a| seen.contains(a)).count();
            row.push_str(&format!(" {:.0}% |", 100.0 * caught as f64 / opened.len() as f64));
        }
        let before = cpu_time();
        let started = Instant::now();
        cargo_loopcheck::runner::sample_listeners(interval, || {
            std::thread::sleep(Duration::from_secs(1));
        });
        let share = (cpu_time() - before).as_secs_f64() / started.elapsed().as_secs_f64();
        row.push_str(&format!(" {:.1}% |", 100.0 * share));
        println!("{row}");
    }
}

/// The CPU time of this process so far, user and system.
#[cfg(not(unix))]
fn cpu_time() -> Duration {
    Duration::ZERO
}

/// The CPU time of this process so far, user and system.
#[cfg(unix)]
fn cpu_time() -> Duration {
    // SAFETY: `usage` is a valid out-parameter for getrusage.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let time = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    time(usage.ru_utime) + time(usage.ru_stime)
}
