//! Turning a socket error into a diagnosis: which process, which test, what to do.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::lease::{LeaseInfo, LeaseStatus};
use crate::policy::PortPolicy;
use crate::report::{Code, Diagnosis, ProcessRef, Severity};
use crate::scan::{self, ProcessInfo, ScanOptions, SocketEntry, SocketState, SocketTable};

mod remote;

/// Explains `err`, returned by a bind, connect, read or write involving `addr`.
///
/// The socket table is read at once, so call this right where the error happened. A refused
/// connection is watched for a short grace period (300 ms), to tell a server that was not
/// ready yet from one that is not there; use [`Diagnoser`] to change that.
///
/// ```
/// let listener = loopcheck::tcp_listener()?;
/// let addr = listener.local_addr()?;
/// let err = std::net::TcpListener::bind(addr).unwrap_err();
/// let diagnosis = loopcheck::diagnose(&err, addr);
/// assert_eq!(diagnosis.code().name(), "port-in-use");
/// println!("{diagnosis}");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn diagnose(err: &io::Error, addr: SocketAddr) -> Diagnosis {
    Diagnoser::default().diagnose(err, addr)
}

/// Connects to `addr` within `timeout` and explains the outcome: on success, who answered;
/// otherwise why not. After connecting it waits up to `timeout` for the server to accept the
/// connection or answer: a listener that leaves it in its accept queue is LC006 (Linux).
///
/// ```
/// let listener = loopcheck::tcp_listener()?;
/// let addr = listener.local_addr()?;
/// let diagnosis = std::thread::scope(|scope| {
///     scope.spawn(|| listener.accept().map(drop));
///     loopcheck::probe(addr, std::time::Duration::from_secs(5))
/// });
/// assert_eq!(diagnosis.holder().map(|p| p.pid), Some(std::process::id()));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn probe(addr: SocketAddr, timeout: Duration) -> Diagnosis {
    Diagnoser::default().probe(addr, timeout)
}

/// Phrases of failure messages (lower-cased) and the socket error each stands for: the
/// `Display` and `Debug` forms of `io::Error` on Linux, macOS and Windows, and what async
/// runtimes and HTTP clients print.
const SYMPTOMS: &[(io::ErrorKind, &[&str])] = &[
    (
        io::ErrorKind::AddrInUse,
        &[
            "address already in use",
            "addrinuse",
            "os error 98)",
            "os error 48)",
            "os error 10048)",
        ],
    ),
    (
        io::ErrorKind::ConnectionRefused,
        &[
            "connection refused",
            "connectionrefused",
            "os error 111)",
            "os error 61)",
            "os error 10061)",
        ],
    ),
    (
        io::ErrorKind::AddrNotAvailable,
        &[
            "cannot assign requested address",
            "can't assign requested address",
            "addrnotavailable",
            "os error 99)",
            "os error 49)",
        ],
    ),
    (
        io::ErrorKind::PermissionDenied,
        &["permission denied", "os error 13)", "os error 10013)"],
    ),
    (
        io::ErrorKind::TimedOut,
        &[
            "timed out",
            "timedout",
            "deadline has elapsed",
            "os error 110)",
            // A read or write timeout (`set_read_timeout`) surfaces as EAGAIN on Unix.
            "wouldblock",
            "resource temporarily unavailable",
            "os error 11)",
            "os error 35)",
        ],
    ),
    (
        io::ErrorKind::ConnectionReset,
        &[
            "connection reset",
            "early eof",
            "unexpected end of file",
            "unexpectedeof",
            "broken pipe",
        ],
    ),
];

/// The socket error a test's failure message speaks of, if any: `AddrInUse` for "Address
/// already in use (os error 98)", `ConnectionRefused`, `TimedOut` (also an async runtime's
/// "deadline has elapsed"), `ConnectionReset` (also "early eof" and "broken pipe"), and so on,
/// in the forms std prints on Linux, macOS and Windows. A message about anything else gives
/// `None`: such a failure is no socket's fault.
///
/// ```
/// use std::io::ErrorKind;
/// use loopcheck::diagnose::symptom;
///
/// let panic = r#"called `Result::unwrap()` on an `Err` value: Os { code: 98, kind: AddrInUse, message: "Address already in use" }"#;
/// assert_eq!(symptom(panic), Some(ErrorKind::AddrInUse));
/// assert_eq!(symptom("assertion `left == right` failed"), None);
/// ```
pub fn symptom(message: &str) -> Option<io::ErrorKind> {
    let message = message.to_ascii_lowercase();
    SYMPTOMS
        .iter()
        .find(|(_, phrases)| phrases.iter().any(|p| message.contains(p)))
        .map(|(kind, _)| *kind)
}

/// Diagnosis with settings.
#[derive(Debug, Clone)]
pub struct Diagnoser {
    /// How long to watch a refused address for a listener that starts late.
    pub grace: Duration,
    /// Whether the failing bind set `SO_REUSEADDR`, as std's and tokio's `TcpListener::bind`
    /// do on Unix (the default there). Then `TIME_WAIT` leftovers cannot have failed it: they
    /// are the trace of a server that closed moments ago, and the diagnosis is LC001. Set it
    /// to `false` for a socket2 socket bound without `set_reuse_address(true)`, or a child
    /// process that binds by itself, to get LC003 (the default on Windows).
    pub binder_reuses_address: bool,
}

impl Default for Diagnoser {
    fn default() -> Self {
        Diagnoser {
            grace: Duration::from_millis(300),
            binder_reuses_address: cfg!(unix),
        }
    }
}

impl Diagnoser {
    /// See [`diagnose`].
    pub fn diagnose(&self, err: &io::Error, addr: SocketAddr) -> Diagnosis {
        let bind_error = matches!(
            err.kind(),
            io::ErrorKind::AddrInUse | io::ErrorKind::AddrNotAvailable | io::ErrorKind::PermissionDenied
        );
        if !bind_error && !remote::is_local(addr.ip()) {
            return remote::explain(addr, Err(err));
        }
        let port = Port::scan(addr);
        match err.kind() {
            io::ErrorKind::AddrInUse => port.in_use(err, self.binder_reuses_address),
            io::ErrorKind::ConnectionRefused => self.refused(port, err),
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => port.timeout(err),
            io::ErrorKind::AddrNotAvailable => not_available(addr, err),
            io::ErrorKind::PermissionDenied => permission_denied(addr, err, PortPolicy::current().ok()),
            _ => port.answered(Some(err)),
        }
    }

    /// Who holds `addr` right now, without connecting: LC001 (or LC002) naming the listener,
    /// or LC005 when nothing listens. Informational when a live, ordinary process holds it.
    pub fn status(&self, addr: SocketAddr) -> Diagnosis {
        let mut diagnosis = Port::scan(addr).answered(None);
        if diagnosis.code == Code::PortInUse {
            diagnosis.severity = Severity::Info;
        }
        diagnosis
    }

    /// The diagnosis of `addr` for a failure whose message spoke of `kind`, or `None` when
    /// the address shows nothing that explains it (the harness asks this about every address
    /// a failed test was given, most of which are innocent).
    pub fn explain_symptom(&self, kind: io::ErrorKind, addr: SocketAddr) -> Option<Diagnosis> {
        if kind == io::ErrorKind::AddrInUse {
            let port = Port::scan(addr);
            if !port.sockets().any(|s| overlaps(s.local.ip(), addr.ip())) {
                return None;
            }
            return Some(port.in_use(&io::Error::from(kind), self.binder_reuses_address));
        }
        Some(self.diagnose(&io::Error::from(kind), addr))
    }

    /// The diagnosis of `addr` for a failure that spoke of `kind` and ended a while ago, as a
    /// test runner sees it when it reads a failed test's output: only what the address still
    /// shows, and only for the errors an address can explain. `AddrInUse` needs a holder now;
    /// `ConnectionRefused` gives LC005 (or LC007) naming what listens nearby; `TimedOut` needs
    /// a stopped listener, a full accept queue or dropped packets; `ConnectionReset` and
    /// `UnexpectedEof` (an early EOF) name who answers at the address, or that nobody does.
    /// Any other kind gives `None`.
    pub fn explain_afterwards(&self, kind: io::ErrorKind, addr: SocketAddr) -> Option<Diagnosis> {
        let err = io::Error::from(kind);
        match kind {
            io::ErrorKind::AddrInUse => self.explain_symptom(kind, addr),
            // The test is over: a listener that starts now was not late for it.
            io::ErrorKind::ConnectionRefused => {
                let now = Diagnoser {
                    grace: Duration::ZERO,
                    ..self.clone()
                };
                Some(now.refused(Port::scan(addr), &err))
            }
            io::ErrorKind::TimedOut => {
                let port = Port::scan(addr);
                let mut d = port.timeout_cause(&err)?;
                port.describe_lease(&mut d);
                Some(d)
            }
            io::ErrorKind::ConnectionReset | io::ErrorKind::UnexpectedEof => {
                Some(Port::scan(addr).answered(Some(&err)))
            }
            _ => None,
        }
    }

    /// See [`probe`]. After connecting it waits up to `timeout` for the server to accept the
    /// connection or answer: one left in the listener's accept queue is LC006.
    pub fn probe(&self, addr: SocketAddr, timeout: Duration) -> Diagnosis {
        let connected = TcpStream::connect_timeout(&addr, timeout);
        // Another host's sockets are not in this host's table: say what was seen, no more.
        if !remote::is_local(addr.ip()) {
            return remote::explain(addr, connected.as_ref().map(drop));
        }
        match connected {
            Ok(stream) => {
                if let Some(diagnosis) = never_accepted(&stream, addr, timeout) {
                    return diagnosis;
                }
                drop(stream);
                let mut diagnosis = Port::scan(addr).answered(None);
                if diagnosis.code == Code::PortInUse {
                    diagnosis.severity = Severity::Info;
                }
                diagnosis
            }
            Err(err) => self.diagnose(&err, addr),
        }
    }

    fn refused(&self, mut port: Port, err: &io::Error) -> Diagnosis {
        let addr = port.addr;
        let started = Instant::now();
        let mut late = None;
        // Bounded by the grace period and by a count, whatever the clock does.
        for _ in 0..100 {
            if started.elapsed() >= self.grace {
                break;
            }
            std::thread::sleep(Duration::from_millis(25).min(self.grace));
            let again = Port::scan(addr);
            if again.listeners_at_addr().next().is_some() {
                late = Some(started.elapsed());
                port = again;
                break;
            }
        }
        let siblings: Vec<&SocketEntry> = port
            .listeners()
            .filter(|s| !overlaps(s.local.ip(), addr.ip()))
            .collect();
        let time_wait = port.count_state(SocketState::TimeWait);
        if let Some(after) = late {
            let mut d = Diagnosis::new(
                Code::ConnectionRefused,
                Some(addr),
                format!(
                    "{addr} refused the connection ({err}), but a listener appeared {} ms later: the server was not ready",
                    after.as_millis()
                ),
                "wait until the server listens before connecting: bind the listener before starting the server task or child (`loopcheck::tcp_listener()`, or hand it over with `loopcheck::activation::pass_sockets`), instead of sleeping or retrying",
            );
            port.describe_listeners(&mut d, "listener");
            return d;
        }
        let other_family = siblings
            .iter()
            .find(|s| s.local.is_ipv4() != addr.is_ipv4() && s.local.ip().is_loopback());
        if let Some(sibling) = other_family
            && let Some(first) = localhost_first(addr.port())
            && first.ip() == addr.ip()
        {
            let mut d = Diagnosis::new(
                Code::LocalhostResolution,
                Some(addr),
                format!(
                    "nothing listens on {addr}, where `localhost` resolves first; the server listens on {}",
                    sibling.local
                ),
                format!(
                    "connect to the address the server bound ({}) instead of `localhost`, or bind the server to the address `localhost` resolves to first",
                    sibling.local
                ),
            );
            d.evidence.push(format!(
                "`localhost` resolves to {}",
                localhost_all(addr.port()).join(", ")
            ));
            port.describe_listeners(&mut d, "listener");
            return d;
        }
        let mut d = Diagnosis::new(
            Code::ConnectionRefused,
            Some(addr),
            format!("nothing listens on {addr} ({err})"),
            "make sure the server is started and bound before the client connects, on exactly this address; pass the server's real address (`listener.local_addr()`) to the client instead of a number",
        );
        for sibling in &siblings {
            d.evidence.push(format!(
                "port {} is listened on at another address: {} {}",
                addr.port(),
                sibling.protocol,
                sibling.local
            ));
        }
        if !siblings.is_empty() {
            d.fix = format!(
                "the server listens on {} but the client connected to {addr}: use the same address on both sides",
                siblings[0].local
            );
            port.describe_listeners(&mut d, "listener");
        }
        if time_wait > 0 {
            d.evidence.push(format!("{time_wait} connection(s) on port {} in TIME_WAIT: a server listened here moments ago and has closed", addr.port()));
        }
        port.describe_lease(&mut d);
        d
    }
}

/// What one scan says about one address's port.
struct Port {
    addr: SocketAddr,
    table: Option<SocketTable>,
    scan_error: Option<String>,
    lease: Option<LeaseInfo>,
    policy: Option<&'static PortPolicy>,
}

impl Port {
    fn scan(addr: SocketAddr) -> Port {
        let options = ScanOptions {
            ports: Some(vec![addr.port()]),
            ..ScanOptions::all()
        };
        let (table, scan_error) = match scan::scan_with(&options) {
            Ok(table) => (Some(table), None),
            Err(err) => (None, Some(err.to_string())),
        };
        let lease = crate::lease::lease_of(addr.port()).ok().flatten();
        Port {
            addr,
            table,
            scan_error,
            lease,
            policy: PortPolicy::current().ok(),
        }
    }

    fn sockets(&self) -> impl Iterator<Item = &SocketEntry> {
        self.table.iter().flat_map(|t| t.on_port(self.addr.port()))
    }

    fn listeners(&self) -> impl Iterator<Item = &SocketEntry> {
        self.sockets().filter(|s| s.is_listener())
    }

    fn listeners_at_addr(&self) -> impl Iterator<Item = &SocketEntry> {
        self.listeners()
            .filter(|s| overlaps(s.local.ip(), self.addr.ip()))
    }

    fn count_state(&self, state: SocketState) -> usize {
        self.sockets().filter(|s| s.state == state).count()
    }

    fn owners<'a>(&'a self, socket: &'a SocketEntry) -> Vec<&'a ProcessInfo> {
        self.table.iter().flat_map(|t| t.owners(socket)).collect()
    }

    /// Adds the owners of every listener at the address, or says why none is known.
    fn describe_listeners(&self, d: &mut Diagnosis, role: &str) {
        let listeners: Vec<&SocketEntry> = self.listeners().collect();
        for socket in listeners {
            self.describe_socket(d, socket, role);
        }
    }

    fn describe_socket(&self, d: &mut Diagnosis, socket: &SocketEntry, role: &str) {
        let owners = self.owners(socket);
        let remote = socket.remote.map(|r| format!(" -> {r}")).unwrap_or_default();
        if owners.is_empty() {
            let why = if socket.state == SocketState::TimeWait {
                "no process: the kernel keeps it after a close"
            } else {
                "owner hidden: another user's process, or one whose file descriptors cannot be read (such as PID 1 in a container)"
            };
            d.evidence.push(format!(
                "{} {} {}{remote}: {why}",
                socket.protocol, socket.state, socket.local
            ));
        }
        for owner in owners {
            d.evidence.push(format!(
                "{} {} {}{remote} held by pid {} `{}`{}",
                socket.protocol,
                socket.state,
                socket.local,
                owner.pid,
                owner.command(),
                owner
                    .user
                    .as_ref()
                    .map(|u| format!(", user {u}"))
                    .unwrap_or_default()
            ));
            if !d.processes.iter().any(|p| p.pid == owner.pid) {
                d.processes.push(process_ref(owner, role));
            }
        }
    }

    fn describe_lease(&self, d: &mut Diagnosis) {
        let Some(lease) = &self.lease else { return };
        let Some(record) = &lease.record else { return };
        let test = record
            .test
            .as_deref()
            .map(|t| format!(" for test `{t}`"))
            .unwrap_or_default();
        match lease.status {
            LeaseStatus::Held => d.evidence.push(format!("port {} is leased by pid {}{test}", lease.port, record.pid)),
            LeaseStatus::Stale => d.evidence.push(format!(
                "port {} was leased by pid {}{test}, which died without returning it (LC015; the port is free again)",
                lease.port, record.pid
            )),
            LeaseStatus::Free => {}
        }
    }

    fn note_scan_limits(&self, d: &mut Diagnosis) {
        if let Some(err) = &self.scan_error {
            d.evidence
                .push(format!("the socket table could not be read: {err}"));
        }
        if let Some(table) = &self.table {
            d.evidence.extend(table.limitations.iter().cloned());
        }
    }

    fn in_use(&self, err: &io::Error, reuses_address: bool) -> Diagnosis {
        let addr = self.addr;
        let conflicting: Vec<&SocketEntry> = self
            .sockets()
            .filter(|s| overlaps(s.local.ip(), addr.ip()))
            .collect();
        let listeners: Vec<&SocketEntry> = conflicting.iter().copied().filter(|s| s.is_listener()).collect();
        let mut d = if let Some(listener) = listeners.first() {
            self.holder_diagnosis(listener, err)
        } else if !conflicting.is_empty()
            && conflicting.iter().all(|s| s.state == SocketState::TimeWait)
            && reuses_address
        {
            let mut d = Diagnosis::new(
                Code::PortInUse,
                Some(addr),
                format!("{addr} was in use ({err}), and its holder has closed since"),
                "a short-lived server held the port, most likely another test running at the same time: let loopcheck allocate ports (`loopcheck::tcp_listener()`) so that no two tests share one",
            );
            d.evidence.push(format!(
                "{} connection(s) on port {} are in TIME_WAIT: a server on it closed moments ago. That is no cause by itself: a bind with SO_REUSEADDR (std's and tokio's on Unix) succeeds beside TIME_WAIT, so a socket held the port when it failed",
                conflicting.len(),
                addr.port()
            ));
            d
        } else if !conflicting.is_empty() && conflicting.iter().all(|s| s.state == SocketState::TimeWait) {
            let mut d = Diagnosis::new(
                Code::TimeWait,
                Some(addr),
                format!(
                    "{addr} is held only by {} connection(s) in TIME_WAIT ({err})",
                    conflicting.len()
                ),
                "set SO_REUSEADDR before binding (std's `TcpListener::bind` does on Unix; with socket2 call `set_reuse_address(true)`), or let loopcheck allocate the port: it never hands out a port with TIME_WAIT leftovers",
            );
            d.evidence.push(format!("a server on port {} closed its connections moments ago; the kernel keeps them for about 60 s", addr.port()));
            d
        } else if let Some(outgoing) = conflicting
            .iter()
            .find(|s| s.remote.is_some() && s.state != SocketState::TimeWait)
        {
            let ephemeral = self
                .policy
                .and_then(|p| p.ephemeral)
                .map(|r| r.to_string())
                .unwrap_or_else(|| "unknown".into());
            let mut d = Diagnosis::new(
                Code::EphemeralSteal,
                Some(addr),
                format!(
                    "{addr} is taken by a connection to {} that uses it as its source port ({err})",
                    outgoing.remote.map_or("?".into(), |r| r.to_string())
                ),
                format!(
                    "use ports outside the ephemeral range ({ephemeral}): `loopcheck::reserve_port()` and `loopcheck::tcp_listener()` never hand one out"
                ),
            );
            if self.policy.is_some_and(|p| p.is_ephemeral(addr.port())) {
                d.evidence.push(format!("port {} lies in the kernel's ephemeral range {ephemeral}: any outgoing connection may take it", addr.port()));
            }
            self.describe_socket(&mut d, outgoing, "connection");
            d
        } else if let Some(other) = conflicting.first() {
            let mut d = Diagnosis::new(
                Code::PortInUse,
                Some(addr),
                format!(
                    "{addr} is in use by a {} socket in state {} ({err})",
                    other.protocol, other.state
                ),
                "let loopcheck allocate the port (`loopcheck::tcp_listener()`), or end the process that holds it",
            );
            self.describe_socket(&mut d, other, "holder");
            d
        } else {
            Diagnosis::new(
                Code::PortInUse,
                Some(addr),
                format!("{addr} was in use ({err}), and its holder is gone or not visible now"),
                "a short-lived process held the port; let loopcheck allocate ports (`loopcheck::tcp_listener()`) so that no two tests share one",
            )
        };
        self.describe_lease(&mut d);
        self.note_scan_limits(&mut d);
        d
    }

    /// LC001 or LC002 for the holder of `listener`.
    fn holder_diagnosis(&self, listener: &SocketEntry, err: &io::Error) -> Diagnosis {
        let addr = self.addr;
        let owners = self.owners(listener);
        let wildcard = listener.local.ip().is_unspecified() && !addr.ip().is_unspecified();
        let conflict = if wildcard {
            format!(
                " (a wildcard listener on {} covers {})",
                listener.local,
                addr.ip()
            )
        } else {
            String::new()
        };
        let zombie = owners.iter().find_map(|o| match classify(o) {
            Provenance::Zombie { reason } => Some((*o, reason)),
            _ => None,
        });
        let mut d = if let Some((owner, reason)) = zombie {
            let mut d = Diagnosis::new(
                Code::ZombieListener,
                Some(addr),
                format!(
                    "{addr} is held by a leftover process: pid {} `{}`{conflict}",
                    owner.pid,
                    owner.command()
                ),
                format!(
                    "end it with `cargo loopcheck reap --yes` (or `kill {}`), then find the test that leaked it: `#[loopback_test]` reports the leak when the test ends",
                    owner.pid
                ),
            );
            d.evidence
                .push(format!("pid {} is a zombie listener: {reason}", owner.pid));
            d
        } else {
            let who = match owners.first() {
                Some(owner) => format!("pid {} `{}`", owner.pid, owner.command()),
                None => "a process whose owner is hidden".to_owned(),
            };
            let own = owners.iter().any(|o| o.pid == std::process::id());
            let fix = if own {
                "this process already holds the address: reuse the listener it has, or let loopcheck allocate a new port for each server (`loopcheck::tcp_listener()`)".to_owned()
            } else {
                "give each test its own port (`loopcheck::tcp_listener()` or `#[loopback_test]`), or stop the process that holds this one".to_owned()
            };
            let mut d = Diagnosis::new(
                Code::PortInUse,
                Some(addr),
                format!("{addr} is in use by {who}{conflict} ({err})"),
                fix,
            );
            for owner in owners.iter().filter(|o| o.pid != std::process::id()) {
                if owner.ppid == Some(std::process::id()) {
                    d.evidence.push(format!(
                        "pid {} is a child of this process (pid {}): this test or one beside it started it",
                        owner.pid,
                        std::process::id()
                    ));
                } else if let Provenance::WorkspaceBinary { target_dir } = classify(owner) {
                    d.evidence.push(format!(
                        "pid {} runs a binary built in {} and its parent still runs: it is a live server of that workspace (such as `cargo run` or a suite in another terminal), not a leftover",
                        owner.pid,
                        target_dir.display()
                    ));
                }
            }
            d
        };
        self.describe_socket(&mut d, listener, "listener");
        d
    }

    fn timeout(&self, err: &io::Error) -> Diagnosis {
        let addr = self.addr;
        let mut d = match self.timeout_cause(err) {
            Some(d) => d,
            None => match self.listeners_at_addr().next() {
                Some(listener) => {
                    let mut d = Diagnosis::new(
                        Code::ConnectTimeout,
                        Some(addr),
                        format!("{addr} has a listener but did not answer in time ({err})"),
                        "the server is busy or blocked before accepting; give it more time or check it does not wait on the test itself",
                    );
                    self.describe_socket(&mut d, listener, "listener");
                    d
                }
                None => Diagnosis::new(
                    Code::ConnectTimeout,
                    Some(addr),
                    format!("connecting to {addr} timed out ({err}); nothing listens there now"),
                    "the server was gone or not yet listening; bind before connecting (`loopcheck::tcp_listener()`)",
                ),
            },
        };
        self.describe_lease(&mut d);
        self.note_scan_limits(&mut d);
        d
    }

    /// What makes connections to the address time out, when the address shows it: a stopped
    /// listener, a full accept queue, or loopback packets being dropped.
    fn timeout_cause(&self, err: &io::Error) -> Option<Diagnosis> {
        let addr = self.addr;
        if let Some(listener) = self.listeners_at_addr().next() {
            let owners = self.owners(listener);
            let stopped = owners.iter().find(|o| o.state == Some('T'));
            let full = listener.send_queue > 0 && listener.recv_queue >= listener.send_queue;
            let (summary, fix) = if let Some(owner) = stopped {
                (
                    format!(
                        "{addr} does not answer ({err}): its listener, pid {} `{}`, is stopped",
                        owner.pid,
                        owner.command()
                    ),
                    format!(
                        "resume it with `kill -CONT {}` or end it; a stopped server keeps its port and answers nobody",
                        owner.pid
                    ),
                )
            } else if full {
                (
                    format!("{addr} does not answer ({err}): its accept queue is full ({} of {} pending connections)", listener.recv_queue, listener.send_queue),
                    "the server does not call accept() fast enough or has hung; check that its accept loop runs, or raise its backlog".to_owned(),
                )
            } else {
                return None;
            };
            let mut d = Diagnosis::new(Code::ConnectTimeout, Some(addr), summary, fix);
            self.describe_socket(&mut d, listener, "listener");
            return Some(d);
        }
        let dropped = TcpStream::connect_timeout(&addr, Duration::from_millis(500))
            .err()
            .is_some_and(|e| matches!(e.kind(), io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock));
        if !dropped {
            return None;
        }
        let mut d = Diagnosis::new(
            Code::ConnectTimeout,
            Some(addr),
            format!(
                "connections to {addr} time out with no listener there ({err}): packets on loopback are dropped"
            ),
            "a firewall rule drops loopback traffic: list the rules with `iptables -S`, `ip6tables -S` or `nft list ruleset` and allow `lo`",
        );
        d.evidence
            .push("a fresh connection attempt also timed out instead of being refused".into());
        Some(d)
    }

    /// Who answers at the address: LC001 (or LC002) naming the holder, LC005 when nobody does.
    fn answered(&self, err: Option<&io::Error>) -> Diagnosis {
        let addr = self.addr;
        let context = err.map(|e| format!(" ({e})")).unwrap_or_default();
        let mut d = match self.listeners_at_addr().next() {
            Some(listener) => {
                let owners = self.owners(listener);
                let zombie = owners.iter().find_map(|o| match classify(o) {
                    Provenance::Zombie { reason } => Some((*o, reason)),
                    _ => None,
                });
                let mut d = match (zombie, owners.first()) {
                    (Some((owner, reason)), _) => {
                        let mut d = Diagnosis::new(
                            Code::ZombieListener,
                            Some(addr),
                            format!(
                                "{addr} is served by a leftover process: pid {} `{}`{context}",
                                owner.pid,
                                owner.command()
                            ),
                            format!(
                                "end it with `cargo loopcheck reap --yes` (or `kill {}`)",
                                owner.pid
                            ),
                        );
                        d.evidence
                            .push(format!("pid {} is a zombie listener: {reason}", owner.pid));
                        d
                    }
                    (None, Some(owner)) => Diagnosis::new(
                        Code::PortInUse,
                        Some(addr),
                        format!(
                            "{addr} is served by pid {} `{}`{context}",
                            owner.pid,
                            owner.command()
                        ),
                        "if this is not the server the test started, the test talks to another test's server: give each server its own port (`loopcheck::tcp_listener()`)",
                    ),
                    (None, None) => Diagnosis::new(
                        Code::PortInUse,
                        Some(addr),
                        format!("{addr} is served by a process whose owner is hidden{context}"),
                        "run as the user that owns the server, or as root, to see who it is",
                    ),
                };
                self.describe_socket(&mut d, listener, "listener");
                d
            }
            None => Diagnosis::new(
                Code::ConnectionRefused,
                Some(addr),
                format!("nothing listens on {addr} now{context}"),
                "the server closed or crashed; check its output, and bind before connecting",
            ),
        };
        self.describe_lease(&mut d);
        self.note_scan_limits(&mut d);
        d
    }
}

/// Whether the server side of `stream` is still waiting in the listener's accept queue after
/// `timeout`: LC006 naming the listener, or `None` once the server accepts, answers or closes.
///
/// The kernel gives a connection a file only when `accept()` takes it, so its server side
/// shows inode 0 until then (Linux; elsewhere nothing is waited for).
fn never_accepted(stream: &TcpStream, addr: SocketAddr, timeout: Duration) -> Option<Diagnosis> {
    if !cfg!(target_os = "linux") {
        return None;
    }
    let client = stream.local_addr().ok()?;
    stream.set_nonblocking(true).ok()?;
    let options = ScanOptions {
        tcp: true,
        ports: Some(vec![addr.port()]),
        ..ScanOptions::default()
    };
    let started = Instant::now();
    let mut byte = [0u8; 1];
    // Bounded by the timeout and by a count, whatever the clock does.
    for _ in 0..10_000 {
        match stream.peek(&mut byte) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            // Data, an end of file or a reset: the server took the connection.
            _ => return None,
        }
        let server_side = scan::scan_with(&options).ok().and_then(|table| {
            table
                .sockets
                .into_iter()
                .find(|s| s.remote == Some(client) && s.local.port() == addr.port())
        });
        if server_side.is_some_and(|s| s.inode.is_some()) {
            return None;
        }
        let waited = started.elapsed();
        if waited >= timeout {
            break;
        }
        std::thread::sleep(Duration::from_millis(10).min(timeout - waited));
    }
    let port = Port::scan(addr);
    let listener = port.listeners_at_addr().next()?;
    let owners = port.owners(listener);
    let who = owners.first().map_or_else(
        || "a listener whose owner is hidden".to_owned(),
        |o| format!("its listener, pid {} `{}`,", o.pid, o.command()),
    );
    let mut d = Diagnosis::new(
        Code::ConnectTimeout,
        Some(addr),
        format!(
            "{addr} took the connection but never accepted it: {who} left it in its accept queue for {} ms ({} of {} pending connections)",
            timeout.as_millis(),
            listener.recv_queue,
            listener.send_queue
        ),
        match owners.first() {
            Some(owner) => format!(
                "the server does not call accept(): it hangs, is stopped, or is not the server you meant; check its accept loop, or end it (`kill {}`)",
                owner.pid
            ),
            None => "the server does not call accept(): it hangs, or is not the server you meant".to_owned(),
        },
    );
    port.describe_socket(&mut d, listener, "listener");
    port.describe_lease(&mut d);
    port.note_scan_limits(&mut d);
    Some(d)
}

fn not_available(addr: SocketAddr, err: &io::Error) -> Diagnosis {
    let (summary, fix) = match addr.ip() {
        IpAddr::V6(ip) if ip.is_loopback() && !crate::policy::ipv6_available() => (
            format!("{addr} is not available: IPv6 is disabled on this host ({err})"),
            "use 127.0.0.1, or enable IPv6 on loopback (`sysctl net.ipv6.conf.lo.disable_ipv6=0`)".to_owned(),
        ),
        IpAddr::V4(ip) if ip.is_loopback() && ip != Ipv4Addr::LOCALHOST => (
            format!("{addr} is not configured on this host ({err}); only 127.0.0.1 is usable here"),
            if cfg!(target_os = "macos") {
                format!(
                    "alias the address first: `sudo ifconfig lo0 alias {ip} up`, or use 127.0.0.1 (`loopcheck::loopback_ip()` does so when aliases are missing)"
                )
            } else {
                "check that the loopback interface is up and owns 127.0.0.0/8 (`ip addr show lo`), or use 127.0.0.1".to_owned()
            },
        ),
        ip if ip.is_loopback() => (
            format!("{addr} is not available: the loopback interface seems down ({err})"),
            "bring it up: `ip link set lo up` (Linux) or `ifconfig lo0 up` (macOS)".to_owned(),
        ),
        _ => (
            format!("{addr} is not an address of this host ({err})"),
            "tests should bind loopback addresses only: use `loopcheck::loopback_ip()`".to_owned(),
        ),
    };
    Diagnosis::new(Code::LoopbackUnavailable, Some(addr), summary, fix)
}

fn permission_denied(addr: SocketAddr, err: &io::Error, policy: Option<&PortPolicy>) -> Diagnosis {
    let unprivileged = unprivileged_port_start();
    let (summary, fix) = if addr.port() < unprivileged {
        (
            format!(
                "port {} of {addr} is privileged: ports below {unprivileged} need root or CAP_NET_BIND_SERVICE ({err})",
                addr.port()
            ),
            "use a port from `loopcheck::reserve_port()`; tests should never need a privileged port"
                .to_owned(),
        )
    } else if let Some(range) = policy.and_then(|p| p.reserved.iter().find(|r| r.contains(addr.port()))) {
        (
            format!("port {} of {addr} lies in the excluded or reserved range {range} ({err})", addr.port()),
            "pick a port outside the excluded ranges (`netsh int ipv4 show excludedportrange protocol=tcp` on Windows); loopcheck's allocation avoids them".to_owned(),
        )
    } else {
        (
            format!("binding or connecting {addr} was denied ({err})"),
            "a security policy (SELinux, AppArmor, a sandbox or seccomp profile) forbids it; check the policy's audit log".to_owned(),
        )
    };
    Diagnosis::new(Code::PermissionDenied, Some(addr), summary, fix)
}

fn unprivileged_port_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(1024)
}

/// Whether a socket bound to `bound` conflicts with, or answers for, `wanted`.
fn overlaps(bound: IpAddr, wanted: IpAddr) -> bool {
    let (bound, wanted) = (unmap(bound), unmap(wanted));
    if bound == wanted {
        return true;
    }
    match (bound, wanted) {
        // `[::]` is dual-stack unless IPV6_V6ONLY is set, which the table does not show.
        (IpAddr::V6(b), _) if b.is_unspecified() => true,
        (IpAddr::V4(b), IpAddr::V4(_)) if b.is_unspecified() => true,
        (_, IpAddr::V6(w)) if w.is_unspecified() => true,
        (IpAddr::V4(_), IpAddr::V4(w)) if w.is_unspecified() => true,
        _ => false,
    }
}

fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn localhost_all(port: u16) -> Vec<String> {
    ("localhost", port)
        .to_socket_addrs()
        .map(|addrs| addrs.map(|a| a.ip().to_string()).collect())
        .unwrap_or_default()
}

fn localhost_first(port: u16) -> Option<SocketAddr> {
    ("localhost", port).to_socket_addrs().ok()?.next()
}

/// Where a process comes from, as far as loopcheck can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Provenance {
    /// A leftover of a test run: orphaned, and a test started it (it carries
    /// `LOOPCHECK_TEST`) or cargo built it (its executable lies in a target directory).
    Zombie {
        /// Why, in words.
        reason: String,
    },
    /// Built in a cargo target directory, with its parent still running: a live server of
    /// that workspace (`cargo run`, a suite in another terminal).
    WorkspaceBinary {
        /// The target directory its executable lies in.
        target_dir: PathBuf,
    },
    /// Nothing ties it to a test run.
    Unrelated,
}

/// Tells whether a process is a leftover of a test run (a zombie listener, LC002).
///
/// A process is a zombie when it is orphaned (its parent is gone: it was reparented to PID 1
/// or to a subreaper such as `systemd --user`) and either carries `LOOPCHECK_TEST` or runs an
/// executable from a cargo target directory. A process from a target directory whose parent
/// still runs is a live server of that workspace, never a zombie.
pub fn classify(process: &ProcessInfo) -> Provenance {
    let target_dir = process.exe.as_deref().and_then(cargo_target_dir);
    let orphan = orphaned(process);
    match (&process.loopcheck_test, target_dir, orphan) {
        (Some(test), _, Some(why)) => Provenance::Zombie {
            reason: format!(
                "it carries LOOPCHECK_TEST={test} and {why}, so the test that started it has ended"
            ),
        },
        (None, Some(dir), Some(why)) => {
            let what = if is_test_binary(process.exe.as_deref()) {
                "a test binary"
            } else {
                "a binary"
            };
            Provenance::Zombie {
                reason: format!("it is {what} built in {} and {why}", dir.display()),
            }
        }
        (_, Some(target_dir), None) => Provenance::WorkspaceBinary { target_dir },
        _ => Provenance::Unrelated,
    }
}

/// Why the process counts as orphaned, or `None` when it may still have the parent it was
/// started by.
///
/// A parent that is PID 1 or an init-like subreaper is ambiguous: a server started by
/// `docker run --init` or by an init script has that parent from birth. The process group
/// tells them apart: a child started by a test runner stays in the runner's group (nextest
/// gives each test process its own), and once the runner is gone the group has no leader. An
/// unknown parent (pid 0 after `docker exec`, an unreadable `stat`) never counts.
fn orphaned(process: &ProcessInfo) -> Option<String> {
    let ppid = process.ppid?;
    let adopter = if ppid == 1 {
        "PID 1".to_owned()
    } else {
        match ProcessInfo::read(ppid) {
            None if cfg!(target_os = "linux") => return Some(format!("its parent {ppid} is gone")),
            Some(parent) if is_reaper(&parent) => format!("the subreaper {ppid} `{}`", parent.name),
            _ => return None,
        }
    };
    let pgid = process.pgid?;
    if pgid == process.pid || ProcessInfo::read(pgid).is_some() {
        return None;
    }
    Some(format!(
        "its parent is gone (it was reparented to {adopter}) and so is the leader of its process group, pid {pgid}"
    ))
}

/// Init systems and container inits adopt orphans: a process whose parent is one of them may
/// have lost its real parent.
fn is_reaper(parent: &ProcessInfo) -> bool {
    matches!(
        parent.name.as_str(),
        "systemd"
            | "init"
            | "tini"
            | "dumb-init"
            | "docker-init"
            | "catatonit"
            | "s6-svscan"
            | "runit"
            | "launchd"
    )
}

/// The cargo target directory `exe` lies in: the nearest ancestor with cargo's `CACHEDIR.TAG`.
pub fn cargo_target_dir(exe: &Path) -> Option<PathBuf> {
    let exe = exe.to_str().map_or(exe.to_path_buf(), |s| {
        PathBuf::from(s.trim_end_matches(" (deleted)"))
    });
    exe.ancestors()
        .skip(1)
        .find(|dir| dir.join("CACHEDIR.TAG").is_file())
        .map(Path::to_path_buf)
}

/// Whether `exe` looks like a test binary cargo built: `deps/NAME-HASH`.
fn is_test_binary(exe: Option<&Path>) -> bool {
    let Some(exe) = exe else { return false };
    let in_deps = exe
        .parent()
        .and_then(Path::file_name)
        .is_some_and(|d| d == "deps");
    let hashed = exe
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.trim_end_matches(" (deleted)").rsplit_once('-'))
        .is_some_and(|(_, hash)| hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()));
    in_deps && hashed
}

/// How a diagnosis names `process`: pid, command, user, executable and test, with its `role`
/// in the diagnosis (`listener`, `child`, `zombie`).
///
/// ```
/// use loopcheck::{diagnose::process_ref, scan::ProcessInfo};
///
/// if let Some(me) = ProcessInfo::read(std::process::id()) {
///     assert_eq!(process_ref(&me, "listener").pid, std::process::id());
/// }
/// ```
pub fn process_ref(process: &ProcessInfo, role: &str) -> ProcessRef {
    ProcessRef {
        pid: process.pid,
        command: process.command(),
        user: process.user.clone(),
        exe: process.exe.clone(),
        test: process.loopcheck_test.clone(),
        role: role.to_owned(),
        binary: None,
        first_seen: None,
        last_seen: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_messages_name_their_symptom() {
        let cases = [
            (
                "called `Result::unwrap()` on an `Err` value: Os { code: 98, kind: AddrInUse, message: \"Address already in use\" }",
                Some(io::ErrorKind::AddrInUse),
            ),
            (
                "Connection refused (os error 111)",
                Some(io::ErrorKind::ConnectionRefused),
            ),
            ("deadline has elapsed", Some(io::ErrorKind::TimedOut)),
            ("early eof", Some(io::ErrorKind::ConnectionReset)),
            ("assertion `left == right` failed\n  left: 1\n right: 2", None),
        ];
        for (message, kind) in cases {
            assert_eq!(symptom(message), kind, "{message}");
        }
    }

    #[test]
    fn wildcards_and_mapped_addresses_overlap() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(overlaps(ip("0.0.0.0"), ip("127.0.0.1")));
        assert!(overlaps(ip("::"), ip("127.0.0.1")));
        assert!(overlaps(ip("::ffff:127.0.0.1"), ip("127.0.0.1")));
        assert!(overlaps(ip("127.0.0.1"), ip("0.0.0.0")));
        assert!(!overlaps(ip("127.0.0.2"), ip("127.0.0.1")));
        assert!(!overlaps(ip("::1"), ip("127.0.0.1")));
        assert!(!overlaps(ip("0.0.0.0"), ip("::1")));
    }

    #[test]
    fn unavailable_addresses_and_denied_ports_are_explained() {
        let err = io::Error::from(io::ErrorKind::AddrNotAvailable);
        let d = not_available("10.9.8.7:4000".parse().unwrap(), &err);
        assert_eq!(d.code, Code::LoopbackUnavailable);
        assert!(d.summary.contains("not an address of this host"), "{d}");
        // loopcheck:allow(LC010): test data the code under test parses or prints, never bound
        let d = not_available("127.3.2.1:4000".parse().unwrap(), &err);
        assert!(d.summary.contains("not configured"), "{d}");

        let err = io::Error::from(io::ErrorKind::PermissionDenied);
        // loopcheck:allow(LC010): test data the code under test parses or prints, never bound
        let d = permission_denied("127.0.0.1:80".parse().unwrap(), &err, None);
        assert_eq!(d.code, Code::PermissionDenied);
        if unprivileged_port_start() > 80 {
            assert!(d.summary.contains("privileged"), "{d}");
        }
        let mut policy = PortPolicy::current().unwrap().clone();
        policy.reserved = vec![crate::policy::PortRange::new(50000, 50059)];
        // loopcheck:allow(LC010): test data the code under test parses or prints, never bound
        let d = permission_denied("127.0.0.1:50010".parse().unwrap(), &err, Some(&policy));
        assert!(
            d.summary.contains("excluded or reserved range 50000-50059"),
            "{d}"
        );
        // loopcheck:allow(LC010): test data the code under test parses or prints, never bound
        let d = permission_denied("127.0.0.1:40000".parse().unwrap(), &err, Some(&policy));
        assert!(d.fix.contains("security policy"), "{d}");
    }

    #[test]
    fn test_binaries_are_recognised() {
        assert!(is_test_binary(Some(Path::new(
            "/w/target/debug/deps/alloc-0123456789abcdef"
        ))));
        assert!(is_test_binary(Some(Path::new(
            "/w/target/debug/deps/alloc-0123456789abcdef (deleted)"
        ))));
        assert!(!is_test_binary(Some(Path::new("/w/target/debug/alloc"))));
        assert!(!is_test_binary(Some(Path::new("/usr/bin/python3"))));
    }
}

/// A listener held by a leftover of a test run (LC002).
#[derive(Debug, Clone)]
pub struct ZombieListener {
    /// The listening socket.
    pub socket: SocketEntry,
    /// The process holding it.
    pub process: ProcessInfo,
    /// Why it counts as a leftover.
    pub reason: String,
}

/// Every listener in `table` whose holder [`classify`] calls a zombie, one entry per process
/// and address.
///
/// ```
/// let table = loopcheck::scan::scan_with(&loopcheck::scan::ScanOptions::listeners())?;
/// for zombie in loopcheck::diagnose::zombie_listeners(&table) {
///     println!("{} held by pid {}: {}", zombie.socket.local, zombie.process.pid, zombie.reason);
/// }
/// # Ok::<(), loopcheck::scan::ScanError>(())
/// ```
pub fn zombie_listeners(table: &SocketTable) -> Vec<ZombieListener> {
    let mut verdicts: std::collections::HashMap<u32, Provenance> = std::collections::HashMap::new();
    let mut zombies = Vec::new();
    for socket in table.sockets.iter().filter(|s| s.is_listener()) {
        for process in table.owners(socket) {
            let verdict = verdicts.entry(process.pid).or_insert_with(|| classify(process));
            if let Provenance::Zombie { reason } = verdict {
                zombies.push(ZombieListener {
                    socket: socket.clone(),
                    process: process.clone(),
                    reason: reason.clone(),
                });
            }
        }
    }
    zombies
}
