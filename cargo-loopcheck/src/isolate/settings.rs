//! What isolation lets through and leaves out: `--isolate-allow` and `--isolate-exclude`, and
//! `isolate-allow`/`isolate-exclude` in `[workspace.metadata.loopcheck]`; and how those
//! settings reach the wrapper of each test process (one environment variable, as JSON).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The environment variable that carries [`Config`] from `cargo loopcheck test` to the
/// wrapper of each test process.
pub(crate) const CONFIG_VAR: &str = "LOOPCHECK_ISOLATE";

/// The wrapper's settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Config {
    /// Host ports reachable from inside as `127.0.0.1:PORT` and `[::1]:PORT`.
    #[serde(default)]
    pub allow: Vec<u16>,
    /// Tests (or binaries) that run without isolation: substrings of `binary::test`.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// The runner the user configured, which runs the test binary inside the namespace.
    #[serde(default)]
    pub runner: Vec<String>,
    /// The runner variable cargo-loopcheck took over, and its value before (restored for the
    /// test, so that a `cargo` the test runs sees the user's setting).
    #[serde(default)]
    pub runner_var: Option<String>,
    /// The value `runner_var` had, if any.
    #[serde(default)]
    pub runner_var_value: Option<String>,
    /// The processes that hold the run's namespaces, for the wrappers to join.
    #[serde(default)]
    pub pool: Vec<u32>,
}

#[cfg_attr(
    not(target_os = "linux"),
    expect(
        dead_code,
        reason = "read by the target runner, which runs tests only on Linux"
    )
)]
impl Config {
    /// The settings in [`CONFIG_VAR`]; the defaults when it is unset or unreadable.
    pub(crate) fn from_env() -> Config {
        std::env::var(CONFIG_VAR)
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default()
    }

    /// The exclusion pattern that matches `test` of `binary`, if any: a substring of the
    /// test's name or of `binary::name`.
    pub(crate) fn excluded(&self, binary: &str, test: &str) -> Option<&str> {
        let qualified = format!("{binary}::{test}");
        self.exclude
            .iter()
            .find(|p| test.contains(p.as_str()) || qualified.contains(p.as_str()))
            .map(String::as_str)
    }
}

/// `isolate-allow` and `isolate-exclude` of `[workspace.metadata.loopcheck]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Metadata {
    /// `isolate-allow = [5432]`.
    pub allow: Vec<u16>,
    /// `isolate-exclude = ["db::"]`.
    pub exclude: Vec<String>,
}

impl Metadata {
    /// Reads the workspace manifest of `manifest_path` (else of the current directory)
    /// directly, without `cargo metadata`, which would delay the start of the tests.
    ///
    /// # Errors
    ///
    /// [`Error::Usage`] for a value of the wrong type; [`Error::Io`] for an unreadable
    /// manifest. No manifest at all is no error: cargo will say so.
    pub(crate) fn load(manifest_path: Option<&Path>) -> Result<Metadata> {
        let Some(manifest) = workspace_manifest(manifest_path) else {
            return Ok(Metadata::default());
        };
        let text = std::fs::read_to_string(&manifest).map_err(|source| Error::Io {
            action: "read",
            path: manifest.clone(),
            source,
        })?;
        // A malformed manifest is cargo's to report.
        let Ok(table) = text.parse::<toml::Table>() else {
            return Ok(Metadata::default());
        };
        Metadata::from_manifest(&table)
    }

    /// The keys of a parsed workspace manifest.
    ///
    /// # Errors
    ///
    /// [`Error::Usage`] naming the key, for a value of the wrong type.
    pub(crate) fn from_manifest(table: &toml::Table) -> Result<Metadata> {
        let settings = table
            .get("workspace")
            .and_then(|w| w.get("metadata"))
            .and_then(|m| m.get("loopcheck"));
        let mut metadata = Metadata::default();
        let Some(settings) = settings else {
            return Ok(metadata);
        };
        let bad = |key: &str, expected: &str| {
            Error::Usage(format!(
                "`{key}` in [workspace.metadata.loopcheck] must be {expected}"
            ))
        };
        if let Some(value) = settings.get("isolate-allow") {
            let items = value
                .as_array()
                .ok_or_else(|| bad("isolate-allow", "a list of ports"))?;
            for item in items {
                let port = item
                    .as_integer()
                    .and_then(|p| u16::try_from(p).ok())
                    .filter(|&p| p != 0)
                    .ok_or_else(|| bad("isolate-allow", "a list of ports from 1 to 65535"))?;
                metadata.allow.push(port);
            }
        }
        if let Some(value) = settings.get("isolate-exclude") {
            let items = value
                .as_array()
                .ok_or_else(|| bad("isolate-exclude", "a list of strings"))?;
            for item in items {
                let pattern = item
                    .as_str()
                    .filter(|p| !p.is_empty())
                    .ok_or_else(|| bad("isolate-exclude", "a list of non-empty strings"))?;
                metadata.exclude.push(pattern.to_owned());
            }
        }
        Ok(metadata)
    }
}

/// The directory of the workspace's root manifest, found as [`Metadata::load`] finds it.
pub(crate) fn workspace_root(manifest_path: Option<&Path>) -> Option<PathBuf> {
    workspace_manifest(manifest_path)?.parent().map(Path::to_path_buf)
}

/// The manifest that holds `[workspace]`: `manifest_path` or the nearest `Cargo.toml` of the
/// current directory, else the nearest of their parents with a `[workspace]` table.
fn workspace_manifest(manifest_path: Option<&Path>) -> Option<PathBuf> {
    let start = match manifest_path {
        Some(path) => std::path::absolute(path).ok()?,
        None => std::env::current_dir().ok()?.join("Cargo.toml"),
    };
    let mut nearest = None;
    for dir in start.parent()?.ancestors() {
        let candidate = dir.join("Cargo.toml");
        let Ok(text) = std::fs::read_to_string(&candidate) else {
            continue;
        };
        nearest.get_or_insert_with(|| candidate.clone());
        if text
            .parse::<toml::Table>()
            .is_ok_and(|t| t.contains_key("workspace"))
        {
            return Some(candidate);
        }
    }
    nearest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_keys_are_read_and_checked() {
        let table: toml::Table = "[workspace.metadata.loopcheck]\nisolate-allow = [5432, 6379]\nisolate-exclude = ['db::']\nallow = ['LC010']\n"
            .parse()
            .unwrap();
        let metadata = Metadata::from_manifest(&table).unwrap();
        assert_eq!(metadata.allow, [5432, 6379]);
        assert_eq!(metadata.exclude, ["db::"]);
        for bad in [
            "isolate-allow = 5432",
            "isolate-allow = [0]",
            "isolate-allow = [70000]",
            "isolate-exclude = [1]",
            "isolate-exclude = ['']",
        ] {
            let table: toml::Table = format!("[workspace.metadata.loopcheck]\n{bad}\n")
                .parse()
                .unwrap();
            let error = Metadata::from_manifest(&table).unwrap_err().to_string();
            assert!(error.contains("[workspace.metadata.loopcheck]"), "{bad}: {error}");
        }
        assert_eq!(
            Metadata::from_manifest(&toml::Table::new()).unwrap(),
            Metadata::default()
        );
    }

    #[test]
    fn the_workspace_manifest_is_found_above_a_member() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("member")).unwrap();
        std::fs::write(
            dir.path().join("Cargo.toml"),
            "[workspace]\nmembers = ['member']\n[workspace.metadata.loopcheck]\nisolate-allow = [5432]\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("member/Cargo.toml"),
            "[package]\nname = 'member'\n",
        )
        .unwrap();
        let metadata = Metadata::load(Some(&dir.path().join("member/Cargo.toml"))).unwrap();
        assert_eq!(metadata.allow, [5432]);
    }

    #[test]
    fn exclusion_matches_the_test_name_or_the_qualified_name() {
        let config = Config {
            exclude: vec!["db::".into(), "suite::slow".into()],
            ..Config::default()
        };
        assert_eq!(config.excluded("suite::api", "db::connects"), Some("db::"));
        assert_eq!(config.excluded("suite::slow", "anything"), Some("suite::slow"));
        assert_eq!(config.excluded("suite::api", "net::binds"), None);
    }
}
