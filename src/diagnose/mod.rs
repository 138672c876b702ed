//! Turning a socket error into a diagnosis: which process, which test, what to do.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::policy::PortPolicy;
use crate::report::{Code, Diagnosis, Severity};
use crate::scan::{SocketEntry, SocketState};

mod address;
mod port;
mod provenance;
mod remote;
mod symptom;

use address::{localhost_all, localhost_first, not_available, overlaps, permission_denied};
use port::{Port, never_accepted};
pub use provenance::{Provenance, classify};
/// Only `cargo loopcheck` lists zombie listeners (`reap`, `doctor`), finds a binary's target
/// directory and names processes in its own diagnoses; hidden from the docs for that reason.
#[doc(hidden)]
pub use provenance::{ZombieListener, cargo_target_dir, process_ref, zombie_listeners};
pub use symptom::symptom;

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
