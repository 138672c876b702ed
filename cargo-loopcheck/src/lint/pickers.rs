//! What LC014 recognizes without the walk, so that the workspace facts can hold it too: the
//! racy pickers' paths (through imports and globs), and a function that returns a picked port
//! or the port of a listener it drops.

use std::collections::HashSet;

use super::eval::strip;
use super::facts::Racy;
use super::imports::Imports;
use super::items::{Signature, pattern_names};
use super::tokens::{Pos, Tok, last_two, path_end, path_pos, segments, shown};

/// The racy port-allocation function named by a resolved path.
fn is_racy(path: &[String]) -> bool {
    let [krate, .., last] = path else {
        return false;
    };
    let allocates = ["free", "unused", "open_port", "available", "select"]
        .iter()
        .any(|word| last.contains(word));
    match krate.as_str() {
        "portpicker" | "port_check" | "port_scanner" | "freeport" | "openport" | "port_selector" => allocates,
        "get_port" | "find_port" => true,
        "netutils" => last == "free_port",
        _ => false,
    }
}

/// What a glob import of a racy crate brings into scope.
fn glob_exports(krate: &str) -> &'static [&'static str] {
    match krate {
        "portpicker" => &["pick_unused_port", "is_free", "is_free_tcp", "is_free_udp"],
        "port_check" => &[
            "free_local_port",
            "free_local_ipv4_port",
            "free_local_ipv6_port",
            "free_local_port_in_range",
            "free_local_ipv4_port_in_range",
            "free_local_ipv6_port_in_range",
            "is_local_port_free",
            "is_local_ipv4_port_free",
            "is_local_ipv6_port_free",
        ],
        "port_scanner" => &[
            "request_open_port",
            "local_port_available",
            "local_ports_available",
            "local_ports_available_range",
        ],
        "freeport" => &["get_free_port"],
        "openport" => &["pick_unused_port", "pick_random_unused_port", "is_free"],
        "port_selector" => &[
            "random_free_port",
            "random_free_tcp_port",
            "random_free_udp_port",
            "select_free_port",
            "select_from_given_port",
            "is_free",
            "is_free_tcp",
            "is_free_udp",
        ],
        "get_port" => &["TcpPort", "UdpPort"],
        _ => &[],
    }
}

impl Imports {
    /// The full path of a racy allocation function called as `segments`, if it is one.
    /// `local` tells whether the file defines a function of that name, which shadows globs.
    pub(super) fn racy(&self, segments: &[String], local: &dyn Fn(&str) -> bool) -> Option<Vec<String>> {
        let first = segments.first()?;
        if let Some(full) = self.names.get(first) {
            let full: Vec<String> = full.iter().chain(&segments[1..]).cloned().collect();
            return is_racy(&full).then_some(full);
        }
        if is_racy(segments) {
            return Some(segments.to_vec());
        }
        if local(first) {
            return None;
        }
        self.globs.iter().find_map(|glob| {
            let krate = glob.first()?;
            let exported = glob_exports(krate).contains(&first.as_str());
            let full: Vec<String> = glob.iter().chain(segments).cloned().collect();
            (exported && is_racy(&full)).then_some(full)
        })
    }
}

/// Listeners bound in a function body, and those whose port is read.
#[derive(Default)]
pub(super) struct ProbeScan {
    pub(super) listeners: Vec<(String, Pos, String)>,
    pub(super) port_read: HashSet<String>,
}

/// The bind call `expr` evaluates to, if any: its place and `TcpListener::bind`.
fn bind_call(expr: &[Tok]) -> Option<(Pos, String)> {
    let t = strip(expr);
    let end = path_end(t, 0);
    if end == 0 || t.len() != end + 1 || t[end].paren().is_none() {
        return None;
    }
    let segments = segments(&t[..end]);
    (last_two(&segments).1 == "bind").then(|| (path_pos(&t[..end]), shown(&segments)))
}

/// Skips `?`, `.await`, `.unwrap()`, `.expect(..)`, `.ok()` from `i`.
pub(super) fn skip_unwraps(toks: &[Tok], mut i: usize) -> usize {
    loop {
        match toks.get(i) {
            Some(t) if t.punct('?') => i += 1,
            Some(t) if t.punct('.') => match toks.get(i + 1) {
                Some(m) if m.is("await") => i += 2,
                Some(m)
                    if ["unwrap", "expect", "ok"].iter().any(|n| m.is(n))
                        && toks.get(i + 2).and_then(Tok::paren).is_some() =>
                {
                    i += 3
                }
                _ => return i,
            },
            _ => return i,
        }
    }
}

/// `.name()` at `i`: the index after it.
fn empty_method(toks: &[Tok], i: usize, name: &str) -> Option<usize> {
    (toks.get(i)?.punct('.')
        && toks.get(i + 1)?.is(name)
        && toks.get(i + 2)?.paren().is_some_and(<[Tok]>::is_empty))
    .then_some(i + 3)
}

/// `.local_addr()?.port()` and the like at `i`.
pub(super) fn reads_port(toks: &[Tok], i: usize) -> bool {
    empty_method(toks, i, "local_addr")
        .map(|j| skip_unwraps(toks, j))
        .and_then(|j| empty_method(toks, j, "port"))
        .is_some()
}

impl ProbeScan {
    pub(super) fn scan(&mut self, toks: &[Tok]) {
        for (i, tok) in toks.iter().enumerate() {
            match tok {
                Tok::Group(_, _, inner) => self.scan(inner),
                Tok::Ident(ident) if ident == "let" => {
                    let Some(eq) = toks[i..].iter().position(|t| t.lone('=')).map(|p| p + i) else {
                        continue;
                    };
                    let end = toks[eq..]
                        .iter()
                        .position(|t| t.punct(';') || t.brace().is_some())
                        .map_or(toks.len(), |p| p + eq);
                    self.bound(&toks[i + 1..eq], &toks[eq + 1..end]);
                }
                Tok::Ident(ident) if ident == "match" => {
                    let Some(arms) = toks[i..].iter().position(|t| t.brace().is_some()).map(|p| p + i) else {
                        continue;
                    };
                    if let Some(body) = toks[arms].brace() {
                        self.bound(body, &toks[i + 1..arms]);
                    }
                }
                Tok::Ident(ident)
                    if reads_port(toks, i + 1)
                        && !(i > 0 && (toks[i - 1].punct('.') || toks[i - 1].punct(':'))) =>
                {
                    self.port_read.insert(ident.to_string());
                }
                _ => {}
            }
        }
    }

    fn bound(&mut self, pattern: &[Tok], expr: &[Tok]) {
        if let Some((at, call)) = bind_call(expr) {
            let mut names = Vec::new();
            pattern_names(pattern, &mut names);
            for name in names {
                self.listeners.push((name, at, call.clone()));
            }
        }
    }
}

/// Whether a function returns a port number (`u16`, `Option<u16>`, `io::Result<u16>`) and no
/// socket.
pub(super) fn returns_port(ret: &[Tok]) -> bool {
    fn names(toks: &[Tok], out: &mut Vec<String>) {
        for tok in toks {
            match tok {
                Tok::Ident(ident) => out.push(ident.to_string()),
                Tok::Group(_, _, inner) => names(inner, out),
                _ => {}
            }
        }
    }
    if !ret.first().is_some_and(|t| t.punct('-')) {
        return false;
    }
    let mut found = Vec::new();
    names(ret, &mut found);
    found.iter().any(|n| n == "u16")
        && !found.iter().any(|n| {
            ["Listener", "Socket", "Lease", "Stream"]
                .iter()
                .any(|w| n.contains(w))
        })
}

/// Why a function returning a port is racy, for its callers in other files: the picker it
/// calls or the listener it drops. `calls` gets the paths of the other calls of its body,
/// whose facts may make it racy in turn. `local`: whether the file defines a function.
pub(super) fn racy_function(
    sig: &Signature<'_>,
    imports: &Imports,
    local: &dyn Fn(&str) -> bool,
    calls: &mut Vec<Vec<String>>,
) -> Option<Racy> {
    if !returns_port(sig.ret) {
        return None;
    }
    let mut scan = ProbeScan::default();
    scan.scan(sig.body);
    if let Some((_, _, call)) = (scan.listeners.iter()).find(|(name, _, _)| scan.port_read.contains(name)) {
        return Some(Racy::Drops(call.clone()));
    }
    let mut picker = None;
    body_calls(sig.body, &mut |segments| {
        if picker.is_none() {
            picker = imports.racy(segments, local);
        }
        calls.push(segments.to_vec());
    });
    picker.map(|full| Racy::Picks(full.join("::")))
}

/// The paths of the calls in `toks` that are not method calls: `a::b(..)`, `f(..)`.
fn body_calls(toks: &[Tok], out: &mut dyn FnMut(&[String])) {
    for (i, tok) in toks.iter().enumerate() {
        match tok {
            Tok::Group(_, _, inner) => body_calls(inner, out),
            Tok::Ident(_) if i == 0 || !(toks[i - 1].punct('.') || toks[i - 1].punct(':')) => {
                let end = path_end(toks, i);
                if end > i && toks.get(end).and_then(Tok::paren).is_some() {
                    out(&segments(&toks[i..end]));
                }
            }
            _ => {}
        }
    }
}
