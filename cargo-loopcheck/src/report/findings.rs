//! The report of `check` and `lint`, its human rendering, and the choice among its formats:
//! human, JSON, GitHub annotations and SARIF.

use loopcheck::report::{Finding, Severity};
use serde::Serialize;

use super::host::Check;
use super::{github, json, sarif};
use crate::error::Result;
use crate::term::{Format, Term};

/// What `check` and `lint` found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// Every finding, most severe first, then by file and line.
    pub findings: Vec<Finding>,
    /// Counts by severity.
    pub summary: Summary,
    /// The host checks, for `check` (empty for `lint`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub doctor: Vec<Check>,
    /// Files that could not be read or parsed, with the reason.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FileError>,
}

/// A file the lint could not read or parse.
#[derive(Debug, Clone, Serialize)]
pub struct FileError {
    /// The file, relative to the workspace root.
    pub file: String,
    /// Why.
    pub error: String,
}

/// Counts by severity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Findings of severity error.
    pub errors: usize,
    /// Findings of severity warning.
    pub warnings: usize,
    /// Informational findings.
    pub infos: usize,
}

impl Report {
    /// A report of `findings`, sorted and counted.
    pub fn new(mut findings: Vec<Finding>) -> Report {
        findings.sort_by(|a, b| {
            (b.severity, &a.file, a.line, a.column, a.code)
                .cmp(&(a.severity, &b.file, b.line, b.column, b.code))
        });
        let count = |severity| findings.iter().filter(|f| f.severity == severity).count();
        let summary = Summary {
            errors: count(Severity::Error),
            warnings: count(Severity::Warning),
            infos: count(Severity::Info),
        };
        Report {
            findings,
            summary,
            doctor: Vec::new(),
            errors: Vec::new(),
        }
    }

    /// Whether the run should exit with [`Exit::FOUND`](crate::Exit::FOUND): a file that
    /// could not be linted is one, since what it holds is not known.
    pub fn has_errors(&self) -> bool {
        self.summary.errors > 0 || self.doctor.iter().any(Check::is_error) || !self.errors.is_empty()
    }

    /// The host problems without a diagnostic code: shown as they are, not as findings.
    pub(crate) fn uncoded_problems(&self) -> impl Iterator<Item = &Check> {
        self.doctor.iter().filter(|c| !c.is_ok() && c.code.is_none())
    }

    /// Renders the report in `format`.
    pub fn render(&self, format: Format, term: &Term) -> Result<()> {
        match format {
            Format::Human => {
                self.human(term);
                Ok(())
            }
            Format::Json => json::print(self),
            Format::Github => github::print(&github::findings(self)),
            Format::Sarif => json::print_as_is(&sarif::sarif(self)),
        }
    }

    fn human(&self, term: &Term) {
        // Host problems with a code are findings already; the others are shown as they are.
        for check in self.uncoded_problems() {
            term.message(check.severity(), &format!("{}: {}", check.name, check.message));
        }
        for finding in &self.findings {
            term.finding(finding);
        }
        for error in &self.errors {
            term.message(
                Severity::Error,
                &format!("cannot lint `{}`: {}", error.file, error.error),
            );
        }
        let Summary {
            errors,
            warnings,
            infos,
        } = self.summary;
        let doctor_errors = self.uncoded_problems().filter(|c| c.is_error()).count();
        if errors + warnings + infos + doctor_errors + self.errors.len() == 0 {
            term.success("Finished", "no socket problems found");
        } else {
            let mut parts = vec![plural(errors, "error"), plural(warnings, "warning")];
            if infos > 0 {
                parts.push(plural(infos, "note"));
            }
            if doctor_errors > 0 {
                parts.push(plural(doctor_errors, "host problem"));
            }
            if !self.errors.is_empty() {
                parts.push(plural(self.errors.len(), "unlintable file"));
            }
            let severity = if self.has_errors() {
                Severity::Error
            } else {
                Severity::Warning
            };
            term.message(severity, &format!("found {}", parts.join(", ")));
        }
    }
}

fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

#[cfg(test)]
mod tests {
    use loopcheck::report::Code;

    use super::*;

    fn finding() -> Finding {
        let mut f = Finding::new(Code::HardCodedPort, "hard-coded port 8080 in `TcpListener::bind`");
        f.file = Some("tests/api.rs".into());
        f.line = Some(12);
        f.column = Some(40);
        // loopcheck:allow(LC010): test data the code under test parses or prints, never bound
        f.port = Some(8080);
        f.suggestion = Some("use `#[loopback_test] fn t(addr: SocketAddr)`, 100%".into());
        f
    }

    #[test]
    fn github_annotations_escape_their_fields() {
        let report = Report::new(vec![finding()]);
        assert_eq!(
            github::findings(&report),
            "::error file=tests/api.rs,line=12,col=40,title=LC010 hard-coded-port::hard-coded port 8080 in `TcpListener::bind`%0Ahelp: use `#[loopback_test] fn t(addr: SocketAddr)`, 100%25\n"
        );
    }

    #[test]
    fn sarif_names_rules_and_locations() {
        let sarif = sarif::sarif(&Report::new(vec![finding()]));
        assert_eq!(sarif["version"], "2.1.0");
        let run = &sarif["runs"][0];
        assert_eq!(
            run["tool"]["driver"]["rules"].as_array().unwrap().len(),
            Code::ALL.len()
        );
        let result = &run["results"][0];
        assert_eq!(result["ruleId"], "LC010");
        assert_eq!(result["ruleIndex"], 9);
        assert_eq!(result["level"], "error");
        let location = &result["locations"][0]["physicalLocation"];
        assert_eq!(location["artifactLocation"]["uri"], "tests/api.rs");
        assert_eq!(location["region"]["startLine"], 12);
    }

    #[test]
    fn reports_sort_errors_first_and_count() {
        let mut stale = Finding::new(Code::StaleLease, "stale");
        // loopcheck:allow(LC010): test data the code under test parses or prints, never bound
        stale.port = Some(20001);
        let report = Report::new(vec![stale, finding()]);
        assert_eq!(report.findings[0].code, Code::HardCodedPort);
        assert_eq!(
            report.summary,
            Summary {
                errors: 1,
                warnings: 0,
                infos: 1
            }
        );
        assert!(report.has_errors());
    }
}
