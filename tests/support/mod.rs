//! Runs this test binary again as a child process in a chosen role.
//!
//! A test calls [`spawn`] with a role; the child runs the `child_entry` test of the same
//! binary, which dispatches on `LOOPCHECK_TEST_ROLE`. Children are killed by pid when their
//! handle is dropped, so a failing test leaves nothing behind.

#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

pub const ROLE_VAR: &str = "LOOPCHECK_TEST_ROLE";

/// A child process running this binary in a role.
pub struct Role {
    pub child: Child,
    stdin: Option<ChildStdin>,
    /// Tagged lines of the child's stdout, read on a thread so that waiting is bounded.
    lines: Receiver<String>,
}

/// The command that runs this binary's `child_entry` test in `role`.
pub fn command(role: &str) -> Command {
    let mut command = Command::new(std::env::current_exe().expect("test binary path"));
    command
        .args([
            "--exact",
            "child_entry",
            "--nocapture",
            "--test-threads=1",
            "--quiet",
        ])
        .env(ROLE_VAR, role)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    command
}

pub fn spawn(role: &str, envs: &[(&str, &str)]) -> Role {
    let mut command = command(role);
    command.envs(envs.iter().copied());
    start(command)
}

pub fn start(mut command: Command) -> Role {
    let mut child = command.spawn().expect("spawn child");
    let stdin = child.stdin.take();
    let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
    let (sender, lines) = channel();
    std::thread::spawn(move || {
        for line in stdout.lines() {
            let Ok(line) = line else { break };
            // After the tag, not only at the start: a grandchild shares its parent's stdout,
            // and its line can follow libtest's `.` for the parent's test on the same line.
            if let Some((_, tagged)) = line.trim_end().split_once('@')
                && sender.send(tagged.to_owned()).is_err()
            {
                break;
            }
        }
    });
    Role { child, stdin, lines }
}

impl Role {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next line the child prints with the `@` tag of [`say`], skipping libtest's own
    /// lines. Panics after `timeout` or at the end of the child's output.
    pub fn line(&mut self, timeout: Duration) -> String {
        match self.lines.recv_timeout(timeout) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => {
                panic!("child {} printed no tagged line in {timeout:?}", self.pid())
            }
            Err(RecvTimeoutError::Disconnected) => panic!("child {} ended without a tagged line", self.pid()),
        }
    }

    /// Lets the child go on past its `wait_for_parent`.
    pub fn release(&mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.write_all(b"go\n");
        }
    }

    /// Waits for the child to exit, at most `timeout`.
    pub fn wait(mut self, timeout: Duration) -> std::process::ExitStatus {
        self.release();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("wait for child") {
                return status;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        panic!("child {} did not exit within {timeout:?}", self.pid());
    }
}

impl Drop for Role {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// In a child: prints a line the parent can find with [`Role::line`].
pub fn say(line: impl std::fmt::Display) {
    println!("@{line}");
    std::io::stdout().flush().expect("flush stdout");
}

/// In a child: blocks until the parent calls [`Role::release`] or goes away.
pub fn wait_for_parent() {
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
}

/// In a child: the role it was started in, if any.
pub fn role() -> Option<String> {
    std::env::var(ROLE_VAR).ok()
}

/// For a test that cannot run its real check here: says why, and fails under
/// `LOOPCHECK_REQUIRE_TOOLS=1` (one definition for both crates' tests).
pub use loopcheck::sys::skip_test as skip;
