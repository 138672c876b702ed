//! `cargo loopcheck lint`: hard-coded ports, wildcard binds and racy port picking in test code.

use crate::Exit;
use crate::cli::Common;
use crate::error::Result;
use crate::report::findings::Report;
use crate::term::Term;
use crate::workspace::Workspace;

/// Runs `lint`. Exit code 1 when it found an error.
pub fn run(common: &Common, term: &Term) -> Result<u8> {
    let workspace = Workspace::load(common.manifest_path.as_deref())?;
    let (findings, errors) = crate::lint::lint_workspace(&workspace, &crate::lint::config(&workspace)?);
    let mut report = Report::new(findings);
    report.errors = crate::lint::file_errors(&workspace, errors);
    report.render(common.format, term)?;
    Ok(if report.has_errors() {
        Exit::FOUND
    } else {
        Exit::OK
    })
}
