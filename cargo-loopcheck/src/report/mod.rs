//! The report layer: every command's result is a value, and this folder renders it. Each
//! format is written once: human text (on stderr, but for `explain`'s) beside each model,
//! JSON in `json`, GitHub annotations in `github`, SARIF in `sarif`, JUnit in `junit`, the
//! job summary in [`summary`]. Renderers import the models and the terminal, never a command or an engine.

pub(crate) mod explain;
pub(crate) mod findings;
pub(crate) mod github;
pub(crate) mod host;
pub(crate) mod json;
pub(crate) mod junit;
pub(crate) mod lease;
pub(crate) mod ports;
pub(crate) mod reap;
pub(crate) mod sarif;
pub mod summary;
pub(crate) mod test_human;
pub mod test_run;

use serde::Serialize;

use crate::error::{Error, Result};
use std::path::Path;

use crate::term::{Format, Term};
use test_run::TestRun;

/// Where a [`Document`]'s human rendering goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HumanStream {
    /// A message about the result, beside cargo's own: every command but `explain`.
    Stderr,
    /// The result itself, which a pipe reads: `explain`'s text, like `rustc --explain`.
    Stdout,
}

/// A command's result that is shown as human text or as a JSON document on stdout.
pub(crate) trait Document: Serialize {
    /// Where [`human`](Document::human) writes.
    const HUMAN_STREAM: HumanStream = HumanStream::Stderr;

    /// Writes the human rendering to [`HUMAN_STREAM`](Document::HUMAN_STREAM): the terminal's
    /// stderr unless the document says otherwise.
    fn human(&self, term: &Term) -> std::io::Result<()>;
}

/// A diagnosis (`probe`'s result) as the terminal shows every diagnosis.
impl Document for loopcheck::report::Diagnosis {
    fn human(&self, term: &Term) -> std::io::Result<()> {
        term.diagnosis(self);
        Ok(())
    }
}

/// Renders `document` in `format`: JSON for `json`, human text otherwise. The command has
/// already refused the formats it does not support.
pub(crate) fn emit<D: Document>(document: &D, format: Format, term: &Term) -> Result<()> {
    match format {
        Format::Json => json::print(document),
        _ => match (document.human(term), D::HUMAN_STREAM) {
            // As for JSON, a closed pipe (`| head`) is not an error: the reader has what it
            // wanted.
            (Err(err), HumanStream::Stdout) if err.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
            (written, _) => written.map_err(Error::Output),
        },
    }
}

/// Renders the report of a `test` run in `format`; `run_dir` holds the run's records, which
/// the human report names.
pub(crate) fn emit_test_run(run: &TestRun, format: Format, term: &Term, run_dir: &Path) -> Result<()> {
    match format {
        Format::Json => json::print(run),
        Format::Github => github::print(&github::test_run(run)),
        _ => {
            test_human::human(term, run, run_dir).map_err(Error::Output)?;
            if let Some(note) = &run.timeline.note {
                eprintln!("note: {note}");
            }
            Ok(())
        }
    }
}
