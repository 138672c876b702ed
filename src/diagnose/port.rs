//! The view of one address's port from one scan, and what it says: who holds the port
//! (LC001, LC002, LC003, LC004), that nothing answers (LC005), why connections time out or
//! are never accepted (LC006), with the lease and the scan's limits as evidence.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::address::overlaps;
use super::provenance::{Provenance, classify, process_ref};
use crate::lease::{LeaseInfo, LeaseStatus};
use crate::policy::PortPolicy;
use crate::report::{Code, Diagnosis};
use crate::scan::{self, ProcessInfo, ScanOptions, SocketEntry, SocketState, SocketTable};

/// What one scan says about one address's port.
pub(super) struct Port {
    pub(super) addr: SocketAddr,
    pub(super) table: Option<SocketTable>,
    pub(super) scan_error: Option<String>,
    pub(super) lease: Option<LeaseInfo>,
    pub(super) policy: Option<&'static PortPolicy>,
}

impl Port {
    pub(super) fn scan(addr: SocketAddr) -> Port {
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

    pub(super) fn sockets(&self) -> impl Iterator<Item = &SocketEntry> {
        self.table.iter().flat_map(|t| t.on_port(self.addr.port()))
    }

    pub(super) fn listeners(&self) -> impl Iterator<Item = &SocketEntry> {
        self.sockets().filter(|s| s.is_listener())
    }

    pub(super) fn listeners_at_addr(&self) -> impl Iterator<Item = &SocketEntry> {
        self.listeners()
            .filter(|s| overlaps(s.local.ip(), self.addr.ip()))
    }

    pub(super) fn count_state(&self, state: SocketState) -> usize {
        self.sockets().filter(|s| s.state == state).count()
    }

    pub(super) fn owners<'a>(&'a self, socket: &'a SocketEntry) -> Vec<&'a ProcessInfo> {
        self.table.iter().flat_map(|t| t.owners(socket)).collect()
    }

    /// Adds the owners of every listener at the address, or says why none is known.
    pub(super) fn describe_listeners(&self, d: &mut Diagnosis, role: &str) {
        let listeners: Vec<&SocketEntry> = self.listeners().collect();
        for socket in listeners {
            self.describe_socket(d, socket, role);
        }
    }

    pub(super) fn describe_socket(&self, d: &mut Diagnosis, socket: &SocketEntry, role: &str) {
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

    pub(super) fn describe_lease(&self, d: &mut Diagnosis) {
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

    pub(super) fn note_scan_limits(&self, d: &mut Diagnosis) {
        if let Some(err) = &self.scan_error {
            d.evidence
                .push(format!("the socket table could not be read: {err}"));
        }
        if let Some(table) = &self.table {
            d.evidence.extend(table.limitations.iter().cloned());
        }
    }

    pub(super) fn in_use(&self, err: &io::Error, reuses_address: bool) -> Diagnosis {
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
    pub(super) fn holder_diagnosis(&self, listener: &SocketEntry, err: &io::Error) -> Diagnosis {
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

    pub(super) fn timeout(&self, err: &io::Error) -> Diagnosis {
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
    pub(super) fn timeout_cause(&self, err: &io::Error) -> Option<Diagnosis> {
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
    pub(super) fn answered(&self, err: Option<&io::Error>) -> Diagnosis {
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
pub(super) fn never_accepted(stream: &TcpStream, addr: SocketAddr, timeout: Duration) -> Option<Diagnosis> {
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
