//! Explaining a failed test: where it lives, what its sockets show, and which holder of its
//! ports the timeline or the post-run scan names.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

use loopcheck::diagnose::{Diagnoser, symptom};
use loopcheck::report::{Code, Diagnosis, Finding};
use loopcheck::scan;

use super::failure::{failure_message, mentioned_addrs};
use super::libtest::CRASHED;
use super::model::{Execution, RunnerKind, Status};
use super::targets::Targets;
use super::timeline::{Subject, Timeline, code, holders};
use crate::lint::PortUse;
use crate::workspace::Workspace;

/// How many trailing segments of a test's name a parametrizing attribute may add.
const PARAMETRIZED_DEPTH: usize = 2;

/// How many addresses of one failure are examined: a refused one is watched for a moment.
const MAX_ADDRESSES: usize = 4;

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

/// The error kinds a failure may be blamed on a socket for: the address in use,
/// refused connection, timeout and early EOF.
const BLAMED: [io::ErrorKind; 4] = [
    io::ErrorKind::AddrInUse,
    io::ErrorKind::ConnectionRefused,
    io::ErrorKind::TimedOut,
    io::ErrorKind::ConnectionReset,
];

#[cfg(test)]
mod tests {
    use super::*;

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
}
