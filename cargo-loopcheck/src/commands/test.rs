//! `cargo loopcheck test`: the suite under nextest or cargo test, with the socket timeline
//! watching, each failure explained. The engine is [`crate::runner`]; this is its entry.

use crate::cli::{Common, TestArgs};
use crate::error::Result;
use crate::term::Term;

/// Runs `test`. Exit code 1 when a test failed or flaked.
pub fn run(common: &Common, args: &TestArgs, term: &Term) -> Result<u8> {
    crate::runner::run(common, args, term)
}
