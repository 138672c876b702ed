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
