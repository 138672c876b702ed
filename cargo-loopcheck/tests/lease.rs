//! `cargo loopcheck lease`, run for real: commands, their environment, their exit status,
//! signals, and leases that live as long as the command and what it leaves holding them.
//!
//! Each test gets a private registry (`LOOPCHECK_DIR`) and a small range of its own
//! (`LOOPCHECK_PORT_RANGE`), a block that this test process leases in the user's registry, so
//! tests running in parallel never meet, and nothing else of this user takes those ports.
#![cfg(unix)]

mod schema;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use cargo_loopcheck::Exit;

/// A private registry and range for one test.
struct Sandbox {
    registry: tempfile::TempDir,
    block: loopcheck::PortBlock,
}

impl Sandbox {
    fn new(ports: usize) -> Sandbox {
        Sandbox {
            registry: tempfile::tempdir().unwrap(),
            block: loopcheck::reserve_port_block(ports).unwrap(),
        }
    }

    fn range(&self) -> String {
        format!("{}-{}", self.block.first(), self.block.last())
    }

    fn lease(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_cargo-loopcheck"));
        command
            .arg("loopcheck")
            .arg("lease")
            .args(args)
            .env("LOOPCHECK_DIR", self.registry.path().join("leases"))
            .env("LOOPCHECK_PORT_RANGE", self.range())
            .env_remove("CARGO_TERM_COLOR")
            .env("NO_COLOR", "1");
        command
    }

    fn output(&self, args: &[&str]) -> Output {
        self.lease(args).output().unwrap()
    }

    /// Runs `lease ARGS` until its error names every one of `pids` as a holder (at most 10s),
    /// and returns the last output. A command can print its line before the tool that spawned
    /// it has handed its leases over (until then the records name the tool), so a test that
    /// read the command's pid from that line asks again rather than race the hand-over.
    fn output_naming(&self, args: &[&str], pids: &[u32]) -> Output {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let output = self.output(args);
            let text = stderr(&output);
            let named = pids.iter().all(|pid| text.contains(&format!("pid {pid}")));
            if named || Instant::now() > deadline {
                return output;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts `lease ARGS -- sh -c SCRIPT`; the script's first line on stdout is returned.
    fn start(&self, args: &[&str], script: &str) -> Running {
        let mut full: Vec<&str> = args.to_vec();
        full.extend(["--", "sh", "-c", script]);
        let mut child = self
            .lease(&full)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (send, lines) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        Running { child, lines }
    }
}

struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Running {
    fn line(&mut self) -> String {
        match self.lines.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => line,
            Err(err) => {
                let _ = self.child.kill();
                let status = self.child.wait();
                let mut stderr = String::new();
                if let Some(mut pipe) = self.child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
                }
                panic!("no line from the command ({err}); the tool: {status:?}, stderr:\n{stderr}");
            }
        }
    }

    /// Waits (at most 30s) for the tool to exit and returns its code.
    fn code(&mut self) -> i32 {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().expect("the tool exits normally");
            }
            assert!(Instant::now() < deadline, "the tool did not exit within 30s");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Running {
    /// SIGTERM, which the tool passes on to its command, so that neither outlives the test;
    /// SIGKILL if the tool is still there after 10s.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            signal(self.child.id(), libc::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(10);
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn signal(pid: u32, signal: i32) {
    // SAFETY: a signal to a process this test started.
    assert_eq!(unsafe { libc::kill(pid as i32, signal) }, 0);
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Waits until `pid` no longer runs (at most 30s): a killed process that its parent already
/// reaped, or one reparented and reaped by init.
fn wait_gone(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while loopcheck::scan::ProcessInfo::read(pid).is_some_and(|p| p.state != Some('Z')) {
        assert!(Instant::now() < deadline, "pid {pid} still runs after 30s");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn the_command_gets_its_ports_and_its_exit_status_is_ours() {
    let sandbox = Sandbox::new(8);
    let output = sandbox.output(&[
        "--count",
        "3",
        "--",
        "sh",
        "-c",
        "echo \"$LOOPCHECK_PORT $LOOPCHECK_PORT_0 $LOOPCHECK_PORT_1 $LOOPCHECK_PORT_2 $LOOPCHECK_PORTS\"; exit 7",
    ]);
    assert_eq!(output.status.code(), Some(7), "{}", stderr(&output));
    let text = String::from_utf8(output.stdout.clone()).unwrap();
    let words: Vec<&str> = text.split_whitespace().collect();
    assert_eq!(words.len(), 5, "{text}");
    assert_eq!(words[0], words[1]);
    let ports: Vec<u16> = words[1..4].iter().map(|p| p.parse().unwrap()).collect();
    assert_eq!(words[4], format!("{},{},{}", ports[0], ports[1], ports[2]));
    let mut distinct = ports.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), 3, "{ports:?}");
    assert!(
        ports.iter().all(|p| sandbox.block.ports().contains(p)),
        "{ports:?}"
    );
    assert!(stderr(&output).contains("Leased"), "{}", stderr(&output));

    for (script, code) in [("exit 0", 0), ("exit 3", 3), ("kill -9 $$", 128 + 9)] {
        let output = sandbox.output(&["--", "sh", "-c", script]);
        assert_eq!(output.status.code(), Some(code), "{script}: {}", stderr(&output));
    }
}

#[test]
fn json_names_the_ports_on_one_line_before_the_command_runs() {
    let sandbox = Sandbox::new(4);
    let output = sandbox.output(&["--format", "json", "--block", "2", "--", "sh", "-c", "echo after"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = String::from_utf8(output.stdout).unwrap();
    let (first, rest) = text.split_once('\n').unwrap();
    assert_eq!(rest, "after\n");
    let json: serde_json::Value = serde_json::from_str(first).unwrap();
    schema::assert_valid("lease", &json);
    assert_eq!(json["format_version"], 1);
    assert_eq!(json["contiguous"], true);
    assert_eq!(json["command"], "sh -c 'echo after'");
    let ports = json["ports"].as_array().unwrap();
    assert_eq!(ports[1].as_u64().unwrap(), ports[0].as_u64().unwrap() + 1);
}

#[test]
fn concurrent_leases_are_exclusive_and_a_full_range_names_its_holders() {
    let sandbox = Sandbox::new(3);
    let mut running: Vec<Running> = (0..3)
        .map(|_| sandbox.start(&[], "echo $LOOPCHECK_PORT $$; exec sleep 60"))
        .collect();
    // Each line: the port, and the command's pid, which holds it and which the records name.
    let lines: Vec<(u16, u32)> = running
        .iter_mut()
        .map(|r| {
            let line = r.line();
            let (port, pid) = line.split_once(' ').unwrap();
            (port.parse().unwrap(), pid.parse().unwrap())
        })
        .collect();
    let mut ports: Vec<u16> = lines.iter().map(|l| l.0).collect();
    ports.sort_unstable();
    let all: Vec<u16> = sandbox.block.ports().collect();
    assert_eq!(ports, all, "three commands, three distinct ports of the range");

    let pids: Vec<u32> = lines.iter().map(|l| l.1).collect();
    let output = sandbox.output_naming(&["--", "true"], &pids);
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(Exit::COULD_NOT_RUN.into()));
    assert!(text.contains("cannot lease a port for `true`"), "{text}");
    assert!(text.contains(&format!("held in {}", sandbox.range())), "{text}");
    for (_, command) in &lines {
        assert!(text.contains(&format!("pid {command}")), "{text}");
    }
    assert!(
        text.contains("(`sh -c 'echo $LOOPCHECK_PORT $$; exec sleep 60'`)"),
        "{text}"
    );

    // SIGTERM to the tool reaches the command; its end frees a port for the next lease.
    signal(running[0].child.id(), libc::SIGTERM);
    assert_eq!(running[0].code(), 128 + libc::SIGTERM);
    let output = sandbox.output(&["--", "true"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    running.clear();
}

#[test]
fn a_block_skips_a_foreign_holder_inside_the_range() {
    let sandbox = Sandbox::new(6);
    let first = sandbox.block.first();
    // A program that does not lease holds the second port: blocks of 3 fit only after it.
    let _foreign = std::net::TcpListener::bind(("127.0.0.1", first + 1)).unwrap();
    let mut running = sandbox.start(&["--block", "3"], "echo $LOOPCHECK_PORTS $$; exec sleep 60");
    let line = running.line();
    let (ports, command) = line.split_once(' ').unwrap();
    let ports: Vec<u16> = ports.split(',').map(|p| p.parse().unwrap()).collect();
    assert!(
        ports == [first + 2, first + 3, first + 4] || ports == [first + 3, first + 4, first + 5],
        "{ports:?} in {}",
        sandbox.range()
    );

    let command: u32 = command.parse().unwrap();
    let output = sandbox.output_naming(&["--block", "2", "--", "true"], &[command]);
    assert_eq!(output.status.code(), Some(Exit::COULD_NOT_RUN.into()));
    let text = stderr(&output);
    assert!(
        text.contains("cannot lease a block of 2 contiguous ports")
            && text.contains("no 2 contiguous free ports"),
        "{text}"
    );
    let held = format!("ports {}-{} by pid {command}", ports[0], ports[2]);
    assert!(text.contains(&held), "{text}");

    let output = sandbox.output(&["--block", "7", "--", "true"]);
    assert_eq!(output.status.code(), Some(Exit::COULD_NOT_RUN.into()));
    assert!(
        stderr(&output).contains("7 contiguous ports cannot fit"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn leases_end_with_the_command_also_when_it_or_the_tool_is_killed() {
    let sandbox = Sandbox::new(1);

    // The command killed: the tool passes its status on and the port is free at once.
    let mut running = sandbox.start(&[], "echo $$; exec sleep 60");
    let command: u32 = running.line().parse().unwrap();
    signal(command, libc::SIGKILL);
    assert_eq!(running.code(), 128 + libc::SIGKILL);
    let output = sandbox.output(&["--", "true"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));

    // The tool killed: the command still holds the port, until it ends.
    let mut running = sandbox.start(&[], "echo $$; exec sleep 60");
    let command: u32 = running.line().parse().unwrap();
    signal(running.child.id(), libc::SIGKILL);
    running.child.wait().unwrap();
    let output = sandbox.output(&["--", "true"]);
    assert_eq!(
        output.status.code(),
        Some(Exit::COULD_NOT_RUN.into()),
        "the command outlived the tool and keeps its lease: {}",
        stderr(&output)
    );
    signal(command, libc::SIGKILL);
    wait_gone(command);
    let output = sandbox.output(&["--", "true"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}

#[test]
fn signals_are_passed_on_and_the_command_decides_the_status() {
    let sandbox = Sandbox::new(2);
    // No background child: one would inherit the leases too, and hold them after the shell.
    for sig in [libc::SIGTERM, libc::SIGHUP, libc::SIGINT] {
        let mut running = sandbox.start(
            &[],
            "trap 'echo trapped; exit 7' TERM HUP INT; echo ready; for i in $(seq 1200); do sleep 0.05; done",
        );
        assert_eq!(running.line(), "ready");
        signal(running.child.id(), sig);
        assert_eq!(running.line(), "trapped");
        assert_eq!(running.code(), 7, "signal {sig}");
    }
}

#[test]
fn without_a_command_it_is_a_usage_error() {
    let sandbox = Sandbox::new(1);
    for args in [
        &[][..],
        &["--count", "2"],
        &["--count", "1", "--block", "2", "--", "true"],
        &["--count", "0", "--", "true"],
    ] {
        let output = sandbox.output(args);
        assert_eq!(
            output.status.code(),
            Some(Exit::USAGE.into()),
            "{args:?}: {}",
            stderr(&output)
        );
    }
    let output = sandbox.output(&["--", "/nonexistent/command"]);
    assert_eq!(output.status.code(), Some(Exit::COULD_NOT_RUN.into()));
    assert!(
        stderr(&output).contains("cannot run `/nonexistent/command`"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn a_nested_lease_sees_only_its_own_ports() {
    let sandbox = Sandbox::new(8);
    // The outer lease has 3 ports; the inner one, run inside it, leases 1 and must not show
    // the outer `LOOPCHECK_PORT_1` and `LOOPCHECK_PORT_2` as if they were its own.
    let tool = env!("CARGO_BIN_EXE_cargo-loopcheck");
    let script = format!(
        "echo outer $LOOPCHECK_PORT; exec {tool} loopcheck lease -- sh -c 'echo inner $LOOPCHECK_PORT ${{LOOPCHECK_PORT_0}} ${{LOOPCHECK_PORT_1:-none}} ${{LOOPCHECK_PORT_2:-none}} ${{LOOPCHECK_PORT_7:-none}} $LOOPCHECK_PORTS'"
    );
    let output = sandbox
        .lease(&["--count", "3", "--", "sh", "-c", &script])
        .env("LOOPCHECK_PORT_7", "1")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = String::from_utf8(output.stdout).unwrap();
    let inner: Vec<&str> = text
        .lines()
        .find_map(|l| l.strip_prefix("inner "))
        .unwrap_or_else(|| panic!("no inner line: {text}"))
        .split_whitespace()
        .collect();
    assert_eq!(inner.len(), 6, "{text}");
    assert_eq!(inner[0], inner[1], "{text}");
    assert_eq!(&inner[2..5], ["none", "none", "none"], "{text}");
    assert_eq!(inner[5], inner[0], "only the inner port: {text}");
}

#[test]
fn the_command_is_the_holder_and_its_background_child_keeps_the_lease() {
    let sandbox = Sandbox::new(1);

    // The tool killed: the records name the command, which holds the lock, not the dead tool.
    let mut running = sandbox.start(&[], "echo $$; exec sleep 60");
    let command: u32 = running.line().parse().unwrap();
    let tool = running.child.id();
    sandbox.output_naming(&["--", "true"], &[command]);
    let named = |text: &str| text.contains(&format!("by pid {command}"));
    signal(tool, libc::SIGKILL);
    running.child.wait().unwrap();
    let output = sandbox.output(&["--", "true"]);
    assert_eq!(output.status.code(), Some(Exit::COULD_NOT_RUN.into()));
    let text = stderr(&output);
    assert!(named(&text), "{text}");
    assert!(!text.contains(&format!("by pid {tool}")), "{text}");
    signal(command, libc::SIGKILL);
    wait_gone(command);
    drop(running);

    // The command exits and leaves a server in the background, which inherited the lock: the
    // port stays leased until that server ends too.
    let mut running = sandbox.start(&[], "sleep 60 & echo $!; exit 0");
    let background: u32 = running.line().parse().unwrap();
    assert_eq!(running.code(), 0);
    let output = sandbox.output(&["--", "true"]);
    assert_eq!(
        output.status.code(),
        Some(Exit::COULD_NOT_RUN.into()),
        "the background child of the command holds the lease: {}",
        stderr(&output)
    );
    signal(background, libc::SIGKILL);
    wait_gone(background);
    let output = sandbox.output(&["--", "true"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}

#[test]
fn a_second_signal_kills_the_command_and_the_tool_dies_of_it() {
    let sandbox = Sandbox::new(1);
    // A command that ignores SIGTERM (an ignored signal stays ignored across `exec`): the
    // first is passed on and changes nothing.
    let mut running = sandbox.start(&[], "trap '' TERM; echo $$; exec sleep 60");
    let command: u32 = running.line().parse().unwrap();
    signal(running.child.id(), libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        running.child.try_wait().unwrap().is_none(),
        "the command ignores SIGTERM"
    );
    signal(running.child.id(), libc::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = running.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the tool outlived a second SIGTERM by 30s"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGTERM), "{status:?}");
    wait_gone(command);
    let output = sandbox.output(&["--", "true"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}
