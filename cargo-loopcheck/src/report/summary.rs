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
        md.push_str("| test | status | code | holder | fix |\n|---|---|---|---|---|\n");
        for test in run.bad() {
            let status = match test.status {
                Status::Flaky => format!("flaky ({} of {} runs failed)", test.failures, test.runs),
                _ => "failed".to_owned(),
            };
            let name = test_name(test);
            if test.diagnoses.is_empty() {
                let _ = writeln!(md, "| {name} | {status} | | | no socket explains this failure |");
            }
            for diagnosis in &test.diagnoses {
                let _ = writeln!(md, "| {name} | {status} | {} |", diagnosis_cells(diagnosis));
            }
        }
        md.push('\n');
    }
    if !leaks.is_empty() {
        md.push_str("### Leaks\n\n");
        md.push_str("| test | code | what | holder | fix |\n|---|---|---|---|---|\n");
        for (test, leak) in leaks {
            let name = test.map_or_else(|| "(the run)".to_owned(), test_name);
            let _ = writeln!(
                md,
                "| {name} | {} | {} | {} | {} |",
                code(leak),
                cell(&leak.summary),
                holder(leak),
                cell(&leak.fix)
            );
        }
        md.push('\n');
    }
    if !run.zombies.is_empty() {
        md.push_str("### Zombie listeners\n\n");
        md.push_str("| pid | command | listens on | why | outcome |\n|---|---|---|---|---|\n");
        for report in &run.zombies {
            let zombie = &report.zombie;
            let addrs: Vec<String> = zombie.addrs.iter().map(ToString::to_string).collect();
            let outcome = report.outcome.map_or_else(
                || "left running (`--reap` ends it)".to_owned(),
                |o| super::reap::outcome_words(o).to_owned(),
            );
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {outcome} |",
                zombie.pid,
                code_span(&zombie.command),
                cell(&addrs.join(", ")),
                cell(&zombie.reason)
            );
        }
        md.push('\n');
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
        md.push_str("| severity | code | where | problem | fix |\n|---|---|---|---|---|\n");
        for finding in &report.findings {
            let _ = writeln!(
                md,
                "| {} | {} {} | {} | {} | {} |",
                finding.severity,
                finding.code,
                finding.name,
                place(finding),
                cell(&finding.message),
                finding.suggestion.as_deref().map(cell).unwrap_or_default()
            );
        }
        md.push('\n');
    }
    if !host_problems.is_empty() {
        md.push_str("| host check | status | problem | fix |\n|---|---|---|---|\n");
        for check in host_problems {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} |",
                cell(&check.name),
                check.severity(),
                cell(&check.message),
                check.fix.as_deref().map(cell).unwrap_or_default()
            );
        }
        md.push('\n');
    }
    md
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

/// Text made safe for a table cell: no line breaks, no cell separators, no HTML.
fn cell(text: &str) -> String {
    let one_line: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    one_line
        .join(" ")
        .replace('&', "&amp;")
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
        let addr = "127.0.0.1:8080".parse().unwrap();
        let mut diagnosis = Diagnosis::new(
            Code::PortInUse,
            Some(addr),
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
    fn code_spans_outfence_backticks() {
        assert_eq!(code_span("a`b"), "``a`b``");
        assert_eq!(code_span("`x`"), "`` `x` ``");
        assert_eq!(code_span("plain\nline"), "`plain line`");
    }
}
