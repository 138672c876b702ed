//! The run directories under the lease registry's `runs`: their ids, their creation, and the
//! pruning of old ones.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result};

/// How many runs are kept under the registry's `runs` directory.
const KEEP_RUNS: usize = 10;

/// `YYYYMMDDTHHMMSS-PID`: sortable, and unique on a host at one time.
pub(crate) fn new_run_id() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}-{}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        std::process::id()
    )
}

/// Creates `path` and its parents, private to this user (0700), as the registry's own.
pub(crate) fn create_private_dir(path: &Path) -> Result<()> {
    loopcheck::sys::create_private_dir(path).map_err(|source| Error::Io {
        action: "create",
        path: path.to_path_buf(),
        source,
    })
}

/// Removes all but the newest [`KEEP_RUNS`] run directories (their names sort by time), never
/// `current`, nor one whose `cargo loopcheck test` still runs (its pid ends the name).
pub(crate) fn prune_runs(runs: &Path, current: &str) {
    let Ok(entries) = std::fs::read_dir(runs) else {
        return;
    };
    let mut dirs: Vec<(PathBuf, String)> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()) && e.file_name() != current)
        .map(|e| (e.path(), e.file_name().to_string_lossy().into_owned()))
        .collect();
    dirs.sort();
    let excess = dirs.len().saturating_sub(KEEP_RUNS - 1);
    for (dir, name) in &dirs[..excess] {
        let pid = name.rsplit_once('-').and_then(|(_, pid)| pid.parse::<u32>().ok());
        if !pid.is_some_and(running) {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Whether a process with this pid runs (a reused pid errs on the side of keeping).
fn running(pid: u32) -> bool {
    #[cfg(unix)]
    {
        let Ok(pid) = libc::pid_t::try_from(pid) else {
            return false;
        };
        // SAFETY: signal 0 only checks that the process exists and may be signalled.
        let sent = unsafe { libc::kill(pid, 0) } == 0;
        sent || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
    }
    #[cfg(not(unix))]
    {
        let _ = pid;
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_sort_by_time() {
        let id = new_run_id();
        let (stamp, pid) = id.split_once('-').unwrap();
        assert_eq!(stamp.len(), 15, "{id}");
        assert_eq!(&stamp[8..9], "T");
        assert!(stamp.starts_with("20"), "{id}");
        assert_eq!(pid, std::process::id().to_string());
    }

    #[test]
    fn pruning_keeps_the_newest_runs_and_those_still_running() {
        let runs = tempfile::tempdir().unwrap();
        let me = std::process::id();
        let gone = 999_999_999;
        let names: Vec<String> = (0..14)
            .map(|i| format!("20260101T0000{i:02}-{}", if i < 2 { me } else { gone }))
            .collect();
        for name in &names {
            std::fs::create_dir(runs.path().join(name)).unwrap();
        }
        let current = names.last().unwrap();
        prune_runs(runs.path(), current);
        let mut left: Vec<String> = std::fs::read_dir(runs.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        let mut expected: Vec<String> = names[..2].to_vec();
        expected.extend_from_slice(&names[names.len() - KEEP_RUNS..]);
        assert_eq!(
            left, expected,
            "running ones, the current one and the nine newest before it"
        );
    }
}
