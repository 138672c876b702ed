//! The workspace, as `cargo metadata` describes it.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

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
    /// when set, as cargo sets it for subcommands.
    pub fn load(manifest_path: Option<&Path>) -> Result<Workspace> {
        let mut command = cargo_metadata::MetadataCommand::new();
        command.no_deps();
        if let Some(path) = manifest_path {
            command.manifest_path(path);
        }
        let metadata = command.exec().map_err(|source| match source {
            cargo_metadata::Error::Io(io) if io.kind() == std::io::ErrorKind::NotFound => Error::Spawn {
                program: std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()),
                source: io,
            },
            source => Error::Metadata {
                manifest: manifest_path.map(Path::to_path_buf),
                source,
            },
        })?;
        let members: Vec<cargo_metadata::Package> =
            metadata.workspace_packages().into_iter().cloned().collect();
        Ok(Workspace {
            root: metadata.workspace_root.into_std_path_buf(),
            target_dir: metadata.target_directory.into_std_path_buf(),
            packages: members,
            metadata: metadata.workspace_metadata,
        })
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

    /// The package whose test binary `exe` is, by the binary's name (`deps/NAME-HASH`).
    pub fn package_of_binary(&self, exe: &Path) -> Option<&str> {
        let exe = exe.strip_prefix(&self.target_dir).ok()?;
        let stem = exe.file_name()?.to_str()?.trim_end_matches(" (deleted)");
        let name = stem.rsplit_once('-').map_or(stem, |(name, _)| name);
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
