//! A diagnostic code's documentation, as `explain` shows it.

use loopcheck::report::{Code, Severity};
use serde::Serialize;

/// What `explain` prints.
#[derive(Serialize)]
pub(crate) struct Explanation<'a> {
    pub(crate) code: Code,
    pub(crate) name: &'static str,
    pub(crate) severity: Severity,
    pub(crate) text: &'a str,
}

impl Explanation<'_> {
    /// The section as text, on stdout like `rustc --explain`: it is the data asked for, not a
    /// message about it.
    pub(crate) fn print_text(&self) {
        println!("{}", self.text);
    }
}
