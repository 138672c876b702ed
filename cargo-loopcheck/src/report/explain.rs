//! A diagnostic code's documentation, as `explain` shows it.

use std::io::Write as _;

use loopcheck::report::{Code, Severity};
use serde::Serialize;

use super::{Document, HumanStream};
use crate::term::Term;

/// What `explain` prints.
#[derive(Serialize)]
pub(crate) struct Explanation<'a> {
    pub(crate) code: Code,
    pub(crate) name: &'static str,
    pub(crate) severity: Severity,
    pub(crate) text: &'a str,
}

impl Document for Explanation<'_> {
    /// On stdout like `rustc --explain`: the section is the data asked for, not a message
    /// about it.
    const HUMAN_STREAM: HumanStream = HumanStream::Stdout;

    fn human(&self, _term: &Term) -> std::io::Result<()> {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", self.text).and_then(|()| out.flush())
    }
}
