//! Where a function's parameter goes in its body: into an address (a `bind`, a `connect`, a
//! `(host, port)` tuple, an address built by `format!`, a child's arguments), nowhere that
//! matters (assertions, comparisons, logs), or into calls that only the workspace facts can
//! follow.

use proc_macro2::Delimiter;

use super::addr;
use super::items::pattern_names;
use super::tokens::{Tok, path_end, path_sep, segments, skip_angle, split_commas, string_text};

/// How far a value goes, from the least to the most: the order is the one facts merge by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Reach {
    /// Never into an address, as far as the body shows.
    No,
    /// Into code the lint cannot follow: a call outside the workspace, a field, a return value.
    Unknown,
    /// Into an address.
    Address,
}

/// A call the value is handed to, to be followed once every function's facts are known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Edge {
    /// The callee as written (`broker::start`, or the method name for `.start(..)`).
    pub(crate) callee: Vec<String>,
    /// Whether it is a method call (`x.start(..)`), whose receiver is not among the arguments.
    pub(crate) method: bool,
    /// The argument the value is passed as.
    pub(crate) arg: usize,
}

/// What the body does with a parameter.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Flow {
    pub(crate) reach: Option<Reach>,
    pub(crate) edges: Vec<Edge>,
    /// Whether it is stored in a field named like a port (`Self { port: p }`): an integer
    /// that is, is a port; what else the field is for, the lint cannot tell.
    pub(crate) port_field: bool,
}

impl Flow {
    fn reaches(&mut self, reach: Reach) {
        self.reach = self.reach.max(Some(reach));
    }

    /// What the body alone shows, edges left out.
    pub(crate) fn own(&self) -> Reach {
        self.reach.unwrap_or(Reach::No)
    }
}

/// Calls that bind, connect or hand an address to a child: std's and tokio's names.
pub(super) fn is_socket_sink(name: &str) -> bool {
    matches!(
        name,
        "bind"
            | "try_bind"
            | "bind_addr"
            | "listen"
            | "serve"
            | "connect"
            | "connect_timeout"
            | "send_to"
            | "to_socket_addrs"
            | "lookup_host"
            | "arg"
            | "args"
    )
}

/// Calls a value goes through unchanged, as far as its address or port is concerned.
fn is_passthrough(segments: &[String]) -> bool {
    let (ty, name) = super::tokens::last_two(segments);
    matches!(
        name,
        "Some" | "Ok" | "Err" | "into" | "to_string" | "to_owned" | "clone" | "parse" | "as_str" | "trim"
    ) || matches!(ty, "String" | "Box" | "Arc" | "Rc" | "Cow")
}

/// Calls whose result is their argument, converted or wrapped.
fn is_conversion(name: &str) -> bool {
    matches!(
        name,
        "Some" | "Ok" | "Err" | "from" | "try_from" | "Box" | "Arc" | "Rc"
    )
}

/// Whether a pair reads as `(host, port)`: a host-like first part (a string, an IP address
/// expression, octets, a name such as `host` or `ip`), or a second part named like a port.
fn is_host_port(host: &[Tok], port: &[Tok]) -> bool {
    let named = |toks: &[Tok], words: &[&str]| {
        toks.iter().any(|t| {
            t.ident().is_some_and(|i| {
                let name = i.to_string().to_ascii_lowercase();
                words.iter().any(|w| name.contains(w))
            })
        })
    };
    matches!(host, [Tok::Lit(_)] | [Tok::Group(Delimiter::Bracket, ..)])
        || named(
            host,
            &["host", "ip", "addr", "localhost", "unspecified", "loopback"],
        )
        || matches!(port, [Tok::Ident(name)] if super::names::is_port_name(&name.to_string()))
}

/// Whether the value at `i` is compared: `x == 1`, `1 != x`, `x < y`.
fn compared(toks: &[Tok], i: usize) -> bool {
    let joint = |j: usize| matches!(toks.get(j), Some(Tok::Punct('=' | '!' | '<' | '>', true, _)));
    let after = matches!(toks.get(i + 1), Some(Tok::Punct('<' | '>', false, _))) || joint(i + 1);
    let before = i >= 1
        && (matches!(toks[i - 1], Tok::Punct('<' | '>', false, _))
            || (matches!(toks[i - 1], Tok::Punct('=', false, _)) && i >= 2 && joint(i - 2)));
    after || before
}

/// Macros the value does not get out of.
fn is_dead_end_macro(name: &str) -> bool {
    name.starts_with("assert")
        || name.starts_with("debug_assert")
        || matches!(
            name,
            "println"
                | "eprintln"
                | "print"
                | "eprint"
                | "dbg"
                | "trace"
                | "debug"
                | "info"
                | "warn"
                | "error"
                | "panic"
        )
}

/// Where a token list sits, as far as a value in it is concerned.
#[derive(Clone)]
enum Ctx {
    /// A statement, a return value, a field: nothing the lint can follow.
    Top,
    /// The initializer of a `let`: the names it binds carry the value on.
    Let,
    /// An address or port in use.
    Sink,
    /// A field named like a port.
    PortField,
    /// A dead end: an assertion, a comparison, a log line.
    Stop,
    /// An argument of a call to follow.
    Call(Vec<String>, bool, usize),
}

/// What the function body `body` does with the parameter `name`.
pub(crate) fn flow(body: &[Tok], name: &str) -> Flow {
    let mut walker = Walker {
        tainted: vec![name.to_owned()],
        flow: Flow::default(),
    };
    // A second pass sees the uses of names bound after their first use in a loop or closure.
    walker.walk(body, &Ctx::Top);
    if walker.tainted.len() > 1 {
        walker.walk(body, &Ctx::Top);
    }
    walker
        .flow
        .edges
        .sort_by(|a, b| (&a.callee, a.arg).cmp(&(&b.callee, b.arg)));
    walker.flow.edges.dedup();
    walker.flow
}

struct Walker {
    tainted: Vec<String>,
    flow: Flow,
}

impl Walker {
    fn is_tainted(&self, toks: &[Tok], i: usize) -> bool {
        let Some(Tok::Ident(ident)) = toks.get(i) else {
            return false;
        };
        let field = i > 0 && toks[i - 1].punct('.');
        let path = path_sep(toks, i + 1) || (i >= 2 && path_sep(toks, i - 2));
        !field && !path && self.tainted.iter().any(|t| ident == t)
    }

    /// Whether the value of the expression `toks` is the value itself, or built from it: not when
    /// it is only an argument of a call (`policy.nth_port(n)` is another value, which the edge
    /// follows), an index (`ports[n]`), the right side of `%`, or a bound of a range (`0..n`
    /// counts to it). Counts and indexes become ports that way, and are not ports.
    fn carries(&self, toks: &[Tok]) -> bool {
        if toks.windows(2).any(|w| w[0].punct('.') && w[1].punct('.')) {
            return false;
        }
        (0..toks.len()).any(|i| {
            let after = |c: char| i > 0 && toks[i - 1].punct(c);
            // An expression before the group: a name (not a keyword such as `in`) or a group.
            let operand = i > 0
                && match &toks[i - 1] {
                    Tok::Ident(name) => !matches!(
                        name.to_string().as_str(),
                        "in" | "return" | "break" | "else" | "match" | "if"
                    ),
                    Tok::Group(..) => true,
                    _ => false,
                };
            if after('%') {
                return false;
            }
            match &toks[i] {
                Tok::Group(Delimiter::Parenthesis, _, inner) => {
                    let called = operand || after('>');
                    let through = i > 0
                        && toks[i - 1]
                            .ident()
                            .is_some_and(|name| is_conversion(&name.to_string()));
                    (!called || through) && self.carries(inner)
                }
                Tok::Group(Delimiter::Bracket, _, inner) => !operand && self.carries(inner),
                Tok::Group(_, _, inner) => self.carries(inner),
                _ => self.is_tainted(toks, i),
            }
        })
    }

    fn hit(&mut self, ctx: &Ctx) {
        match ctx {
            Ctx::Top => self.flow.reaches(Reach::Unknown),
            Ctx::Let | Ctx::Stop => {}
            Ctx::Sink => self.flow.reaches(Reach::Address),
            Ctx::PortField => {
                self.flow.port_field = true;
                self.flow.reaches(Reach::Unknown);
            }
            Ctx::Call(callee, method, arg) => {
                self.flow.reach = self.flow.reach.max(Some(Reach::No));
                self.flow.edges.push(Edge {
                    callee: callee.clone(),
                    method: *method,
                    arg: *arg,
                });
            }
        }
    }

    fn walk(&mut self, toks: &[Tok], ctx: &Ctx) {
        let mut i = 0;
        while i < toks.len() {
            i = self.step(toks, i, ctx);
        }
    }

    fn step(&mut self, toks: &[Tok], i: usize, ctx: &Ctx) -> usize {
        match &toks[i] {
            Tok::Ident(ident)
                if ident == "let" && (i == 0 || toks[i - 1].punct(';') || toks[i - 1].brace().is_some()) =>
            {
                self.let_statement(toks, i)
            }
            Tok::Ident(ident) if ident == "for" => {
                // `for pattern in expr`: the names of the pattern carry the value on.
                let Some(at) = toks[i..].iter().position(|t| t.is("in")).map(|p| p + i) else {
                    return i + 1;
                };
                let body = toks[at..]
                    .iter()
                    .position(|t| t.brace().is_some())
                    .map_or(toks.len(), |p| p + at);
                if self.carries(&toks[at + 1..body]) {
                    let mut names = Vec::new();
                    pattern_names(&toks[i + 1..at], &mut names);
                    self.tainted.extend(names);
                }
                self.walk(&toks[at + 1..body], &Ctx::Let);
                body
            }
            Tok::Ident(ident) if matches!(ident.to_string().as_str(), "match" | "if" | "while") => {
                // A condition or scrutinee: what is tested goes no further by itself.
                let body = toks[i..]
                    .iter()
                    .position(|t| t.brace().is_some())
                    .map_or(toks.len(), |p| p + i);
                self.walk(&toks[i + 1..body], &Ctx::Let);
                body
            }
            Tok::Ident(_) if self.is_tainted(toks, i) => {
                if !compared(toks, i) {
                    self.hit(ctx);
                }
                i + 1
            }
            Tok::Ident(_) => self.path(toks, i, ctx),
            Tok::Punct('.', ..) => self.method(toks, i, ctx),
            Tok::Group(Delimiter::Parenthesis, _, inner) => {
                let parts = split_commas(inner);
                if parts.len() == 2
                    && !inner.last().is_some_and(|t| t.punct(','))
                    && is_host_port(parts[0], parts[1])
                {
                    // `(host, port)`: an address in the making.
                    for part in parts {
                        self.walk(part, &Ctx::Sink);
                    }
                } else {
                    self.walk(inner, ctx);
                }
                i + 1
            }
            Tok::Group(Delimiter::Brace, _, inner) => {
                let struct_literal = i > 0
                    && toks[i - 1]
                        .ident()
                        .is_some_and(|t| t.to_string().starts_with(char::is_uppercase));
                if struct_literal {
                    for part in split_commas(inner) {
                        match part {
                            [Tok::Ident(field), colon, value @ ..] if colon.lone(':') => {
                                let sink = super::names::is_port_name(&field.to_string());
                                self.walk(value, if sink { &Ctx::PortField } else { &Ctx::Top });
                            }
                            [Tok::Ident(field)] if self.tainted.iter().any(|t| field == t) => {
                                let sink = super::names::is_port_name(&field.to_string());
                                self.hit(if sink { &Ctx::PortField } else { &Ctx::Top });
                            }
                            _ => self.walk(part, &Ctx::Top),
                        }
                    }
                } else {
                    self.walk(inner, &Ctx::Top);
                }
                i + 1
            }
            Tok::Group(_, _, inner) => {
                self.walk(inner, ctx);
                i + 1
            }
            _ => i + 1,
        }
    }

    fn let_statement(&mut self, toks: &[Tok], i: usize) -> usize {
        let end = toks[i..]
            .iter()
            .position(|t| t.punct(';'))
            .map_or(toks.len(), |p| p + i);
        let Some(eq) = toks[i..end].iter().position(|t| t.lone('=')).map(|p| p + i) else {
            return end + 1;
        };
        let init = &toks[eq + 1..end];
        if self.carries(init) {
            let pattern_end = toks[i..eq].iter().position(|t| t.lone(':')).map_or(eq, |p| p + i);
            let mut names = Vec::new();
            pattern_names(&toks[i + 1..pattern_end], &mut names);
            for name in names {
                if !self.tainted.contains(&name) {
                    self.tainted.push(name);
                }
            }
        }
        self.walk(init, &Ctx::Let);
        end + 1
    }

    /// A path at `i`: a call, a macro, or just a name.
    fn path(&mut self, toks: &[Tok], i: usize, ctx: &Ctx) -> usize {
        let end = path_end(toks, i).max(i + 1);
        let segments = segments(&toks[i..end]);
        match toks.get(end) {
            Some(bang) if bang.punct('!') => {
                let Some(Tok::Group(_, _, args)) = toks.get(end + 1) else {
                    return end + 1;
                };
                self.macro_call(segments.last().map_or("", String::as_str), args, ctx);
                end + 2
            }
            Some(Tok::Group(Delimiter::Parenthesis, _, args)) => {
                self.call(&segments, false, args, ctx);
                end + 1
            }
            _ => end,
        }
    }

    fn method(&mut self, toks: &[Tok], i: usize, ctx: &Ctx) -> usize {
        let Some(Tok::Ident(name)) = toks.get(i + 1) else {
            return i + 1;
        };
        let mut j = i + 2;
        if path_sep(toks, j) && toks.get(j + 2).is_some_and(|t| t.punct('<')) {
            j = skip_angle(toks, j + 2);
        }
        match toks.get(j) {
            Some(Tok::Group(Delimiter::Parenthesis, _, args)) => {
                self.call(&[name.to_string()], true, args, ctx);
                j + 1
            }
            _ => i + 2,
        }
    }

    fn call(&mut self, segments: &[String], method: bool, args: &[Tok], ctx: &Ctx) {
        let name = segments.last().map_or("", String::as_str);
        let ty = super::tokens::last_two(segments).0;
        let socket_addr = matches!(ty, "SocketAddr" | "SocketAddrV4" | "SocketAddrV6");
        for (index, part) in split_commas(args).into_iter().enumerate() {
            let inner = if is_socket_sink(name) || socket_addr {
                Ctx::Sink
            } else if matches!(
                name,
                "eq" | "ne" | "contains" | "starts_with" | "ends_with" | "len"
            ) {
                Ctx::Stop
            } else if is_passthrough(segments) {
                ctx.clone()
            } else {
                Ctx::Call(segments.to_vec(), method, index)
            };
            self.walk(part, &inner);
        }
    }

    fn macro_call(&mut self, name: &str, args: &[Tok], ctx: &Ctx) {
        if is_dead_end_macro(name) {
            self.walk(args, &Ctx::Stop);
            return;
        }
        if !matches!(name, "format" | "format_args" | "write" | "writeln" | "concat") {
            // `vec![..]`, `json!(..)` and the like: the value is in what the macro makes.
            self.walk(args, ctx);
            return;
        }
        let parts = split_commas(args);
        let at = usize::from(matches!(name, "write" | "writeln"));
        let Some(format) = parts.get(at) else {
            return;
        };
        let text = match format {
            [Tok::Lit(lit)] => string_text(&lit.to_string()).map(str::to_owned),
            _ => None,
        };
        let mut positional = Vec::new();
        let mut named: Vec<(String, &[Tok])> = Vec::new();
        for part in &parts[at + 1..] {
            match part {
                [Tok::Ident(name), eq, value @ ..] if eq.lone('=') => named.push((name.to_string(), value)),
                _ => positional.push(*part),
            }
        }
        let mut in_address = vec![false; positional.len()];
        let mut next = 0;
        for (before, arg) in text.as_deref().map(addr::placeholders).unwrap_or_default() {
            // A placeholder right after `:` is a port: `"{host}:{port}"`, `"127.0.0.1:{}"`.
            let port_place = before.ends_with(':');
            let index = match &arg {
                addr::ArgRef::Next => {
                    next += 1;
                    Some(next - 1)
                }
                addr::ArgRef::Index(index) => Some(*index),
                addr::ArgRef::Name(captured) => {
                    if let Some((_, value)) = named.iter().find(|(n, _)| n == captured) {
                        self.walk(value, if port_place { &Ctx::Sink } else { ctx });
                    } else if self.tainted.iter().any(|t| t == captured) {
                        self.hit(if port_place { &Ctx::Sink } else { ctx });
                    }
                    None
                }
            };
            if let Some(slot) = index.and_then(|index| in_address.get_mut(index)) {
                *slot |= port_place;
            }
        }
        for (part, address) in positional.iter().zip(in_address) {
            self.walk(part, if address { &Ctx::Sink } else { ctx });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lint::tokens::tree;

    fn of(body: &str, name: &str) -> Flow {
        let toks = tree(body.parse().unwrap());
        let flow = flow(&toks, name);
        proc_macro2::extra::invalidate_current_thread_spans();
        flow
    }

    #[test]
    fn follows_a_value_into_addresses() {
        for body in [
            "TcpListener::bind((\"127.0.0.1\", port)).unwrap();",
            "let addr = format!(\"127.0.0.1:{}\", port); TcpStream::connect(&addr)?;",
            "let a = format!(\"{host}:{port}\"); let _ = a;",
            "Command::new(\"server\").arg(port.to_string()).spawn()",
            "let s = SocketAddr::new(ip, port);",
            "std::net::TcpStream::connect(addr).unwrap()",
        ] {
            let name = if body.contains("addr)") { "addr" } else { "port" };
            assert_eq!(of(body, name).own(), Reach::Address, "{body}");
        }
    }

    #[test]
    fn dead_ends_and_calls_to_follow() {
        assert_eq!(
            of("assert_eq!(port, 80); if port == 0 { return; }", "port").own(),
            Reach::No
        );
        assert_eq!(of("let x = port;", "port").own(), Reach::No);
        assert_eq!(
            of(
                "self.all().filter(move |s| s.port() == port || 1 != port || port < 2)",
                "port"
            )
            .own(),
            Reach::No
        );
        let stored = of("Self { port, name: String::new() }", "port");
        assert_eq!((stored.own(), stored.port_field), (Reach::Unknown, true));
        assert_eq!(of("self.port_of = port; port", "port").own(), Reach::Unknown);
        assert_eq!(
            of("for line in text.lines() { assert!(!line.is_empty()); }", "text").own(),
            Reach::No
        );
        assert_eq!(of("match text { \"a\" => {} _ => {} }", "text").own(), Reach::No);
        let flow = of(
            "let parsed = parse_lines(text.trim()); assert_eq!(parsed, 1);",
            "text",
        );
        assert_eq!(flow.own(), Reach::No);
        assert_eq!(
            flow.edges,
            [Edge {
                callee: vec!["parse_lines".into()],
                method: false,
                arg: 0
            }]
        );
        let flow = of("self.inner.start(1, port)", "port");
        assert_eq!((flow.edges[0].method, flow.edges[0].arg), (true, 1));
    }

    #[test]
    fn counts_and_indexes_do_not_become_ports() {
        // `reserve_port_block(n)`: the ports are counted to `n`, they are not `n`.
        for body in [
            "for k in 0..n { TcpListener::bind((\"127.0.0.1\", first + k as u16)); }",
            "let port = policy.nth_port(n); TcpListener::bind((\"127.0.0.1\", port));",
            "let port = ports[n]; TcpListener::bind((\"127.0.0.1\", port));",
            "let index = start % n; TcpListener::bind((\"127.0.0.1\", index));",
        ] {
            assert_ne!(of(body, "n").own(), Reach::Address, "{body}");
        }
        for body in [
            "let p = n + 1; TcpListener::bind((\"127.0.0.1\", p));",
            "let p = u16::try_from(n).unwrap(); TcpListener::bind((\"127.0.0.1\", p));",
            "for p in [n, n + 1] { TcpListener::bind((\"127.0.0.1\", p)); }",
        ] {
            assert_eq!(of(body, "n").own(), Reach::Address, "{body}");
        }
        let flow = of("self.inner.start(1, port)", "port");
        assert_eq!((flow.edges[0].method, flow.edges[0].arg), (true, 1));
    }
}
