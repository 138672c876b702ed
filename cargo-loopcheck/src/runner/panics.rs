//! The panics and errors in a failed test's output: which came first (the root cause, such as a
//! server task's `AddrInUse`) and which ended the test (such as the `Canceled` of the readiness
//! channel that task dropped), without backtraces.

/// A panic message longer than this is another test's output interleaved with it.
const MAX_PANIC_LINES: usize = 12;

/// How many lines of each panic the report shows.
const SHOWN_LINES: usize = 6;

/// One panic (`thread 'x' panicked at ..:` and its message, through an error's `Caused by:`
/// chain), or the `Error: ..` a test returning `Err` ends with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    /// The message's lines, the `thread '..' panicked at` line first; no backtrace, no notes.
    pub(crate) lines: Vec<String>,
}

/// Every distinct failure in `output`, in the order printed. A panic printed twice (nextest
/// repeats the last one in its JUnit description) counts once. When nothing panicked, the
/// last `Error: ..` and what follows it; empty when the output shows neither (a crash, a
/// signal).
pub(crate) fn failures(output: &str) -> Vec<Failure> {
    let lines: Vec<&str> = output.lines().map(str::trim_end).collect();
    let mut found: Vec<Failure> = Vec::new();
    let mut at = 0;
    while at < lines.len() {
        let line = lines[at].trim_start();
        at += 1;
        if !is_panic_line(line) {
            continue;
        }
        let mut failure = vec![line.to_owned()];
        while at < lines.len() && failure.len() <= MAX_PANIC_LINES {
            let next = lines[at];
            let ends = next.starts_with("stack backtrace:")
                || next.starts_with("note: ")
                || is_panic_line(next.trim_start())
                || (next.is_empty() && lines.get(at + 1).is_none_or(|l| l.trim() != "Caused by:"));
            if ends {
                break;
            }
            failure.push(next.to_owned());
            at += 1;
        }
        let failure = Failure { lines: failure };
        if !found.contains(&failure) {
            found.push(failure);
        }
    }
    if found.is_empty()
        && let Some(last) = lines.iter().rposition(|l| l.starts_with("Error: "))
    {
        found.push(Failure {
            lines: lines[last..].iter().map(|l| (*l).to_owned()).collect(),
        });
    }
    found
}

fn is_panic_line(line: &str) -> bool {
    line.starts_with("thread '") && line.contains("panicked at")
}

/// What the report shows of a failure: its first panic or error, the root cause, and when
/// others followed, the last one, which ended the test. `None` when the output shows no panic
/// nor error: then its first lines.
pub(crate) fn summary(output: &str) -> Option<String> {
    let found = failures(output);
    let shown = |failure: &Failure| -> Vec<String> {
        failure
            .lines
            .iter()
            .filter(|l| !l.trim().is_empty())
            .take(SHOWN_LINES)
            .cloned()
            .collect()
    };
    let lines = match found.as_slice() {
        [] => output
            .lines()
            .filter(|l| !l.trim().is_empty())
            .take(SHOWN_LINES)
            .map(str::to_owned)
            .collect(),
        [only] => shown(only),
        [first, .., last] => {
            let mut lines = shown(first);
            lines.push(format!("then, the last of {} panics:", found.len()));
            lines.extend(shown(last));
            lines
        }
    };
    (!lines.is_empty()).then(|| lines.join("\n"))
}

/// `output` with each backtrace cut down to the frames of the workspace's own code (a
/// relative `at ./tests/a.rs:3:5`), the frames of std and dependencies counted instead.
pub(crate) fn trim_backtraces(output: &str) -> String {
    let mut out = String::new();
    let mut lines = output.lines().peekable();
    while let Some(line) = lines.next() {
        out.push_str(line);
        out.push('\n');
        if line.trim() != "stack backtrace:" {
            continue;
        }
        let mut omitted = 0;
        // A frame is `  N: symbol`, then its location `at path:line:col` when known.
        while let Some(frame) = lines.next_if(|l| is_frame(l)) {
            let location = lines.next_if(|l| l.trim_start().starts_with("at "));
            let own = location.is_some_and(|l| l.trim_start().starts_with("at ./"));
            if own {
                out.push_str(frame);
                out.push('\n');
                out.push_str(location.unwrap_or_default());
                out.push('\n');
            } else {
                omitted += 1;
            }
        }
        if omitted > 0 {
            out.push_str(&format!(
                "   ({omitted} frames of std and dependencies left out)\n"
            ));
        }
        lines.next_if(|l| l.starts_with("note: Some details are omitted"));
    }
    out
}

/// `   3: tokio::runtime::task::core::Core<T,S>::poll`: a frame's number and symbol.
fn is_frame(line: &str) -> bool {
    line.trim_start()
        .split_once(": ")
        .is_some_and(|(number, _)| !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a `#[tokio::test]` prints when its server task fails to bind and the test then
    /// fails on the readiness channel the task dropped (with `RUST_BACKTRACE=1`).
    const TASK: &str = "\
running 1 test
thread 'serves' (7) panicked at tests/a.rs:11:81:
called `Result::unwrap()` on an `Err` value: Os { code: 98, kind: AddrInUse, message: \"Address already in use\" }
stack backtrace:
   0: __rustc::rust_begin_unwind
             at /rustc/5980/library/std/src/panicking.rs:689:5
   1: core::result::unwrap_failed
             at /rustc/5980/library/core/src/result.rs:1867:5
   2: a::serves::{{closure}}::{{closure}}
             at ./tests/a.rs:11:81
   3: tokio::runtime::task::core::Core<T,S>::poll
             at /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/tokio-1.54.1/src/runtime/task/core.rs:380:24
  11: __rust_try
note: Some details are omitted, run with `RUST_BACKTRACE=full` for a verbose backtrace.

thread 'serves' (7) panicked at tests/a.rs:15:20:
Failed to wait for server to be ready: Canceled
note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace
";

    #[test]
    fn the_first_panic_is_the_root_cause_and_the_last_is_shown_too() {
        let found = failures(TASK);
        assert_eq!(found.len(), 2);
        assert!(found[0].lines[1].contains("AddrInUse"), "{found:?}");
        assert!(found[1].lines[1].contains("Canceled"), "{found:?}");
        let summary = summary(TASK).unwrap();
        assert_eq!(
            summary,
            "thread 'serves' (7) panicked at tests/a.rs:11:81:\n\
called `Result::unwrap()` on an `Err` value: Os { code: 98, kind: AddrInUse, message: \"Address already in use\" }\n\
then, the last of 2 panics:\n\
thread 'serves' (7) panicked at tests/a.rs:15:20:\n\
Failed to wait for server to be ready: Canceled"
        );
    }

    #[test]
    fn a_repeated_panic_counts_once_whatever_comes_first() {
        // nextest's JUnit description repeats the last panic before the captured output.
        let repeated = format!(
            "thread 'serves' (7) panicked at tests/a.rs:15:20:\nFailed to wait for server to be ready: Canceled\n\n{TASK}"
        );
        let found = failures(&repeated);
        assert_eq!(found.len(), 2, "{found:?}");
        let once = "thread 'x' panicked at tests/a.rs:1:1:\nboom\n";
        assert_eq!(failures(&format!("{once}\n{once}")).len(), 1);
        assert_eq!(summary(once).as_deref(), Some(once.trim_end()));
    }

    #[test]
    fn errors_returned_and_output_without_a_panic() {
        let returned =
            // loopcheck:allow(LC010): test data the code under test parses or prints, never bound
            "log line\nError: bind 127.0.0.1:7003\n\nCaused by:\n    Address already in use (os error 98)\n";
        let found = failures(returned);
        assert_eq!(found.len(), 1);
        // loopcheck:allow(LC010): test data the code under test parses or prints, never bound
        assert_eq!(found[0].lines[0], "Error: bind 127.0.0.1:7003");
        assert!(found[0].lines.iter().any(|l| l.contains("os error 98")));
        assert_eq!(summary("").as_deref(), None);
        assert_eq!(
            summary("process didn't exit successfully (signal: 11)").as_deref(),
            Some("process didn't exit successfully (signal: 11)")
        );
    }

    #[test]
    fn backtraces_keep_only_the_workspace_frames() {
        let trimmed = trim_backtraces(TASK);
        assert!(
            trimmed
                .contains("   2: a::serves::{{closure}}::{{closure}}\n             at ./tests/a.rs:11:81\n"),
            "{trimmed}"
        );
        assert!(!trimmed.contains("tokio::runtime"), "{trimmed}");
        assert!(!trimmed.contains("unwrap_failed"), "{trimmed}");
        assert!(!trimmed.contains("__rust_try"), "{trimmed}");
        assert!(
            trimmed.contains("(4 frames of std and dependencies left out)"),
            "{trimmed}"
        );
        assert!(!trimmed.contains("RUST_BACKTRACE=full"), "{trimmed}");
        assert!(trimmed.contains("Failed to wait for server to be ready: Canceled"));
        let plain = "no backtrace\nat all\n";
        assert_eq!(trim_backtraces(plain), plain);
    }

    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn never_panics_and_never_grows(text in "\\PC{0,400}") {
                let _ = summary(&text);
                prop_assert!(trim_backtraces(&text).len() <= text.len() + 1 + 64 * text.matches("stack backtrace:").count());
            }
        }
    }
}
