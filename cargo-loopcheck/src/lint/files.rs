//! Which files of a workspace hold test code.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use cargo_metadata::TargetKind;

use super::{Scope, items};
use crate::workspace::Workspace;

/// The Rust files of every package of `workspace` that may hold test code, with how much of
/// each is test code, sorted by path.
///
/// - `tests/**/*.rs`, `benches/**/*.rs` and the `src_path` of test and bench targets (which can
///   live anywhere): [`Scope::TestFile`];
/// - `src/**/*.rs` and the `src_path` of other targets: [`Scope::Source`], except the files of
///   `#[cfg(test)] mod x;` declarations (and the modules they declare in turn), which are
///   [`Scope::TestFile`].
///
/// Directories with their own `Cargo.toml` (nested packages, fixtures), hidden directories and
/// `target` are not entered.
pub fn test_sources(workspace: &Workspace) -> Vec<(PathBuf, Scope)> {
    let mut files: BTreeMap<PathBuf, Scope> = BTreeMap::new();
    let mut roots: Vec<PathBuf> = Vec::new();
    for package in &workspace.packages {
        let manifest = package.manifest_path.as_std_path();
        let Some(dir) = manifest.parent() else {
            continue;
        };
        for sub in ["tests", "benches"] {
            for file in rust_files(&dir.join(sub)) {
                files.insert(file, Scope::TestFile);
            }
        }
        for target in &package.targets {
            let path = target.src_path.as_std_path().to_path_buf();
            roots.push(path.clone());
            if target.is_kind(TargetKind::Test) || target.is_kind(TargetKind::Bench) {
                files.insert(path, Scope::TestFile);
            } else if !target.is_kind(TargetKind::Example) && !target.is_kind(TargetKind::CustomBuild) {
                files.entry(path).or_insert(Scope::Source);
            }
        }
        for file in rust_files(&dir.join("src")) {
            files.entry(file).or_insert(Scope::Source);
        }
    }

    // Follow `mod x;` out of test code: such files are all test code, and so are theirs.
    let mut pending: Vec<(PathBuf, Scope)> = files.iter().map(|(p, s)| (p.clone(), *s)).collect();
    while let Some((path, scope)) = pending.pop() {
        let Ok(source) = std::fs::read_to_string(&path) else {
            continue;
        };
        if !declares_modules(&source) || (scope == Scope::Source && !source.contains("test")) {
            continue;
        }
        let mod_rs = roots.contains(&path)
            || matches!(
                path.file_name().and_then(|n| n.to_str()),
                Some("mod.rs" | "lib.rs" | "main.rs")
            );
        for child in test_modules(&path, &source, scope, mod_rs) {
            if files.get(&child) != Some(&Scope::TestFile) {
                files.insert(child.clone(), Scope::TestFile);
                pending.push((child, Scope::TestFile));
            }
        }
    }
    files.into_iter().collect()
}

/// Whether `source` seems to declare an out-of-line module (`mod x;`), so is worth parsing.
fn declares_modules(source: &str) -> bool {
    source.lines().any(|line| {
        let line = line.trim();
        line.ends_with(';')
            && (line.starts_with("mod ") || (line.starts_with("pub") && line.contains(" mod ")))
    })
}

/// `dir/**/*.rs`, sorted, skipping hidden directories, `target` and nested packages.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    files_under(dir, &|name| name.ends_with(".rs"))
}

/// The files under `dir` whose name passes `wanted`, sorted, skipping hidden directories,
/// `target` and nested packages.
pub(super) fn files_under(dir: &Path, wanted: &dyn Fn(&str) -> bool) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                if !name.starts_with('.') && name != "target" && !path.join("Cargo.toml").exists() {
                    stack.push(path);
                }
            } else if wanted(&name) {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// The files of the out-of-line modules declared in test code of `path`. `mod_rs`: whether
/// `path` is a crate root or `mod.rs`, whose modules live beside it rather than in a directory
/// named after it.
fn test_modules(path: &Path, source: &str, scope: Scope, mod_rs: bool) -> Vec<PathBuf> {
    let parent = path.parent().unwrap_or(Path::new(""));
    let base = if mod_rs {
        parent.to_path_buf()
    } else {
        parent.join(path.file_stem().unwrap_or_default())
    };
    items::test_module_decls(source, scope == Scope::TestFile)
        .into_iter()
        .filter_map(|decl| {
            let dir = decl.inline.iter().fold(base.clone(), |dir, m| dir.join(m));
            let candidates = match (&decl.path, decl.inline.is_empty()) {
                // `#[path]` at the top of a file is relative to the file's directory.
                (Some(file), true) => vec![parent.join(file)],
                (Some(file), false) => vec![dir.join(file)],
                (None, _) => vec![
                    dir.join(format!("{}.rs", decl.name)),
                    dir.join(&decl.name).join("mod.rs"),
                ],
            };
            candidates.into_iter().find(|c| c.is_file())
        })
        .collect()
}
