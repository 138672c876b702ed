//! The GitHub Actions job summary: Markdown that `test` and `check` append to the file named
//! by `GITHUB_STEP_SUMMARY`, shown on the run's page. A renderer of the same report models as
//! the human, JSON and annotation output.

use std::fmt::Write as _;
use std::io::Write as _;

use loopcheck::report::{Diagnosis, Finding, Severity};

use super::findings::Report;
use super::test_run::{Counts, Status, TestReport, TestRun};
use crate::term::Term;

/// The variable GitHub Actions sets to the job summary's file.
pub const SUMMARY_VAR: &str = "GITHUB_STEP_SUMMARY";

/// Appends `markdown()` to the job summary when `GITHUB_STEP_SUMMARY` names a file. A summary
/// that cannot be written is a warning: the run's own result stands.
pub fn append(term: &Term, markdown: impl FnOnce() -> String) {
    let Some(path) = std::env::var_os(SUMMARY_VAR).filter(|p| !p.is_empty()) else {
        return;
    };
    let written = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(&path)
        .and_then(|mut file| file.write_all(markdown().as_bytes()));
    if let Err(err) = written {
        term.message(
            Severity::Warning,
            &format!(
                "cannot append the job summary to `{}` ({SUMMARY_VAR}): {err}",
                std::path::Path::new(&path).display()
            ),
        );
    }
}

/// The summary of a `cargo loopcheck test` run: its counts, a table of the failing and flaky
/// tests with the diagnosis of each (code, holder, fix), then leaks and zombie listeners.
///
/// ```
/// # use cargo_loopcheck::report::test_run::{RunnerKind, TestRun};
/// let run = TestRun {
///     run_id: "r1".into(), runner: RunnerKind::Nextest, tests: vec![],
///     zombies: vec![], flaky: vec![], leaks: vec![], runs: 1, skipped_unlisted: 0,
///     timeline: Default::default(),
/// };
/// assert!(cargo_loopcheck::report::summary::test_run(&run).starts_with("## cargo loopcheck test\n"));
/// ```
pub fn test_run(run: &TestRun) -> String {
    let mut md = String::from("## cargo loopcheck test\n\n");
    let Counts {
        tests,
        passed,
        failed,
        flaky,
        skipped,
        ..
    } = run.counts();
    let leaks: Vec<(Option<&TestReport>, &Diagnosis)> = run
        .tests
        .iter()
        .flat_map(|t| t.leaks.iter().map(move |l| (Some(t), l)))
        .chain(run.leaks.iter().map(|l| (None, l)))
        .collect();
    let verdict = if failed + flaky > 0 { "❌" } else { "✅" };
    let over = if run.runs > 1 {
        format!(" over {} runs", run.runs)
    } else {
        String::new()
    };
    let _ = writeln!(
        md,
        "{verdict} **{failed} failed**, {flaky} flaky, {} passed, {} skipped: {} tests{over} with `{}`; {} leak(s), {} zombie listener(s). Run `{}`.\n",
        passed,
        skipped,
        tests,
        run.runner.command(),
        leaks.len(),
        run.zombies.len(),
        cell(&run.run_id),
    );
    if run.bad().next().is_some() {
        md.push_str("### Failing and flaky tests\n\n");
        let mut table = Table::new("| test | status | code | holder | fix |\n|---|---|---|---|---|\n");
        for test in run.bad() {
            let status = match test.status {
                Status::Flaky => format!("flaky ({} of {} runs failed)", test.failures, test.runs),
                _ => "failed".to_owned(),
            };
            let name = test_name(test);
            if test.diagnoses.is_empty() {
                table.row(format!(
                    "| {name} | {status} | | | no socket explains this failure |\n"
                ));
            }
            for diagnosis in &test.diagnoses {
                table.row(format!(
                    "| {name} | {status} | {} |\n",
                    diagnosis_cells(diagnosis)
                ));
            }
        }
        table.finish(&mut md);
    }
    if !leaks.is_empty() {
        md.push_str("### Leaks\n\n");
        let mut table = Table::new("| test | code | what | holder | fix |\n|---|---|---|---|---|\n");
        for (test, leak) in leaks {
            let name = test.map_or_else(|| "(the run)".to_owned(), test_name);
            table.row(format!(
                "| {name} | {} | {} | {} | {} |\n",
                code(leak),
                cell(&leak.summary),
                holder(leak),
                cell(&leak.fix)
            ));
        }
        table.finish(&mut md);
    }
    if !run.zombies.is_empty() {
        md.push_str("### Zombie listeners\n\n");
        let mut table = Table::new("| pid | command | listens on | why | outcome |\n|---|---|---|---|---|\n");
        for report in &run.zombies {
            let zombie = &report.zombie;
            let addrs: Vec<String> = zombie.addrs.iter().map(ToString::to_string).collect();
            let outcome = report.outcome.map_or_else(
                || "left running (`--reap` ends it)".to_owned(),
                |o| super::reap::outcome_words(o).to_owned(),
            );
            table.row(format!(
                "| {} | {} | {} | {} | {outcome} |\n",
                zombie.pid,
                code_span(&zombie.command),
                cell(&addrs.join(", ")),
                cell(&zombie.reason)
            ));
        }
        table.finish(&mut md);
    }
    md
}

/// The summary of `cargo loopcheck check`: counts by severity and a table of the findings,
/// with the host problems that have no code.
pub fn check(report: &Report) -> String {
    let mut md = String::from("## cargo loopcheck check\n\n");
    let summary = report.summary;
    let host_problems: Vec<_> = report
        .doctor
        .iter()
        .filter(|c| !c.is_ok() && c.code.is_none())
        .collect();
    let verdict = if report.has_errors() { "❌" } else { "✅" };
    let _ = writeln!(
        md,
        "{verdict} **{} error(s)**, {} warning(s), {} note(s), {} other host problem(s).\n",
        summary.errors,
        summary.warnings,
        summary.infos,
        host_problems.len()
    );
    if !report.findings.is_empty() {
        let mut table = Table::new("| severity | code | where | problem | fix |\n|---|---|---|---|---|\n");
        for finding in &report.findings {
            table.row(format!(
                "| {} | {} {} | {} | {} | {} |\n",
                finding.severity,
                finding.code,
                finding.name,
                place(finding),
                cell(&finding.message),
                finding.suggestion.as_deref().map(cell).unwrap_or_default()
            ));
        }
        table.finish(&mut md);
    }
    if !host_problems.is_empty() {
        let mut table = Table::new("| host check | status | problem | fix |\n|---|---|---|---|\n");
        for check in host_problems {
            table.row(format!(
                "| {} | {} | {} | {} |\n",
                cell(&check.name),
                check.severity(),
                cell(&check.message),
                check.fix.as_deref().map(cell).unwrap_or_default()
            ));
        }
        table.finish(&mut md);
    }
    md
}

/// Rows of one table at most. GitHub shows at most 1 MiB of a step's summary and drops the
/// rest; a summary is a digest, and the JSON report and JUnit hold every row.
const ROW_LIMIT: usize = 100;
/// Bytes of one table at most: the three tables of a run (plus its header) stay under 1 MiB
/// even with rows of long messages.
const TABLE_BYTES: usize = 256 * 1024;

/// A Markdown table that keeps at most [`ROW_LIMIT`] rows and [`TABLE_BYTES`] bytes, and says
/// how many rows it left out.
struct Table {
    md: String,
    rows: usize,
    left_out: usize,
}

impl Table {
    /// A table with its header and separator lines.
    fn new(header: &str) -> Table {
        Table {
            md: header.to_owned(),
            rows: 0,
            left_out: 0,
        }
    }

    /// Adds `row` (a whole line, newline included) unless the table is full.
    fn row(&mut self, row: String) {
        if self.rows < ROW_LIMIT && self.md.len() + row.len() <= TABLE_BYTES {
            self.md.push_str(&row);
            self.rows += 1;
        } else {
            self.left_out += 1;
        }
    }

    /// Appends the table to `md`, with a line naming the rows it left out, and a blank line.
    fn finish(self, md: &mut String) {
        md.push_str(&self.md);
        if self.left_out > 0 {
            let _ = writeln!(
                md,
                "\n{} more row(s) left out: GitHub shows at most 1 MiB of a job summary. The JSON report (`--message-format json`) has every row.",
                self.left_out
            );
        }
        md.push('\n');
    }
}

fn test_name(test: &TestReport) -> String {
    let place = match (&test.file, test.line) {
        (Some(file), Some(line)) => format!(" ({}:{line})", cell(file)),
        _ => String::new(),
    };
    format!("{} {}{place}", code_span(&test.binary), code_span(&test.name))
}

fn diagnosis_cells(diagnosis: &Diagnosis) -> String {
    format!(
        "{} | {} | {}",
        code(diagnosis),
        holder(diagnosis),
        cell(&diagnosis.fix)
    )
}

fn code(diagnosis: &Diagnosis) -> String {
    format!("{} {}", diagnosis.code, diagnosis.name)
}

/// The process a diagnosis blames: pid, command, and the test it came from when known.
fn holder(diagnosis: &Diagnosis) -> String {
    match diagnosis.holder() {
        Some(process) => {
            let test = process
                .test
                .as_deref()
                .map(|t| format!(" from test {}", code_span(t)))
                .unwrap_or_default();
            format!("pid {} {}{test}", process.pid, code_span(&process.command))
        }
        None => diagnosis
            .addr
            .map(|addr| format!("nobody visible on {addr}"))
            .unwrap_or_default(),
    }
}

fn place(finding: &Finding) -> String {
    match (&finding.file, finding.line) {
        (Some(file), Some(line)) => format!("{}:{line}", cell(file)),
        (Some(file), None) => cell(file),
        _ => finding.pid.map(|pid| format!("pid {pid}")).unwrap_or_default(),
    }
}

/// Text made safe for a table cell: one line, no cell separators, no HTML. The text may hold
/// code spans (a message quoting `TcpListener::bind`): inside them Markdown shows `&lt;`
/// literally and renders no HTML, so only the cell separator is escaped there; outside them
/// `&`, `<` and `>` become entities.
fn cell(text: &str) -> String {
    let one_line: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let one_line = one_line.join(" ");
    let mut out = String::with_capacity(one_line.len());
    let mut rest = one_line.as_str();
    while let Some(start) = rest.find('`') {
        let (before, from) = rest.split_at(start);
        out.push_str(&escape_prose(before));
        let fence_len = from.len() - from.trim_start_matches('`').len();
        let (fence, after) = from.split_at(fence_len);
        out.push_str(fence);
        // A span closes at the next run of exactly as many backticks; without one, the
        // backticks are plain text.
        match closing_fence(after, fence_len) {
            Some(end) => {
                out.push_str(&after[..end].replace('|', "\\|"));
                out.push_str(fence);
                rest = &after[end + fence_len..];
            }
            None => rest = after,
        }
    }
    out.push_str(&escape_prose(rest));
    out
}

/// Where in `text` a run of exactly `len` backticks starts.
fn closing_fence(text: &str, len: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'`' {
            let run = bytes[i..].iter().take_while(|&&b| b == b'`').count();
            if run == len {
                return Some(i);
            }
            i += run;
        } else {
            i += 1;
        }
    }
    None
}

/// Text outside code spans: entities for HTML's characters, the cell separator escaped.
fn escape_prose(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('|', "\\|")
}

/// `text` as inline code in a table cell, fenced with more backticks than it contains. Long
/// command lines are cut: the summary is a table, not a log.
fn code_span(text: &str) -> String {
    const LIMIT: usize = 120;
    let mut text: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.chars().count() > LIMIT {
        text = text.chars().take(LIMIT).collect::<String>() + "…";
    }
    let text = text.replace('|', "\\|");
    let mut longest = 0;
    let mut run = 0;
    for c in text.chars() {
        run = if c == '`' { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    let fence = "`".repeat(longest + 1);
    let pad = if text.starts_with('`') || text.ends_with('`') {
        " "
    } else {
        ""
    };
    format!("{fence}{pad}{text}{pad}{fence}")
}

#[cfg(test)]
mod tests {
    use loopcheck::report::{Code, ProcessRef};

    use super::*;
    use crate::report::test_run::{Flake, RunnerKind};

    fn test_report(name: &str, status: Status) -> TestReport {
        TestReport {
            name: name.into(),
            binary: "server::net".into(),
            status,
            diagnoses: Vec::new(),
            leaks: Vec::new(),
            runs: 1,
            failures: u32::from(status == Status::Failed),
            message: None,
            file: Some("tests/net.rs".into()),
            line: Some(12),
            output: String::new(),
        }
    }

    fn in_use() -> Diagnosis {
        // loopcheck:allow(LC010): test data the code under test parses or prints, never bound
        let addr = "127.0.0.1:8080".parse().unwrap();
        let mut diagnosis = Diagnosis::new(
            Code::PortInUse,
            Some(addr),
            // loopcheck:allow(LC010): test data the code under test parses or prints, never bound
            "127.0.0.1:8080 is in use by pid 42",
            "give each test its own port",
        );
        diagnosis.processes.push(ProcessRef {
            pid: 42,
            command: "target/debug/server --port 8080 | tee `log`".into(),
            user: None,
            exe: None,
            test: Some("tests::other".into()),
            role: "holder".into(),
            binary: None,
            first_seen: None,
            last_seen: None,
        });
        diagnosis
    }

    fn run(tests: Vec<TestReport>) -> TestRun {
        TestRun {
            run_id: "20261202-1".into(),
            runner: RunnerKind::CargoTest,
            tests,
            zombies: Vec::new(),
            flaky: Vec::new(),
            leaks: Vec::new(),
            runs: 2,
            skipped_unlisted: 0,
            timeline: Default::default(),
        }
    }

    #[test]
    fn a_failing_run_tables_each_bad_test_with_its_diagnosis() {
        let mut failed = test_report("tests::binds", Status::Failed);
        failed.diagnoses.push(in_use());
        let mut flaky = test_report("tests::races", Status::Flaky);
        flaky.runs = 2;
        flaky.failures = 1;
        let mut leaky = test_report("tests::spawns", Status::Passed);
        leaky.leaks.push(Diagnosis::new(
            Code::LeakedChild,
            None,
            "pid 7 `sleep 60` outlived its test",
            "wait for the child",
        ));
        let mut run = run(vec![failed, flaky, leaky]);
        run.flaky.push(Flake {
            name: "tests::races".into(),
            binary: "server::net".into(),
            runs: 2,
            failures: 1,
            codes: Vec::new(),
        });
        let md = test_run(&run);
        assert!(
            md.contains("❌ **1 failed**, 1 flaky, 1 passed, 0 skipped: 3 tests over 2 runs with `cargo test`; 1 leak(s), 0 zombie listener(s)."),
            "{md}"
        );
        assert!(
            md.contains("| `server::net` `tests::binds` (tests/net.rs:12) | failed | LC001 port-in-use | pid 42 `` target/debug/server --port 8080 \\| tee `log` `` from test `tests::other` | give each test its own port |"),
            "{md}"
        );
        assert!(
            md.contains("| `server::net` `tests::races` (tests/net.rs:12) | flaky (1 of 2 runs failed) | | | no socket explains this failure |"),
            "{md}"
        );
        assert!(md.contains("### Leaks"), "{md}");
        assert!(
            md.contains("| LC013 leaked-child | pid 7 `sleep 60` outlived its test |"),
            "{md}"
        );
        assert!(!md.contains("### Zombie"), "{md}");
    }

    #[test]
    fn a_passing_run_is_one_line_of_counts() {
        let md = test_run(&run(vec![test_report("tests::adds", Status::Passed)]));
        assert_eq!(
            md,
            "## cargo loopcheck test\n\n✅ **0 failed**, 0 flaky, 1 passed, 0 skipped: 1 tests over 2 runs with `cargo test`; 0 leak(s), 0 zombie listener(s). Run `20261202-1`.\n\n"
        );
    }

    #[test]
    fn check_tables_findings_and_escapes_cells() {
        let mut finding = Finding::new(Code::HardCodedPort, "hard-coded port 8080 in `a | b`");
        finding.file = Some("tests/api.rs".into());
        finding.line = Some(3);
        finding.suggestion = Some("use <loopback_test>".into());
        let md = check(&Report::new(vec![finding]));
        assert!(
            md.contains("❌ **1 error(s)**, 0 warning(s), 0 note(s), 0 other host problem(s)."),
            "{md}"
        );
        assert!(
            md.contains("| error | LC010 hard-coded-port | tests/api.rs:3 | hard-coded port 8080 in `a \\| b` | use &lt;loopback_test&gt; |"),
            "{md}"
        );
        let clean = check(&Report::new(Vec::new()));
        assert!(clean.contains("✅ **0 error(s)**"), "{clean}");
        assert!(!clean.contains("| severity"), "{clean}");
    }

    #[test]
    fn cells_escape_html_outside_code_spans_only() {
        // Inside a code span GitHub shows `&lt;` as it is: only `|` is escaped there.
        assert_eq!(
            cell("binds `Vec<u8>` & <b> in `a|b` and ``x`y``"),
            "binds `Vec<u8>` &amp; &lt;b&gt; in `a\\|b` and ``x`y``"
        );
        // A backtick with no partner opens no span.
        assert_eq!(cell("a ` b <c>"), "a ` b &lt;c&gt;");
        assert_eq!(cell("`<a>`\n`<b>`"), "`<a>` `<b>`");
    }

    #[test]
    fn long_tables_are_capped_and_say_what_they_left_out() {
        let tests: Vec<TestReport> = (0..ROW_LIMIT + 50)
            .map(|i| test_report(&format!("tests::t{i}"), Status::Failed))
            .collect();
        let md = test_run(&run(tests));
        let rows = md.lines().filter(|l| l.starts_with("| `server::net`")).count();
        assert_eq!(rows, ROW_LIMIT, "{md}");
        assert!(
            md.contains("\n50 more row(s) left out: GitHub shows at most 1 MiB of a job summary."),
            "{md}"
        );
        assert!(md.contains("tests::t99`"), "{md}");
        assert!(!md.contains("tests::t100`"), "{md}");

        // Rows of long messages hit the byte budget before the row limit.
        let mut wordy = Finding::new(Code::HardCodedPort, "x".repeat(10_000));
        wordy.file = Some("tests/a.rs".into());
        let md = check(&Report::new(vec![wordy; 60]));
        assert!(md.len() < 1024 * 1024, "{}", md.len());
        let rows = md.lines().filter(|l| l.starts_with("| error |")).count();
        assert!(rows > 0 && rows < 60 && rows * 10_000 <= TABLE_BYTES, "{rows}");
        assert!(
            md.contains(&format!("{} more row(s) left out", 60 - rows)),
            "{md}"
        );
    }

    #[test]
    fn code_spans_outfence_backticks() {
        assert_eq!(code_span("a`b"), "``a`b``");
        assert_eq!(code_span("`x`"), "`` `x` ``");
        assert_eq!(code_span("plain\nline"), "`plain line`");
    }
}
