//! The real `cargo-loopcheck` binary, run as a user would.

use std::net::TcpStream;
use std::process::{Command, Output};
use std::time::Duration;

use cargo_loopcheck::Exit;

fn cargo_loopcheck(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cargo-loopcheck"));
    command
        .arg("loopcheck")
        .args(args)
        .env_remove("CARGO_TERM_COLOR")
        .env_remove("NO_COLOR");
    command
}

fn run(args: &[&str]) -> Output {
    cargo_loopcheck(args).output().expect("run cargo-loopcheck")
}

fn code(output: &Output) -> u8 {
    output.status.code().expect("exited normally") as u8
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn json(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

#[test]
fn help_is_stable() {
    for command in [
        "", "check", "lint", "doctor", "ports", "probe", "reap", "test", "explain", "lease",
    ] {
        let args: Vec<&str> = [command, "--help"]
            .into_iter()
            .filter(|a| !a.is_empty())
            .collect();
        let output = run(&args);
        assert_eq!(code(&output), Exit::OK);
        let name = if command.is_empty() {
            "help".to_owned()
        } else {
            format!("help_{command}")
        };
        insta::assert_snapshot!(name, String::from_utf8_lossy(&output.stdout));
    }
}

#[test]
fn usage_errors_exit_with_2() {
    for args in [
        &["no-such-command"][..],
        &["ports", "--no-such-flag"],
        &["ports", "--format", "github"],
        &["probe", "not-an-address"],
        &["probe", "127.0.0.1:99999"],
        // loopcheck:allow(LC010): an argument or fixture file of the command under test, never bound
        &["probe", "127.0.0.1:80", "--timeout", "forever"],
        // loopcheck:allow(LC010): an argument or fixture file of the command under test, never bound
        &["probe", "127.0.0.1:80", "--timeout", "0s"],
        &["probe", "127.0.0.1:0"],
        &["explain", "LC999"],
        &["test", "--format", "sarif"],
        &["test", "--repeat", "0"],
        &["test", "--concurrent", "many"],
        &["test", "--nextest", "--cargo-test"],
        &["test", "--no-such-flag"],
        &["--color", "sometimes", "explain", "LC001"],
        &["lease"],
        &["lease", "--block", "2"],
        &["lease", "--count", "2", "--block", "2", "--", "true"],
        &["lease", "--count", "0", "--", "true"],
        &["lease", "--format", "sarif", "--", "true"],
    ] {
        let output = run(args);
        assert_eq!(code(&output), Exit::USAGE, "{args:?}: {}", stderr(&output));
        assert!(stderr(&output).contains("error"), "{args:?}: {}", stderr(&output));
    }
}

#[test]
fn message_format_repeats_as_cargo_allows_and_two_kinds_are_a_usage_error() {
    // cargo collects every `--message-format` and its comma-separated values, and refuses two
    // kinds of output; clap's "cannot be used multiple times" is not what cargo users see.
    for args in [
        &["explain", "LC001", "--message-format", "json", "--format", "json"][..],
        &["explain", "LC001", "--message-format", "json,human"],
    ] {
        let output = run(args);
        assert_eq!(code(&output), Exit::USAGE, "{args:?}: {}", stderr(&output));
        assert_eq!(
            stderr(&output).trim(),
            "error: cannot specify two kinds of `message-format` arguments",
            "{args:?}"
        );
    }
    let one = run(&["explain", "LC001", "--message-format", "json"]);
    assert_eq!(code(&one), Exit::OK, "{}", stderr(&one));
    assert!(String::from_utf8_lossy(&one.stdout).contains("\"format_version\": 1"));
}

#[test]
fn a_bad_manifest_path_could_not_run() {
    let output = run(&["ports", "--manifest-path", "/nonexistent/Cargo.toml"]);
    assert_eq!(code(&output), Exit::COULD_NOT_RUN, "{}", stderr(&output));
    assert!(
        stderr(&output).contains("cannot read the workspace at `/nonexistent/Cargo.toml`"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn explain_prints_the_section_of_a_code_or_name() {
    let by_code = run(&["explain", "LC002"]);
    assert_eq!(code(&by_code), Exit::OK);
    assert!(String::from_utf8_lossy(&by_code.stdout).starts_with("## LC002 zombie-listener"));
    let by_name = run(&["explain", "zombie-listener"]);
    assert_eq!(by_name.stdout, by_code.stdout);
    let as_json = json(&run(&["explain", "lc015", "--format", "json"]));
    assert_eq!(as_json["code"], "LC015");
    assert_eq!(as_json["severity"], "info");
    let unknown = stderr(&run(&["explain", "LC999"]));
    assert!(
        unknown.contains("unknown diagnostic code `LC999`") && unknown.contains("LC001 (port-in-use)"),
        "{unknown}"
    );
}

#[test]
fn probe_names_the_process_that_answers() {
    let listener = loopcheck::tcp_listener().unwrap();
    let addr = listener.local_addr().unwrap();
    // A server that accepts: `probe` waits for that.
    let output = std::thread::scope(|scope| {
        scope.spawn(|| listener.accept().map(drop));
        run(&["probe", &addr.to_string(), "--format", "json"])
    });
    assert_eq!(code(&output), Exit::OK, "{}", stderr(&output));
    let diagnosis = json(&output);
    assert_eq!(diagnosis["code"], "LC001");
    assert_eq!(diagnosis["severity"], "info");
    assert_eq!(diagnosis["processes"][0]["pid"], std::process::id());
    assert!(
        diagnosis["processes"][0]["command"]
            .as_str()
            .unwrap()
            .contains("cli-")
    );
}

#[test]
fn probe_explains_a_refusal_and_exits_with_1() {
    let lease = loopcheck::reserve_port().unwrap();
    let output = run(&["probe", &lease.addr().to_string()]);
    assert_eq!(code(&output), Exit::FOUND);
    let text = stderr(&output);
    assert!(
        text.starts_with(&format!("error[LC005]: nothing listens on {}", lease.addr())),
        "{text}"
    );
    assert!(
        text.contains(&format!("leased by pid {}", std::process::id())),
        "{text}"
    );
    assert!(
        !text.contains('\x1b'),
        "no colour when stderr is not a terminal: {text}"
    );
}

#[test]
fn probe_tries_every_address_a_name_resolves_to() {
    let lease = loopcheck::reserve_port().unwrap();
    let listener = std::net::TcpListener::bind(("127.0.0.1", lease.port())).unwrap();
    let output = std::thread::scope(|scope| {
        scope.spawn(|| listener.accept().map(drop));
        run(&[
            "probe",
            &format!("localhost:{}", lease.port()),
            "--format",
            "json",
        ])
    });
    let diagnosis = json(&output);
    // Whatever order `localhost` resolves in, the IPv4 listener answers.
    assert_eq!(code(&output), Exit::OK, "{diagnosis}");
    assert_eq!(diagnosis["addr"], format!("127.0.0.1:{}", lease.port()));
}

#[test]
fn color_follows_the_flag_and_cargo_term_color() {
    let lease = loopcheck::reserve_port().unwrap();
    let addr = lease.addr().to_string();
    let always = run(&["probe", &addr, "--color", "always"]);
    assert!(stderr(&always).contains("\x1b["), "{}", stderr(&always));
    let from_env = cargo_loopcheck(&["probe", &addr])
        .env("CARGO_TERM_COLOR", "always")
        .output()
        .unwrap();
    assert!(stderr(&from_env).contains("\x1b["));
    let flag_wins = cargo_loopcheck(&["probe", &addr, "--color", "never"])
        .env("CARGO_TERM_COLOR", "always")
        .output()
        .unwrap();
    assert!(!stderr(&flag_wins).contains('\x1b'));
}

#[test]
fn ports_lists_a_listener_with_its_pid_and_lease() {
    let listener = loopcheck::tcp_listener().unwrap();
    let addr = listener.local_addr().unwrap();
    let port = addr.port().to_string();
    let output = run(&["ports", "--port", &port, "--format", "json"]);
    assert_eq!(code(&output), Exit::OK, "{}", stderr(&output));
    let report = json(&output);
    let rows = report["sockets"].as_array().unwrap();
    let row = rows
        .iter()
        .find(|r| r["local"] == addr.to_string())
        .expect("our listener is listed");
    assert_eq!(row["protocol"], "tcp");
    assert_eq!(row["state"], "listen");
    assert_eq!(row["pid"], std::process::id());
    assert_eq!(row["zombie"], false);
    assert_eq!(row["lease"]["status"], "held");
    assert_eq!(row["lease"]["pid"], std::process::id());
    assert_eq!(
        row["lease"]["test"],
        "ports_lists_a_listener_with_its_pid_and_lease"
    );
    // This test binary belongs to the cargo-loopcheck package of this workspace.
    assert_eq!(row["workspace_package"], "cargo-loopcheck");

    let human = run(&["ports", "--port", &port]);
    let text = stderr(&human);
    assert!(text.lines().next().unwrap().starts_with("PROTO"), "{text}");
    assert!(
        text.contains(&addr.to_string()) && text.contains("leased ports_lists_a_listener"),
        "{text}"
    );
    assert!(human.stdout.is_empty(), "human output goes to stderr");
}

#[test]
fn ports_filters_by_pid_and_shows_connections_with_all() {
    let listener = loopcheck::tcp_listener().unwrap();
    let addr = listener.local_addr().unwrap();
    let client = TcpStream::connect(addr).unwrap();
    client.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let (_accepted, _) = listener.accept().unwrap();
    let pid = std::process::id().to_string();
    let port = addr.port().to_string();
    let listeners = json(&run(&[
        "ports", "--pid", &pid, "--port", &port, "--format", "json",
    ]));
    assert!(
        listeners["sockets"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["state"] == "listen")
    );
    let all = json(&run(&[
        "ports", "--all", "--pid", &pid, "--port", &port, "--format", "json",
    ]));
    let states: Vec<&str> = all["sockets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["state"].as_str().unwrap())
        .collect();
    assert!(
        states.contains(&"listen") && states.contains(&"established"),
        "{states:?}"
    );
    let nobody = json(&run(&[
        "ports", "--pid", "1", "--port", &port, "--format", "json",
    ]));
    assert_eq!(nobody["sockets"].as_array().unwrap().len(), 0);
}

fn demo() -> String {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/demo/Cargo.toml")
        .to_str()
        .unwrap()
        .to_owned()
}

#[test]
fn check_is_the_default_and_finds_every_planted_problem_of_the_demo() {
    let demo = demo();
    let output = run(&["--manifest-path", &demo, "--format", "json"]);
    assert_eq!(code(&output), Exit::FOUND, "{}", stderr(&output));
    let report = json(&output);
    let mut lint: Vec<(String, u64, u64)> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["file"].is_string())
        .map(|f| {
            (
                f["code"].as_str().unwrap().to_owned(),
                f["line"].as_u64().unwrap(),
                f["port"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    lint.sort();
    assert_eq!(
        lint,
        [
            ("LC010".into(), 17, 8080),
            ("LC010".into(), 19, 8080),
            ("LC011".into(), 25, 0),
            ("LC014".into(), 34, 0)
        ]
    );
    assert!(
        report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["file"].is_string())
            .all(|f| f["file"] == "tests/echo.rs")
    );
    assert!(
        report["doctor"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "localhost")
    );
    assert!(report["summary"]["errors"].as_u64().unwrap() >= 3);
}

#[test]
fn lint_renders_github_annotations_and_sarif() {
    let demo = demo();
    let github = run(&["lint", "--manifest-path", &demo, "--format", "github"]);
    assert_eq!(code(&github), Exit::FOUND);
    let text = String::from_utf8_lossy(&github.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(
        lines[0].starts_with("::error file=tests/echo.rs,line=17,col="),
        "{text}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("::warning file=tests/echo.rs,line=34")
                && l.contains("title=LC014 racy-allocation")),
        "{text}"
    );

    let sarif = json(&run(&["lint", "--manifest-path", &demo, "--format", "sarif"]));
    assert_eq!(sarif["version"], "2.1.0");
    let results = sarif["runs"][0]["results"].as_array().unwrap();
    assert_eq!(results.len(), 4);
    assert!(
        results
            .iter()
            .all(|r| r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "tests/echo.rs")
    );
}

#[test]
fn formats_that_a_command_lacks_are_usage_errors() {
    for args in [
        &["doctor", "--format", "sarif"][..],
        // loopcheck:allow(LC010): an argument or fixture file of the command under test, never bound
        &["probe", "127.0.0.1:1", "--format", "github"],
        &["reap", "--format", "github"],
        &["explain", "LC001", "--format", "sarif"],
    ] {
        let output = run(args);
        assert_eq!(code(&output), Exit::USAGE, "{args:?}: {}", stderr(&output));
        assert!(
            stderr(&output).contains("does not support `--message-format"),
            "{args:?}: {}",
            stderr(&output)
        );
    }
}

#[test]
fn lint_human_output_reads_like_cargo() {
    let output = run(&["lint", "--manifest-path", &demo(), "--color", "never"]);
    assert_eq!(code(&output), Exit::FOUND);
    insta::assert_snapshot!("lint_demo_human", stderr(&output));
}

#[cfg(unix)]
#[test]
fn unreadable_files_are_reported_while_the_rest_is_linted() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::write(
        root.join("Cargo.toml"),
        "[package]\nname = \"unreadable\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n[workspace]\n",
    )
    .unwrap();
    std::fs::create_dir_all(root.join("src")).unwrap();
    std::fs::write(root.join("src/lib.rs"), "").unwrap();
    std::fs::create_dir_all(root.join("tests")).unwrap();
    std::fs::write(
        root.join("tests/fixed.rs"),
        // loopcheck:allow(LC010): an argument or fixture file of the command under test, never bound
        "#[test]\nfn t() {\n    std::net::TcpListener::bind(\"127.0.0.1:8080\").unwrap();\n}\n",
    )
    .unwrap();
    // A dangling symlink cannot be read by anyone, root included.
    std::os::unix::fs::symlink(root.join("gone.rs"), root.join("tests/dangling.rs")).unwrap();
    std::fs::write(root.join("tests/not_utf8.rs"), b"fn t() { let _ = \"\xff\"; }\n").unwrap();
    let manifest = root.join("Cargo.toml");
    let output = run(&[
        "lint",
        "--manifest-path",
        manifest.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(code(&output), Exit::FOUND, "{}", stderr(&output));
    let report = json(&output);
    let errors: Vec<&str> = report["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["file"].as_str().unwrap())
        .collect();
    assert!(
        errors.contains(&"tests/dangling.rs") && errors.contains(&"tests/not_utf8.rs"),
        "{report}"
    );
    let findings = report["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 1, "{report}");
    assert_eq!(
        (findings[0]["file"].as_str(), findings[0]["port"].as_u64()),
        (Some("tests/fixed.rs"), Some(8080))
    );
}

/// The README's and docs/cli.md's usage blocks name every subcommand `--help` lists, and no
/// other.
#[test]
fn the_usage_in_readme_and_docs_matches_help() {
    let help = String::from_utf8(run(&["--help"]).stdout).unwrap();
    let mut commands: Vec<&str> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        // A wrapped description continues on a line indented further than the commands.
        .filter(|l| !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    commands.sort_unstable();
    for doc in ["../README.md", "../docs/cli.md"] {
        let text =
            std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(doc)).unwrap();
        let mut documented: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("cargo loopcheck "))
            .filter_map(|rest| rest.split_whitespace().next())
            .map(|word| word.trim_matches(|c| c == '[' || c == ']'))
            .collect();
        documented.sort_unstable();
        documented.dedup();
        assert_eq!(documented, commands, "{doc} lists other commands than --help");
    }
}

/// `doctor` says what the allocator tries first and what the default range leaves out, and a
/// `LOOPCHECK_PORT_RANGE` that asks for low ports gets them.
#[test]
fn doctor_says_which_ports_are_tried_first() {
    let message = |range: Option<&str>| {
        let mut command = cargo_loopcheck(&["doctor", "--format", "json"]);
        match range {
            Some(range) => command.env("LOOPCHECK_PORT_RANGE", range),
            None => command.env_remove("LOOPCHECK_PORT_RANGE"),
        };
        let report = json(&command.output().unwrap());
        let checks = report["checks"].as_array().unwrap().clone();
        let check = checks
            .into_iter()
            .find(|c| c["name"] == "port ranges")
            .expect("a port ranges check");
        check["message"].as_str().unwrap().to_owned()
    };
    let default = message(None);
    assert!(default.contains("loopcheck allocates from 10000-"), "{default}");
    assert!(default.contains("trying 20000-"), "{default}");
    assert!(default.contains("ports below 10000"), "{default}");
    assert!(
        default.contains("unless `LOOPCHECK_PORT_RANGE` asks for them"),
        "{default}"
    );
    let asked = message(Some("3000-9000"));
    assert!(
        asked.contains("allocates from 3000-9000 (6001 ports), trying 3000-7095 first"),
        "{asked}"
    );
}
