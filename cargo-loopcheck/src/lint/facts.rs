//! Workspace-wide facts, computed once per run over every package's sources: the functions and
//! methods whose parameters carry a port or an address, and the constants and statics that hold
//! one. The rules of each file look calls and names up here, so that a port handed to a helper
//! in another file, to the crate's own API or taken from a constant in library code is seen.
//! Each file's facts are taken by `extract`; here they are merged and calls between them followed.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::addr::HostKind;
use super::imports::Imports;
use super::reach::{Edge, Reach};

/// A parameter of a function, and what the function does with it.
#[derive(Debug, Clone)]
pub(crate) struct ParamFact {
    /// Its place among the parameters, `self` left out.
    pub(crate) index: usize,
    pub(crate) name: String,
    /// Named like a port: `port`, `http_port`.
    pub(crate) by_name: bool,
    /// Of an integer type, such as `u16`.
    pub(crate) int: bool,
    /// Where its value goes, calls followed through the workspace.
    pub(crate) reach: Reach,
    /// Stored in a field named like a port, here or in a function it is passed to.
    pub(crate) port_field: bool,
    /// The calls it is handed to, followed once every file's facts are known.
    pub(super) edges: Vec<Edge>,
}

impl ParamFact {
    /// Whether an integer given for it is a port: named like one and not known to go nowhere,
    /// or an integer that reaches an address.
    pub(crate) fn is_port(&self) -> bool {
        (self.by_name && self.reach != Reach::No)
            || (self.int && (self.reach == Reach::Address || self.port_field))
    }
}

/// A function or method of the workspace.
#[derive(Debug, Clone)]
pub(crate) struct FnFact {
    /// Its module path within its crate, the type of its `impl`, and its name.
    pub(crate) path: Vec<String>,
    /// The file that defines it, relative to the workspace root.
    pub(crate) file: Arc<str>,
    /// The line of its name.
    pub(crate) line: u32,
    /// Whether it takes `self`.
    pub(crate) method: bool,
    pub(crate) params: Vec<ParamFact>,
    /// The port it returns, when its body is an integer literal: `fn port() -> u16 { 8080 }`.
    pub(crate) returns: Option<u16>,
    /// Why the port it returns is racy, if it is (LC014).
    pub(crate) racy: Option<Racy>,
    /// For a function returning a port that is not racy itself: the calls of its body, which
    /// make it racy when they are.
    pub(super) returns_from: Vec<Vec<String>>,
}

/// Why the port a function returns is racy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Racy {
    /// It comes from the picker of that path (`portpicker::pick_unused_port`).
    Picks(String),
    /// It is read from a listener the function drops, bound by that call.
    Drops(String),
}

/// A `const` or `static` holding a port, or an address string.
#[derive(Debug, Clone)]
pub(crate) struct ConstFact {
    pub(crate) path: Vec<String>,
    pub(crate) file: Arc<str>,
    pub(crate) line: u32,
    /// The port it holds or the address string's port.
    pub(crate) port: u16,
    /// The address string's host; `None` for a bare number.
    pub(crate) host: Option<HostKind>,
    /// Whether it is test code, whose own file reports its address strings.
    pub(crate) test: bool,
}

/// The facts of one file, to be merged into [`WorkspaceFacts`].
#[derive(Debug, Default, Clone)]
pub(crate) struct FileFacts {
    pub(super) fns: Vec<FnFact>,
    pub(super) consts: Vec<ConstFact>,
    /// `#[path = ".."] mod name;`: the file it names, and the module path it gets there.
    pub(super) aliases: Vec<(String, Vec<String>)>,
    /// The module path of the file itself, which may define nothing but re-exports.
    pub(super) module: Vec<String>,
    /// `pub use a::A as B;`: the path the item gets (`[.., "B"]`) and the one it has.
    pub(super) renames: Vec<(Vec<String>, Vec<String>)>,
}

impl FileFacts {
    /// The names of the functions this file's functions hand their parameters to: their facts
    /// may come from other files.
    pub(crate) fn callees(&self) -> impl Iterator<Item = &str> {
        self.fns
            .iter()
            .flat_map(|f| &f.params)
            .flat_map(|p| &p.edges)
            .filter_map(|e| e.callee.last().map(String::as_str))
    }
}

/// The facts of every file of the workspace.
#[derive(Debug, Default)]
pub(crate) struct WorkspaceFacts {
    fns: Vec<FnFact>,
    fns_by_name: HashMap<String, Vec<usize>>,
    consts: Vec<ConstFact>,
    consts_by_name: HashMap<String, Vec<usize>>,
    /// The workspace's own crate names (`my_crate` for package `my-crate`), which a `use` path
    /// may start with.
    crates: Vec<String>,
    /// The module names the workspace's items live under: a path whose start is none of them
    /// (`reqwest::blocking::Client::new`) names another crate's item, not a re-export of ours.
    modules: HashSet<String>,
}

/// Where a parameter is passed: the function and parameter (indexes into the facts), or, for a
/// callee the workspace does not define, whether it is named like a port (`.port(p)`).
type Target = Result<(usize, usize), bool>;

/// How many rounds calls are followed: a chain of helpers this long is followed to its end.
const MAX_ROUNDS: usize = 8;

impl WorkspaceFacts {
    /// The facts of `files`, with calls between them followed. `crates`: the workspace's crate
    /// names, as `use` paths write them.
    pub(crate) fn new(files: Vec<FileFacts>, crates: Vec<String>) -> WorkspaceFacts {
        let mut facts = WorkspaceFacts {
            crates,
            ..WorkspaceFacts::default()
        };
        let mut aliases = Vec::new();
        let mut renames = Vec::new();
        for file in files {
            facts.modules.extend(file.module);
            renames.extend(file.renames);
            facts.fns.extend(file.fns);
            facts.consts.extend(file.consts);
            for (_, module) in &file.aliases {
                facts.modules.extend(module.iter().cloned());
            }
            aliases.extend(file.aliases);
        }
        // A module included with `#[path]` lives under the name that includes it, wherever its
        // file lies: its items are known under both paths.
        for (target, module) in aliases {
            let prefix = module_path(&target).len();
            let renamed = |path: &[String]| {
                module
                    .iter()
                    .chain(&path[prefix.min(path.len())..])
                    .cloned()
                    .collect()
            };
            let fns: Vec<FnFact> = facts
                .fns
                .iter()
                .filter(|f| *f.file == *target)
                .map(|f| FnFact {
                    path: renamed(&f.path),
                    ..f.clone()
                })
                .collect();
            let consts: Vec<ConstFact> = facts
                .consts
                .iter()
                .filter(|c| *c.file == *target)
                .map(|c| ConstFact {
                    path: renamed(&c.path),
                    ..c.clone()
                })
                .collect();
            facts.fns.extend(fns);
            facts.consts.extend(consts);
        }
        // A re-export under another name: its items are known under that name too.
        for (alias, target) in renames {
            let renamed = |path: &[String]| -> Option<Vec<String>> {
                (path.len() >= target.len() && path.starts_with(&target))
                    .then(|| alias.iter().chain(&path[target.len()..]).cloned().collect())
            };
            let fns: Vec<FnFact> = (facts.fns.iter())
                .filter_map(|f| renamed(&f.path).map(|path| FnFact { path, ..f.clone() }))
                .collect();
            let consts: Vec<ConstFact> = (facts.consts.iter())
                .filter_map(|c| renamed(&c.path).map(|path| ConstFact { path, ..c.clone() }))
                .collect();
            facts.fns.extend(fns);
            facts.consts.extend(consts);
        }
        let inner = |path: &[String]| path[..path.len().saturating_sub(1)].to_vec();
        let items: Vec<Vec<String>> = (facts.fns.iter().map(|f| inner(&f.path)))
            .chain(facts.consts.iter().map(|c| inner(&c.path)))
            .collect();
        facts.modules.extend(items.into_iter().flatten());
        for (index, f) in facts.fns.iter().enumerate() {
            if let Some(name) = f.path.last() {
                facts.fns_by_name.entry(name.clone()).or_default().push(index);
            }
        }
        for (index, c) in facts.consts.iter().enumerate() {
            if let Some(name) = c.path.last() {
                facts.consts_by_name.entry(name.clone()).or_default().push(index);
            }
        }
        facts.follow_calls();
        facts.follow_racy_returns();
        facts
    }

    /// Makes a function racy that returns what a racy function of the workspace returns:
    /// `fn port() -> u16 { common::free_port() }`.
    fn follow_racy_returns(&mut self) {
        let pending: Vec<(usize, Vec<usize>)> = (self.fns.iter().enumerate())
            .filter(|(_, f)| f.racy.is_none() && !f.returns_from.is_empty())
            .map(|(i, f)| {
                let callees = (f.returns_from.iter())
                    .filter_map(|callee| self.function_index(callee, false, &f.file, true))
                    .filter(|&t| t != i)
                    .collect();
                (i, callees)
            })
            .collect();
        for _ in 0..MAX_ROUNDS {
            let mut changed = false;
            for (f, callees) in &pending {
                if self.fns[*f].racy.is_some() {
                    continue;
                }
                if let Some(racy) = callees.iter().find_map(|&t| self.fns[t].racy.clone()) {
                    self.fns[*f].racy = Some(racy);
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
    }

    /// Raises each parameter's reach to that of the parameters it is passed to, until nothing
    /// changes. A call the workspace does not define is [`Reach::Unknown`].
    fn follow_calls(&mut self) {
        let mut targets: Vec<(usize, usize, Vec<Target>)> = Vec::new();
        for (f, fact) in self.fns.iter().enumerate() {
            for (p, param) in fact.params.iter().enumerate() {
                if param.edges.is_empty() {
                    continue;
                }
                let resolved = param
                    .edges
                    .iter()
                    .map(|edge| {
                        let target = self.function_index(&edge.callee, edge.method, &fact.file, true);
                        let index =
                            target.and_then(|t| self.fns[t].params.iter().position(|q| q.index == edge.arg));
                        // `.port(p)` of a builder outside the workspace: stored as a port.
                        let port_named = edge.callee.last().is_some_and(|n| super::names::is_port_name(n));
                        target.zip(index).ok_or(port_named)
                    })
                    .collect();
                targets.push((f, p, resolved));
            }
        }
        for _ in 0..MAX_ROUNDS {
            let mut changed = false;
            for (f, p, resolved) in &targets {
                let ours = &self.fns[*f].params[*p];
                let (mut reach, mut port_field) = (ours.reach, ours.port_field);
                for target in resolved {
                    match *target {
                        Ok((t, q)) => {
                            let theirs = &self.fns[t].params[q];
                            reach = reach.max(theirs.reach);
                            port_field |= theirs.port_field;
                        }
                        Err(port_named) => {
                            reach = reach.max(Reach::Unknown);
                            port_field |= port_named;
                        }
                    }
                }
                let ours = &mut self.fns[*f].params[*p];
                if (reach, port_field) != (ours.reach, ours.port_field) {
                    (ours.reach, ours.port_field) = (reach, port_field);
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
    }

    /// Whether any function or method is named `name`: most calls are of std and other crates,
    /// and are done with at this look-up.
    pub(crate) fn has_function(&self, name: &str) -> bool {
        self.fns_by_name.contains_key(name)
    }

    /// Whether any constant or static is named `name`.
    pub(crate) fn has_constant(&self, name: &str) -> bool {
        self.consts_by_name.contains_key(name)
    }

    /// Whether a function or constant named `name` is defined in a file other than `file`.
    pub(crate) fn defined_elsewhere(&self, name: &str, file: &str) -> bool {
        let fns = self
            .fns_by_name
            .get(name)
            .into_iter()
            .flatten()
            .map(|&i| &self.fns[i].file);
        let consts = self
            .consts_by_name
            .get(name)
            .into_iter()
            .flatten()
            .map(|&i| &self.consts[i].file);
        fns.chain(consts).any(|f| &**f != file)
    }

    /// How many functions and constants the facts hold.
    pub(crate) fn len(&self) -> usize {
        self.fns.len() + self.consts.len()
    }

    fn is_crate(&self, name: &str) -> bool {
        self.crates.iter().any(|c| c == name)
    }

    /// `segments` as written in a file with `imports`, made comparable with definitions' paths.
    pub(crate) fn expand(&self, imports: &Imports, segments: &[String]) -> Vec<String> {
        imports.expand(segments, &|name| self.is_crate(name))
    }

    /// The function a call names: `path` already expanded ([`WorkspaceFacts::expand`]),
    /// `method` for `x.name(..)`, `file` the calling file. A path is matched against the
    /// definitions' module paths from its end, so `broker::Broker::new`, `Broker::new` (a
    /// re-export) and `crate::broker::Broker::new` find the same definition; a name written
    /// alone is taken only from `file` itself, unless `anywhere`. Of several matches the one in
    /// `file` wins; methods called as `x.name(..)` must agree on their port parameters.
    pub(crate) fn function(
        &self,
        path: &[String],
        method: bool,
        file: &str,
        anywhere: bool,
    ) -> Option<&FnFact> {
        self.function_index(path, method, file, anywhere)
            .map(|i| &self.fns[i])
    }

    fn function_index(&self, path: &[String], method: bool, file: &str, anywhere: bool) -> Option<usize> {
        let name = path.last()?;
        let all = self.fns_by_name.get(name)?;
        let kind: Vec<usize> = all
            .iter()
            .copied()
            .filter(|&i| self.fns[i].method == method || (!method && path.len() > 1))
            .collect();
        let ends_with =
            |i: usize, n: usize| self.fns[i].path.ends_with(&path[path.len().saturating_sub(n)..]);
        let mut found: Vec<usize> = kind
            .iter()
            .copied()
            .filter(|&i| ends_with(i, path.len()))
            .collect();
        if found.is_empty() && path.len() > 2 && self.modules.contains(&path[0]) {
            // A re-export (`shop::api::Options::new` of `shop::options::Options`): its type and
            // name, when the path starts in one of the workspace's modules.
            found = kind.iter().copied().filter(|&i| ends_with(i, 2)).collect();
        }
        if let Some(&own) = found.iter().find(|&&i| &*self.fns[i].file == file) {
            return Some(own);
        }
        if path.len() == 1 && !method && !anywhere {
            return None;
        }
        let first = *found.first()?;
        if method {
            let ports = |i: usize| -> Vec<(usize, bool, Reach)> {
                self.fns[i]
                    .params
                    .iter()
                    .map(|p| (p.index, p.is_port(), p.reach))
                    .collect()
            };
            if found.iter().any(|&i| ports(i) != ports(first)) {
                return None;
            }
        }
        Some(first)
    }

    /// The constant a name or path stands for, matched like [`WorkspaceFacts::function`].
    pub(crate) fn constant(&self, path: &[String], file: &str, anywhere: bool) -> Option<&ConstFact> {
        let all = self.consts_by_name.get(path.last()?)?;
        let found: Vec<&ConstFact> = all
            .iter()
            .map(|&i| &self.consts[i])
            .filter(|c| {
                c.path.ends_with(path)
                    || (path.len() > 2
                        && self.modules.contains(&path[0])
                        && c.path.ends_with(&path[path.len() - 2..]))
            })
            .collect();
        if let Some(own) = found.iter().find(|c| &*c.file == file) {
            return Some(own);
        }
        if path.len() == 1 && !anywhere {
            return None;
        }
        let first = found.first()?;
        found
            .iter()
            .all(|c| (c.port, c.host) == (first.port, first.host))
            .then_some(*first)
    }
}

/// The module path of a file from where it lies: `src/net/options.rs` is `net::options`,
/// `tests/common/mod.rs` is `common`, a crate root is empty. Enough to tell definitions of the
/// same name apart; calls are matched from the end of their paths.
pub(crate) fn module_path(relative: &str) -> Vec<String> {
    let parts: Vec<&str> = relative.split('/').collect();
    let dir = parts
        .iter()
        .rposition(|p| matches!(*p, "src" | "tests" | "benches" | "examples"));
    let mut path: Vec<String> = parts[dir.map_or(0, |i| i + 1)..]
        .iter()
        .map(|p| p.strip_suffix(".rs").unwrap_or(p).to_owned())
        .collect();
    // `tests/echo.rs` is a crate root; `src/shared.rs` is module `shared`.
    let crate_root = path.len() == 1 && dir.is_none_or(|i| parts[i] != "src");
    if crate_root
        || path
            .last()
            .is_some_and(|last| matches!(last.as_str(), "mod" | "lib" | "main"))
    {
        path.pop();
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lint::extract::extract;
    use crate::lint::tokens::tree;

    fn facts(files: &[(&str, &str)]) -> WorkspaceFacts {
        let all = files
            .iter()
            .map(|(file, source)| {
                let toks = tree(source.parse().unwrap());
                let facts = extract(&toks, file, file.starts_with("tests/"), &["shared".to_owned()]);
                proc_macro2::extra::invalidate_current_thread_spans();
                facts
            })
            .collect();
        WorkspaceFacts::new(all, vec!["shared".to_owned()])
    }

    #[test]
    fn module_paths_come_from_where_files_lie() {
        assert_eq!(module_path("src/lib.rs"), Vec::<String>::new());
        assert_eq!(module_path("src/shared.rs"), ["shared"]);
        assert_eq!(module_path("src/net/options.rs"), ["net", "options"]);
        assert_eq!(module_path("tests/common/mod.rs"), ["common"]);
        assert_eq!(module_path("tests/echo.rs"), Vec::<String>::new());
        assert_eq!(module_path("sub/src/net/mod.rs"), ["net"]);
    }

    #[test]
    fn follows_ports_through_helpers_in_other_files() {
        let facts = facts(&[
            (
                "tests/common/mod.rs",
                "pub struct Broker; impl Broker { pub fn new(p: u16) -> Self { start(p); Broker } }\nfn start(at: u16) { let _ = std::net::TcpListener::bind((\"127.0.0.1\", at)); }",
            ),
            (
                "src/lib.rs",
                "pub const CONTROL_PORT: u16 = 7000;\npub mod parse { pub fn lines(text: &str) { for line in text.lines() { assert!(!line.is_empty()) } } }",
            ),
        ]);
        let new = facts
            .function(
                &["common".into(), "Broker".into(), "new".into()],
                false,
                "tests/a.rs",
                false,
            )
            .unwrap();
        assert_eq!((&*new.file, new.line), ("tests/common/mod.rs", 1));
        assert!(new.params[0].is_port(), "{new:?}");
        let lines = facts
            .function(&["parse".into(), "lines".into()], false, "tests/a.rs", false)
            .unwrap();
        assert_eq!(lines.params[0].reach, Reach::No);
        let port = facts
            .constant(&["CONTROL_PORT".into()], "tests/a.rs", true)
            .unwrap();
        assert_eq!((port.port, port.line), (7000, 1));
        assert!(
            facts
                .constant(&["CONTROL_PORT".into()], "tests/a.rs", false)
                .is_none()
        );
        assert!(
            facts
                .function(&["start".into()], false, "tests/a.rs", false)
                .is_none()
        );
    }

    #[test]
    fn another_crates_path_is_not_matched_by_its_end() {
        let facts = facts(&[
            (
                "src/options.rs",
                "pub struct Options; impl Options { pub fn new(port: u16) -> Self { let _ = std::net::TcpStream::connect((\"127.0.0.1\", port)); Options } }",
            ),
            ("src/api.rs", "pub use crate::options::Options;"),
        ]);
        let path = |p: &str| -> Vec<String> { p.split("::").map(str::to_owned).collect() };
        // A re-export through a module of the workspace is found by its type and name...
        assert!(
            facts
                .function(&path("api::Options::new"), false, "tests/a.rs", false)
                .is_some()
        );
        // A re-export under another name is known under it.
        let renamed = self::facts(&[
            (
                "src/options.rs",
                "pub struct Options; impl Options { pub fn new(port: u16) -> Self { let _ = std::net::TcpStream::connect((\"127.0.0.1\", port)); Options } }",
            ),
            (
                "src/lib.rs",
                "pub mod options; pub use crate::options::Options as Opts;",
            ),
        ]);
        let new = renamed
            .function(&path("Opts::new"), false, "tests/a.rs", false)
            .unwrap();
        assert_eq!(&*new.file, "src/options.rs");
        // ...a path of a crate the workspace does not define is not.
        assert!(
            facts
                .function(&path("rumqttc::v5::Options::new"), false, "tests/a.rs", false)
                .is_none()
        );
    }
}
