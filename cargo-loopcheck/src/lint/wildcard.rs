//! LC011 wildcard-bind: a wildcard address bound by test code (`TcpListener::bind("0.0.0.0:0")`),
//! or handed to a child process: `Command::new("server").args(["-b", "0.0.0.0"])`,
//! `.arg("--host").arg("::")`, `.arg("--listen=0.0.0.0:8080")`. (Config files: `config_files`;
//! library constants: `calls`.)

use loopcheck::report::Code;

use super::addr::{self, HostKind};
use super::tokens::{Tok, pos, string_text};
use super::walk::Linter;

/// The wildcard address an argument of a child names, if any: the whole argument (`0.0.0.0`,
/// `::`, `[::]`), the value of `--flag=0.0.0.0`, or a `host:port` in it.
fn wildcard_in(text: &str) -> Option<&str> {
    let value = text.rsplit_once('=').map_or(text, |(_, value)| value);
    if !value.is_empty() && addr::host_kind(value) == HostKind::Wildcard {
        return Some(value);
    }
    addr::addresses(text)
        .into_iter()
        .find(|found| found.kind == HostKind::Wildcard)
        .map(|found| found.text)
}

impl Linter<'_> {
    pub(super) fn check_bind(&mut self, arg: Option<&[Tok]>, call: &str) {
        let Some(host) = arg.and_then(|arg| self.env.host_of(arg)) else {
            return;
        };
        if host.kind != HostKind::Wildcard {
            return;
        }
        let message = format!(
            "wildcard address `{}` in `{call}` exposes the test to the network",
            host.text
        );
        let suggestion = format!(
            "bind loopback instead: `loopcheck::loopback_ip()` or `127.0.0.1`; or take the socket from the test: `{}(listener: {})`",
            self.test_form(),
            self.listener_type()
        );
        let port = host.port.filter(|&p| p != 0);
        self.hit(Code::WildcardBind, host.pos, port, message, suggestion);
    }

    /// `.arg(..)` and `.args(..)` with a literal wildcard address among the strings.
    pub(super) fn check_child_args(&mut self, name: &str, args: &[&[Tok]]) {
        if name != "arg" && name != "args" {
            return;
        }
        for arg in args {
            self.child_strings(arg, name);
        }
    }

    fn child_strings(&mut self, toks: &[Tok], call: &str) {
        for tok in toks {
            match tok {
                Tok::Lit(lit) => {
                    let repr = lit.to_string();
                    let Some(wildcard) = string_text(&repr).and_then(wildcard_in) else {
                        continue;
                    };
                    let message = format!(
                        "wildcard address `{wildcard}` handed to a child process in `.{call}(..)` exposes it to the network"
                    );
                    let suggestion = format!(
                        "hand the child a loopback address instead: `127.0.0.1` or `loopcheck::loopback_ip()`, with a port from `loopcheck::reserve_port()` kept until it has bound (`{}(port: u16)`)",
                        self.test_form()
                    );
                    self.hit(Code::WildcardBind, pos(lit.span()), None, message, suggestion);
                }
                Tok::Group(_, _, inner) => self.child_strings(inner, call),
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_wildcards_in_arguments() {
        assert_eq!(wildcard_in("0.0.0.0"), Some("0.0.0.0"));
        assert_eq!(wildcard_in("::"), Some("::"));
        assert_eq!(wildcard_in("[::]"), Some("[::]"));
        assert_eq!(wildcard_in("--host=0.0.0.0"), Some("0.0.0.0"));
        // loopcheck:allow(LC010)
        assert_eq!(wildcard_in("--listen=0.0.0.0:8080"), Some("0.0.0.0:8080"));
        assert_eq!(wildcard_in("-b"), None);
        assert_eq!(wildcard_in("127.0.0.1"), None);
        assert_eq!(wildcard_in("a::b"), None);
        assert_eq!(wildcard_in(""), None);
    }
}
