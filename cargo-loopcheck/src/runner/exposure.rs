//! LC011 for a holder that listens on a wildcard address (`0.0.0.0`, `[::]`): besides taking
//! the port from every loopback address, it exposes itself to the network.

use std::net::SocketAddr;

use loopcheck::diagnose::process_ref;
use loopcheck::report::{Code, Diagnosis, ProcessRef};
use loopcheck::scan::{self, ScanOptions, SocketTable};

use super::model::{Execution, merge};

/// The LC011 diagnosis of `holder`, which listens on the wildcard address `local`.
pub(crate) fn wildcard_holder(local: SocketAddr, holder: ProcessRef) -> Diagnosis {
    let mut diagnosis = Diagnosis::new(
        Code::WildcardBind,
        Some(local),
        format!(
            "pid {} `{}` listens on {local}, every address of this host: it takes port {} on loopback too, and it is reachable from the network",
            holder.pid,
            holder.command,
            local.port()
        ),
        "bind servers to loopback (`127.0.0.1`, or `loopcheck::loopback_ip()` in tests), never to a wildcard address",
    );
    diagnosis.processes.push(ProcessRef {
        role: "listener".to_owned(),
        ..holder
    });
    diagnosis
}

/// Adds LC011 to each failed execution whose diagnoses name a holder (LC001, or a zombie's
/// LC002) that listens on a wildcard address on the diagnosed port. The socket table is read
/// once, and only when some diagnosis names a holder.
pub(crate) fn flag_wildcard_holders(executions: &mut [Execution]) {
    let named = |d: &Diagnosis| {
        matches!(d.code, Code::PortInUse | Code::ZombieListener)
            && d.addr.is_some()
            && !d.processes.is_empty()
    };
    if !executions.iter().any(|e| e.diagnoses.iter().any(named)) {
        return;
    }
    let Ok(table) = scan::scan_with(&ScanOptions::listeners()) else {
        return;
    };
    for execution in executions {
        let found: Vec<Diagnosis> = execution
            .diagnoses
            .iter()
            .filter(|d| named(d))
            .flat_map(|d| exposed(&table, d))
            .collect();
        merge(&mut execution.diagnoses, &found);
    }
}

/// LC011 for each process of `diagnosis` that listens on a wildcard address on its port.
fn exposed(table: &SocketTable, diagnosis: &Diagnosis) -> Vec<Diagnosis> {
    let Some(addr) = diagnosis.addr else {
        return Vec::new();
    };
    table
        .listeners_on(addr.port())
        .filter(|socket| socket.local.ip().is_unspecified())
        .flat_map(|socket| {
            table
                .owners(socket)
                .filter(|owner| diagnosis.processes.iter().any(|p| p.pid == owner.pid))
                .map(|owner| wildcard_holder(socket.local, process_ref(owner, "listener")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use loopcheck::scan::{Backend, ProcessInfo, Protocol, SocketEntry, SocketState};

    /// A table with one listener on `local` held by this process: a wildcard listener is
    /// never really bound in a test, which would expose it beyond loopback.
    fn table(me: &ProcessInfo, local: &str) -> SocketTable {
        SocketTable {
            sockets: vec![SocketEntry {
                protocol: Protocol::Tcp,
                local: local.parse().unwrap(),
                remote: None,
                state: SocketState::Listen,
                recv_queue: 0,
                send_queue: 128,
                uid: None,
                inode: None,
                pids: vec![me.pid],
            }],
            processes: [(me.pid, me.clone())].into_iter().collect(),
            backend: Backend::SockDiag,
            limitations: Vec::new(),
        }
    }

    #[test]
    fn a_wildcard_holder_of_a_diagnosed_port_gets_lc011() {
        let Some(me) = ProcessInfo::read(std::process::id()) else {
            loopcheck::sys::skip_test("this platform cannot read its own process");
            return;
        };
        let mut diagnosis = Diagnosis::new(
            Code::PortInUse,
            // loopcheck:allow(LC010): test data the code under test parses or prints, never bound
            Some("127.0.0.1:7878".parse().unwrap()),
            "in use",
            "fix",
        );
        diagnosis.processes.push(process_ref(&me, "holder"));
        // loopcheck:allow(LC010): test data the code under test parses or prints, never bound
        for wildcard in ["0.0.0.0:7878", "[::]:7878"] {
            let found = exposed(&table(&me, wildcard), &diagnosis);
            assert_eq!(found.len(), 1, "{wildcard}");
            assert_eq!(found[0].code, Code::WildcardBind);
            assert_eq!(found[0].addr, Some(wildcard.parse().unwrap()));
            assert_eq!(found[0].processes[0].pid, me.pid);
            assert!(
                found[0].summary.contains("reachable from the network"),
                "{}",
                found[0].summary
            );
        }
        assert!(
            // loopcheck:allow(LC010): test data the code under test parses or prints, never bound
            exposed(&table(&me, "127.0.0.1:7878"), &diagnosis).is_empty(),
            "loopback exposes nothing"
        );
        assert!(
            // loopcheck:allow(LC010): test data the code under test parses or prints, never bound
            exposed(&table(&me, "0.0.0.0:7879"), &diagnosis).is_empty(),
            "another port"
        );
        let mut other = diagnosis.clone();
        other.processes[0].pid = u32::MAX;
        assert!(
            // loopcheck:allow(LC010): test data the code under test parses or prints, never bound
            exposed(&table(&me, "0.0.0.0:7878"), &other).is_empty(),
            "another holder"
        );
    }

    #[test]
    fn no_holder_no_scan() {
        let mut executions = [Execution::new(
            "demo::net",
            "plain",
            super::super::model::Status::Failed,
        )];
        flag_wildcard_holders(&mut executions);
        assert!(executions[0].diagnoses.is_empty());
    }
}
