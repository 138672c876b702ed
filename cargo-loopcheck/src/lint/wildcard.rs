//! LC011 wildcard-bind: a wildcard address bound by test code (`TcpListener::bind("0.0.0.0:0")`),
//! or handed to a child process: `Command::new("server").args(["-b", "0.0.0.0"])`,
//! `.arg("--host").arg("::")`, `.arg("--listen=0.0.0.0:8080")`, `.env("HOST", "::")`; and the
//! fixed ports of a child's arguments (`--port 8080`), which are LC010. (Config files:
//! `config_files`; library constants: `calls`.)

use loopcheck::report::Code;
use proc_macro2::Delimiter;

use super::addr::{self, HostKind};
use super::eval::{IntLit, strip};
use super::hard_coded::{Form, Place};
use super::names::is_port_name;
use super::tokens::{Pos, Tok, pos, split_commas, string_text};
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

    /// `.arg(..)` and `.args(..)` with a wildcard address among the strings (a literal, or a
    /// name bound to one), and `.env(KEY, value)` with one as the value. Only strings that are
    /// the argument or items of an array, tuple or `vec!` count: clap's `Command::new(..)
    /// .arg(Arg::new("host").default_value("::"))` declares an option, it starts nothing.
    /// A number after `--port` (or in `--port=N`, or the value of a `PORT` variable) is LC010.
    /// `after_port_flag`: the call before on the chain was `.arg("--port")`.
    pub(super) fn check_child_args(&mut self, name: &str, args: &[&[Tok]], after_port_flag: bool) {
        match (name, args) {
            ("arg" | "args", _) => {
                let mut after_port_flag = after_port_flag && name == "arg";
                for arg in args {
                    self.child_strings(arg, name, &mut after_port_flag);
                }
            }
            ("env", [key, value]) => {
                let key = match strip(key) {
                    [Tok::Lit(lit)] => string_text(&lit.to_string()).map(str::to_ascii_lowercase),
                    _ => None,
                };
                let mut port_value = key.is_some_and(|key| is_port_name(&key));
                self.child_strings(value, name, &mut port_value);
            }
            _ => {}
        }
    }

    /// The strings of a child's argument list; `after_port_flag`: the string before was
    /// `--port`, so this one is a port.
    fn child_strings(&mut self, toks: &[Tok], call: &str, after_port_flag: &mut bool) {
        if *after_port_flag && !matches!(strip(toks), [Tok::Lit(_)]) {
            *after_port_flag = false;
            let place = Place::Fixed(format!("the arguments of a child (`.{call}(..)`)"));
            if let [Tok::Ident(name)] = strip(toks)
                && let Some(number) = self.env.numeric_strings.get(&name.to_string()).copied()
            {
                self.report_port(number, Some(name.to_string()), place, None, Form::Port);
            } else {
                self.check_port(toks, place, None, Form::Port);
            }
            return;
        }
        if let [Tok::Ident(_)] = strip(toks)
            && let Some(host) = self.env.host_of(toks)
            && host.kind == HostKind::Wildcard
        {
            self.child_wildcard(&host.text, host.pos, call);
            return;
        }
        let mut i = 0;
        while i < toks.len() {
            match &toks[i] {
                Tok::Lit(lit) => {
                    let repr = lit.to_string();
                    if let Some(text) = string_text(&repr) {
                        let at = pos(lit.span());
                        if let Some(wildcard) = wildcard_in(text) {
                            self.child_wildcard(wildcard, at, call);
                        }
                        let (flag, value) = text.split_once('=').unwrap_or((text, ""));
                        let number = if *after_port_flag { text } else { value };
                        if (*after_port_flag || is_port_flag(flag))
                            && let Ok(port) = number.parse::<u16>()
                        {
                            let lit = IntLit { value: port, pos: at };
                            let place = Place::Fixed(format!("the arguments of a child (`.{call}(..)`)"));
                            self.report_port_from(lit, None, place, None, Form::Port);
                        }
                        *after_port_flag = value.is_empty() && is_port_flag(flag);
                    }
                }
                Tok::Group(Delimiter::Bracket, _, inner) => self.child_items(inner, call, after_port_flag),
                Tok::Group(Delimiter::Parenthesis, _, inner)
                    if i == 0 || !matches!(toks[i - 1], Tok::Ident(_)) =>
                {
                    self.child_items(inner, call, after_port_flag);
                }
                // `vec![..]`; a plain guard, since `if let` guards are newer than the MSRV.
                Tok::Ident(ident)
                    if ident == "vec"
                        && toks.get(i + 1).is_some_and(|t| t.punct('!'))
                        && matches!(toks.get(i + 2), Some(Tok::Group(..))) =>
                {
                    if let Some(Tok::Group(_, _, inner)) = toks.get(i + 2) {
                        self.child_items(inner, call, after_port_flag);
                    }
                    i += 2;
                }
                // Anything else is a value the child gets through code the lint does not read,
                // such as clap's `Arg::new(..)`: its strings are not arguments.
                Tok::Ident(_) | Tok::Punct('.', ..) => return,
                _ => {}
            }
            i += 1;
        }
    }

    fn child_items(&mut self, toks: &[Tok], call: &str, after_port_flag: &mut bool) {
        for item in split_commas(toks) {
            self.child_strings(item, call, after_port_flag);
        }
    }

    fn child_wildcard(&mut self, wildcard: &str, at: Pos, call: &str) {
        let message = format!(
            "wildcard address `{wildcard}` handed to a child process in `.{call}(..)` exposes it to the network"
        );
        let suggestion = format!(
            "hand the child a loopback address instead: `127.0.0.1` or `loopcheck::loopback_ip()`, with a port from `loopcheck::reserve_port()` kept until it has bound (`{}(port: u16)`)",
            self.test_form()
        );
        self.hit(Code::WildcardBind, at, None, message, suggestion);
    }
}

/// Whether the call before `.name(..)` at `dot` on a chain is `.arg("--port")`: its value is the
/// argument of this one.
pub(super) fn follows_port_flag(toks: &[Tok], dot: usize) -> bool {
    dot >= 3
        && toks[dot - 3].punct('.')
        && toks[dot - 2].is("arg")
        && toks[dot - 1].paren().is_some_and(|inner| match strip(inner) {
            [Tok::Lit(lit)] => string_text(&lit.to_string()).is_some_and(is_port_flag),
            _ => false,
        })
}

/// `--port`, `--http-port`, `-p` is left out: it means other things too often.
fn is_port_flag(flag: &str) -> bool {
    flag.strip_prefix("--")
        .is_some_and(|name| is_port_name(&name.replace('-', "_")))
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
