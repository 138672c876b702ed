//! JUnit XML of a `test` run (`--junit FILE`), diagnoses included.

use quick_junit::{NonSuccessKind, Property, Report, TestCase, TestCaseStatus, TestSuite};

use super::test_run::{Status, TestReport, TestRun};

/// Our report as JUnit: one suite per binary; a failed or flaky test carries its diagnoses in
/// the failure text and as `loopcheck.*` properties (code, pid, command of each). `trim_output`
/// is the runner's cleaner of captured output (backtraces without std's frames): the renderer
/// applies it but does not reach into the runner for it. The report's totals are the run's
/// [`TestRun::counts`], the same as the human summary and the job summary state.
pub(crate) fn write(
    run: &TestRun,
    trim_output: fn(&str) -> String,
) -> Result<String, quick_junit::SerializeError> {
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
        suite.add_test_case(case(test, trim_output));
    }
    report.add_test_suites(suites);
    let counts = run.counts();
    report.tests = counts.tests;
    report.skipped = counts.skipped;
    report.to_string()
}

fn case(test: &TestReport, trim_output: fn(&str) -> String) -> TestCase {
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
            // Once, without the frames of std and dependencies.
            let mut description = trim_output(&test.output);
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
    use crate::report::test_run::RunnerKind;

    fn report(name: &str, status: Status) -> TestReport {
        TestReport {
            name: name.into(),
            binary: "demo::net".into(),
            status,
            diagnoses: Vec::new(),
            leaks: Vec::new(),
            runs: 1,
            failures: 0,
            message: None,
            file: None,
            line: None,
            output: String::new(),
        }
    }

    #[test]
    fn the_totals_are_the_runs_counts_unlisted_skips_included() {
        let run = TestRun {
            run_id: "r".into(),
            runner: RunnerKind::CargoTest,
            tests: vec![report("adds", Status::Passed), report("ignored", Status::Skipped)],
            zombies: Vec::new(),
            flaky: Vec::new(),
            leaks: Vec::new(),
            runs: 1,
            skipped_unlisted: 3,
            timeline: Default::default(),
        };
        let xml = write(&run, str::to_owned).expect("serializes");
        let counts = run.counts();
        assert_eq!((counts.tests, counts.skipped), (5, 4));
        let parsed = Report::deserialize_from_str(&xml).expect("valid JUnit");
        assert_eq!(parsed.tests, counts.tests, "{xml}");
        assert_eq!(parsed.skipped, counts.skipped, "{xml}");
    }
}
