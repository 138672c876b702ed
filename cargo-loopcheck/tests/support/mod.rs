//! What the integration tests outside the lint's share: how a test says that it cannot run
//! here, and how a test runs `cargo-loopcheck` on a fixture, bounded in time.

#![allow(dead_code, unused_imports, unreachable_pub)]

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// For a test that cannot run its real check here: says why on stderr, and fails under
/// `LOOPCHECK_REQUIRE_TOOLS=1` (one definition for both crates' tests).
pub use loopcheck::sys::skip_test as skip;
/// For a test that needs root: whether it runs as root, after a [`skip`] when not.
pub use loopcheck::sys::test_needs_root as needs_root;

/// Whether `cargo-nextest` runs here; when not, [`skip`]s the nextest case.
pub fn nextest_installed() -> bool {
    let installed = Command::new("cargo-nextest")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !installed {
        skip("cargo-nextest is not installed");
    }
    installed
}

/// Copies the fixture tree `from` into `to`.
pub fn copy_tree(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Runs `command` to completion, killing it (by pid) if it takes longer than `limit`. The
/// pipes are read to their end in threads; a leftover the command leaks holds none of them.
pub fn run_bounded(mut command: Command, limit: Duration) -> Output {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run cargo-loopcheck");
    wait_bounded(child, limit)
}

/// Waits for `child` with its pipes read in threads, killing it (by pid) after `limit`.
pub fn wait_bounded(mut child: Child, limit: Duration) -> Output {
    fn drain(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            buf
        })
    }
    let out = drain(child.stdout.take().unwrap());
    let err = drain(child.stderr.take().unwrap());
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("cargo-loopcheck took longer than {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// The exit code of a process that exited (not killed by a signal).
pub fn code(output: &Output) -> u8 {
    output.status.code().expect("exited normally") as u8
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Stdout as a JSON document, or a panic that shows both streams.
pub fn json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&output.stdout),
            stderr(output)
        )
    })
}
