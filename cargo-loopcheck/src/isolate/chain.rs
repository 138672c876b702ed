//! The target runner hook: which environment variable makes cargo and nextest start each test
//! binary through `cargo-loopcheck`, and which runner the user had configured there already
//! (qemu, valgrind, a wrapper script), which the isolated test must still run under.
//!
//! `cargo config get` is unstable, so the runner is read the way cargo reads it: the variable
//! `CARGO_TARGET_<TRIPLE>_RUNNER`, else `target.<triple>.runner`, else a matching
//! `target.'cfg(..)'.runner`, from `.cargo/config.toml` (or `.cargo/config`) in the current
//! directory and each of its parents, then `$CARGO_HOME/config.toml`; the nearest file wins.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use toml::{Table, Value};

/// The target the tests are built for: `--target` in the runner's arguments, else
/// `build.target` of the configuration, else the host: as cargo cached it in a target
/// directory's `.rustc_info.json` (of the first of `target_dirs` that has one), else as
/// `rustc -vV` says.
pub(crate) fn target_triple(
    args: &[OsString],
    configs: &[ConfigFile],
    target_dirs: &[PathBuf],
) -> Option<String> {
    let mut args = args.iter().map(|a| a.to_string_lossy()).take_while(|a| a != "--");
    while let Some(arg) = args.next() {
        if arg == "--target" {
            return args.next().map(|t| t.into_owned());
        }
        if let Some(target) = arg.strip_prefix("--target=") {
            return Some(target.to_owned());
        }
    }
    configs
        .iter()
        .find_map(|c| c.table.get("build")?.get("target")?.as_str().map(str::to_owned))
        .or_else(|| target_dirs.iter().find_map(|dir| cached_host(dir)))
        .or_else(host_triple)
}

/// `build.target-dir` of the nearest configuration that sets it, resolved as cargo does:
/// from the directory that holds `.cargo`.
pub(crate) fn configured_target_dir(configs: &[ConfigFile]) -> Option<PathBuf> {
    configs.iter().find_map(|c| {
        let dir = c.table.get("build")?.get("target-dir")?.as_str()?;
        let base = c.path.parent()?.parent()?;
        Some(base.join(dir))
    })
}

/// The host in cargo's cache of `rustc -vV` under `target_dir`, when every entry there
/// agrees on it.
fn cached_host(target_dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(target_dir.join(".rustc_info.json")).ok()?;
    let info: serde_json::Value = serde_json::from_str(&text).ok()?;
    let mut hosts = info["outputs"]
        .as_object()?
        .values()
        .filter_map(|output| output["stdout"].as_str())
        .filter_map(|stdout| stdout.lines().find_map(|l| l.strip_prefix("host: ")));
    let host = hosts.next()?;
    hosts.all(|other| other == host).then(|| host.to_owned())
}

/// `CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER` for `x86_64-unknown-linux-gnu`.
pub(crate) fn runner_var(triple: &str) -> String {
    let upper: String = triple
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("CARGO_TARGET_{upper}_RUNNER")
}

/// One cargo configuration file and the directory its relative paths start from.
#[derive(Debug)]
pub(crate) struct ConfigFile {
    pub(crate) path: PathBuf,
    table: Table,
}

/// The configuration files cargo reads from `cwd`, nearest first. An unreadable or malformed
/// file is skipped with a warning: cargo will say more when it reads it.
pub(crate) fn config_files(cwd: &Path) -> Vec<ConfigFile> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    for dir in cwd.ancestors() {
        let dot_cargo = dir.join(".cargo");
        for name in ["config.toml", "config"] {
            let path = dot_cargo.join(name);
            if path.is_file() {
                candidates.push(path);
                break;
            }
        }
    }
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")));
    if let Some(home) = cargo_home {
        let path = home.join("config.toml");
        let seen = candidates
            .iter()
            .any(|c| same_file(c, &path) || same_file(c, &home.join("config")));
        if !seen && path.is_file() {
            candidates.push(path);
        }
    }
    candidates
        .into_iter()
        .filter_map(|path| {
            let text = std::fs::read_to_string(&path).ok()?;
            match text.parse::<Table>() {
                Ok(table) => Some(ConfigFile { path, table }),
                Err(err) => {
                    eprintln!(
                        "warning: cannot read the runner settings of {}: {err}",
                        path.display()
                    );
                    None
                }
            }
        })
        .collect()
}

fn same_file(a: &Path, b: &Path) -> bool {
    a.canonicalize()
        .ok()
        .is_some_and(|a| b.canonicalize().ok() == Some(a))
}

/// The runner the user configured for `triple`: the environment variable, else the nearest
/// configuration file's `target.<triple>.runner`, else its matching `cfg(..)` runner. `cfg`
/// values come from `rustc --print cfg`, asked only when a `cfg` runner exists.
pub(crate) fn user_runner(triple: &str, configs: &[ConfigFile]) -> Option<Vec<String>> {
    if let Some(value) = std::env::var_os(runner_var(triple)) {
        let words: Vec<String> = value
            .to_string_lossy()
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        return (!words.is_empty()).then_some(words);
    }
    for config in configs {
        if let Some(runner) = config
            .table
            .get("target")
            .and_then(|t| t.get(triple))
            .and_then(|t| t.get("runner"))
        {
            return program_and_args(runner, &config.path);
        }
    }
    let mut cfg: Option<Vec<String>> = None;
    for config in configs {
        let Some(Value::Table(targets)) = config.table.get("target") else {
            continue;
        };
        for (key, settings) in targets {
            let Some(expr) = key.strip_prefix("cfg(").and_then(|k| k.strip_suffix(')')) else {
                continue;
            };
            let Some(runner) = settings.get("runner") else {
                continue;
            };
            let values = cfg.get_or_insert_with(|| target_cfg(triple));
            if Cfg::parse(expr).is_some_and(|c| c.matches(values)) {
                return program_and_args(runner, &config.path);
            }
        }
    }
    None
}

/// A runner value: a string of words or an array. A program given as a path with a slash is
/// relative to the directory that holds the `.cargo` directory, as cargo resolves it.
fn program_and_args(value: &Value, config: &Path) -> Option<Vec<String>> {
    let mut words: Vec<String> = match value {
        Value::String(text) => text.split_whitespace().map(str::to_owned).collect(),
        Value::Array(items) => items
            .iter()
            .filter_map(|i| i.as_str().map(str::to_owned))
            .collect(),
        _ => return None,
    };
    let program = words.first_mut()?;
    if program.contains('/')
        && Path::new(program).is_relative()
        && let Some(base) = config.parent().and_then(Path::parent)
    {
        *program = base.join(&*program).to_string_lossy().into_owned();
    }
    Some(words)
}

fn rustc() -> Command {
    Command::new(std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into()))
}

/// The host triple, from `rustc -vV`.
fn host_triple() -> Option<String> {
    let output = rustc().arg("-vV").output().ok()?;
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|line| line.strip_prefix("host: ").map(str::to_owned))
}

/// `rustc --print cfg --target TRIPLE`: `unix`, `target_os="linux"`, ...
fn target_cfg(triple: &str) -> Vec<String> {
    rustc()
        .args(["--print", "cfg", "--target", triple])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// A `cfg(..)` predicate: `unix`, `target_os = "linux"`, `all(..)`, `any(..)`, `not(..)`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Cfg {
    Name(String),
    KeyValue(String, String),
    All(Vec<Cfg>),
    Any(Vec<Cfg>),
    Not(Box<Cfg>),
}

impl Cfg {
    /// Parses the inside of `cfg(..)`; `None` when malformed.
    pub(crate) fn parse(text: &str) -> Option<Cfg> {
        let (cfg, rest) = Cfg::parse_one(text.trim())?;
        rest.trim().is_empty().then_some(cfg)
    }

    fn parse_one(text: &str) -> Option<(Cfg, &str)> {
        let text = text.trim_start();
        let end = text
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(text.len());
        let (name, rest) = text.split_at(end);
        if name.is_empty() {
            return None;
        }
        let rest = rest.trim_start();
        if let Some(inner) = rest.strip_prefix('(') {
            let mut items = Vec::new();
            let mut rest = inner;
            loop {
                rest = rest.trim_start();
                if let Some(after) = rest.strip_prefix(')') {
                    rest = after;
                    break;
                }
                let (item, after) = Cfg::parse_one(rest)?;
                items.push(item);
                rest = after.trim_start();
                rest = rest.strip_prefix(',').unwrap_or(rest);
            }
            let cfg = match name {
                "all" => Cfg::All(items),
                "any" => Cfg::Any(items),
                "not" if items.len() == 1 => Cfg::Not(Box::new(items.pop()?)),
                _ => return None,
            };
            return Some((cfg, rest));
        }
        if let Some(value) = rest.strip_prefix('=') {
            let value = value.trim_start().strip_prefix('"')?;
            let close = value.find('"')?;
            return Some((
                Cfg::KeyValue(name.to_owned(), value[..close].to_owned()),
                &value[close + 1..],
            ));
        }
        Some((Cfg::Name(name.to_owned()), rest))
    }

    /// Whether the target with `values` (lines of `rustc --print cfg`) satisfies it.
    pub(crate) fn matches(&self, values: &[String]) -> bool {
        match self {
            Cfg::Name(name) => values.iter().any(|v| v == name),
            Cfg::KeyValue(key, value) => values.iter().any(|v| *v == format!("{key}=\"{value}\"")),
            Cfg::All(items) => items.iter().all(|c| c.matches(values)),
            Cfg::Any(items) => items.iter().any(|c| c.matches(values)),
            Cfg::Not(item) => !item.matches(values),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runner_variables_are_named_after_the_triple() {
        assert_eq!(
            runner_var("x86_64-unknown-linux-gnu"),
            "CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER"
        );
        assert_eq!(
            runner_var("thumbv7em-none-eabihf"),
            "CARGO_TARGET_THUMBV7EM_NONE_EABIHF_RUNNER"
        );
    }

    #[test]
    fn the_host_comes_from_cargos_cache_of_rustc_when_it_agrees() {
        let dir = tempfile::tempdir().unwrap();
        let write = |outputs: &str| {
            std::fs::write(
                dir.path().join(".rustc_info.json"),
                format!(r#"{{"rustc_fingerprint":1,"outputs":{{{outputs}}},"successes":{{}}}}"#),
            )
            .unwrap();
        };
        write(
            r#""1":{"success":true,"status":"","code":0,"stdout":"rustc 1.95.0\nhost: x86_64-unknown-linux-gnu\n","stderr":""},"2":{"success":true,"status":"","code":0,"stdout":"___\n","stderr":""}"#,
        );
        assert_eq!(
            cached_host(dir.path()).as_deref(),
            Some("x86_64-unknown-linux-gnu")
        );
        assert_eq!(
            target_triple(&[], &[], &[dir.path().join("missing"), dir.path().to_path_buf()]).as_deref(),
            Some("x86_64-unknown-linux-gnu")
        );
        write(r#""1":{"stdout":"host: a-b-c\n"},"2":{"stdout":"host: x-y-z\n"}"#);
        assert_eq!(cached_host(dir.path()), None);
    }

    #[test]
    fn cfg_predicates_parse_and_match() {
        let linux: Vec<String> = ["unix", "target_os=\"linux\"", "target_arch=\"x86_64\""]
            .map(str::to_owned)
            .to_vec();
        for (text, expected) in [
            ("unix", true),
            ("windows", false),
            ("target_os = \"linux\"", true),
            ("target_os=\"macos\"", false),
            ("all(unix, target_arch = \"x86_64\")", true),
            ("any(windows, not(unix))", false),
            ("not(windows)", true),
            ("all()", true),
        ] {
            let cfg = Cfg::parse(text).unwrap_or_else(|| panic!("{text} parses"));
            assert_eq!(cfg.matches(&linux), expected, "{text}");
        }
        for bad in ["", "all(unix", "target_os = linux", "nope(unix)", "unix unix"] {
            assert_eq!(Cfg::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_nearest_config_file_names_the_runner_and_relative_programs_are_resolved() {
        let dir = tempfile::tempdir().unwrap();
        let inner = dir.path().join("ws/crate");
        std::fs::create_dir_all(inner.join(".cargo")).unwrap();
        std::fs::create_dir_all(dir.path().join("ws/.cargo")).unwrap();
        std::fs::write(
            inner.join(".cargo/config.toml"),
            "[target.'cfg(all())']\nrunner = ['./tools/run.sh', '--fast']\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("ws/.cargo/config.toml"),
            "[target.my-triple]\nrunner = 'qemu-x86_64 -L /sysroot'\n[build]\ntarget = 'my-triple'\n",
        )
        .unwrap();
        let configs: Vec<ConfigFile> = config_files(&inner)
            .into_iter()
            .filter(|c| c.path.starts_with(dir.path()))
            .collect();
        assert_eq!(configs.len(), 2);
        assert_eq!(target_triple(&[], &configs, &[]).as_deref(), Some("my-triple"));
        let args = ["--target".into(), "other".into()];
        assert_eq!(target_triple(&args, &configs, &[]).as_deref(), Some("other"));
        // A triple's own runner wins over a cfg runner, even in a farther file.
        assert_eq!(
            user_runner("my-triple", &configs).unwrap(),
            ["qemu-x86_64", "-L", "/sysroot"]
        );
        assert_eq!(
            program_and_args(
                &Value::Array(vec!["./tools/run.sh".into()]),
                &inner.join(".cargo/config.toml")
            )
            .unwrap(),
            [inner.join("./tools/run.sh").to_string_lossy()]
        );
    }
}
