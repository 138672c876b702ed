//! Lint throughput: lines of Rust test code per second, on one core and on all of them.
//!
//! Generates a package of `FILES` test files of about `LINES` lines each (network tests with a
//! mix of flagged and clean lines), then times `lint_source` over all of it on one thread (files
//! already in memory), and the workspace pass on the package (reading files, all cores): its
//! facts alone, and `lint_workspace` whole (facts, then the rules of each file with them, then
//! config files), the medians of five interleaved rounds, beside proc-macro2's lexing alone (the floor).
//! Then the workspace pass on this repository. Prints Markdown tables.
//! Run with `cargo bench -j1 -p cargo-loopcheck --bench lint` (prefix `taskset -c 0` for one
//! core); `LINT_BENCH_FILES` and `LINT_BENCH_LINES` change the corpus size.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use cargo_loopcheck::lint::{
    LintConfig, Scope, lint_source, lint_workspace, test_sources, workspace_facts_count,
};
use cargo_loopcheck::workspace::Workspace;

const FILES: usize = 2_000;
const LINES: usize = 500;
const RUNS: usize = 5;

/// One block of realistic test code, about 40 lines; `n` varies names and ports.
fn block(out: &mut String, n: usize) {
    let port = 20_000 + n % 10_000;
    let _ = write!(
        out,
        r#"
/// Serves a request on a kept listener and checks the echo (`127.0.0.1:0`).
#[test]
fn echoes_{n}() {{
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = std::thread::spawn(move || {{
        let (mut stream, _) = listener.accept().unwrap();
        let mut buf = [0u8; 64];
        let len = stream.read(&mut buf).unwrap();
        stream.write_all(&buf[..len]).unwrap();
    }});
    let mut client = TcpStream::connect(addr).unwrap();
    client.write_all(b"ping {n}").unwrap();
    let mut reply = Vec::with_capacity(16);
    client.read_to_end(&mut reply).unwrap();
    assert_eq!(reply.len(), {len}, "reply of test {{}}", {n});
    handle.join().unwrap();
}}

#[test]
fn talks_to_a_fixed_port_{n}() {{
    // The server of this test always listens here.
    let server = TcpListener::bind("127.0.0.1:{port}").unwrap();
    let config = Config {{ host: "localhost", port: {port}, retries: 3 }};
    let url = format!("http://localhost:{{}}/items/{{}}", config.port, {n});
    assert!(url.starts_with("http://"), "bad url {{url}}");
    let timeout = Duration::from_millis({millis});
    let _ = (server, timeout, Some(Ipv4Addr::LOCALHOST));
}}

#[tokio::test]
async fn picks_a_port_{n}() -> Result<(), Box<dyn std::error::Error>> {{
    let port = portpicker::pick_unused_port().expect("a free port");
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let wildcard = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
    match listener.local_addr()?.port() {{
        p if p == port => Ok(()),
        other => Err(format!("bound {{other}}, wanted {{port}}").into()),
    }}
}}
"#,
        len = 4 + n % 7,
        millis = 100 + n % 900,
    );
}

fn file_source(index: usize, lines: usize) -> String {
    let mut out = String::from(
        "//! Generated network tests.\n\nuse std::io::{Read, Write};\nuse std::net::{Ipv4Addr, TcpListener, TcpStream};\nuse std::time::Duration;\n\nstruct Config {\n    host: &'static str,\n    port: u16,\n    retries: u32,\n}\n",
    );
    let mut n = index * 1_000;
    while out.lines().count() < lines {
        block(&mut out, n);
        n += 1;
    }
    out
}

fn rate(lines: usize, elapsed: Duration) -> String {
    format!("{:.0}", lines as f64 / elapsed.as_secs_f64())
}

fn main() {
    let env = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (files, lines_per_file) = (env("LINT_BENCH_FILES", FILES), env("LINT_BENCH_LINES", LINES));
    let dir = tempfile::tempdir().expect("a temporary directory");
    let root = dir.path();
    std::fs::create_dir_all(root.join("tests")).unwrap();
    std::fs::create_dir_all(root.join("src")).unwrap();
    std::fs::write(
        root.join("Cargo.toml"),
        "[package]\nname = \"corpus\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n[workspace]\n",
    )
    .unwrap();
    std::fs::write(root.join("src/lib.rs"), "").unwrap();
    let mut sources = Vec::with_capacity(files);
    for index in 0..files {
        let source = file_source(index, lines_per_file);
        let name = format!("tests/net_{index:04}.rs");
        std::fs::write(root.join(&name), &source).unwrap();
        sources.push((name, source));
    }
    let lines: usize = sources.iter().map(|(_, s)| s.lines().count()).sum();
    let bytes: usize = sources.iter().map(|(_, s)| s.len()).sum();

    let config = LintConfig::default();
    // Warm up: page in the code, and check the corpus is what it claims.
    let sample = lint_source(&sources[0].0, &sources[0].1, Scope::TestFile, &config).unwrap();
    assert!(sample.len() > 10, "the corpus has findings");

    let workspace = Workspace::load(Some(&root.join("Cargo.toml"))).expect("cargo metadata");
    let start = Instant::now();
    let sources_found = test_sources(&workspace).len();
    let discovery = start.elapsed();
    assert_eq!(sources_found, files + 1);
    // This repository: its own test code, as `cargo loopcheck lint` reads it.
    let repository = Workspace::load(Some(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml"),
    ))
    .expect("cargo metadata on this repository");
    let repository_lines: usize = test_sources(&repository)
        .iter()
        .map(|(path, _)| std::fs::read_to_string(path).map_or(0, |s| s.lines().count()))
        .sum();

    // The runs are interleaved, round by round, so that a busy moment of the shared machine
    // weighs on all of them alike; each figure is the median of `RUNS`, each ratio the median
    // of the rounds' ratios.
    let time = |work: &mut dyn FnMut()| {
        let start = Instant::now();
        work();
        start.elapsed()
    };
    let mut findings = 0;
    let mut repository_findings = 0;
    let mut rounds: Vec<[Duration; 6]> = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let lex = time(&mut || {
            for (_, source) in &sources {
                let tokens: proc_macro2::TokenStream = source.parse().unwrap();
                drop(tokens);
                proc_macro2::extra::invalidate_current_thread_spans();
            }
        });
        let single = time(&mut || {
            findings = 0;
            for (name, source) in &sources {
                findings += lint_source(name, source, Scope::TestFile, &config).unwrap().len();
            }
        });
        let whole = time(&mut || {
            let (whole_findings, errors) = lint_workspace(&workspace, &config);
            assert!(errors.is_empty(), "{errors:?}");
            assert_eq!(whole_findings.len(), findings);
        });
        let facts = time(&mut || assert!(workspace_facts_count(&workspace) > 0));
        let repository_pass =
            time(&mut || repository_findings = lint_workspace(&repository, &config).0.len());
        let repository_facts = time(&mut || assert!(workspace_facts_count(&repository) > 0));
        rounds.push([lex, single, whole, facts, repository_pass, repository_facts]);
    }
    let median = |index: usize| {
        let mut times: Vec<Duration> = rounds.iter().map(|round| round[index]).collect();
        times.sort();
        times[times.len() / 2]
    };
    let ratio = |a: usize, b: usize| {
        let mut ratios: Vec<f64> = rounds
            .iter()
            .map(|round| round[a].as_secs_f64() / round[b].as_secs_f64())
            .collect();
        ratios.sort_by(f64::total_cmp);
        ratios[ratios.len() / 2]
    };
    let (lex, single, parallel, facts) = (median(0), median(1), median(2), median(3));
    let (repository_pass, repository_facts) = (median(4), median(5));

    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let command = "cargo bench -j1 -p cargo-loopcheck --bench lint";
    println!();
    println!(
        "Lint throughput: {files} test files, {lines} lines ({:.1} MiB), {findings} findings.",
        bytes as f64 / (1024.0 * 1024.0)
    );
    println!();
    println!("Median of {RUNS} interleaved rounds.");
    println!();
    println!("| run | threads | lines | seconds | lines/s |");
    println!("|---|---|---|---|---|");
    println!(
        "| `lint_source`, files in memory | 1 | {lines} | {:.3} | {} |",
        single.as_secs_f64(),
        rate(lines, single)
    );
    println!(
        "| `lint_workspace`, reading files: facts, then rules | {threads} | {lines} | {:.3} | {} |",
        parallel.as_secs_f64(),
        rate(lines, parallel)
    );
    println!(
        "| the facts alone (reading and lexing every file) | {threads} | {lines} | {:.3} | {} |",
        facts.as_secs_f64(),
        rate(lines, facts)
    );
    println!(
        "| proc-macro2 lexing alone, for reference | 1 | {lines} | {:.3} | {} |",
        lex.as_secs_f64(),
        rate(lines, lex)
    );
    println!(
        "| `test_sources` (discovery only) | 1 | {lines} | {:.3} | {} |",
        discovery.as_secs_f64(),
        rate(lines, discovery)
    );
    println!();
    println!(
        "Paired ratios: the single-file pass is {:.2}x lexing alone; the workspace pass is {:.2}x the single-file pass; its facts are {:.2}x lexing alone.",
        ratio(1, 0),
        ratio(2, 1),
        ratio(3, 0)
    );
    println!();
    println!(
        "This repository: {} source files, {repository_lines} lines, {repository_findings} findings.",
        test_sources(&repository).len()
    );
    println!();
    println!("| run | threads | lines | seconds | lines/s |");
    println!("|---|---|---|---|---|");
    println!(
        "| `lint_workspace` on this repository | {threads} | {repository_lines} | {:.3} | {} |",
        repository_pass.as_secs_f64(),
        rate(repository_lines, repository_pass)
    );
    println!(
        "| the facts alone | {threads} | {repository_lines} | {:.3} | {} |",
        repository_facts.as_secs_f64(),
        rate(repository_lines, repository_facts)
    );
    println!();
    println!("Command: `{command}`");
}
