//! The report model shared by the library and `cargo loopcheck`: diagnostic codes and
//! diagnoses. Human text, JSON, JUnit, GitHub and SARIF output are all renderings of these.

use std::fmt;
use std::net::SocketAddr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A stable diagnostic code. Each has a section in `docs/diagnostics.md`, shown by
/// `cargo loopcheck explain CODE`.
///
/// ```
/// use loopcheck::report::Code;
///
/// assert_eq!(Code::PortInUse.to_string(), "LC001");
/// assert_eq!(Code::PortInUse.name(), "port-in-use");
/// assert_eq!(Code::parse("zombie-listener"), Some(Code::ZombieListener));
/// assert_eq!(Code::parse("lc003"), Some(Code::TimeWait));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Code {
    /// LC001: another process listens on or holds the port.
    PortInUse,
    /// LC002: the holder is a leftover of an earlier test run.
    ZombieListener,
    /// LC003: only `TIME_WAIT` connections remain on the port.
    TimeWait,
    /// LC004: an outgoing connection took the port as its source port.
    EphemeralSteal,
    /// LC005: nothing listens at the address.
    ConnectionRefused,
    /// LC006: a listener is present but does not accept, or packets are dropped.
    ConnectTimeout,
    /// LC007: `localhost` resolves to another address than the server's.
    LocalhostResolution,
    /// LC008: the address is not configured on this host.
    LoopbackUnavailable,
    /// LC009: binding needs a privilege, or the port is excluded.
    PermissionDenied,
    /// LC010: a literal port in test code.
    HardCodedPort,
    /// LC011: a test binds a wildcard address.
    WildcardBind,
    /// LC012: a test ended and one of its ports still listens.
    LeakedListener,
    /// LC013: a test ended and a child it spawned is still alive.
    LeakedChild,
    /// LC014: racy port allocation (`portpicker`, bind-probe-drop-rebind).
    RacyAllocation,
    /// LC015: a lease whose holder died; the port is free again.
    StaleLease,
}

impl Code {
    /// Every code, in order.
    pub const ALL: [Code; 15] = [
        Code::PortInUse,
        Code::ZombieListener,
        Code::TimeWait,
        Code::EphemeralSteal,
        Code::ConnectionRefused,
        Code::ConnectTimeout,
        Code::LocalhostResolution,
        Code::LoopbackUnavailable,
        Code::PermissionDenied,
        Code::HardCodedPort,
        Code::WildcardBind,
        Code::LeakedListener,
        Code::LeakedChild,
        Code::RacyAllocation,
        Code::StaleLease,
    ];

    /// The number of the code: 1 for LC001.
    pub fn number(self) -> u16 {
        Code::ALL
            .iter()
            .position(|&c| c == self)
            .map_or(0, |i| i as u16 + 1)
    }

    /// The code's stable name, such as `port-in-use`.
    pub fn name(self) -> &'static str {
        match self {
            Code::PortInUse => "port-in-use",
            Code::ZombieListener => "zombie-listener",
            Code::TimeWait => "time-wait",
            Code::EphemeralSteal => "ephemeral-steal",
            Code::ConnectionRefused => "connection-refused",
            Code::ConnectTimeout => "connect-timeout",
            Code::LocalhostResolution => "localhost-resolution",
            Code::LoopbackUnavailable => "loopback-unavailable",
            Code::PermissionDenied => "permission-denied",
            Code::HardCodedPort => "hard-coded-port",
            Code::WildcardBind => "wildcard-bind",
            Code::LeakedListener => "leaked-listener",
            Code::LeakedChild => "leaked-child",
            Code::RacyAllocation => "racy-allocation",
            Code::StaleLease => "stale-lease",
        }
    }

    /// How serious a finding with this code is by default.
    pub fn severity(self) -> Severity {
        match self {
            Code::StaleLease => Severity::Info,
            Code::LeakedListener | Code::LeakedChild | Code::RacyAllocation => Severity::Warning,
            _ => Severity::Error,
        }
    }

    /// A code from `LC001`, `lc001` or its name `port-in-use`.
    pub fn parse(text: &str) -> Option<Code> {
        let text = text.trim();
        Code::ALL.into_iter().find(|code| {
            code.to_string().eq_ignore_ascii_case(text) || code.name().eq_ignore_ascii_case(text)
        })
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LC{:03}", self.number())
    }
}

impl Serialize for Code {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Code {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Code::parse(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown diagnostic code `{text}`")))
    }
}

/// How serious a diagnosis or finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Informational: nothing is wrong now.
    Info,
    /// Worth fixing; does not fail a run by itself.
    Warning,
    /// Makes tests fail, or will.
    Error,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        })
    }
}

/// A process named by a diagnosis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessRef {
    /// Its process id.
    pub pid: u32,
    /// Its command line, or its name where the command line is hidden.
    pub command: String,
    /// The user it runs as, where known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Its executable, where readable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exe: Option<std::path::PathBuf>,
    /// The `LOOPCHECK_TEST` it carries: the test that started it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test: Option<String>,
    /// Its role in the diagnosis, such as `listener` or `zombie`.
    pub role: String,
    /// The test binary it ran as, or was started by, where known (`cargo loopcheck test`'s
    /// socket timeline: nextest's binary id, or the binary cargo test ran).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binary: Option<String>,
    /// When the socket timeline first saw it hold the address, in seconds after the run
    /// started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_seen: Option<f64>,
    /// When the socket timeline last saw it hold the address, in seconds after the run
    /// started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<f64>,
}

/// What loopcheck concluded about a socket failure or an address.
///
/// `Display` renders it for people, shaped like a compiler message; `Serialize` renders it for
/// programs, with stable snake_case fields.
///
/// ```
/// use std::io;
/// let listener = loopcheck::tcp_listener()?;
/// let addr = listener.local_addr()?;
/// let err = std::net::TcpListener::bind(addr).unwrap_err();
/// let diagnosis = loopcheck::diagnose(&err, addr);
/// assert_eq!(diagnosis.code.to_string(), "LC001");
/// assert_eq!(diagnosis.processes[0].pid, std::process::id());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Serialize)]
pub struct Diagnosis {
    /// The diagnostic code.
    pub code: Code,
    /// The code's name, such as `port-in-use`.
    pub name: &'static str,
    /// How serious it is.
    pub severity: Severity,
    /// The address the diagnosis is about.
    pub addr: Option<SocketAddr>,
    /// One line naming the concrete address and cause.
    pub summary: String,
    /// What was seen: sockets, processes, leases, resolutions; one line each.
    pub evidence: Vec<String>,
    /// The processes involved.
    pub processes: Vec<ProcessRef>,
    /// What to do: the exact command or API.
    pub fix: String,
}

impl Diagnosis {
    /// A diagnosis with `code`, about `addr`.
    pub fn new(
        code: Code,
        addr: Option<SocketAddr>,
        summary: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Diagnosis {
            code,
            name: code.name(),
            severity: code.severity(),
            addr,
            summary: summary.into(),
            evidence: Vec::new(),
            processes: Vec::new(),
            fix: fix.into(),
        }
    }

    /// The diagnostic code.
    pub fn code(&self) -> Code {
        self.code
    }

    /// The process that holds the address, if the diagnosis names one.
    pub fn holder(&self) -> Option<&ProcessRef> {
        self.processes.first()
    }
}

/// A diagnosis as JSON carries it (a run record, `--format json`); its name follows from its code.
#[derive(Deserialize)]
struct DiagnosisFields {
    code: Code,
    severity: Severity,
    addr: Option<SocketAddr>,
    summary: String,
    #[serde(default)]
    evidence: Vec<String>,
    #[serde(default)]
    processes: Vec<ProcessRef>,
    fix: String,
}

impl<'de> Deserialize<'de> for Diagnosis {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let fields = DiagnosisFields::deserialize(deserializer)?;
        Ok(Diagnosis {
            code: fields.code,
            name: fields.code.name(),
            severity: fields.severity,
            addr: fields.addr,
            summary: fields.summary,
            evidence: fields.evidence,
            processes: fields.processes,
            fix: fields.fix,
        })
    }
}

impl fmt::Display for Diagnosis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}[{}]: {}", self.severity, self.code, self.summary)?;
        if let Some(addr) = self.addr {
            writeln!(f, "  --> {addr}")?;
        }
        for line in &self.evidence {
            writeln!(f, "   = note: {line}")?;
        }
        write!(f, "   = help: {}", self.fix)
    }
}

/// A transport protocol.
///
/// ```
/// use loopcheck::scan::Protocol;
///
/// assert_eq!(Protocol::Tcp.to_string(), "tcp");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl Protocol {
    /// The lower-case name, as serialized: `"tcp"` or `"udp"`.
    ///
    /// ```
    /// assert_eq!(loopcheck::scan::Protocol::Udp.as_str(), "udp");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_numbered_in_order_and_parse_back() {
        for (i, code) in Code::ALL.into_iter().enumerate() {
            assert_eq!(code.to_string(), format!("LC{:03}", i + 1));
            assert_eq!(Code::parse(&code.to_string()), Some(code));
            assert_eq!(Code::parse(code.name()), Some(code));
        }
        assert_eq!(Code::parse("LC016"), None);
        assert_eq!(Code::parse(""), None);
    }

    #[test]
    fn a_diagnosis_renders_like_a_compiler_message_and_as_json() {
        let addr: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let mut diagnosis = Diagnosis::new(
            Code::PortInUse,
            Some(addr),
            "127.0.0.1:8080 is in use by pid 42 (server)",
            "stop it",
        );
        diagnosis
            .evidence
            .push("tcp listen 127.0.0.1:8080 owned by pid 42".into());
        assert_eq!(
            diagnosis.to_string(),
            "error[LC001]: 127.0.0.1:8080 is in use by pid 42 (server)\n  --> 127.0.0.1:8080\n   = note: tcp listen 127.0.0.1:8080 owned by pid 42\n   = help: stop it"
        );
        let json = serde_json::to_value(&diagnosis).unwrap();
        assert_eq!(json["code"], "LC001");
        assert_eq!(json["name"], "port-in-use");
        assert_eq!(json["addr"], "127.0.0.1:8080");
        assert_eq!(json["severity"], "error");
        let back: Diagnosis = serde_json::from_value(json).unwrap();
        assert_eq!(back.to_string(), diagnosis.to_string());
        assert_eq!(back.name, "port-in-use");
        assert!(
            serde_json::from_str::<Diagnosis>(
                r#"{"code":"LC999","severity":"error","addr":null,"summary":"","fix":""}"#
            )
            .is_err()
        );
    }
}

/// One finding of `cargo loopcheck check` or `lint`: a diagnosis tied to a place in the
/// code or to a process.
// Hidden from the docs: only `cargo loopcheck` makes and renders findings; it lives here with
// the other report types the CLI's JSON is made of.
#[doc(hidden)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The diagnostic code.
    pub code: Code,
    /// The code's name.
    pub name: &'static str,
    /// How serious it is.
    pub severity: Severity,
    /// What was found, in one line.
    pub message: String,
    /// The file, relative to the workspace root.
    pub file: Option<String>,
    /// The line, from 1.
    pub line: Option<u32>,
    /// The column, from 1.
    pub column: Option<u32>,
    /// The port involved.
    pub port: Option<u16>,
    /// The process involved.
    pub pid: Option<u32>,
    /// The command line of that process.
    pub command: Option<String>,
    /// What to do instead.
    pub suggestion: Option<String>,
}

impl Finding {
    /// A finding with `code` and `message`; the other fields start empty.
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Finding {
            code,
            name: code.name(),
            severity: code.severity(),
            message: message.into(),
            file: None,
            line: None,
            column: None,
            port: None,
            pid: None,
            command: None,
            suggestion: None,
        }
    }
}
