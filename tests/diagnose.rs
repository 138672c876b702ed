//! Each socket failure produced for real, then diagnosed: the code, the pid, the command.
#![cfg(target_os = "linux")]

mod support;

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::process::Stdio;
use std::time::{Duration, Instant};

use loopcheck::diagnose::Diagnoser;
use loopcheck::report::Code;
use socket2::{Domain, Socket, Type};
use support::{say, wait_for_parent};

const CHILD_TIMEOUT: Duration = Duration::from_secs(60);
const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// The entry point of child processes; does nothing when run as a plain test.
#[test]
fn child_entry() {
    let Some(role) = support::role() else { return };
    match role.as_str() {
        "listen" => {
            let listener = TcpListener::bind((LOCALHOST, 0)).unwrap();
            say(format!(
                "listening {} {}",
                listener.local_addr().unwrap(),
                std::process::id()
            ));
            wait_for_parent();
        }
        "listen-linger" => {
            // Outlives its parent until the test kills it; ends by itself in any case.
            let listener = TcpListener::bind((LOCALHOST, 0)).unwrap();
            say(format!(
                "listening {} {}",
                listener.local_addr().unwrap(),
                std::process::id()
            ));
            std::thread::sleep(Duration::from_secs(120));
        }
        "listen-backlog-1" => {
            let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
            socket.bind(&SocketAddr::new(LOCALHOST, 0).into()).unwrap();
            socket.listen(1).unwrap();
            say(format!(
                "listening {} {}",
                socket.local_addr().unwrap().as_socket().unwrap(),
                std::process::id()
            ));
            wait_for_parent();
        }
        "parent-of-listener" => {
            // Stays alive as the listener's parent, like `cargo run` above a dev server.
            let mut grandchild = support::command("listen-linger");
            grandchild.stdin(Stdio::null()).stdout(Stdio::inherit());
            let mut grandchild = grandchild.spawn().unwrap();
            wait_for_parent();
            let _ = grandchild.kill();
            let _ = grandchild.wait();
        }
        "orphan-parent" => {
            // Starts a listener that outlives this process: its parent is gone, as with a
            // server leaked by a test binary that has exited.
            let mut grandchild = support::command("listen-linger");
            grandchild.stdin(Stdio::null()).stdout(Stdio::inherit());
            #[allow(
                clippy::zombie_processes,
                reason = "the point is to exit without waiting, leaving an orphan"
            )]
            grandchild.spawn().unwrap();
        }
        other => panic!("unknown role {other}"),
    }
}

fn listening(line: &str) -> (SocketAddr, u32) {
    let mut words = line
        .strip_prefix("listening ")
        .expect("a listening line")
        .split(' ');
    (
        words.next().unwrap().parse().unwrap(),
        words.next().unwrap().parse().unwrap(),
    )
}

/// A bind that sets no `SO_REUSEADDR`, as many servers do.
fn bind_plain(addr: SocketAddr) -> std::io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.bind(&addr.into())?;
    Ok(socket)
}

/// Kills a process this test started but holds no handle to, by pid, and waits for it to go.
fn kill_by_pid(pid: u32) {
    // SAFETY: plain signal to a pid this test spawned.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::path::Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_port_held_by_a_child_names_the_child() {
    let mut child = support::spawn("listen", &[]);
    let (addr, pid) = listening(&child.line(CHILD_TIMEOUT));
    assert_eq!(pid, child.pid());
    let err = TcpListener::bind(addr).unwrap_err();
    let diagnosis = loopcheck::diagnose(&err, addr);
    assert_eq!(diagnosis.code, Code::PortInUse, "{diagnosis}");
    let holder = diagnosis.holder().expect("the holder is named");
    assert_eq!(holder.pid, pid);
    assert!(holder.command.contains("child_entry"), "{}", holder.command);
    assert!(diagnosis.summary.contains(&format!("pid {pid}")), "{diagnosis}");
    assert!(
        diagnosis
            .evidence
            .iter()
            .any(|e| e.contains(&format!("pid {pid} is a child of this process"))),
        "{diagnosis}"
    );
    let json = serde_json::to_value(&diagnosis).unwrap();
    assert_eq!(json["code"], "LC001");
    assert_eq!(json["processes"][0]["pid"], pid);
}

#[test]
fn a_workspace_binary_whose_parent_lives_is_no_zombie() {
    let mut parent = support::spawn("parent-of-listener", &[]);
    let (addr, pid) = listening(&parent.line(CHILD_TIMEOUT));
    let err = TcpListener::bind(addr).unwrap_err();
    let diagnosis = loopcheck::diagnose(&err, addr);
    assert!(parent.wait(CHILD_TIMEOUT).success());
    assert_eq!(diagnosis.code, Code::PortInUse, "{diagnosis}");
    assert_eq!(diagnosis.holder().map(|p| p.pid), Some(pid));
    assert!(
        diagnosis
            .evidence
            .iter()
            .any(|e| e.contains("its parent still runs: it is a live server of that workspace")),
        "{diagnosis}"
    );
}

#[test]
fn an_orphaned_listener_from_a_target_dir_is_a_zombie() {
    for test_var in [None, Some("tests::leaky")] {
        let mut command = support::command("orphan-parent");
        // Its own process group, as nextest gives each test process: once it exits, the
        // listener it leaves behind belongs to a group without a leader.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        if let Some(test) = test_var {
            command.env("LOOPCHECK_TEST", test);
        }
        let mut parent = support::start(command);
        let (addr, pid) = listening(&parent.line(CHILD_TIMEOUT));
        assert!(parent.wait(CHILD_TIMEOUT).success());
        // The grandchild is reparented once its parent is reaped; give the kernel a moment.
        let deadline = Instant::now() + Duration::from_secs(5);
        while loopcheck::scan::ProcessInfo::read(pid).and_then(|p| p.ppid) != Some(1)
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        let err = TcpListener::bind(addr).unwrap_err();
        let diagnosis = loopcheck::diagnose(&err, addr);
        kill_by_pid(pid);
        assert_eq!(diagnosis.code, Code::ZombieListener, "{diagnosis}");
        assert_eq!(diagnosis.holder().map(|p| p.pid), Some(pid));
        let expected = match test_var {
            Some(test) => format!("LOOPCHECK_TEST={test}"),
            None => "built in".to_owned(),
        };
        assert!(
            diagnosis.evidence.iter().any(|e| e.contains(&expected)),
            "{diagnosis}"
        );
        assert!(diagnosis.fix.contains("cargo loopcheck reap"), "{diagnosis}");
    }
}

#[test]
fn time_wait_leftovers_are_told_apart() {
    // The lease outlives the listener: nobody else takes the port while it is examined.
    let lease = loopcheck::reserve_port().unwrap();
    let addr = lease.addr();
    let listener = TcpListener::bind(addr).unwrap();
    let client = TcpStream::connect(addr).unwrap();
    let (server, _) = listener.accept().unwrap();
    // The side that closes first keeps the port in TIME_WAIT.
    drop(server);
    drop(listener);
    drop(client);
    let err = bind_plain(addr).map(drop).unwrap_err();
    // Only a binder without SO_REUSEADDR (this socket2 socket) fails on TIME_WAIT alone.
    let plain = Diagnoser {
        binder_reuses_address: false,
        ..Diagnoser::default()
    };
    let diagnosis = plain.diagnose(&err, addr);
    assert_eq!(diagnosis.code, Code::TimeWait, "{diagnosis}");
    assert!(diagnosis.fix.contains("SO_REUSEADDR"), "{diagnosis}");
    // For std's and tokio's binds on Unix it is the trace of a holder that has closed.
    if cfg!(unix) {
        let diagnosis = loopcheck::diagnose(&err, addr);
        assert_eq!(diagnosis.code, Code::PortInUse, "{diagnosis}");
        assert!(
            diagnosis.evidence.iter().any(|e| e.contains("TIME_WAIT")),
            "{diagnosis}"
        );
    }
}

#[test]
fn a_server_on_the_other_family_is_pointed_out() {
    if !loopcheck::policy::ipv6_available() {
        support::skip("no IPv6 loopback on this host");
        return;
    }
    let lease = loopcheck::reserve_port().unwrap();
    let port = lease.port();
    let server = TcpListener::bind((Ipv6Addr::LOCALHOST, port)).unwrap();
    let addr = SocketAddr::new(LOCALHOST, port);
    let err = TcpStream::connect(addr).unwrap_err();
    let diagnosis = Diagnoser {
        grace: Duration::ZERO,
        ..Diagnoser::default()
    }
    .diagnose(&err, addr);
    let localhost_first = ("localhost", port).to_socket_addrs_first();
    if localhost_first == Some(LOCALHOST) {
        assert_eq!(diagnosis.code, Code::LocalhostResolution, "{diagnosis}");
    } else {
        assert_eq!(diagnosis.code, Code::ConnectionRefused, "{diagnosis}");
    }
    assert!(
        diagnosis.to_string().contains(&format!("[::1]:{port}")),
        "{diagnosis}"
    );
    assert_eq!(diagnosis.holder().map(|p| p.pid), Some(std::process::id()));
    drop(server);
}

trait FirstAddr {
    fn to_socket_addrs_first(self) -> Option<IpAddr>;
}

impl FirstAddr for (&str, u16) {
    fn to_socket_addrs_first(self) -> Option<IpAddr> {
        std::net::ToSocketAddrs::to_socket_addrs(&self)
            .ok()?
            .next()
            .map(|a| a.ip())
    }
}

#[test]
fn nothing_listening_is_connection_refused_with_the_lease() {
    let lease = loopcheck::reserve_port().unwrap();
    let addr = lease.addr();
    let err = TcpStream::connect(addr).unwrap_err();
    let diagnosis = Diagnoser {
        grace: Duration::from_millis(50),
        ..Diagnoser::default()
    }
    .diagnose(&err, addr);
    assert_eq!(diagnosis.code, Code::ConnectionRefused, "{diagnosis}");
    assert!(
        diagnosis
            .summary
            .starts_with(&format!("nothing listens on {addr}")),
        "{diagnosis}"
    );
    assert!(
        diagnosis
            .evidence
            .iter()
            .any(|e| e.contains(&format!("leased by pid {}", std::process::id()))),
        "{diagnosis}"
    );
}

#[test]
fn a_listener_that_starts_late_is_not_ready_rather_than_absent() {
    let lease = loopcheck::reserve_port().unwrap();
    let addr = lease.addr();
    let err = TcpStream::connect(addr).unwrap_err();
    let late = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        let listener = TcpListener::bind(addr).unwrap();
        std::thread::sleep(Duration::from_secs(2));
        drop(listener);
    });
    let diagnosis = Diagnoser {
        grace: Duration::from_secs(1),
        ..Diagnoser::default()
    }
    .diagnose(&err, addr);
    assert_eq!(diagnosis.code, Code::ConnectionRefused, "{diagnosis}");
    assert!(diagnosis.summary.contains("was not ready"), "{diagnosis}");
    late.join().unwrap();
}

#[test]
fn a_stopped_listener_with_a_full_backlog_times_out() {
    let mut child = support::spawn("listen-backlog-1", &[]);
    let (addr, pid) = listening(&child.line(CHILD_TIMEOUT));
    // SAFETY: a plain signal to the child this test spawned.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGSTOP) };
    // Fill the accept queue: nobody accepts, so connections pile up until the kernel drops
    // new handshakes and a connect times out.
    let mut pending = Vec::new();
    let mut timeout = None;
    for _ in 0..16 {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
            Ok(stream) => pending.push(stream),
            Err(err) => {
                timeout = Some(err);
                break;
            }
        }
    }
    let err = timeout.expect("a connection to a stopped listener with a full queue times out");
    let diagnosis = loopcheck::diagnose(&err, addr);
    // SAFETY: as above.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGCONT) };
    assert_eq!(diagnosis.code, Code::ConnectTimeout, "{diagnosis}");
    assert_eq!(diagnosis.holder().map(|p| p.pid), Some(pid));
    assert!(
        diagnosis.summary.contains("is stopped") || diagnosis.summary.contains("accept queue is full"),
        "{diagnosis}"
    );
    assert!(
        diagnosis.fix.contains(&format!("kill -CONT {pid}")),
        "{diagnosis}"
    );
}

#[test]
fn an_outgoing_connection_on_the_port_is_an_ephemeral_steal() {
    let server = loopcheck::tcp_listener().unwrap();
    let lease = loopcheck::reserve_port().unwrap();
    let source = lease.addr();
    // An outgoing connection whose source port is the leased port, as the kernel does with
    // ephemeral ports.
    let client = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    client.bind(&source.into()).unwrap();
    client.connect(&server.local_addr().unwrap().into()).unwrap();
    let (_accepted, _) = server.accept().unwrap();
    let err = bind_plain(source).map(drop).unwrap_err();
    let diagnosis = loopcheck::diagnose(&err, source);
    assert_eq!(diagnosis.code, Code::EphemeralSteal, "{diagnosis}");
    assert!(
        diagnosis
            .summary
            .contains(&server.local_addr().unwrap().to_string()),
        "{diagnosis}"
    );
    assert_eq!(diagnosis.holder().map(|p| p.pid), Some(std::process::id()));
}

#[test]
fn a_socket_whose_owner_is_hidden_is_reported_not_dropped() {
    // PID 1 of this kind of machine owns a listener whose file descriptors even root cannot
    // read. Use any listener on loopback or wildcard addresses whose owner is invisible.
    let table = loopcheck::scan::scan_with(&loopcheck::scan::ScanOptions::listeners()).unwrap();
    let hidden = table
        .sockets
        .iter()
        .filter(|s| s.protocol == loopcheck::scan::Protocol::Tcp && s.is_listener() && s.pids.is_empty())
        .find(|s| s.local.ip().is_unspecified() && s.local.is_ipv4());
    let Some(hidden) = hidden else {
        support::skip("no listener with a hidden owner on this host");
        return;
    };
    let addr = SocketAddr::new(LOCALHOST, hidden.local.port());
    let err = bind_plain(addr).map(drop).unwrap_err();
    let diagnosis = loopcheck::diagnose(&err, addr);
    assert_eq!(diagnosis.code, Code::PortInUse, "{diagnosis}");
    assert!(diagnosis.summary.contains("wildcard listener"), "{diagnosis}");
    assert!(
        diagnosis.evidence.iter().any(|e| e.contains("owner hidden")),
        "{diagnosis}"
    );
}

#[test]
fn probe_names_who_answers_and_explains_who_does_not() {
    let listener = loopcheck::tcp_listener().unwrap();
    let addr = listener.local_addr().unwrap();
    // A server that accepts is served; one that never accepts is LC006, naming the listener.
    let answered = std::thread::scope(|scope| {
        scope.spawn(|| listener.accept().map(drop));
        loopcheck::probe(addr, Duration::from_secs(5))
    });
    assert_eq!(answered.code, Code::PortInUse, "{answered}");
    assert_eq!(answered.severity, loopcheck::report::Severity::Info);
    assert_eq!(answered.holder().map(|p| p.pid), Some(std::process::id()));
    let waiting = loopcheck::probe(addr, Duration::from_millis(200));
    assert_eq!(waiting.code, Code::ConnectTimeout, "{waiting}");
    assert!(waiting.summary.contains("never accepted it"), "{waiting}");
    assert_eq!(waiting.holder().map(|p| p.pid), Some(std::process::id()));
    drop(listener);
    let lease = loopcheck::reserve_port().unwrap();
    let refused = Diagnoser {
        grace: Duration::ZERO,
        ..Diagnoser::default()
    }
    .probe(lease.addr(), Duration::from_secs(1));
    assert_eq!(refused.code, Code::ConnectionRefused, "{refused}");
}

#[test]
fn diagnoses_render_for_people() {
    let listener = loopcheck::tcp_listener().unwrap();
    let addr = listener.local_addr().unwrap();
    let err = TcpListener::bind(addr).unwrap_err();
    let text = loopcheck::diagnose(&err, addr).to_string();
    let mut lines = text.lines();
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with(&format!("error[LC001]: {addr} is in use by pid"))
    );
    assert_eq!(lines.next().unwrap(), format!("  --> {addr}"));
    assert!(text.lines().any(|l| l.starts_with("   = note: tcp listen")));
    assert!(text.lines().last().unwrap().starts_with("   = help: "));
    std::io::stderr().write_all(text.as_bytes()).unwrap();
}
