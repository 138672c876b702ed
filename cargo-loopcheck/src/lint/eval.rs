//! What an expression's tokens hold: a port literal, a host, or a name bound to either.

use std::collections::HashMap;

use proc_macro2::Delimiter;

use super::addr::{self, HostKind};
use super::tokens::{
    Pos, Tok, int_value, last_two, path_end, path_pos, path_sep, pos, segments, split_commas, string_text,
};

/// A port written as an integer literal (possibly 0).
#[derive(Debug, Clone, Copy)]
pub(super) struct IntLit {
    pub(super) value: u16,
    pub(super) pos: Pos,
}

/// A host written in the code, possibly with a port.
#[derive(Debug, Clone)]
pub(super) struct Host {
    pub(super) kind: HostKind,
    pub(super) pos: Pos,
    pub(super) text: String,
    pub(super) port: Option<u16>,
}

/// What a name was bound to, as far as the rules care.
#[derive(Debug, Clone, Default)]
pub(super) struct Binding {
    pub(super) port: Option<IntLit>,
    pub(super) host: Option<Host>,
}

/// Names in scope: `let`s by block, then consts of test code.
#[derive(Default)]
pub(super) struct Env {
    pub(super) consts: HashMap<String, Binding>,
    pub(super) scopes: Vec<HashMap<String, Binding>>,
    /// Constants of test code holding a number as a string (`const PORT: &str = "8080";`),
    /// which a child's arguments take after `--port`.
    pub(super) numeric_strings: HashMap<String, IntLit>,
}

/// Methods that hand on the address or port they are called on.
pub(super) const PASSTHROUGH: [&str; 11] = [
    "into",
    "parse",
    "unwrap",
    "expect",
    "ok",
    "clone",
    "to_owned",
    "to_string",
    "as_str",
    "to_socket_addrs",
    "unwrap_or_default",
];

/// `expr` without what does not change the address or port it holds: parentheses, `&`, `as T`,
/// `?`, `.await`, `.into()`, `.parse::<T>()`, `.unwrap()`, `.expect(..)`, `.ok()`.
pub(super) fn strip(mut t: &[Tok]) -> &[Tok] {
    loop {
        let n = t.len();
        if n == 0 {
            return t;
        }
        if t[0].punct('&') {
            t = &t[1..];
            if t.first().is_some_and(|x| x.is("mut")) {
                t = &t[1..];
            }
            continue;
        }
        if t[n - 1].punct('?') {
            t = &t[..n - 1];
            continue;
        }
        if n >= 2 && t[n - 1].is("await") && t[n - 2].punct('.') {
            t = &t[..n - 2];
            continue;
        }
        if t[n - 1].paren().is_some() {
            // `.method(..)` or `.method::<T>(..)`
            let mut i = n - 1;
            if i > 0 && t[i - 1].punct('>') {
                let Some(open) = (0..i - 1)
                    .rev()
                    .find(|&j| t[j].punct('<') && j >= 2 && path_sep(t, j - 2))
                else {
                    return t;
                };
                i = open - 2;
            }
            if i >= 2
                && t[i - 1]
                    .ident()
                    .is_some_and(|m| PASSTHROUGH.iter().any(|p| m == p))
                && t[i - 2].punct('.')
            {
                t = &t[..i - 2];
                continue;
            }
        }
        if let Some(at) = t.iter().position(|x| x.is("as"))
            && at > 0
            && t[at + 1..]
                .iter()
                .all(|x| matches!(x, Tok::Ident(_) | Tok::Punct(':', ..)))
        {
            t = &t[..at];
            continue;
        }
        if n == 1
            && let Some(inner) = t[0].paren()
            && !inner.is_empty()
            && split_commas(inner).len() == 1
            && !inner.last().is_some_and(|x| x.punct(','))
        {
            t = inner;
            continue;
        }
        return t;
    }
}

pub(super) fn int_values(parts: &[&[Tok]]) -> Option<Vec<u64>> {
    parts
        .iter()
        .map(|part| match strip(part) {
            [Tok::Lit(lit)] => int_value(&lit.to_string()),
            _ => None,
        })
        .collect()
}

/// The format macros whose first argument can build an address.
pub(super) fn is_format(name: &str) -> bool {
    matches!(name, "format" | "format_args")
}

impl Env {
    pub(super) fn lookup(&self, name: &str) -> Option<&Binding> {
        self.scopes
            .iter()
            .rev()
            .find_map(|scope| scope.get(name))
            .or_else(|| self.consts.get(name))
    }

    pub(super) fn bind(&mut self, name: String, binding: Binding) {
        if let Some(scope) = self.scopes.last_mut() {
            scope.insert(name, binding);
        }
    }

    pub(super) fn binding_of(&self, expr: &[Tok]) -> Binding {
        Binding {
            port: self.port_of(expr).map(|(lit, _)| lit),
            host: self.host_of(expr),
        }
    }

    /// An integer literal port, written in place or bound to the name used here.
    pub(super) fn port_of(&self, expr: &[Tok]) -> Option<(IntLit, Option<String>)> {
        match strip(expr) {
            [Tok::Lit(lit)] => {
                let value = u16::try_from(int_value(&lit.to_string())?).ok()?;
                Some((
                    IntLit {
                        value,
                        pos: pos(lit.span()),
                    },
                    None,
                ))
            }
            [Tok::Ident(ident)] => {
                let name = ident.to_string();
                let lit = self.lookup(&name)?.port?;
                Some((lit, Some(name)))
            }
            [some, Tok::Group(Delimiter::Parenthesis, _, inner)] if some.is("Some") => self.port_of(inner),
            _ => None,
        }
    }

    /// The host of an address or host expression: strings, `Ipv4Addr::LOCALHOST`,
    /// `[127, 0, 0, 1]`, `Ipv4Addr::new(..)`, `(host, port)`, `SocketAddr::new(..)`,
    /// `SocketAddr::from(..)`, `format!("0.0.0.0:{}", ..)`, and names bound to those.
    pub(super) fn host_of(&self, expr: &[Tok]) -> Option<Host> {
        let t = strip(expr);
        match t {
            [Tok::Lit(lit)] => {
                let repr = lit.to_string();
                let text = string_text(&repr)?;
                let at = pos(lit.span());
                if let Some(found) = address_in(text, at) {
                    return Some(found);
                }
                Some(Host {
                    kind: addr::host_kind(text),
                    pos: at,
                    text: text.to_owned(),
                    port: None,
                })
            }
            [Tok::Ident(ident)] => self.lookup(&ident.to_string())?.host.clone(),
            [Tok::Group(Delimiter::Bracket, open, inner)] => {
                let parts = int_values(&split_commas(inner))?;
                Some(Host {
                    kind: addr::parts_kind(&parts)?,
                    pos: pos(*open),
                    text: format!("{parts:?}"),
                    port: None,
                })
            }
            [Tok::Group(Delimiter::Parenthesis, _, inner)] => {
                let parts = split_commas(inner);
                let [host, port] = parts.as_slice() else {
                    return None;
                };
                let mut host = self.host_of(host)?;
                host.port = self.port_of(port).map(|(lit, _)| lit.value);
                Some(host)
            }
            _ => self.host_of_path(t),
        }
    }

    pub(super) fn host_of_path(&self, t: &[Tok]) -> Option<Host> {
        let end = path_end(t, 0);
        if end == 0 {
            return None;
        }
        let segments = segments(&t[..end]);
        let (ty, name) = last_two(&segments);
        let at = path_pos(&t[..end]);
        let host = |kind: HostKind, text: String| {
            Some(Host {
                kind,
                pos: at,
                text,
                port: None,
            })
        };
        match &t[end..] {
            [] => match (ty, name) {
                ("Ipv4Addr" | "Ipv6Addr", "LOCALHOST") => host(HostKind::Loopback, format!("{ty}::{name}")),
                ("Ipv4Addr" | "Ipv6Addr", "UNSPECIFIED") => host(HostKind::Wildcard, format!("{ty}::{name}")),
                ("Ipv4Addr", "BROADCAST") => host(HostKind::Other, format!("{ty}::{name}")),
                _ => None,
            },
            [Tok::Group(Delimiter::Parenthesis, _, args)] => {
                let args = split_commas(args);
                match (ty, name) {
                    ("Ipv4Addr" | "Ipv6Addr", "new") => {
                        let parts = int_values(&args)?;
                        let text = format!("{ty}::new{parts:?}").replace('[', "(").replace(']', ")");
                        host(addr::parts_kind(&parts)?, text)
                    }
                    ("SocketAddr" | "SocketAddrV4" | "SocketAddrV6", "new") => {
                        let mut found = self.host_of(args.first()?)?;
                        found.port = args
                            .get(1)
                            .and_then(|port| self.port_of(port))
                            .map(|(lit, _)| lit.value);
                        Some(found)
                    }
                    (_, "V4" | "V6" | "from") => self.host_of(args.first()?),
                    // The test's own address: a fixed port on it collides with no other test.
                    (_, "loopback_ip") => host(HostKind::Other, "loopcheck::loopback_ip()".to_owned()),
                    _ => None,
                }
            }
            [bang, Tok::Group(_, _, args)] if bang.punct('!') && is_format(name) => {
                let args = split_commas(args);
                let [Tok::Lit(lit)] = args.first()? else {
                    return None;
                };
                let repr = lit.to_string();
                let text = string_text(&repr)?;
                let at = pos(lit.span());
                if let Some(found) = address_in(text, at) {
                    return Some(found);
                }
                let (before, _) = addr::placeholders(text).into_iter().next()?;
                let (kind, name) = addr::host_before_colon(&before)?;
                Some(Host {
                    kind,
                    pos: at,
                    text: format!("{name}:{{}}"),
                    port: None,
                })
            }
            _ => None,
        }
    }
}

/// The first `host:port` address in a string literal's text, as a host with its port.
fn address_in(text: &str, at: Pos) -> Option<Host> {
    let found = addr::addresses(text).into_iter().next()?;
    Some(Host {
        kind: found.kind,
        pos: at,
        text: found.text.to_owned(),
        port: Some(found.port),
    })
}
