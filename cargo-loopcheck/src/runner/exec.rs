//! Starting the runner and capturing what it prints.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use loopcheck::lease::{RUN_DIR_VAR, TEST_VAR};

use super::model::RunnerKind;
use crate::error::{Error, Result};

/// How often the runner's output is copied to stderr while it runs.
const ECHO_INTERVAL: Duration = Duration::from_millis(100);

/// What a finished runner printed and how it exited.
pub(crate) struct Finished {
    pub(crate) status: ExitStatus,
    /// stdout and stderr, interleaved as written.
    pub(crate) output: String,
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
}

impl Invocation {
    /// `cargo test --no-run ARGS` or `cargo nextest run ... ARGS`.
    pub(crate) fn command(&self, no_run: bool) -> Command {
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
        if !no_run && !given("--no-fail-fast") && !given("--fail-fast") {
            command.arg("--no-fail-fast");
        }
        if !given("--color") {
            command.args(["--color", if self.color { "always" } else { "never" }]);
        }
        command.args(&self.args);
        command.env_remove(TEST_VAR).env_remove(RUN_DIR_VAR);
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

    /// The command as a user would type it, for messages.
    pub(crate) fn shown(&self, no_run: bool) -> String {
        let mut shown = self.runner.command().to_owned();
        if no_run {
            shown.push_str(" --no-run");
        }
        for arg in &self.args {
            shown.push(' ');
            shown.push_str(&arg.to_string_lossy());
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
pub(crate) fn run(mut command: Command, echo: bool, log: &Path) -> Result<Finished> {
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
    let mut child = command.spawn().map_err(spawn_error)?;
    drop(command);

    let mut reader = std::fs::File::open(log).map_err(|e| io_error("read", e))?;
    let mut output = Vec::new();
    let mut copy_new = |output: &mut Vec<u8>| -> std::io::Result<()> {
        let start = output.len();
        reader.read_to_end(output)?;
        if echo && output.len() > start {
            let mut err = std::io::stderr().lock();
            // A closed stderr must not stop the run: the output is in the log.
            let _ = err.write_all(&output[start..]).and_then(|()| err.flush());
        }
        Ok(())
    };
    let status = if echo {
        let (done, exited) = mpsc::channel();
        let waiter = std::thread::spawn(move || {
            let status = child.wait();
            let _ = done.send(());
            status
        });
        loop {
            let finished = !matches!(
                exited.recv_timeout(ECHO_INTERVAL),
                Err(mpsc::RecvTimeoutError::Timeout)
            );
            copy_new(&mut output).map_err(|e| io_error("read", e))?;
            if finished {
                break;
            }
        }
        waiter
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            .map_err(spawn_error)?
    } else {
        let status = child.wait().map_err(spawn_error)?;
        copy_new(&mut output).map_err(|e| io_error("read", e))?;
        status
    };
    Ok(Finished {
        status,
        output: String::from_utf8_lossy(&output).into_owned(),
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
