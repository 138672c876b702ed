//! Running the external tools some backends read (`lsof`, `netstat`): found on `PATH`,
//! started without a shell, bounded in time.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::ScanError;

/// How long a tool may run; `lsof` on a large host takes seconds, never this long.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(60);
/// How much of a failing tool's standard error goes into [`ScanError::Failed`].
const STDERR_EXCERPT: usize = 500;

/// Finds `name` in the directories of `PATH`, then in `fallbacks` (absolute directories where
/// the tool lives when `PATH` is minimal, like `/usr/sbin` for `lsof` on macOS).
pub(crate) fn find_program(name: &str, fallbacks: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let file_name = if cfg!(windows) {
        format!("{name}.exe")
    } else {
        name.to_owned()
    };
    std::env::split_paths(&path)
        // A relative `PATH` entry would run whatever the current directory holds.
        .filter(|dir| dir.is_absolute())
        .chain(fallbacks.iter().map(PathBuf::from))
        .map(|dir| dir.join(&file_name))
        .find(|candidate| is_executable(candidate))
}

#[cfg(unix)]
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(path: &Path) -> bool {
    path.is_file()
}

/// What a finished tool produced.
#[derive(Debug)]
pub(crate) struct Output {
    pub(crate) status: ExitStatus,
    pub(crate) stdout: Vec<u8>,
    pub(crate) stderr: Vec<u8>,
}

/// Runs `program` with `args`, standard input closed, and collects its output. After
/// `timeout` the child is killed and [`ScanError::Timeout`] returned.
pub(crate) fn run(program: &Path, args: &[&str], timeout: Duration) -> Result<Output, ScanError> {
    let spawn_error = |source| ScanError::Spawn {
        program: program.to_owned(),
        source,
    };
    let mut child = Command::new(program)
        .args(args)
        // Fixed, untranslated output where the tool honours the locale.
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_error)?;
    let deadline = Instant::now() + timeout;

    // Both pipes are drained on their own threads so that neither can fill up and stall the
    // child while this thread watches the clock.
    let (stdout_tx, stdout_rx) = mpsc::channel();
    if let Some(mut stdout) = child.stdout.take() {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let result = stdout.read_to_end(&mut buf).map(|_| buf);
            let _ = stdout_tx.send(result);
        });
    }
    let (stderr_tx, stderr_rx) = mpsc::channel();
    if let Some(mut stderr) = child.stderr.take() {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = stderr.read_to_end(&mut buf);
            let _ = stderr_tx.send(buf);
        });
    }

    let kill = |child: &mut std::process::Child| {
        let _ = child.kill();
        let _ = child.wait();
        ScanError::Timeout {
            program: program.to_owned(),
            timeout,
        }
    };
    let stdout = match stdout_rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        Ok(Ok(stdout)) => stdout,
        Ok(Err(source)) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(spawn_error(source));
        }
        Err(mpsc::RecvTimeoutError::Timeout) => return Err(kill(&mut child)),
        Err(mpsc::RecvTimeoutError::Disconnected) => Vec::new(),
    };
    // The child closed its output; it normally exits right after. Poll, since `wait` has no
    // timeout, with a short sleep that grows.
    let mut pause = Duration::from_micros(50);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(20));
            }
            Ok(None) => return Err(kill(&mut child)),
            Err(source) => return Err(spawn_error(source)),
        }
    };
    let stderr = stderr_rx
        .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        .unwrap_or_default();
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}

/// [`ScanError::Failed`] for `output`.
pub(crate) fn failed(program: &Path, output: &Output) -> ScanError {
    let text = String::from_utf8_lossy(&output.stderr);
    let mut stderr: String = text.trim().chars().take(STDERR_EXCERPT).collect();
    if stderr.is_empty() {
        stderr.push_str("no error output");
    }
    ScanError::Failed {
        program: program.to_owned(),
        status: output.status,
        stderr,
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn finds_a_shell_and_not_a_ghost() {
        assert!(find_program("sh", &["/bin", "/usr/bin"]).is_some());
        assert_eq!(find_program("no-such-program-loopcheck", &[]), None);
    }

    #[test]
    fn runs_and_times_out() {
        let Some(sh) = find_program("sh", &["/bin"]) else {
            crate::sys::skip_test("no `sh`");
            return;
        };
        let output = run(
            &sh,
            &["-c", "echo out; echo err >&2; exit 3"],
            Duration::from_secs(20),
        )
        .unwrap();
        assert_eq!(output.stdout, b"out\n");
        assert_eq!(output.stderr, b"err\n");
        assert_eq!(output.status.code(), Some(3));
        assert!(failed(&sh, &output).to_string().contains("err"));

        let started = Instant::now();
        let result = run(&sh, &["-c", "exec sleep 30"], Duration::from_millis(200));
        assert!(matches!(result, Err(ScanError::Timeout { .. })), "{result:?}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
