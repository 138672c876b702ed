//! Rendering a [`TestRun`] for people (stderr) and for GitHub Actions (stdout).

use std::io::Write;
use std::path::Path;

use loopcheck::report::Severity;

use super::model::{Counts, Execution, Status, TestReport, TestRun, ZombieReport};
use crate::error::{Error, Result};
use crate::render::{escape_data, escape_property};
use crate::term::{EMPHASIS, ERROR, GOOD, NOTE, Term, WARNING, write_diagnosis};

/// The zombies found as the run starts: warnings, or what `--reap` did to them. Written to
/// stderr in one piece, so the runner's output, copied there meanwhile, cannot split it.
pub(crate) fn zombies(term: &Term, zombies: &[ZombieReport]) {
    if zombies.is_empty() {
        return;
    }
    let choice = if term.colors() {
        anstream::ColorChoice::Always
    } else {
        anstream::ColorChoice::Never
    };
    let mut text = anstream::AutoStream::new(Vec::new(), choice);
    for report in zombies {
        for mut finding in report.zombie.findings() {
            match report.outcome {
                None => finding.severity = Severity::Warning,
                Some(outcome) => {
                    finding.severity = Severity::Info;
                    finding.suggestion = Some(format!("ended before the run: {outcome:?}").to_lowercase());
                }
            }
            let _ = crate::term::write_finding(&mut text, &finding);
        }
    }
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(&text.into_inner());
}

/// One line per copy of a flake hunt, as it finishes: `(round, rounds)`, `(copy, copies)`.
pub(crate) fn progress(term: &Term, round: (u32, u32), copy: (u32, u32), executions: &[Execution]) {
    let count = |status| executions.iter().filter(|e| e.status == status).count();
    let failed = count(Status::Failed);
    let mut err = term.stderr();
    let style = if failed > 0 { ERROR } else { GOOD };
    let _ = writeln!(
        err,
        "{style}{:>12}{style:#} run {}/{}, copy {}/{}: {} passed, {failed} failed, {} flaky",
        "Finished",
        round.0 + 1,
        round.1,
        copy.0 + 1,
        copy.1,
        count(Status::Passed),
        count(Status::Flaky),
    );
}

/// The human report: each failing or flaky test with its diagnoses, leaks, flakes, a summary.
pub(crate) fn human(term: &Term, run: &TestRun, run_dir: &Path) -> std::io::Result<()> {
    let mut err = term.stderr();
    writeln!(err)?;
    if !run.zombies.is_empty() {
        writeln!(
            err,
            "{WARNING}{:>12}{WARNING:#} {} zombie listener(s) of this workspace were found as the run started (above)",
            "Zombies",
            run.zombies.len()
        )?;
    }
    for test in run.bad() {
        test_heading(&mut err, test)?;
        for diagnosis in &test.diagnoses {
            write_diagnosis(&mut err, diagnosis)?;
        }
        if test.diagnoses.is_empty() && test.status == Status::Failed {
            writeln!(err, "{:>12} no socket explains this failure", "")?;
        }
    }
    for test in run.tests.iter().filter(|t| !t.leaks.is_empty()) {
        for leak in &test.leaks {
            write_diagnosis(&mut err, leak)?;
        }
    }
    for leak in &run.leaks {
        write_diagnosis(&mut err, leak)?;
    }
    let Counts {
        tests,
        passed,
        failed,
        flaky,
        skipped,
        leaks,
    } = run.counts();
    let style = if failed + flaky > 0 { ERROR } else { GOOD };
    let runs = if run.runs > 1 {
        format!(" over {} runs", run.runs)
    } else {
        String::new()
    };
    writeln!(
        err,
        "{style}{:>12}{style:#} {} tests{runs} with {}: {passed} passed, {failed} failed, {flaky} flaky, {skipped} skipped{}",
        "Summary",
        tests,
        run.runner.command(),
        if leaks > 0 {
            format!("; {leaks} leak(s)")
        } else {
            String::new()
        }
    )?;
    writeln!(
        err,
        "{NOTE}{:>12}{NOTE:#} run {} in {}",
        "Records",
        run.run_id,
        run_dir.display()
    )?;
    Ok(())
}

fn test_heading(err: &mut impl Write, test: &TestReport) -> std::io::Result<()> {
    let place = match (&test.file, test.line) {
        (Some(file), Some(line)) => format!(" ({file}:{line})"),
        _ => String::new(),
    };
    match test.status {
        Status::Flaky => writeln!(
            err,
            "{WARNING}{:>12}{WARNING:#} {} {EMPHASIS}{}{EMPHASIS:#}{place}: failed {} of {} runs",
            "FLAKY", test.binary, test.name, test.failures, test.runs
        )?,
        _ => writeln!(
            err,
            "{ERROR}{:>12}{ERROR:#} {} {EMPHASIS}{}{EMPHASIS:#}{place}",
            "FAIL", test.binary, test.name
        )?,
    }
    if let Some(message) = &test.message {
        for line in message.lines() {
            writeln!(err, "{:>12} {line}", "")?;
        }
    }
    Ok(())
}

/// GitHub Actions annotations on stdout: one per failing or flaky test at its source line,
/// one per leak and zombie.
pub(crate) fn github(run: &TestRun) -> Result<()> {
    let mut out = String::new();
    for test in run.bad() {
        let mut props = Vec::new();
        if let Some(file) = &test.file {
            props.push(format!("file={}", escape_property(file)));
        }
        if let Some(line) = test.line {
            props.push(format!("line={line}"));
        }
        let codes = test.codes();
        let title = match (test.status, codes.is_empty()) {
            (Status::Flaky, _) => format!(
                "flaky test {} ({} of {} runs failed)",
                test.name, test.failures, test.runs
            ),
            (_, true) => format!("test {} failed", test.name),
            (_, false) => format!("test {} failed: {}", test.name, codes.join(", ")),
        };
        props.push(format!("title={}", escape_property(&title)));
        let mut message = test.message.clone().unwrap_or_default();
        for diagnosis in &test.diagnoses {
            message.push_str(&format!("\n{diagnosis}"));
        }
        let level = if test.status == Status::Flaky {
            "warning"
        } else {
            "error"
        };
        out.push_str(&format!(
            "::{level} {}::{}\n",
            props.join(","),
            escape_data(message.trim())
        ));
    }
    for leak in run.tests.iter().flat_map(|t| &t.leaks).chain(&run.leaks) {
        out.push_str(&format!(
            "::warning title={}::{}\n",
            escape_property(&format!("{} {}", leak.code, leak.name)),
            escape_data(&leak.to_string())
        ));
    }
    for finding in run.zombies.iter().flat_map(|z| z.zombie.findings()) {
        out.push_str(&format!(
            "::warning title={}::{}\n",
            escape_property(&format!("{} {}", finding.code, finding.name)),
            escape_data(&finding.message)
        ));
    }
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(out.as_bytes()).and_then(|()| stdout.flush()) {
        Err(err) if err.kind() != std::io::ErrorKind::BrokenPipe => Err(Error::Output(err)),
        _ => Ok(()),
    }
}
