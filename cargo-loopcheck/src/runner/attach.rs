//! Tying records and leftover processes to the tests they belong to.

use loopcheck::report::Diagnosis;

use super::model::{Execution, Status};
use super::targets::Targets;
use loopcheck::run::RunRecord as Record;

/// The execution a record or leaked process names: by `crate::path::test` (a record, a
/// `LOOPCHECK_TEST`), or by nextest's binary id and test name.
pub(crate) fn find_execution<'e>(
    executions: &'e mut [Execution],
    targets: &Targets,
    full_name: Option<&str>,
    nextest: Option<(&str, &str)>,
) -> Option<&'e mut Execution> {
    if let Some((binary, name)) = nextest
        && let Some(at) = executions
            .iter()
            .position(|e| e.binary == binary && e.name == name)
    {
        return Some(&mut executions[at]);
    }
    let (crate_name, path) = full_name?.split_once("::")?;
    let at = executions.iter().position(|e| {
        e.name == path
            && targets
                .by_id(&e.binary)
                .is_none_or(|t| t.crate_name == crate_name)
    })?;
    Some(&mut executions[at])
}

/// Attaches the records' diagnoses and leaks to their tests; returns the leaks of records
/// that match no test.
pub(crate) fn attach_records(
    executions: &mut [Execution],
    targets: &Targets,
    records: Vec<Record>,
) -> Vec<Diagnosis> {
    let mut unmatched = Vec::new();
    for record in records {
        match find_execution(executions, targets, Some(&record.name), None) {
            Some(execution) => {
                if matches!(execution.status, Status::Failed | Status::Flaky) {
                    super::model::merge(&mut execution.diagnoses, &record.diagnoses);
                }
                super::model::merge(&mut execution.leaks, &record.leaks);
            }
            None => unmatched.extend(record.leaks),
        }
    }
    unmatched
}
