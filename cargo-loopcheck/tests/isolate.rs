//! `cargo loopcheck test --isolate` on a fixture (tests/fixtures/isolate) whose tests bind
//! fixed ports: two binaries on one port that this process holds on the host, a test that
//! needs a host service, a test that leaves a server and a child behind; under cargo test and
//! nextest, as root and as an unprivileged user, with a runner of the user's own, and where
//! isolation is unavailable.
#![cfg(target_os = "linux")]

mod support;

use support::{code, copy_tree, json, run_bounded, stderr};

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use cargo_loopcheck::Exit;
use loopcheck::PortLease;
use serde_json::Value;

/// A copy of the fixture with this process's ports written in, under a package name of its
/// own: copies share one target directory, where one name means one set of binaries.
struct Fixture {
    dir: tempfile::TempDir,
    /// The port both `fixed_*` binaries bind, held by this process on the host all along.
    held: TcpListener,
    /// The host service `host_service` reaches, answering with a greeting.
    service: u16,
    /// The port `leaves` leaves a server on; leased so that no other test takes it.
    _leak: PortLease,
    leak_port: u16,
}

impl Fixture {
    fn new(package: &str) -> Fixture {
        let held_lease = loopcheck::reserve_port().expect("lease a port");
        let held = TcpListener::bind(("127.0.0.1", held_lease.port())).expect("hold the leased port");
        let service_lease = loopcheck::reserve_port().expect("lease a port");
        let service = service_lease.port();
        let service_listener = TcpListener::bind(("127.0.0.1", service)).expect("bind the host service");
        // The host's service: answers every connection with a greeting, for this process's life.
        std::thread::spawn(move || {
            let _lease = service_lease;
            for mut stream in service_listener.incoming().flatten() {
                let _ = stream.write_all(b"hello from the host\n");
            }
        });
        let leak = loopcheck::reserve_port().expect("lease a port");
        let dir = tempfile::tempdir().expect("temporary directory");
        let template = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/isolate");
        copy_tree(&template, dir.path());
        let fixture = Fixture {
            dir,
            held,
            service,
            leak_port: leak.port(),
            _leak: leak,
        };
        let port = fixture.held.local_addr().unwrap().port().to_string();
        fixture.substitute(
            "Cargo.toml",
            "name = \"isolate\"",
            &format!("name = \"{package}\""),
        );
        fixture.substitute("tests/fixed_a.rs", "/*FIXED_PORT*/ 1", &port);
        fixture.substitute("tests/fixed_b.rs", "/*FIXED_PORT*/ 1", &port);
        fixture.substitute(
            "tests/host_service.rs",
            "/*SERVICE_PORT*/ 1",
            &service.to_string(),
        );
        fixture.substitute(
            "tests/leaves.rs",
            "/*LEAK_PORT*/ 1",
            &fixture.leak_port.to_string(),
        );
        fixture
    }

    fn substitute(&self, file: &str, from: &str, to: &str) {
        let path = self.dir.path().join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(from), "{file} lacks {from}");
        std::fs::write(&path, text.replace(from, to)).unwrap();
    }

    fn target_dir() -> PathBuf {
        Path::new(env!("CARGO_TARGET_TMPDIR")).join("isolate-fixture")
    }

    /// `cargo loopcheck ARGS` in this fixture's directory (where cargo looks for its
    /// configuration), with `prepare` applied to the command before it starts.
    fn loopcheck_with(&self, args: &[&str], prepare: impl FnOnce(&mut Command)) -> Output {
        let mut command = Command::new(env!("CARGO_BIN_EXE_cargo-loopcheck"));
        command
            .arg("loopcheck")
            .args(args)
            .current_dir(self.dir.path())
            .env("CARGO_TARGET_DIR", Fixture::target_dir())
            .env("RUST_BACKTRACE", "0")
            .env_remove("CARGO_TERM_COLOR")
            .env_remove("NO_COLOR")
            .env_remove("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER");
        prepare(&mut command);
        run_bounded(command, Duration::from_secs(600))
    }

    fn test(&self, args: &[&str]) -> Output {
        let mut all = vec!["test", "--format", "json"];
        all.extend_from_slice(args);
        self.loopcheck_with(&all, |_| {})
    }

    /// Whether the host's holder of the fixed port is untouched: still listening, and this
    /// process's (a connection to it is accepted here).
    fn assert_holder_untouched(&self) {
        let addr = self.held.local_addr().unwrap();
        let _client = TcpStream::connect(addr).expect("the held port still listens");
        self.held.set_nonblocking(true).unwrap();
        let started = Instant::now();
        loop {
            match self.held.accept() {
                Ok(_) => break,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    assert!(
                        started.elapsed() < Duration::from_secs(10),
                        "the holder accepts nothing"
                    );
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => panic!("accept on the held port: {e}"),
            }
        }
        self.held.set_nonblocking(false).unwrap();
    }
}

/// The runners to try: cargo test, and nextest where installed (said on stderr otherwise,
/// and a failure with `LOOPCHECK_REQUIRE_TOOLS=1`).
fn runners() -> Vec<&'static str> {
    if support::nextest_installed() {
        vec!["--cargo-test", "--nextest"]
    } else {
        eprintln!("skipped: the nextest half");
        vec!["--cargo-test"]
    }
}

fn test_named<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["tests"]
        .as_array()
        .expect("tests")
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no test `{name}` in {report:#}"))
}

/// Each test's name and status, by name.
fn statuses(report: &Value) -> Vec<(String, String)> {
    let mut statuses: Vec<(String, String)> = report["tests"]
        .as_array()
        .expect("tests")
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap().to_owned(),
                t["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    statuses.sort();
    statuses
}

#[test]
fn fixed_ports_collide_on_the_host_and_not_when_isolated() {
    let fixture = Fixture::new("isolate_fixed");
    for runner in runners() {
        let plain = fixture.test(&[runner, "--", "--test", "fixed_a", "--test", "fixed_b"]);
        assert_eq!(code(&plain), Exit::FOUND, "{runner}: {}", stderr(&plain));
        let report = json(&plain);
        for name in ["binds_the_fixed_port", "binds_the_same_fixed_port"] {
            assert_eq!(
                test_named(&report, name)["status"],
                "failed",
                "{runner}: {report:#}"
            );
        }

        let isolated = fixture.test(&[
            runner,
            "--isolate",
            "--concurrent",
            "2",
            "--repeat",
            "2",
            "--",
            "--test",
            "fixed_a",
            "--test",
            "fixed_b",
        ]);
        assert_eq!(code(&isolated), Exit::OK, "{runner}: {}", stderr(&isolated));
        let report = json(&isolated);
        assert_eq!(report["runs"], 4, "{report:#}");
        assert_eq!(
            statuses(&report),
            [
                ("binds_the_fixed_port".to_owned(), "passed".to_owned()),
                ("binds_the_same_fixed_port".to_owned(), "passed".to_owned())
            ],
            "{runner}"
        );
        let per = if runner == "--nextest" {
            "each test in a network namespace"
        } else {
            "each test binary in a network namespace"
        };
        assert!(stderr(&isolated).contains(per), "{runner}: {}", stderr(&isolated));
        fixture.assert_holder_untouched();
    }
}

#[test]
fn isolate_allow_reaches_a_host_service_and_without_it_the_diagnosis_names_the_flag() {
    let fixture = Fixture::new("isolate_allow");
    let port = fixture.service.to_string();
    for runner in runners() {
        let shut_out = fixture.test(&[runner, "--isolate", "--", "--test", "host_service"]);
        assert_eq!(code(&shut_out), Exit::FOUND, "{runner}: {}", stderr(&shut_out));
        let report = json(&shut_out);
        let test = test_named(&report, "reaches_the_host_service");
        assert_eq!(test["status"], "failed");
        let diagnosis = &test["diagnoses"][0];
        assert_eq!(diagnosis["code"], "LC005", "{runner}: {test:#}");
        assert!(
            diagnosis["summary"]
                .as_str()
                .unwrap()
                .contains("the test is isolated"),
            "{diagnosis:#}"
        );
        assert!(
            diagnosis["fix"]
                .as_str()
                .unwrap()
                .contains(&format!("--isolate-allow {port}")),
            "{diagnosis:#}"
        );

        let let_through = fixture.test(&[
            runner,
            "--isolate",
            "--isolate-allow",
            &port,
            "--",
            "--test",
            "host_service",
        ]);
        assert_eq!(code(&let_through), Exit::OK, "{runner}: {}", stderr(&let_through));
        assert_eq!(
            test_named(&json(&let_through), "reaches_the_host_service")["status"],
            "passed"
        );
    }
    // The same from the workspace's metadata.
    fixture.substitute(
        "Cargo.toml",
        "[workspace]\n",
        &format!("[workspace]\n\n[workspace.metadata.loopcheck]\nisolate-allow = [{port}]\n"),
    );
    let from_metadata = fixture.test(&["--cargo-test", "--isolate", "--", "--test", "host_service"]);
    assert_eq!(code(&from_metadata), Exit::OK, "{}", stderr(&from_metadata));
}

/// Whether `pid` is a live process (not a zombie).
fn alive(pid: u64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z'))
    })
}

#[test]
fn leftovers_in_the_namespace_are_ended_and_reported() {
    let fixture = Fixture::new("isolate_leaves");
    let junit = fixture.dir.path().join("junit.xml");
    for runner in runners() {
        let junit_arg = junit.to_string_lossy();
        let output = fixture.test(&[
            runner,
            "--isolate",
            "--junit",
            &junit_arg,
            "--",
            "--test",
            "leaves",
        ]);
        assert_eq!(code(&output), Exit::OK, "{runner}: {}", stderr(&output));
        if runner == "--nextest" {
            let xml = std::fs::read_to_string(&junit).unwrap();
            assert!(xml.contains("LC012") && xml.contains("LC013"), "{xml}");
        }
        let report = json(&output);
        let test = test_named(&report, "leaves_a_listener_and_a_child");
        assert_eq!(test["status"], "passed");
        // Under nextest each leftover is the test's; under cargo test (one process for the
        // binary, no `LOOPCHECK_TEST` in plain tests) the run's.
        let leaks: Vec<&Value> = test["leaks"]
            .as_array()
            .unwrap()
            .iter()
            .chain(report["leaks"].as_array().unwrap())
            .collect();
        if runner == "--nextest" {
            assert_eq!(test["leaks"].as_array().unwrap().len(), 2, "{report:#}");
        }
        let listener = leaks
            .iter()
            .find(|l| l["code"] == "LC012")
            .unwrap_or_else(|| panic!("{runner}: no LC012 in {report:#}"));
        assert_eq!(
            listener["addr"],
            format!("127.0.0.1:{}", fixture.leak_port),
            "{listener:#}"
        );
        assert!(
            listener["summary"]
                .as_str()
                .unwrap()
                .contains("network namespace"),
            "{listener:#}"
        );
        let child = leaks
            .iter()
            .find(|l| l["code"] == "LC013")
            .unwrap_or_else(|| panic!("{runner}: no LC013 in {report:#}"));
        assert!(
            child["summary"].as_str().unwrap().contains("sleep 60"),
            "{child:#}"
        );
        for leak in [listener, child] {
            let pid = leak["processes"][0]["pid"].as_u64().expect("a pid");
            assert!(!alive(pid), "{runner}: pid {pid} still runs: {leak:#}");
            assert!(leak["evidence"].to_string().contains("--isolate"), "{leak:#}");
        }
    }
}

#[test]
fn a_runner_the_user_configured_still_runs_the_tests() {
    let fixture = Fixture::new("isolate_chained");
    let log = fixture.dir.path().join("runner.log");
    let script = fixture.dir.path().join("runner.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\necho \"$*\" >> \"$(dirname \"$0\")/runner.log\"\nexec \"$@\"\n",
    )
    .unwrap();
    std::fs::create_dir_all(fixture.dir.path().join(".cargo")).unwrap();
    // A relative path: from the directory that holds `.cargo`, as cargo resolves it.
    std::fs::write(
        fixture.dir.path().join(".cargo/config.toml"),
        "[target.'cfg(target_os = \"linux\")']\nrunner = [\"./runner.sh\"]\n",
    )
    .unwrap();
    let mut permissions = std::fs::metadata(&script).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o755);
    std::fs::set_permissions(&script, permissions).unwrap();
    for runner in runners() {
        let _ = std::fs::remove_file(&log);
        let output = fixture.test(&[runner, "--isolate", "--", "--test", "fixed_a"]);
        // Passing proves isolation: this process holds the port on the host.
        assert_eq!(code(&output), Exit::OK, "{runner}: {}", stderr(&output));
        assert!(
            stderr(&output).contains("through your runner"),
            "{}",
            stderr(&output)
        );
        let ran = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(ran.contains("fixed_a-"), "{runner}: the runner ran {ran:?}");
        if runner == "--nextest" {
            assert!(ran.contains("--exact binds_the_fixed_port"), "{ran}");
            assert!(
                ran.contains("--list"),
                "listing goes through the runner too: {ran}"
            );
        }
    }

    // The same runner given in the environment, as `CARGO_TARGET_<TRIPLE>_RUNNER`.
    std::fs::remove_file(fixture.dir.path().join(".cargo/config.toml")).unwrap();
    let _ = std::fs::remove_file(&log);
    let rustc = Command::new("rustc").arg("-vV").output().expect("rustc -vV");
    let host = String::from_utf8_lossy(&rustc.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_owned))
        .expect("a host");
    let var = format!(
        "CARGO_TARGET_{}_RUNNER",
        host.to_uppercase().replace(['-', '.'], "_")
    );
    let output = fixture.loopcheck_with(
        &[
            "test",
            "--format",
            "json",
            "--cargo-test",
            "--isolate",
            "--",
            "--test",
            "fixed_a",
        ],
        |command| {
            command.env(&var, &script);
        },
    );
    assert_eq!(code(&output), Exit::OK, "{}", stderr(&output));
    assert!(
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("fixed_a-")
    );
}

/// The test binary `fixed_a` of the fixture, built.
fn built_binary(fixture: &Fixture, test: &str) -> PathBuf {
    let output = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args(["test", "--no-run", "--message-format", "json", "--test", test])
        .current_dir(fixture.dir.path())
        .env("CARGO_TARGET_DIR", Fixture::target_dir())
        .stderr(Stdio::inherit())
        .output()
        .expect("cargo test --no-run");
    assert!(output.status.success());
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find_map(|message| message["executable"].as_str().map(PathBuf::from))
        .expect("an executable")
}

/// A copy of `file` in `dir` that every user may read and run: the checkout may sit under a
/// directory that an unprivileged user cannot enter.
fn public_copy(dir: &Path, file: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let copy = dir.join(file.file_name().unwrap());
    std::fs::copy(file, &copy).unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
    copy
}

/// The wrapper (`exe`) run by hand on `binary`, as cargo runs a target runner, as uid/gid `id`.
fn wrapped_as(exe: &Path, id: u32, binary: &Path, args: &[&str]) -> Output {
    run_bounded(wrapper_as(exe, id, binary, args), Duration::from_secs(120))
}

fn wrapper_as(exe: &Path, id: u32, binary: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(exe);
    command.args(["loopcheck", "__isolate"]).arg(binary).args(args);
    command
        .env_remove("LOOPCHECK_RUN_DIR")
        .env_remove("LOOPCHECK_ISOLATE");
    as_user(&mut command, id);
    command
}

fn as_user(command: &mut Command, id: u32) {
    // SAFETY: setgroups, setgid and setuid are async-signal-safe.
    unsafe {
        command.pre_exec(move || {
            if libc::setgroups(0, std::ptr::null()) != 0 || libc::setgid(id) != 0 || libc::setuid(id) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[test]
fn an_unprivileged_user_is_isolated_in_a_user_namespace() {
    if !support::needs_root(
        "the unprivileged path is tested by dropping from root; this test runs as a normal user already, which every other test here exercises",
    ) {
        return;
    }
    const NOBODY: u32 = 65534;
    let fixture = Fixture::new("isolate_nobody");
    let public = tempfile::Builder::new()
        .prefix("isolate-nobody")
        .tempdir_in(std::env::temp_dir())
        .unwrap();
    std::fs::set_permissions(public.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let binary = public_copy(public.path(), &built_binary(&fixture, "fixed_a"));
    let exe = public_copy(public.path(), Path::new(env!("CARGO_BIN_EXE_cargo-loopcheck")));
    let check = wrapped_as(&exe, NOBODY, Path::new("--check"), &[]);
    let answer: Value = serde_json::from_slice(&check.stdout).unwrap_or_default();
    if code(&check) != Exit::OK {
        // Where this user may not create user namespaces, the check must say why, in a line.
        let why = answer["why"].as_str().expect("a reason");
        assert!(
            !why.is_empty() && answer["fix"].as_str().is_some_and(|f| !f.is_empty()),
            "{answer}"
        );
        support::skip(&format!(
            "uid {NOBODY} cannot create user namespaces here ({why}); asserted the unavailable path's message instead"
        ));
        return;
    }
    assert!(
        answer["available"].as_str().unwrap().contains("user namespace"),
        "{answer}"
    );
    let isolated = wrapped_as(&exe, NOBODY, &binary, &["--exact", "binds_the_fixed_port"]);
    assert_eq!(
        code(&isolated),
        0,
        "{}\n{}",
        String::from_utf8_lossy(&isolated.stdout),
        stderr(&isolated)
    );
    // The same user without the wrapper meets this process's holder.
    let mut plain = Command::new(&binary);
    plain.args(["--exact", "binds_the_fixed_port"]);
    as_user(&mut plain, NOBODY);
    let plain = run_bounded(plain, Duration::from_secs(60));
    assert_ne!(plain.status.code(), Some(0), "the fixed port is held on the host");

    // A namespace kept for the run, as `cargo loopcheck test --isolate` keeps them: the
    // same user joins it (its user namespace, then its network namespace).
    let mut holder = wrapper_as(&exe, NOBODY, Path::new("--hold"), &[]);
    let mut holder = holder
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut ready = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.stdout.take().unwrap()),
        &mut ready,
    )
    .unwrap();
    assert!(ready.contains("\"available\""), "{ready}");
    let kept = std::fs::read_link(format!("/proc/{}/ns/net", holder.id())).unwrap();
    let mut joined = wrapper_as(
        &exe,
        NOBODY,
        Path::new("sh"),
        &["-c", "readlink /proc/self/ns/net"],
    );
    joined.env("LOOPCHECK_ISOLATE", format!("{{\"pool\":[{}]}}", holder.id()));
    let joined = run_bounded(joined, Duration::from_secs(60));
    assert_eq!(
        String::from_utf8_lossy(&joined.stdout).trim(),
        kept.to_string_lossy(),
        "{}",
        stderr(&joined)
    );
    drop(holder.stdin.take());
    assert!(holder.wait().unwrap().success());
    fixture.assert_holder_untouched();
}

/// Makes the command's process a root without capabilities, in a user namespace of its own
/// where no further user namespace may be created (`user.max_user_namespaces = 0` there): a
/// real host on which isolation is unavailable, as in a container without CAP_SYS_ADMIN and
/// with user namespaces disabled. Files keep their owners (root is mapped to root).
fn without_namespaces(command: &mut Command) {
    // SAFETY: only system calls and writes of constant bytes to /proc between fork and exec.
    unsafe {
        command.pre_exec(|| {
            let fail = || Err(std::io::Error::last_os_error());
            if libc::unshare(libc::CLONE_NEWUSER) != 0 {
                return fail();
            }
            for (path, text) in [
                (c"/proc/self/setgroups", &b"deny"[..]),
                (c"/proc/self/uid_map", b"0 0 1"),
                (c"/proc/self/gid_map", b"0 0 1"),
                (c"/proc/sys/user/max_user_namespaces", b"0"),
            ] {
                let fd = libc::open(path.as_ptr(), libc::O_WRONLY);
                if fd < 0 || libc::write(fd, text.as_ptr().cast(), text.len()) < 0 {
                    return fail();
                }
                libc::close(fd);
            }
            // No capability survives the exec: the bounding set is emptied.
            for cap in 0..64 {
                libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0);
            }
            Ok(())
        });
    }
}

#[test]
fn where_isolation_is_unavailable_it_says_why_falls_back_or_exits_3() {
    if !support::needs_root(
        "making isolation unavailable needs root here (a user namespace whose limit is then set to 0)",
    ) {
        return;
    }
    let fixture = Fixture::new("isolate_unavailable");
    let required = fixture.loopcheck_with(
        &["test", "--isolate=require", "--", "--test", "leaves"],
        without_namespaces,
    );
    assert_eq!(code(&required), Exit::COULD_NOT_RUN, "{}", stderr(&required));
    let message = stderr(&required);
    let line = message
        .lines()
        .find(|l| l.contains("network isolation is unavailable"))
        .unwrap_or_else(|| panic!("{message}"));
    assert!(
        line.contains("user namespaces are disabled") && line.contains("sysctl"),
        "{line}"
    );

    let fallback = fixture.loopcheck_with(
        &["test", "--cargo-test", "--isolate", "--", "--test", "fixed_a"],
        without_namespaces,
    );
    let message = stderr(&fallback);
    assert!(
        message.contains("warning: network isolation is unavailable")
            && message.contains("run without isolation"),
        "{message}"
    );
    // Not isolated, the test meets this process's holder of its port.
    assert_eq!(code(&fallback), Exit::FOUND, "{message}");

    let doctor = fixture.loopcheck_with(&["doctor", "--format", "json"], without_namespaces);
    let checks = json(&doctor);
    let isolation = checks["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "isolation")
        .unwrap_or_else(|| panic!("no isolation check in {checks:#}"));
    assert_eq!(isolation["status"], "warning", "{isolation:#}");
    assert!(
        isolation["message"]
            .as_str()
            .unwrap()
            .contains("user namespaces are disabled"),
        "{isolation:#}"
    );

    let available = fixture.loopcheck_with(&["doctor", "--format", "json"], |_| {});
    let isolation = json(&available)["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "isolation")
        .cloned()
        .expect("an isolation check");
    assert_eq!(isolation["status"], "ok", "{isolation:#}");
}

#[test]
fn excluded_tests_run_without_isolation() {
    let fixture = Fixture::new("isolate_excluded");
    for runner in runners() {
        let output = fixture.test(&[
            runner,
            "--isolate",
            "--isolate-exclude",
            "same_fixed",
            "--",
            "--test",
            "fixed_a",
            "--test",
            "fixed_b",
        ]);
        assert_eq!(code(&output), Exit::FOUND, "{runner}: {}", stderr(&output));
        // Not isolated, the excluded test meets this process's holder of the port.
        assert_eq!(
            statuses(&json(&output)),
            [
                ("binds_the_fixed_port".to_owned(), "passed".to_owned()),
                ("binds_the_same_fixed_port".to_owned(), "failed".to_owned())
            ],
            "{runner}: {}",
            stderr(&output)
        );
    }
}

/// The wrapper on `sh -c SCRIPT`, as a target runner is started.
fn wrapped_shell(script: &str, extra: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cargo-loopcheck"));
    command
        .args(["loopcheck", "__isolate", "sh", "-c", script])
        .args(extra)
        .env_remove("LOOPCHECK_RUN_DIR")
        .env_remove("LOOPCHECK_ISOLATE");
    command
}

#[test]
fn the_wrapper_passes_exit_status_and_signals_through_and_lists_unisolated() {
    let host = std::fs::read_link("/proc/self/ns/net").unwrap();
    let own = run_bounded(
        wrapped_shell("readlink /proc/self/ns/net; exit 42", &[]),
        Duration::from_secs(60),
    );
    assert_eq!(own.status.code(), Some(42), "{}", stderr(&own));
    let inside = String::from_utf8_lossy(&own.stdout).trim().to_owned();
    assert!(
        inside.starts_with("net:[") && Path::new(&inside) != host,
        "{inside} vs {host:?}"
    );
    // nextest lists tests through the runner: that runs as it is, in the host's namespace.
    let listed = run_bounded(
        wrapped_shell("readlink /proc/self/ns/net", &["--list"]),
        Duration::from_secs(60),
    );
    assert_eq!(
        String::from_utf8_lossy(&listed.stdout).trim(),
        host.to_string_lossy()
    );

    // A signal the test dies of is the wrapper's death too.
    let killed = run_bounded(wrapped_shell("kill -TERM $$", &[]), Duration::from_secs(60));
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&killed.status),
        Some(libc::SIGTERM)
    );
    // A signal sent to the wrapper reaches the test.
    let mut child = wrapped_shell(
        "trap 'exit 7' TERM; echo ready; while :; do sleep 0.05; done",
        &[],
    )
    .stdout(Stdio::piped())
    .spawn()
    .unwrap();
    let mut ready = [0u8; 6];
    child.stdout.take().unwrap().read_exact(&mut ready).unwrap();
    // SAFETY: kill on the pid of a child this test started and has not reaped.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the test never got the signal"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(7));
}
