//! Starting the runner and capturing what it prints.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use loopcheck::lease::{RUN_DIR_VAR, TEST_VAR};

use super::model::RunnerKind;
use super::signals;
use crate::error::{Error, Result};

/// How often the runner's output is copied to stderr while it runs.
const ECHO_INTERVAL: Duration = signals::POLL;

/// What a finished runner printed and how it exited.
pub(crate) struct RunOutput {
    pub(crate) status: ExitStatus,
    /// stdout and stderr, interleaved as written.
    pub(crate) output: String,
    /// The signal that stopped the run (passed on to the runner), if one came.
    pub(crate) stopped: Option<signals::Stop>,
}

/// The command line shared by the build and the runs.
#[derive(Debug, Clone)]
pub(crate) struct Invocation {
    /// `$CARGO`, else `cargo`.
    pub(crate) cargo: OsString,
    pub(crate) runner: RunnerKind,
    pub(crate) manifest_path: Option<PathBuf>,
    pub(crate) color: bool,
    /// The user's arguments, passed through.
    pub(crate) args: Vec<OsString>,
    /// Variables for the runner: `--isolate`'s target runner.
    pub(crate) env: Vec<(OsString, OsString)>,
}

impl Invocation {
    /// `cargo test --no-run ARGS` or `cargo nextest run ... ARGS`; `own` are this tool's
    /// flags for the runner, which go before the user's (after a `--`, nextest takes only
    /// test-binary arguments).
    pub(crate) fn command(&self, no_run: bool, own: &[OsString]) -> Command {
        let mut command = Command::new(&self.cargo);
        match self.runner {
            RunnerKind::Nextest => command.args(["nextest", "run"]),
            RunnerKind::CargoTest => command.arg("test"),
        };
        if no_run {
            command.arg("--no-run");
        }
        let given = |flag: &str| {
            self.args
                .iter()
                .take_while(|a| *a != "--")
                .any(|a| a == flag || a.to_string_lossy().starts_with(&format!("{flag}=")))
        };
        if let Some(path) = &self.manifest_path
            && !given("--manifest-path")
        {
            command.arg("--manifest-path").arg(path);
        }
        // A run that explains failures explains all of them: the runners stop at the first
        // failing binary (cargo test) or test (nextest) by default.
        let fail_fast_given = ["--no-fail-fast", "--fail-fast", "--nff", "--ff", "--max-fail"]
            .iter()
            .any(|flag| given(flag));
        if !no_run && !fail_fast_given {
            command.arg("--no-fail-fast");
        }
        if !given("--color") {
            command.args(["--color", if self.color { "always" } else { "never" }]);
        }
        command.args(own);
        command.args(self.runner_args());
        if self.runner == RunnerKind::CargoTest {
            // cargo names the binaries it runs only when it is not quiet, whatever the config.
            command.env("CARGO_TERM_QUIET", "false");
        }
        command.env_remove(TEST_VAR).env_remove(RUN_DIR_VAR);
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        // Inside a nextest test (this tool's own suite, or a user's) the outer run's variables
        // would make the inner one believe each test has its own process.
        if std::env::var_os("NEXTEST_RUN_ID").is_some() {
            for (key, _) in std::env::vars_os() {
                if key.to_string_lossy().starts_with("NEXTEST") {
                    command.env_remove(key);
                }
            }
        }
        command
    }

    /// The user's arguments as the runner gets them. cargo test loses `-q`/`--quiet`, before
    /// `--` (without them cargo names each binary it runs, which is how results are tied to
    /// binaries) and after it (libtest's terse output names no passing test, so a flake would
    /// look like a failure).
    fn runner_args(&self) -> Vec<OsString> {
        self.args
            .iter()
            .filter(|arg| {
                !(self.runner == RunnerKind::CargoTest
                    && (*arg == "-q" || *arg == "--quiet" || *arg == "--format=terse"))
            })
            .cloned()
            .collect()
    }

    /// The nextest profile the user chose, with `--profile`/`-P` or `NEXTEST_PROFILE`.
    pub(crate) fn user_profile(&self) -> Option<String> {
        let mut args = self
            .args
            .iter()
            .map(|a| a.to_string_lossy())
            .take_while(|a| a != "--");
        while let Some(arg) = args.next() {
            if arg == "--profile" || arg == "-P" {
                return args.next().map(|p| p.into_owned());
            }
            if let Some(profile) = arg.strip_prefix("--profile=").or_else(|| arg.strip_prefix("-P")) {
                return Some(profile.trim_start_matches('=').to_owned());
            }
        }
        let inside_nextest = std::env::var_os("NEXTEST_RUN_ID").is_some();
        std::env::var("NEXTEST_PROFILE")
            .ok()
            .filter(|p| !p.is_empty() && !inside_nextest)
    }

    /// The command as a user would type it, for messages.
    pub(crate) fn shown(&self, no_run: bool) -> String {
        let mut shown = self.runner.command().to_owned();
        if no_run {
            shown.push_str(" --no-run");
        }
        for arg in &self.args {
            shown.push(' ');
            // On one line whatever the argument holds.
            shown.push_str(&loopcheck::scan::one_line(&arg.to_string_lossy()));
        }
        shown
    }
}

/// Runs `command` to the end with stdout and stderr written to the file `log`, copying what
/// it writes to this process's stderr as it comes when `echo`.
///
/// A file rather than a pipe: the runner never waits for this process to read, nothing is
/// woken for each line a test prints, and a process a test leaked with the runner's output as
/// its own cannot keep the run from ending.
pub(crate) fn run(mut command: Command, echo: bool, log: &Path) -> Result<RunOutput> {
    let program = command.get_program().to_string_lossy().into_owned();
    let spawn_error = |source| Error::Spawn {
        program: program.clone(),
        source,
    };
    let io_error = |action, source| Error::Io {
        action,
        path: log.to_path_buf(),
        source,
    };
    let file = std::fs::File::create(log).map_err(|e| io_error("create", e))?;
    let stderr = file.try_clone().map_err(|e| io_error("create", e))?;
    command.stdin(Stdio::null()).stdout(file).stderr(stderr);
    signals::own_group(&mut command);
    let mut child = command.spawn().map_err(spawn_error)?;
    drop(command);

    let mut reader = std::fs::File::open(log).map_err(|e| io_error("read", e))?;
    let mut output = Vec::new();
    // Whole lines only, so that a message this process writes meanwhile starts on a line of
    // its own; the rest of the last line goes out at the end.
    let mut echoed = 0;
    let mut copy_new = |output: &mut Vec<u8>, last: bool| -> std::io::Result<()> {
        reader.read_to_end(output)?;
        let end = if last {
            output.len()
        } else {
            output
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(echoed, |at| at + 1)
                .max(echoed)
        };
        if echo && end > echoed {
            let mut err = std::io::stderr().lock();
            // A closed stderr must not stop the run: the output is in the log.
            let _ = err.write_all(&output[echoed..end]).and_then(|()| err.flush());
        }
        echoed = end;
        Ok(())
    };
    // The wait wakes every ECHO_INTERVAL, to copy the output and to pass a SIGTERM or
    // SIGINT on to the runner's group, which is signalled only while its leader is not reaped:
    // it is reaped here, after the loop.
    let pid = child.id();
    let mut exit = signals::Exit::watch(pid);
    let mut stopper = signals::Stopper::new(signals::Reach::Group);
    let mut stopped = None;
    loop {
        let finished = exit.wait(ECHO_INTERVAL);
        if (echo || finished)
            && let Err(e) = copy_new(&mut output, finished)
        {
            // Reaped all the same, once it ends, as nothing signals it any more.
            std::thread::spawn(move || child.wait());
            return Err(io_error("read", e));
        }
        if finished {
            break;
        }
        stopped = stopper.check(pid).or(stopped);
    }
    let status = child.wait().map_err(spawn_error)?;
    Ok(RunOutput {
        status,
        output: String::from_utf8_lossy(&output).into_owned(),
        stopped: stopped.or_else(signals::received),
    })
}

/// The last `n` lines of `output`, for an error message.
pub(crate) fn tail(output: &str, n: usize) -> String {
    let lines: Vec<&str> = output.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// An exit status in words: `exit code 101`, `signal 9`.
pub(crate) fn describe(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("exit code {code}");
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            return format!("signal {signal}");
        }
    }
    status.to_string()
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    fn invocation(runner: RunnerKind, args: &[&str]) -> Invocation {
        Invocation {
            cargo: "cargo".into(),
            runner,
            manifest_path: None,
            color: false,
            args: args.iter().map(OsString::from).collect(),
            env: Vec::new(),
        }
    }

    fn command_line(invocation: &Invocation) -> Vec<String> {
        invocation
            .command(false, &[])
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn flags_are_added_only_where_the_user_gave_none() {
        let plain = invocation(
            RunnerKind::CargoTest,
            &["-q", "-p", "demo", "--", "-q", "--nocapture"],
        );
        assert_eq!(
            command_line(&plain),
            [
                "test",
                "--no-fail-fast",
                "--color",
                "never",
                "-p",
                "demo",
                "--",
                "--nocapture"
            ]
        );
        for limit in [
            &["--max-fail", "3"][..],
            &["--max-fail=3"],
            &["--ff"],
            &["--nff"],
            &["--fail-fast"],
        ] {
            let nextest = invocation(RunnerKind::Nextest, limit);
            assert!(
                !command_line(&nextest).contains(&"--no-fail-fast".to_owned()),
                "{limit:?}"
            );
        }
        let colored = invocation(RunnerKind::Nextest, &["--color=always"]);
        assert_eq!(
            command_line(&colored),
            ["nextest", "run", "--no-fail-fast", "--color=always"]
        );
    }

    #[test]
    fn the_user_profile_is_read_from_the_arguments() {
        for (args, profile) in [
            (&["--profile", "ci"][..], Some("ci")),
            (&["--profile=ci"], Some("ci")),
            (&["-P", "ci"], Some("ci")),
            (&["-Pci"], Some("ci")),
            (&["--", "--profile", "ci"], None),
        ] {
            let nextest = invocation(RunnerKind::Nextest, args);
            if std::env::var_os("NEXTEST_PROFILE").is_none() || profile.is_some() {
                assert_eq!(nextest.user_profile().as_deref(), profile, "{args:?}");
            }
        }
    }

    #[test]
    fn captures_both_streams_in_order_and_ignores_a_leaked_holder_of_the_output() {
        let dir = tempfile::tempdir().unwrap();
        for echo in [false, true] {
            let mut command = Command::new("sh");
            // The background sleep keeps the output open after `sh` exits, as a leaked
            // server would; it ends by itself.
            command.args([
                "-c",
                "echo one; echo two >&2; sleep 0.3; echo three; sleep 10 & exit 3",
            ]);
            let started = std::time::Instant::now();
            let log = dir.path().join(format!("echo-{echo}.log"));
            let finished = run(command, echo, &log).expect("sh runs");
            assert_eq!(finished.status.code(), Some(3));
            assert_eq!(finished.output, "one\ntwo\nthree\n");
            assert_eq!(std::fs::read_to_string(&log).unwrap(), finished.output);
            assert!(
                started.elapsed() < Duration::from_secs(8),
                "waited for the leaked holder"
            );
        }
    }

    #[test]
    fn a_missing_program_or_log_directory_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let error = run(Command::new("/nonexistent/cargo"), false, &dir.path().join("log"))
            .err()
            .expect("fails");
        assert!(matches!(error, Error::Spawn { .. }), "{error}");
        let error = run(Command::new("true"), false, &dir.path().join("missing/log"))
            .err()
            .expect("fails");
        assert!(matches!(error, Error::Io { .. }), "{error}");
    }
}
