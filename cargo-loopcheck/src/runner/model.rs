//! The runner's side of the `test` report: folding each run's executions into one report per
//! test. The report's types live in [`crate::report::test_run`], beside their renderers; they
//! are re-exported here so that the runner's files name them as before.

use loopcheck::report::Diagnosis;

pub use crate::report::test_run::*;

/// Folds the executions of every run into one report per test, in first-seen order. A test
/// that both passed and failed is flaky; one only skipped is skipped.
pub(crate) fn aggregate(executions: &[Execution]) -> Vec<TestReport> {
    let mut tests: Vec<TestReport> = Vec::new();
    let mut index: std::collections::HashMap<(&str, &str), usize> = std::collections::HashMap::new();
    for execution in executions {
        let key = (execution.binary.as_str(), execution.name.as_str());
        let at = *index.entry(key).or_insert_with(|| {
            tests.push(TestReport {
                name: execution.name.clone(),
                binary: execution.binary.clone(),
                status: Status::Skipped,
                diagnoses: Vec::new(),
                leaks: Vec::new(),
                runs: 0,
                failures: 0,
                message: None,
                file: None,
                line: None,
                output: String::new(),
            });
            tests.len() - 1
        });
        let test = &mut tests[at];
        if test.file.is_none() {
            test.file.clone_from(&execution.file);
            test.line = execution.line;
        }
        merge(&mut test.diagnoses, &execution.diagnoses);
        merge(&mut test.leaks, &execution.leaks);
        if execution.status == Status::Skipped {
            continue;
        }
        test.runs += 1;
        let failed = matches!(execution.status, Status::Failed | Status::Flaky);
        if failed {
            test.failures += 1;
            if test.output.is_empty() {
                test.output = execution.output.clone();
            }
        }
        test.status = match (test.status, execution.status) {
            (Status::Skipped, status) => status,
            (Status::Flaky, _) | (_, Status::Flaky) => Status::Flaky,
            (a, b) if a == b => a,
            _ => Status::Flaky,
        };
    }
    for test in &mut tests {
        test.message = first_lines(&test.output);
    }
    tests
}

/// Adds the diagnoses of `more` that `into` lacks: the same code about the same address and
/// process, seen again in another run, is one diagnosis.
pub(crate) fn merge(into: &mut Vec<Diagnosis>, more: &[Diagnosis]) {
    for diagnosis in more {
        let key = |d: &Diagnosis| (d.code, d.addr, d.holder().map(|p| p.pid));
        if !into.iter().any(|known| key(known) == key(diagnosis)) {
            into.push(diagnosis.clone());
        }
    }
}

/// The lines of a failure worth showing: its first panic (the root cause) and its last,
/// without backtraces and notes.
fn first_lines(output: &str) -> Option<String> {
    super::panics::summary(output)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_fold_into_statuses() {
        let run = |name: &str, status| Execution::new("demo::echo", name, status);
        let executions = [
            run("steady", Status::Passed),
            run("broken", Status::Failed),
            run("flaky", Status::Passed),
            run("ignored", Status::Skipped),
            run("retried", Status::Flaky),
            run("steady", Status::Passed),
            run("broken", Status::Failed),
            run("flaky", Status::Failed),
            run("ignored", Status::Skipped),
            run("retried", Status::Passed),
        ];
        let tests = aggregate(&executions);
        let statuses: Vec<(&str, Status, u32, u32)> = tests
            .iter()
            .map(|t| (t.name.as_str(), t.status, t.runs, t.failures))
            .collect();
        assert_eq!(
            statuses,
            [
                ("steady", Status::Passed, 2, 0),
                ("broken", Status::Failed, 2, 2),
                ("flaky", Status::Flaky, 2, 1),
                ("ignored", Status::Skipped, 0, 0),
                ("retried", Status::Flaky, 2, 1),
            ]
        );
    }

    #[test]
    fn the_message_is_the_panic_without_backtrace() {
        let output =
            "server log line\nthread 'x' panicked at tests/a.rs:3:5:\nboom\nstack backtrace:\n  0: foo\n";
        assert_eq!(
            first_lines(output).as_deref(),
            Some("thread 'x' panicked at tests/a.rs:3:5:\nboom")
        );
        assert_eq!(first_lines(""), None);
    }
}
