//! GitHub Actions workflow commands (`::error file=..,line=..::message`): the one writer of
//! annotations, for the findings of `check`/`lint` and for a `test` run.

use std::fmt::Write as _;
use std::io::Write as _;

use loopcheck::report::Severity;

use super::findings::Report;
use super::test_run::{Status, TestRun};
use crate::error::{Error, Result};

/// One workflow command: a level, where it points, a title and a message.
struct Annotation<'a> {
    level: &'static str,
    file: Option<&'a str>,
    line: Option<u32>,
    column: Option<u32>,
    title: &'a str,
    message: &'a str,
}

impl Annotation<'_> {
    /// The command's line, properties and message escaped as GitHub requires.
    fn write(&self, out: &mut String) {
        let mut props = Vec::new();
        if let Some(file) = self.file {
            props.push(format!("file={}", escape_property(file)));
        }
        if let Some(line) = self.line {
            props.push(format!("line={line}"));
        }
        if let Some(column) = self.column {
            props.push(format!("col={column}"));
        }
        props.push(format!("title={}", escape_property(self.title)));
        let _ = writeln!(
            out,
            "::{} {}::{}",
            self.level,
            props.join(","),
            escape_data(self.message)
        );
    }
}

/// The annotation level of a severity.
fn level(severity: Severity) -> &'static str {
    match severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
        Severity::Info => "notice",
    }
}

/// `check`/`lint`: one line per finding, then one per host problem without a code.
pub(crate) fn findings(report: &Report) -> String {
    let mut out = String::new();
    for f in &report.findings {
        let mut message = f.message.clone();
        if let Some(suggestion) = &f.suggestion {
            message.push_str("\nhelp: ");
            message.push_str(suggestion);
        }
        Annotation {
            level: level(f.severity),
            file: f.file.as_deref(),
            line: f.line,
            column: f.column,
            title: &format!("{} {}", f.code, f.name),
            message: &message,
        }
        .write(&mut out);
    }
    for check in report.uncoded_problems().filter(|c| c.is_error()) {
        Annotation {
            level: "error",
            file: None,
            line: None,
            column: None,
            title: &check.name,
            message: &check.message,
        }
        .write(&mut out);
    }
    out
}

/// `test`: one per failing or flaky test at its source line, one per leak and zombie.
pub(crate) fn test_run(run: &TestRun) -> String {
    let mut out = String::new();
    for test in run.bad() {
        let codes = test.codes();
        let title = match (test.status, codes.is_empty()) {
            (Status::Flaky, _) => format!(
                "flaky test {} ({} of {} runs failed)",
                test.name, test.failures, test.runs
            ),
            (_, true) => format!("test {} failed", test.name),
            (_, false) => format!("test {} failed: {}", test.name, codes.join(", ")),
        };
        let mut message = test.message.clone().unwrap_or_default();
        for diagnosis in &test.diagnoses {
            message.push_str(&format!("\n{diagnosis}"));
        }
        Annotation {
            level: if test.status == Status::Flaky {
                "warning"
            } else {
                "error"
            },
            file: test.file.as_deref(),
            line: test.line,
            column: None,
            title: &title,
            message: message.trim(),
        }
        .write(&mut out);
    }
    let unplaced = |out: &mut String, title: String, message: &str| {
        Annotation {
            level: "warning",
            file: None,
            line: None,
            column: None,
            title: &title,
            message,
        }
        .write(out);
    };
    for leak in run.tests.iter().flat_map(|t| &t.leaks).chain(&run.leaks) {
        unplaced(
            &mut out,
            format!("{} {}", leak.code, leak.name),
            &leak.to_string(),
        );
    }
    for finding in run.zombies.iter().flat_map(|z| z.zombie.findings()) {
        unplaced(
            &mut out,
            format!("{} {}", finding.code, finding.name),
            &finding.message,
        );
    }
    out
}

/// Writes annotations to stdout; a closed pipe is not an error.
pub(crate) fn print(annotations: &str) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(annotations.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(err) if err.kind() != std::io::ErrorKind::BrokenPipe => Err(Error::Output(err)),
        _ => Ok(()),
    }
}

/// Escapes a workflow command's message: `%`, CR and LF.
fn escape_data(text: &str) -> String {
    text.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A")
}

/// Escapes a workflow command's property value: as data, plus `:` and `,`.
fn escape_property(text: &str) -> String {
    escape_data(text).replace(':', "%3A").replace(',', "%2C")
}
