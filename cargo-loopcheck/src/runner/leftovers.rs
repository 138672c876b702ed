//! The processes a copy of the suite left running after it ended.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use loopcheck::diagnose::process_ref;
use loopcheck::report::{Code, Diagnosis};
use loopcheck::scan::{self, RunProcess, ScanOptions};

/// The processes of the run still alive after it ended, as LC012 (listening) or LC013
/// diagnoses, each with the test it is attributed to where known.
pub(crate) fn leftovers(run_dir: &Path) -> Vec<(RunProcess, Diagnosis)> {
    let first = scan::processes_of_run(run_dir);
    if first.is_empty() {
        return Vec::new();
    }
    // Children killed as their test ended may take a moment to be gone.
    std::thread::sleep(Duration::from_millis(200));
    let alive: Vec<RunProcess> = scan::processes_of_run(run_dir)
        .into_iter()
        .filter(|p| {
            first
                .iter()
                .any(|f| f.process.pid == p.process.pid && f.process.start_time == p.process.start_time)
        })
        .collect();
    let table = scan::scan_with(&ScanOptions::listeners()).ok();
    alive
        .into_iter()
        .map(|leftover| {
            let process = &leftover.process;
            let test = leftover
                .test_name
                .clone()
                .or_else(|| process.loopcheck_test.clone())
                .map_or_else(|| "a test of this run".to_owned(), |t| format!("test `{t}`"));
            let listening: Vec<SocketAddr> = table
                .iter()
                .flat_map(|t| t.sockets.iter().filter(|s| t.owners(s).any(|o| o.pid == process.pid)))
                .map(|s| s.local)
                .collect();
            let mut diagnosis = match listening.first() {
                Some(addr) => {
                    let all: Vec<String> = listening.iter().map(ToString::to_string).collect();
                    Diagnosis::new(
                        Code::LeakedListener,
                        Some(*addr),
                        format!(
                            "{test} ended and its process pid {} `{}` still listens on {}",
                            process.pid,
                            process.command(),
                            all.join(", ")
                        ),
                        format!(
                            "stop the server before the test returns (keep its `Child` and kill and wait for it, for example in a guard's `Drop`); `kill {}` ends this one",
                            process.pid
                        ),
                    )
                }
                None => Diagnosis::new(
                    Code::LeakedChild,
                    None,
                    format!(
                        "{test} ended and its child pid {} `{}` is still running",
                        process.pid,
                        process.command()
                    ),
                    format!(
                        "keep the `Child` and end it before the test returns (`child.kill()` then `child.wait()`, for example in a guard's `Drop`); `kill {}` ends this one",
                        process.pid
                    ),
                ),
            };
            let role = if listening.is_empty() { "child" } else { "listener" };
            diagnosis.processes.push(process_ref(process, role));
            (leftover, diagnosis)
        })
        .collect()
}
