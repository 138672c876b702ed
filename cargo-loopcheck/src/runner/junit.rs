//! JUnit XML: reading the report nextest writes for a run (ours is written by
//! [`crate::report::junit`]).

use quick_junit::{Report, TestCaseStatus, XmlString};

use super::model::{Execution, Status};

/// The executions in a nextest JUnit report: suites are binaries, cases are tests. A case that
/// passed after failed attempts (nextest's retries) is flaky.
pub(crate) fn read(xml: &str) -> Result<Vec<Execution>, quick_junit::DeserializeError> {
    let report = Report::deserialize_from_str(xml)?;
    let mut executions = Vec::new();
    for suite in &report.test_suites {
        for case in &suite.test_cases {
            // A flaky test's failure is its first failed attempt's.
            let (status, failure) = match &case.status {
                TestCaseStatus::Success { flaky_runs } => match flaky_runs.first() {
                    None => (Status::Passed, None),
                    Some(rerun) => (
                        Status::Flaky,
                        Some(Failure {
                            message: rerun.message.as_ref(),
                            description: rerun.description.as_ref(),
                            stdout: rerun.system_out.as_ref(),
                            stderr: rerun.system_err.as_ref(),
                        }),
                    ),
                },
                TestCaseStatus::NonSuccess {
                    message, description, ..
                } => (
                    Status::Failed,
                    Some(Failure {
                        message: message.as_ref(),
                        description: description.as_ref(),
                        stdout: case.system_out.as_ref(),
                        stderr: case.system_err.as_ref(),
                    }),
                ),
                TestCaseStatus::Skipped { .. } => (Status::Skipped, None),
            };
            let output = failure.map_or_else(String::new, |f| f.output(case.name.as_str()));
            let mut execution = Execution::new(suite.name.as_str(), case.name.as_str(), status);
            execution.output = output;
            executions.push(execution);
        }
    }
    Ok(executions)
}

/// The tests (binary, name) of a nextest JUnit report that were aborted by `signal` (`SIGTERM`):
/// nextest writes them as failures of type `test abort`, `process aborted with signal 15
/// (SIGTERM)`. When this tool passed that signal on to stop the run, they were interrupted,
/// not failed.
pub(crate) fn aborted_by(
    xml: &str,
    signal: &str,
) -> Result<Vec<(String, String)>, quick_junit::DeserializeError> {
    let report = Report::deserialize_from_str(xml)?;
    let named = format!("({signal})");
    Ok(report
        .test_suites
        .iter()
        .flat_map(|suite| suite.test_cases.iter().map(move |case| (suite, case)))
        .filter(|(_, case)| match &case.status {
            TestCaseStatus::NonSuccess { ty, message, .. } => {
                ty.as_ref().is_some_and(|t| t.as_str() == "test abort")
                    && message.as_ref().is_some_and(|m| m.as_str().ends_with(&named))
            }
            _ => false,
        })
        .map(|(suite, case)| (suite.name.as_str().to_owned(), case.name.as_str().to_owned()))
        .collect())
}

/// What nextest kept of a failed attempt.
struct Failure<'a> {
    message: Option<&'a XmlString>,
    description: Option<&'a XmlString>,
    stdout: Option<&'a XmlString>,
    stderr: Option<&'a XmlString>,
}

impl Failure<'_> {
    /// The captured output in the order printed, each panic once. nextest's description
    /// repeats only the last panic: put first, it would hide the first one, the root cause.
    /// It is kept where the output lacks it (a profile that stores no output).
    fn output(&self, name: &str) -> String {
        let mut output = String::new();
        if let Some(stdout) = self.stdout {
            output.push_str(&without_libtest_framing(stdout.as_str(), name));
        }
        if let Some(stderr) = self.stderr {
            output.push_str(stderr.as_str());
            output.push('\n');
        }
        // nextest's message is the description's first line: one of them suffices.
        if let Some(description) = self.description.or(self.message)
            && !output.contains(description.as_str().trim())
        {
            output = format!("{}\n{output}", description.as_str());
        }
        output
    }
}

/// How many tests nextest skipped, from its summary line (`Summary [ 0.1s] 3 tests run: 1
/// passed, 2 failed, 1 skipped`): its JUnit report leaves ignored and filtered-out tests out.
pub(crate) fn skipped_in_summary(output: &str) -> Option<u32> {
    let plain = anstream::adapter::strip_str(output).to_string();
    plain
        .lines()
        .rev()
        .filter(|line| line.trim_start().starts_with("Summary [") && line.contains(" run: "))
        .find_map(|line| {
            let counts = line.split_once(" run: ")?.1;
            counts.split(", ").find_map(|count| {
                let (number, what) = count.trim().split_once(' ')?;
                what.starts_with("skipped").then(|| number.parse().ok()).flatten()
            })
        })
}

/// A test's captured stdout without what libtest prints around a single test (nextest runs each
/// in a process of its own): `running 1 test`, its result line, the `failures:` list, the
/// `test result:` line.
fn without_libtest_framing(stdout: &str, name: &str) -> String {
    let framing = |line: &str| {
        let line = line.trim_end();
        line == "running 1 test"
            || line == "failures:"
            || line.starts_with("test result: ")
            || line == format!("    {name}")
            || line.strip_prefix(&format!("test {name} ... ")).is_some()
    };
    let mut out = String::new();
    let mut blank = true;
    for line in stdout.lines().filter(|l| !framing(l)) {
        // Framing leaves runs of blank lines behind: one is enough.
        let is_blank = line.trim().is_empty();
        if !(is_blank && blank) {
            out.push_str(line);
            out.push('\n');
        }
        blank = is_blank;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::model::TestRun;
    use super::*;

    const NEXTEST: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<testsuites name="nextest-run" tests="4" failures="1" errors="0" uuid="ab0ae8de-6813-490b-8b1d-70031348b68f" timestamp="2026-11-30T16:01:34.838+00:00" time="0.112">
    <testsuite name="demo::echo" tests="4" skipped="0" errors="0" failures="1">
        <testcase name="ok" classname="demo::echo" timestamp="2026-11-30T16:01:34.838+00:00" time="0.006"/>
        <testcase name="bad" classname="demo::echo" timestamp="2026-11-30T16:01:34.838+00:00" time="0.111">
            <failure message="thread &apos;bad&apos; (11785) panicked at tests/a.rs:2:91" type="test failure with exit code 101">thread &apos;bad&apos; (11785) panicked at tests/a.rs:2:91:
called `Result::unwrap()` on an `Err` value: Os { code: 98, kind: AddrInUse, message: &quot;Address already in use&quot; }</failure>
            <system-out>some stdout</system-out>
        </testcase>
        <testcase name="retried" classname="demo::echo" time="0.2">
            <flakyFailure message="first attempt" type="test failure">connection refused</flakyFailure>
        </testcase>
        <testcase name="skipped" classname="demo::echo">
            <skipped/>
        </testcase>
    </testsuite>
</testsuites>"#;

    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn never_panics(text in "\\PC{0,300}") {
                let _ = read(&text);
            }

            #[test]
            fn a_truncated_report_is_an_error_or_a_prefix(cut in 0..NEXTEST.len()) {
                let Some(prefix) = NEXTEST.get(..cut) else { return Ok(()) };
                if let Ok(executions) = read(prefix) {
                    prop_assert!(executions.len() <= 4);
                }
            }
        }
    }

    #[test]
    fn the_skipped_count_comes_from_the_summary_line() {
        let output = "        PASS [   0.005s] (2/3) report::quick passes\n\
\u{1b}[32;1m     Summary\u{1b}[0m [   0.009s] 3 tests run: 1 passed, 2 failed, 4 skipped\n\
        FAIL [   0.004s] (1/3) report::quick fails\n";
        assert_eq!(skipped_in_summary(output), Some(4));
        let none = "     Summary [   0.009s] 3 tests run: 3 passed, 0 skipped\n";
        assert_eq!(skipped_in_summary(none), Some(0));
        let flaky = "     Summary [   0.2s] 2 tests run: 1 passed, 1 flaky, 1 failed, 12 skipped\n";
        assert_eq!(skipped_in_summary(flaky), Some(12));
        assert_eq!(skipped_in_summary("Summary of my own: 3 skipped\n"), None);
        assert_eq!(skipped_in_summary(""), None);
    }

    #[test]
    fn each_panic_once_in_the_order_printed() {
        let executions = read(SERVER_TASK).expect("valid report");
        let output = &executions[0].output;
        let first = output.find("AddrInUse").expect("the root cause");
        let last = output.find("Canceled").expect("the last panic");
        assert!(first < last, "{output}");
        assert_eq!(output.matches("Canceled").count(), 1, "{output}");
        assert!(!output.contains("running 1 test"), "{output}");
        assert!(!output.contains("test result:"), "{output}");
        // Without stored output, the description is what there is.
        let bare = SERVER_TASK.split("<system-out>").next().unwrap().to_owned()
            + "</testcase></testsuite></testsuites>";
        let executions = read(&bare).expect("valid report");
        assert!(
            executions[0].output.contains("Canceled"),
            "{}",
            executions[0].output
        );
    }

    #[test]
    fn our_report_holds_the_failure_once_without_foreign_frames() {
        let mut executions = read(SERVER_TASK).expect("valid report");
        executions[0].output.push_str("stack backtrace:\n   0: std::panicking::begin\n             at /rustc/1/library/std/src/panicking.rs:1:1\n   1: a::serves\n             at ./tests/a.rs:3:5\n");
        let tests = super::super::model::aggregate(&executions);
        let run = TestRun {
            run_id: "r".into(),
            runner: super::super::model::RunnerKind::Nextest,
            tests,
            zombies: Vec::new(),
            flaky: Vec::new(),
            leaks: Vec::new(),
            runs: 1,
            skipped_unlisted: 0,
            timeline: Default::default(),
        };
        let xml =
            crate::report::junit::write(&run, super::super::panics::trim_backtraces).expect("serializes");
        let parsed = Report::deserialize_from_str(&xml).expect("valid JUnit");
        let case = &parsed.test_suites[0].test_cases[0];
        let TestCaseStatus::NonSuccess {
            message, description, ..
        } = &case.status
        else {
            panic!("a failure: {xml}");
        };
        let description = description.as_ref().unwrap().as_str();
        assert_eq!(description.matches("AddrInUse").count(), 1, "{description}");
        assert_eq!(description.matches("Canceled").count(), 1, "{description}");
        assert!(!description.contains("std::panicking"), "{description}");
        assert!(description.contains("at ./tests/a.rs:3:5"), "{description}");
        assert!(
            message.as_ref().unwrap().as_str().contains("AddrInUse"),
            "the message is the root cause: {message:?}"
        );
    }

    /// nextest's report of a tokio test whose server task failed to bind: the description
    /// repeats the last panic only, the output has both.
    const SERVER_TASK: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<testsuites name="nextest-run" tests="1" failures="1" errors="0">
    <testsuite name="demo::server" tests="1" skipped="0" errors="0" failures="1">
        <testcase name="serves" classname="demo::server" time="0.004">
            <failure message="thread &apos;serves&apos; (9) panicked at tests/a.rs:15:20" type="test failure with exit code 101">thread &apos;serves&apos; (9) panicked at tests/a.rs:15:20:
Failed to wait for server to be ready: Canceled</failure>
            <system-out>
running 1 test
test serves ... FAILED

failures:

failures:
    serves

test result: FAILED. 0 passed; 1 failed; 0 ignored; 0 measured; 3 filtered out; finished in 0.00s

</system-out>
            <system-err>
thread &apos;serves&apos; (9) panicked at tests/a.rs:11:81:
called `Result::unwrap()` on an `Err` value: Os { code: 98, kind: AddrInUse, message: &quot;Address already in use&quot; }
note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace

thread &apos;serves&apos; (9) panicked at tests/a.rs:15:20:
Failed to wait for server to be ready: Canceled
</system-err>
        </testcase>
    </testsuite>
</testsuites>"#;

    #[test]
    fn tests_aborted_by_the_stopping_signal_are_told_from_failures() {
        // As nextest 0.9.143 writes a run stopped by SIGTERM: `slow` was ended by the signal,
        // `bad` failed before it, `crashed` died of another signal.
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<testsuites name="nextest-run" tests="4" skipped="0" failures="3" errors="0">
    <testsuite name="nx::slow" tests="4" skipped="0" errors="0" failures="3">
        <testcase name="quick" classname="nx::slow" time="0.044"/>
        <testcase name="slow" classname="nx::slow" time="2.653">
            <failure message="process aborted with signal 15 (SIGTERM)" type="test abort">process aborted with signal 15 (SIGTERM)</failure>
            <system-out>
running 1 test
</system-out>
            <system-err></system-err>
        </testcase>
        <testcase name="bad" classname="nx::slow" time="0.01">
            <failure message="thread &apos;bad&apos; (7) panicked at tests/slow.rs:2:5" type="test failure with exit code 101">thread &apos;bad&apos; (7) panicked at tests/slow.rs:2:5:
boom</failure>
        </testcase>
        <testcase name="crashed" classname="nx::slow" time="0.01">
            <failure message="process aborted with signal 11 (SIGSEGV)" type="test abort">process aborted with signal 11 (SIGSEGV)</failure>
        </testcase>
    </testsuite>
</testsuites>"#;
        assert_eq!(
            aborted_by(xml, "SIGTERM").unwrap(),
            [("nx::slow".to_owned(), "slow".to_owned())]
        );
        assert!(aborted_by(xml, "SIGINT").unwrap().is_empty());
    }

    #[test]
    fn reads_nextest_reports() {
        let executions = read(NEXTEST).expect("valid report");
        let statuses: Vec<(&str, &str, Status)> = executions
            .iter()
            .map(|e| (e.binary.as_str(), e.name.as_str(), e.status))
            .collect();
        assert_eq!(
            statuses,
            [
                ("demo::echo", "ok", Status::Passed),
                ("demo::echo", "bad", Status::Failed),
                ("demo::echo", "retried", Status::Flaky),
                ("demo::echo", "skipped", Status::Skipped),
            ]
        );
        assert!(executions[1].output.contains("Address already in use"));
        assert!(executions[1].output.contains("some stdout"));
        assert!(executions[2].output.contains("connection refused"));
        assert!(read("<testsuites").is_err());
        assert!(read("not xml at all").is_err());
    }
}
