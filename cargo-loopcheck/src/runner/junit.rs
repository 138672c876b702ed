//! JUnit XML: reading the report nextest writes for a run, and writing ours (`--junit FILE`).

use quick_junit::{NonSuccessKind, Property, Report, TestCase, TestCaseStatus, TestRerun, TestSuite};

use super::model::{Execution, Status, TestReport, TestRun};

/// The executions in a nextest JUnit report: suites are binaries, cases are tests. A case that
/// passed after failed attempts (nextest's retries) is flaky.
pub(crate) fn read(xml: &str) -> Result<Vec<Execution>, quick_junit::DeserializeError> {
    let report = Report::deserialize_from_str(xml)?;
    let mut executions = Vec::new();
    for suite in &report.test_suites {
        for case in &suite.test_cases {
            let (status, mut output) = match &case.status {
                TestCaseStatus::Success { flaky_runs } if flaky_runs.is_empty() => {
                    (Status::Passed, String::new())
                }
                TestCaseStatus::Success { flaky_runs } => (Status::Flaky, rerun_text(&flaky_runs[0])),
                TestCaseStatus::NonSuccess {
                    message, description, ..
                } => {
                    // nextest's message is the description's first line: one of them suffices.
                    let text = description
                        .as_ref()
                        .or(message.as_ref())
                        .map_or_else(String::new, |text| format!("{}\n", text.as_str()));
                    (Status::Failed, text)
                }
                TestCaseStatus::Skipped { .. } => (Status::Skipped, String::new()),
            };
            if status != Status::Passed {
                for stream in [&case.system_out, &case.system_err].into_iter().flatten() {
                    output.push_str(stream.as_str());
                    output.push('\n');
                }
            }
            let mut execution = Execution::new(suite.name.as_str(), case.name.as_str(), status);
            execution.output = output;
            executions.push(execution);
        }
    }
    Ok(executions)
}

fn rerun_text(rerun: &TestRerun) -> String {
    [
        &rerun.message,
        &rerun.description,
        &rerun.system_out,
        &rerun.system_err,
    ]
    .into_iter()
    .flatten()
    .map(|s| format!("{}\n", s.as_str()))
    .collect()
}

/// Our report as JUnit: one suite per binary; a failed or flaky test carries its diagnoses in
/// the failure text and as `loopcheck.*` properties (code, pid, command of each).
pub(crate) fn write(run: &TestRun) -> Result<String, quick_junit::SerializeError> {
    let mut report = Report::new(format!("cargo-loopcheck-{}", run.run_id));
    let mut suites: Vec<TestSuite> = Vec::new();
    for test in &run.tests {
        let suite = match suites.iter_mut().position(|s| s.name.as_str() == test.binary) {
            Some(at) => &mut suites[at],
            None => {
                let mut suite = TestSuite::new(test.binary.as_str());
                suite.add_property(Property::new("loopcheck.runner", run.runner.command()));
                suites.push(suite);
                suites.last_mut().expect("just pushed")
            }
        };
        suite.add_test_case(case(test));
    }
    report.add_test_suites(suites);
    report.to_string()
}

fn case(test: &TestReport) -> TestCase {
    let status = match test.status {
        Status::Passed => TestCaseStatus::success(),
        Status::Skipped => TestCaseStatus::skipped(),
        Status::Failed | Status::Flaky => {
            let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
            let mut message = test
                .message
                .as_deref()
                .and_then(|m| m.lines().nth(1).or_else(|| m.lines().next()))
                .unwrap_or("failed")
                .to_owned();
            if let Some(first) = test.diagnoses.first() {
                message = format!("{}: {} ({message})", first.code, first.summary);
            }
            if test.status == Status::Flaky {
                message = format!("flaky: failed {} of {} runs: {message}", test.failures, test.runs);
            }
            status.set_message(message);
            status.set_type(if test.status == Status::Flaky {
                "flaky"
            } else {
                "failure"
            });
            let mut description = test.output.clone();
            for diagnosis in test.diagnoses.iter().chain(&test.leaks) {
                description.push_str(&format!("\nloopcheck: {diagnosis}\n"));
            }
            status.set_description(description);
            status
        }
    };
    let mut case = TestCase::new(test.name.as_str(), status);
    case.set_classname(test.binary.as_str());
    for (i, diagnosis) in test.diagnoses.iter().chain(&test.leaks).enumerate() {
        let key = |field: &str| format!("loopcheck.diagnosis.{i}.{field}");
        case.add_property(Property::new(key("code"), diagnosis.code.to_string()));
        case.add_property(Property::new(key("name"), diagnosis.name));
        case.add_property(Property::new(key("summary"), diagnosis.summary.as_str()));
        if let Some(process) = diagnosis.holder() {
            case.add_property(Property::new(key("pid"), process.pid.to_string()));
            case.add_property(Property::new(key("command"), process.command.as_str()));
            // What the socket timeline knows of the holder.
            let seen = [
                ("test", process.test.clone()),
                ("binary", process.binary.clone()),
                ("first_seen", process.first_seen.map(|s| s.to_string())),
                ("last_seen", process.last_seen.map(|s| s.to_string())),
            ];
            for (field, value) in seen {
                if let Some(value) = value {
                    case.add_property(Property::new(key(field), value));
                }
            }
        }
    }
    if let (Some(file), Some(line)) = (&test.file, test.line) {
        case.extra.insert("file".into(), file.as_str().into());
        case.extra.insert("line".into(), line.to_string().into());
    }
    case
}

#[cfg(test)]
mod tests {
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
