//! `cargo loopcheck lint`: hard-coded ports (LC010), wildcard binds (LC011) and racy port
//! allocation (LC014) in test code.
//!
//! The lint reports test code only: every file under a package's `tests/` and `benches/` (and
//! its test and bench targets, wherever they live), and in `src/` the `#[cfg(test)]` items, the
//! functions marked with an attribute ending in `test` (`#[test]`, `#[tokio::test]`,
//! `#[loopback_test]`), and the files of `#[cfg(test)] mod x;`; and the TOML, JSON and YAML files
//! under `tests/` or named by a test. Files are lexed into token trees (proc-macro2) rather than
//! parsed into syntax trees, which is several times faster; comments and doc comments are never
//! read as code.
//!
//! [`lint_workspace`] reads the workspace as a whole: it first takes facts from every source,
//! library code included (the functions whose parameters carry a port, the constants that hold
//! one), so that a port handed to a helper of another file, to the crate's own API, or taken from
//! a library constant is reported where the test writes it. [`lint_source`] knows the facts of
//! its one file.
//!
//! ```
//! use cargo_loopcheck::lint::{LintConfig, Scope, lint_source};
//!
//! let source = r#"
//! #[test]
//! fn serves() {
//!     let listener = std::net::TcpListener::bind("127.0.0.1:8080").unwrap();
//! }
//! "#;
//! let findings = lint_source("tests/serve.rs", source, Scope::TestFile, &LintConfig::default())?;
//! assert_eq!(findings.len(), 1);
//! assert_eq!(findings[0].code.to_string(), "LC010");
//! assert_eq!(findings[0].message, "hard-coded port 8080 in `TcpListener::bind`");
//! assert_eq!((findings[0].line, findings[0].column, findings[0].port), (Some(4), Some(48), Some(8080)));
//! # Ok::<(), cargo_loopcheck::lint::LintError>(())
//! ```
//!
//! A finding is suppressed by `// loopcheck:allow(LC010)` or `// loopcheck:allow(hard-coded-port)`
//! (several codes separated by commas) on its line, or on a line of its own just before, and by
//! the `allow` and `allow-ports` keys of `[workspace.metadata.loopcheck]` and
//! `[package.metadata.loopcheck]` ([`LintConfig`]).

mod addr;
mod calls;
mod config;
mod config_files;
mod eval;
mod extract;
mod facts;
mod files;
mod hard_coded;
mod imports;
mod items;
mod local_facts;
mod names;
mod pass;
mod pickers;
mod racy;
mod reach;
mod sites;
mod suppress;
mod tokens;
mod walk;
mod wildcard;

use std::path::{Path, PathBuf};

use loopcheck::report::Severity;

use loopcheck::report::Finding;

pub use config::LintConfig;
pub use files::test_sources;
pub(crate) use items::loopback_test_form;
pub use sites::{PortUse, TestSite, test_site};

use crate::workspace::Workspace;

/// How much of a file is test code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// All of it: files under `tests/` and `benches/`, test and bench targets, and the files of
    /// `#[cfg(test)] mod x;`.
    TestFile,
    /// Only `#[cfg(test)]` items and functions with an attribute whose path ends in `test`
    /// (`#[test]`, `#[tokio::test]`, `#[loopback_test]`): files under `src/`.
    Source,
}

/// Why a file could not be linted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LintError {
    /// The file cannot be split into Rust tokens: unbalanced delimiters, an unterminated
    /// string or comment. Other syntax errors are left to the compiler; the file is linted.
    #[error("cannot parse `{file}` at line {line}, column {column}: {message}")]
    Parse {
        /// The file, as given to [`lint_source`].
        file: String,
        /// The line of the error, from 1.
        line: u32,
        /// The column of the error, from 1.
        column: u32,
        /// What the parser expected.
        message: String,
    },

    /// The file could not be read.
    #[error("cannot read `{}`", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },

    /// A `loopcheck` metadata table has a bad value.
    #[error("invalid {}: {message}", place(table, key))]
    Config {
        /// The table, such as `[package.metadata.loopcheck]`.
        table: String,
        /// The key, such as `allow-ports`; empty when the table itself is wrong.
        key: String,
        /// What is wrong with it.
        message: String,
    },
}

fn place(table: &str, key: &str) -> String {
    if key.is_empty() {
        format!("`{table}`")
    } else {
        format!("`{key}` in `{table}`")
    }
}

/// The findings in `source`, sorted by line and column.
///
/// `file` is the path relative to the workspace root, as findings show it; `scope` says how much
/// of the file is test code. Findings suppressed by a `loopcheck:allow` comment or by `config`
/// are left out.
///
/// # Errors
///
/// [`LintError::Parse`] when `source` cannot be split into Rust tokens.
pub fn lint_source(
    file: &str,
    source: &str,
    scope: Scope,
    config: &LintConfig,
) -> Result<Vec<Finding>, LintError> {
    lint_file(file, source, scope, config, None).map(|(findings, _)| findings)
}

/// [`lint_source`] with the facts of the workspace (`None`: of the file alone). Also returns
/// the config files the file names.
fn lint_file(
    file: &str,
    source: &str,
    scope: Scope,
    config: &LintConfig,
    facts: Option<&facts::WorkspaceFacts>,
) -> Result<(Vec<Finding>, Vec<String>), LintError> {
    // Test code in `src/` always carries an attribute that names `test`.
    if scope == Scope::Source && !source.contains("test") {
        return Ok((Vec::new(), Vec::new()));
    }
    finish(
        file,
        source,
        walk::lint_with(source, scope == Scope::TestFile, file, facts),
        config,
    )
}

/// The findings of a linted file with its suppressions and `config` applied, and the config
/// files it names.
fn finish(
    file: &str,
    source: &str,
    linted: Result<walk::Linted, walk::ParseError>,
    config: &LintConfig,
) -> Result<(Vec<Finding>, Vec<String>), LintError> {
    let linted = linted.map_err(|error| LintError::Parse {
        file: file.to_owned(),
        line: error.line,
        column: error.column,
        message: error.message,
    })?;
    let suppressions = suppress::Suppressions::new(source);
    let findings = findings_of(file, linted.hits, &suppressions, config);
    Ok((findings, linted.config_files))
}

/// The findings of a config file ([`config_files`]) with its `# loopcheck:allow` comments
/// and `config` applied.
fn config_findings(file: &str, source: &str, config: &LintConfig) -> Vec<Finding> {
    let suppressions = suppress::Suppressions::of_config(source);
    findings_of(file, config_files::scan(source), &suppressions, config)
}

fn findings_of(
    file: &str,
    hits: Vec<walk::Hit>,
    suppressions: &suppress::Suppressions,
    config: &LintConfig,
) -> Vec<Finding> {
    let mut findings: Vec<Finding> = hits
        .into_iter()
        .filter(|hit| !suppressions.allows(hit.code, hit.line))
        .map(|hit| {
            let mut finding = Finding::new(hit.code, hit.message);
            if hit.warning {
                finding.severity = Severity::Warning;
            }
            finding.file = Some(file.to_owned());
            finding.line = Some(hit.line);
            finding.column = Some(hit.column);
            finding.port = hit.port;
            finding.suggestion = Some(hit.suggestion);
            finding
        })
        .filter(|finding| !config.allows(finding))
        .collect();
    findings.sort_by_key(|f| (f.line, f.column, f.code, f.port));
    findings
}

/// Lints every test source of `workspace` ([`test_sources`]) and the config files its tests
/// read, files in parallel.
///
/// The workspace is read as a whole: facts about every package's sources (functions whose
/// parameters carry a port, port constants) are taken first, so a port handed to a helper in
/// another file, or taken from a constant in library code, is found where the test writes it.
/// TOML, JSON and YAML files under a package's `tests/`, and those a test names with a literal
/// path, are scanned for fixed ports and wildcard addresses.
///
/// Each package is linted with `config` merged with the `loopcheck` tables of
/// `[workspace.metadata]` and of its `[package.metadata]`. Returns the findings, sorted by file,
/// line and column, and the files (or manifests, for bad metadata) that could not be linted with
/// the reason.
pub fn lint_workspace(workspace: &Workspace, config: &LintConfig) -> (Vec<Finding>, Vec<(PathBuf, String)>) {
    pass::run(workspace, config)
}

/// The facts pass of [`lint_workspace`] alone, for benchmarks: reads and lexes every source of
/// `workspace` and returns how many functions and constants it found.
#[doc(hidden)]
pub fn workspace_facts_count(workspace: &Workspace) -> usize {
    pass::workspace_facts(workspace).len()
}

/// The workspace's own settings, `[workspace.metadata.loopcheck]`, for a command to add its flags
/// to before calling [`lint_workspace`] (which adds each package's table itself).
///
/// # Errors
///
/// [`Error::Usage`](crate::Error::Usage) naming the table and key of a bad value.
pub fn config(workspace: &Workspace) -> crate::Result<LintConfig> {
    LintConfig::from_metadata(&workspace.metadata, &serde_json::Value::Null)
        .map_err(|error| crate::Error::Usage(error.to_string()))
}

/// The second list of [`lint_workspace`], as reports show it: files relative to the workspace
/// root.
pub fn file_errors(
    workspace: &Workspace,
    errors: Vec<(PathBuf, String)>,
) -> Vec<crate::report::findings::FileError> {
    errors
        .into_iter()
        .map(|(path, error)| crate::report::findings::FileError {
            file: relative_path(&workspace.root, &path),
            error,
        })
        .collect()
}

/// `path` relative to `root` with `/` separators, or as it is when outside `root`: how
/// findings and test reports name files.
pub(crate) fn relative_path(root: &Path, path: &Path) -> String {
    let relative = path.strip_prefix(root).unwrap_or(path);
    let parts: Vec<String> = relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if relative.is_absolute() {
        relative.display().to_string()
    } else {
        parts.join("/")
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
