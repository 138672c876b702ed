//! A snapshot of the host's TCP and UDP sockets (IPv4 and IPv6, every state) with the
//! processes that hold them.
//!
//! [`scan`] takes everything; [`scan_with`] narrows it ([`ScanOptions`]), which is what makes
//! a scan cheap: listeners only, one protocol, some ports, with or without owners.
//!
//! ```
//! use loopcheck::scan::{self, ScanOptions};
//!
//! let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
//! let port = listener.local_addr()?.port();
//!
//! let options = ScanOptions { ports: Some(vec![port]), ..ScanOptions::listeners() };
//! let table = scan::scan_with(&options)?;
//! for socket in table.listeners_on(port) {
//!     for process in table.owners(socket) {
//!         println!("{} {} is held by pid {}: {}", socket.protocol, socket.local, process.pid, process.command());
//!     }
//! }
//! for limitation in &table.limitations {
//!     println!("note: {limitation}");
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Backends
//!
//! | platform | backend | notes |
//! |---|---|---|
//! | Linux | [`Backend::SockDiag`] | netlink, like `ss`; owners from `/proc/PID/fd` |
//! | Linux, netlink refused | [`Backend::ProcNet`] | `/proc/net/{tcp,tcp6,udp,udp6}`; slower with many sockets |
//! | macOS, BSDs | [`Backend::Lsof`] | `lsof` found on `PATH`; sees only processes it may inspect |
//! | Windows | [`Backend::Netstat`] | `netstat -ano` and `tasklist`; no uid, inode or UDP state |
//!
//! # What a scan cannot see
//!
//! An unknown owner is a normal result, not an error: a `TIME_WAIT` socket belongs to no
//! process, other users' processes hide their descriptors from an unprivileged scan, and some
//! sandboxes' PID 1 hides them even from root. Such sockets are listed with empty
//! [`pids`](SocketEntry::pids), never dropped, and [`SocketTable::limitations`] says what
//! was hidden. The snapshot is not atomic: a socket opened or closed during the scan may or
//! may not appear.

mod addr;
mod command;
mod error;
mod lsof;
#[cfg_attr(
    not(windows),
    allow(
        dead_code,
        reason = "the runner is Windows-only; the parsers are tested everywhere"
    )
)]
mod netstat;
#[cfg(target_os = "linux")]
mod owners;
#[cfg_attr(
    not(target_os = "linux"),
    allow(dead_code, reason = "the parser is tested everywhere")
)]
mod proc_net;
#[cfg_attr(
    not(target_os = "linux"),
    allow(dead_code, reason = "the parsers are tested everywhere")
)]
mod process;
#[cfg(target_os = "linux")]
mod procfs;
#[cfg(target_os = "linux")]
mod sock_diag;
mod table;
#[cfg(target_os = "linux")]
mod watch;

#[cfg(target_os = "linux")]
pub(crate) use sock_diag::tcp_listening;

use std::collections::BTreeMap;

pub use error::ScanError;
pub use process::ProcessInfo;
/// Only `cargo loopcheck` reports a run's leftover processes and shows command lines on one
/// line as the scanner does; hidden from the docs for that reason.
#[doc(hidden)]
pub use process::{RunProcess, one_line, processes_of_run};
pub use table::{Backend, Protocol, SocketEntry, SocketState, SocketTable};
/// Only `cargo loopcheck test` samples sockets (its socket timeline); hidden from the docs for
/// that reason.
#[cfg(target_os = "linux")]
#[doc(hidden)]
pub use watch::Watch;

/// What [`scan_with`] collects.
///
/// Start from [`ScanOptions::all`] or [`ScanOptions::listeners`] and change fields with
/// struct update syntax. `Default` selects both protocols (leaving `tcp` and `udp` both
/// `false` means no protocol filter) but does *not* resolve owners.
///
/// ```
/// use loopcheck::scan::{self, ScanOptions};
///
/// // TCP listeners on two ports, without owners: the cheapest useful scan.
/// let options = ScanOptions { tcp: true, listen_only: true, ports: Some(vec![8080, 8443]), ..Default::default() };
/// let table = scan::scan_with(&options)?;
/// assert!(table.sockets.iter().all(|s| s.is_listener()));
/// # Ok::<(), scan::ScanError>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct ScanOptions {
    /// Include TCP sockets.
    pub tcp: bool,
    /// Include UDP sockets.
    pub udp: bool,
    /// Only sockets that accept new peers, as `ss -l` lists them: TCP sockets in
    /// [`SocketState::Listen`] and unconnected UDP sockets (see
    /// [`SocketEntry::is_listener`]). On Linux the kernel skips the other states, so
    /// thousands of `TIME_WAIT` sockets cost nothing.
    pub listen_only: bool,
    /// Only sockets whose local port is in this list (`Some(vec![])` selects nothing).
    pub ports: Option<Vec<u16>>,
    /// Find the processes holding each socket ([`SocketEntry::pids`],
    /// [`SocketTable::processes`]). On Linux this walks `/proc/*/fd`, the costly part of a
    /// scan; it stops as soon as every selected socket has an owner.
    pub owners: bool,
    /// Use this backend and no other (no fallback), for tests; `None` picks the platform's.
    pub backend: Option<Backend>,
}

impl ScanOptions {
    /// Everything: TCP and UDP, all states, all ports, with owners. What [`scan`] uses.
    ///
    /// ```
    /// let options = loopcheck::scan::ScanOptions::all();
    /// assert!(options.tcp && options.udp && options.owners && !options.listen_only);
    /// ```
    pub fn all() -> ScanOptions {
        ScanOptions {
            tcp: true,
            udp: true,
            listen_only: false,
            ports: None,
            owners: true,
            backend: None,
        }
    }

    /// Listening TCP and unconnected UDP sockets, with owners: who holds which port.
    ///
    /// ```
    /// let options = loopcheck::scan::ScanOptions::listeners();
    /// assert!(options.listen_only && options.owners);
    /// ```
    pub fn listeners() -> ScanOptions {
        ScanOptions {
            listen_only: true,
            ..ScanOptions::all()
        }
    }
}

/// Takes a snapshot of every TCP and UDP socket with its owners: [`scan_with`] with
/// [`ScanOptions::all`].
///
/// ```
/// let table = loopcheck::scan::scan()?;
/// println!("{} sockets from {}", table.sockets.len(), table.backend);
/// # Ok::<(), loopcheck::scan::ScanError>(())
/// ```
///
/// # Errors
///
/// When no backend can list sockets: see [`scan_with`].
pub fn scan() -> Result<SocketTable, ScanError> {
    scan_with(&ScanOptions::all())
}

/// Takes a snapshot of the sockets selected by `options`.
///
/// On Linux it asks the kernel over netlink and falls back to `/proc/net` when netlink is
/// refused (the fallback is named in [`SocketTable::limitations`]); elsewhere it runs the
/// platform's tool. Owners are resolved only for the sockets kept after filtering.
///
/// ```
/// use loopcheck::scan::{self, Protocol, ScanOptions};
///
/// let socket = std::net::UdpSocket::bind("127.0.0.1:0")?;
/// let port = socket.local_addr()?.port();
/// let options = ScanOptions { udp: true, ports: Some(vec![port]), owners: true, ..Default::default() };
/// let table = scan::scan_with(&options)?;
/// let entry = &table.sockets[0];
/// assert_eq!(entry.protocol, Protocol::Udp);
/// assert_eq!(entry.pids, [std::process::id()]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
///
/// [`ScanError::NoBackend`] when the platform has no usable backend (no `lsof` on macOS);
/// with a forced [`backend`](ScanOptions::backend), that backend's failure:
/// [`ScanError::Unsupported`] on the wrong platform, [`ScanError::SockDiag`],
/// [`ScanError::Read`], [`ScanError::ProgramNotFound`], and the tool errors.
pub fn scan_with(options: &ScanOptions) -> Result<SocketTable, ScanError> {
    let selection = Selection::new(options);
    let mut table = match options.backend {
        Some(backend) => collect(backend, &selection)?,
        None => collect_default(&selection)?,
    };
    table.sockets.retain(|s| selection.keeps(s));

    #[cfg(target_os = "linux")]
    if selection.owners && matches!(table.backend, Backend::SockDiag | Backend::ProcNet) {
        linux::resolve_owners(&mut table);
    }
    // Backends that report owners anyway keep them; drop processes no kept socket names.
    let mut named: Vec<u32> = table
        .sockets
        .iter()
        .flat_map(|s| s.pids.iter().copied())
        .collect();
    named.sort_unstable();
    table.processes.retain(|pid, _| named.binary_search(pid).is_ok());

    table.sockets.sort_by(|a, b| {
        (a.protocol, a.local.port(), a.local.ip(), a.remote, a.state).cmp(&(
            b.protocol,
            b.local.port(),
            b.local.ip(),
            b.remote,
            b.state,
        ))
    });
    Ok(table)
}

/// The normalized filter of a scan.
struct Selection {
    tcp: bool,
    udp: bool,
    listen_only: bool,
    /// Sorted and deduplicated.
    ports: Option<Vec<u16>>,
    #[cfg_attr(
        not(any(target_os = "linux", windows)),
        allow(dead_code, reason = "lsof reports owners anyway")
    )]
    owners: bool,
}

impl Selection {
    fn new(options: &ScanOptions) -> Selection {
        let any = options.tcp || options.udp;
        let ports = options.ports.clone().map(|mut ports| {
            ports.sort_unstable();
            ports.dedup();
            ports
        });
        Selection {
            tcp: options.tcp || !any,
            udp: options.udp || !any,
            listen_only: options.listen_only,
            ports,
            owners: options.owners,
        }
    }

    fn keeps(&self, socket: &SocketEntry) -> bool {
        let protocol = match socket.protocol {
            Protocol::Tcp => self.tcp,
            Protocol::Udp => self.udp,
        };
        protocol
            && (!self.listen_only || socket.is_listener())
            && self
                .ports
                .as_ref()
                .is_none_or(|ports| ports.binary_search(&socket.local.port()).is_ok())
    }

    fn selects_nothing(&self) -> bool {
        self.ports.as_ref().is_some_and(Vec::is_empty)
    }
}

fn empty_table(backend: Backend) -> SocketTable {
    SocketTable {
        sockets: Vec::new(),
        processes: BTreeMap::new(),
        backend,
        limitations: Vec::new(),
    }
}

/// The platform's default backends, in order.
fn collect_default(selection: &Selection) -> Result<SocketTable, ScanError> {
    #[cfg(target_os = "linux")]
    {
        match collect(Backend::SockDiag, selection) {
            Ok(table) => Ok(table),
            Err(ScanError::SockDiag(cause)) => {
                let mut table = collect(Backend::ProcNet, selection)?;
                table.limitations.insert(
                    0,
                    format!(
                        "netlink sock_diag is unavailable (`{cause}`), so sockets were read from `/proc/net`"
                    ),
                );
                Ok(table)
            }
            Err(other) => Err(other),
        }
    }
    #[cfg(windows)]
    {
        collect(Backend::Netstat, selection)
    }
    #[cfg(not(any(target_os = "linux", windows)))]
    {
        match collect(Backend::Lsof, selection) {
            Err(ScanError::ProgramNotFound { .. }) => Err(ScanError::NoBackend),
            other => other,
        }
    }
}

/// Runs one backend, without owners (Linux resolves them afterwards) or filtering beyond
/// what the backend does cheaply.
fn collect(backend: Backend, selection: &Selection) -> Result<SocketTable, ScanError> {
    let mut table = empty_table(backend);
    match backend {
        #[cfg(target_os = "linux")]
        Backend::SockDiag => {
            if selection.selects_nothing() {
                return Ok(table);
            }
            let notes = sock_diag::dump(&linux::queries(selection), &mut table.sockets)
                .map_err(ScanError::SockDiag)?;
            if notes.interrupted {
                table.limitations.push(
                    "the kernel's socket tables changed during the scan: a socket may be missing or listed twice"
                        .to_owned(),
                );
            }
        }
        #[cfg(target_os = "linux")]
        Backend::ProcNet => {
            if selection.selects_nothing() {
                return Ok(table);
            }
            proc_net::read(selection.tcp, selection.udp, &mut table.sockets)?;
            if selection.tcp {
                table.limitations.push(
                    "`/proc/net` does not report a listener's maximum backlog: `send_queue` is 0".to_owned(),
                );
            }
        }
        Backend::Lsof => {
            if selection.selects_nothing() {
                return Ok(table);
            }
            lsof::scan(&mut table, selection.tcp, selection.udp, selection.listen_only)?;
        }
        #[cfg(windows)]
        Backend::Netstat => {
            if selection.selects_nothing() {
                return Ok(table);
            }
            netstat::scan(&mut table, selection.owners)?;
        }
        unsupported => {
            return Err(ScanError::Unsupported { backend: unsupported });
        }
    }
    Ok(table)
}

#[cfg(target_os = "linux")]
mod linux {
    use std::collections::BTreeSet;

    use super::process::ProcessReader;
    use super::procfs::ProcFs;
    use super::sock_diag::{ALL_STATES, Family, Query, TCP_LISTEN_BIT, UDP_UNCONNECTED_BIT};
    use super::{Protocol, Selection, SocketTable, owners};

    /// One netlink dump per selected protocol and family, one for both families for TCP;
    /// listeners only means the kernel walks the listening tables alone.
    pub(super) fn queries(selection: &Selection) -> Vec<Query> {
        let mut queries = Vec::with_capacity(3);
        for (protocol, wanted, listening) in [
            (Protocol::Tcp, selection.tcp, TCP_LISTEN_BIT),
            (Protocol::Udp, selection.udp, UDP_UNCONNECTED_BIT),
        ] {
            if !wanted {
                continue;
            }
            let states = if selection.listen_only {
                listening
            } else {
                ALL_STATES
            };
            // TCP asks for both families in one dump: one walk of each table instead of two.
            let families: &[Family] = match protocol {
                Protocol::Tcp => &[Family::Both],
                Protocol::Udp => &[Family::V4, Family::V6],
            };
            for &family in families {
                queries.push(Query {
                    protocol,
                    family,
                    states,
                });
            }
        }
        queries
    }

    /// Fills [`SocketEntry::pids`](super::SocketEntry::pids) and the process table from
    /// `/proc`, and says what stayed hidden.
    pub(super) fn resolve_owners(table: &mut SocketTable) {
        let proc = match ProcFs::open() {
            Ok(proc) => proc,
            Err(err) => {
                table
                    .limitations
                    .push(format!("owners are unknown: `/proc` cannot be opened (`{err}`)"));
                return;
            }
        };
        let found = owners::find(
            &proc,
            table.sockets.iter().filter_map(|s| s.inode),
            &[std::process::id()],
            true,
        );
        let mut unresolved = 0usize;
        let mut holders = BTreeSet::new();
        for socket in &mut table.sockets {
            let Some(inode) = socket.inode else { continue };
            match found.pids.get(&inode) {
                Some(pids) if !pids.is_empty() => {
                    socket.pids.clone_from(pids);
                    holders.extend(pids.iter().copied());
                }
                _ => unresolved += 1,
            }
        }
        let mut reader = ProcessReader::new(&proc);
        for pid in holders {
            if let Some(info) = reader.read(pid) {
                table.processes.insert(pid, info);
            }
        }
        if unresolved > 0 {
            let sockets = plural(unresolved, "socket", "sockets");
            table.limitations.push(if found.hidden_processes > 0 {
                format!(
                    "owners of {unresolved} {sockets} are hidden: the file descriptors of {} {} are unreadable \
                     (other users' processes, or PID 1's)",
                    found.hidden_processes,
                    plural(found.hidden_processes, "process", "processes"),
                )
            } else {
                format!("owners of {unresolved} {sockets} were not found: they closed or changed hands during the scan")
            });
        }
    }

    fn plural(count: usize, one: &'static str, many: &'static str) -> &'static str {
        if count == 1 { one } else { many }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(protocol: Protocol, local: &str, remote: Option<&str>, state: SocketState) -> SocketEntry {
        SocketEntry {
            protocol,
            local: local.parse().unwrap(),
            remote: remote.map(|r| r.parse().unwrap()),
            state,
            recv_queue: 0,
            send_queue: 0,
            uid: None,
            inode: None,
            pids: Vec::new(),
        }
    }

    #[test]
    fn selection_filters() {
        // loopcheck:allow(LC010): test data the code under test parses or prints, never bound
        let listener = entry(Protocol::Tcp, "127.0.0.1:80", None, SocketState::Listen);
        let connected = entry(
            Protocol::Tcp,
            // loopcheck:allow(LC010): test data the code under test parses or prints, never bound
            "127.0.0.1:80",
            // loopcheck:allow(LC010): test data the code under test parses or prints, never bound
            Some("127.0.0.1:5000"),
            SocketState::Established,
        );
        // loopcheck:allow(LC010): test data the code under test parses or prints, never bound
        let udp = entry(Protocol::Udp, "[::1]:53", None, SocketState::Close);
        let udp_connected = entry(
            Protocol::Udp,
            // loopcheck:allow(LC010): test data the code under test parses or prints, never bound
            "[::1]:54",
            // loopcheck:allow(LC010): test data the code under test parses or prints, never bound
            Some("[::1]:53"),
            SocketState::Established,
        );

        let all = Selection::new(&ScanOptions::all());
        assert!(
            [&listener, &connected, &udp, &udp_connected]
                .iter()
                .all(|s| all.keeps(s))
        );

        let default = Selection::new(&ScanOptions::default());
        assert!(default.tcp && default.udp, "no protocol chosen means both");

        let listeners = Selection::new(&ScanOptions::listeners());
        assert!(listeners.keeps(&listener) && listeners.keeps(&udp));
        assert!(!listeners.keeps(&connected) && !listeners.keeps(&udp_connected));

        let tcp_80 = Selection::new(&ScanOptions {
            tcp: true,
            ports: Some(vec![80, 80, 1]),
            ..Default::default()
        });
        assert_eq!(tcp_80.ports.as_deref(), Some(&[1, 80][..]));
        assert!(tcp_80.keeps(&listener) && tcp_80.keeps(&connected) && !tcp_80.keeps(&udp));

        let nothing = Selection::new(&ScanOptions {
            ports: Some(Vec::new()),
            ..ScanOptions::all()
        });
        assert!(nothing.selects_nothing() && !nothing.keeps(&listener));
    }

    #[test]
    fn empty_port_list_scans_nothing() {
        let options = ScanOptions {
            ports: Some(Vec::new()),
            ..ScanOptions::all()
        };
        let table = scan_with(&options).expect("an empty selection cannot fail");
        assert!(table.sockets.is_empty() && table.processes.is_empty());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn platform_mismatch_is_reported() {
        let options = ScanOptions {
            backend: Some(Backend::Netstat),
            ..ScanOptions::all()
        };
        let err = scan_with(&options).unwrap_err();
        assert!(matches!(
            err,
            ScanError::Unsupported {
                backend: Backend::Netstat
            }
        ));
        assert_eq!(
            err.to_string(),
            "the `netstat` socket backend is not available on this platform"
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn queries_follow_the_selection() {
        let queries = linux::queries(&Selection::new(&ScanOptions::listeners()));
        // TCP over both families in one query, UDP one per family.
        assert_eq!(queries.len(), 3);
        assert_eq!(queries[0].family, sock_diag::Family::Both);
        assert!(queries.iter().all(|q| q.states.count_ones() == 1));
        let queries = linux::queries(&Selection::new(&ScanOptions {
            udp: true,
            ..Default::default()
        }));
        assert_eq!(queries.len(), 2);
        assert!(
            queries
                .iter()
                .all(|q| q.protocol == Protocol::Udp && q.states == u32::MAX)
        );
    }
}
