//! Wall time of a listener scan against `ss -ltnp` and `lsof -iTCP -sTCP:LISTEN -P -n`, at a
//! given number of loopback listeners and `TIME_WAIT` sockets.
//!
//! ```text
//! cargo bench -j1 --bench scan -- [--listeners N] [--time-wait N] [--runs N]
//! ```
//!
//! Everything it creates is on 127.0.0.1 and closed when it exits (`TIME_WAIT` entries expire
//! 60 s later). The tools are spawned processes, timed from spawn to exit with their output
//! read; the scan is timed both in-process and as a spawned process (this binary re-run with
//! `--once`), which pays process start-up like the tools do.

use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use loopcheck::scan::{self, Backend, ScanOptions, SocketState};

const MAX_LISTENERS: usize = 15_000;
const MAX_TIME_WAIT: usize = 25_000;
const MAX_RUNS: usize = 201;

fn listen_options(backend: Option<Backend>) -> ScanOptions {
    ScanOptions {
        tcp: true,
        listen_only: true,
        owners: true,
        backend,
        ..Default::default()
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--once") {
        let table = scan::scan_with(&listen_options(None)).expect("scan");
        println!("{}", table.sockets.len());
        return;
    }
    let value = |name: &str, default: usize| -> usize {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .map(|v| v.parse().unwrap_or_else(|_| panic!("{name} takes a number")))
            .unwrap_or(default)
    };
    let listeners = value("--listeners", 50).min(MAX_LISTENERS);
    let time_wait = value("--time-wait", 0).min(MAX_TIME_WAIT);
    let runs = value("--runs", 21).clamp(1, MAX_RUNS);

    let held: Vec<TcpListener> = (0..listeners)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind"))
        .collect();
    let made = make_time_wait(time_wait);
    let table = scan::scan_with(&ScanOptions {
        tcp: true,
        owners: false,
        ..Default::default()
    })
    .expect("scan");
    let tw_seen = table
        .sockets
        .iter()
        .filter(|s| s.state == SocketState::TimeWait)
        .count();
    let listening = scan::scan_with(&listen_options(None)).expect("scan");
    let mine = listening
        .sockets
        .iter()
        .filter(|s| s.pids == [std::process::id()])
        .count();
    assert!(
        mine >= held.len(),
        "the scan sees this process's listeners ({mine} of {})",
        held.len()
    );

    println!(
        "listeners held: {} (TCP listeners on the host: {}), TIME_WAIT made: {made}, TIME_WAIT on the host: {tw_seen}, runs: {runs}",
        held.len(),
        listening.sockets.len()
    );
    println!("| what | median ms | min ms | max ms | vs ss (median) |");
    println!("|---|---:|---:|---:|---:|");

    let ss = time(runs, || spawn("ss", &["-ltnp"]));
    let rows: Vec<(&str, Vec<Duration>)> = vec![
        ("`ss -ltnp` (spawned)", ss.clone()),
        (
            "scan_with(listen_only, tcp, owners), in-process",
            time(runs, || {
                scan::scan_with(&listen_options(None)).expect("scan");
            }),
        ),
        (
            "same scan, spawned (`--once`)",
            time(runs, || {
                let exe = std::env::current_exe().expect("own path");
                spawn(exe.to_str().expect("utf-8 path"), &["--once"]);
            }),
        ),
        (
            "same scan without owners, in-process",
            time(runs, || {
                scan::scan_with(&ScanOptions {
                    owners: false,
                    ..listen_options(None)
                })
                .expect("scan");
            }),
        ),
        (
            "same scan, forced `/proc/net` backend, in-process",
            time(runs, || {
                scan::scan_with(&listen_options(Some(Backend::ProcNet))).expect("scan");
            }),
        ),
        (
            "`lsof -iTCP -sTCP:LISTEN -P -n` (spawned)",
            time(runs.min(11), || {
                spawn("lsof", &["-iTCP", "-sTCP:LISTEN", "-P", "-n"]);
            }),
        ),
    ];
    let mut rows = rows;
    // The CLI, when `LOOPCHECK_CLI` names a built `cargo-loopcheck` (see benches/scan.sh):
    // outside a workspace it is scan plus leases; inside one it also runs `cargo metadata`.
    if let Some(cli) = std::env::var_os("LOOPCHECK_CLI") {
        let cli = cli.to_str().expect("utf-8 path").to_owned();
        let outside = std::env::temp_dir();
        rows.push((
            "`cargo loopcheck ports --format json`, outside a workspace (spawned)",
            time(runs, || {
                spawn_in(&outside, &cli, &["loopcheck", "ports", "--format", "json"])
            }),
        ));
        let inside = std::env::current_dir().expect("current directory");
        rows.push((
            "`cargo loopcheck ports --format json`, in this workspace (spawned)",
            time(runs, || {
                spawn_in(&inside, &cli, &["loopcheck", "ports", "--format", "json"])
            }),
        ));
    }
    let ss_median = median(&ss);
    for (name, samples) in &rows {
        let m = median(samples);
        println!(
            "| {name} | {:.2} | {:.2} | {:.2} | {:.2}x |",
            ms(m),
            ms(*samples.iter().min().expect("samples")),
            ms(*samples.iter().max().expect("samples")),
            m.as_secs_f64() / ss_median.as_secs_f64()
        );
    }
    drop(held);
}

/// Opens and closes `count` loopback connections, the server side closing first, so each
/// leaves one TIME_WAIT socket on a server port. Bounded to 120 s.
///
/// The connections are spread over several server ports: Linux gives `connect` only every
/// other ephemeral port, and a SYN that reuses a (client port, server port) pair still in
/// TIME_WAIT recycles that entry, so one server port keeps well under 14,000 of them.
fn make_time_wait(count: usize) -> usize {
    if count == 0 {
        return 0;
    }
    let servers: Vec<TcpListener> = (0..count.div_ceil(2_500))
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind"))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut made = 0;
    while made < count && Instant::now() < deadline {
        let server = &servers[made % servers.len()];
        let Ok(client) = TcpStream::connect(server.local_addr().expect("addr")) else {
            break;
        };
        let Ok((accepted, _)) = server.accept() else {
            break;
        };
        drop(accepted);
        drop(client);
        made += 1;
    }
    // Let the last FINs land.
    std::thread::sleep(Duration::from_millis(200));
    made
}

fn spawn(program: &str, args: &[&str]) {
    spawn_in(
        &std::env::current_dir().expect("current directory"),
        program,
        args,
    );
}

fn spawn_in(dir: &std::path::Path, program: &str, args: &[&str]) {
    let output = Command::new(program)
        .current_dir(dir)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(!output.stdout.is_empty(), "{program} printed nothing");
}

/// One warm-up call, then `runs` timed calls.
fn time(runs: usize, mut f: impl FnMut()) -> Vec<Duration> {
    f();
    (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect()
}

fn median(samples: &[Duration]) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    sorted[sorted.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
