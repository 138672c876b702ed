//! Rendering a [`TestRun`] for people, on stderr.

use std::io::Write;
use std::path::Path;

use loopcheck::report::Severity;

use super::test_run::{Counts, Execution, Status, TestReport, TestRun, ZombieReport};
use crate::term::{EMPHASIS, ERROR, GOOD, NOTE, Term, WARNING, write_diagnosis};

/// The zombies found as the run starts: warnings, or what `--reap` did to them. Written to
/// stderr in one piece, so the runner's output, copied there meanwhile, cannot split it.
pub(crate) fn zombies(term: &Term, zombies: &[ZombieReport]) {
    if zombies.is_empty() {
        return;
    }
    let mut text = rendered(term);
    for report in zombies {
        for mut finding in report.zombie.findings() {
            match report.outcome {
                None => finding.severity = Severity::Warning,
                Some(outcome) => {
                    finding.severity = Severity::Info;
                    finding.suggestion = Some(format!(
                        "--reap before the run: {}",
                        super::reap::outcome_words(outcome)
                    ));
                }
            }
            let _ = crate::term::write_finding(&mut text, &finding);
        }
    }
    let _ = term.stderr().write_all(&text.into_inner());
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
    // Rendered whole, then written at once: one system call rather than one per piece.
    let mut err = rendered(term);
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
    term.stderr().write_all(&err.into_inner())
}

/// A buffer for text bound for stderr, styled as `term` chooses; written out through
/// [`Term::stderr`], which turns the styles into console calls where a terminal needs that.
fn rendered(term: &Term) -> anstream::AutoStream<Vec<u8>> {
    let choice = if term.colors() {
        anstream::ColorChoice::Always
    } else {
        anstream::ColorChoice::Never
    };
    anstream::AutoStream::new(Vec::new(), choice)
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
