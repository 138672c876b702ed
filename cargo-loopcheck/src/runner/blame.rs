//! Explaining a run: where each failing test lives, what its sockets show, what the
//! `#[loopback_test]` records say, and which processes the run left behind.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use cargo_metadata::TargetKind;
use loopcheck::diagnose::{Diagnoser, process_ref, symptom};
use loopcheck::report::{Code, Diagnosis, Finding};
use loopcheck::scan::{self, RunProcess, ScanOptions};
use serde::{Deserialize, Serialize};

use super::libtest::{BinaryLine, CRASHED};
use super::model::{Execution, RunnerKind, Status};
use super::timeline::{Owner, Subject, Timeline, code, holders};
use crate::lint::PortUse;
use crate::workspace::Workspace;

/// How many trailing segments of a test's name a parametrizing attribute may add.
const PARAMETRIZED_DEPTH: usize = 2;

/// How many addresses of one failure are examined: a refused one is watched for a moment.
const MAX_ADDRESSES: usize = 4;

/// A test target of the workspace.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// Its id as nextest names it: `demo`, `demo::echo`, `demo::bin/server`.
    pub(crate) id: String,
    /// Its crate name: the first segment of `module_path!()` in it.
    pub(crate) crate_name: String,
    /// Its root source file.
    pub(crate) src_path: PathBuf,
}

/// The workspace's test targets, and the root cargo's relative paths start from.
pub(crate) struct Targets {
    targets: Vec<Target>,
    root: PathBuf,
}

impl Targets {
    pub(crate) fn new(workspace: &Workspace) -> Targets {
        let mut targets = Vec::new();
        for package in &workspace.packages {
            for target in &package.targets {
                let kind = |k: TargetKind| target.is_kind(k);
                let id = if kind(TargetKind::Lib) || kind(TargetKind::ProcMacro) || target.is_lib() {
                    package.name.to_string()
                } else if kind(TargetKind::Test) {
                    format!("{}::{}", package.name, target.name)
                } else if kind(TargetKind::Bin) {
                    format!("{}::bin/{}", package.name, target.name)
                } else if kind(TargetKind::Bench) {
                    format!("{}::bench/{}", package.name, target.name)
                } else if kind(TargetKind::Example) {
                    format!("{}::example/{}", package.name, target.name)
                } else {
                    continue;
                };
                targets.push(Target {
                    id,
                    crate_name: target.name.replace('-', "_"),
                    src_path: target.src_path.clone().into_std_path_buf(),
                });
            }
        }
        Targets {
            targets,
            root: workspace.root.clone(),
        }
    }

    pub(crate) fn by_id(&self, id: &str) -> Option<&Target> {
        self.targets.iter().find(|t| t.id == id)
    }

    /// The id of the test binary a timeline owner is or was started by.
    fn binary_of(&self, owner: &Owner) -> Option<String> {
        if let Some(id) = &owner.binary_id {
            return Some(id.clone());
        }
        let exe = owner.test_exe.as_deref()?.to_string_lossy().into_owned();
        let line = BinaryLine {
            source: String::new(),
            exe: Some(exe.trim_end_matches(" (deleted)").to_owned()),
            doctests: false,
        };
        Some(self.id_of(&line))
    }

    /// The id of the binary cargo announced with `line`: the target whose crate name is the
    /// executable's (`echo-9a8b` is `echo`) and whose source ends with the path cargo shows.
    /// Two packages with a `tests/api.rs` each are told apart by the executable's dep-info
    /// file, which lists its sources.
    pub(crate) fn id_of(&self, line: &BinaryLine) -> String {
        if line.doctests {
            // cargo names doctests by crate (`my_lib`); ids name packages (`my-lib`).
            let package = self
                .targets
                .iter()
                .find(|t| t.crate_name == line.source && !t.id.contains("::"))
                .map_or(line.source.as_str(), |t| t.id.as_str());
            return format!("{package}::doctests");
        }
        let exe = line.exe.as_deref().map(Path::new);
        let stem = exe
            .and_then(|exe| exe.file_name()?.to_str())
            .map(|name| name.rsplit_once('-').map_or(name, |(crate_name, _)| crate_name));
        let source = Path::new(&line.source);
        let candidates: Vec<&Target> = self
            .targets
            .iter()
            .filter(|t| line.source.is_empty() || t.src_path.ends_with(source))
            .filter(|t| stem.is_none_or(|stem| stem == t.crate_name))
            .collect();
        let chosen = match candidates.as_slice() {
            [] => None,
            [only] => Some(*only),
            several => {
                let dep_info = exe
                    .map(|exe| self.root.join(exe).with_extension("d"))
                    .and_then(|path| std::fs::read_to_string(path).ok())
                    .unwrap_or_default();
                several
                    .iter()
                    .find(|t| dep_info.contains(&*t.src_path.to_string_lossy()))
                    .or(several.first())
                    .copied()
            }
        };
        match chosen {
            Some(target) => target.id.clone(),
            None if !line.source.is_empty() => line.source.clone(),
            None => stem.unwrap_or_default().to_owned(),
        }
    }
}

/// What explains the failures of one run.
pub(crate) struct Blamer<'a> {
    workspace: &'a Workspace,
    targets: &'a Targets,
    diagnoser: Diagnoser,
    sources: HashMap<PathBuf, Option<String>>,
    findings: Option<Vec<Finding>>,
    seen: HashMap<(io::ErrorKind, SocketAddr, bool), Option<Diagnosis>>,
    /// How many copies of the suite ran at once.
    concurrent: u32,
    /// What the sampler saw during the round.
    timeline: &'a Timeline,
    runner: RunnerKind,
}

impl<'a> Blamer<'a> {
    pub(crate) fn new(
        workspace: &'a Workspace,
        targets: &'a Targets,
        concurrent: u32,
        timeline: &'a Timeline,
        runner: RunnerKind,
    ) -> Self {
        Blamer {
            workspace,
            targets,
            diagnoser: Diagnoser::default(),
            sources: HashMap::new(),
            findings: None,
            seen: HashMap::new(),
            concurrent,
            timeline,
            runner,
        }
    }

    /// Finds a failed test's source and, when its failure message speaks of a socket error
    /// and it has no diagnosis from its own harness, diagnoses the addresses that error
    /// concerns: the ones written in the message, else the ports the test's code hard-codes
    /// (the bound ones for "address in use", the others for a failed connection).
    ///
    /// The socket timeline of the round comes first: a holder it saw on those ports while the
    /// test ran (in the copy `run_dir`) is named even when it has exited since. It also
    /// explains a failure that names no socket error, when another test served the port the
    /// test reaches.
    pub(crate) fn explain(&mut self, execution: &mut Execution, run_dir: &Path) {
        if !matches!(execution.status, Status::Failed | Status::Flaky) || execution.name == CRASHED {
            return;
        }
        let uses = self.locate(execution);
        if !execution.diagnoses.is_empty() {
            return;
        }
        // The message, not the captured logs: a log line about a timeout or a refused
        // connection says nothing about why the test failed.
        let message = failure_message(&execution.output);
        let kind = symptom(&message).filter(|kind| BLAMED.contains(kind));
        let mentioned = mentioned_addrs(&message);
        let from_timeline = self.timeline_holders(execution, run_dir, kind, &mentioned, &uses);
        if !from_timeline.is_empty() {
            execution.diagnoses = from_timeline;
            return;
        }
        let Some(kind) = kind else {
            return;
        };
        let addrs: Vec<SocketAddr> = if !mentioned.is_empty() {
            mentioned
        } else {
            let binding = kind == io::ErrorKind::AddrInUse;
            let preferred: Vec<u16> = uses
                .iter()
                .filter(|u| u.bind == binding)
                .map(|u| u.port)
                .collect();
            let ports = if preferred.is_empty() {
                uses.iter().map(|u| u.port).collect()
            } else {
                preferred
            };
            ports
                .into_iter()
                .map(|port| SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port))
                .collect()
        };
        self.diagnoser.binder_reuses_address = self.binder_reuses_address(execution);
        let mut diagnoses: Vec<Diagnosis> = Vec::new();
        for &addr in addrs.iter().take(MAX_ADDRESSES) {
            let found = self.afterwards(kind, addr).or_else(|| match (kind, addr.ip()) {
                // `localhost` and `[::]` binds collide on [::1] too.
                (io::ErrorKind::AddrInUse, IpAddr::V4(ip)) if ip.is_loopback() => self.afterwards(
                    kind,
                    SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), addr.port()),
                ),
                _ => None,
            });
            if let Some(diagnosis) = found {
                super::model::merge(&mut diagnoses, &[diagnosis]);
            }
        }
        // Nothing holds any of them now: the first was taken by something short-lived.
        if diagnoses.is_empty()
            && kind == io::ErrorKind::AddrInUse
            && let Some(&addr) = addrs.first()
        {
            diagnoses.push(self.freed(execution, &uses, addr));
        }
        execution.diagnoses = diagnoses;
    }

    /// The holders the timeline saw on the test's ports while it ran.
    fn timeline_holders(
        &mut self,
        execution: &Execution,
        run_dir: &Path,
        kind: Option<io::ErrorKind>,
        mentioned: &[SocketAddr],
        uses: &[PortUse],
    ) -> Vec<Diagnosis> {
        if self.timeline.missing.is_some() {
            return Vec::new();
        }
        // A refused connection is the post-run scan's to explain.
        if kind == Some(io::ErrorKind::ConnectionRefused) {
            return Vec::new();
        }
        let binding = kind == Some(io::ErrorKind::AddrInUse);
        // Its own code's ports first (bound ones for a failed bind), then its file's.
        let mut ports: Vec<u16> = uses
            .iter()
            .filter(|u| u.bind == binding)
            .map(|u| u.port)
            .collect();
        ports.extend(uses.iter().map(|u| u.port));
        if kind.is_some() {
            let file = execution.file.clone();
            ports.extend(
                self.findings()
                    .iter()
                    .filter(|f| f.code == Code::HardCodedPort && f.file == file)
                    .filter_map(|f| f.port),
            );
            ports.extend(self.library_ports(execution));
        }
        let mut unique = Vec::new();
        for port in ports {
            if !unique.contains(&port) {
                unique.push(port);
            }
        }
        if kind.is_none() && unique.is_empty() {
            return Vec::new();
        }
        let crate_name = (self.runner == RunnerKind::CargoTest)
            .then(|| {
                self.targets
                    .by_id(&execution.binary)
                    .map(|t| t.crate_name.as_str())
            })
            .flatten();
        let subject = Subject {
            run_dir,
            binary: &execution.binary,
            name: &execution.name,
            crate_name,
        };
        let question = holders::Question {
            kind,
            mentioned,
            ports: &unique,
        };
        let (targets, timeline) = (self.targets, self.timeline);
        let root = self.workspace.root.clone();
        let findings = self.findings();
        let places = |binary: &str, port: u16| -> Vec<String> {
            let Some(file) = targets
                .by_id(binary)
                .map(|t| crate::lint::relative_path(&root, &t.src_path))
            else {
                return Vec::new();
            };
            findings
                .iter()
                .filter(|f| {
                    f.code == Code::HardCodedPort && f.port == Some(port) && f.file.as_deref() == Some(&*file)
                })
                .map(|f| format!("{file}:{}", f.line.unwrap_or(0)))
                .take(3)
                .collect()
        };
        let names = holders::Names {
            binary_of: &|o| targets.binary_of(o),
            places: &places,
            owner_now: &code::owner_now,
        };
        let mut found = holders::explain(timeline, &subject, &question, &names);
        // A holder still alive that is a leftover of an earlier run is the post-run scan's
        // to name: it tells a zombie (LC002) and says how to end it.
        for d in &mut found {
            let (Some(addr), Some(pid)) = (d.addr, d.holder().map(|p| p.pid)) else {
                continue;
            };
            let zombie = scan::ProcessInfo::read(pid).is_some_and(|p| {
                matches!(
                    loopcheck::diagnose::classify(&p),
                    loopcheck::diagnose::Provenance::Zombie { .. }
                )
            });
            if zombie
                && let Some(kind) = kind
                && let Some(now) = self
                    .afterwards(kind, addr)
                    .filter(|n| n.code == Code::ZombieListener)
            {
                *d = now;
            }
        }
        for d in &mut found {
            if d.code == Code::PortInUse
                && kind == Some(io::ErrorKind::AddrInUse)
                && let Some(addr) = d.addr
            {
                code::note_time_wait(d, addr.port());
            }
        }
        found
    }

    /// [`Diagnoser::explain_afterwards`], once per round for each error and address: a hundred
    /// tests refused by one dead server cost one look at it.
    fn afterwards(&mut self, kind: io::ErrorKind, addr: SocketAddr) -> Option<Diagnosis> {
        let diagnoser = &self.diagnoser;
        self.seen
            .entry((kind, addr, diagnoser.binder_reuses_address))
            .or_insert_with(|| diagnoser.explain_afterwards(kind, addr))
            .clone()
    }

    /// The ports of the package's library constants that the test's file names
    /// (`my_client::SERVICE_PORT`): the lint reads test code only, and a client library's
    /// default port is what its tests reach.
    fn library_ports(&mut self, execution: &Execution) -> Vec<u16> {
        let Some(test_source) = self.source_of(execution) else {
            return Vec::new();
        };
        let names = code::constant_paths(&test_source);
        if names.is_empty() {
            return Vec::new();
        }
        let package = execution.binary.split("::").next().unwrap_or_default();
        let Some(dir) = self.targets.by_id(package).and_then(|lib| lib.src_path.parent()) else {
            return Vec::new();
        };
        code::library_constants(dir, &names)
    }

    /// Whether the test's binds may be taken to set `SO_REUSEADDR` ([`code::binds_with_reuse`]).
    fn binder_reuses_address(&mut self, execution: &Execution) -> bool {
        match self.source_of(execution) {
            Some(source) => code::binds_with_reuse(&source),
            None => cfg!(unix),
        }
    }

    /// The text of the test's file, read once.
    fn source_of(&mut self, execution: &Execution) -> Option<String> {
        let path = self.workspace.root.join(execution.file.as_ref()?);
        self.sources
            .entry(path.clone())
            .or_insert_with(|| std::fs::read_to_string(&path).ok())
            .clone()
    }

    /// Sets the test's file and line; returns the hard-coded ports it reaches.
    fn locate(&mut self, execution: &mut Execution) -> Vec<PortUse> {
        let Some(target) = self.targets.by_id(&execution.binary) else {
            return Vec::new();
        };
        let segments: Vec<&str> = execution.name.split("::").collect();
        // A parametrized case (`name::case_1` from rstest or test-case, `name::a_1::b_2` for
        // a matrix) lives in a module the attribute generates: its source is the base function.
        let found = (0..=PARAMETRIZED_DEPTH.min(segments.len() - 1)).find_map(|cases| {
            let path = &segments[..segments.len() - cases];
            self.site(&target.src_path, path)
        });
        let Some((path, site)) = found else {
            return Vec::new();
        };
        execution.file = Some(crate::lint::relative_path(&self.workspace.root, &path));
        execution.line = Some(site.line);
        execution.asynchronous = site.asynchronous;
        site.ports
    }

    /// The file and site of the function at `segments` in the crate whose root is `root`.
    fn site(&mut self, root: &Path, segments: &[&str]) -> Option<(PathBuf, crate::lint::TestSite)> {
        let (modules, function) = segments.split_at(segments.len().saturating_sub(1));
        let (file, inline) = module_file(root, modules);
        let within = [&inline[..], function].concat().join("::");
        [(file, within), (root.to_path_buf(), segments.join("::"))]
            .into_iter()
            .find_map(|(path, within)| {
                let source = self
                    .sources
                    .entry(path.clone())
                    .or_insert_with(|| std::fs::read_to_string(&path).ok())
                    .as_deref()?;
                Some((path, crate::lint::test_site(source, &within)?))
            })
    }

    /// LC001 for a port that was in use when the test bound it but is free now: the holder
    /// was as short-lived as a test, and the tests that hard-code the same port are named.
    fn freed(&mut self, execution: &Execution, uses: &[PortUse], addr: SocketAddr) -> Diagnosis {
        let port = addr.port();
        let mut diagnosis = Diagnosis::new(
            Code::PortInUse,
            Some(addr),
            format!(
                "port {port} was in use when `{}` bound it, and nothing holds it now: the holder was short-lived, most likely another test running at the same time",
                execution.name
            ),
            format!(
                "take the port from loopcheck instead of a constant, so that no two tests share one: `{} {}(addr: SocketAddr)`, or `loopcheck::tcp_listener()`",
                crate::lint::loopback_test_form(execution.asynchronous),
                execution.name.rsplit("::").next().unwrap_or("name")
            ),
        );
        let own = |f: &Finding| f.file == execution.file && uses.iter().any(|u| Some(u.line) == f.line);
        let others: Vec<String> = self
            .findings()
            .iter()
            .filter(|f| f.code == Code::HardCodedPort && f.port == Some(port) && !own(f))
            .map(|f| format!("{}:{}", f.file.as_deref().unwrap_or("?"), f.line.unwrap_or(0)))
            .collect();
        for place in others.iter().take(5) {
            diagnosis
                .evidence
                .push(format!("port {port} is also hard-coded at {place}"));
        }
        if others.len() > 5 {
            diagnosis
                .evidence
                .push(format!("and at {} more places", others.len() - 5));
        }
        if self.concurrent > 1 {
            diagnosis.evidence.push(format!(
                "{} copies of the suite ran at once (--concurrent): each binds the same hard-coded ports",
                self.concurrent
            ));
        }
        diagnosis
    }

    fn findings(&mut self) -> &[Finding] {
        let workspace = self.workspace;
        self.findings.get_or_insert_with(|| {
            let config = crate::lint::config(workspace).unwrap_or_default();
            crate::lint::lint_workspace(workspace, &config).0
        })
    }
}

/// The file that holds module `segments` of the crate whose root is `root`, and the modules
/// left inline in it. A module is looked for in `a/b.rs` or `a/b/mod.rs` only when its parent
/// declares it out of line (`mod b;`): an inline `mod b { .. }` stays in its file even where a
/// `b.rs` exists (another test binary's root, say).
fn module_file<'s>(root: &Path, segments: &[&'s str]) -> (PathBuf, Vec<&'s str>) {
    let mut file = root.to_path_buf();
    let mut owns_dir = true;
    for (i, segment) in segments.iter().enumerate() {
        let declared = std::fs::read_to_string(&file).is_ok_and(|text| declares_file_module(&text, segment));
        if !declared {
            return (file, segments[i..].to_vec());
        }
        let dir = if owns_dir {
            file.parent().map(Path::to_path_buf).unwrap_or_default()
        } else {
            file.with_extension("")
        };
        let flat = dir.join(format!("{segment}.rs"));
        let nested = dir.join(segment).join("mod.rs");
        if flat.is_file() {
            file = flat;
            owns_dir = false;
        } else if nested.is_file() {
            file = nested;
            owns_dir = true;
        } else {
            return (file, segments[i..].to_vec());
        }
    }
    (file, Vec::new())
}

/// Whether `source` declares `mod name;` (out of line), as text: `mod name;`, `pub mod name;`.
fn declares_file_module(source: &str, name: &str) -> bool {
    source.match_indices(&format!("mod {name}")).any(|(at, found)| {
        let before_ok = source[..at]
            .chars()
            .next_back()
            .is_none_or(|c| !c.is_alphanumeric() && c != '_');
        let rest = source[at + found.len()..].trim_start();
        before_ok && rest.starts_with(';')
    })
}

/// The error kinds a failure may be blamed on a socket for: the issue's address in use,
/// refused connection, timeout and early EOF.
const BLAMED: [io::ErrorKind; 4] = [
    io::ErrorKind::AddrInUse,
    io::ErrorKind::ConnectionRefused,
    io::ErrorKind::TimedOut,
    io::ErrorKind::ConnectionReset,
];

/// The failure message in a failed test's output: each distinct panic (`thread 'x' panicked
/// at ..:` and its message, up to the backtrace or a blank line, through an error's `Caused
/// by:` chain) in the order printed, so the first is the root cause (a server task's
/// `AddrInUse`) and the last what ended the test (the `Canceled` of the channel that task
/// dropped); or, when nothing panicked, the `Error: ..` that a test returning `Err` ends
/// with, from the last one to the end. Empty when the output shows neither (a crash, a signal).
pub(crate) fn failure_message(output: &str) -> String {
    let mut message = String::new();
    for failure in super::panics::failures(output) {
        for line in &failure.lines {
            message.push_str(line);
            message.push('\n');
        }
    }
    message
}

/// Loopback and wildcard socket addresses written in `text`, in order, wildcards as
/// 127.0.0.1: `bind 127.0.0.1:7878: Address already in use`.
pub(crate) fn mentioned_addrs(text: &str) -> Vec<SocketAddr> {
    let mut found: Vec<SocketAddr> = Vec::new();
    for word in text.split(|c: char| c.is_whitespace() || "\"'`,;()<>{}|=".contains(c)) {
        let word = word.trim_matches(|c: char| c == '.' || c == ':');
        if word.len() < 9 || !word.contains(':') {
            continue;
        }
        let Ok(mut addr) = word.parse::<SocketAddr>() else {
            continue;
        };
        if addr.port() == 0 {
            continue;
        }
        if addr.ip().is_unspecified() {
            addr.set_ip(IpAddr::V4(Ipv4Addr::LOCALHOST));
        }
        if addr.ip().is_loopback() && !found.contains(&addr) {
            found.push(addr);
        }
    }
    found
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_in_failure_messages() {
        // loopcheck:allow(LC010): test data the code under test parses or prints, never bound
        let text = "bind 127.0.0.1:7878: Address already in use\nconnect to [::1]:9000. then 0.0.0.0:8080, 10.0.0.1:80 and \"127.0.0.1:7878\" again; port 0: 127.0.0.1:0";
        assert_eq!(
            mentioned_addrs(text),
            [
                // loopcheck:allow(LC010): test data the code under test parses or prints, never bound
                "127.0.0.1:7878".parse::<SocketAddr>().unwrap(),
                // loopcheck:allow(LC010): test data the code under test parses or prints, never bound
                "[::1]:9000".parse().unwrap(),
                // loopcheck:allow(LC010): test data the code under test parses or prints, never bound
                "127.0.0.1:8080".parse().unwrap(),
            ]
        );
        assert!(mentioned_addrs("thread 'x' panicked at tests/a.rs:2:91:").is_empty());
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
        assert!(read_records(&dir.path().join("missing")).is_empty());
    }

    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn addresses_are_loopback_and_written_in_the_text(text in "[0-9.:\\[\\] a-f]{0,80}") {
                for addr in mentioned_addrs(&text) {
                    prop_assert!(addr.ip().is_loopback());
                    prop_assert!(addr.port() != 0);
                    prop_assert!(text.contains(&addr.port().to_string()));
                }
            }
        }
    }

    #[test]
    fn module_files_flat_nested_and_inline() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("src/lib.rs");
        std::fs::create_dir_all(dir.path().join("src/net/wire")).unwrap();
        for (file, text) in [
            ("src/lib.rs", "pub mod net;\nmod tests { }\n"),
            ("src/net.rs", "mod wire;\n"),
            ("src/net/wire/mod.rs", "#[cfg(test)]\nmod tests {}\n"),
            ("src/tests.rs", "// another file, not the inline module\n"),
        ] {
            std::fs::write(dir.path().join(file), text).unwrap();
        }
        assert_eq!(module_file(&root, &[]), (root.clone(), vec![]));
        assert_eq!(
            module_file(&root, &["net"]),
            (dir.path().join("src/net.rs"), vec![])
        );
        assert_eq!(
            module_file(&root, &["net", "wire", "tests"]),
            (dir.path().join("src/net/wire/mod.rs"), vec!["tests"])
        );
        assert_eq!(module_file(&root, &["tests"]), (root.clone(), vec!["tests"]));
        assert!(declares_file_module("pub(crate) mod net ;", "net"));
        assert!(!declares_file_module("mod network;\nmod net { }", "net"));
    }

    #[test]
    fn binaries_of_the_same_name_in_two_packages_are_told_apart_by_dep_info() {
        let dir = tempfile::tempdir().unwrap();
        let target = |id: &str, src: &str| Target {
            id: id.to_owned(),
            crate_name: "api".to_owned(),
            src_path: PathBuf::from(src),
        };
        let targets = Targets {
            targets: vec![
                target("a::api", "/w/a/tests/api.rs"),
                target("b::api", "/w/b/tests/api.rs"),
            ],
            root: dir.path().to_path_buf(),
        };
        std::fs::create_dir_all(dir.path().join("target/debug/deps")).unwrap();
        std::fs::write(
            dir.path().join("target/debug/deps/api-2.d"),
            "/t/deps/api-2: /w/b/tests/api.rs\n",
        )
        .unwrap();
        let line = |exe: &str, source: &str| BinaryLine {
            source: source.to_owned(),
            exe: Some(exe.to_owned()),
            doctests: false,
        };
        assert_eq!(
            targets.id_of(&line("target/debug/deps/api-2", "tests/api.rs")),
            "b::api"
        );
        assert_eq!(
            targets.id_of(&line("target/debug/deps/api-1", "tests/api.rs")),
            "a::api"
        );
        // `cargo test -v` shows no source: the executable decides.
        let verbose = line(&dir.path().join("target/debug/deps/api-2").to_string_lossy(), "");
        assert_eq!(targets.id_of(&verbose), "b::api");
        assert_eq!(
            targets.id_of(&line("target/debug/deps/other-1", "tests/other.rs")),
            "tests/other.rs"
        );
        let lib = Targets {
            targets: vec![Target {
                id: "my-lib".to_owned(),
                crate_name: "my_lib".to_owned(),
                src_path: PathBuf::from("/w/src/lib.rs"),
            }],
            root: dir.path().to_path_buf(),
        };
        let doctests = BinaryLine {
            source: "my_lib".to_owned(),
            exe: None,
            doctests: true,
        };
        assert_eq!(lib.id_of(&doctests), "my-lib::doctests");
    }

    #[test]
    fn error_chains_and_logged_errors() {
        // loopcheck:allow(LC010): test data the code under test parses or prints, never bound
        let anyhow = "Error: bind the test server on 127.0.0.1:7003\n\nCaused by:\n    Address already in use (os error 98)\n";
        let message = failure_message(anyhow);
        assert_eq!(symptom(&message), Some(io::ErrorKind::AddrInUse), "{message}");
        let unwrapped = "thread 't' panicked at tests/a.rs:3:5:\ncalled `Result::unwrap()` on an `Err` value: bind\n\nCaused by:\n    Address already in use (os error 98)\nnote: run with `RUST_BACKTRACE=1`\n";
        assert_eq!(
            symptom(&failure_message(unwrapped)),
            Some(io::ErrorKind::AddrInUse)
        );
        // loopcheck:allow(LC010): test data the code under test parses or prints, never bound
        let logged = "Error: connect to 127.0.0.1:7003: Connection refused, retrying\nthread 't' panicked at tests/a.rs:9:5:\nassertion `left == right` failed\n  left: 1\n right: 2\n";
        let message = failure_message(logged);
        assert_eq!(
            symptom(&message),
            None,
            "a logged error is not the failure: {message}"
        );
        assert!(mentioned_addrs(&message).is_empty());
    }

    #[test]
    fn the_failure_message_is_the_panic_not_the_log() {
        // loopcheck:allow(LC010): test data the code under test parses or prints, never bound
        let output = "server: connection refused by 127.0.0.1:9000, retrying\n\
thread 'fetches' (7) panicked at tests/a.rs:3:5:\n\
called `Result::unwrap()` on an `Err` value: Os { code: 98, kind: AddrInUse, message: \"Address already in use\" }\n\
note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n\
timed out waiting for the log flusher\n";
        let message = failure_message(output);
        assert_eq!(symptom(&message), Some(io::ErrorKind::AddrInUse));
        assert!(mentioned_addrs(&message).is_empty(), "{message}");
        assert_eq!(
            failure_message(
                "Error: Os { code: 111, kind: ConnectionRefused, message: \"Connection refused\" }\n"
            ),
            "Error: Os { code: 111, kind: ConnectionRefused, message: \"Connection refused\" }\n"
        );
        assert_eq!(
            failure_message("process didn't exit successfully (signal: 11)"),
            ""
        );
    }
}
