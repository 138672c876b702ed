//! The output of `cargo metadata --no-deps`, kept between runs with the state of everything
//! it was read from.
//!
//! `cargo metadata` costs 10-15 ms of CPU, as much as a small suite; the commands read a
//! workspace on every run, and it rarely changes. An entry is used only while the invocation
//! is the same (directory, manifest, `$CARGO`, the `CARGO*`, `RUSTUP_*` and `HOME` variables)
//! and every input is as it was: each member's manifest, directory and the directories cargo
//! discovers targets in (`src`, `src/bin`, `tests`, `examples`, `benches` and their
//! subdirectories), the directory of each target's file, each member's parent (a `members`
//! glob), the root manifest, the configuration files cargo would read, and `$CARGO` itself. A
//! state is the modification time, the change time, the size and the inode. An input modified
//! within [`RACY`] of the read is not trusted (a second change in the same clock tick would keep
//! its time), and the entry is not kept. The entries live in the lease registry, private to the
//! user; any error means a fresh `cargo metadata`.

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
            if name.starts_with("CARGO") || name.starts_with("RUSTUP_") || name == "HOME" {
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
    let mut inputs = Vec::new();
    for path in inputs_of(metadata, invocation) {
        let state = state(&path);
        if state.is_some_and(|s| s.modified_ns >= trusted_before) {
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

/// Everything the output of `cargo metadata --no-deps` was read from.
fn inputs_of(metadata: &cargo_metadata::Metadata, invocation: &Invocation) -> Vec<PathBuf> {
    let root = metadata.workspace_root.as_std_path();
    let mut inputs = vec![root.to_path_buf(), root.join("Cargo.toml")];
    for package in metadata.workspace_packages() {
        let manifest = package.manifest_path.as_std_path();
        inputs.push(manifest.to_path_buf());
        let Some(dir) = manifest.parent() else {
            continue;
        };
        inputs.extend(dir.parent().map(Path::to_path_buf));
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
            if let Ok(entries) = std::fs::read_dir(&discovered) {
                let subdirs = entries
                    .flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path());
                inputs.extend(subdirs);
            }
            inputs.push(discovered);
        }
    }
    // Cargo reads its configuration from the current directory's ancestors, and from
    // CARGO_HOME; the manifest's ancestors are looked at too, in case a version reads them.
    let manifest_dir = invocation.manifest.as_deref().and_then(Path::parent);
    let mut config_dirs: Vec<&Path> = invocation.cwd.ancestors().collect();
    config_dirs.extend(manifest_dir.into_iter().flat_map(Path::ancestors));
    let env = |name: &str| invocation.env.iter().find(|(n, _)| n == name).map(|(_, v)| v);
    let home = env("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|home| Path::new(home).join(".cargo")));
    for dir in config_dirs {
        inputs.push(dir.join(".cargo/config.toml"));
        inputs.push(dir.join(".cargo/config"));
    }
    if let Some(home) = home {
        inputs.push(home.join("config.toml"));
        inputs.push(home.join("config"));
    }
    inputs.extend(invocation.cargo.as_ref().map(PathBuf::from));
    inputs.sort();
    inputs.dedup();
    inputs
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

/// Removes the least recently written entries beyond [`MAX_ENTRIES`].
fn prune(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<(SystemTime, PathBuf)> = entries
        .flatten()
        .filter(|e| e.file_name().to_str().is_some_and(|n| n.starts_with("metadata-")))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
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

    /// Sets the modification time of everything under `dir` (and `dir`) an hour back, as if
    /// the workspace had been written long before the run.
    fn backdate(dir: &Path) {
        let hour_ago = SystemTime::now() - Duration::from_secs(3600);
        let mut pending = vec![dir.to_path_buf()];
        while let Some(path) = pending.pop() {
            if path.is_dir() {
                pending.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
            }
            std::fs::File::open(&path)
                .unwrap()
                .set_modified(hour_ago)
                .unwrap();
        }
    }

    /// Reads the fixture with `cargo metadata` and keeps it in `cache`.
    fn read_and_store(cache: &Path, invocation: &Invocation) -> cargo_metadata::Metadata {
        let started = SystemTime::now();
        let metadata = super::super::run_metadata(invocation.manifest.as_deref()).unwrap();
        store(cache, invocation, &metadata, started);
        metadata
    }

    #[test]
    fn an_entry_holds_until_an_input_changes() {
        let workspace = tempfile::tempdir().unwrap();
        let root = workspace.path();
        super::super::write_fixture(root);
        std::fs::create_dir(root.join("api/tests/nested")).unwrap();
        backdate(root);
        let cache = tempfile::tempdir().unwrap();
        let invocation = Invocation::current(Some(&root.join("Cargo.toml"))).unwrap();
        let read = read_and_store(cache.path(), &invocation);
        let cached = lookup(cache.path(), &invocation).expect("an unchanged workspace is cached");
        assert_eq!(
            serde_json::to_value(&cached).unwrap(),
            serde_json::to_value(&read).unwrap(),
            "the cached metadata is what cargo said"
        );

        // Each change is seen; after each, the workspace is read and kept again.
        let changes: [(&str, &dyn Fn()); 5] = [
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
        ];
        for (change, make) in changes {
            make();
            assert!(lookup(cache.path(), &invocation).is_none(), "{change}: not seen");
            // Just changed: a second change in the same clock tick could keep the times,
            // so nothing is kept yet.
            read_and_store(cache.path(), &invocation);
            assert!(
                lookup(cache.path(), &invocation).is_none(),
                "{change}: kept at once"
            );
            backdate(root);
            let read = read_and_store(cache.path(), &invocation);
            let cached = lookup(cache.path(), &invocation).expect("kept again");
            assert_eq!(
                serde_json::to_value(&cached).unwrap(),
                serde_json::to_value(&read).unwrap()
            );
        }
        let cached = super::super::Workspace::from(lookup(cache.path(), &invocation).unwrap());
        let api = cached.packages.iter().find(|p| p.name.as_str() == "api").unwrap();
        let tests: Vec<&str> = api
            .targets
            .iter()
            .filter(|t| t.is_kind(cargo_metadata::TargetKind::Test))
            .map(|t| t.name.as_str())
            .collect();
        assert_eq!(tests.len(), 3, "{tests:?}");

        // Another invocation is another entry.
        let mut elsewhere = invocation.clone();
        elsewhere.env.push(("CARGO_TARGET_DIR".into(), "/nowhere".into()));
        assert!(lookup(cache.path(), &elsewhere).is_none());
        // A damaged entry is no entry.
        std::fs::write(cache.path().join(invocation.file_name()), "{").unwrap();
        assert!(lookup(cache.path(), &invocation).is_none());
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
        prune(cache.path());
        let left: Vec<String> = std::fs::read_dir(cache.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(left.len(), MAX_ENTRIES);
        for n in 0..3 {
            assert!(!left.contains(&format!("metadata-{n:016x}.json")), "{n} kept");
        }
    }
}
