//! What the wrapper writes into the run directory for an isolated test: its leftovers
//! (LC012/LC013) and, for a failure that speaks of a socket error, the diagnoses of the
//! addresses it names, made inside the test's namespace, where its sockets were. The host's
//! sockets say nothing about an isolated test, and a record with diagnoses keeps
//! `cargo loopcheck test` from looking there.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::Path;

use loopcheck::diagnose::{Diagnoser, symptom};
use loopcheck::report::{Code, Diagnosis};

use loopcheck::run::RunRecord as Record;

use crate::runner::{failure_message, mentioned_addrs};

/// The socket errors a failure is explained by, as `cargo loopcheck test` does.
const EXPLAINED: [io::ErrorKind; 4] = [
    io::ErrorKind::AddrInUse,
    io::ErrorKind::ConnectionRefused,
    io::ErrorKind::TimedOut,
    io::ErrorKind::ConnectionReset,
];

/// How many addresses of one failure are examined.
const MAX_ADDRESSES: usize = 4;

/// The diagnoses of a failed isolated test whose output is `output`, made in its namespace;
/// empty when the failure is not a socket error. `allowed` are the forwarded host ports.
pub(super) fn failure_diagnoses(output: &str, allowed: &[u16]) -> Vec<Diagnosis> {
    let message = failure_message(output);
    let Some(kind) = symptom(&message).filter(|kind| EXPLAINED.contains(kind)) else {
        return Vec::new();
    };
    let addrs = mentioned_addrs(&message);
    let diagnoser = Diagnoser::default();
    let mut diagnoses: Vec<Diagnosis> = addrs
        .iter()
        .take(MAX_ADDRESSES)
        .map(|&addr| {
            let found = diagnoser.explain_afterwards(kind, addr);
            isolated(found.unwrap_or_else(|| fallback(kind, Some(addr))), kind, allowed)
        })
        .collect();
    if diagnoses.is_empty() {
        diagnoses.push(isolated(fallback(kind, None), kind, allowed));
    }
    diagnoses
}

/// A diagnosis for an error the namespace's sockets no longer explain.
fn fallback(kind: io::ErrorKind, addr: Option<SocketAddr>) -> Diagnosis {
    let at = addr.map_or_else(|| "an address".to_owned(), |a| a.to_string());
    match kind {
        io::ErrorKind::AddrInUse => Diagnosis::new(
            Code::PortInUse,
            addr,
            format!("{at} was in use inside the test's own network namespace, and nothing holds it now"),
            "only the test itself, its children and, under cargo test, the other tests of its binary share the namespace: give each its own port (`#[loopback_test] fn name(addr: SocketAddr)`, or `loopcheck::tcp_listener()`), or run under nextest, where each test has a namespace of its own",
        ),
        io::ErrorKind::TimedOut => Diagnosis::new(
            Code::ConnectTimeout,
            addr,
            format!("a connection to {at} timed out inside the test's network namespace"),
            "make sure the server the test waits for runs inside the test (or is let through with --isolate-allow PORT)",
        ),
        _ => Diagnosis::new(
            Code::ConnectionRefused,
            addr,
            format!("nothing served {at} inside the test's network namespace"),
            "start the server inside the test, or let the host's service through with --isolate-allow PORT",
        ),
    }
}

/// Says that the test was isolated, and, for a host service it could not reach, how to let
/// that service through.
fn isolated(mut diagnosis: Diagnosis, kind: io::ErrorKind, allowed: &[u16]) -> Diagnosis {
    diagnosis.evidence.push(
        "the test ran isolated, in a private network namespace of its own (cargo loopcheck test --isolate): it shares no port with the host or other tests, and reaches no host service unless let through"
            .to_owned(),
    );
    let port = diagnosis.addr.map(|a| a.port());
    let loopback = diagnosis.addr.is_none_or(|a| a.ip().is_loopback());
    if kind != io::ErrorKind::AddrInUse && loopback && port.is_none_or(|p| !allowed.contains(&p)) {
        let shown = port.map_or_else(|| "PORT".to_owned(), |p| p.to_string());
        diagnosis.summary = format!(
            "{} (the test is isolated: a service on the host's port {shown} is not reachable from its network namespace)",
            diagnosis.summary
        );
        diagnosis.fix = format!(
            "if the test needs the host's service on port {shown}, let it through: `cargo loopcheck test --isolate --isolate-allow {shown}`, or `isolate-allow = [{shown}]` in [workspace.metadata.loopcheck]; or run the test without isolation: `--isolate-exclude NAME`. Otherwise: {}",
            diagnosis.fix
        );
    }
    diagnosis
}

/// `crate::path` for a test `name` of the binary `exe`: the form records are matched by.
pub(super) fn record_name(exe: &Path, name: &str) -> String {
    let stem = exe.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
    let crate_name = stem.rsplit_once('-').map_or(&*stem, |(name, _)| name);
    format!("{}::{name}", crate_name.replace('-', "_"))
}

/// Appends `records` to `records.jsonl` in `run_dir`, each line in one `write` to a file
/// opened in append mode, as the harness does, so lines of concurrent writers never mix.
pub(super) fn write(run_dir: &Path, records: &[Record]) -> io::Result<()> {
    if records.is_empty() {
        return Ok(());
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(run_dir.join(loopcheck::lease::RECORDS_FILE))?;
    for record in records {
        let mut line = serde_json::to_vec(record).map_err(io::Error::other)?;
        line.push(b'\n');
        file.write_all(&line)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_host_service_names_the_flag_and_its_port() {
        // loopcheck:allow(LC010): test data the code under test parses or prints, never bound
        let output = "thread 'db' panicked at tests/db.rs:9:5:\nconnect 127.0.0.1:1: Connection refused (os error 111)\n";
        let diagnoses = failure_diagnoses(output, &[]);
        assert_eq!(diagnoses.len(), 1, "{diagnoses:?}");
        let diagnosis = &diagnoses[0];
        assert_eq!(diagnosis.code, Code::ConnectionRefused);
        assert!(
            diagnosis.summary.contains("the test is isolated"),
            "{}",
            diagnosis.summary
        );
        assert!(diagnosis.fix.contains("--isolate-allow 1"), "{}", diagnosis.fix);
        // An allowed port is no isolation problem: the forwarder was there.
        let allowed = failure_diagnoses(output, &[1]);
        assert!(
            !allowed[0].fix.contains("--isolate-allow 1"),
            "{}",
            allowed[0].fix
        );
        assert!(failure_diagnoses("thread 'x' panicked at a.rs:1:1:\nassertion failed\n", &[]).is_empty());
    }

    #[test]
    fn record_names_are_crate_and_path() {
        assert_eq!(
            record_name(Path::new("/t/debug/deps/fixed_a-0123abcd"), "binds"),
            "fixed_a::binds"
        );
    }
}
