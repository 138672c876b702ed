//! The lint engine, on the fixture workspace in `tests/fixtures/lint/` (each line with a finding
//! ends in `// expect: CODE(PORT), ...`), on inline sources, and on the demo.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use cargo_loopcheck::lint::{LintConfig, LintError, Scope, lint_source, lint_workspace, test_sources};
use cargo_loopcheck::workspace::Workspace;
use loopcheck::report::{Code, Finding, Severity};

/// (code, file, line, port)
type Key = (String, String, u32, Option<u16>);

fn fixture_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lint")
}

fn fixture() -> Workspace {
    Workspace::load(Some(&fixture_root().join("Cargo.toml"))).expect("cargo metadata on the fixture")
}

fn key(finding: &Finding) -> Key {
    (
        finding.code.to_string(),
        finding.file.clone().expect("a file"),
        finding.line.expect("a line"),
        finding.port,
    )
}

/// The `// expect: LC010(8080), LC011` markers of every `.rs` file under `dir`; an item written
/// `warning LC010(8080)` is also put in `warnings`, the findings reported as warnings.
fn expected(root: &Path, dir: &Path, out: &mut BTreeSet<Key>, warnings: &mut BTreeSet<Key>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            expected(root, &path, out, warnings);
            continue;
        }
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let file = path
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        let source = std::fs::read_to_string(&path).unwrap();
        for (index, line) in source.lines().enumerate() {
            let Some((_, list)) = line.split_once("expect: ") else {
                continue;
            };
            for item in list.split(", ") {
                let (warning, item) = match item.trim().strip_prefix("warning ") {
                    Some(item) => (true, item),
                    None => (false, item.trim()),
                };
                let (code, port) = match item.split_once('(') {
                    Some((code, port)) => (code, Some(port.trim_end_matches(')').parse().unwrap())),
                    None => (item, None),
                };
                let key = (code.to_owned(), file.clone(), index as u32 + 1, port);
                if warning {
                    warnings.insert(key.clone());
                }
                out.insert(key);
            }
        }
    }
}

fn lint(source: &str) -> Vec<Finding> {
    lint_source("tests/t.rs", source, Scope::TestFile, &LintConfig::default()).unwrap()
}

fn keys(findings: &[Finding]) -> Vec<(Code, u32, Option<u16>)> {
    findings
        .iter()
        .map(|f| (f.code, f.line.unwrap(), f.port))
        .collect()
}

#[test]
fn finds_exactly_the_marked_lines_of_the_fixture() {
    let workspace = fixture();
    let (findings, errors) = lint_workspace(&workspace, &LintConfig::default());

    let (mut want, mut warnings) = (BTreeSet::new(), BTreeSet::new());
    expected(&workspace.root, &workspace.root, &mut want, &mut warnings);
    let got: BTreeSet<Key> = findings.iter().map(key).collect();
    let missing: Vec<&Key> = want.difference(&got).collect();
    let extra: Vec<&Key> = got.difference(&want).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing: {missing:#?}\nunexpected: {extra:#?}"
    );
    assert_eq!(got.len(), findings.len(), "one finding per code, line and port");
    assert!(want.len() > 70, "the markers were read: {}", want.len());

    // Sorted by file, line and column, with every field filled in.
    let order: Vec<_> = findings
        .iter()
        .map(|f| (f.file.clone(), f.line, f.column))
        .collect();
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(order, sorted);
    for finding in &findings {
        assert_eq!(finding.name, finding.code.name());
        let severity = if warnings.contains(&key(finding)) {
            Severity::Warning
        } else {
            finding.code.severity()
        };
        assert_eq!(finding.severity, severity, "{finding:?}");
        assert!(finding.column.is_some_and(|c| c >= 1));
        assert!(
            finding
                .suggestion
                .as_deref()
                .is_some_and(|s| s.contains("loopcheck"))
        );
        assert!(
            finding
                .message
                .starts_with(|c: char| c.is_lowercase() || c == '`')
        );
        if finding.code == Code::HardCodedPort {
            assert!(finding.port.is_some_and(|p| p != 0), "{finding:?}");
        }
    }

    let reported = cargo_loopcheck::lint::file_errors(&workspace, errors.clone());
    assert_eq!(reported[0].file, "tests/broken.rs");
    assert_eq!(
        cargo_loopcheck::lint::config(&workspace).unwrap(),
        LintConfig::default()
    );

    // The one broken file is reported; every other file was linted all the same.
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(errors[0].0, workspace.root.join("tests/broken.rs"));
    assert!(
        errors[0]
            .1
            .starts_with("cannot parse `tests/broken.rs` at line 2, column"),
        "{}",
        errors[0].1
    );
}

#[test]
fn fixture_findings_read_well() {
    let (findings, _) = lint_workspace(&fixture(), &LintConfig::default());
    let text: String = findings
        .iter()
        .map(|f| {
            format!(
                "{}[{}] {}:{}:{} {}\n    = help: {}\n",
                f.severity,
                f.code,
                f.file.as_deref().unwrap(),
                f.line.unwrap(),
                f.column.unwrap(),
                f.message,
                f.suggestion.as_deref().unwrap()
            )
        })
        .collect();
    insta::with_settings!({ snapshot_path => "fixtures/lint/snapshots", prepend_module_to_snapshot => false }, {
        insta::assert_snapshot!("fixture_findings", text);
    });
}

#[test]
fn look_alikes_examples_nested_packages_and_non_test_code_are_clean() {
    let (findings, _) = lint_workspace(&fixture(), &LintConfig::default());
    let files: BTreeSet<&str> = findings.iter().filter_map(|f| f.file.as_deref()).collect();
    for clean in [
        "tests/clean.rs",
        "examples/demo.rs",
        "tests/nested/src/lib.rs",
        "sub/src/lib.rs",
    ] {
        assert!(!files.contains(clean), "{clean} has findings");
    }
    // In `src/`, only test code counts: the same literals in library code are not reported.
    let lib: Vec<u32> = findings
        .iter()
        .filter(|f| f.file.as_deref() == Some("src/lib.rs"))
        .map(|f| f.line.unwrap())
        .collect();
    assert!(lib.iter().all(|&line| line > 25), "{lib:?}");
    let server: Vec<u32> = findings
        .iter()
        .filter(|f| f.file.as_deref() == Some("src/server.rs"))
        .map(|f| f.line.unwrap())
        .collect();
    assert_eq!(server, [11]);
}

#[test]
fn test_sources_cover_tests_benches_and_test_modules() {
    let workspace = fixture();
    let root = &workspace.root;
    let sources: Vec<(String, Scope)> = test_sources(&workspace)
        .into_iter()
        .map(|(path, scope)| {
            let relative = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            (relative, scope)
        })
        .collect();
    let of = |file: &str| sources.iter().find(|(f, _)| f == file).map(|(_, scope)| *scope);
    assert_eq!(of("src/lib.rs"), Some(Scope::Source));
    assert_eq!(of("src/server.rs"), Some(Scope::Source));
    assert_eq!(of("src/helpers.rs"), Some(Scope::TestFile));
    assert_eq!(of("src/helpers/nested.rs"), Some(Scope::TestFile));
    assert_eq!(of("tests/strings.rs"), Some(Scope::TestFile));
    assert_eq!(of("tests/common/mod.rs"), Some(Scope::TestFile));
    assert_eq!(of("benches/load.rs"), Some(Scope::TestFile));
    assert_eq!(of("sub/tests/sub.rs"), Some(Scope::TestFile));
    assert_eq!(of("sub/src/lib.rs"), Some(Scope::Source));
    assert_eq!(of("examples/demo.rs"), None);
    assert_eq!(of("tests/nested/src/lib.rs"), None);
    let distinct: BTreeSet<&str> = sources.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(distinct.len(), sources.len(), "no file twice");
}

#[test]
fn config_allow_and_allow_ports_drop_findings() {
    let workspace = fixture();
    let (all, _) = lint_workspace(&workspace, &LintConfig::default());
    // The packages' own metadata: `allow-ports = [9999]` at the root, `allow = ["hard-coded-port"]`
    // in `sub`.
    assert!(!all.iter().any(|f| f.port == Some(9999)));
    assert!(
        !all.iter()
            .any(|f| f.code == Code::HardCodedPort && f.file.as_deref().unwrap().starts_with("sub/"))
    );
    assert!(
        all.iter()
            .any(|f| f.code == Code::WildcardBind && f.file.as_deref() == Some("sub/tests/sub.rs"))
    );

    let config = LintConfig {
        allow: vec![Code::WildcardBind],
        allow_ports: vec![8080, 8081],
    };
    let (fewer, _) = lint_workspace(&workspace, &config);
    let dropped = |f: &Finding| {
        f.code == Code::WildcardBind || (f.code == Code::HardCodedPort && matches!(f.port, Some(8080 | 8081)))
    };
    let want: Vec<Key> = all.iter().filter(|f| !dropped(f)).map(key).collect();
    assert_eq!(fewer.iter().map(key).collect::<Vec<_>>(), want);
    assert!(fewer.len() < all.len() - 10);

    // loopcheck:allow(LC010): source text the lint test reads, never bound
    let source = "#[test]\nfn t() {\n    let _ = TcpListener::bind(\"0.0.0.0:8080\");\n    let _ = portpicker::pick_unused_port();\n}\n";
    let allowed = |config: &LintConfig| keys(&lint_source("t.rs", source, Scope::TestFile, config).unwrap());
    assert_eq!(
        allowed(&LintConfig::default()),
        [
            (Code::HardCodedPort, 3, Some(8080)),
            (Code::WildcardBind, 3, Some(8080)),
            (Code::RacyAllocation, 4, None)
        ]
    );
    let config = LintConfig {
        allow: vec![Code::RacyAllocation],
        allow_ports: vec![8080],
    };
    assert_eq!(allowed(&config), [(Code::WildcardBind, 3, Some(8080))]);
}

#[test]
fn metadata_tables_are_read_and_bad_values_named() {
    let workspace = serde_json::json!({ "loopcheck": { "allow": ["LC014"] } });
    let package = serde_json::json!({ "loopcheck": { "allow": ["wildcard-bind"], "allow-ports": [3000] } });
    let config = LintConfig::from_metadata(&workspace, &package).unwrap();
    assert_eq!(config.allow, [Code::RacyAllocation, Code::WildcardBind]);
    assert_eq!(config.allow_ports, [3000]);

    let bad = serde_json::json!({ "loopcheck": { "allow-ports": ["http"] } });
    let error = LintConfig::from_metadata(&serde_json::Value::Null, &bad).unwrap_err();
    assert!(matches!(error, LintError::Config { .. }));
    assert_eq!(
        error.to_string(),
        "invalid `allow-ports` in `[package.metadata.loopcheck]`: `\"http\"` is not a port; expected a number from 1 to 65535"
    );
}

#[test]
fn suppression_comments_work_on_the_line_and_the_line_before() {
    // loopcheck:allow(LC010): source text the lint test reads, never bound
    let source = r#"
#[test]
fn t() {
    let _ = TcpListener::bind("127.0.0.1:8080"); // loopcheck:allow(LC010)
    // loopcheck:allow(hard-coded-port)
    let _ = TcpListener::bind("127.0.0.1:8081");
    // loopcheck:allow(racy-allocation, LC011)
    let _ = TcpListener::bind("0.0.0.0:8082");
    // loopcheck:allow(LC010)

    let _ = TcpListener::bind("127.0.0.1:8083");
    let _ = TcpListener::bind("127.0.0.1:8084"); // loopcheck:allow(LC011)
    let _ = "loopcheck:allow(LC010)"; let _ = TcpListener::bind("127.0.0.1:8085");
    let _ = TcpListener::bind("127.0.0.1:8086"); /* loopcheck:allow(lc010) */
}
"#;
    assert_eq!(
        keys(&lint(source)),
        [
            (Code::HardCodedPort, 8, Some(8082)),
            (Code::HardCodedPort, 11, Some(8083)),
            (Code::HardCodedPort, 12, Some(8084)),
            (Code::HardCodedPort, 13, Some(8085)),
        ]
    );
}

#[test]
fn a_syntax_error_is_an_error_not_a_panic() {
    let error = lint_source(
        "tests/bad.rs",
        "fn f( {}\n",
        Scope::TestFile,
        &LintConfig::default(),
    )
    .unwrap_err();
    let LintError::Parse { file, line, .. } = &error else {
        panic!("{error:?}");
    };
    assert_eq!((file.as_str(), *line), ("tests/bad.rs", 1));
    assert!(
        error
            .to_string()
            .starts_with("cannot parse `tests/bad.rs` at line 1, column ")
    );
    // The next file on the same thread lints as usual.
    assert_eq!(lint(r#"fn f() { let _ = ("localhost", 1); }"#).len(), 1);
}

#[test]
fn findings_carry_position_message_and_suggestion() {
    // loopcheck:allow(LC010): source text the lint test reads, never bound
    let source = "use std::net::TcpListener;\n\n#[test]\nfn serves() {\n    let l = TcpListener::bind(\"127.0.0.1:8080\").unwrap();\n}\n";
    let findings = lint(source);
    assert_eq!(findings.len(), 1);
    let f = &findings[0];
    assert_eq!(f.code, Code::HardCodedPort);
    assert_eq!(f.name, "hard-coded-port");
    assert_eq!(f.severity, Severity::Error);
    assert_eq!(f.message, "hard-coded port 8080 in `TcpListener::bind`");
    assert_eq!(f.file.as_deref(), Some("tests/t.rs"));
    assert_eq!((f.line, f.column, f.port), (Some(5), Some(31), Some(8080)));
    assert_eq!(
        f.suggestion.as_deref(),
        Some(
            "take the port from the test: `#[loopback_test] fn serves(addr: SocketAddr)`, or `loopcheck::tcp_listener()`"
        )
    );
    assert_eq!((f.pid, f.command.as_deref()), (None, None));
}

#[test]
fn columns_count_characters() {
    // loopcheck:allow(LC010): source text the lint test reads, never bound
    let findings = lint("fn f() { let _ = (\"é\", TcpListener::bind(\"localhost:1\")); }");
    assert_eq!((findings[0].line, findings[0].column), (Some(1), Some(42)));
}

#[test]
fn source_scope_lints_only_test_code() {
    // loopcheck:allow(LC010): source text the lint test reads, never bound
    let source = r#"
pub const ADDR: &str = "127.0.0.1:8080";
pub fn serve() { let _ = TcpListener::bind("0.0.0.0:0"); let _ = portpicker::pick_unused_port(); }
impl Server { fn start(&self) { self.bind(("localhost", 8081)); } }
mod inner {
    fn not_a_test() { let _ = "localhost:8082"; }
    #[test]
    fn a_test() { let _ = "localhost:8083"; }
}
#[cfg(test)]
impl Server {
    fn for_tests() { let _ = "localhost:8084"; }
}
impl Other {
    #[cfg(test)]
    fn for_tests() { let _ = "localhost:8085"; }
}
#[cfg(any(test, unix))]
fn sometimes() { let _ = "localhost:8086"; }
#[cfg(not(test))]
fn never() { let _ = "localhost:8087"; }
#[loopback_test]
fn given(port: u16) { let _ = "localhost:8088"; }
#[tokio::test]
async fn async_test() { let _ = "localhost:8089"; }
"#;
    let findings = lint_source("src/lib.rs", source, Scope::Source, &LintConfig::default()).unwrap();
    let ports: Vec<u16> = findings.iter().filter_map(|f| f.port).collect();
    assert_eq!(ports, [8083, 8084, 8085, 8088, 8089]);
    let none = lint_source(
        "src/lib.rs",
        // loopcheck:allow(LC010): source text the lint test reads, never bound
        "pub const A: &str = \"127.0.0.1:1\";",
        Scope::Source,
        &LintConfig::default(),
    );
    assert!(none.unwrap().is_empty());
}

#[test]
fn macro_arguments_are_read_and_macro_definitions_skipped() {
    // loopcheck:allow(LC010): source text the lint test reads, never bound
    let source = r#"
#[test]
fn t() {
    println!("{}", TcpListener::bind(("127.0.0.1", 8080)).is_ok());
    assert!(connect(SocketAddr::from(([127, 0, 0, 1], 8081))), "at {}", "localhost:8082");
    let _ = vec![("localhost", 8083)];
    debug_assert_eq!(addr, format!("127.0.0.1:{}", 8084));
    let _ = unknown!(("localhost", 9000), "localhost:8085");
    tracing::info!(target: "x", "up on localhost:8086");
}
macro_rules! m { () => { TcpListener::bind("127.0.0.1:9001") }; }
"#;
    let ports: Vec<u16> = lint(source).iter().filter_map(|f| f.port).collect();
    assert_eq!(ports, [8080, 8081, 8082, 8083, 8084, 8085, 8086]);
}

#[test]
fn paths_may_start_with_colons() {
    let source = "#[test]\nfn t() {\n    let _ = ::std::net::TcpListener::bind(\"0.0.0.0:0\");\n    let _ = ::portpicker::pick_unused_port();\n}\n";
    let findings = lint(source);
    assert_eq!(
        keys(&findings),
        [(Code::WildcardBind, 3, None), (Code::RacyAllocation, 4, None)]
    );
    assert_eq!(findings[1].column, Some(15));
}

#[test]
fn names_bound_to_ports_are_reported_once_at_the_literal() {
    let source = r#"
const PORT: u16 = 8080;
#[test]
fn t() {
    let _ = TcpListener::bind(("127.0.0.1", PORT));
    let _ = TcpStream::connect(format!("localhost:{PORT}"));
    let port = 9000;
    {
        let port = listener.local_addr().unwrap().port();
        let _ = format!("127.0.0.1:{port}");
    }
    let _ = format!("127.0.0.1:{}", port);
}
#[test]
fn u() {
    let port = 9001;
    assert_eq!(port, 9001);
}
"#;
    let findings = lint(source);
    assert_eq!(
        keys(&findings),
        [
            (Code::HardCodedPort, 2, Some(8080)),
            (Code::HardCodedPort, 7, Some(9000))
        ]
    );
    assert_eq!(
        findings[0].message,
        "hard-coded port 8080 in `PORT`, used in `TcpListener::bind`"
    );
}

#[test]
fn the_demo_is_flagged_where_planted_and_clean_where_not() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/demo/tests/echo.rs");
    let source = std::fs::read_to_string(&path).unwrap();
    let findings = lint_source("tests/echo.rs", &source, Scope::TestFile, &LintConfig::default()).unwrap();
    let line_of = |needle: &str| source.lines().position(|l| l.contains(needle)).unwrap() as u32 + 1;

    let fixed = line_of("fn echoes_on_a_fixed_port");
    let wildcard = line_of("\"0.0.0.0:0\"");
    let picked = line_of("portpicker::pick_unused_port");
    let kept = line_of("fn echoes_on_a_kept_socket");
    assert!(findings.iter().any(|f| f.code == Code::HardCodedPort
        && f.port == Some(8080)
        && f.line == Some(fixed + 1)
        && f.message == "hard-coded port 8080 in `TcpListener::bind`"));
    assert!(
        findings
            .iter()
            .any(|f| f.code == Code::WildcardBind && f.line == Some(wildcard))
    );
    assert!(
        findings
            .iter()
            .any(|f| f.code == Code::RacyAllocation && f.line == Some(picked))
    );
    assert!(findings.iter().all(|f| f.line.unwrap() < kept), "{findings:#?}");
    assert_eq!(
        findings.iter().map(|f| f.code).collect::<Vec<_>>(),
        [
            Code::HardCodedPort,
            Code::HardCodedPort,
            Code::WildcardBind,
            Code::RacyAllocation
        ]
    );
}

#[test]
fn unreadable_and_unlexable_files_are_errors_and_the_rest_is_linted() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("tests")).unwrap();
    std::fs::create_dir_all(root.join("src")).unwrap();
    std::fs::write(
        root.join("Cargo.toml"),
        "[package]\nname = \"tmp\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n[workspace]\n",
    )
    .unwrap();
    std::fs::write(root.join("src/lib.rs"), "").unwrap();
    std::fs::write(root.join("tests/bytes.rs"), b"fn f() { \"\xff\xfe\" }").unwrap();
    // loopcheck:allow(LC010): source text the lint test reads, never bound
    std::fs::write(root.join("tests/open.rs"), "fn f() { let s = \"127.0.0.1:80; }").unwrap();
    std::fs::write(
        root.join("tests/good.rs"),
        "#[test]\nfn t() { let _ = (\"localhost\", 8080); }\n",
    )
    .unwrap();
    let workspace = Workspace::load(Some(&root.join("Cargo.toml"))).unwrap();
    let (findings, errors) = lint_workspace(&workspace, &LintConfig::default());
    assert_eq!(
        findings.iter().map(key).collect::<Vec<_>>(),
        [("LC010".to_owned(), "tests/good.rs".to_owned(), 2, Some(8080))]
    );
    let errors: Vec<(&Path, &str)> = errors
        .iter()
        .map(|(p, e)| (p.strip_prefix(&workspace.root).unwrap(), e.as_str()))
        .collect();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert_eq!(errors[0].0, Path::new("tests/bytes.rs"));
    assert!(errors[0].1.starts_with("cannot read `"), "{}", errors[0].1);
    assert_eq!(errors[1].0, Path::new("tests/open.rs"));
    assert!(
        errors[1].1.starts_with("cannot parse `tests/open.rs` at line 1"),
        "{}",
        errors[1].1
    );

    // The command reports them as errors and fails, even with nothing else to say; so does a
    // bad `loopcheck` table in a manifest.
    std::fs::remove_file(root.join("tests/good.rs")).unwrap();
    let lint = |root: &Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_cargo-loopcheck"))
            .args(["loopcheck", "lint", "--manifest-path"])
            .arg(root.join("Cargo.toml"))
            .env("NO_COLOR", "1")
            .output()
            .unwrap()
    };
    let output = lint(root);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("error: cannot lint `tests/open.rs`"), "{stderr}");
    assert!(
        stderr.contains("found 0 errors, 0 warnings, 2 unlintable files"),
        "{stderr}"
    );
    std::fs::remove_file(root.join("tests/bytes.rs")).unwrap();
    std::fs::remove_file(root.join("tests/open.rs")).unwrap();
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let manifest = manifest.replace(
        "\n\n[workspace]",
        "\n\n[package.metadata.loopcheck]\nallow-ports = [\"http\"]\n\n[workspace]",
    );
    std::fs::write(root.join("Cargo.toml"), manifest).unwrap();
    let output = lint(root);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("error: cannot lint `Cargo.toml`: invalid `allow-ports`"),
        "{stderr}"
    );
}

#[test]
fn byte_order_marks_shebangs_and_raw_strings() {
    let source =
        // loopcheck:allow(LC010): source text the lint test reads, never bound
        "\u{feff}#!/usr/bin/env run-cargo-script\n#[test]\nfn t() { let _ = r#\"\"localhost:8080\"\"#; }\n";
    assert_eq!(keys(&lint(source)), [(Code::HardCodedPort, 3, Some(8080))]);
    // loopcheck:allow(LC010): source text the lint test reads, never bound
    let attrs = "#![allow(unused)]\n#[test]\nfn t() { let _ = \"localhost:8081\"; }\n";
    assert_eq!(keys(&lint(attrs)), [(Code::HardCodedPort, 3, Some(8081))]);
}

#[test]
fn renamed_imports_are_followed() {
    let source = r#"
mod helpers {
    pub fn start(port: u16) {
        let _ = std::net::TcpListener::bind(("127.0.0.1", port));
    }
    pub const CONTROL: u16 = 7100;
}
use helpers::{CONTROL as C, start as begin};

#[test]
fn t() {
    begin(7101);
    let _ = std::net::TcpStream::connect(("127.0.0.1", C));
}
"#;
    let findings = lint(source);
    let got: Vec<(u32, Option<u16>, &str)> = findings
        .iter()
        .map(|f| (f.line.unwrap(), f.port, f.message.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (
                12,
                Some(7101),
                "hard-coded port 7101 in parameter `port` of `begin`"
            ),
            (
                13,
                Some(7100),
                "hard-coded port 7100 in `C` (defined at line 6), used in `TcpStream::connect`"
            ),
        ]
    );
}

#[test]
fn child_arguments_environment_and_clap_options() {
    let source = r#"
const ANY: &str = "0.0.0.0";

#[test]
fn t() {
    let cli = clap::Command::new("server").arg(clap::Arg::new("host").default_value("0.0.0.0"));
    let _ = std::process::Command::new("server").arg(ANY).spawn();
    let _ = std::process::Command::new("server").env("BIND_HOST", "::").spawn();
    let _ = std::process::Command::new("server").env("HTTP_PORT", "7201").spawn();
    let _ = std::process::Command::new("server").args(["--port", "7202", "--admin-port=7203"]).spawn();
    let _ = std::process::Command::new("server").args(["--port", "0", "--workers", "7204"]).spawn();
}
"#;
    let got: Vec<(u32, Code, Option<u16>)> = lint(source)
        .iter()
        .map(|f| (f.line.unwrap(), f.code, f.port))
        .collect();
    assert_eq!(
        got,
        [
            (2, Code::WildcardBind, None),
            (8, Code::WildcardBind, None),
            (9, Code::HardCodedPort, Some(7201)),
            (10, Code::HardCodedPort, Some(7202)),
            (10, Code::HardCodedPort, Some(7203)),
        ]
    );
}

#[test]
fn a_method_called_through_its_type_takes_its_receiver_first() {
    let source = r#"
struct Broker;
impl Broker {
    fn start(&self, port: u16) {
        let _ = std::net::TcpListener::bind(("127.0.0.1", port));
    }
}

#[test]
fn t() {
    let broker = Broker;
    Broker::start(&broker, 7401);
    broker.start(7402);
}
"#;
    assert_eq!(
        keys(&lint(source)),
        [
            (Code::HardCodedPort, 12, Some(7401)),
            (Code::HardCodedPort, 13, Some(7402))
        ]
    );
}

#[test]
fn a_port_flag_and_its_value_in_two_arg_calls() {
    let source = r#"
const PORT: &str = "7211";
const PORT_NUMBER: u16 = 7212;

#[test]
fn t() {
    let _ = std::process::Command::new("server").arg("--port").arg("7210").spawn();
    let _ = std::process::Command::new("server").arg("--port").arg(PORT).spawn();
    let _ = std::process::Command::new("server").arg("--port").arg(PORT_NUMBER.to_string()).spawn();
    let _ = std::process::Command::new("server").arg("--port").arg("0").spawn();
    let _ = std::process::Command::new("server").arg("--workers").arg("7213").spawn();
    let _ = std::process::Command::new("server").arg("--port").spawn();
}
"#;
    let got: Vec<(u32, Code, Option<u16>)> = lint(source)
        .iter()
        .map(|f| (f.line.unwrap(), f.code, f.port))
        .collect();
    assert_eq!(
        got,
        [
            (2, Code::HardCodedPort, Some(7211)),
            (3, Code::HardCodedPort, Some(7212)),
            (7, Code::HardCodedPort, Some(7210)),
        ]
    );
}

#[test]
fn ports_given_to_builder_setters() {
    let source = r#"
const PORT: u16 = 7311;

fn fixed() -> u16 {
    7313
}

#[test]
fn t() {
    let local = 7312;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let _ = Builder::new().port(7301);
    let _ = Builder::new().with_port(7302);
    let _ = Builder::new().set_port(7303);
    let _ = Builder::new().bind_port(7304);
    let _ = Builder::new().listen_port(7305);
    let _ = Builder::new().listen_port(PORT);
    let _ = Builder::new().set_port(local);
    let _ = Builder::new().with_port(fixed());
    let _ = Builder::new().port(0);
    let _ = Builder::new().port(listener.local_addr().unwrap().port());
}
"#;
    assert_eq!(
        keys(&lint(source)),
        [
            (Code::HardCodedPort, 2, Some(7311)),
            (Code::HardCodedPort, 10, Some(7312)),
            (Code::HardCodedPort, 12, Some(7301)),
            (Code::HardCodedPort, 13, Some(7302)),
            (Code::HardCodedPort, 14, Some(7303)),
            (Code::HardCodedPort, 15, Some(7304)),
            (Code::HardCodedPort, 16, Some(7305)),
            (Code::HardCodedPort, 19, Some(7313)),
        ]
    );
}

#[test]
fn a_qualified_path_call_takes_its_receiver_first() {
    // loopcheck:allow(LC010): source text the lint test reads, never bound
    let source = r#"
trait Start {
    fn start(&self, port: u16);
}
struct Broker;
impl Start for Broker {
    fn start(&self, port: u16) {
        let _ = std::net::TcpListener::bind(("127.0.0.1", port));
    }
}

#[test]
fn t() {
    let broker = Broker;
    <Broker as Start>::start(&broker, 7421);
    <Broker>::start(&broker, 7422);
    <Broker as Start>::start(&broker, 0);
    let _ = Vec::<u16>::with_capacity(7423);
    let _ = <std::net::TcpListener>::bind("127.0.0.1:7424");
}
"#;
    assert_eq!(
        keys(&lint(source)),
        [
            (Code::HardCodedPort, 15, Some(7421)),
            (Code::HardCodedPort, 16, Some(7422)),
            (Code::HardCodedPort, 19, Some(7424))
        ]
    );
}
