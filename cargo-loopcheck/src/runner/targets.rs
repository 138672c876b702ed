//! The workspace's test targets, and which of them a test binary, a cargo `Running` line or a
//! timeline owner is.

use std::path::{Path, PathBuf};

use cargo_metadata::TargetKind;

use super::libtest::BinaryLine;
use super::timeline::Owner;
use crate::workspace::Workspace;

/// A test target of the workspace.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// Its id as nextest names it: `demo`, `demo::echo`, `demo::bin/server`.
    pub(crate) id: String,
    /// Its crate name: the first segment of `module_path!()` in it.
    pub(crate) crate_name: String,
    /// Its root source file.
    pub(crate) src_path: PathBuf,
}

/// The workspace's test targets, and the root cargo's relative paths start from.
pub(crate) struct Targets {
    targets: Vec<Target>,
    root: PathBuf,
}

impl Targets {
    pub(crate) fn new(workspace: &Workspace) -> Targets {
        let mut targets = Vec::new();
        for package in &workspace.packages {
            for target in &package.targets {
                let kind = |k: TargetKind| target.is_kind(k);
                let id = if kind(TargetKind::Lib) || kind(TargetKind::ProcMacro) || target.is_lib() {
                    package.name.to_string()
                } else if kind(TargetKind::Test) {
                    format!("{}::{}", package.name, target.name)
                } else if kind(TargetKind::Bin) {
                    format!("{}::bin/{}", package.name, target.name)
                } else if kind(TargetKind::Bench) {
                    format!("{}::bench/{}", package.name, target.name)
                } else if kind(TargetKind::Example) {
                    format!("{}::example/{}", package.name, target.name)
                } else {
                    continue;
                };
                targets.push(Target {
                    id,
                    crate_name: target.name.replace('-', "_"),
                    src_path: target.src_path.clone().into_std_path_buf(),
                });
            }
        }
        Targets {
            targets,
            root: workspace.root.clone(),
        }
    }

    pub(crate) fn by_id(&self, id: &str) -> Option<&Target> {
        self.targets.iter().find(|t| t.id == id)
    }

    /// The id of the test binary a timeline owner is or was started by.
    pub(crate) fn binary_of(&self, owner: &Owner) -> Option<String> {
        if let Some(id) = &owner.binary_id {
            return Some(id.clone());
        }
        let exe = owner.test_exe.as_deref()?.to_string_lossy().into_owned();
        let line = BinaryLine {
            source: String::new(),
            exe: Some(exe.trim_end_matches(" (deleted)").to_owned()),
            doctests: false,
        };
        Some(self.id_of(&line))
    }

    /// The id of the binary cargo announced with `line`: the target whose crate name is the
    /// executable's (`echo-9a8b` is `echo`) and whose source ends with the path cargo shows.
    /// Two packages with a `tests/api.rs` each are told apart by the executable's dep-info
    /// file, which lists its sources.
    pub(crate) fn id_of(&self, line: &BinaryLine) -> String {
        if line.doctests {
            // cargo names doctests by crate (`my_lib`); ids name packages (`my-lib`).
            let package = self
                .targets
                .iter()
                .find(|t| t.crate_name == line.source && !t.id.contains("::"))
                .map_or(line.source.as_str(), |t| t.id.as_str());
            return format!("{package}::doctests");
        }
        let exe = line.exe.as_deref().map(Path::new);
        let stem = exe
            .and_then(|exe| exe.file_name()?.to_str())
            .map(|name| name.rsplit_once('-').map_or(name, |(crate_name, _)| crate_name));
        let source = Path::new(&line.source);
        let candidates: Vec<&Target> = self
            .targets
            .iter()
            .filter(|t| line.source.is_empty() || t.src_path.ends_with(source))
            .filter(|t| stem.is_none_or(|stem| stem == t.crate_name))
            .collect();
        let chosen = match candidates.as_slice() {
            [] => None,
            [only] => Some(*only),
            several => {
                let dep_info = exe
                    .map(|exe| self.root.join(exe).with_extension("d"))
                    .and_then(|path| std::fs::read_to_string(path).ok())
                    .unwrap_or_default();
                several
                    .iter()
                    .find(|t| dep_info.contains(&*t.src_path.to_string_lossy()))
                    .or(several.first())
                    .copied()
            }
        };
        match chosen {
            Some(target) => target.id.clone(),
            None if !line.source.is_empty() => line.source.clone(),
            None => stem.unwrap_or_default().to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binaries_of_the_same_name_in_two_packages_are_told_apart_by_dep_info() {
        let dir = tempfile::tempdir().unwrap();
        let target = |id: &str, src: &str| Target {
            id: id.to_owned(),
            crate_name: "api".to_owned(),
            src_path: PathBuf::from(src),
        };
        let targets = Targets {
            targets: vec![
                target("a::api", "/w/a/tests/api.rs"),
                target("b::api", "/w/b/tests/api.rs"),
            ],
            root: dir.path().to_path_buf(),
        };
        std::fs::create_dir_all(dir.path().join("target/debug/deps")).unwrap();
        std::fs::write(
            dir.path().join("target/debug/deps/api-2.d"),
            "/t/deps/api-2: /w/b/tests/api.rs\n",
        )
        .unwrap();
        let line = |exe: &str, source: &str| BinaryLine {
            source: source.to_owned(),
            exe: Some(exe.to_owned()),
            doctests: false,
        };
        assert_eq!(
            targets.id_of(&line("target/debug/deps/api-2", "tests/api.rs")),
            "b::api"
        );
        assert_eq!(
            targets.id_of(&line("target/debug/deps/api-1", "tests/api.rs")),
            "a::api"
        );
        // `cargo test -v` shows no source: the executable decides.
        let verbose = line(&dir.path().join("target/debug/deps/api-2").to_string_lossy(), "");
        assert_eq!(targets.id_of(&verbose), "b::api");
        assert_eq!(
            targets.id_of(&line("target/debug/deps/other-1", "tests/other.rs")),
            "tests/other.rs"
        );
        let lib = Targets {
            targets: vec![Target {
                id: "my-lib".to_owned(),
                crate_name: "my_lib".to_owned(),
                src_path: PathBuf::from("/w/src/lib.rs"),
            }],
            root: dir.path().to_path_buf(),
        };
        let doctests = BinaryLine {
            source: "my_lib".to_owned(),
            exe: None,
            doctests: true,
        };
        assert_eq!(lib.id_of(&doctests), "my-lib::doctests");
    }
}
