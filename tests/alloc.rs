//! Allocation across real processes: distinct ports, no `AddrInUse`, leases freed by death.

mod support;

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::Duration;

use loopcheck::lease::{LeaseStatus, lease_of};
use loopcheck::policy::PortPolicy;
use support::{say, wait_for_parent};

const CHILD_TIMEOUT: Duration = Duration::from_secs(60);

/// The entry point of child processes; does nothing when run as a plain test.
#[test]
fn child_entry() {
    let Some(role) = support::role() else { return };
    match role.as_str() {
        "hold" => hold_and_bind(),
        "report" => report(),
        "serve-inherited" => serve_inherited(),
        "no-ipv6" => no_ipv6(),
        "out-of-files" => out_of_files(),
        #[cfg(target_os = "linux")]
        "reserve-while-forking" => reserve_while_forking(),
        "one-after-another" => {
            // What a suite of tests in one thread does: a listener each, closed at its end.
            let ports: Vec<String> = (0..100)
                .map(|_| {
                    let listener = loopcheck::tcp_listener().unwrap();
                    listener.local_addr().unwrap().port().to_string()
                })
                .collect();
            say(format!("ports {}", ports.join(" ")));
        }
        "keep-and-exit" => {
            let picked = loopcheck::pick_unused_port().unwrap();
            let listener = loopcheck::tcp_listener().unwrap();
            say(format!(
                "ports {picked} {}",
                listener.local_addr().unwrap().port()
            ));
            // Exits with both leases still kept: the listener is open, the pick is for life.
            std::process::exit(0);
        }
        other => panic!("unknown role {other}"),
    }
}

/// Leases ports the three ways, binds each reserved number after a delay of 0-5 ms as a
/// child server would, and holds everything until the parent says go.
fn hold_and_bind() {
    let count: usize = std::env::var("PORTS").unwrap().parse().unwrap();
    let reserved = loopcheck::reserve_ports(count).unwrap();
    let listeners: Vec<TcpListener> = (0..count).map(|_| loopcheck::tcp_listener().unwrap()).collect();
    let udp: Vec<UdpSocket> = (0..count).map(|_| loopcheck::udp_socket().unwrap()).collect();
    let mut failures = Vec::new();
    let mut bound = Vec::new();
    for (i, lease) in reserved.iter().enumerate() {
        let pause = (std::process::id() as u64 * 7919 + i as u64 * 104729) % 5_000;
        std::thread::sleep(Duration::from_micros(pause));
        match TcpListener::bind(("127.0.0.1", lease.port())) {
            Ok(listener) => bound.push(listener),
            Err(err) => failures.push(format!("{}:{err}", lease.port())),
        }
        if loopcheck::policy::ipv6_available()
            && let Err(err) = TcpListener::bind(("::1", lease.port()))
        {
            failures.push(format!("[::1]:{}:{err}", lease.port()));
        }
    }
    let mut ports: Vec<u16> = reserved.iter().map(|l| l.port()).collect();
    ports.extend(listeners.iter().map(|l| l.local_addr().unwrap().port()));
    ports.extend(udp.iter().map(|s| s.local_addr().unwrap().port()));
    say(format!(
        "ports {}",
        ports.iter().map(u16::to_string).collect::<Vec<_>>().join(" ")
    ));
    say(format!("failures {}", failures.len()));
    for failure in failures {
        say(format!("failure {failure}"));
    }
    wait_for_parent();
}

/// Prints what `reserve_port` and `tcp_listener` return under the child's environment.
fn report() {
    let lease = loopcheck::reserve_port();
    match &lease {
        Ok(lease) => say(format!("ok {}", lease.port())),
        Err(err) => say(format!("err {err}")),
    }
    let listener = loopcheck::tcp_listener();
    match &listener {
        Ok(listener) => say(format!("ok {}", listener.local_addr().unwrap())),
        Err(err) => say(format!("err {err}")),
    }
    wait_for_parent();
    drop((lease, listener));
}

/// A server that takes its listener from `LISTEN_FDS` with the `listenfd` crate.
fn serve_inherited() {
    let mut fds = listenfd::ListenFd::from_env();
    let listener = fds.take_tcp_listener(0).unwrap().expect("a listener at fd 3");
    say(format!("listening {}", listener.local_addr().unwrap()));
    let (mut stream, _) = listener.accept().unwrap();
    stream.write_all(b"hello from the child").unwrap();
}

/// Runs inside a fresh network namespace: brings loopback up without IPv6, then allocates.
fn no_ipv6() {
    let up = std::process::Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status();
    if !up.is_ok_and(|s| s.success()) {
        say("skip `ip link set lo up` failed");
        return;
    }
    if std::fs::write("/proc/sys/net/ipv6/conf/lo/disable_ipv6", "1").is_err() {
        say("skip cannot disable IPv6 on lo");
        return;
    }
    say(format!("ipv6 {}", loopcheck::policy::ipv6_available()));
    report();
}

/// Runs with a low limit of open files: allocates once, opens files until the limit refuses
/// one, then allocates again and prints what each allocation says.
fn out_of_files() {
    drop(loopcheck::reserve_port().unwrap());
    let mut files = Vec::new();
    let refused = loop {
        match std::fs::File::open("/dev/null") {
            Ok(file) if files.len() < 4096 => files.push(file),
            Ok(_) => break "the limit of open files was not reached".to_owned(),
            Err(err) => break err.to_string(),
        }
    };
    say(format!("refused {refused}"));
    for result in [
        loopcheck::reserve_port().map(drop),
        loopcheck::tcp_listener().map(drop),
    ] {
        match result {
            Ok(()) => say("ok"),
            Err(err) => {
                let source = std::error::Error::source(&err).map(ToString::to_string);
                say(format!("err {err} | {}", source.unwrap_or_default()));
            }
        }
    }
    drop(files);
}

/// A range of 200 allocatable ports away from the window where every other process of this
/// run allocates (from 20000 up), so that nothing else leases them while a test watches one
/// port's lease change hands.
fn quiet_range() -> String {
    const BUSY: std::ops::RangeInclusive<u16> = 20000..=24200;
    let policy = PortPolicy::current().unwrap();
    let range = policy
        .allocation
        .iter()
        .rev()
        .filter(|r| r.len() >= 200)
        .map(|r| (r.end - 199, r.end))
        .find(|(lo, hi)| !BUSY.contains(lo) && !BUSY.contains(hi))
        .expect("200 allocatable ports outside 20000-24200");
    format!("{}-{}", range.0, range.1)
}

fn ports_of(line: &str) -> Vec<u16> {
    line.strip_prefix("ports ")
        .unwrap()
        .split(' ')
        .map(|p| p.parse().unwrap())
        .collect()
}

#[test]
fn concurrent_processes_get_distinct_ports_and_bind_them() {
    const CHILDREN: usize = 12;
    const PORTS: usize = 15;
    let mut children: Vec<_> = (0..CHILDREN)
        .map(|_| support::spawn("hold", &[("PORTS", &PORTS.to_string())]))
        .collect();
    let mine = loopcheck::reserve_ports(PORTS).unwrap();
    let mut seen: HashSet<u16> = mine.iter().map(|l| l.port()).collect();
    let policy = PortPolicy::current().unwrap();
    for child in &mut children {
        let ports = ports_of(&child.line(CHILD_TIMEOUT));
        assert_eq!(ports.len(), 3 * PORTS);
        for port in ports {
            assert!(seen.insert(port), "port {port} was handed out twice");
            assert!(
                policy.is_allocatable(port) && !policy.is_ephemeral(port),
                "{port} is outside the policy"
            );
        }
        let failures = child.line(CHILD_TIMEOUT);
        let details: Vec<String> = (0..failures["failures ".len()..].parse::<usize>().unwrap())
            .map(|_| child.line(CHILD_TIMEOUT))
            .collect();
        assert_eq!(
            failures, "failures 0",
            "binding a reserved port failed: {details:?}"
        );
    }
    for child in children {
        assert!(child.wait(CHILD_TIMEOUT).success());
    }
}

#[cfg(unix)]
#[test]
fn a_holder_killed_with_sigkill_frees_its_port_at_once() {
    let quiet = quiet_range();
    for _ in 0..5 {
        let mut holder = support::spawn("report", &[("LOOPCHECK_PORT_RANGE", &quiet)]);
        let port: u16 = holder.line(CHILD_TIMEOUT)["ok ".len()..].parse().unwrap();
        let _listener = holder.line(CHILD_TIMEOUT);
        assert_eq!(lease_of(port).unwrap().unwrap().status, LeaseStatus::Held);

        holder.child.kill().unwrap();
        holder.child.wait().unwrap();
        let lease = lease_of(port).unwrap().unwrap();
        assert_eq!(
            lease.status,
            LeaseStatus::Stale,
            "the kill left the record, not the lock"
        );
        assert_eq!(lease.record.unwrap().pid, holder.pid());

        // A process restricted to exactly that port gets it straight away.
        let range = format!("{port}-{port}");
        let mut next = support::spawn("report", &[("LOOPCHECK_PORT_RANGE", &range)]);
        assert_eq!(next.line(CHILD_TIMEOUT), format!("ok {port}"));
        assert!(next.wait(CHILD_TIMEOUT).success());
    }
}

/// A process keeps the files of returned leases open and leases those ports again, but never
/// in its next 15 allocations: a slow client of one test does not reach the next test's
/// listener.
#[cfg(unix)]
#[test]
fn returned_ports_come_back_only_after_other_allocations() {
    let mut child = support::spawn("one-after-another", &[("LOOPCHECK_PORT_RANGE", &quiet_range())]);
    let ports = ports_of(&child.line(CHILD_TIMEOUT));
    assert!(child.wait(CHILD_TIMEOUT).success());
    assert_eq!(ports.len(), 100);
    for (i, port) in ports.iter().enumerate() {
        let soon = &ports[i + 1..ports.len().min(i + 16)];
        assert!(
            !soon.contains(port),
            "port {port} leased again within 15 allocations: {ports:?}"
        );
    }
    let mut distinct = ports.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert!(
        distinct.len() < ports.len(),
        "no returned port was leased again: {ports:?}"
    );
}

#[cfg(unix)]
#[test]
fn a_normal_exit_returns_kept_leases_without_leaving_them_stale() {
    let mut child = support::spawn("keep-and-exit", &[("LOOPCHECK_PORT_RANGE", &quiet_range())]);
    let ports = ports_of(&child.line(CHILD_TIMEOUT));
    assert!(child.wait(CHILD_TIMEOUT).success());
    for port in ports {
        assert_eq!(
            lease_of(port).unwrap().unwrap().status,
            LeaseStatus::Free,
            "port {port}"
        );
    }
}

#[test]
fn exhausting_the_range_names_it_and_the_holders() {
    let held = loopcheck::reserve_port().unwrap();
    let port = held.port();
    let range = format!("{port}-{port}");
    let mut child = support::spawn("report", &[("LOOPCHECK_PORT_RANGE", &range)]);
    let reply = child.line(CHILD_TIMEOUT);
    assert!(
        reply.starts_with(&format!("err no free port in {port}: 1 leased by live processes")),
        "{reply}"
    );
    assert!(reply.contains("LOOPCHECK_PORT_RANGE"), "{reply}");
}

#[test]
fn bad_range_values_are_reported_with_the_variable_and_form() {
    for value in ["garbage", "3000-2000", "80-90", "20000-70000", "40000-40010"] {
        let mut child = support::spawn("report", &[("LOOPCHECK_PORT_RANGE", value)]);
        let reply = child.line(CHILD_TIMEOUT);
        assert!(
            reply.starts_with("err ") && reply.contains("LOOPCHECK_PORT_RANGE"),
            "{value}: {reply}"
        );
        assert!(reply.contains(value), "{value}: {reply}");
    }
}

#[cfg(unix)]
#[test]
fn unsafe_registry_directories_are_refused_with_a_clear_error() {
    let root = tempfile::tempdir().unwrap();
    let target = root.path().join("target");
    std::fs::create_dir(&target).unwrap();
    let link = root.path().join("link");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let file = root.path().join("file");
    std::fs::write(&file, "").unwrap();
    for (dir, expected) in [(&link, "symbolic link"), (&file, "not a directory")] {
        let mut child = support::spawn("report", &[("LOOPCHECK_DIR", dir.to_str().unwrap())]);
        let reply = child.line(CHILD_TIMEOUT);
        assert!(
            reply.starts_with("err lease directory") && reply.contains(expected),
            "{reply}"
        );
    }
}

#[cfg(unix)]
#[test]
fn a_fresh_registry_directory_is_created_private() {
    use std::os::unix::fs::PermissionsExt;
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("a").join("registry");
    let mut child = support::spawn("report", &[("LOOPCHECK_DIR", dir.to_str().unwrap())]);
    assert!(child.line(CHILD_TIMEOUT).starts_with("ok "));
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700);
}

#[test]
fn allocated_ports_avoid_the_ephemeral_and_reserved_ranges() {
    let policy = PortPolicy::current().unwrap();
    let leases = loopcheck::reserve_ports(200).unwrap();
    for lease in &leases {
        assert!(
            !policy.is_ephemeral(lease.port()),
            "{} is ephemeral",
            lease.port()
        );
        assert!(!policy.reserved.iter().any(|r| r.contains(lease.port())));
        assert!(lease.port() >= 1024);
    }
}

#[test]
fn sockets_are_on_this_processes_loopback_address() {
    let ip = loopcheck::loopback_ip();
    assert!(ip.is_loopback());
    if cfg!(target_os = "linux") {
        assert_ne!(
            ip,
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            "Linux gives each process its own address"
        );
    }
    let listener = loopcheck::tcp_listener().unwrap();
    assert_eq!(listener.local_addr().unwrap().ip(), ip);
    let udp = loopcheck::udp_socket().unwrap();
    assert_eq!(udp.local_addr().unwrap().ip(), ip);
}

#[test]
fn a_lease_turns_into_sockets_and_stays_held_while_they_live() {
    let lease = loopcheck::reserve_port().unwrap();
    let (port, addr) = (lease.port(), lease.addr());
    assert_eq!(addr, SocketAddr::from(([127, 0, 0, 1], port)));
    let listener = lease.into_listener().unwrap();
    assert_eq!(listener.local_addr().unwrap(), addr);
    assert_eq!(lease_of(port).unwrap().unwrap().status, LeaseStatus::Held);

    let udp_lease = loopcheck::reserve_udp_port().unwrap();
    let udp_port = udp_lease.port();
    let socket = udp_lease.into_udp_socket().unwrap();
    assert_eq!(socket.local_addr().unwrap().port(), udp_port);
    assert_eq!(lease_of(udp_port).unwrap().unwrap().status, LeaseStatus::Held);

    let released = loopcheck::reserve_port().unwrap();
    let released_port = released.port();
    released.release();
    // Given back: free, unless another process of this run leased it in the meantime.
    let after = lease_of(released_port).unwrap().unwrap();
    let ours = after.record.as_ref().is_some_and(|r| r.pid == std::process::id());
    assert!(after.status == LeaseStatus::Free || !ours, "{after:?}");
}

/// A socket bound to `addr` the way the allocator's probe binds (no `SO_REUSEADDR`, not
/// listening), closed after `held`.
fn bound_for(addr: SocketAddr, ty: socket2::Type, held: Duration) -> std::thread::JoinHandle<()> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, ty, None).unwrap();
    socket.bind(&addr.into()).unwrap();
    std::thread::spawn(move || {
        std::thread::sleep(held);
        drop(socket);
    })
}

#[test]
fn a_leased_port_still_bound_for_a_moment_is_bound_once_it_is_free() {
    // As when a child that another thread forked still has the probe's socket until its
    // `exec`: the port is leased, and bound for a moment by a socket of this process.
    let lease = loopcheck::reserve_udp_port().unwrap();
    let closer = bound_for(lease.addr(), socket2::Type::DGRAM, Duration::from_millis(20));
    let addr = lease.addr();
    assert_eq!(lease.into_udp_socket().unwrap().local_addr().unwrap(), addr);
    closer.join().unwrap();

    let lease = loopcheck::reserve_port().unwrap();
    let closer = bound_for(lease.addr(), socket2::Type::STREAM, Duration::from_millis(20));
    let addr = lease.addr();
    assert_eq!(lease.into_listener().unwrap().local_addr().unwrap(), addr);
    closer.join().unwrap();

    // Held for longer than the wait, it is an error that names the address.
    let lease = loopcheck::reserve_udp_port().unwrap();
    let addr = lease.addr();
    let closer = bound_for(addr, socket2::Type::DGRAM, Duration::from_millis(500));
    let err = lease.into_udp_socket().unwrap_err();
    assert!(err.to_string().contains(&addr.to_string()), "{err}");
    assert!(
        matches!(&err, loopcheck::Error::Socket { source, .. } if source.kind() == std::io::ErrorKind::AddrInUse),
        "{err:?}"
    );
    closer.join().unwrap();
}

/// Reserves and binds ports while three other threads start processes all along, each child
/// holding a copy of every descriptor for 2 ms before its `exec`, as in a test binary whose
/// other tests start servers. A child process of the test, so that the copies cannot hold the
/// locks or sockets of the other tests in this binary.
#[cfg(target_os = "linux")]
fn reserve_while_forking() {
    use std::os::unix::process::CommandExt;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let stop = Arc::new(AtomicBool::new(false));
    for _ in 0..3 {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let mut command = std::process::Command::new("true");
                // SAFETY: the hook only sleeps, which is safe between fork and exec.
                unsafe {
                    command.pre_exec(|| {
                        std::thread::sleep(Duration::from_millis(2));
                        Ok(())
                    });
                }
                let _ = command.status();
            }
        });
    }
    let started = std::time::Instant::now();
    let mut failures = Vec::new();
    // Without the probes' own descriptor table, about one bind in 500 failed here.
    for _ in 0..5_000 {
        if started.elapsed() > Duration::from_secs(2) {
            break;
        }
        let udp = loopcheck::reserve_udp_port().unwrap();
        if let Err(err) = UdpSocket::bind(udp.addr()) {
            failures.push(format!("udp {}: {err}", udp.addr()));
        }
        let tcp = loopcheck::reserve_port().unwrap();
        if let Err(err) = TcpListener::bind(tcp.addr()) {
            failures.push(format!("tcp {}: {err}", tcp.addr()));
        }
    }
    stop.store(true, Ordering::Relaxed);
    say(format!("failures {} {}", failures.len(), failures.join(", ")));
}

#[cfg(target_os = "linux")]
#[test]
fn a_reserved_port_binds_while_other_threads_start_processes() {
    let mut child = support::spawn("reserve-while-forking", &[]);
    let reply = child.line(CHILD_TIMEOUT);
    assert!(reply.starts_with("failures 0"), "{reply}");
    assert!(child.wait(CHILD_TIMEOUT).success());
}

#[test]
fn pick_unused_port_keeps_its_lease() {
    let port = loopcheck::pick_unused_port().unwrap();
    TcpListener::bind(("127.0.0.1", port)).unwrap();
    let lease = lease_of(port).unwrap().unwrap();
    assert_eq!(lease.status, LeaseStatus::Held);
    assert_eq!(lease.record.unwrap().pid, std::process::id());
}

#[test]
fn the_lease_record_names_the_test() {
    let lease = loopcheck::reserve_port().unwrap();
    let record = lease_of(lease.port()).unwrap().unwrap().record.unwrap();
    // libtest names each test's thread after the test.
    assert_eq!(record.test.as_deref(), Some("the_lease_record_names_the_test"));
    assert_eq!(record.ip, Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
}

#[cfg(unix)]
#[test]
fn a_child_server_inherits_a_bound_listener() {
    use std::os::fd::AsFd;
    let listener = loopcheck::tcp_listener().unwrap();
    let addr = listener.local_addr().unwrap();
    let mut command = support::command("serve-inherited");
    loopcheck::activation::pass_sockets(&mut command, [listener.as_fd()]).unwrap();
    drop(listener);
    let mut child = support::start(command);
    assert_eq!(child.line(CHILD_TIMEOUT), format!("listening {addr}"));
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(CHILD_TIMEOUT)).unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    assert_eq!(reply, "hello from the child");
    assert!(child.wait(CHILD_TIMEOUT).success());
}

/// A host without IPv6, made for real: a network namespace whose loopback has IPv6 disabled.
/// Needs root, `unshare` and `ip`; skipped with the reason otherwise.
#[cfg(target_os = "linux")]
#[test]
fn a_host_without_ipv6_still_allocates() {
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n");
    let tools = [("unshare", "--version"), ("ip", "-V")]
        .iter()
        .all(|(tool, version)| {
            std::process::Command::new(tool)
                .arg(version)
                .output()
                .is_ok_and(|o| o.status.success())
        });
    if !(root.unwrap_or(false) && tools) {
        support::skip("needs root, `unshare` and `ip` (iproute2) to build a host without IPv6");
        return;
    }
    let mut command = std::process::Command::new("unshare");
    command
        .arg("--net")
        .arg("--")
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_entry",
            "--nocapture",
            "--test-threads=1",
            "--quiet",
        ])
        .env(support::ROLE_VAR, "no-ipv6")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    let mut child = support::start(command);
    let first = child.line(CHILD_TIMEOUT);
    if let Some(reason) = first.strip_prefix("skip ") {
        support::skip(reason);
        return;
    }
    assert_eq!(first, "ipv6 false");
    assert!(child.line(CHILD_TIMEOUT).starts_with("ok "));
    assert!(child.line(CHILD_TIMEOUT).starts_with("ok 127."));
    assert!(child.wait(CHILD_TIMEOUT).success());
}

/// A process out of file descriptors is told so, and how to raise the limit, rather than that
/// the range is exhausted: a child run under `ulimit -n 64` uses up its descriptors and
/// allocates.
#[cfg(unix)]
#[test]
fn running_out_of_file_descriptors_says_so_and_names_ulimit() {
    if std::process::Command::new("sh")
        .arg("-c")
        .arg("ulimit -n 64")
        .status()
        .is_err()
    {
        support::skip("needs `sh` to lower the limit of open files of a child");
        return;
    }
    let mut command = std::process::Command::new("sh");
    command
        .arg("-c")
        .arg("ulimit -n 64 && exec \"$0\" \"$@\"")
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_entry",
            "--nocapture",
            "--test-threads=1",
            "--quiet",
        ])
        .env(support::ROLE_VAR, "out-of-files")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    let mut child = support::start(command);
    let refused = child.line(CHILD_TIMEOUT);
    assert!(refused.contains("Too many open files"), "{refused}");
    for _ in 0..2 {
        let line = child.line(CHILD_TIMEOUT);
        assert!(
            line.starts_with("err cannot open a lease file: too many open files;")
                && line.contains("`ulimit -n`"),
            "{line}"
        );
        assert!(line.ends_with("| Too many open files (os error 24)"), "{line}");
    }
    assert!(child.wait(CHILD_TIMEOUT).success());
}
