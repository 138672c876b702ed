//! Reading `cargo test`'s output: cargo's `Running` lines (on stderr) and each binary's libtest
//! output (on stdout), read as one stream so that every result follows the line naming its
//! binary.

use super::model::{Execution, Status};

/// A test binary as cargo names it in `Running tests/echo.rs (target/debug/deps/echo-1a2b)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BinaryLine {
    /// The source cargo shows: `tests/echo.rs`, `src/lib.rs`; the package for doctests.
    pub(crate) source: String,
    /// The executable, as cargo shows it (relative to the workspace root, usually).
    pub(crate) exe: Option<String>,
    /// Whether these are a package's doctests.
    pub(crate) doctests: bool,
}

/// The executions in `output`, each tagged with the binary it ran in (`binary_id` maps
/// cargo's line to a nextest-style id). A binary that failed without naming a failing test (it
/// crashed, or a test aborted the process) gets one failed execution named after the binary.
pub(crate) fn parse(output: &str, binary_id: &dyn Fn(&BinaryLine) -> String) -> Vec<Execution> {
    let mut parser = Parser {
        binary_id,
        binary: None,
        executions: Vec::new(),
        pending: None,
        section: None,
        block: Block::Results,
        panic: None,
        panics: Vec::new(),
        binary_start: 0,
        reported_failed: Vec::new(),
    };
    // Runners that colour: the escape sequences go, as anstream strips them for a plain stream.
    let plain = anstream::adapter::strip_str(output).to_string();
    let lines: Vec<String> = plain.lines().map(str::to_owned).collect();
    for (at, line) in lines.iter().enumerate() {
        parser.line(line, &lines[at + 1..]);
    }
    parser.finish_section();
    parser.finish_panic();
    parser.attach_panics();
    parser.executions
}

/// The part of a binary's libtest output being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    /// `test NAME ... ok` lines.
    Results,
    /// After `successes:` (`--show-output`): passing tests' captured output.
    Successes,
    /// After the first `failures:`: failing tests' captured output.
    Failures,
    /// After the second `failures:`: the names of the failing tests.
    FailureList,
}

struct Parser<'a> {
    binary_id: &'a dyn Fn(&BinaryLine) -> String,
    binary: Option<String>,
    executions: Vec<Execution>,
    /// A `test NAME ... ` whose result comes on a later line (`--nocapture` output between).
    pending: Option<String>,
    /// The `---- NAME stdout ----` section being read: the test and its lines.
    section: Option<(String, String)>,
    block: Block,
    /// A panic printed outside any section (`--nocapture`): the test (its thread's name) and
    /// the lines so far.
    panic: Option<(String, String)>,
    /// Such panics, by binary and test, for tests that have no captured output.
    panics: Vec<(String, String, String)>,
    /// Where this binary's executions start in `executions`.
    binary_start: usize,
    /// The tests this binary's result lines call `FAILED`: the only ones libtest writes a
    /// section and a list entry for, which tells them from look-alikes in captured output.
    reported_failed: Vec<String>,
}

impl Parser<'_> {
    fn line(&mut self, line: &str, rest: &[String]) {
        // cargo's own lines are right-aligned status words; a test's output that happens to
        // start with `Running` is not one, nor is anything inside a captured section.
        if self.section.is_none()
            && let Some(binary) = running_line(line)
        {
            self.finish_panic();
            self.binary = Some((self.binary_id)(&binary));
            self.binary_start = self.executions.len();
            self.block = Block::Results;
            self.pending = None;
            self.reported_failed.clear();
            return;
        }
        if let Some(header) = line
            .strip_prefix("---- ")
            .and_then(|rest| rest.strip_suffix(" ----"))
        {
            let name = header
                .strip_suffix(" stdout")
                .or_else(|| header.strip_suffix(" stderr"))
                .unwrap_or(header);
            let name = test_name(name);
            // Inside a section, only the header of another failed test ends it: libtest
            // output that a test printed (it ran a suite of its own) is that test's output.
            if self.section.is_none() || self.expects_section(name) {
                self.finish_section();
                self.section = Some((name.to_owned(), String::new()));
                return;
            }
        }
        if line == "successes:" && (self.section.is_none() || self.block == Block::Successes) {
            self.finish_section();
            self.block = Block::Successes;
            return;
        }
        if line == "failures:" && (self.section.is_none() || self.is_failure_list(rest)) {
            // The first `failures:` opens the captured output, the second the list of names.
            self.finish_section();
            self.block = match self.block {
                Block::Failures => Block::FailureList,
                _ if self.is_failure_list(rest) => Block::FailureList,
                _ => Block::Failures,
            };
            return;
        }
        if line.starts_with("test result: ") && self.section.is_none() {
            self.block = Block::Results;
            return;
        }
        if let Some((_, text)) = &mut self.section {
            text.push_str(line);
            text.push('\n');
            return;
        }
        if self.block == Block::FailureList {
            if let Some(name) = line.strip_prefix("    ").filter(|n| !n.trim().is_empty()) {
                self.record(test_name(name), Status::Failed);
            }
            return;
        }
        if self.panic_line(line) {
            return;
        }
        if let Some(rest) = line.strip_prefix("test ") {
            if let Some((name, result)) = rest.split_once(" ... ") {
                let name = test_name(name);
                match result_status(result) {
                    Some(status) => {
                        if status == Status::Failed {
                            self.reported_failed.push(name.to_owned());
                        }
                        self.record(name, status);
                    }
                    None => {
                        self.pending = Some(name.to_owned());
                        // `--nocapture --test-threads=1`: the panic follows on the same line.
                        self.panic_line(result);
                    }
                }
                return;
            }
            if let Some(name) = rest.strip_suffix(" ...") {
                self.pending = Some(test_name(name).to_owned());
                return;
            }
        }
        let trimmed = line.trim_start();
        if let Some(status) = result_status(trimmed)
            && let Some(name) = self.pending.take()
        {
            if status == Status::Failed {
                self.reported_failed.push(name.clone());
            }
            self.record(&name, status);
            return;
        }
        if trimmed.starts_with("process didn't exit successfully:")
            || trimmed.starts_with("error: test failed")
        {
            self.binary_failed(trimmed);
        }
    }

    /// Whether a `---- NAME stdout ----` inside a section is libtest's: NAME failed in this
    /// binary's results, and has no section yet. Without results (libtest's terse output
    /// names no test), every header is taken.
    fn expects_section(&self, name: &str) -> bool {
        if self.reported_failed.is_empty() {
            return true;
        }
        self.reported_failed.iter().any(|f| f == name)
            && !self.executions[self.binary_start..]
                .iter()
                .any(|e| e.name == name && !e.output.is_empty())
    }

    /// Whether the lines after a `failures:` are libtest's list of this binary's failed tests,
    /// rather than a list a test printed.
    fn is_failure_list(&self, rest: &[String]) -> bool {
        let names: Vec<&str> = rest
            .iter()
            .map_while(|line| line.strip_prefix("    "))
            .map(test_name)
            .collect();
        if names.is_empty() {
            return false;
        }
        self.reported_failed.is_empty() || names.iter().all(|n| self.reported_failed.iter().any(|f| f == n))
    }

    /// Collects a panic printed straight to the output (`--nocapture`): libtest names a test's
    /// thread after the test. Returns whether the line was part of one.
    fn panic_line(&mut self, line: &str) -> bool {
        if let Some(name) = line
            .strip_prefix("thread '")
            .and_then(|rest| rest.split_once('\''))
            .filter(|(_, rest)| rest.contains("panicked at"))
            .map(|(name, _)| name.to_owned())
        {
            self.finish_panic();
            self.panic = Some((name, format!("{line}\n")));
            return true;
        }
        let Some((_, text)) = &mut self.panic else {
            return false;
        };
        if line.trim().is_empty() || line.starts_with("test ") || line.starts_with("note: ") {
            self.finish_panic();
            return false;
        }
        text.push_str(line);
        text.push('\n');
        true
    }

    fn finish_panic(&mut self) {
        if let Some((name, text)) = self.panic.take() {
            let binary = self.binary.clone().unwrap_or_default();
            self.panics.push((binary, name, text));
        }
    }

    /// Gives each failed test without captured output the panic its thread printed.
    fn attach_panics(&mut self) {
        for (binary, name, text) in std::mem::take(&mut self.panics) {
            if let Some(execution) = self.executions.iter_mut().find(|e| {
                e.binary == binary && e.name == name && e.status == Status::Failed && e.output.is_empty()
            }) {
                execution.output = text;
            }
        }
    }

    fn record(&mut self, name: &str, status: Status) {
        let binary = self.binary.clone().unwrap_or_default();
        let known = self.executions[self.binary_start..]
            .iter_mut()
            .find(|e| e.name == name);
        match known {
            Some(known) => {
                if status == Status::Failed {
                    known.status = Status::Failed;
                }
            }
            None => self.executions.push(Execution::new(binary, name, status)),
        }
    }

    fn finish_section(&mut self) {
        if let Some((name, text)) = self.section.take() {
            // `--show-output` prints passing tests' output the same way, under `successes:`.
            if self.block == Block::Successes {
                return;
            }
            self.record(&name, Status::Failed);
            if let Some(execution) = self.executions[self.binary_start..]
                .iter_mut()
                .find(|e| e.name == name)
            {
                execution.output.push_str(&text);
            }
        }
    }

    /// cargo says a binary failed: when libtest named no failing test, the binary itself
    /// crashed or was killed, and that is the failure.
    fn binary_failed(&mut self, line: &str) {
        let Some(binary) = self.binary.clone() else {
            return;
        };
        let start = self.binary_start;
        if let Some(crash) = self.executions[start..]
            .iter_mut()
            .find(|e| e.name == CRASHED && e.binary == binary)
        {
            crash.output.push_str(line);
            crash.output.push('\n');
            return;
        }
        if self.executions[start..]
            .iter()
            .any(|e| e.status == Status::Failed)
        {
            return;
        }
        let mut crash = Execution::new(binary, CRASHED, Status::Failed);
        if let Some(name) = self.pending.take() {
            crash
                .output
                .push_str(&format!("the binary ended while `{name}` ran\n"));
        }
        crash.output.push_str(line);
        crash.output.push('\n');
        self.executions.push(crash);
    }
}

/// Whether cargo started a test binary: it builds all of them first, so when none ran and it
/// failed, the build failed.
pub(crate) fn any_binary_ran(output: &str) -> bool {
    output
        .lines()
        .any(|line| running_line(&anstream::adapter::strip_str(line).to_string()).is_some())
}

/// A test's name without what libtest appends to it: `name - should panic`, and a doctest's
/// ` - compile fail`, ` - no_run`.
fn test_name(name: &str) -> &str {
    let name = name.trim();
    [" - should panic", " - compile fail", " - no_run"]
        .iter()
        .find_map(|suffix| name.strip_suffix(suffix))
        .unwrap_or(name)
}

/// The name given to a binary's failure that no test result explains.
pub(crate) const CRASHED: &str = "(test binary)";

fn result_status(result: &str) -> Option<Status> {
    let result = result.trim();
    if result == "ok" {
        Some(Status::Passed)
    } else if result == "FAILED" || result.starts_with("FAILED ") {
        Some(Status::Failed)
    } else if result == "ignored" || result.starts_with("ignored,") {
        Some(Status::Skipped)
    } else {
        None
    }
}

/// cargo's `     Running tests/echo.rs (target/debug/deps/echo-1a2b)`, `     Running
/// unittests src/lib.rs (..)` and `   Doc-tests demo`: status words right-aligned in twelve
/// columns, and for `Running` the executable in parentheses.
fn running_line(line: &str) -> Option<BinaryLine> {
    if let Some(package) = line.strip_prefix("   Doc-tests ") {
        let package = package.trim();
        return (!package.is_empty() && !package.contains(' ')).then(|| BinaryLine {
            source: package.to_owned(),
            exe: None,
            doctests: true,
        });
    }
    let rest = line.strip_prefix("     Running ")?;
    // `cargo test -v`: the command line in backticks, environment first, the binary last.
    if let Some(command) = rest.strip_prefix('`').and_then(|r| r.strip_suffix('`')) {
        let exe = command.split_whitespace().last()?;
        let in_deps = exe.contains("/deps/") || exe.contains("\\deps\\");
        return in_deps.then(|| BinaryLine {
            source: String::new(),
            exe: Some(exe.to_owned()),
            doctests: false,
        });
    }
    let rest = rest.strip_prefix("unittests ").unwrap_or(rest);
    let at = rest.rfind(" (")?;
    let exe = rest[at + 2..].strip_suffix(')')?;
    Some(BinaryLine {
        source: rest[..at].trim().to_owned(),
        exe: Some(exe.to_owned()),
        doctests: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(binary: &BinaryLine) -> String {
        if binary.doctests {
            format!("{}::doctests", binary.source)
        } else {
            binary.source.clone()
        }
    }

    fn summary(executions: &[Execution]) -> Vec<(String, String, Status)> {
        executions
            .iter()
            .map(|e| (e.binary.clone(), e.name.clone(), e.status))
            .collect()
    }

    // loopcheck:allow(LC010): test data the code under test parses or prints, never bound
    const OUTPUT: &str = "\
   Compiling demo v0.1.0 (/w/demo)
    Finished `test` profile [unoptimized + debuginfo] target(s) in 0.50s
     Running unittests src/lib.rs (target/debug/deps/demo-0f1e)

running 2 tests
test tests::adds ... ok
test tests::slow ... ignored, takes a minute

test result: ok. 1 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.00s

     Running tests/echo.rs (target/debug/deps/echo-9a8b)

running 3 tests
test echo_round_trip ... ok
test fixed_port ... FAILED
test wrong_sum ... FAILED

failures:

---- fixed_port stdout ----
connecting to 127.0.0.1:7878

thread 'fixed_port' panicked at tests/echo.rs:19:60:
called `Result::unwrap()` on an `Err` value: Os { code: 98, kind: AddrInUse, message: \"Address already in use\" }
note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace

---- wrong_sum stdout ----

thread 'wrong_sum' panicked at tests/echo.rs:40:5:
assertion `left == right` failed

failures:
    fixed_port
    wrong_sum

test result: FAILED. 1 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.01s

error: test failed, to rerun pass `--test echo`
";

    #[test]
    fn results_and_failure_output_per_binary() {
        let executions = parse(OUTPUT, &id);
        assert_eq!(
            summary(&executions),
            [
                ("src/lib.rs".into(), "tests::adds".into(), Status::Passed),
                ("src/lib.rs".into(), "tests::slow".into(), Status::Skipped),
                ("tests/echo.rs".into(), "echo_round_trip".into(), Status::Passed),
                ("tests/echo.rs".into(), "fixed_port".into(), Status::Failed),
                ("tests/echo.rs".into(), "wrong_sum".into(), Status::Failed),
            ]
        );
        // loopcheck:allow(LC010): test data the code under test parses or prints, never bound
        assert!(executions[3].output.starts_with("connecting to 127.0.0.1:7878\n"));
        assert!(executions[3].output.contains("Address already in use"));
        assert!(!executions[3].output.contains("assertion"));
        assert!(executions[4].output.contains("assertion `left == right` failed"));
    }

    #[test]
    fn colored_quiet_and_nocapture_output() {
        let output = "\u{1b}[1m\u{1b}[92m     Running\u{1b}[0m tests/a.rs (target/debug/deps/a-1)\n\
running 3 tests\n\
test one ... server says hi\n\
ok\n\
.F\n\
failures:\n\n---- two stdout ----\nboom\n\nfailures:\n    two\n\n\
test result: FAILED. 1 passed; 1 failed\n";
        let executions = parse(output, &id);
        assert_eq!(
            summary(&executions),
            [
                ("tests/a.rs".into(), "one".into(), Status::Passed),
                ("tests/a.rs".into(), "two".into(), Status::Failed),
            ]
        );
        assert_eq!(executions[1].output, "boom\n\n");
    }

    #[test]
    fn show_output_should_panic_and_lookalike_lines() {
        let output = "     Running tests/a.rs (target/debug/deps/a-1)\n\
running 4 tests\n\
test logs ... ok\n\
test must_fail - should panic ... ok\n\
test broken - should panic ... FAILED\n\
test talks ... FAILED\n\
\n\
successes:\n\n---- logs stdout ----\nserver listening\n\n\
successes:\n    logs\n\n\
failures:\n\n---- broken stdout ----\nnote: test did not panic as expected\n\
---- talks stdout ----\n     Running with config: verbose\n   Doc-tests are not this\n\
thread 'talks' panicked at tests/a.rs:9:5:\nrefused\n\n\
failures:\n    broken\n    talks\n\n\
test result: FAILED. 2 passed; 2 failed\n";
        let executions = parse(output, &id);
        assert_eq!(
            summary(&executions),
            [
                ("tests/a.rs".into(), "logs".into(), Status::Passed),
                ("tests/a.rs".into(), "must_fail".into(), Status::Passed),
                ("tests/a.rs".into(), "broken".into(), Status::Failed),
                ("tests/a.rs".into(), "talks".into(), Status::Failed),
            ]
        );
        assert!(
            executions[3].output.contains("Running with config"),
            "{}",
            executions[3].output
        );
    }

    #[test]
    fn verbose_running_lines_and_nested_suite_output() {
        let output = [
            "     Running `CARGO=/usr/bin/cargo CARGO_PKG_NAME=demo /w/target/debug/deps/outer-1`",
            "running 2 tests",
            "test runs_a_fixture ... FAILED",
            "test plain ... ok",
            "",
            "failures:",
            "",
            "---- runs_a_fixture stdout ----",
            "     Running tests/net.rs (target/debug/deps/net-9)",
            "test held_port ... FAILED",
            "failures:",
            "",
            "---- held_port stdout ----",
            "Address already in use",
            "",
            "failures:",
            "    held_port",
            "",
            "test result: FAILED. 0 passed; 1 failed",
            "thread 'runs_a_fixture' panicked at tests/outer.rs:9:5:",
            "the fixture failed",
            "",
            "failures:",
            "    runs_a_fixture",
            "",
            "test result: FAILED. 1 passed; 1 failed",
            "   Doc-tests demo",
            "     Running `/toolchain/bin/rustdoc --edition=2024 --test src/lib.rs`",
            "test src/lib.rs - add (line 3) ... ok",
        ]
        .join("\n");
        let output = output.as_str();
        let executions = parse(output, &|binary: &BinaryLine| {
            if binary.doctests {
                "doctests".to_owned()
            } else {
                binary.exe.clone().unwrap_or_default()
            }
        });
        assert_eq!(
            summary(&executions),
            [
                (
                    "/w/target/debug/deps/outer-1".into(),
                    "runs_a_fixture".into(),
                    Status::Failed
                ),
                (
                    "/w/target/debug/deps/outer-1".into(),
                    "plain".into(),
                    Status::Passed
                ),
                (
                    "doctests".into(),
                    "src/lib.rs - add (line 3)".into(),
                    Status::Passed
                ),
            ]
        );
        assert!(executions[0].output.contains("the fixture failed"));
        assert!(
            executions[0].output.contains("held_port"),
            "nested output stays the test's own"
        );
    }

    #[test]
    fn a_panic_on_the_line_of_its_test() {
        let output = "     Running tests/a.rs (target/debug/deps/a-1)\n\
test fixed_port ... thread 'fixed_port' (3) panicked at tests/a.rs:4:9:\n\
called `Result::unwrap()` on an `Err` value: Os { code: 98, kind: AddrInUse }\n\
note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n\
FAILED\n\nfailures:\n\nfailures:\n    fixed_port\n\ntest result: FAILED.\n";
        let executions = parse(output, &id);
        assert_eq!(executions.len(), 1);
        assert_eq!(executions[0].status, Status::Failed);
        assert!(
            executions[0].output.contains("AddrInUse"),
            "{:?}",
            executions[0].output
        );
    }

    #[test]
    fn nocapture_panics_go_to_their_test() {
        let output = "     Running tests/a.rs (target/debug/deps/a-1)\n\
running 2 tests\n\
test one ... \n\
test two ... \n\
thread 'two' (9) panicked at tests/a.rs:5:9:\n\
called `Result::unwrap()` on an `Err` value: Os { code: 111, kind: ConnectionRefused }\n\
note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n\
FAILED\n\
ok\n\
\nfailures:\n\nfailures:\n    two\n\ntest result: FAILED. 1 passed; 1 failed\n";
        let executions = parse(output, &id);
        let two = executions.iter().find(|e| e.name == "two").expect("two");
        assert_eq!(two.status, Status::Failed);
        assert!(two.output.contains("ConnectionRefused"), "{:?}", two.output);
    }

    #[test]
    fn a_crashed_binary_is_one_failure() {
        let output = "     Running tests/crash.rs (target/debug/deps/crash-1)\n\
running 1 test\n\
error: test failed, to rerun pass `--test crash`\n\n\
Caused by:\n  process didn't exit successfully: `/w/target/debug/deps/crash-1` (signal: 6, SIGABRT: process abort signal)\n";
        let executions = parse(output, &id);
        assert_eq!(
            summary(&executions),
            [("tests/crash.rs".into(), CRASHED.into(), Status::Failed)]
        );
        assert!(
            executions[0].output.contains("SIGABRT"),
            "{}",
            executions[0].output
        );
    }

    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        /// Lines shaped like cargo's and libtest's, in any order, with any names.
        fn line() -> impl Strategy<Value = String> {
            let name = "[a-z_:]{0,12}( [a-z]{0,3})?";
            prop_oneof![
                name.prop_map(|n| format!("test {n} ... ok")),
                name.prop_map(|n| format!("test {n} ... FAILED")),
                name.prop_map(|n| format!("test {n} ...")),
                name.prop_map(|n| format!("---- {n} stdout ----")),
                name.prop_map(|n| format!("    {n}")),
                "[a-z/.]{0,10}".prop_map(|s| format!("     Running {s} (target/debug/deps/{s}-1)")),
                Just("failures:".to_owned()),
                Just("test result: FAILED.".to_owned()),
                Just("error: test failed, to rerun pass `--test x`".to_owned()),
                "\\PC{0,40}",
            ]
        }

        proptest! {
            #[test]
            fn never_panics(text in "\\PC{0,400}") {
                let _ = parse(&text, &id);
                let _ = any_binary_ran(&text);
            }

            #[test]
            fn near_valid_output_never_panics_and_names_only_seen_tests(lines in proptest::collection::vec(line(), 0..40)) {
                let text = lines.join("\n");
                for execution in parse(&text, &id) {
                    prop_assert!(execution.name == CRASHED || text.contains(execution.name.as_str()));
                }
            }
        }
    }

    #[test]
    fn doctests_and_garbage() {
        let output = "   Doc-tests demo\n\nrunning 1 test\ntest src/lib.rs - add (line 3) ... ok\n\ntest result: ok.\n";
        let executions = parse(output, &id);
        assert_eq!(
            summary(&executions),
            [(
                "demo::doctests".into(),
                "src/lib.rs - add (line 3)".into(),
                Status::Passed
            )]
        );
        for garbage in [
            "",
            "\u{1b}[",
            "test ",
            "---- ----",
            "failures:\n    x y\n",
            "Running (",
            "\u{1b}",
        ] {
            let _ = parse(garbage, &id);
        }
    }
}
