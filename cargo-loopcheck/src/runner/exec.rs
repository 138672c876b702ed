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

/// How long output may keep coming after the runner exited: a process a test left running
/// may hold the pipe open for ever.
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);

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

/// Runs `command` to the end with stdout and stderr on one pipe, copying what it prints to
/// this process's stderr when `echo`, and to `log` when given.
pub(crate) fn run(mut command: Command, echo: bool, log: Option<&Path>) -> Result<Finished> {
    let program = command.get_program().to_string_lossy().into_owned();
    let spawn_error = |source| Error::Spawn {
        program: program.clone(),
        source,
    };
    let (mut reader, writer) = std::io::pipe().map_err(spawn_error)?;
    let writer_clone = writer.try_clone().map_err(spawn_error)?;
    command.stdin(Stdio::null()).stdout(writer_clone).stderr(writer);
    let mut child = command.spawn().map_err(spawn_error)?;
    // The command holds the pipe's write ends: without dropping it the read never ends.
    drop(command);

    let mut log_file = match log {
        Some(path) => Some(std::fs::File::create(path).map_err(|source| Error::Io {
            action: "create",
            path: path.to_path_buf(),
            source,
        })?),
        None => None,
    };
    let (chunks, received) = mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let mut buf = vec![0; 64 * 1024];
        loop {
            match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if chunks.send(buf[..n].to_vec()).is_err() {
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
    });

    let mut output = Vec::new();
    let mut take = |chunk: Vec<u8>| {
        if echo {
            let mut err = std::io::stderr().lock();
            let _ = err.write_all(&chunk);
            let _ = err.flush();
        }
        if let Some(file) = &mut log_file {
            let _ = file.write_all(&chunk);
        }
        output.extend_from_slice(&chunk);
    };
    // Output until the runner exits; then what is left, for a bounded time.
    let status = loop {
        match received.recv_timeout(Duration::from_millis(50)) {
            Ok(chunk) => take(chunk),
            Err(mpsc::RecvTimeoutError::Disconnected) => break child.wait(),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if let Some(status) = child.try_wait().transpose() {
                    break status;
                }
            }
        }
    }
    .map_err(spawn_error)?;
    let deadline = std::time::Instant::now() + DRAIN_AFTER_EXIT;
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        match received.recv_timeout(left) {
            Ok(chunk) => take(chunk),
            Err(_) => break,
        }
    }
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
    fn captures_both_streams_in_order_and_survives_a_leaked_pipe_holder() {
        let mut command = Command::new("sh");
        // The background sleep keeps the pipe open after `sh` exits, as a leaked server would.
        command.args(["-c", "echo one; echo two >&2; echo three; sleep 10 & exit 3"]);
        let started = std::time::Instant::now();
        let finished = run(command, false, None).expect("sh runs");
        assert_eq!(finished.status.code(), Some(3));
        assert_eq!(finished.output, "one\ntwo\nthree\n");
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "waited for the leaked holder"
        );
    }

    #[test]
    fn a_missing_program_is_an_error() {
        let error = run(Command::new("/nonexistent/cargo"), false, None)
            .err()
            .expect("fails");
        assert!(matches!(error, Error::Spawn { .. }), "{error}");
    }
}
