//! The lint's workspace pass, on the fixture workspace in `tests/fixtures/lint-workspace/`:
//! ports handed to helpers of other files, to the crate's own API and through trait objects,
//! taken from library constants, written in the tests' config files, and the places that must
//! stay clean (comments, remote hosts, macros, values that go nowhere). A line with a finding
//! ends in `expect: CODE(PORT), ...`, or `expect-warning: ...` for a warning.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use cargo_loopcheck::lint::{LintConfig, Scope, lint_source, lint_workspace};
use cargo_loopcheck::workspace::Workspace;
use loopcheck::report::{Code, Finding, Severity};

/// (file, line, code, port, severity)
type Key = (String, u32, String, Option<u16>, Severity);

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lint-workspace")
}

fn findings() -> (Workspace, Vec<Finding>, Vec<(PathBuf, String)>) {
    let workspace = Workspace::load(Some(&root().join("Cargo.toml"))).expect("cargo metadata on the fixture");
    let (findings, errors) = lint_workspace(&workspace, &LintConfig::default());
    (workspace, findings, errors)
}

fn key(f: &Finding) -> Key {
    (
        f.file.clone().expect("a file"),
        f.line.expect("a line"),
        f.code.to_string(),
        f.port,
        f.severity,
    )
}

/// The markers of every file under `dir` but `Cargo.toml`.
fn markers(root: &Path, dir: &Path, out: &mut BTreeSet<Key>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            markers(root, &path, out);
            continue;
        }
        if path.file_name().is_some_and(|n| n == "Cargo.toml") {
            continue;
        }
        let file = path
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        let source = std::fs::read_to_string(&path).unwrap();
        for (index, line) in source.lines().enumerate() {
            let (list, severity) = if let Some((_, list)) = line.split_once("expect-warning: ") {
                (list, Severity::Warning)
            } else if let Some((_, list)) = line.split_once("expect: ") {
                (list, Severity::Error)
            } else {
                continue;
            };
            for item in list.split(", ") {
                let (code, port) = match item.trim().split_once('(') {
                    Some((code, port)) => (code, Some(port.trim_end_matches(')').parse().unwrap())),
                    None => (item.trim(), None),
                };
                out.insert((file.clone(), index as u32 + 1, code.to_owned(), port, severity));
            }
        }
    }
}

#[test]
fn finds_exactly_the_marked_lines_across_files_and_configs() {
    let (workspace, findings, errors) = findings();
    assert!(errors.is_empty(), "{errors:#?}");
    let mut want = BTreeSet::new();
    markers(&workspace.root, &workspace.root, &mut want);
    // JSON has no comments.
    for (line, port) in [(2, 9000), (3, 9001)] {
        want.insert((
            "tests/config/client.json".to_owned(),
            line,
            "LC010".to_owned(),
            Some(port),
            Severity::Error,
        ));
    }
    let got: BTreeSet<Key> = findings.iter().map(key).collect();
    let missing: Vec<&Key> = want.difference(&got).collect();
    let extra: Vec<&Key> = got.difference(&want).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing: {missing:#?}\nunexpected: {extra:#?}"
    );
    assert_eq!(
        got.len(),
        findings.len(),
        "one finding per file, line, code and port"
    );
    assert!(want.len() >= 35, "the markers were read: {}", want.len());
}

#[test]
fn a_helper_module_shared_by_two_test_files_is_found_from_both() {
    let (_, findings, _) = findings();
    let at = |file: &str, port: u16| {
        findings
            .iter()
            .find(|f| {
                f.file.as_deref() == Some(file) && f.port == Some(port) && f.code == Code::HardCodedPort
            })
            .unwrap_or_else(|| panic!("{file} {port}: {findings:#?}"))
    };
    // The call is the finding, with the definition's place as a note; the definition itself,
    // which takes its port as a parameter, is clean (only its own address string is reported).
    assert_eq!(
        at("tests/publish.rs", 3000).message,
        "hard-coded port 3000 in parameter `port` of `Broker::new`, defined at tests/broker/mod.rs:17"
    );
    assert_eq!(
        at("tests/subscribe.rs", 3020).message,
        "hard-coded port 3020 in parameter `port` of `Broker::new`, defined at tests/broker/mod.rs:17"
    );
    let helper: Vec<u32> = findings
        .iter()
        .filter(|f| f.file.as_deref() == Some("tests/broker/mod.rs"))
        .map(|f| f.line.unwrap())
        .collect();
    assert_eq!(helper, [8], "only `OPEN_ADDR`");
    // Through a second helper whose parameter is not named like a port.
    assert_eq!(
        at("tests/subscribe.rs", 3021).message,
        "hard-coded port 3021 in parameter `p` of `broker::spawn_on`, defined at tests/broker/mod.rs:31"
    );
    // A `#[path]` module, under the name it is included as.
    assert_eq!(
        at("tests/subscribe.rs", 3022).message,
        "hard-coded port 3022 in parameter `port` of `echo::start`, defined at tests/support/echo_server.rs:4"
    );
    assert_eq!(
        at("tests/publish.rs", 7000).message,
        "hard-coded port 7000 in `CONTROL_PORT` (defined at src/shared.rs:4), used in `TcpStream::connect`"
    );
    assert_eq!(
        at("tests/publish.rs", 1883).message,
        "hard-coded port 1883 in `broker::BROKER_PORT` (defined at tests/broker/mod.rs:6), used in parameter `port` of `Broker::new`, defined at tests/broker/mod.rs:17"
    );
    let suggestion = at("tests/publish.rs", 3000).suggestion.as_deref().unwrap();
    assert!(suggestion.contains("fn publishes(port: u16)"), "{suggestion}");
}

#[test]
fn the_workspace_pass_sees_what_one_file_alone_cannot() {
    let source = std::fs::read_to_string(root().join("tests/publish.rs")).unwrap();
    let alone = lint_source(
        "tests/publish.rs",
        &source,
        Scope::TestFile,
        &LintConfig::default(),
    )
    .unwrap();
    let ports: BTreeSet<u16> = alone.iter().filter_map(|f| f.port).collect();
    // Alone, the file shows only its own strings; the helpers, the API and the constants are
    // elsewhere.
    assert_eq!(ports, BTreeSet::from([3002, 3012, 3013, 3500]));
}

#[test]
fn config_files_are_read_with_their_comments_and_suppressions() {
    let (_, findings, _) = findings();
    let lines = |file: &str| -> Vec<(u32, Code)> {
        findings
            .iter()
            .filter(|f| f.file.as_deref() == Some(file))
            .map(|f| (f.line.unwrap(), f.code))
            .collect()
    };
    assert_eq!(
        lines("tests/config/server.toml"),
        [
            (3, Code::HardCodedPort),
            (3, Code::WildcardBind),
            (4, Code::HardCodedPort),
            (6, Code::HardCodedPort),
            // After a line whose trailing comment allows LC010: that comment covers its own line.
            (8, Code::HardCodedPort),
            (21, Code::WildcardBind)
        ]
    );
    // Read by a test with a literal path, though not under `tests/`; its neighbour is not read.
    assert_eq!(lines("config/extra.toml"), [(2, Code::HardCodedPort)]);
    assert_eq!(lines("config/unused.toml"), []);
    let wildcard = findings
        .iter()
        .find(|f| f.file.as_deref() == Some("tests/config/app.yaml") && f.code == Code::WildcardBind)
        .unwrap();
    assert_eq!(
        wildcard.message,
        "wildcard address `0.0.0.0` in key `host` of a config file exposes the test to the network"
    );
    assert_eq!(wildcard.column, Some(9));

    // The package's `allow-ports` holds for config files too.
    assert!(!findings.iter().any(|f| f.port == Some(6553)));
    let config = LintConfig {
        allow: vec![Code::WildcardBind],
        allow_ports: vec![8080],
    };
    let workspace = Workspace::load(Some(&root().join("Cargo.toml"))).unwrap();
    let (fewer, _) = lint_workspace(&workspace, &config);
    let server: Vec<(u32, Code)> = fewer
        .iter()
        .filter(|f| f.file.as_deref() == Some("tests/config/server.toml"))
        .map(|f| (f.line.unwrap(), f.code))
        .collect();
    assert_eq!(
        server,
        [
            (3, Code::HardCodedPort),
            (6, Code::HardCodedPort),
            (8, Code::HardCodedPort)
        ]
    );
}

#[test]
fn remote_hosts_macros_and_values_that_go_nowhere_stay_clean() {
    let (_, findings, _) = findings();
    let on = |file: &str, needle: &str| {
        let source = std::fs::read_to_string(root().join(file)).unwrap();
        let line = source.lines().position(|l| l.contains(needle)).expect(needle) as u32 + 1;
        findings
            .iter()
            .filter(|f| f.file.as_deref() == Some(file) && f.line == Some(line))
            .map(|f| (f.code, f.severity))
            .collect::<Vec<_>>()
    };
    for clean in [
        "x.iot.eu-west-1.example.com",
        "\"10.1.2.3\"",
        "log_endpoint(",
        "Broker::new(3003)",
        "Broker::new(3004)",
        "probe.check(3300)",
        "broker_on!(3400)",
        "\"-b\", \"127.0.0.1\"",
        "TIMEOUT_MS",
    ] {
        assert_eq!(on("tests/publish.rs", clean), [], "{clean}");
    }
    for clean in [
        "\"db.example.com\", port: 5432",
        "(\"mqtt.example.com\", 1883)",
        "broker.example.com:8883",
        "host(\"x.example.com\").port(443)",
        "Broker::new(6553)",
        "Broker::new(3040)",
    ] {
        assert_eq!(on("tests/subscribe.rs", clean), [], "{clean}");
    }
    assert_eq!(on("src/lib.rs", "3101\")"), []);
    assert_eq!(on("src/lib.rs", "1884"), [], "library code is not test code");
    // A Display test and a config round trip: the literal reaches no socket that the lint can
    // see, so it is a warning, which fails no build.
    assert_eq!(
        on("tests/subscribe.rs", "3030\")"),
        [(Code::HardCodedPort, Severity::Warning)]
    );
    assert_eq!(
        on("tests/subscribe.rs", "3031'"),
        [(Code::HardCodedPort, Severity::Warning)]
    );
}

#[test]
fn wildcards_handed_to_a_child_are_wildcard_binds() {
    let (_, findings, _) = findings();
    let child: Vec<(u32, &str)> = findings
        .iter()
        .filter(|f| f.code == Code::WildcardBind && f.file.as_deref() == Some("tests/publish.rs"))
        .map(|f| (f.line.unwrap(), f.message.as_str()))
        .collect();
    assert_eq!(
        child,
        [
            (
                21,
                "wildcard address in `ws_fixture::shared::LISTEN_ALL` (defined at src/shared.rs:8), bound by `TcpListener::bind`, exposes the test to the network"
            ),
            (
                57,
                "wildcard address `0.0.0.0` handed to a child process in `.args(..)` exposes it to the network"
            ),
            (
                58,
                "wildcard address `::` handed to a child process in `.arg(..)` exposes it to the network"
            ),
            (
                59,
                // loopcheck:allow(LC010)
                "wildcard address `0.0.0.0:3500` handed to a child process in `.arg(..)` exposes it to the network"
            ),
        ]
    );
}

#[test]
fn ports_picked_by_helpers_of_other_files_are_racy_where_called() {
    let (_, findings, _) = findings();
    let on = |line: u32| {
        findings
            .iter()
            .find(|f| {
                f.file.as_deref() == Some("tests/racy.rs")
                    && f.line == Some(line)
                    && f.code == Code::RacyAllocation
            })
            .unwrap_or_else(|| panic!("line {line}: {findings:#?}"))
    };
    assert_eq!(
        on(9).message,
        "`ports::free_port` (defined at tests/ports/mod.rs:6) returns a port `portpicker::pick_unused_port` picks and lets go: another process can bind it before the test does"
    );
    assert_eq!(
        on(11).message,
        "`ports::probe_port` (defined at tests/ports/mod.rs:11) returns the port of a listener it drops (`TcpListener::bind`): another process can bind the port before the test does"
    );
    // Through a renamed import, a second helper and the library's own API.
    assert!(
        on(10)
            .message
            .starts_with("`spare` (defined at tests/ports/mod.rs:6)")
    );
    assert!(on(12).message.contains("`portpicker::pick_unused_port`"));
    assert!(on(13).message.contains("src/shared.rs"));
    assert!(
        on(9)
            .suggestion
            .as_deref()
            .unwrap()
            .contains("fn binds_a_picked_port(listener: TcpListener)")
    );
}
