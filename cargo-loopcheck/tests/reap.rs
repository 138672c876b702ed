//! `check` and `reap` on a fixture workspace with a real zombie listener, beside listeners
//! that must be spared.
#![cfg(target_os = "linux")]

mod schema;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cargo_loopcheck::Exit;

const ROLE: &str = "LOOPCHECK_TEST_ROLE";

/// Runs only `child_entry` of this binary, printing what it says.
const CHILD_ARGS: [&str; 5] = [
    "--exact",
    "child_entry",
    "--nocapture",
    "--test-threads=1",
    "--quiet",
];

/// The entry point of child processes; does nothing when run as a plain test.
#[test]
fn child_entry() {
    match std::env::var(ROLE).as_deref() {
        Ok("listen-linger") => {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            println!("@{} {}", listener.local_addr().unwrap(), std::process::id());
            // Ends by itself in any case; the test kills it by pid.
            std::thread::sleep(Duration::from_secs(120));
        }
        Ok("orphan-parent") => {
            // Starts `EXE` as a listener and exits at once: the listener is orphaned.
            let exe = std::env::var("EXE").unwrap();
            // The copy of the binary may still be open for writing in a process that another
            // test thread forked at the moment it was written (ETXTBSY): retry briefly.
            for attempt in 0.. {
                let spawned = Command::new(&exe)
                    .args(CHILD_ARGS)
                    .env(ROLE, "listen-linger")
                    .stdin(Stdio::null())
                    .stdout(Stdio::inherit())
                    // Not the parent's stderr: a reader of that pipe would wait for the orphan.
                    .stderr(Stdio::null())
                    .spawn();
                match spawned {
                    #[allow(clippy::zombie_processes, reason = "leaving an orphan is the point")]
                    Ok(_) => break,
                    Err(err) if err.kind() == std::io::ErrorKind::ExecutableFileBusy && attempt < 100 => {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    Err(err) => panic!("cannot start {exe}: {err}"),
                }
            }
        }
        _ => {}
    }
}

/// Runs `exe` as an orphaned listener; returns its address and pid.
fn orphan_listener(exe: &Path) -> (SocketAddr, u32) {
    let mut parent = Command::new(std::env::current_exe().unwrap())
        .args(CHILD_ARGS)
        .env(ROLE, "orphan-parent")
        // Its own process group, as nextest gives each test process: once it exits, the
        // listener it leaves behind belongs to a group without a leader.
        .process_group(0)
        .env("EXE", exe)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = parent.stderr.take().unwrap();
    let said = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        text
    });
    let stdout = parent.stdout.take().unwrap();
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // Reads to the end: a closed pipe would fail the parent's last writes. The orphan keeps
        // the pipe open until the test kills it.
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            // After the tag, not only at the start: an orphan shares its parent's stdout, and
            // its line can follow libtest's `.` for the parent's test on the same line.
            if let Some((_, tagged)) = line.split_once('@') {
                let _ = sender.send(tagged.to_owned());
            }
        }
    });
    let Ok(line) = receiver.recv_timeout(Duration::from_secs(60)) else {
        let _ = parent.kill();
        let _ = parent.wait();
        panic!(
            "the orphan did not report its address; its parent said: {}",
            said.join().unwrap()
        );
    };
    let status = parent.wait().unwrap();
    assert!(status.success(), "{}", said.join().unwrap());
    let (addr, pid) = line.split_once(' ').unwrap();
    let pid: u32 = pid.parse().unwrap();
    // Wait until the kernel has reparented it.
    let deadline = Instant::now() + Duration::from_secs(5);
    while parent_of(pid) != Some(1) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    (addr.parse().unwrap(), pid)
}

fn parent_of(pid: u32) -> Option<u32> {
    loopcheck::scan::ProcessInfo::read(pid)?.ppid
}

fn alive(pid: u32) -> bool {
    loopcheck::scan::ProcessInfo::read(pid).is_some_and(|p| p.state != Some('Z'))
}

/// Kills a process this test started, by pid.
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if alive(self.0) {
            // SAFETY: a signal to a process this test started.
            unsafe { libc::kill(self.0 as libc::pid_t, libc::SIGKILL) };
        }
    }
}

/// A fixture workspace whose target directory holds a copy of this test binary: a process
/// started from it is "built in this workspace's target directory".
fn fixture() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("Cargo.toml"),
        "[package]\nname = \"fixture\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n[workspace]\n",
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("src")).unwrap();
    std::fs::write(dir.path().join("src/lib.rs"), "").unwrap();
    let deps = dir.path().join("target/debug/deps");
    std::fs::create_dir_all(&deps).unwrap();
    std::fs::write(
        dir.path().join("target/CACHEDIR.TAG"),
        "Signature: 8a477f597d28d172789f06886806bc55\n",
    )
    .unwrap();
    let exe = deps.join("fixture-0123456789abcdef");
    std::fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
    (dir, exe)
}

fn cargo_loopcheck(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_cargo-loopcheck"))
        .arg("loopcheck")
        .args(args)
        .env_remove("CARGO_TERM_COLOR")
        .output()
        .unwrap()
}

#[test]
fn reap_ends_only_this_workspaces_zombies() {
    let (dir, exe) = fixture();
    let manifest = dir.path().join("Cargo.toml");
    let manifest = manifest.to_str().unwrap();

    let (zombie_addr, zombie) = orphan_listener(&exe);
    let _zombie_guard = KillOnDrop(zombie);
    // An orphan from another target directory (this test binary's own): a zombie, but not
    // this workspace's.
    let (_, foreign_orphan) = orphan_listener(&std::env::current_exe().unwrap());
    let _foreign_guard = KillOnDrop(foreign_orphan);
    // A listener whose parent lives (this test): never a zombie.
    let _live = TcpListener::bind("127.0.0.1:0").unwrap();

    let dry = cargo_loopcheck(&["reap", "--manifest-path", manifest, "--format", "json"]);
    assert_eq!(
        dry.status.code(),
        Some(Exit::FOUND.into()),
        "{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    let listed: serde_json::Value = serde_json::from_slice(&dry.stdout).unwrap();
    schema::assert_valid("reap", &listed);
    let listed = listed["zombies"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["pid"], zombie);
    assert_eq!(listed[0]["outcome"], "would_end");
    assert_eq!(listed[0]["addrs"][0], zombie_addr.to_string());
    assert_eq!(listed[0]["package"], "fixture");
    assert!(alive(zombie), "a dry run ends nothing");

    let check = cargo_loopcheck(&["check", "--manifest-path", manifest, "--format", "json"]);
    let report: serde_json::Value = serde_json::from_slice(&check.stdout).unwrap();
    schema::assert_valid("check", &report);
    let zombies: Vec<&serde_json::Value> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["code"] == "LC002")
        .collect();
    assert_eq!(zombies.len(), 1, "{report}");
    assert_eq!(zombies[0]["pid"], zombie);
    assert_eq!(zombies[0]["port"], zombie_addr.port());
    assert_eq!(check.status.code(), Some(Exit::FOUND.into()));

    let reaped = cargo_loopcheck(&["reap", "--yes", "--manifest-path", manifest]);
    let text = String::from_utf8_lossy(&reaped.stderr);
    assert_eq!(reaped.status.code(), Some(Exit::OK.into()), "{text}");
    assert!(text.contains(&format!("Terminated pid {zombie}")), "{text}");
    assert!(!alive(zombie));
    assert!(alive(foreign_orphan), "an orphan of another workspace is spared");

    let again = cargo_loopcheck(&["reap", "--manifest-path", manifest]);
    assert_eq!(again.status.code(), Some(Exit::OK.into()));
    assert!(String::from_utf8_lossy(&again.stderr).contains("no zombie listeners"));
}

#[test]
fn doctor_reports_every_check() {
    let output = cargo_loopcheck(&["doctor", "--format", "json"]);
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let names: Vec<&str> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    for expected in [
        "loopback",
        "ipv6 loopback",
        "per-test addresses",
        "localhost",
        "hosts file",
        "port ranges",
        "loopback traffic",
        "lease registry",
        "open files",
        "cargo-nextest",
    ] {
        assert!(names.contains(&expected), "{expected} missing from {names:?}");
    }
    // This machine's loopback works: the exit code says so.
    assert_eq!(output.status.code(), Some(Exit::OK.into()), "{report}");
    let human = cargo_loopcheck(&["doctor"]);
    assert!(String::from_utf8_lossy(&human.stderr).contains("ok loopback: 127.0.0.1 is bindable"));
}

#[test]
fn doctor_reports_an_unsafe_registry_as_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, "").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_cargo-loopcheck"))
        .args(["loopcheck", "doctor", "--format", "json"])
        .env("LOOPCHECK_DIR", &file)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(Exit::FOUND.into()));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let registry = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "lease registry")
        .unwrap();
    assert_eq!(registry["status"], "error");
    assert!(
        registry["message"].as_str().unwrap().contains("not a directory"),
        "{registry}"
    );
}
