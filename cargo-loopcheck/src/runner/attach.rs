//! Tying records and leftover processes to the tests they belong to.

use std::collections::HashMap;

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
    let at = executions
        .iter()
        .position(|e| e.name == path && of_crate(e, targets, crate_name))?;
    Some(&mut executions[at])
}

/// Whether `execution` ran in a binary of crate `crate_name` (or one not known to be another's).
fn of_crate(execution: &Execution, targets: &Targets, crate_name: &str) -> bool {
    targets
        .by_id(&execution.binary)
        .is_none_or(|t| t.crate_name == crate_name)
}

/// Attaches the records' diagnoses and leaks to their tests; returns the leaks of records
/// that match no test.
pub(crate) fn attach_records(
    executions: &mut [Execution],
    targets: &Targets,
    records: Vec<Record>,
) -> Vec<Diagnosis> {
    // The executions of each test path, in order: a record is matched as `find_execution`
    // would, without a search of every execution for every record (quadratic in a large suite).
    let mut by_path: HashMap<String, Vec<usize>> = HashMap::new();
    for (at, execution) in executions.iter().enumerate() {
        by_path.entry(execution.name.clone()).or_default().push(at);
    }
    let mut unmatched = Vec::new();
    for record in records {
        let found = record.name.split_once("::").and_then(|(crate_name, path)| {
            by_path
                .get(path)?
                .iter()
                .copied()
                .find(|&at| of_crate(&executions[at], targets, crate_name))
        });
        match found.map(|at| &mut executions[at]) {
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
