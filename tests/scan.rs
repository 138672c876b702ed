//! Real sockets on loopback, seen through every backend that runs on this host.
//!
//! Every socket binds port 0, so the tests run in parallel with each other and with anything
//! else on the host. The processes started are this test binary itself and `sleep`s, each
//! killed by pid.
#![cfg(target_os = "linux")]

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use loopcheck::scan::{
    self, Backend, Protocol, ScanError, ScanOptions, SocketEntry, SocketState, SocketTable,
};

const CHILD_ENV: &str = "LOOPCHECK_SCAN_TEST_CHILD";
const CHILD_MARKER: &str = "LOOPCHECK_SCAN_TEST_PORT=";

/// Scans `ports` with owners through `backend`; `None` when that backend cannot run here
/// (the reason is printed).
fn scan_ports(backend: Backend, ports: &[u16]) -> Option<SocketTable> {
    let options = ScanOptions {
        ports: Some(ports.to_vec()),
        backend: Some(backend),
        ..ScanOptions::all()
    };
    match scan::scan_with(&options) {
        Ok(table) => {
            assert_eq!(table.backend, backend);
            Some(table)
        }
        Err(ScanError::ProgramNotFound { program }) => {
            support::skip(&format!("{backend}: `{program}` is not installed"));
            None
        }
        Err(ScanError::SockDiag(err))
            if matches!(
                err.raw_os_error(),
                Some(libc::EPERM | libc::EACCES | libc::EPROTONOSUPPORT | libc::EAFNOSUPPORT)
            ) =>
        {
            support::skip(&format!("{backend}: netlink is refused in this sandbox: {err}"));
            None
        }
        Err(err) => panic!("{backend} scan failed: {err} ({err:?})"),
    }
}

/// Backends that read the kernel directly, and always run on Linux.
const KERNEL_BACKENDS: [Backend; 2] = [Backend::SockDiag, Backend::ProcNet];
const ALL_BACKENDS: [Backend; 3] = [Backend::SockDiag, Backend::ProcNet, Backend::Lsof];

/// Polls `probe` every 10 ms until it returns `Some`, for at most `limit`.
fn eventually<T>(limit: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    for _ in 0..10_000 {
        if let Some(found) = probe() {
            return Some(found);
        }
        if Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

/// This test's own sockets in `table`: held by this process, bound to one of `locals`. Other
/// processes, other tests of this binary (on `[::1]` with the same number) and `TIME_WAIT`
/// leftovers of earlier runs may share the port numbers.
fn mine<'t>(table: &'t SocketTable, locals: &[SocketAddr]) -> Vec<&'t SocketEntry> {
    table
        .sockets
        .iter()
        .filter(|s| s.pids == [std::process::id()] && locals.contains(&s.local))
        .collect()
}

fn find(
    table: &SocketTable,
    protocol: Protocol,
    local: SocketAddr,
    remote: Option<SocketAddr>,
) -> &SocketEntry {
    table
        .sockets
        .iter()
        .find(|s| s.protocol == protocol && s.local == local && s.remote == remote)
        .unwrap_or_else(|| panic!("{protocol} {local} -> {remote:?} not in {table:#?}"))
}

#[test]
fn listener_has_state_address_and_owner() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let local = listener.local_addr().unwrap();
    for backend in ALL_BACKENDS {
        let Some(table) = scan_ports(backend, &[local.port()]) else {
            continue;
        };
        let entry = find(&table, Protocol::Tcp, local, None);
        assert_eq!(entry.state, SocketState::Listen, "{backend}");
        assert!(entry.is_listener());
        assert_eq!(entry.pids, [std::process::id()], "{backend}");
        assert_eq!(
            table
                .listeners_on(local.port())
                .filter(|s| s.local == local)
                .count(),
            1,
            "{backend}"
        );
        let owner = table
            .owners(entry)
            .next()
            .unwrap_or_else(|| panic!("{backend}: owner details"));
        assert_eq!(owner.pid, std::process::id());
        assert!(!owner.name.is_empty(), "{backend}");
        if backend != Backend::Lsof {
            assert!(entry.inode.is_some(), "{backend}");
            assert_eq!(entry.uid, owner.uid, "{backend}");
            assert!(owner.command().contains("scan"), "{backend}: {}", owner.command());
            assert!(owner.exe.is_some() && owner.start_time.is_some(), "{backend}");
        }
        if backend == Backend::SockDiag {
            assert!(
                entry.send_queue > 0,
                "a listener's send queue is its maximum backlog"
            );
        }
    }
}

#[test]
fn default_scan_uses_netlink_and_serializes() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let local = listener.local_addr().unwrap();
    let table = scan::scan().expect("scan");
    if table.backend != Backend::SockDiag {
        eprintln!("note: fell back to {}: {:?}", table.backend, table.limitations);
    }
    let entry = find(&table, Protocol::Tcp, local, None);
    assert_eq!(entry.pids, [std::process::id()]);

    let json = serde_json::to_value(&table).unwrap();
    let socket = json["sockets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["local"] == local.to_string())
        .unwrap();
    assert_eq!(socket["protocol"], "tcp");
    assert_eq!(socket["state"], "listen");
    assert_eq!(socket["remote"], serde_json::Value::Null);
    assert_eq!(
        json["processes"][std::process::id().to_string()]["pid"],
        std::process::id()
    );
    assert!(json["backend"].is_string());
}

#[test]
fn established_pair_then_time_wait() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let server_addr = listener.local_addr().unwrap();
    let mut client = TcpStream::connect(server_addr).unwrap();
    let (server, _) = listener.accept().unwrap();
    let client_addr = client.local_addr().unwrap();
    let ports = [server_addr.port(), client_addr.port()];

    for backend in KERNEL_BACKENDS {
        let Some(table) = scan_ports(backend, &ports) else {
            continue;
        };
        let server_side = find(&table, Protocol::Tcp, server_addr, Some(client_addr));
        let client_side = find(&table, Protocol::Tcp, client_addr, Some(server_addr));
        for side in [server_side, client_side] {
            assert_eq!(side.state, SocketState::Established, "{backend}");
            assert_eq!(side.pids, [std::process::id()], "{backend}");
            assert!(side.inode.is_some(), "{backend}");
            assert!(!side.is_listener());
        }
        let ours = mine(&table, &[server_addr, client_addr]);
        assert_eq!(
            ours.len(),
            3,
            "{backend}: listener, accepted end, client end: {ours:#?}"
        );
        assert_eq!(ours.iter().filter(|s| s.is_listener()).count(), 1, "{backend}");

        let listening = ScanOptions {
            backend: Some(backend),
            ports: Some(ports.to_vec()),
            ..ScanOptions::listeners()
        };
        let listeners = scan::scan_with(&listening).unwrap();
        assert!(
            listeners.sockets.iter().all(SocketEntry::is_listener),
            "{backend}"
        );
        let ours = mine(&listeners, &[server_addr, client_addr]);
        assert_eq!(ours.len(), 1, "{backend}: {ours:#?}");
        assert_eq!(ours[0].local, server_addr);
    }

    // The server closes first, so its end of the connection goes through TIME_WAIT.
    drop(server);
    client.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    assert_eq!(client.read(&mut [0u8; 1]).unwrap(), 0, "the server's FIN arrives");
    drop(client);

    for backend in KERNEL_BACKENDS {
        let found = eventually(Duration::from_secs(5), || {
            let table = scan_ports(backend, &[server_addr.port()])?;
            table
                .sockets
                .into_iter()
                .find(|s| s.state == SocketState::TimeWait && s.remote == Some(client_addr))
        });
        let Some(time_wait) = found else {
            if scan_ports(backend, &[server_addr.port()]).is_some() {
                panic!("{backend}: no TIME_WAIT for {server_addr} -> {client_addr}");
            }
            continue;
        };
        assert_eq!(time_wait.local, server_addr, "{backend}");
        assert_eq!(time_wait.inode, None, "{backend}: TIME_WAIT has inode 0");
        assert_eq!(time_wait.uid, None, "{backend}");
        assert!(time_wait.pids.is_empty(), "{backend}: TIME_WAIT has no owner");
    }
}

#[test]
fn ipv6_loopback_listener() {
    let listener = match TcpListener::bind("[::1]:0") {
        Ok(listener) => listener,
        Err(err) => {
            support::skip(&format!("no IPv6 loopback here: {err}"));
            return;
        }
    };
    let local = listener.local_addr().unwrap();
    for backend in ALL_BACKENDS {
        let Some(table) = scan_ports(backend, &[local.port()]) else {
            continue;
        };
        let entry = find(&table, Protocol::Tcp, local, None);
        assert_eq!(
            entry.local.to_string(),
            format!("[::1]:{}", local.port()),
            "{backend}"
        );
        assert_eq!(entry.state, SocketState::Listen, "{backend}");
        assert_eq!(entry.pids, [std::process::id()], "{backend}");
    }
}

#[test]
fn udp_unconnected_and_connected() {
    let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    sender.connect(receiver.local_addr().unwrap()).unwrap();
    let (receiver_addr, sender_addr) = (receiver.local_addr().unwrap(), sender.local_addr().unwrap());
    let ports = [receiver_addr.port(), sender_addr.port()];

    for backend in ALL_BACKENDS {
        let Some(table) = scan_ports(backend, &ports) else {
            continue;
        };
        let unconnected = find(&table, Protocol::Udp, receiver_addr, None);
        assert_eq!(unconnected.state, SocketState::Close, "{backend}");
        assert!(unconnected.is_listener(), "{backend}");
        assert_eq!(unconnected.pids, [std::process::id()], "{backend}");
        let connected = find(&table, Protocol::Udp, sender_addr, Some(receiver_addr));
        assert_eq!(connected.state, SocketState::Established, "{backend}");
        assert!(!connected.is_listener(), "{backend}");

        let udp_listeners = ScanOptions {
            tcp: false,
            backend: Some(backend),
            ports: Some(ports.to_vec()),
            ..ScanOptions::listeners()
        };
        let table = scan::scan_with(&udp_listeners).unwrap();
        assert!(
            table
                .sockets
                .iter()
                .all(|s| s.protocol == Protocol::Udp && s.is_listener()),
            "{backend}"
        );
        let ours = mine(&table, &[receiver_addr, sender_addr]);
        assert_eq!(ours.len(), 1, "{backend}: {ours:#?}");
        assert_eq!(ours[0].local, receiver_addr);
    }
}

#[test]
fn kernel_backends_agree() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (_server, _) = listener.accept().unwrap();
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let locals = [
        listener.local_addr().unwrap(),
        client.local_addr().unwrap(),
        udp.local_addr().unwrap(),
    ];
    let ports = locals.map(|addr| addr.port());

    let (Some(netlink), Some(procfs)) = (
        scan_ports(Backend::SockDiag, &ports),
        scan_ports(Backend::ProcNet, &ports),
    ) else {
        return;
    };
    let key = |s: &SocketEntry| {
        (
            s.protocol,
            s.local,
            s.remote,
            s.state,
            s.inode,
            s.uid,
            s.pids.clone(),
        )
    };
    let netlink: Vec<_> = mine(&netlink, &locals).into_iter().map(key).collect();
    let procfs: Vec<_> = mine(&procfs, &locals).into_iter().map(key).collect();
    assert_eq!(netlink, procfs);
    assert_eq!(netlink.len(), 4, "{netlink:#?}");
}

/// Not a test on its own: the child process of [`child_listener_is_attributed_to_the_child`],
/// which re-runs this binary with [`CHILD_ENV`] set. It binds, prints the port, and holds the
/// listener until its standard input closes (or 60 s pass).
#[test]
fn child_listener_helper() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    println!("{CHILD_MARKER}{}", listener.local_addr().unwrap().port());
    std::io::stdout().flush().unwrap();
    std::thread::spawn(|| {
        std::thread::sleep(Duration::from_secs(60));
        std::process::exit(0);
    });
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
}

/// Kills the child (by its pid) however the test ends.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn child_listener_is_attributed_to_the_child() {
    let exe = std::env::current_exe().unwrap();
    let child = Command::new(&exe)
        .args([
            "child_listener_helper",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, "1")
        .env("LOOPCHECK_TEST", "scan::child_listener")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut guard = ChildGuard(child);
    let child_pid = guard.0.id();

    let stdout = guard.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().take(100).map_while(Result::ok) {
            // libtest may print `test NAME ... ` before the marker on the same line.
            if let Some((_, port)) = line.split_once(CHILD_MARKER) {
                let _ = tx.send(port.trim().parse::<u16>().ok());
                return;
            }
        }
    });
    let port = rx
        .recv_timeout(Duration::from_secs(30))
        .ok()
        .flatten()
        .expect("the child reports its port");
    let local: SocketAddr = ([127, 0, 0, 1], port).into();

    for backend in ALL_BACKENDS {
        let Some(table) = scan_ports(backend, &[port]) else {
            continue;
        };
        let entry = find(&table, Protocol::Tcp, local, None);
        assert_eq!(entry.pids, [child_pid], "{backend}");
        let owner = table
            .owners(entry)
            .next()
            .unwrap_or_else(|| panic!("{backend}: child details"));
        assert_eq!(owner.ppid, Some(std::process::id()), "{backend}");
        if backend == Backend::Lsof {
            assert!(!owner.name.is_empty());
            continue;
        }
        assert!(
            owner.cmdline.iter().any(|arg| arg == "child_listener_helper"),
            "{backend}: {:?}",
            owner.cmdline
        );
        assert!(
            owner.command().contains("child_listener_helper --exact"),
            "{backend}"
        );
        assert_eq!(
            owner.exe.as_deref().and_then(|p| p.file_name()),
            exe.file_name(),
            "{backend}"
        );
        assert_eq!(
            owner.loopcheck_test.as_deref(),
            Some("scan::child_listener"),
            "{backend}"
        );
        assert!(
            matches!(owner.state, Some('S' | 'R')),
            "{backend}: {:?}",
            owner.state
        );
        // The scheduler state may change between two reads (`S` while waiting, `R` briefly).
        let again = scan::ProcessInfo {
            state: owner.state,
            ..scan::ProcessInfo::read(child_pid).unwrap()
        };
        assert_eq!(owner, &again, "{backend}");
    }
}

/// PID 1 of the project's sandbox holds `0.0.0.0:2024` and hides its descriptors: the socket
/// must be listed, without an owner, and the gap named.
#[test]
fn pid_1_hidden_listener_has_no_owner() {
    let Ok(ss) = Command::new("ss").args(["-ltnpH", "sport = :2024"]).output() else {
        support::skip("`ss` is not installed");
        return;
    };
    let text = String::from_utf8_lossy(&ss.stdout);
    let Some(line) = text.lines().find(|line| line.contains(":2024 ")) else {
        support::skip("nothing listens on port 2024 here");
        return;
    };
    if line.contains("users:") {
        support::skip(&format!("the owner of port 2024 is visible here: {line}"));
        return;
    }
    for backend in KERNEL_BACKENDS {
        let Some(table) = scan_ports(backend, &[2024]) else {
            continue;
        };
        let entry = table
            .listeners_on(2024)
            .next()
            .unwrap_or_else(|| panic!("{backend}: 2024 is listed: {table:#?}"));
        assert!(entry.pids.is_empty(), "{backend}: {entry:?}");
        assert!(entry.inode.is_some(), "{backend}");
        assert!(
            table.limitations.iter().any(|l| l.contains("hidden")),
            "{backend}: the gap is named: {:?}",
            table.limitations
        );
    }
    let all = scan::scan().unwrap();
    assert!(all.listeners_on(2024).any(|s| s.pids.is_empty()));
}

#[test]
fn owners_can_be_skipped() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let options = ScanOptions {
        tcp: true,
        listen_only: true,
        ports: Some(vec![port]),
        ..Default::default()
    };
    let table = scan::scan_with(&options).unwrap();
    let entry = find(&table, Protocol::Tcp, listener.local_addr().unwrap(), None);
    assert!(entry.pids.is_empty());
    assert!(table.processes.is_empty());
}

/// A run's processes are found by the `LOOPCHECK_RUN_DIR` they inherit; those the build
/// started (they carry cargo's compile-time variables) are not the tests' leftovers.
#[test]
fn processes_of_a_run_leave_out_the_build() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run.0.0");
    let spawn = |extra: &[(&str, &str)]| {
        let mut command = Command::new("sleep");
        command
            .arg("30")
            .env("LOOPCHECK_RUN_DIR", &run_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (key, value) in extra {
            command.env(key, value);
        }
        command.spawn().expect("spawn sleep")
    };
    let mut children = [
        spawn(&[
            ("NEXTEST_BINARY_ID", "demo::net"),
            ("NEXTEST_TEST_NAME", "serves"),
        ]),
        spawn(&[("CARGO_CRATE_NAME", "demo")]),
        spawn(&[
            ("OUT_DIR", "/tmp/out"),
            ("TARGET", "x86_64-unknown-linux-gnu"),
            ("HOST", "x"),
        ]),
    ];
    let pids: Vec<u32> = children.iter().map(Child::id).collect();
    let found = eventually(Duration::from_secs(5), || {
        let found = scan::processes_of_run(&run_dir);
        found.iter().any(|p| p.process.pid == pids[0]).then_some(found)
    })
    .expect("the test's child is found");
    let found_pids: Vec<u32> = found.iter().map(|p| p.process.pid).collect();
    assert_eq!(found_pids, [pids[0]], "only the test's child, not the build's");
    assert_eq!(found[0].binary_id.as_deref(), Some("demo::net"));
    assert_eq!(found[0].test_name.as_deref(), Some("serves"));
    assert!(scan::processes_of_run(&dir.path().join("other")).is_empty());
    for child in &mut children {
        let _ = child.kill();
        let _ = child.wait();
    }
}
