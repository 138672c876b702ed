//! JSON on stdout: every command's document, with its `format_version`.

use std::io::Write as _;

use serde::Serialize;

use crate::error::{Error, Result};

/// The `format_version` of every JSON document this tool prints. It changes when a document
/// changes in a way that breaks a reader (a field removed, renamed or retyped); new fields do
/// not change it. The shapes are described by the JSON Schemas in `docs/schema/`.
pub(crate) const FORMAT_VERSION: u32 = 1;

/// A document with its `format_version` first, then the document's own fields.
#[derive(Serialize)]
struct Versioned<'a, T> {
    format_version: u32,
    #[serde(flatten)]
    document: &'a T,
}

/// Writes `document`, a JSON object of this tool's own, to stdout with its `format_version`.
/// Every command's JSON goes through here.
pub(crate) fn print(document: &impl Serialize) -> Result<()> {
    print_as_is(&Versioned {
        format_version: FORMAT_VERSION,
        document,
    })
}

/// Writes `document` with its `format_version` as one line of JSON on stdout, flushed at once:
/// for a line a script reads while this process goes on (`lease`'s, before its command runs).
pub(crate) fn print_line(document: &impl Serialize) -> Result<()> {
    let versioned = Versioned {
        format_version: FORMAT_VERSION,
        document,
    };
    let line = serde_json::to_string(&versioned)
        .map_err(std::io::Error::other)
        .map_err(Error::Output)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .map_err(Error::Output)
}

/// Writes `value` as pretty JSON to stdout, followed by a newline, without a `format_version`:
/// for a format that is not ours to version (SARIF). A closed pipe (`| head`) is not an error:
/// the reader has what it wanted.
pub(crate) fn print_as_is(value: &impl Serialize) -> Result<()> {
    // Stdout is line-buffered: without a buffer, every line of pretty JSON is a syscall.
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let written = serde_json::to_writer_pretty(&mut out, value)
        .map_err(std::io::Error::from)
        .and_then(|()| writeln!(out))
        .and_then(|()| out.flush());
    match written {
        Err(err) if err.kind() != std::io::ErrorKind::BrokenPipe => Err(Error::Output(err)),
        _ => Ok(()),
    }
}
