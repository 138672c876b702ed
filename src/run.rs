//! The run contract between `cargo loopcheck test` and the code under test: the environment
//! variables it sets, the test a process or thread works for, the run id, and the run records
//! `#[loopback_test]`s append to the run directory and the CLI reads back.
//!
//! A leaf: the registry (`lease`), the scanner (`scan`) and the harness all import it, and it
//! imports only the report types, so nothing below the harness has to reach up into it.

use std::cell::Cell;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::report::{Diagnosis, Protocol};

/// The environment variable naming the test a process works for (set by the harness).
pub const TEST_VAR: &str = "LOOPCHECK_TEST";

/// The environment variable naming the run directory of `cargo loopcheck test`.
pub const RUN_DIR_VAR: &str = "LOOPCHECK_RUN_DIR";

/// The file of a run directory that `#[loopback_test]`s append their records to: one JSON
/// object per line.
pub const RECORDS_FILE: &str = "records.jsonl";

thread_local! {
    static CURRENT: Cell<Option<&'static str>> = const { Cell::new(None) };
}

/// The `#[loopback_test]` running on this thread, if any.
pub(crate) fn current() -> Option<&'static str> {
    CURRENT.with(Cell::get)
}

/// Marks `test` as the `#[loopback_test]` running on this thread (`None`: it ended).
pub(crate) fn set_current(test: Option<&'static str>) {
    CURRENT.with(|c| c.set(test));
}

static HOLDER_NAME: OnceLock<String> = OnceLock::new();

/// Names what this process works for where no test runs; the first name set stays. Returns
/// `false` if a name was set before. Public as `loopcheck::lease::set_holder_name`.
pub(crate) fn set_holder_name(name: String) -> bool {
    HOLDER_NAME.set(name).is_ok()
}

/// The test this process or thread works for: the harness's context, `LOOPCHECK_TEST`, or the
/// name libtest gives the thread running a test.
pub(crate) fn current_test() -> Option<String> {
    if let Some(test) = current() {
        return Some(test.to_owned());
    }
    if let Some(name) = HOLDER_NAME.get() {
        return Some(name.clone());
    }
    static FROM_ENV: OnceLock<Option<String>> = OnceLock::new();
    if let Some(test) = FROM_ENV.get_or_init(|| std::env::var(TEST_VAR).ok().filter(|t| !t.is_empty())) {
        return Some(test.clone());
    }
    let thread = std::thread::current();
    thread.name().filter(|name| *name != "main").map(str::to_owned)
}

/// The run id of `cargo loopcheck test`: the name of `LOOPCHECK_RUN_DIR`.
pub(crate) fn run_id() -> Option<&'static str> {
    static RUN_ID: OnceLock<Option<String>> = OnceLock::new();
    RUN_ID
        .get_or_init(|| {
            let dir = PathBuf::from(std::env::var_os(RUN_DIR_VAR)?);
            Some(dir.file_name()?.to_str()?.to_owned())
        })
        .as_deref()
}

/// The run directory of `cargo loopcheck test` this process belongs to, if any.
///
/// Read once per process: every test that ends asks, and `getenv` takes a lock and scans the
/// environment.
pub(crate) fn run_dir() -> Option<&'static Path> {
    static RUN_DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    RUN_DIR
        .get_or_init(|| std::env::var_os(RUN_DIR_VAR).map(PathBuf::from))
        .as_deref()
}

/// One socket or port handed to a test.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GivenSocket {
    /// TCP or UDP.
    pub protocol: Protocol,
    /// The port.
    pub port: u16,
    /// The addresses the test was told to use.
    pub addrs: Vec<SocketAddr>,
}

/// One test's record in the run directory: a `#[loopback_test]`'s, or `--isolate`'s
/// wrapper's. Only `name` is required when reading, since the wrapper knows no more than the
/// test's name, its diagnoses and its leaks.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunRecord {
    /// `crate::path::test`.
    pub name: String,
    /// `passed`, `panicked_as_expected` (a `#[should_panic]` test), `failed` or `timed_out`, as
    /// the harness saw it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// The failure's message, when the harness has one of its own.
    #[serde(default)]
    pub message: Option<String>,
    /// The ports handed to the test.
    #[serde(default)]
    pub ports: Vec<u16>,
    /// The sockets and ports handed to the test, with their addresses.
    #[serde(default)]
    pub given: Vec<GivenSocket>,
    /// Why the test failed.
    #[serde(default)]
    pub diagnoses: Vec<Diagnosis>,
    /// What the test left behind.
    #[serde(default)]
    pub leaks: Vec<Diagnosis>,
    /// How long the body ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// The test process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// The test binary.
    #[serde(default)]
    pub binary: Option<PathBuf>,
}

/// A record's fields that change from test to test, borrowed from the harness: a record is
/// encoded straight from them, without copying them into a [`RunRecord`] first.
pub(crate) struct RecordFields<'a> {
    pub(crate) name: &'a str,
    pub(crate) outcome: Option<&'a str>,
    pub(crate) message: Option<&'a str>,
    pub(crate) given: &'a [GivenSocket],
    pub(crate) diagnoses: &'a [Diagnosis],
    pub(crate) leaks: &'a [Diagnosis],
    pub(crate) duration_ms: Option<u64>,
}

impl RecordFields<'_> {
    /// The record as one line of JSON, ending in a newline, with `ports` and `process` (the
    /// end [`process_fields`] wrote once for the process): the value `serde_json` writes for
    /// the [`RunRecord`], written by hand (see [`crate::json`]) except for the diagnoses and
    /// leaks, which only failing and leaking tests have.
    fn to_json_line(&self, ports: impl Iterator<Item = u16>, process: &[u8]) -> io::Result<Vec<u8>> {
        use crate::json::{Out, push_optional_string, push_socket_addr, push_string, push_u64};

        let push_diagnoses = |json: &mut Vec<u8>, list: &[Diagnosis]| -> io::Result<()> {
            if list.is_empty() {
                json.put(b"[]");
            } else {
                serde_json::to_writer(&mut *json, list).map_err(io::Error::other)?;
            }
            Ok(())
        };
        let mut json = Vec::with_capacity(256);
        json.put(br#"{"name":"#);
        push_string(&mut json, self.name);
        if let Some(outcome) = self.outcome {
            json.put(br#","outcome":"#);
            push_string(&mut json, outcome);
        }
        json.put(br#","message":"#);
        push_optional_string(&mut json, self.message);
        json.put(br#","ports":["#);
        for (i, port) in ports.enumerate() {
            if i > 0 {
                json.put(b",");
            }
            push_u64(&mut json, u64::from(port));
        }
        json.put(br#"],"given":["#);
        for (i, given) in self.given.iter().enumerate() {
            if i > 0 {
                json.put(b",");
            }
            json.put(br#"{"protocol":""#);
            json.put(given.protocol.as_str().as_bytes());
            json.put(br#"","port":"#);
            push_u64(&mut json, u64::from(given.port));
            json.put(br#","addrs":["#);
            for (j, addr) in given.addrs.iter().enumerate() {
                json.put(if j == 0 { b"\"" } else { b",\"" });
                push_socket_addr(&mut json, *addr);
                json.put(b"\"");
            }
            json.put(b"]}");
        }
        json.put(br#"],"diagnoses":"#);
        push_diagnoses(&mut json, self.diagnoses)?;
        json.put(br#","leaks":"#);
        push_diagnoses(&mut json, self.leaks)?;
        if let Some(duration_ms) = self.duration_ms {
            json.put(br#","duration_ms":"#);
            push_u64(&mut json, duration_ms);
        }
        json.put(process);
        Ok(json)
    }
}

/// The end of a record line, the same for every record of a process: its `pid` and `binary`,
/// the closing brace and the newline. A path that is not UTF-8 is written as null, where
/// `serde_json` would lose the record.
pub(crate) fn process_fields(pid: Option<u32>, binary: Option<&Path>) -> Vec<u8> {
    use crate::json::{Out, push_optional_string, push_u64};

    let mut json = Vec::new();
    if let Some(pid) = pid {
        json.put(br#","pid":"#);
        push_u64(&mut json, u64::from(pid));
    }
    json.put(br#","binary":"#);
    push_optional_string(&mut json, binary.and_then(Path::to_str));
    json.put(b"}\n");
    json
}

/// Appends `record` as one line to `records.jsonl` in `dir`, in one `write` to a file opened
/// once per process in append mode: a record costs one system call rather than a file creation
/// (about 0.2 ms on ext4), and appends of whole lines from several processes do not interleave.
///
/// `process` is the line's end, from [`process_fields`].
pub(crate) fn append_record(
    dir: &Path,
    record: &RecordFields<'_>,
    ports: impl Iterator<Item = u16>,
    process: &[u8],
) -> io::Result<()> {
    use std::io::Write;
    use std::sync::Mutex;

    static FILE: Mutex<Option<(PathBuf, std::fs::File)>> = Mutex::new(None);
    let line = record.to_json_line(ports, process)?;
    let mut file = FILE.lock().unwrap_or_else(|e| e.into_inner());
    if file.as_ref().is_none_or(|(open, _)| open != dir) {
        let path = dir.join(RECORDS_FILE);
        let opened = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        *file = Some((dir.to_path_buf(), opened));
    }
    match file.as_mut() {
        Some((_, opened)) => opened.write_all(&line),
        None => Ok(()),
    }
}

/// The records in `dir`: the lines of `records.jsonl` (and of any other `.jsonl` file). A line
/// that is not a record is reported on stderr and skipped; so is a last line without its
/// newline (its writer was killed mid-write).
pub fn read_records(dir: &Path) -> Vec<RunRecord> {
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
            match serde_json::from_str::<RunRecord>(line) {
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
    use crate::report::Code;

    /// `record`'s fields, as the harness hands them to [`append_record`].
    fn fields(record: &RunRecord) -> RecordFields<'_> {
        RecordFields {
            name: &record.name,
            outcome: record.outcome.as_deref(),
            message: record.message.as_deref(),
            given: &record.given,
            diagnoses: &record.diagnoses,
            leaks: &record.leaks,
            duration_ms: record.duration_ms,
        }
    }

    /// `record` as the line [`append_record`] writes.
    fn line_of(record: &RunRecord) -> Vec<u8> {
        let process = process_fields(record.pid, record.binary.as_deref());
        fields(record)
            .to_json_line(record.ports.iter().copied(), &process)
            .unwrap()
    }

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
        assert_eq!(records[0].outcome.as_deref(), Some("failed"));
        assert!(records[1].diagnoses.is_empty() && records[1].leaks.is_empty());
        assert!(read_records(&dir.path().join("missing")).is_empty());
    }

    #[test]
    fn an_appended_record_reads_back_field_for_field() {
        let dir = tempfile::tempdir().unwrap();
        let record = RunRecord {
            name: "net::appended".to_owned(),
            outcome: Some("passed".to_owned()),
            message: None,
            ports: vec![40000],
            given: vec![GivenSocket {
                protocol: Protocol::Udp,
                // loopcheck:allow(LC010): test data the code under test parses or prints, never bound
                port: 40000,
                // loopcheck:allow(LC010): test data the code under test parses or prints, never bound
                addrs: vec!["127.0.0.1:40000".parse().unwrap()],
            }],
            diagnoses: Vec::new(),
            leaks: Vec::new(),
            duration_ms: Some(3),
            pid: Some(std::process::id()),
            binary: Some(PathBuf::from("/bin/test")),
        };
        let process = process_fields(record.pid, record.binary.as_deref());
        for _ in 0..2 {
            append_record(
                dir.path(),
                &fields(&record),
                record.ports.iter().copied(),
                &process,
            )
            .unwrap();
        }
        let json = |r: &RunRecord| serde_json::to_value(r).unwrap();
        let read: Vec<_> = read_records(dir.path()).iter().map(json).collect();
        assert_eq!(read, [json(&record), json(&record)]);
    }

    #[test]
    fn the_hand_written_line_is_the_value_serde_writes() {
        let leak = Diagnosis::new(Code::LeakedChild, None, "child \"x\" still\nrunning", "end it");
        let full = RunRecord {
            name: "net::\"odd\"\tname".to_owned(),
            outcome: Some("failed".to_owned()),
            message: Some("panicked at src/lib.rs:3:5:\nAddrInUse \u{1}".to_owned()),
            ports: vec![1, 65535],
            given: vec![
                GivenSocket {
                    protocol: Protocol::Tcp,
                    // loopcheck:allow(LC010): test data the code under test parses or prints, never bound
                    port: 1,
                    // loopcheck:allow(LC010): test data the code under test parses or prints, never bound
                    addrs: ["127.0.0.1:1", "[::1]:1", "[fe80::1%2]:1"]
                        .map(|a| a.parse().unwrap())
                        .to_vec(),
                },
                GivenSocket {
                    protocol: Protocol::Udp,
                    // loopcheck:allow(LC010): test data the code under test parses or prints, never bound
                    port: 65535,
                    addrs: Vec::new(),
                },
            ],
            diagnoses: vec![leak.clone()],
            leaks: vec![leak.clone(), leak],
            duration_ms: Some(u64::MAX),
            pid: Some(u32::MAX),
            binary: Some(PathBuf::from("/target/debug/deps/net-ü")),
        };
        let bare = RunRecord {
            name: "net::bare".to_owned(),
            ..RunRecord::default()
        };
        for record in [full, bare] {
            let line = line_of(&record);
            assert_eq!(line.last(), Some(&b'\n'));
            assert!(!line[..line.len() - 1].contains(&b'\n'), "one line");
            let hand: serde_json::Value = serde_json::from_slice(&line).unwrap();
            assert_eq!(hand, serde_json::to_value(&record).unwrap());
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_binary_path_that_is_not_utf8_loses_only_itself() {
        use std::os::unix::ffi::OsStrExt;
        let record = RunRecord {
            name: "net::t".to_owned(),
            binary: Some(PathBuf::from(std::ffi::OsStr::from_bytes(b"/bin/\xff"))),
            ..RunRecord::default()
        };
        let read: RunRecord = serde_json::from_slice(&line_of(&record)).unwrap();
        assert_eq!((read.name.as_str(), read.binary), ("net::t", None));
    }
}
