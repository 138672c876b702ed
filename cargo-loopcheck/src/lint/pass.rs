//! The workspace pass: the facts of every file first, then each file's rules with them, then
//! the config files the tests read. Files are worked on in parallel in each step.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use loopcheck::report::Finding;
use proc_macro2::TokenStream;

use super::extract::extract;
use super::facts::{FileFacts, WorkspaceFacts};
use super::tokens::tree;
use super::walk::{Linted, ParseError, first_look, lexable};
use super::{
    LintConfig, LintError, Scope, config_files, error_chain, finish, lint_file, relative_path, test_sources,
};
use crate::workspace::Workspace;

/// Config files larger than this are not test configs; they are skipped.
const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// What the first step knows of a file.
struct FirstLook {
    relative: String,
    source: Result<String, String>,
    facts: FileFacts,
    /// Its findings with its own facts; `None` for library code without tests.
    linted: Option<Result<Linted, ParseError>>,
}

/// `work` on each item, on all cores, results in the order of `items`.
fn parallel<T: Sync, R: Send>(items: &[T], work: impl Fn(&T) -> R + Sync) -> Vec<R> {
    parallel_owned(items.iter().collect(), work)
}

/// [`parallel`], handing each item over to `work`.
fn parallel_owned<T: Send, R: Send>(items: Vec<T>, work: impl Fn(T) -> R + Sync) -> Vec<R> {
    let slots: Vec<Mutex<Option<T>>> = items.into_iter().map(|item| Mutex::new(Some(item))).collect();
    let next = AtomicUsize::new(0);
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(slots.len())
        .max(1);
    let mut results: Vec<(usize, R)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let index = next.fetch_add(1, Ordering::Relaxed);
                        let Some(slot) = slots.get(index) else {
                            break;
                        };
                        let item = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
                        if let Some(item) = item {
                            done.push((index, work(item)));
                        }
                    }
                    done
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| {
                worker
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    });
    results.sort_by_key(|(index, _)| *index);
    results.into_iter().map(|(_, result)| result).collect()
}

/// The names `use` paths give the workspace's own crates: `my_crate` for `my-crate`.
fn crate_names(workspace: &Workspace) -> Vec<String> {
    let mut names = BTreeSet::new();
    for package in &workspace.packages {
        names.insert(package.name.replace('-', "_"));
        for target in &package.targets {
            names.insert(target.name.replace('-', "_"));
        }
    }
    names.into_iter().collect()
}

/// The facts of one file's text; none when it cannot be lexed (the rules report that).
pub(crate) fn file_facts(file: &str, source: &str, test: bool, crates: &[String]) -> FileFacts {
    let facts = match lexable(source).parse::<TokenStream>() {
        Ok(stream) => extract(&tree(stream), file, test, crates),
        Err(_) => FileFacts::default(),
    };
    proc_macro2::extra::invalidate_current_thread_spans();
    facts
}

/// The facts of every source of `workspace` (library, binaries, tests, benches).
pub(crate) fn workspace_facts(workspace: &Workspace) -> WorkspaceFacts {
    let sources = test_sources(workspace);
    let crates = crate_names(workspace);
    let facts = parallel(&sources, |(path, scope)| {
        let source = std::fs::read_to_string(path).unwrap_or_default();
        let relative = relative_path(&workspace.root, path);
        file_facts(&relative, &source, *scope == Scope::TestFile, &crates)
    });
    WorkspaceFacts::new(facts, crates)
}

/// [`super::lint_workspace`].
pub(super) fn run(workspace: &Workspace, config: &LintConfig) -> (Vec<Finding>, Vec<(PathBuf, String)>) {
    let mut errors = Vec::new();
    let mut packages: Vec<(PathBuf, LintConfig)> = Vec::new();
    for package in &workspace.packages {
        let manifest = package.manifest_path.as_std_path();
        let dir = manifest.parent().unwrap_or(manifest).to_path_buf();
        let own = match LintConfig::from_metadata(&workspace.metadata, &package.metadata) {
            Ok(own) => own,
            Err(error) => {
                errors.push((manifest.to_path_buf(), error.to_string()));
                LintConfig::default()
            }
        };
        packages.push((dir, config.merged(&own)));
    }
    // The innermost package owns a file: compare the deepest directories first.
    packages.sort_by_key(|(dir, _)| std::cmp::Reverse(dir.components().count()));
    let package_of = |path: &Path| packages.iter().find(|(dir, _)| path.starts_with(dir));
    let config_of = |path: &Path| package_of(path).map_or(config, |(_, config)| config);

    // 1. Read every file, take its facts and lint it with them alone: one lex for both.
    let sources = test_sources(workspace);
    let crates = crate_names(workspace);
    let first: Vec<FirstLook> = parallel(&sources, |(path, scope)| {
        let relative = relative_path(&workspace.root, path);
        let source = match std::fs::read_to_string(path) {
            Ok(source) => source,
            Err(source) => {
                let error = LintError::Read {
                    path: path.clone(),
                    source,
                };
                return FirstLook {
                    relative,
                    source: Err(error_chain(&error)),
                    facts: FileFacts::default(),
                    linted: None,
                };
            }
        };
        let test = *scope == Scope::TestFile;
        // Test code in `src/` always carries an attribute that names `test`.
        let lint = test || source.contains("test");
        let (facts, linted) = first_look(&source, test, lint, &relative, &crates);
        FirstLook {
            relative,
            source: Ok(source),
            facts,
            linted,
        }
    });
    let mut looks = Vec::with_capacity(first.len());
    let mut all_facts = Vec::with_capacity(first.len());
    for look in first {
        let callees: Vec<String> = look.facts.callees().map(str::to_owned).collect();
        all_facts.push(look.facts);
        looks.push((look.relative, look.source, look.linted, callees));
    }
    let facts = WorkspaceFacts::new(all_facts, crates);

    // 2. Lint again, with the facts of all, each file that names a function or constant of
    // another file; the others' first look stands.
    let items: Vec<_> = sources.iter().zip(looks).collect();
    let linted = parallel_owned(items, |((path, scope), (relative, source, linted, callees))| {
        let source = source?;
        let Some(linted) = linted else {
            return Ok((Vec::new(), Vec::new()));
        };
        let names = linted.as_ref().map_or(&[][..], |l| &l.names[..]);
        let elsewhere = names
            .iter()
            .chain(&callees)
            .any(|name| facts.defined_elsewhere(name, &relative));
        let config = config_of(path);
        let result = if elsewhere {
            lint_file(&relative, &source, *scope, config, Some(&facts))
        } else {
            finish(&relative, &source, linted, config)
        };
        result.map_err(|e| error_chain(&e))
    });
    let mut findings = Vec::new();
    let mut configs: BTreeSet<PathBuf> = BTreeSet::new();
    for ((path, _), result) in sources.iter().zip(linted) {
        match result {
            Ok((found, named)) => {
                findings.extend(found);
                for name in named {
                    if let Some(file) = resolve_config(
                        workspace,
                        package_of(path).map(|(dir, _)| dir.as_path()),
                        path,
                        &name,
                    ) {
                        configs.insert(file);
                    }
                }
            }
            Err(error) => errors.push((path.clone(), error)),
        }
    }

    // 3. The config files of the tests.
    for (dir, _) in &packages {
        configs.extend(config_files::config_files_under(&dir.join("tests")));
    }
    let configs: Vec<PathBuf> = configs.into_iter().collect();
    let scanned = parallel(&configs, |path| {
        let relative = relative_path(&workspace.root, path);
        let too_big = std::fs::metadata(path).is_ok_and(|m| m.len() > MAX_CONFIG_BYTES);
        if too_big {
            return Ok(Vec::new());
        }
        let bytes = std::fs::read(path).map_err(|source| {
            error_chain(&LintError::Read {
                path: path.clone(),
                source,
            })
        })?;
        // A config file is read for its addresses, whatever else its bytes hold.
        let source = String::from_utf8_lossy(&bytes);
        Ok(super::config_findings(&relative, &source, config_of(path)))
    });
    for (path, result) in configs.iter().zip(scanned) {
        match result {
            Ok(found) => findings.extend(found),
            Err(error) => errors.push((path.clone(), error)),
        }
    }

    findings.sort_by(|a, b| {
        (&a.file, a.line, a.column, a.code, a.port).cmp(&(&b.file, b.line, b.column, b.code, b.port))
    });
    findings.dedup_by(|a, b| {
        (&a.file, a.line, a.column, a.code, a.port) == (&b.file, b.line, b.column, b.code, b.port)
    });
    errors.sort();
    (findings, errors)
}

/// The config file a test names as `name`: relative to its package (where `cargo test` runs
/// tests) or to the test's own file (`include_str!`), and inside the workspace.
fn resolve_config(workspace: &Workspace, package: Option<&Path>, file: &Path, name: &str) -> Option<PathBuf> {
    let path = Path::new(name);
    let candidates = [
        package.map(|dir| dir.join(path)),
        file.parent().map(|dir| dir.join(path)),
    ];
    let root = workspace.root.canonicalize().ok()?;
    candidates.into_iter().flatten().find_map(|candidate| {
        let real = candidate.canonicalize().ok()?;
        (real.starts_with(&root) && real.is_file()).then(|| normalized(&candidate))
    })
}

/// `path` with `.` and `dir/..` taken out, without looking at the file system.
fn normalized(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir if out.file_name().is_some() => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::lint::facts::WorkspaceFacts;

    /// Tokens the rules and the facts look for, and the delimiters that make them fail.
    const VOCABULARY: &[&str] = &[
        "fn",
        "mod",
        "use",
        "impl",
        "trait",
        "for",
        "struct",
        "let",
        "const",
        "static",
        "pub",
        "crate",
        "super",
        "self",
        "Self",
        "if",
        "match",
        "while",
        "in",
        "return",
        "async",
        "await",
        "macro_rules",
        "port",
        "addr",
        "host",
        "bind",
        "connect",
        "arg",
        "args",
        "new",
        "start",
        "Broker",
        "Options",
        "PORT",
        "TcpListener",
        "SocketAddr",
        "Command",
        "u16",
        "&str",
        "#[test]",
        "#[cfg(test)]",
        "#[path = \"x.rs\"]",
        "::",
        ":",
        ";",
        ",",
        ".",
        "=",
        "==",
        "!",
        "?",
        "&",
        "<",
        ">",
        "->",
        "|",
        "(",
        ")",
        "{",
        "}",
        "[",
        "]",
        // Test data, not an address of this test: loopcheck:allow(LC010)
        "\"127.0.0.1:8080\"",
        "\"0.0.0.0\"",
        "\"::\"",
        "\"x.example.com\"",
        "\"localhost\"",
        "\"a.toml\"",
        "8080",
        "0",
        "65536",
        "\"{}:{port}\"",
        "format!",
        "assert_eq!",
        "// c",
        "/* c */",
        "\n",
    ];

    /// Random tokens, mostly in balanced groups (so that most files lex and reach the rules),
    /// sometimes not.
    fn source() -> impl Strategy<Value = String> {
        let token = proptest::sample::select(VOCABULARY).prop_map(str::to_owned);
        let tree = token.prop_recursive(4, 200, 12, |inner| {
            (
                proptest::sample::select(&[("(", ")"), ("{", "}"), ("[", "]")][..]),
                proptest::collection::vec(inner, 0..12),
            )
                .prop_map(|((open, close), parts)| format!("{open} {} {close}", parts.join(" ")))
        });
        proptest::collection::vec(tree, 0..40).prop_map(|parts| parts.join(" "))
    }

    /// Found by the test below: a `<` that opens no qualified path before the end of its group.
    #[test]
    fn a_lone_angle_before_a_keyword_is_no_panic() {
        let crates = vec!["ws".to_owned()];
        for text in ["( < fn )", "fn f() { (< fn) }", "<", "< T", "x(<a"] {
            let facts = WorkspaceFacts::new(
                vec![file_facts("tests/a.rs", text, true, &crates)],
                crates.clone(),
            );
            for scope in [Scope::TestFile, Scope::Source] {
                let _ = lint_file("tests/a.rs", text, scope, &LintConfig::default(), Some(&facts));
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Facts of two random files, then each linted with them and scanned as a config
        /// file: never a panic, and every finding has a place.
        #[test]
        fn the_workspace_pass_never_panics_on_random_tokens(a in source(), b in source()) {
            let crates = vec!["ws".to_owned()];
            let files = [("tests/a.rs", &a), ("src/b.rs", &b)];
            let facts = WorkspaceFacts::new(
                files.iter().map(|(file, text)| file_facts(file, text, file.starts_with("tests"), &crates)).collect(),
                crates.clone(),
            );
            for (file, text) in files {
                for scope in [Scope::TestFile, Scope::Source] {
                    if let Ok((found, _)) = lint_file(file, text, scope, &LintConfig::default(), Some(&facts)) {
                        prop_assert!(found.iter().all(|f| f.line.is_some_and(|l| l >= 1)));
                    }
                }
                let scanned = super::super::config_findings(file, text, &LintConfig::default());
                prop_assert!(scanned.iter().all(|f| f.line.is_some_and(|l| l >= 1)));
            }
        }
    }
}
