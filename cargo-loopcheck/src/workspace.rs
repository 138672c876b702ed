//! The workspace, as `cargo metadata` describes it.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

mod cache;

/// What loopcheck needs to know about a workspace.
#[derive(Debug, Clone)]
pub struct Workspace {
    /// The workspace root.
    pub root: PathBuf,
    /// The target directory.
    pub target_dir: PathBuf,
    /// The workspace's own packages.
    pub packages: Vec<cargo_metadata::Package>,
    /// `[workspace.metadata]`.
    pub metadata: serde_json::Value,
}

impl Workspace {
    /// Reads the workspace of `manifest_path`, or of the current directory. Uses `$CARGO`
    /// when set, as cargo sets it for subcommands. An unchanged workspace is read from the
    /// cache of an earlier run (see [`cache`]).
    pub fn load(manifest_path: Option<&Path>) -> Result<Workspace> {
        let cached = cache_dir().zip(cache::Invocation::current(manifest_path));
        if let Some((dir, invocation)) = &cached
            && let Some(metadata) = cache::lookup(dir, invocation)
        {
            return Ok(Workspace::from(metadata));
        }
        let started = std::time::SystemTime::now();
        let metadata = run_metadata(manifest_path)?;
        if let Some((dir, invocation)) = &cached {
            cache::store(dir, invocation, &metadata, started);
        }
        Ok(Workspace::from(metadata))
    }

    /// What `exe` is to this workspace, in words: a target's test binary (`deps/NAME-HASH`)
    /// is the `test binary of `PACKAGE``; a `bin` target (`debug/server`) is `the workspace's
    /// binary `server``, and an example `the workspace's example `NAME``, of their package.
    pub fn describe_binary(&self, exe: &Path) -> Option<String> {
        let package = self.package_of_binary(exe)?;
        let relative = exe.strip_prefix(&self.target_dir).ok()?;
        let name = relative.file_name()?.to_str()?.trim_end_matches(" (deleted)");
        let name = name.strip_suffix(".exe").unwrap_or(name);
        let dir = relative
            .parent()
            .and_then(Path::file_name)
            .and_then(|d| d.to_str());
        let target_of = |kind: cargo_metadata::TargetKind| {
            self.packages
                .iter()
                .filter(|p| p.name.as_str() == package)
                .flat_map(|p| &p.targets)
                .find(|t| t.is_kind(kind.clone()) && t.name == name)
        };
        Some(match dir {
            Some("examples") if target_of(cargo_metadata::TargetKind::Example).is_some() => {
                format!("the workspace's example `{name}` of `{package}`")
            }
            Some("deps") | None => format!("test binary of `{package}`"),
            Some(_) if target_of(cargo_metadata::TargetKind::Bin).is_some() => {
                format!("the workspace's binary `{name}` of `{package}`")
            }
            Some(_) => format!("a binary of `{package}`"),
        })
    }

    /// The package that built `exe`: a test binary (`deps/NAME-HASH`, cargo's 16 hex digits
    /// of hash after the crate name), a `bin` target (`debug/dev-server`, named as the target,
    /// hyphens and all) or an example.
    pub fn package_of_binary(&self, exe: &Path) -> Option<&str> {
        let exe = exe.strip_prefix(&self.target_dir).ok()?;
        let name = binary_target_name(exe)?;
        self.packages.iter().find_map(|package| {
            let owns = package
                .targets
                .iter()
                .any(|t| t.name.replace('-', "_") == name.replace('-', "_"))
                || package.name.replace('-', "_") == name.replace('-', "_");
            owns.then_some(package.name.as_str())
        })
    }
}

impl From<cargo_metadata::Metadata> for Workspace {
    fn from(metadata: cargo_metadata::Metadata) -> Workspace {
        let members: Vec<cargo_metadata::Package> =
            metadata.workspace_packages().into_iter().cloned().collect();
        Workspace {
            root: metadata.workspace_root.into_std_path_buf(),
            target_dir: metadata.target_directory.into_std_path_buf(),
            packages: members,
            metadata: metadata.workspace_metadata,
        }
    }
}

/// `cargo metadata --no-deps` for `manifest_path`.
fn run_metadata(manifest_path: Option<&Path>) -> Result<cargo_metadata::Metadata> {
    let mut command = cargo_metadata::MetadataCommand::new();
    command.no_deps();
    if let Some(path) = manifest_path {
        command.manifest_path(path);
    }
    command.exec().map_err(|source| match source {
        cargo_metadata::Error::Io(io) if io.kind() == std::io::ErrorKind::NotFound => Error::Spawn {
            program: std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()),
            source: io,
        },
        source => Error::Metadata {
            manifest: manifest_path.map(Path::to_path_buf),
            source,
        },
    })
}

/// The metadata cache's directory, `cache` in the lease registry, created private; `None`
/// (no cache) when it cannot be, or is not this user's alone.
fn cache_dir() -> Option<PathBuf> {
    let dir = loopcheck::lease::checked_registry_dir().ok()?.join("cache");
    loopcheck::sys::create_private_dir(&dir).ok()?;
    is_private(&dir).then_some(dir)
}

/// Whether `dir` is a directory (not a link to one) of this user that no one else can use.
#[cfg(unix)]
fn is_private(dir: &Path) -> bool {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    std::fs::symlink_metadata(dir).is_ok_and(|meta| {
        meta.is_dir()
            && Some(meta.uid()) == loopcheck::sys::current_uid()
            && meta.permissions().mode() & 0o077 == 0
    })
}

/// No owner and mode to check here: the cache is not used.
#[cfg(not(unix))]
fn is_private(_dir: &Path) -> bool {
    false
}

/// The target name in a binary's path under the target directory: the file name, without
/// `.exe` and, under `deps/` only, without the `-HASH` cargo appends there. A `bin` target
/// keeps its name whole: `dev-server` is not `dev` with a hash.
fn binary_target_name(exe: &Path) -> Option<&str> {
    let file = exe.file_name()?.to_str()?.trim_end_matches(" (deleted)");
    let file = file.strip_suffix(".exe").unwrap_or(file);
    let in_deps = exe
        .parent()
        .and_then(Path::file_name)
        .is_some_and(|dir| dir == "deps");
    let hashed = file
        .rsplit_once('-')
        .filter(|(_, hash)| hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()));
    Some(match hashed {
        Some((name, _)) if in_deps => name,
        _ => file,
    })
}

/// A workspace read by `cargo metadata` from a fixture: package `tools` with the bin target
/// `dev-server`, and package `api` with the test target `api-tests`.
#[cfg(test)]
pub(crate) fn fixture(dir: &Path) -> Workspace {
    write_fixture(dir);
    Workspace::load(Some(&dir.join("Cargo.toml"))).expect("cargo metadata reads the fixture")
}

/// Writes [`fixture`]'s files into `dir`.
#[cfg(test)]
fn write_fixture(dir: &Path) {
    let files = [
        (
            "Cargo.toml",
            "[workspace]\nmembers = [\"tools\", \"api\"]\nresolver = \"2\"\n",
        ),
        (
            "tools/Cargo.toml",
            "[package]\nname = \"tools\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[[bin]]\nname = \"dev-server\"\npath = \"src/main.rs\"\n",
        ),
        ("tools/src/main.rs", "fn main() {}\n"),
        (
            "api/Cargo.toml",
            "[package]\nname = \"api\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
        ),
        ("api/src/lib.rs", ""),
        ("api/tests/api-tests.rs", ""),
    ];
    for (file, text) in files {
        let path = dir.join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hyphenated_bins_and_hashed_test_binaries_name_their_package() {
        let dir = tempfile::tempdir().unwrap();
        let workspace = fixture(dir.path());
        let target = workspace.target_dir.clone();
        let of = |relative: &str| workspace.package_of_binary(&target.join(relative));
        assert_eq!(
            of("debug/dev-server"),
            Some("tools"),
            "a bin target with a hyphen"
        );
        assert_eq!(of("debug/dev-server.exe"), Some("tools"));
        assert_eq!(of("debug/deps/api_tests-0123456789abcdef"), Some("api"));
        assert_eq!(
            of("debug/deps/dev_server-fedcba9876543210 (deleted)"),
            Some("tools")
        );
        assert_eq!(of("debug/deps/api-0123456789abcdef"), Some("api"));
        // Only cargo's hash goes: `dev-server` under deps is not `dev`.
        assert_eq!(of("debug/deps/dev-server"), Some("tools"));
        assert_eq!(
            of("debug/dev-0123456789abcdef"),
            None,
            "outside deps, no hash is cut"
        );
        assert_eq!(
            workspace
                .describe_binary(&target.join("debug/dev-server"))
                .as_deref(),
            Some("the workspace's binary `dev-server` of `tools`")
        );
        assert_eq!(
            workspace
                .describe_binary(&target.join("debug/deps/api_tests-0123456789abcdef"))
                .as_deref(),
            Some("test binary of `api`")
        );
    }
}
