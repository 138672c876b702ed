//! The output of `cargo metadata --no-deps`, kept between runs with the state of everything
//! it was read from.
//!
//! `cargo metadata` costs 10-15 ms of CPU, as much as a small suite; the commands read a
//! workspace on every run, and it rarely changes. An entry is used only while the invocation
//! is the same (directory, manifest, `$CARGO`, the `CARGO*`, `RUSTUP_*`, `HOME` and `PATH`
//! variables)
//! and every input is as it was:
//! - each member's manifest and directory, its parent, `Cargo.toml` in each directory between
//!   it and the root, the directories cargo discovers targets in (`src`, and `src/bin`,
//!   `tests`, `examples`, `benches` with their subdirectories), and the directory of each
//!   target's file;
//! - the root directory and manifest, and the directories its `members` globs expand through
//!   (a workspace whose globs reach more than [`MAX_GLOB_DIRS`] is not cached);
//! - in every ancestor of the current directory and of the manifest given, `Cargo.toml` (cargo
//!   looks there for the package and the workspace root), cargo's configuration files and
//!   `rust-toolchain(.toml)`; cargo's configuration in `CARGO_HOME`; `$CARGO` itself.
//!
//! A state is the modification time, the change time, the size and the inode. An input whose
//! modification or change time is within [`RACY`] of the read is not trusted (a second change
//! in the same clock tick would keep both), and the entry is not kept; file systems whose clock
//! runs more than that behind this machine's (a network mount) are not covered. The entries
//! live in the lease registry, private to the user; any error means a fresh `cargo metadata`.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

/// The version of the entry format; an entry of another is ignored.
const VERSION: u32 = 1;

/// How long after a change an input's time is trusted.
pub(super) const RACY: Duration = Duration::from_secs(2);

/// Entries beyond this many are removed, the least recently written first.
const MAX_ENTRIES: usize = 64;

/// What a cached read is valid for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Invocation {
    cwd: PathBuf,
    manifest: Option<PathBuf>,
    cargo: Option<String>,
    env: Vec<(String, String)>,
}

impl Invocation {
    /// This process's invocation of `cargo metadata` for `manifest_path`; `None` when some of
    /// it is not UTF-8 (such an invocation is never cached).
    pub(super) fn current(manifest_path: Option<&Path>) -> Option<Invocation> {
        let cwd = std::env::current_dir().ok()?;
        let manifest = manifest_path.map(|p| cwd.join(p));
        let mut env = Vec::new();
        for (name, value) in std::env::vars_os() {
            let name = name.into_string().ok()?;
            // PATH: without `$CARGO`, it says which cargo runs.
            if name.starts_with("CARGO") || name.starts_with("RUSTUP_") || name == "HOME" || name == "PATH" {
                env.push((name, value.into_string().ok()?));
            }
        }
        env.sort();
        let cargo = env.iter().find(|(n, _)| n == "CARGO").map(|(_, v)| v.clone());
        let utf8 = |p: &Path| p.to_str().is_some();
        (utf8(&cwd) && manifest.as_deref().is_none_or(utf8)).then_some(Invocation {
            cwd,
            manifest,
            cargo,
            env,
        })
    }

    /// The entry's file name in the cache directory.
    fn file_name(&self) -> String {
        let mut hasher = std::hash::DefaultHasher::new();
        self.hash(&mut hasher);
        format!("metadata-{:016x}.json", hasher.finish())
    }
}

impl Hash for Invocation {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.cwd.hash(state);
        self.manifest.hash(state);
        self.cargo.hash(state);
        self.env.hash(state);
    }
}

/// The state of one input: absent, or its times, size and inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct State {
    modified_ns: i128,
    changed_ns: i128,
    size: u64,
    inode: u64,
}

#[derive(Serialize, Deserialize)]
struct Input {
    path: PathBuf,
    state: Option<State>,
}

#[derive(Serialize, Deserialize)]
struct Entry {
    version: u32,
    invocation: Invocation,
    inputs: Vec<Input>,
    metadata: cargo_metadata::Metadata,
}

/// The cached output for `invocation` in `dir`, if every input is as it was.
pub(super) fn lookup(dir: &Path, invocation: &Invocation) -> Option<cargo_metadata::Metadata> {
    let text = std::fs::read(dir.join(invocation.file_name())).ok()?;
    let entry: Entry = serde_json::from_slice(&text).ok()?;
    let valid = entry.version == VERSION
        && entry.invocation == *invocation
        && entry.inputs.iter().all(|input| state(&input.path) == input.state);
    valid.then_some(entry.metadata)
}

/// Keeps `metadata`, read from a `cargo metadata` started at `started`, unless one of its
/// inputs changed within [`RACY`] of that. Errors are ignored: the cache only saves time.
pub(super) fn store(
    dir: &Path,
    invocation: &Invocation,
    metadata: &cargo_metadata::Metadata,
    started: SystemTime,
) {
    let Some(trusted_before) = started.checked_sub(RACY) else {
        return;
    };
    let trusted_before = nanos(trusted_before);
    let Some(paths) = inputs_of(metadata, invocation) else {
        return;
    };
    let mut inputs = Vec::new();
    for path in paths {
        let state = state(&path);
        // The change time too: a file moved into place (`mv`, `cp -p`, `tar x`) keeps an old
        // modification time, never an old change time.
        if state.is_some_and(|s| s.modified_ns.max(s.changed_ns) >= trusted_before) {
            return;
        }
        inputs.push(Input { path, state });
    }
    let entry = Entry {
        version: VERSION,
        invocation: invocation.clone(),
        inputs,
        metadata: metadata.clone(),
    };
    let Ok(text) = serde_json::to_vec(&entry) else {
        return;
    };
    // Written aside and renamed, so that a reader sees a whole entry or none.
    let path = dir.join(invocation.file_name());
    let aside = dir.join(format!(".{}.{}", invocation.file_name(), std::process::id()));
    if write_private(&aside, &text).is_err() || std::fs::rename(&aside, &path).is_err() {
        let _ = std::fs::remove_file(&aside);
        return;
    }
    prune(dir);
}

/// Writes a new file, readable by this user only, never through a symlink.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let _ = std::fs::remove_file(path);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(bytes)
}

/// Everything the output of `cargo metadata --no-deps` was read from; `None` when that is too
/// much to watch (a `members` glob over more than [`MAX_GLOB_DIRS`] directories).
fn inputs_of(metadata: &cargo_metadata::Metadata, invocation: &Invocation) -> Option<Vec<PathBuf>> {
    let root = metadata.workspace_root.as_std_path();
    let mut inputs = vec![root.to_path_buf(), root.join("Cargo.toml")];
    for package in metadata.workspace_packages() {
        let manifest = package.manifest_path.as_std_path();
        inputs.push(manifest.to_path_buf());
        let Some(dir) = manifest.parent() else {
            continue;
        };
        inputs.extend(dir.parent().map(Path::to_path_buf));
        // Cargo looks for each member's workspace root above it: a manifest created on the way
        // makes another workspace.
        for above in dir.ancestors().skip(1).take_while(|a| a.starts_with(root)) {
            inputs.push(above.join("Cargo.toml"));
        }
        inputs.push(dir.to_path_buf());
        inputs.push(dir.join("src"));
        // A target's file may be anywhere the manifest says: its directory tells of a rename.
        inputs.extend(
            package
                .targets
                .iter()
                .filter_map(|t| t.src_path.as_std_path().parent().map(Path::to_path_buf)),
        );
        // Targets are discovered as `NAME.rs` and `NAME/main.rs` in these.
        for discovered in ["src/bin", "tests", "examples", "benches"] {
            let discovered = dir.join(discovered);
            inputs.extend(subdirectories(&discovered));
            inputs.push(discovered);
        }
    }
    inputs.extend(glob_member_dirs(root)?);
    // Cargo finds the manifest and the workspace root by walking up from the current directory
    // (or the manifest given), and reads its configuration from the current directory's
    // ancestors and CARGO_HOME; the manifest's ancestors are looked at too, in case a version
    // reads them.
    let manifest_dir = invocation.manifest.as_deref().and_then(Path::parent);
    let mut ancestors: Vec<&Path> = invocation.cwd.ancestors().collect();
    ancestors.extend(manifest_dir.into_iter().flat_map(Path::ancestors));
    let env = |name: &str| invocation.env.iter().find(|(n, _)| n == name).map(|(_, v)| v);
    let home = env("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|home| Path::new(home).join(".cargo")));
    for dir in ancestors {
        for file in [
            "Cargo.toml",
            ".cargo/config.toml",
            ".cargo/config",
            "rust-toolchain.toml",
            "rust-toolchain",
        ] {
            inputs.push(dir.join(file));
        }
    }
    if let Some(home) = home {
        inputs.push(home.join("config.toml"));
        inputs.push(home.join("config"));
    }
    inputs.extend(invocation.cargo.as_ref().map(PathBuf::from));
    inputs.sort();
    inputs.dedup();
    Some(inputs)
}

/// The directories in `dir`, linked ones too (cargo's target discovery does not look into
/// those, so watching one costs at most a needless fresh read; a `members` glob does follow
/// them).
fn subdirectories(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .map(|e| e.path())
        .filter(|path| path.is_dir())
        .collect()
}

/// The most directories watched for the `members` globs together; a workspace whose globs
/// reach further is not cached.
const MAX_GLOB_DIRS: usize = 4096;

/// The directories the `members` globs of the root manifest expand through, from each glob's
/// literal prefix down to its depth: a new member shows as a new entry in one of them, or a
/// manifest created in one. `None` when they are more than [`MAX_GLOB_DIRS`].
fn glob_member_dirs(root: &Path) -> Option<Vec<PathBuf>> {
    let Ok(text) = std::fs::read_to_string(root.join("Cargo.toml")) else {
        return Some(Vec::new());
    };
    let Ok(manifest) = text.parse::<toml::Table>() else {
        return Some(Vec::new());
    };
    let members = manifest
        .get("workspace")
        .and_then(|w| w.get("members"))
        .and_then(toml::Value::as_array);
    let mut dirs = Vec::new();
    for pattern in members.into_iter().flatten().filter_map(toml::Value::as_str) {
        let parts: Vec<std::path::Component<'_>> = Path::new(pattern).components().collect();
        let is_glob = |part: &std::path::Component<'_>| {
            part.as_os_str()
                .to_str()
                .is_some_and(|p| p.contains(['*', '?', '[']))
        };
        let Some(first_glob) = parts.iter().position(is_glob) else {
            continue;
        };
        // An absolute prefix replaces the root, as cargo reads it.
        let prefix: PathBuf = parts[..first_glob].iter().collect();
        let mut level = vec![root.join(prefix)];
        for part in &parts[first_glob..] {
            let part = part.as_os_str().to_str().unwrap_or("*");
            let mut next = Vec::new();
            for dir in level {
                if part.contains(['*', '?', '[']) {
                    next.extend(subdirectories(&dir).into_iter().filter(|sub| {
                        sub.file_name()
                            .and_then(|name| name.to_str())
                            .is_none_or(|name| wildcard_match(part, name))
                    }));
                } else {
                    next.push(dir.join(part));
                }
                dirs.push(dir);
            }
            level = next;
            if dirs.len() + level.len() > MAX_GLOB_DIRS {
                return None;
            }
        }
        dirs.extend(level);
    }
    Some(dirs)
}

/// Whether `name` matches the glob component `pattern`: `*` any run, `?` one character; a
/// `[...]` class matches any one character (watching more directories than cargo expands is
/// harmless). A leading `.` is matched only by one in the pattern, so that `*` does not watch
/// `.git`.
fn wildcard_match(pattern: &str, name: &str) -> bool {
    if name.starts_with('.') && !pattern.starts_with('.') {
        return false;
    }
    let mut simple = String::with_capacity(pattern.len());
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if c == '[' {
            // `[...]` is one character of a class.
            for c in chars.by_ref() {
                if c == ']' {
                    break;
                }
            }
            simple.push('?');
        } else {
            simple.push(c);
        }
    }
    let (pattern, name): (Vec<char>, Vec<char>) = (simple.chars().collect(), name.chars().collect());
    // The classic two-pointer match with one backtrack point for the last `*`.
    let (mut p, mut n, mut star, mut resume) = (0, 0, None, 0);
    while n < name.len() {
        if p < pattern.len() && (pattern[p] == '?' || pattern[p] == name[n]) {
            p += 1;
            n += 1;
        } else if p < pattern.len() && pattern[p] == '*' {
            star = Some(p);
            resume = n;
            p += 1;
        } else if let Some(at) = star {
            p = at + 1;
            resume += 1;
            n = resume;
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

/// The state of `path` now, following symlinks as cargo does.
fn state(path: &Path) -> Option<State> {
    let meta = std::fs::metadata(path).ok()?;
    let modified_ns = meta.modified().map_or(0, nanos);
    #[cfg(unix)]
    let (changed_ns, inode) = {
        use std::os::unix::fs::MetadataExt;
        (
            i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec()),
            meta.ino(),
        )
    };
    #[cfg(not(unix))]
    let (changed_ns, inode) = (0, 0);
    Some(State {
        modified_ns,
        changed_ns,
        size: meta.len(),
        inode,
    })
}

/// Nanoseconds since the epoch, negative before it.
fn nanos(time: SystemTime) -> i128 {
    match time.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(after) => i128::try_from(after.as_nanos()).unwrap_or(i128::MAX),
        Err(before) => -i128::try_from(before.duration().as_nanos()).unwrap_or(i128::MAX),
    }
}

/// How old a file written aside must be to count as left by a process that died writing it.
const STALE_ASIDE: Duration = Duration::from_secs(600);

/// Removes the least recently written entries beyond [`MAX_ENTRIES`], and files written aside
/// by processes that died before renaming them.
fn prune(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let now = SystemTime::now();
    let mut entries: Vec<(SystemTime, PathBuf)> = entries
        .flatten()
        .filter_map(|e| {
            let written = e.metadata().ok()?.modified().ok()?;
            let name = e.file_name();
            let name = name.to_str()?;
            let stale = now.duration_since(written).is_ok_and(|age| age > STALE_ASIDE);
            if name.starts_with(".metadata-") && stale {
                let _ = std::fs::remove_file(e.path());
            }
            name.starts_with("metadata-").then(|| (written, e.path()))
        })
        .collect();
    if entries.len() <= MAX_ENTRIES {
        return;
    }
    entries.sort();
    let excess = entries.len() - MAX_ENTRIES;
    for (_, path) in &entries[..excess] {
        let _ = std::fs::remove_file(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads the workspace with `cargo metadata` and keeps it in `cache`: `settled` as if the
    /// read came well after the last change (so that it is trusted), else as of now.
    fn read_and_store(cache: &Path, invocation: &Invocation, settled: bool) -> cargo_metadata::Metadata {
        let now = SystemTime::now();
        let metadata = super::super::run_metadata(invocation.manifest.as_deref()).unwrap();
        let started = match settled {
            true => SystemTime::now() + RACY + Duration::from_secs(1),
            false => now,
        };
        store(cache, invocation, &metadata, started);
        metadata
    }

    /// Asserts that `cache` holds `read` for `invocation`.
    fn assert_cached(cache: &Path, invocation: &Invocation, read: &cargo_metadata::Metadata, what: &str) {
        let cached = lookup(cache, invocation).unwrap_or_else(|| panic!("{what}: not cached"));
        assert_eq!(
            serde_json::to_value(&cached).unwrap(),
            serde_json::to_value(read).unwrap(),
            "{what}: the cached metadata is what cargo said"
        );
    }

    /// Applies each change in turn: it is seen at once, nothing is kept right after it, and
    /// the workspace is kept again once the change has settled.
    fn each_change_is_seen(cache: &Path, invocation: &Invocation, changes: &[(&str, &dyn Fn())]) {
        let read = read_and_store(cache, invocation, true);
        assert_cached(cache, invocation, &read, "unchanged");
        for (change, make) in changes {
            make();
            assert!(lookup(cache, invocation).is_none(), "{change}: not seen");
            // Just changed: a second change in the same clock tick could keep the times.
            read_and_store(cache, invocation, false);
            assert!(lookup(cache, invocation).is_none(), "{change}: kept at once");
            let read = read_and_store(cache, invocation, true);
            assert_cached(cache, invocation, &read, change);
        }
    }

    #[test]
    fn an_entry_holds_until_an_input_changes() {
        let top = tempfile::tempdir().unwrap();
        let root = top.path().join("ws");
        let root = root.as_path();
        super::super::write_fixture(root);
        std::fs::create_dir(root.join("api/tests/nested")).unwrap();
        std::fs::create_dir_all(top.path().join("shared/e2e")).unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink("../../../shared/e2e", root.join("api/tests/e2e")).unwrap();
        let cache = tempfile::tempdir().unwrap();
        let invocation = Invocation::current(Some(&root.join("Cargo.toml"))).unwrap();
        let changes: &[(&str, &dyn Fn())] = &[
            ("a member's manifest edited", &|| {
                let manifest = root.join("api/Cargo.toml");
                let text = std::fs::read_to_string(&manifest).unwrap();
                std::fs::write(&manifest, text + "\n[lib]\ndoctest = false\n").unwrap();
            }),
            ("a new test target", &|| {
                std::fs::write(root.join("api/tests/more.rs"), "").unwrap();
            }),
            ("a test target in a directory of its own", &|| {
                std::fs::write(root.join("api/tests/nested/main.rs"), "").unwrap();
            }),
            #[cfg(unix)]
            ("a test target in a linked directory", &|| {
                std::fs::write(top.path().join("shared/e2e/main.rs"), "").unwrap();
            }),
            ("a new bin directory", &|| {
                std::fs::create_dir_all(root.join("tools/src/bin")).unwrap();
                std::fs::write(root.join("tools/src/bin/admin.rs"), "fn main() {}\n").unwrap();
            }),
            // cargo reads it from the current directory's ancestors; the manifest's are
            // watched as well.
            ("a cargo configuration beside the manifest", &|| {
                std::fs::create_dir_all(root.join(".cargo")).unwrap();
                std::fs::write(
                    root.join(".cargo/config.toml"),
                    "[build]\ntarget-dir = \"elsewhere\"\n",
                )
                .unwrap();
            }),
            ("a manifest above the workspace", &|| {
                std::fs::write(top.path().join("Cargo.toml"), "# not a workspace\n").unwrap();
            }),
            ("a file moved into place with an old time", &|| {
                let manifest = root.join("tools/Cargo.toml");
                let moved = top.path().join("moved.toml");
                let text = std::fs::read_to_string(&manifest).unwrap();
                std::fs::write(&moved, text.replace("0.1.0", "0.2.0")).unwrap();
                let old = std::fs::metadata(&manifest).unwrap().modified().unwrap();
                std::fs::File::open(&moved).unwrap().set_modified(old).unwrap();
                std::fs::rename(&moved, &manifest).unwrap();
            }),
        ];
        each_change_is_seen(cache.path(), &invocation, changes);
        let cached = super::super::Workspace::from(lookup(cache.path(), &invocation).unwrap());
        let api = cached.packages.iter().find(|p| p.name.as_str() == "api").unwrap();
        let tests = api
            .targets
            .iter()
            .filter(|t| t.is_kind(cargo_metadata::TargetKind::Test))
            .count();
        // `api-tests`, `more`, `nested`: cargo does not look into the linked directory, which
        // is watched all the same.
        assert_eq!(tests, 3, "{:?}", api.targets);

        // Another invocation is another entry.
        let mut elsewhere = invocation.clone();
        elsewhere.env.push(("CARGO_TARGET_DIR".into(), "/nowhere".into()));
        assert!(lookup(cache.path(), &elsewhere).is_none());
        // A damaged entry is no entry.
        std::fs::write(cache.path().join(invocation.file_name()), "{").unwrap();
        assert!(lookup(cache.path(), &invocation).is_none());
    }

    #[test]
    fn a_new_member_of_a_glob_is_seen() {
        let top = tempfile::tempdir().unwrap();
        let root = top.path();
        let package = |dir: &str, name: &str| {
            let dir = root.join(dir);
            std::fs::create_dir_all(dir.join("src")).unwrap();
            std::fs::write(
                dir.join("Cargo.toml"),
                format!("[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2021\"\n"),
            )
            .unwrap();
            std::fs::write(dir.join("src/lib.rs"), "").unwrap();
        };
        std::fs::write(
            root.join("Cargo.toml"),
            "[workspace]\nmembers = [\"crates/*\", \"groups/*/*\"]\nresolver = \"2\"\n",
        )
        .unwrap();
        package("crates/first", "first");
        package("groups/a/one", "one");
        let cache = tempfile::tempdir().unwrap();
        let invocation = Invocation::current(Some(&root.join("Cargo.toml"))).unwrap();
        let changes: &[(&str, &dyn Fn())] = &[
            ("a new member", &|| package("crates/second", "second")),
            ("a new member in a group", &|| package("groups/a/two", "two")),
            ("a new group", &|| package("groups/b/three", "three")),
        ];
        each_change_is_seen(cache.path(), &invocation, changes);
        let cached = lookup(cache.path(), &invocation).unwrap();
        assert_eq!(cached.workspace_packages().len(), 5);
    }

    #[test]
    fn a_file_with_an_old_modification_time_but_a_new_change_time_is_not_trusted() {
        let top = tempfile::tempdir().unwrap();
        super::super::write_fixture(top.path());
        // Every modification time an hour back, as `cp -p` or `tar x` leave them; the change
        // times are now.
        let hour_ago = SystemTime::now() - Duration::from_secs(3600);
        let mut pending = vec![top.path().to_path_buf()];
        while let Some(path) = pending.pop() {
            if path.is_dir() {
                pending.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
            }
            std::fs::File::open(&path)
                .unwrap()
                .set_modified(hour_ago)
                .unwrap();
        }
        let cache = tempfile::tempdir().unwrap();
        let invocation = Invocation::current(Some(&top.path().join("Cargo.toml"))).unwrap();
        read_and_store(cache.path(), &invocation, false);
        assert!(
            lookup(cache.path(), &invocation).is_none(),
            "kept on old modification times"
        );
    }

    #[test]
    fn glob_components_match_as_cargo_expands_them() {
        for (pattern, name, matches) in [
            ("*", "api", true),
            ("*", ".git", false),
            (".*", ".hidden", true),
            ("app-*", "app-web", true),
            ("app-*", "lib-web", false),
            ("*-svc", "auth-svc", true),
            ("a?c", "abc", true),
            ("a?c", "abbc", false),
            ("[ab]x", "bx", true),
            ("*a*b", "xaxxb", true),
            ("*a*b", "xaxxbc", false),
        ] {
            assert_eq!(wildcard_match(pattern, name), matches, "{pattern} {name}");
        }
    }

    #[test]
    fn entries_beyond_the_bound_are_pruned_oldest_first() {
        let cache = tempfile::tempdir().unwrap();
        let old = SystemTime::now() - Duration::from_secs(3600);
        for n in 0..MAX_ENTRIES + 3 {
            let path = cache.path().join(format!("metadata-{n:016x}.json"));
            std::fs::write(&path, "{}").unwrap();
            let age = if n < 3 { old } else { SystemTime::now() };
            std::fs::File::open(&path).unwrap().set_modified(age).unwrap();
        }
        // Files written aside: one by a process that died long ago, one being written now.
        let dead = cache.path().join(".metadata-0000000000000000.json.1");
        let writing = cache.path().join(".metadata-0000000000000001.json.2");
        std::fs::write(&dead, "{").unwrap();
        std::fs::File::open(&dead).unwrap().set_modified(old).unwrap();
        std::fs::write(&writing, "{").unwrap();
        prune(cache.path());
        let mut left: Vec<String> = std::fs::read_dir(cache.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(!dead.exists() && writing.exists());
        left.retain(|name| name.starts_with("metadata-"));
        assert_eq!(left.len(), MAX_ENTRIES);
        for n in 0..3 {
            assert!(!left.contains(&format!("metadata-{n:016x}.json")), "{n} kept");
        }
    }
}
