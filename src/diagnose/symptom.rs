//! Failure messages and the socket errors they stand for.

use std::io;

/// Phrases of failure messages (lower-cased) and the socket error each stands for: the
/// `Display` and `Debug` forms of `io::Error` on Linux, macOS and Windows, and what async
/// runtimes and HTTP clients print.
const SYMPTOMS: &[(io::ErrorKind, &[&str])] = &[
    (
        io::ErrorKind::AddrInUse,
        &[
            "address already in use",
            "addrinuse",
            "os error 98)",
            "os error 48)",
            "os error 10048)",
        ],
    ),
    (
        io::ErrorKind::ConnectionRefused,
        &[
            "connection refused",
            "connectionrefused",
            "os error 111)",
            "os error 61)",
            "os error 10061)",
        ],
    ),
    (
        io::ErrorKind::AddrNotAvailable,
        &[
            "cannot assign requested address",
            "can't assign requested address",
            "addrnotavailable",
            "os error 99)",
            "os error 49)",
        ],
    ),
    (
        io::ErrorKind::PermissionDenied,
        &["permission denied", "os error 13)", "os error 10013)"],
    ),
    (
        io::ErrorKind::TimedOut,
        &[
            "timed out",
            "timedout",
            "deadline has elapsed",
            "os error 110)",
            // A read or write timeout (`set_read_timeout`) surfaces as EAGAIN on Unix.
            "wouldblock",
            "resource temporarily unavailable",
            "os error 11)",
            "os error 35)",
        ],
    ),
    (
        io::ErrorKind::ConnectionReset,
        &[
            "connection reset",
            "early eof",
            "unexpected end of file",
            "unexpectedeof",
            "broken pipe",
        ],
    ),
];

/// The socket error a test's failure message speaks of, if any: `AddrInUse` for "Address
/// already in use (os error 98)", `ConnectionRefused`, `TimedOut` (also an async runtime's
/// "deadline has elapsed"), `ConnectionReset` (also "early eof" and "broken pipe"), and so on,
/// in the forms std prints on Linux, macOS and Windows. A message about anything else gives
/// `None`: such a failure is no socket's fault.
///
/// ```
/// use std::io::ErrorKind;
/// use loopcheck::diagnose::symptom;
///
/// let panic = r#"called `Result::unwrap()` on an `Err` value: Os { code: 98, kind: AddrInUse, message: "Address already in use" }"#;
/// assert_eq!(symptom(panic), Some(ErrorKind::AddrInUse));
/// assert_eq!(symptom("assertion `left == right` failed"), None);
/// ```
pub fn symptom(message: &str) -> Option<io::ErrorKind> {
    let message = message.to_ascii_lowercase();
    SYMPTOMS
        .iter()
        .find(|(_, phrases)| phrases.iter().any(|p| message.contains(p)))
        .map(|(kind, _)| *kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_messages_name_their_symptom() {
        let cases = [
            (
                "called `Result::unwrap()` on an `Err` value: Os { code: 98, kind: AddrInUse, message: \"Address already in use\" }",
                Some(io::ErrorKind::AddrInUse),
            ),
            (
                "Connection refused (os error 111)",
                Some(io::ErrorKind::ConnectionRefused),
            ),
            ("deadline has elapsed", Some(io::ErrorKind::TimedOut)),
            ("early eof", Some(io::ErrorKind::ConnectionReset)),
            ("assertion `left == right` failed\n  left: 1\n right: 2", None),
        ];
        for (message, kind) in cases {
            assert_eq!(symptom(message), kind, "{message}");
        }
    }
}
