//! `cargo loopcheck [check]`: the preflight run before `cargo test` and first thing in CI.

use loopcheck::report::{Code, Finding};

use crate::Exit;
use crate::cli::Common;
use crate::commands::doctor;
use crate::error::Result;
use crate::report::findings::Report;
use crate::report::host::Check;
use crate::term::Term;
use crate::workspace::Workspace;
use crate::zombies;

/// LC015: reclaims the leases whose holders died without returning them, and reports them in
/// one finding (a killed test binary leaves all of its leases at once). Each is reported once:
/// reclaiming marks its record free.
pub fn reclaim_stale_leases() -> Vec<Finding> {
    let stale = loopcheck::lease::reclaim_stale().unwrap_or_default();
    let Some(first) = stale.first() else {
        return Vec::new();
    };
    let mut holders: Vec<(u32, Option<String>)> = stale
        .iter()
        .filter_map(|l| l.record.as_ref())
        .map(|r| (r.pid, r.test.clone()))
        .collect();
    holders.sort();
    holders.dedup_by_key(|(pid, _)| *pid);
    let named: Vec<String> = holders
        .iter()
        .take(3)
        .map(|(pid, test)| match test {
            Some(test) => format!("pid {pid} (test `{test}`)"),
            None => format!("pid {pid}"),
        })
        .collect();
    let more = holders.len().saturating_sub(3);
    let more = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    let leases = if stale.len() == 1 {
        "1 lease".to_owned()
    } else {
        format!("{} leases", stale.len())
    };
    let mut f = Finding::new(
        Code::StaleLease,
        format!(
            "reclaimed {leases} whose holders died without returning them: {}{more}",
            named.join(", ")
        ),
    );
    f.port = Some(first.port);
    f.pid = holders.first().map(|(pid, _)| *pid);
    f.suggestion = Some(
        "nothing to clean up: the ports were free at once; if a test process was killed, find out why".into(),
    );
    vec![f]
}

/// A finding for each host check that found a problem with a diagnostic code.
pub fn doctor_findings(checks: &[Check]) -> Vec<Finding> {
    checks
        .iter()
        .filter(|c| !c.is_ok())
        .filter_map(|c| {
            let mut f = Finding::new(c.code?, format!("{}: {}", c.name, c.message));
            f.severity = c.severity();
            f.suggestion = c.fix.clone();
            Some(f)
        })
        .collect()
}

/// Everything `check` looks at, as one report.
pub fn report(workspace: &Workspace) -> Result<Report> {
    let mut findings: Vec<Finding> = zombies::find(workspace)?
        .iter()
        .flat_map(zombies::Zombie::findings)
        .collect();
    findings.extend(reclaim_stale_leases());
    let checks = doctor::checks();
    findings.extend(doctor_findings(&checks));
    let (lint_findings, errors) = crate::lint::lint_workspace(workspace, &crate::lint::config(workspace)?);
    findings.extend(lint_findings);
    let mut report = Report::new(findings);
    report.doctor = checks;
    report.errors = crate::lint::file_errors(workspace, errors);
    Ok(report)
}

/// Runs `check`. Exit code 1 when it found an error.
pub fn run(common: &Common, term: &Term) -> Result<u8> {
    let workspace = Workspace::load(common.manifest_path.as_deref())?;
    let report = report(&workspace)?;
    report.render(common.format, term)?;
    crate::report::summary::append(term, || crate::report::summary::check(&report));
    Ok(if report.has_errors() {
        Exit::FOUND
    } else {
        Exit::OK
    })
}
