//! Overhead of `#[loopback_test]`: 200 passing tests against the same 200 plain `#[test]`s,
//! in one process (`cargo test`'s test binary) and under `cargo nextest run` (one process per
//! test), for two fixtures:
//!
//! - `connect`: bind `127.0.0.1:0` (or take a `TcpListener` argument), connect;
//! - `roundtrip`: the same, then accept and send one byte each way.
//!
//! Each fixture comes in five variants: plain `#[test]`s, `#[test]`s that take their
//! listener from `loopcheck::tcp_listener()` (the lease alone), `#[loopback_test]`s (the
//! lease and the harness: leak check, children check, context), plain `#[test]`s that make
//! the system calls `#[loopback_test]` makes, directly (`benches/harness/floor.rs`): the floor
//! the harness is up against while it keeps its safety properties, and the same floor in a
//! binary that also links the harness (one ignored `#[loopback_test]`), so that it is loaded
//! as `#[loopback_test]`'s binaries are.
//!
//! `cargo bench --bench harness` generates crates under `target/bench-harness`, builds them,
//! and prints a Markdown table. Variants are interleaved: every round runs each of them once,
//! in an order that rotates from round to round, and a ratio is the median of the per-round
//! ratios, so drift of a shared machine affects both sides of a pair alike. Every run gets a
//! fresh network namespace when this process may create one (root), and is timed in wall and
//! in CPU time (user + system, of the run and its descendants); on a loaded machine the CPU
//! time is the steadier of the two.
//!
//! - `BENCH_BASELINE=DIR` adds a variant: the same `#[loopback_test]`s built against the
//!   loopcheck checkout in `DIR` (for before/after figures from one run);
//! - `BENCH_CANDIDATE=DIR` measures the loopcheck checkout in `DIR` instead of this one;
//! - `BENCH_ROUNDS` (default 31) and `BENCH_NEXTEST_ROUNDS` (default 11) set the rounds;
//! - `BENCH_RUN_DIR=1` gives every run an empty `LOOPCHECK_RUN_DIR`, as `cargo loopcheck test`
//!   does, so that the `#[loopback_test]`s also write their run records (the floor writes
//!   none: it is then a floor without them);
//! - `BENCH_OPTIMISED_LOOPCHECK=1` builds loopcheck with `opt-level = 3` in the generated
//!   crates (`[profile.dev.package.loopcheck]`), the tests themselves unoptimised as usual;
//! - arguments pick fixtures and runners: `-- roundtrip nextest` runs only those.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The floor's code, which the generated crates include, compiled (and linted) here as well.
#[allow(dead_code)]
#[path = "harness/floor.rs"]
mod floor;

const TESTS: usize = 200;

const FIXTURES: [&str; 2] = ["connect", "roundtrip"];

#[derive(Clone, Copy, PartialEq)]
enum Runner {
    Threads,
    OneThread,
    Nextest,
}

impl Runner {
    fn key(self) -> &'static str {
        match self {
            Runner::Threads => "threads",
            Runner::OneThread => "one-thread",
            Runner::Nextest => "nextest",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Runner::Threads => "one process, default threads",
            Runner::OneThread => "one process, --test-threads=1",
            Runner::Nextest => "cargo nextest run",
        }
    }
}

/// One side of a comparison: a test target of one generated crate.
struct Variant {
    name: &'static str,
    crate_dir: PathBuf,
    target: String,
    binary: PathBuf,
}

impl Variant {
    /// Runs the variant once through [`measure`]; returns its wall and CPU time.
    fn run(&self, runner: Runner) -> Sample {
        let mut command = Command::new(std::env::current_exe().expect("bench binary"));
        command.arg("--measure").arg("--");
        match runner {
            Runner::Threads => command.arg(&self.binary),
            Runner::OneThread => command.arg(&self.binary).arg("--test-threads=1"),
            Runner::Nextest => command
                .args([
                    "cargo",
                    "nextest",
                    "run",
                    "--test",
                    &self.target,
                    "--no-fail-fast",
                ])
                .current_dir(&self.crate_dir)
                .env("CARGO_TARGET_DIR", self.crate_dir.join("target"))
                .env("CARGO_NET_OFFLINE", "true"),
        };
        let output = command
            .stderr(Stdio::inherit())
            .output()
            .expect("run the measuring wrapper");
        let text = String::from_utf8_lossy(&output.stdout);
        let mut fields = text.split_whitespace().map(|f| f.parse::<u64>().ok());
        match (
            output.status.success(),
            fields.next().flatten(),
            fields.next().flatten(),
        ) {
            (true, Some(wall), Some(cpu)) => Sample {
                wall: Duration::from_nanos(wall),
                cpu: Duration::from_nanos(cpu),
            },
            _ => panic!("{} of {} failed: {text}", runner.key(), self.target),
        }
    }
}

#[derive(Clone, Copy)]
struct Sample {
    wall: Duration,
    cpu: Duration,
}

/// `--measure -- CMD ARGS`: runs CMD in a fresh network namespace with its loopback up (when
/// this process may create one), and prints its wall time and the CPU time (user + system)
/// of it and its descendants, in nanoseconds. Each run starts with an empty socket table:
/// the host's `TIME_WAIT` sockets (other suites' leftovers) make `bind(127.0.0.1:0)` search
/// the ephemeral range and would otherwise dominate the plain side.
fn measure(command: &[String]) {
    let isolated = enter_network_namespace();
    if !isolated {
        eprintln!(
            "note: no network namespace (needs root or user namespaces): measuring on the host's sockets"
        );
    }
    let run_dir = std::env::var_os("BENCH_RUN_DIR")
        .filter(|v| v == "1")
        .map(|_| tempfile::tempdir().expect("a run directory"));
    let mut child = Command::new(&command[0]);
    if let Some(dir) = &run_dir {
        child.env(loopcheck::lease::RUN_DIR_VAR, dir.path());
    }
    let before = children_cpu();
    let start = Instant::now();
    let status = child
        .args(&command[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run the measured command");
    let wall = start.elapsed();
    let cpu = children_cpu() - before;
    if !status.success() {
        eprintln!("{command:?} failed: {status}");
        std::process::exit(1);
    }
    println!("{} {}", wall.as_nanos(), cpu.as_nanos());
}

fn children_cpu() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::uninit();
    // SAFETY: `usage` is valid for writes; getrusage fills it on success.
    if unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, usage.as_mut_ptr()) } != 0 {
        return Duration::ZERO;
    }
    // SAFETY: getrusage returned 0.
    let usage = unsafe { usage.assume_init() };
    let time = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    time(usage.ru_utime) + time(usage.ru_stime)
}

/// Moves this process into a new network namespace and brings its `lo` up.
fn enter_network_namespace() -> bool {
    #[repr(C)]
    struct IfReq {
        name: [u8; 16],
        flags: libc::c_short,
        _rest: [u8; 22],
    }
    const SIOCGIFFLAGS: libc::c_ulong = 0x8913;
    const SIOCSIFFLAGS: libc::c_ulong = 0x8914;
    // SAFETY: unshare, socket, ioctl and close are called with valid arguments; `req` is a
    // `struct ifreq` as the kernel reads and writes it.
    unsafe {
        if libc::unshare(libc::CLONE_NEWNET) != 0 {
            return false;
        }
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return false;
        }
        let mut req = IfReq {
            name: [0; 16],
            flags: 0,
            _rest: [0; 22],
        };
        req.name[..2].copy_from_slice(b"lo");
        let up = libc::ioctl(fd, SIOCGIFFLAGS, &mut req) == 0 && {
            req.flags |= libc::IFF_UP as libc::c_short;
            libc::ioctl(fd, SIOCSIFFLAGS, &req) == 0
        };
        libc::close(fd);
        up
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    if args.first().is_some_and(|a| a == "--measure") {
        return measure(&args[2..]);
    }
    let wanted = |key: &str| {
        args.is_empty() || args.iter().any(|a| a == key) || {
            // Only fixtures or only runners named: the other dimension is "all".
            let names_fixture = args.iter().any(|a| FIXTURES.contains(&a.as_str()));
            let names_runner = args
                .iter()
                .any(|a| ["threads", "one-thread", "nextest"].contains(&a.as_str()));
            if FIXTURES.contains(&key) {
                !names_fixture
            } else {
                !names_runner
            }
        }
    };
    let rounds = env_usize("BENCH_ROUNDS", 31);
    let nextest_rounds = env_usize("BENCH_NEXTEST_ROUNDS", 11);

    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let candidate_dir = root.join("target/bench-harness");
    let candidate_loopcheck =
        std::env::var_os("BENCH_CANDIDATE").map_or_else(|| root.to_path_buf(), PathBuf::from);
    generate(&candidate_dir, &candidate_loopcheck);
    let candidate = build(&candidate_dir);
    let baseline = std::env::var_os("BENCH_BASELINE").map(|dir| {
        let crate_dir = root.join("target/bench-harness-baseline");
        generate(&crate_dir, Path::new(&dir));
        (build(&crate_dir), crate_dir)
    });
    let nextest = Command::new("cargo")
        .args(["nextest", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());

    println!("\n### Harness overhead: {TESTS} passing tests, plain `#[test]` vs `#[loopback_test]`\n");
    println!(
        "in-process rounds: {rounds}; nextest rounds: {nextest_rounds}; load average before: {}",
        load()
    );
    println!("loopcheck: {}", candidate_loopcheck.display());
    if std::env::var_os("BENCH_RUN_DIR").is_some_and(|v| v == "1") {
        println!("every run with an empty LOOPCHECK_RUN_DIR: the run records are written");
    }
    if std::env::var_os("BENCH_OPTIMISED_LOOPCHECK").is_some_and(|v| v == "1") {
        println!("loopcheck built with opt-level = 3, the tests unoptimised");
    }
    if let Some(dir) = std::env::var_os("BENCH_BASELINE") {
        println!("baseline: loopcheck at {}", Path::new(&dir).display());
    }
    println!();
    println!("| fixture | runner | variant | wall | wall vs plain | CPU | CPU vs plain |");
    println!("|---|---|---|---:|---:|---:|---:|");
    for fixture in FIXTURES.into_iter().filter(|f| wanted(f)) {
        let variant = |name, binaries: &Binaries, crate_dir: &Path, kind: &str| {
            let target = format!("{kind}_{fixture}");
            Variant {
                name,
                crate_dir: crate_dir.to_path_buf(),
                binary: binaries
                    .get(&target)
                    .unwrap_or_else(|| panic!("no binary for {target}"))
                    .clone(),
                target,
            }
        };
        let mut variants = vec![
            variant("plain `#[test]`", &candidate, &candidate_dir, "plain"),
            variant(
                "`#[test]` + `loopcheck::tcp_listener()`",
                &candidate,
                &candidate_dir,
                "library",
            ),
            variant("`#[loopback_test]`", &candidate, &candidate_dir, "loopback"),
            variant(
                "plain + the harness's system calls (floor)",
                &candidate,
                &candidate_dir,
                "floor",
            ),
            variant(
                "the floor + the harness linked, not run",
                &candidate,
                &candidate_dir,
                "linked",
            ),
        ];
        if let Some((binaries, dir)) = &baseline {
            variants.push(variant("`#[loopback_test]`, baseline", binaries, dir, "loopback"));
        }
        for runner in [Runner::Threads, Runner::OneThread, Runner::Nextest] {
            if !wanted(runner.key()) {
                continue;
            }
            if runner == Runner::Nextest && !nextest {
                println!(
                    "| {fixture} | {} | skipped: cargo-nextest is not installed | | | | |",
                    runner.describe()
                );
                continue;
            }
            let n = if runner == Runner::Nextest {
                nextest_rounds
            } else {
                rounds
            };
            let samples = interleaved(n, &variants, runner);
            let wall = |s: &[Sample]| s.iter().map(|s| s.wall).collect::<Vec<_>>();
            let cpu = |s: &[Sample]| s.iter().map(|s| s.cpu).collect::<Vec<_>>();
            let plain = &samples[0];
            for (variant, side) in variants.iter().zip(&samples) {
                println!(
                    "| {fixture} | {} | {} | {} | {:.3}x | {} | {:.3}x |",
                    runner.describe(),
                    variant.name,
                    ms(median(&wall(side))),
                    paired_ratio(&wall(plain), &wall(side)),
                    ms(median(&cpu(side))),
                    paired_ratio(&cpu(plain), &cpu(side)),
                );
            }
        }
    }
    println!("\nload average after: {}", load());
}

type Binaries = std::collections::HashMap<String, PathBuf>;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_owned())
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn median(samples: &[Duration]) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    sorted[sorted.len() / 2]
}

/// The median of `b[i] / a[i]`: each ratio compares two runs made moments apart.
fn paired_ratio(a: &[Duration], b: &[Duration]) -> f64 {
    let mut ratios: Vec<f64> = a
        .iter()
        .zip(b)
        .map(|(a, b)| b.as_secs_f64() / a.as_secs_f64())
        .collect();
    ratios.sort_by(f64::total_cmp);
    ratios[ratios.len() / 2]
}

/// `rounds` rounds, each running every variant once (the order rotates), after one warm-up
/// run of each; returns the samples per variant.
fn interleaved(rounds: usize, variants: &[Variant], runner: Runner) -> Vec<Vec<Sample>> {
    for variant in variants {
        variant.run(runner);
    }
    let mut samples = vec![Vec::with_capacity(rounds); variants.len()];
    for round in 0..rounds {
        for k in 0..variants.len() {
            let index = (round + k) % variants.len();
            samples[index].push(variants[index].run(runner));
        }
    }
    samples
}

fn generate(dir: &Path, loopcheck: &Path) {
    std::fs::create_dir_all(dir.join("tests")).expect("bench crate directory");
    std::fs::create_dir_all(dir.join("src")).expect("bench crate directory");
    let mut manifest = format!(
        "[package]\nname = \"bench-harness\"\nversion = \"0.1.0\"\nedition = \"2024\"\npublish = false\n\n\
         [dev-dependencies]\nlibc = \"0.2\"\nloopcheck = {{ path = {:?} }}\n\n[workspace]\n",
        loopcheck.display().to_string()
    );
    if std::env::var_os("BENCH_OPTIMISED_LOOPCHECK").is_some_and(|v| v == "1") {
        manifest.push_str("\n[profile.dev.package.loopcheck]\nopt-level = 3\n");
    }
    write_if_changed(&dir.join("Cargo.toml"), &manifest);
    write_if_changed(&dir.join("src/lib.rs"), "");
    std::fs::create_dir_all(dir.join("tests/floor")).expect("bench crate directory");
    write_if_changed(&dir.join("tests/floor/mod.rs"), include_str!("harness/floor.rs"));
    let header = "use std::io::{Read, Write};\nuse std::net::{TcpListener, TcpStream};\n\n\
                  #[allow(dead_code)]\nfn roundtrip(listener: &TcpListener) {\n    \
                  let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();\n    \
                  let (mut server, _) = listener.accept().unwrap();\n    let mut byte = [0u8];\n    \
                  client.write_all(b\"p\").unwrap();\n    server.read_exact(&mut byte).unwrap();\n    \
                  server.write_all(b\"q\").unwrap();\n    client.read_exact(&mut byte).unwrap();\n}\n\n";
    for fixture in FIXTURES {
        let body = match fixture {
            "connect" => "TcpStream::connect(listener.local_addr().unwrap()).unwrap();",
            _ => "roundtrip(&listener);",
        };
        let mut plain = String::from(header);
        let mut library = String::from(header);
        let mut loopback = format!("{header}use loopcheck::loopback_test;\n\n");
        let mut floor = format!("{header}mod floor;\n\n");
        for i in 0..TESTS {
            plain.push_str(&format!(
                "#[test]\nfn t{i:03}() {{\n    let listener = TcpListener::bind(\"127.0.0.1:0\").unwrap();\n    {body}\n}}\n\n"
            ));
            library.push_str(&format!(
                "#[test]\nfn t{i:03}() {{\n    let listener = loopcheck::tcp_listener().unwrap();\n    {body}\n}}\n\n"
            ));
            loopback.push_str(&format!(
                "#[loopback_test]\nfn t{i:03}(listener: TcpListener) {{\n    {body}\n}}\n\n"
            ));
            // The address is asked for once more than the harness does (it knows it from the
            // allocation): one `getsockname` above the floor.
            floor.push_str(&format!(
                "#[test]\nfn t{i:03}() {{\n    let listener = TcpListener::bind(\"127.0.0.1:0\").unwrap();\n    \
                 let addr = listener.local_addr().unwrap();\n    let lease = floor::acquire(&listener, addr);\n    \
                 {body}\n    drop(listener);\n    floor::release(lease, addr);\n}}\n\n"
            ));
        }
        write_if_changed(&dir.join(format!("tests/plain_{fixture}.rs")), &plain);
        write_if_changed(&dir.join(format!("tests/library_{fixture}.rs")), &library);
        write_if_changed(&dir.join(format!("tests/loopback_{fixture}.rs")), &loopback);
        // The same, with the harness linked in but never run (an ignored `#[loopback_test]`):
        // a test binary also pays, at every start, for loading the code that diagnoses a failure.
        let linked = format!(
            "{floor}#[loopcheck::loopback_test]\n#[ignore]\nfn never_run(listener: TcpListener) {{\n    {body}\n}}\n"
        );
        write_if_changed(&dir.join(format!("tests/floor_{fixture}.rs")), &floor);
        write_if_changed(&dir.join(format!("tests/linked_{fixture}.rs")), &linked);
    }
}

/// Writes only what changed, so that a second run does not rebuild the test binaries.
fn write_if_changed(path: &Path, text: &str) {
    if std::fs::read_to_string(path).is_ok_and(|old| old == text) {
        return;
    }
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// Builds the test binaries; returns their paths by target name.
fn build(dir: &Path) -> Binaries {
    // Older versions of this bench generated `plain.rs` and `loopback.rs`.
    for stale in ["plain.rs", "loopback.rs"] {
        let _ = std::fs::remove_file(dir.join("tests").join(stale));
    }
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
