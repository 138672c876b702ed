//! `cargo loopcheck ports`: the socket table, aware of tests.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;

use loopcheck::diagnose::{Provenance, classify};
use loopcheck::lease::{LeaseInfo, LeaseStatus};
use loopcheck::scan::{ScanOptions, SocketEntry, SocketTable};

use crate::Exit;
use crate::cli::{Common, PortsArgs};
use crate::error::{Error, Result};
use crate::report;
use crate::report::ports::{LeaseRow, PortRow, PortsReport};
use crate::term::{Format, Term};
use crate::workspace::Workspace;

/// Builds the rows for `table`, marking leases, zombies and the workspace's binaries.
pub fn rows(table: &SocketTable, leases: &[LeaseInfo], workspace: Option<&Workspace>) -> Vec<PortRow> {
    let leases: BTreeMap<u16, &LeaseInfo> = leases.iter().map(|l| (l.port, l)).collect();
    // One process often holds many sockets; classifying reads its parent from /proc.
    let mut provenances: HashMap<u32, Provenance> = HashMap::new();
    table
        .sockets
        .iter()
        .map(|socket| {
            let owner = table.owners(socket).next();
            let provenance = owner.map(|o| provenances.entry(o.pid).or_insert_with(|| classify(o)).clone());
            let (zombie, zombie_reason) = match &provenance {
                Some(Provenance::Zombie { reason }) => (true, Some(reason.clone())),
                _ => (false, None),
            };
            let lease = leases
                .get(&socket.local.port())
                .filter(|l| l.status != LeaseStatus::Free)
                .map(|l| LeaseRow {
                    status: l.status,
                    pid: l.record.as_ref().map(|r| r.pid),
                    test: l.record.as_ref().and_then(|r| r.test.clone()),
                });
            let (workspace_package, built) = match (workspace, owner.and_then(|o| o.exe.as_deref())) {
                (Some(ws), Some(exe)) => (
                    ws.package_of_binary(exe).map(str::to_owned),
                    ws.describe_binary(exe),
                ),
                _ => (None, None),
            };
            PortRow {
                protocol: socket.protocol.as_str(),
                local: socket.local,
                remote: socket.remote,
                state: socket.state.as_str(),
                pid: owner.map(|o| o.pid),
                command: owner.map(|o| o.command()),
                exe: owner.and_then(|o| o.exe.clone()),
                user: owner.and_then(|o| o.user.clone()),
                test: owner.and_then(|o| o.loopcheck_test.clone()),
                lease,
                zombie,
                zombie_reason,
                workspace_package,
                built,
            }
        })
        .collect()
}

fn selected(socket: &SocketEntry, args: &PortsArgs) -> bool {
    let ip = socket.local.ip();
    let local_scope = ip.is_loopback() || ip.is_unspecified() || is_mapped_loopback(socket.local);
    (args.all || (socket.is_listener() && local_scope))
        && (args.port.is_empty() || args.port.contains(&socket.local.port()))
        && (args.pid.is_empty() || socket.pids.iter().any(|p| args.pid.contains(p)))
}

fn is_mapped_loopback(addr: SocketAddr) -> bool {
    match addr {
        SocketAddr::V6(v6) => v6.ip().to_ipv4_mapped().is_some_and(|ip| ip.is_loopback()),
        SocketAddr::V4(_) => false,
    }
}

/// Runs `ports`.
pub fn run(common: &Common, args: &PortsArgs, term: &Term) -> Result<u8> {
    let format = common
        .format
        .expect_one_of("ports", &[Format::Human, Format::Json])?;
    let options = ScanOptions {
        listen_only: !args.all,
        ports: (!args.port.is_empty()).then(|| args.port.clone()),
        ..ScanOptions::all()
    };
    let mut table = loopcheck::scan::scan_with(&options).map_err(Error::Scan)?;
    table.sockets.retain(|s| selected(s, args));
    // `cargo metadata` costs tens of milliseconds: ask it only inside a workspace where a
    // socket's owner was built by cargo, or when the user named a manifest (which must load).
    let built_by_cargo = table.processes.values().any(|p| {
        p.exe
            .as_deref()
            .and_then(loopcheck::diagnose::cargo_target_dir)
            .is_some()
    });
    let in_a_package =
        std::env::current_dir().is_ok_and(|dir| dir.ancestors().any(|d| d.join("Cargo.toml").is_file()));
    let workspace = if common.manifest_path.is_some() || (built_by_cargo && in_a_package) {
        match Workspace::load(common.manifest_path.as_deref()) {
            Ok(ws) => Some(ws),
            Err(err) if common.manifest_path.is_some() => return Err(err),
            // Outside a workspace the table is still useful.
            Err(_) => None,
        }
    } else {
        None
    };
    // Only ports loopcheck hands out can have a lease: skip the file lookups for the others.
    let policy = loopcheck::policy::PortPolicy::current().ok();
    let leasable = table
        .sockets
        .iter()
        .map(|s| s.local.port())
        .filter(|&p| policy.is_none_or(|policy| policy.is_allocatable(p)));
    let leases = loopcheck::lease::leases_of(leasable).unwrap_or_default();
    let rows = rows(&table, &leases, workspace.as_ref());
    let report = PortsReport {
        sockets: rows,
        limitations: table.limitations,
    };
    report::emit(&report, format, term)?;
    Ok(Exit::OK)
}
