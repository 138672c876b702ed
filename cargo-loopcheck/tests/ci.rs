//! What CI reads: every command's JSON against its schema in `docs/schema/`, the job summary
//! of `test` (a failing and a passing run) and `check`, and what each crate's tarball holds.

mod schema;
mod support;

use support::{code, json, run_bounded, stderr};

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use cargo_loopcheck::Exit;
use serde_json::Value;

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}

fn demo() -> String {
    repository()
        .join("examples/demo/Cargo.toml")
        .display()
        .to_string()
}

fn cargo_loopcheck(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cargo-loopcheck"));
    command
        .arg("loopcheck")
        .args(args)
        .env_remove("GITHUB_STEP_SUMMARY")
        .env_remove("CARGO_TERM_COLOR")
        .env_remove("NO_COLOR")
        .stdin(Stdio::null());
    command
}

fn run(args: &[&str]) -> Output {
    run_bounded(cargo_loopcheck(args), Duration::from_secs(300))
}

/// `args` with `--message-format json`, its exit code checked, its document validated.
fn document(shape: &str, args: &[&str], expected: u8) -> Value {
    let output = run(&[args, &["--message-format", "json"]].concat());
    assert_eq!(code(&output), expected, "{args:?}: {}", stderr(&output));
    let document = json(&output);
    assert_eq!(document["format_version"], 1, "{args:?}: {document:#}");
    schema::assert_valid(shape, &document);
    document
}

#[test]
fn every_command_s_json_matches_its_schema() {
    let demo = demo();
    let check = document("check", &["check", "--manifest-path", &demo], Exit::FOUND);
    assert!(!check["findings"].as_array().unwrap().is_empty());
    assert!(!check["doctor"].as_array().unwrap().is_empty());
    let lint = document("check", &["lint", "--manifest-path", &demo], Exit::FOUND);
    assert!(lint.get("doctor").is_none(), "{lint:#}");

    // A listener of this process, so that the rows carry a pid, a command and a lease.
    let listener = loopcheck::tcp_listener().unwrap();
    let addr = listener.local_addr().unwrap();
    let port = addr.port().to_string();
    let ports = document("ports", &["ports", "--port", &port], Exit::OK);
    let row = &ports["sockets"][0];
    assert_eq!(row["pid"], std::process::id(), "{ports:#}");
    assert_eq!(row["lease"]["status"], "held", "{ports:#}");
    document("ports", &["ports", "--all"], Exit::OK);

    // A server that accepts: `probe` waits for the accept, and one that never accepts is LC006.
    let server = listener.try_clone().unwrap();
    let accepting = std::thread::spawn(move || server.accept().map(drop));
    let answered = document("probe", &["probe", &addr.to_string()], Exit::OK);
    accepting.join().unwrap().unwrap();
    assert_eq!(answered["processes"][0]["pid"], std::process::id());
    let free = loopcheck::reserve_port().unwrap();
    let refused = document("probe", &["probe", &free.addr().to_string()], Exit::FOUND);
    assert_eq!(refused["code"], "LC005");

    let doctor = run(&["doctor", "--message-format", "json"]);
    assert!(
        [Exit::OK, Exit::FOUND].contains(&code(&doctor)),
        "{}",
        stderr(&doctor)
    );
    schema::assert_valid("doctor", &json(&doctor));
    document("reap", &["reap", "--manifest-path", &demo], Exit::OK);
    for code in loopcheck::report::Code::ALL {
        document("explain", &["explain", &code.to_string()], Exit::OK);
    }

    // `--format` is still understood; SARIF is not ours to version.
    let alias = run(&["lint", "--manifest-path", &demo, "--format", "json"]);
    assert_eq!(json(&alias)["format_version"], 1);
    let sarif = json(&run(&[
        "lint",
        "--manifest-path",
        &demo,
        "--message-format",
        "sarif",
    ]));
    assert_eq!(sarif["version"], "2.1.0");
    assert!(sarif.get("format_version").is_none(), "{sarif:#}");
}

#[test]
fn every_schema_is_valid_and_names_its_file() {
    let mut shapes = Vec::new();
    for entry in std::fs::read_dir(schema::dir()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        let Some(shape) = name.strip_suffix(".schema.json") else {
            panic!("{name} in docs/schema is not a schema");
        };
        let schema: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert!(
            jsonschema::meta::is_valid(&schema),
            "{name} is not a valid JSON Schema"
        );
        assert_eq!(schema["$id"], name.as_str(), "{name}");
        if shape != "common" {
            assert!(
                schema["required"]
                    .as_array()
                    .unwrap()
                    .contains(&"format_version".into()),
                "{name} does not require format_version"
            );
        }
        shapes.push(shape.to_owned());
    }
    shapes.sort();
    // Each shape is checked against real output here, in lease.rs, reap.rs and test_command.rs.
    assert_eq!(
        shapes,
        [
            "check", "common", "doctor", "explain", "lease", "ports", "probe", "reap", "test"
        ]
    );
}

/// A program that reads a key the contract promises fails validation when the key is renamed
/// or missing: the schemas hold the contract, not only the types.
#[test]
fn a_renamed_or_missing_key_breaks_the_schema() {
    let check = document("check", &["check", "--manifest-path", &demo()], Exit::FOUND);
    let renamed = |document: &Value, pointer: &str, from: &str, to: &str| {
        let mut document = document.clone();
        let object = document.pointer_mut(pointer).unwrap().as_object_mut().unwrap();
        let value = object
            .remove(from)
            .unwrap_or_else(|| panic!("no `{from}` at {pointer}"));
        if !to.is_empty() {
            object.insert(to.to_owned(), value);
        }
        document
    };
    for (pointer, from, to) in [
        ("/findings/0", "line", "lineno"),
        ("/findings/0", "column", "col"),
        ("/findings/0", "suggestion", ""),
        ("/findings/0", "code", "id"),
        ("", "summary", ""),
        ("/summary", "errors", "error_count"),
    ] {
        let broken = renamed(&check, pointer, from, to);
        assert!(
            !schema::violations("check", &broken).is_empty(),
            "`{from}` at `{pointer}` renamed to `{to}` still matches the schema"
        );
    }

    let listener = loopcheck::tcp_listener().unwrap();
    let addr = listener.local_addr().unwrap();
    let server = listener.try_clone().unwrap();
    let accepting = std::thread::spawn(move || server.accept().map(drop));
    let probe = document("probe", &["probe", &addr.to_string()], Exit::OK);
    accepting.join().unwrap().unwrap();
    for (pointer, from, to) in [("/processes/0", "pid", "process_id"), ("", "code", "")] {
        let broken = renamed(&probe, pointer, from, to);
        assert!(
            !schema::violations("probe", &broken).is_empty(),
            "`{from}` at `{pointer}` renamed to `{to}` still matches the schema"
        );
    }
    // A line or column counts from 1.
    let mut zero = check.clone();
    zero["findings"][0]["line"] = 0.into();
    assert!(!schema::violations("check", &zero).is_empty());
}

/// A copy of tests/fixtures/summary with a port this process holds written in.
struct Fixture {
    dir: tempfile::TempDir,
    _held: TcpListener,
}

impl Fixture {
    fn new() -> Fixture {
        let lease = loopcheck::reserve_port().expect("lease a port");
        let held = TcpListener::bind(("127.0.0.1", lease.port())).expect("hold the leased port");
        let dir = tempfile::tempdir().unwrap();
        let template = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/summary");
        for file in ["Cargo.toml", "src/lib.rs", "tests/net.rs"] {
            let text = std::fs::read_to_string(template.join(file)).unwrap();
            let text = text
                .replace("LOOPCHECK_PATH", &repository().display().to_string())
                .replace("/*HELD_PORT*/ 1", &lease.port().to_string());
            let target = dir.path().join(file);
            std::fs::create_dir_all(target.parent().unwrap()).unwrap();
            std::fs::write(target, text).unwrap();
        }
        std::fs::copy(
            repository().join("tests/fixtures/harness/Cargo.lock"),
            dir.path().join("Cargo.lock"),
        )
        .unwrap();
        Fixture { dir, _held: held }
    }

    /// `cargo loopcheck test --cargo-test ARGS` with the job summary going to `summary`.
    fn test(&self, summary: &Path, args: &[&str]) -> Output {
        let manifest = self.dir.path().join("Cargo.toml");
        let mut command = cargo_loopcheck(&["test", "--cargo-test", "--manifest-path"]);
        command
            .arg(&manifest)
            .args(args)
            .env("GITHUB_STEP_SUMMARY", summary)
            // The fixture shares the harness fixture's build: only the fixture compiles.
            .env(
                "CARGO_TARGET_DIR",
                Path::new(env!("CARGO_TARGET_TMPDIR")).join("harness-fixture"),
            )
            .env("RUST_BACKTRACE", "0");
        run_bounded(command, Duration::from_secs(600))
    }
}

#[test]
fn test_appends_a_job_summary_of_a_failing_and_a_passing_run() {
    let fixture = Fixture::new();
    let summary = fixture.dir.path().join("summary.md");

    let failing = fixture.test(&summary, &["--message-format", "json"]);
    assert_eq!(code(&failing), Exit::FOUND, "{}", stderr(&failing));
    let report = json(&failing);
    schema::assert_valid("test", &report);
    let markdown = std::fs::read_to_string(&summary).expect("the summary is written");
    assert!(markdown.starts_with("## cargo loopcheck test\n"), "{markdown}");
    assert!(
        markdown.contains("❌ **1 failed**, 0 flaky, 1 passed"),
        "{markdown}"
    );
    let row = markdown
        .lines()
        .find(|l| l.contains("binds_a_held_port"))
        .unwrap_or_else(|| panic!("no row for the failing test:\n{markdown}"));
    // The holder is this process: it holds the port the test hard-codes.
    assert!(row.contains("| failed | LC001 port-in-use |"), "{row}");
    assert!(row.contains(&format!("pid {}", std::process::id())), "{row}");
    assert!(row.contains("tests/net.rs:"), "{row}");
    assert!(
        !markdown.contains("`serves`"),
        "passing tests are not tabled:\n{markdown}"
    );

    let passing = fixture.test(&summary, &["--", "serves"]);
    assert_eq!(code(&passing), Exit::OK, "{}", stderr(&passing));
    let markdown = std::fs::read_to_string(&summary).unwrap();
    let (first, second) = markdown
        .split_once("\n## cargo loopcheck test\n")
        .unwrap_or_else(|| panic!("the second run's summary is appended:\n{markdown}"));
    assert!(first.contains("binds_a_held_port"), "{markdown}");
    assert!(second.contains("✅ **0 failed**, 0 flaky, 1 passed"), "{second}");
    assert!(!second.contains("| test |"), "{second}");
}

#[test]
fn check_appends_its_findings_to_the_job_summary() {
    let dir = tempfile::tempdir().unwrap();
    let summary = dir.path().join("summary.md");
    std::fs::write(&summary, "earlier step\n").unwrap();
    let mut command = cargo_loopcheck(&["check", "--manifest-path", &demo()]);
    command.env("GITHUB_STEP_SUMMARY", &summary);
    let output = run_bounded(command, Duration::from_secs(300));
    assert_eq!(code(&output), Exit::FOUND, "{}", stderr(&output));
    let markdown = std::fs::read_to_string(&summary).unwrap();
    assert!(
        markdown.starts_with("earlier step\n## cargo loopcheck check\n"),
        "{markdown}"
    );
    assert!(
        markdown.contains("| error | LC010 hard-coded-port | tests/echo.rs:17 | hard-coded port 8080"),
        "{markdown}"
    );

    // Without the variable, nothing is written anywhere; with a bad path, a warning.
    let mut command = cargo_loopcheck(&["lint", "--manifest-path", &demo()]);
    command.env("GITHUB_STEP_SUMMARY", &summary);
    run_bounded(command, Duration::from_secs(300));
    assert_eq!(
        std::fs::read_to_string(&summary).unwrap(),
        markdown,
        "lint writes no summary"
    );
    let mut command = cargo_loopcheck(&["check", "--manifest-path", &demo()]);
    command.env("GITHUB_STEP_SUMMARY", dir.path().join("no/such/dir/summary.md"));
    let output = run_bounded(command, Duration::from_secs(300));
    assert_eq!(code(&output), Exit::FOUND, "{}", stderr(&output));
    assert!(
        stderr(&output).contains("warning: cannot append the job summary to"),
        "{}",
        stderr(&output)
    );
}

/// The files of `package`'s tarball, as `cargo package --list` names them.
fn packaged(package: &str) -> Vec<String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .args(["package", "--list", "--allow-dirty", "--offline", "-p", package])
        .current_dir(repository());
    let output = run_bounded(command, Duration::from_secs(120));
    assert!(output.status.success(), "{}", stderr(&output));
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn each_tarball_holds_its_sources_readme_and_licences_only() {
    for package in ["loopcheck", "loopcheck-macros", "cargo-loopcheck"] {
        let files = packaged(package);
        for needed in [
            "Cargo.toml",
            "README.md",
            "LICENSE-MIT",
            "LICENSE-APACHE",
            "src/lib.rs",
        ] {
            assert!(
                files.iter().any(|f| f == needed),
                "{package} lacks {needed}: {files:?}"
            );
        }
        for file in &files {
            let expected = file.starts_with("src/")
                || file.starts_with("Cargo.")
                || file.starts_with("LICENSE-")
                || ["README.md", ".cargo_vcs_info.json", "docs/diagnostics.md"].contains(&file.as_str());
            assert!(expected, "{package} ships {file}");
        }
    }
    assert!(packaged("cargo-loopcheck").contains(&"docs/diagnostics.md".to_owned()));
}
