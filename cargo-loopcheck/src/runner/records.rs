//! The records that `#[loopback_test]`s and `--isolate`'s wrapper write to a copy's run
//! directory.

use std::path::{Path, PathBuf};

use loopcheck::report::Diagnosis;
use serde::{Deserialize, Serialize};

/// One test's record in the run directory: a `#[loopback_test]`'s, or `--isolate`'s wrapper's.
#[derive(Debug, Deserialize, Serialize)]
pub(crate) struct Record {
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) diagnoses: Vec<Diagnosis>,
    #[serde(default)]
    pub(crate) leaks: Vec<Diagnosis>,
}

/// The records in `dir`: the lines of `records.jsonl` (and of any other `.jsonl` file). A line that is not a record is
/// reported on stderr and skipped; so is a last line without its newline (its writer was
/// killed mid-write).
pub(crate) fn read_records(dir: &Path) -> Vec<Record> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    paths.sort();
    let mut records = Vec::new();
    for path in paths {
        let text = match std::fs::read(&path) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(error) => {
                eprintln!(
                    "warning: cannot read the run records in {}: {error}",
                    path.display()
                );
                continue;
            }
        };
        let complete = text.rfind('\n').map_or("", |end| &text[..end]);
        for (number, line) in complete.lines().enumerate() {
            match serde_json::from_str::<Record>(line) {
                Ok(record) => records.push(record),
                Err(error) => eprintln!(
                    "warning: skipping line {} of {}, not a run record: {error}",
                    number + 1,
                    path.display()
                ),
            }
        }
    }
    records
}

#[cfg(test)]
mod tests {
    use super::*;
    use loopcheck::report::Code;

    #[test]
    fn records_are_lines_and_a_torn_or_bad_line_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        // loopcheck:allow(LC010): test data the code under test parses or prints, never bound
        let record = r#"{"name":"net::a","outcome":"failed","diagnoses":[{"code":"LC005","severity":"error","addr":"127.0.0.1:9","summary":"s","fix":"f"}],"leaks":[]}"#;
        std::fs::write(
            dir.path().join("10.jsonl"),
            format!("{record}\nnot json\n{{\"name\":\"net::b\"}}\n{{\"name\":\"torn"),
        )
        .unwrap();
        std::fs::write(dir.path().join("11.json"), record).unwrap();
        let records = read_records(dir.path());
        let names: Vec<&str> = records.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["net::a", "net::b"]);
        assert_eq!(records[0].diagnoses[0].code, Code::ConnectionRefused);
        assert!(read_records(&dir.path().join("missing")).is_empty());
    }
}
