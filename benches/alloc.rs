//! Allocation benchmarks: collisions under concurrency, and latency.
//!
//! `cargo bench --bench alloc` runs everything and prints a Markdown report; `-- collisions`
//! or `-- latency` runs one part. Worker processes are this binary run again with `--worker`.
//! `-- cold-write` (Linux, not part of the default run) times one lease record's write to a
//! file that has left the page cache, as 512 bytes and as the whole 4,096-byte block, in the
//! target directory's file system.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PROCESSES: usize = 32;
const ALLOCATIONS: usize = 3000;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    match args.first().map(String::as_str) {
        Some("--worker") => worker(&args[1..]),
        Some("--worker-first") => {
            let start = Instant::now();
            match args[1].as_str() {
                "bind" => drop(TcpListener::bind("127.0.0.1:0").expect("bind")),
                "floor" => floor(&args[2]),
                "reserve" => drop(loopcheck::reserve_port().expect("port")),
                _ => drop(loopcheck::tcp_listener().expect("listener")),
            }
            println!("{}", start.elapsed().as_secs_f64() * 1e6);
        }
        Some("collisions") => collisions(),
        Some("latency") => latency(),
        Some("first-call") => first_call(),
        Some("crash") => crash(),
        Some("cold-write") => cold_write(),
        Some("--worker-hold") => {
            // Leases a port, says which, and waits to be killed.
            let lease = loopcheck::reserve_port().expect("port");
            println!("{}", lease.port());
            std::thread::sleep(Duration::from_secs(60));
        }
        None => {
            latency();
            first_call();
            crash();
            collisions();
        }
        Some(other) => {
            eprintln!(
                "unknown part `{other}`: expected collisions, latency, first-call, crash or cold-write"
            );
            std::process::exit(2);
        }
    }
}

/// A small deterministic generator, so that runs are comparable without a rand dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn pause(&mut self) -> Duration {
        Duration::from_micros(self.next() % 5_000)
    }
}

#[derive(Clone, Copy)]
enum Method {
    Loopcheck,
    Portpicker,
    BindZeroRebind,
    KeepSocket,
}

const METHODS: [Method; 4] = [
    Method::Loopcheck,
    Method::Portpicker,
    Method::BindZeroRebind,
    Method::KeepSocket,
];

impl Method {
    fn name(self) -> &'static str {
        match self {
            Method::Loopcheck => "loopcheck::reserve_port",
            Method::Portpicker => "portpicker::pick_unused_port",
            Method::BindZeroRebind => "bind(:0), drop, rebind",
            Method::KeepSocket => "loopcheck::tcp_listener (socket kept)",
        }
    }

    fn key(self) -> &'static str {
        match self {
            Method::Loopcheck => "loopcheck",
            Method::Portpicker => "portpicker",
            Method::BindZeroRebind => "bind0",
            Method::KeepSocket => "keep",
        }
    }

    fn from_key(key: &str) -> Method {
        METHODS
            .into_iter()
            .find(|m| m.key() == key)
            .expect("known method")
    }
}

/// One worker: `count` allocations, each followed by 0-5 ms of work before the bind, then
/// the socket is held 0-5 ms as a test would. Prints `collisions N errors N`.
fn worker(args: &[String]) {
    let method = Method::from_key(&args[0]);
    let count: usize = args[1].parse().expect("count");
    let mut rng = Rng(std::process::id() as u64 * 2_654_435_761 + 1);
    let (mut collisions, mut errors) = (0usize, 0usize);
    // Everyone starts together, as nextest starts a batch of test processes.
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    for _ in 0..count {
        let result = match method {
            Method::Loopcheck => match loopcheck::reserve_port() {
                Ok(lease) => {
                    std::thread::sleep(rng.pause());
                    TcpListener::bind(("127.0.0.1", lease.port())).map(|l| (l, Some(lease)))
                }
                Err(_) => {
                    errors += 1;
                    continue;
                }
            },
            // loopcheck:allow(LC014): the bench measures portpicker against loopcheck on purpose
            Method::Portpicker => match portpicker::pick_unused_port() {
                Some(port) => {
                    std::thread::sleep(rng.pause());
                    TcpListener::bind(("127.0.0.1", port)).map(|l| (l, None))
                }
                None => {
                    errors += 1;
                    continue;
                }
            },
            Method::BindZeroRebind => {
                let port = TcpListener::bind("127.0.0.1:0")
                    .and_then(|l| l.local_addr())
                    .map(|a| a.port());
                match port {
                    Ok(port) => {
                        std::thread::sleep(rng.pause());
                        TcpListener::bind(("127.0.0.1", port)).map(|l| (l, None))
                    }
                    Err(_) => {
                        errors += 1;
                        continue;
                    }
                }
            }
            Method::KeepSocket => {
                std::thread::sleep(rng.pause());
                loopcheck::tcp_listener()
                    .map(|l| (l, None))
                    .map_err(std::io::Error::other)
            }
        };
        match result {
            Ok(held) => {
                std::thread::sleep(rng.pause());
                drop(held);
            }
            Err(err) if err.kind() == std::io::ErrorKind::AddrInUse => collisions += 1,
            Err(_) => errors += 1,
        }
    }
    println!("collisions {collisions} errors {errors}");
}

fn spawn_self(args: &[&str]) -> Child {
    Command::new(std::env::current_exe().expect("bench binary"))
        .arg("--worker")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn worker")
}

/// Outgoing loopback connections as fast as possible, from several threads, until `stop`:
/// every one takes an ephemeral source port, and leaves it in TIME_WAIT.
struct Storm {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<u64>>,
}

impl Storm {
    fn start() -> Storm {
        let listener = TcpListener::bind("127.0.0.1:0").expect("storm listener");
        let addr = listener.local_addr().expect("storm address");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut threads = Vec::new();
        let accept_stop = stop.clone();
        listener.set_nonblocking(true).expect("non-blocking");
        threads.push(std::thread::spawn(move || {
            let mut accepted = 0;
            while !accept_stop.load(std::sync::atomic::Ordering::Relaxed) {
                match listener.accept() {
                    Ok(_) => accepted += 1,
                    Err(_) => std::thread::sleep(Duration::from_micros(200)),
                }
            }
            accepted
        }));
        for _ in 0..2 {
            let stop = stop.clone();
            threads.push(std::thread::spawn(move || connect_until(addr, &stop)));
        }
        Storm { stop, threads }
    }

    fn stop(self) -> u64 {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut counts = self.threads.into_iter().map(|t| t.join().unwrap_or(0));
        let _accepted = counts.next();
        counts.sum()
    }
}

fn connect_until(addr: SocketAddr, stop: &std::sync::atomic::AtomicBool) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut connections = 0;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
            connections += 1;
        } else {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    connections
}

fn run_workers(method: Method) -> (usize, usize, Duration) {
    let count = ALLOCATIONS.to_string();
    let mut workers: Vec<Child> = (0..PROCESSES)
        .map(|_| spawn_self(&[method.key(), &count]))
        .collect();
    let started = Instant::now();
    for worker in &mut workers {
        drop(worker.stdin.take());
    }
    let (mut collisions, mut errors) = (0, 0);
    for worker in workers {
        let output = worker.wait_with_output().expect("worker output");
        let text = String::from_utf8_lossy(&output.stdout);
        let mut words = text.split_whitespace();
        let mut field = |name: &str| {
            assert_eq!(words.next(), Some(name), "worker printed {text:?}");
            words
                .next()
                .and_then(|n| n.parse::<usize>().ok())
                .expect("a count")
        };
        collisions += field("collisions");
        errors += field("errors");
    }
    (collisions, errors, started.elapsed())
}

fn collisions() {
    println!(
        "\n### Collisions: {PROCESSES} processes x {ALLOCATIONS} allocations, 0-5 ms between allocation and bind\n"
    );
    println!("| method | storm | AddrInUse | per 10,000 | other errors | wall |");
    println!("|---|---|---:|---:|---:|---:|");
    for storm in [false, true] {
        for method in METHODS {
            let running = storm.then(Storm::start);
            let (collisions, errors, wall) = run_workers(method);
            let connections = running.map(Storm::stop);
            let total = (PROCESSES * ALLOCATIONS) as f64;
            let storm = connections.map_or("no".to_owned(), |c| format!("{c} connections"));
            println!(
                "| {} | {storm} | {collisions} | {:.1} | {errors} | {:.1} s |",
                method.name(),
                collisions as f64 * 10_000.0 / total,
                wall.as_secs_f64()
            );
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn time_each(iterations: usize, mut f: impl FnMut()) -> Vec<Duration> {
    let mut samples: Vec<Duration> = (0..iterations)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    samples.sort();
    samples
}

fn latency() {
    const ITERATIONS: usize = 20_000;
    const ROUNDS: usize = 5;
    // Warm up the policy, the registry and the lease files of the window.
    for _ in 0..ITERATIONS {
        drop(loopcheck::tcp_listener().expect("listener"));
    }
    let mut results: Vec<(&str, Vec<Duration>)> = vec![
        ("bind(127.0.0.1:0)", Vec::new()),
        ("loopcheck::tcp_listener", Vec::new()),
        ("loopcheck::reserve_port", Vec::new()),
        ("portpicker::pick_unused_port", Vec::new()),
    ];
    // Rounds interleave the methods so that drift of the machine affects them alike.
    for _ in 0..ROUNDS {
        let n = ITERATIONS / ROUNDS;
        results[0].1.extend(time_each(n, || {
            drop(TcpListener::bind("127.0.0.1:0").expect("bind"))
        }));
        results[1].1.extend(time_each(n, || {
            drop(loopcheck::tcp_listener().expect("listener"))
        }));
        results[2]
            .1
            .extend(time_each(n, || drop(loopcheck::reserve_port().expect("port"))));
        results[3].1.extend(time_each(n / 10, || {
            // loopcheck:allow(LC014): the bench measures portpicker against loopcheck on purpose
            std::hint::black_box(portpicker::pick_unused_port());
        }));
    }
    let base = {
        let samples = &mut results[0].1;
        samples.sort();
        percentile(samples, 0.5)
    };
    println!("\n### Latency, warm ({ITERATIONS} calls each, {ROUNDS} interleaved rounds)\n");
    println!("| call | median | p99 | median vs bind |");
    println!("|---|---:|---:|---:|");
    for (name, samples) in &mut results {
        samples.sort();
        let median = percentile(samples, 0.5);
        println!(
            "| {name} | {:.1} us | {:.1} us | {:.2}x |",
            median.as_secs_f64() * 1e6,
            percentile(samples, 0.99).as_secs_f64() * 1e6,
            median.as_secs_f64() / base.as_secs_f64()
        );
    }
}

/// A holder killed with SIGKILL: is its port leasable again at once? Each cycle starts a
/// holder, kills it as soon as it has its lease, and asks for exactly that port in the next
/// instant (a process restricted to it with `LOOPCHECK_PORT_RANGE`).
fn crash() {
    const CYCLES: usize = 100;
    let exe = std::env::current_exe().expect("bench binary");
    let mut leased_again = 0;
    let mut latencies = Vec::new();
    for _ in 0..CYCLES {
        let mut holder = Command::new(&exe)
            .arg("--worker-hold")
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn holder");
        let mut line = String::new();
        let mut stdout = std::io::BufReader::new(holder.stdout.take().expect("stdout"));
        std::io::BufRead::read_line(&mut stdout, &mut line).expect("holder's port");
        let port: u16 = line.trim().parse().expect("a port");
        holder.kill().expect("SIGKILL the holder");
        holder.wait().expect("reap the holder");
        let killed = Instant::now();
        let next = Command::new(&exe)
            .args(["--worker-first", "reserve"])
            .env("LOOPCHECK_PORT_RANGE", format!("{port}-{port}"))
            .output()
            .expect("run the next holder");
        if next.status.success() {
            leased_again += 1;
            latencies.push(killed.elapsed());
        }
    }
    latencies.sort();
    println!("\n### Crash safety: a lease holder killed with SIGKILL ({CYCLES} cycles)\n");
    println!(
        "| port leasable again by a fresh process | median time from the kill to the new lease (incl. process start) |"
    );
    println!("|---:|---:|");
    let median = latencies
        .get(latencies.len() / 2)
        .map_or(0.0, |d| d.as_secs_f64() * 1e3);
    println!("| {leased_again} of {CYCLES} | {median:.1} ms |");
}

/// The system calls a first `tcp_listener` cannot do without, made by hand: read the two
/// port-policy files, check the registry directory, look at the services file and read the
/// list kept from it, open and lock a lease file (`path`, which exists), bind and listen, write
/// the record, and `fstat` the socket.
fn floor(path: &str) {
    use std::io::Read;
    use std::os::fd::AsRawFd;
    let mut buf = [0u8; 4096];
    for file in [
        "/proc/sys/net/ipv4/ip_local_port_range",
        "/proc/sys/net/ipv4/ip_local_reserved_ports",
    ] {
        let _ = std::fs::File::open(file).and_then(|mut f| f.read(&mut buf));
    }
    let registry = std::path::Path::new(path).parent().expect("registry");
    std::hint::black_box(std::fs::symlink_metadata(registry).expect("registry"));
    // The services file's state, then the ports kept from it (whatever is there).
    std::hint::black_box(std::fs::metadata("/etc/services").ok());
    let _ = std::fs::File::open(registry.join("services-ports")).and_then(|mut f| f.read(&mut buf));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .expect("scratch lease file");
    file.try_lock().expect("lock");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    std::os::unix::fs::FileExt::write_all_at(&file, &[b' '; 4096], 0).expect("record");
    let mut stat = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `stat` is valid for writes.
    unsafe { libc::fstat(listener.as_raw_fd(), stat.as_mut_ptr()) };
    drop(listener);
}

/// The first call in a fresh process: reads the policy, opens the registry, leases, binds.
fn first_call() {
    const PROCESSES: usize = 50;
    let measure_one = |what: &str, scratch: &str| {
        let output = Command::new(std::env::current_exe().expect("bench binary"))
            .args(["--worker-first", what, scratch])
            .output()
            .expect("run worker");
        let micros: f64 = String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse()
            .expect("micros");
        Duration::from_secs_f64(micros / 1e6)
    };
    // An existing file in the registry's file system stands in for a lease file.
    let scratch = loopcheck::lease::checked_registry_dir()
        .expect("registry")
        .join(format!("bench-floor-{}", std::process::id()));
    std::fs::write(&scratch, [b' '; 4096]).expect("scratch lease file");
    let scratch_arg = scratch.to_string_lossy().into_owned();
    let mut samples = [Vec::new(), Vec::new(), Vec::new()];
    // Interleaved, so that drift of the machine affects the three alike.
    for _ in 0..PROCESSES {
        for (i, what) in ["bind", "floor", "loopcheck"].into_iter().enumerate() {
            samples[i].push(measure_one(what, &scratch_arg));
        }
    }
    let _ = std::fs::remove_file(&scratch);
    for s in &mut samples {
        s.sort();
    }
    let [bind, floor, loopcheck] = samples;
    println!("\n### First call in a fresh process ({PROCESSES} processes each)\n");
    let base = percentile(&bind, 0.5);
    println!("| call | median | p90 | median vs bind |");
    println!("|---|---:|---:|---:|");
    for (name, samples) in [
        ("bind(127.0.0.1:0)", &bind),
        ("floor: the same system calls, without loopcheck", &floor),
        ("loopcheck::tcp_listener", &loopcheck),
    ] {
        let median = percentile(samples, 0.5);
        println!(
            "| {name} | {:.1} us | {:.1} us | {:.2}x |",
            median.as_secs_f64() * 1e6,
            percentile(samples, 0.9).as_secs_f64() * 1e6,
            median.as_secs_f64() / base.as_secs_f64()
        );
    }
}

/// One write at offset 0 of a file evicted from the page cache just before (as a lease file of
/// a registry in use is after a build), of part of the block and of all of it: a partial write
/// reads the block from disk first. The files are in the target directory, on disk: a registry
/// on a tmpfs (`$XDG_RUNTIME_DIR`) has no disk to wait for.
#[cfg(target_os = "linux")]
fn cold_write() {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::FileExt;
    const FILES: usize = 200;
    const SIZES: [usize; 2] = [512, 4096];
    let dir =
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("cold-write-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch directory");
    let path = |i: usize| dir.join(i.to_string());
    for i in 0..2 * FILES {
        let file = std::fs::File::create(path(i)).expect("scratch file");
        file.write_all_at(&[b' '; 512], 0).expect("write");
        // On disk and clean, so that the page cache may drop it.
        file.sync_all().expect("sync");
    }
    let records = SIZES.map(|size| vec![b' '; size]);
    let mut taken = [Vec::new(), Vec::new()];
    for i in 0..FILES {
        // Alternating, so that drift of the machine affects both alike.
        let order = if i % 2 == 0 { [0, 1] } else { [1, 0] };
        for which in order {
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(path(2 * i + which))
                .expect("scratch file");
            // SAFETY: advice about a descriptor this function owns.
            let advised = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
            assert_eq!(advised, 0, "posix_fadvise(DONTNEED) failed");
            let start = Instant::now();
            file.write_all_at(&records[which], 0).expect("write");
            taken[which].push(start.elapsed());
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "### A record's write to a file out of the page cache ({FILES} files each, in {})\n",
        env!("CARGO_TARGET_TMPDIR")
    );
    println!("| write at offset 0 | median | p90 |");
    println!("|---|---:|---:|");
    for (which, label) in ["512 bytes (part of the block)", "4,096 bytes (the whole block)"]
        .into_iter()
        .enumerate()
    {
        let samples = &mut taken[which];
        samples.sort();
        let at = |q: f64| percentile(samples, q).as_secs_f64() * 1e6;
        println!("| {label} | {:.1} us | {:.1} us |", at(0.5), at(0.9));
    }
}

#[cfg(not(target_os = "linux"))]
fn cold_write() {
    eprintln!("cold-write needs posix_fadvise to drop a file from the page cache: Linux only");
}
