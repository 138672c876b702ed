//! What a failed test's output says: its failure message, and the socket addresses in it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// The failure message in a failed test's output: each distinct panic (`thread 'x' panicked
/// at ..:` and its message, up to the backtrace or a blank line, through an error's `Caused
/// by:` chain) in the order printed, so the first is the root cause (a server task's
/// `AddrInUse`) and the last what ended the test (the `Canceled` of the channel that task
/// dropped); or, when nothing panicked, the `Error: ..` that a test returning `Err` ends
/// with, from the last one to the end. Empty when the output shows neither (a crash, a signal).
pub(crate) fn failure_message(output: &str) -> String {
    let mut message = String::new();
    for failure in super::panics::failures(output) {
        for line in &failure.lines {
            message.push_str(line);
            message.push('\n');
        }
    }
    message
}

/// Loopback and wildcard socket addresses written in `text`, in order, wildcards as
/// 127.0.0.1: `bind 127.0.0.1:7878: Address already in use`.
pub(crate) fn mentioned_addrs(text: &str) -> Vec<SocketAddr> {
    let mut found: Vec<SocketAddr> = Vec::new();
    for word in text.split(|c: char| c.is_whitespace() || "\"'`,;()<>{}|=".contains(c)) {
        let word = word.trim_matches(|c: char| c == '.' || c == ':');
        if word.len() < 9 || !word.contains(':') {
            continue;
        }
        let Ok(mut addr) = word.parse::<SocketAddr>() else {
            continue;
        };
        if addr.port() == 0 {
            continue;
        }
        if addr.ip().is_unspecified() {
            addr.set_ip(IpAddr::V4(Ipv4Addr::LOCALHOST));
        }
        if addr.ip().is_loopback() && !found.contains(&addr) {
            found.push(addr);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use loopcheck::diagnose::symptom;
    use std::io;

    #[test]
    fn addresses_in_failure_messages() {
        // loopcheck:allow(LC010): test data the code under test parses or prints, never bound
        let text = "bind 127.0.0.1:7878: Address already in use\nconnect to [::1]:9000. then 0.0.0.0:8080, 10.0.0.1:80 and \"127.0.0.1:7878\" again; port 0: 127.0.0.1:0";
        assert_eq!(
            mentioned_addrs(text),
            [
                // loopcheck:allow(LC010): test data the code under test parses or prints, never bound
                "127.0.0.1:7878".parse::<SocketAddr>().unwrap(),
                // loopcheck:allow(LC010): test data the code under test parses or prints, never bound
                "[::1]:9000".parse().unwrap(),
                // loopcheck:allow(LC010): test data the code under test parses or prints, never bound
                "127.0.0.1:8080".parse().unwrap(),
            ]
        );
        assert!(mentioned_addrs("thread 'x' panicked at tests/a.rs:2:91:").is_empty());
    }

    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn addresses_are_loopback_and_written_in_the_text(text in "[0-9.:\\[\\] a-f]{0,80}") {
                for addr in mentioned_addrs(&text) {
                    prop_assert!(addr.ip().is_loopback());
                    prop_assert!(addr.port() != 0);
                    prop_assert!(text.contains(&addr.port().to_string()));
                }
            }
        }
    }

    #[test]
    fn error_chains_and_logged_errors() {
        // loopcheck:allow(LC010): test data the code under test parses or prints, never bound
        let anyhow = "Error: bind the test server on 127.0.0.1:7003\n\nCaused by:\n    Address already in use (os error 98)\n";
        let message = failure_message(anyhow);
        assert_eq!(symptom(&message), Some(io::ErrorKind::AddrInUse), "{message}");
        let unwrapped = "thread 't' panicked at tests/a.rs:3:5:\ncalled `Result::unwrap()` on an `Err` value: bind\n\nCaused by:\n    Address already in use (os error 98)\nnote: run with `RUST_BACKTRACE=1`\n";
        assert_eq!(
            symptom(&failure_message(unwrapped)),
            Some(io::ErrorKind::AddrInUse)
        );
        // loopcheck:allow(LC010): test data the code under test parses or prints, never bound
        let logged = "Error: connect to 127.0.0.1:7003: Connection refused, retrying\nthread 't' panicked at tests/a.rs:9:5:\nassertion `left == right` failed\n  left: 1\n right: 2\n";
        let message = failure_message(logged);
        assert_eq!(
            symptom(&message),
            None,
            "a logged error is not the failure: {message}"
        );
        assert!(mentioned_addrs(&message).is_empty());
    }

    #[test]
    fn the_failure_message_is_the_panic_not_the_log() {
        // loopcheck:allow(LC010): test data the code under test parses or prints, never bound
        let output = "server: connection refused by 127.0.0.1:9000, retrying\n\
thread 'fetches' (7) panicked at tests/a.rs:3:5:\n\
called `Result::unwrap()` on an `Err` value: Os { code: 98, kind: AddrInUse, message: \"Address already in use\" }\n\
note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n\
timed out waiting for the log flusher\n";
        let message = failure_message(output);
        assert_eq!(symptom(&message), Some(io::ErrorKind::AddrInUse));
        assert!(mentioned_addrs(&message).is_empty(), "{message}");
        assert_eq!(
            failure_message(
                "Error: Os { code: 111, kind: ConnectionRefused, message: \"Connection refused\" }\n"
            ),
            "Error: Os { code: 111, kind: ConnectionRefused, message: \"Connection refused\" }\n"
        );
        assert_eq!(
            failure_message("process didn't exit successfully (signal: 11)"),
            ""
        );
    }
}
