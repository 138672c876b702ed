//! The host checks of `doctor` (also part of `check`'s report), and their human rendering.

use std::io::Write as _;

use loopcheck::report::{Code, Severity};
use serde::Serialize;

use super::Document;
use crate::term::Term;

/// The verdict of one host check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Fine.
    Ok,
    /// Worth knowing; nothing to fix.
    Info,
    /// Tests may misbehave.
    Warning,
    /// Tests will fail.
    Error,
}

/// One host check.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What was checked, such as `localhost`.
    pub name: String,
    /// The verdict.
    pub status: Status,
    /// What was found.
    pub message: String,
    /// The diagnostic code of a problem, if one applies.
    pub code: Option<Code>,
    /// What to do about a problem.
    pub fix: Option<String>,
}

impl Check {
    pub(crate) fn new(name: &str, status: Status, message: impl Into<String>) -> Check {
        Check {
            name: name.to_owned(),
            status,
            message: message.into(),
            code: None,
            fix: None,
        }
    }

    pub(crate) fn problem(
        name: &str,
        status: Status,
        code: Code,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Check {
        Check {
            code: Some(code),
            fix: Some(fix.into()),
            ..Check::new(name, status, message)
        }
    }

    /// Whether this check found nothing worth showing.
    pub fn is_ok(&self) -> bool {
        matches!(self.status, Status::Ok | Status::Info)
    }

    /// Whether this check found something that makes tests fail.
    pub fn is_error(&self) -> bool {
        self.status == Status::Error
    }

    /// The severity to show it with.
    pub fn severity(&self) -> Severity {
        match self.status {
            Status::Error => Severity::Error,
            Status::Warning => Severity::Warning,
            Status::Ok | Status::Info => Severity::Info,
        }
    }
}

/// What `doctor` prints: every host check, in the order they ran.
#[derive(Debug, Serialize)]
pub(crate) struct HostChecks {
    /// The checks.
    pub(crate) checks: Vec<Check>,
}

impl Document for HostChecks {
    fn human(&self, term: &Term) -> std::io::Result<()> {
        let mut err = term.stderr();
        for check in &self.checks {
            let (label, style) = match check.status {
                Status::Ok => ("ok", anstyle::AnsiColor::Green.on_default().bold()),
                Status::Info => ("info", anstyle::AnsiColor::Cyan.on_default().bold()),
                Status::Warning => ("warning", anstyle::AnsiColor::Yellow.on_default().bold()),
                Status::Error => ("error", anstyle::AnsiColor::Red.on_default().bold()),
            };
            let code = check
                .code
                .filter(|_| !check.is_ok())
                .map(|c| format!(" [{c}]"))
                .unwrap_or_default();
            let _ = writeln!(
                err,
                "{style}{label:>8}{style:#} {}{code}: {}",
                check.name, check.message
            );
            if let Some(fix) = check.fix.as_ref().filter(|_| !check.is_ok()) {
                let _ = writeln!(err, "         help: {fix}");
            }
        }
        Ok(())
    }
}
