//! The rows of `ports` and their table.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;

use loopcheck::lease::LeaseStatus;
use serde::Serialize;

use super::Document;
use crate::term::Term;

/// One row of `cargo loopcheck ports --format json`.
#[derive(Debug, Clone, Serialize)]
pub struct PortRow {
    /// `tcp` or `udp`.
    pub protocol: &'static str,
    /// The local address.
    pub local: SocketAddr,
    /// The peer, for connected sockets.
    pub remote: Option<SocketAddr>,
    /// `listen`, `established`, `time_wait`, ...
    pub state: &'static str,
    /// The first process holding the socket, if visible.
    pub pid: Option<u32>,
    /// That process's command line.
    pub command: Option<String>,
    /// That process's executable.
    pub exe: Option<PathBuf>,
    /// Its user.
    pub user: Option<String>,
    /// The `LOOPCHECK_TEST` it carries.
    pub test: Option<String>,
    /// The loopcheck lease of the port, if any.
    pub lease: Option<LeaseRow>,
    /// Whether the holder is a leftover of a test run (LC002).
    pub zombie: bool,
    /// Why it is a zombie.
    pub zombie_reason: Option<String>,
    /// The package of this workspace whose test binary holds the socket.
    pub workspace_package: Option<String>,
    /// What the holder's executable is to the workspace, in words.
    #[serde(skip)]
    pub built: Option<String>,
}

/// The lease column of a row.
#[derive(Debug, Clone, Serialize)]
pub struct LeaseRow {
    /// `held`, `free` or `stale`.
    pub status: LeaseStatus,
    /// The holder's pid.
    pub pid: Option<u32>,
    /// The test the holder worked for.
    pub test: Option<String>,
}

/// What `ports` prints: the rows, and what the scan could not see.
#[derive(Serialize)]
pub(crate) struct PortsReport {
    pub(crate) sockets: Vec<PortRow>,
    pub(crate) limitations: Vec<String>,
}

impl Document for PortsReport {
    /// The table, on stderr.
    fn human(&self, term: &Term) -> std::io::Result<()> {
        let (rows, limitations) = (&self.sockets, &self.limitations);
        let mut out = term.stderr();
        let header = anstyle::Style::new().bold();
        let warn = anstyle::AnsiColor::Yellow.on_default().bold();
        let widths = (
            rows.iter()
                .map(|r| r.local.to_string().len())
                .max()
                .unwrap_or(5)
                .max(5),
            rows.iter().map(|r| r.state.len()).max().unwrap_or(5).max(5),
        );
        writeln!(
            out,
            "{header}{:<5} {:<w0$} {:<w1$} {:>7}  {:<40} NOTE{header:#}",
            "PROTO",
            "LOCAL",
            "STATE",
            "PID",
            "COMMAND",
            w0 = widths.0,
            w1 = widths.1
        )?;
        for row in rows {
            let pid = row.pid.map_or("-".to_owned(), |p| p.to_string());
            let mut command = row.command.clone().unwrap_or_else(|| "(owner hidden)".into());
            if command.chars().count() > 40 {
                command = command.chars().take(39).collect::<String>() + "…";
            }
            let mut notes = Vec::new();
            if let Some(lease) = &row.lease {
                let test = lease.test.as_deref().map(|t| format!(" {t}")).unwrap_or_default();
                let status = match lease.status {
                    LeaseStatus::Held => "leased",
                    LeaseStatus::Stale => "stale lease",
                    LeaseStatus::Free => "free",
                };
                notes.push(format!("{status}{test}"));
            }
            if let Some(built) = &row.built {
                notes.push(built.clone());
            }
            if let Some(remote) = row.remote {
                notes.push(format!("to {remote}"));
            }
            let note = notes.join("; ");
            let zombie = if row.zombie {
                format!("{warn}zombie{warn:#} ")
            } else {
                String::new()
            };
            writeln!(
                out,
                "{:<5} {:<w0$} {:<w1$} {pid:>7}  {command:<40} {zombie}{note}",
                row.protocol,
                row.local.to_string(),
                row.state,
                w0 = widths.0,
                w1 = widths.1
            )?;
        }
        if rows.is_empty() {
            writeln!(out, "(no sockets match)")?;
        }
        for limitation in limitations {
            writeln!(out, "{warn}note{warn:#}: {limitation}")?;
        }
        Ok(())
    }
}
