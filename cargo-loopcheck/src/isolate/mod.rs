//! `cargo loopcheck test --isolate`: each test process in a private network namespace, with
//! its own loopback, so that fixed ports collide with nothing: not the host's services, not
//! other tests, not other copies of the suite.
//!
//! The hook is cargo's stable target runner: the runner gets `CARGO_TARGET_<TRIPLE>_RUNNER`
//! naming the hidden `cargo-loopcheck loopcheck __isolate`, which cargo test starts once per
//! test binary and nextest once per test (`wrapper.rs`). The pieces, one per file:
//! [`namespace`] (unshare, with a user namespace when unprivileged), `loopback.rs` (`lo` up),
//! `forward.rs` (`--isolate-allow`), [`chain`] (the runner the user had configured),
//! `cleanup.rs` (leftovers, ended), `record.rs` (run records and diagnoses in the namespace),
//! `pool.rs` (namespaces kept for the run, joined by each test), [`settings`] (flags and
//! `[workspace.metadata.loopcheck]`).

pub(crate) mod chain;
#[cfg(target_os = "linux")]
mod cleanup;
#[cfg(target_os = "linux")]
mod forward;
#[cfg(target_os = "linux")]
mod loopback;
pub(crate) mod namespace;
mod pool;
#[cfg(target_os = "linux")]
mod record;
pub(crate) mod settings;
#[cfg(target_os = "linux")]
mod wrapper;

use std::ffi::OsString;
use std::process::{Command, Stdio};

pub(crate) use namespace::Unavailable;
pub(crate) use pool::Pool;
pub(crate) use settings::{CONFIG_VAR, Config, Metadata};

use crate::cli::{Common, IsolateArgs, Isolation};
use crate::error::{Error, Result};

/// Whether isolation works on this host, for this user: how it would isolate, or why not.
/// Asked of a fresh `cargo-loopcheck` process, since only a single-threaded process may
/// create a user namespace, and the namespace must not be this process's.
pub(crate) fn available() -> std::result::Result<String, Unavailable> {
    answer(start_check())
}

/// Starts the check of [`available`], which runs while this process does other work.
fn start_check() -> std::result::Result<std::process::Child, Unavailable> {
    if cfg!(not(target_os = "linux")) {
        return Err(namespace::enter()
            .err()
            .unwrap_or_else(|| Unavailable::new("unsupported", "use Linux")));
    }
    let exe = std::env::current_exe().map_err(|err| {
        Unavailable::new(
            format!("the path of cargo-loopcheck is unknown ({err})"),
            "run cargo-loopcheck from an installed path",
        )
    })?;
    Command::new(&exe)
        .args(["loopcheck", "__isolate", "--check"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|err| {
            Unavailable::new(
                format!("`{}` cannot be started ({err})", exe.display()),
                "reinstall cargo-loopcheck",
            )
        })
}

/// The answer of a check started with [`start_check`].
fn answer(
    check: std::result::Result<std::process::Child, Unavailable>,
) -> std::result::Result<String, Unavailable> {
    let output = check?.wait_with_output().map_err(|err| {
        Unavailable::new(
            format!("the isolation check did not finish ({err})"),
            "see `cargo loopcheck doctor`",
        )
    })?;
    parse_answer(&output.stdout, output.status.success())
}

/// The JSON line of `__isolate --check` (or `--hold`): how isolation works, or why not.
fn parse_answer(line: &[u8], success: bool) -> std::result::Result<String, Unavailable> {
    let answer: serde_json::Value = serde_json::from_slice(line).unwrap_or_default();
    if let Some(how) = answer["available"].as_str().filter(|_| success) {
        return Ok(how.to_owned());
    }
    Err(Unavailable::new(
        answer["why"].as_str().unwrap_or("the isolation check failed"),
        answer["fix"].as_str().unwrap_or("see `cargo loopcheck doctor`"),
    ))
}

/// An isolated run's setup: the runner's environment, and the namespaces kept for the run
/// (ended when this is dropped, after the run).
#[derive(Debug)]
pub(crate) struct IsolatedRun {
    /// Variables for the runner: the target runner and [`CONFIG_VAR`].
    pub env: Vec<(OsString, OsString)>,
    /// The holders of the run's namespaces.
    #[expect(
        dead_code,
        reason = "never read: held so that its drop ends the namespaces after the run"
    )]
    pub pool: Pool,
}

/// The setup of an isolated run, or `None` when isolation was not asked for, or is
/// unavailable and not required (then with a warning on stderr). `copies` is `--concurrent`:
/// the namespaces kept are enough for every test that runs at once.
///
/// # Errors
///
/// [`Error::Isolation`] (exit 3) when `--isolate=require` and isolation is unavailable;
/// [`Error::Usage`] for bad `isolate-*` settings in the manifest.
pub(crate) fn plan(
    common: &Common,
    args: &IsolateArgs,
    runner_args: &[OsString],
    nextest: bool,
    copies: u32,
) -> Result<Option<IsolatedRun>> {
    let Some(isolation) = args.isolate else {
        return Ok(None);
    };
    let unavailable = |unavailable: Unavailable| {
        if isolation == Isolation::Require {
            return Err(Error::Isolation(unavailable));
        }
        eprintln!(
            "warning: {unavailable}; the tests run without isolation (--isolate=require makes this an error)"
        );
        Ok(None)
    };
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(err) => {
            return unavailable(Unavailable::new(
                format!("the path of cargo-loopcheck is unknown ({err})"),
                "run cargo-loopcheck from an installed path",
            ));
        }
    };
    // cargo splits the variable's value at whitespace.
    let shown = exe.to_string_lossy().into_owned();
    #[cfg(not(target_os = "linux"))]
    if let Err(reason) = namespace::enter() {
        return unavailable(reason);
    }
    if shown.contains(char::is_whitespace) {
        return unavailable(Unavailable::new(
            format!(
                "the path of cargo-loopcheck, `{shown}`, contains whitespace, which a target runner cannot"
            ),
            "install cargo-loopcheck under a path without spaces (`cargo install --root DIR`)",
        ));
    }
    // The holders of the run's namespaces enter them while the settings are read, and their
    // answer is the availability check.
    let slots = if nextest { test_threads(runner_args) } else { 1 } * copies as usize;
    let pool = Pool::start(&exe, slots.min(MAX_SLOTS));
    let metadata = Metadata::load(common.manifest_path.as_deref())?;
    let cwd = std::env::current_dir().unwrap_or_default();
    let configs = chain::config_files(&cwd);
    // cargo's cache of `rustc -vV` names the host without the 30-150 ms of asking rustc.
    let mut target_dirs: Vec<std::path::PathBuf> = std::env::var_os("CARGO_TARGET_DIR")
        .map(Into::into)
        .into_iter()
        .collect();
    target_dirs.extend(chain::configured_target_dir(&configs));
    target_dirs
        .extend(settings::workspace_root(common.manifest_path.as_deref()).map(|root| root.join("target")));
    let triple = chain::target_triple(runner_args, &configs, &target_dirs);
    let (pool, how) = match pool.and_then(|mut pool| pool.ready().map(|how| (pool, how))) {
        Ok(ready) => ready,
        Err(reason) => return unavailable(reason),
    };

    let Some(triple) = triple else {
        return Err(Error::Usage(
            "cannot tell the target the tests are built for: `rustc -vV` names no host; pass --target".into(),
        ));
    };
    let var = chain::runner_var(&triple);
    let runner = chain::user_runner(&triple, &configs).unwrap_or_default();
    let mut allow = metadata.allow;
    allow.extend(&args.isolate_allow);
    allow.sort_unstable();
    allow.dedup();
    let mut exclude = metadata.exclude;
    exclude.extend(args.isolate_exclude.iter().cloned());
    let config = Config {
        allow,
        exclude,
        runner: runner.clone(),
        runner_var: Some(var.clone()),
        runner_var_value: std::env::var(&var).ok(),
        pool: pool.pids(),
    };
    let per = if nextest {
        "each test in a network namespace of its own"
    } else {
        "each test binary in a network namespace of its own (cargo test runs a binary's tests in one process; under nextest each test gets its own)"
    };
    let chained = if runner.is_empty() {
        String::new()
    } else {
        format!(", through your runner `{}`", runner.join(" "))
    };
    eprintln!("note: --isolate: {per}, {how}{chained}");
    let json = serde_json::to_string(&config).map_err(|e| Error::Usage(e.to_string()))?;
    Ok(Some(IsolatedRun {
        env: vec![
            (var.into(), format!("{shown} loopcheck __isolate").into()),
            (CONFIG_VAR.into(), json.into()),
        ],
        pool,
    }))
}

/// At most this many namespaces are kept; tests beyond them get fresh ones.
const MAX_SLOTS: usize = 64;

/// How many tests nextest runs at once: `-j N`/`--test-threads N` in the runner's arguments,
/// else `NEXTEST_TEST_THREADS`, else one per CPU, as nextest's default is.
fn test_threads(args: &[OsString]) -> usize {
    let mut args = args.iter().map(|a| a.to_string_lossy()).take_while(|a| a != "--");
    let mut given = None;
    while let Some(arg) = args.next() {
        let value = match arg.as_ref() {
            "-j" | "--test-threads" => args.next().map(|v| v.into_owned()),
            other => other
                .strip_prefix("--test-threads=")
                .or_else(|| other.strip_prefix("-j"))
                .map(str::to_owned),
        };
        if let Some(value) = value {
            given = Some(value);
        }
    }
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    given
        .or_else(|| std::env::var("NEXTEST_TEST_THREADS").ok())
        .and_then(|v| v.trim_start_matches('=').parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or(cpus)
}

/// Runs the hidden `__isolate` subcommand: `--check`, `--hold`, or the wrapper of `command`.
pub(crate) fn run_hidden(check: bool, hold: bool, command: &[OsString]) -> u8 {
    #[cfg(target_os = "linux")]
    {
        if check {
            wrapper::check()
        } else if hold {
            pool::hold()
        } else {
            wrapper::run(command)
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = command;
        if let Err(unavailable) = namespace::enter() {
            eprintln!("error: {unavailable}");
        }
        let _ = (check, hold);
        crate::Exit::COULD_NOT_RUN
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_threads_are_read_from_the_arguments() {
        let args = |list: &[&str]| list.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(test_threads(&args(&["-j", "5"])), 5);
        assert_eq!(test_threads(&args(&["--test-threads=3", "-p", "x"])), 3);
        assert_eq!(test_threads(&args(&["-j7"])), 7);
        // After `--`, arguments are the test binaries'.
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        if std::env::var_os("NEXTEST_TEST_THREADS").is_none() {
            assert_eq!(test_threads(&args(&["--", "-j", "9"])), cpus);
            assert_eq!(test_threads(&args(&["-j", "num-cpus"])), cpus);
        }
    }
}
