//! Where a test function is and which hard-coded ports it uses, directly or through the helpers
//! and constants of its file: what `cargo loopcheck test` checks when a plain `#[test]` fails
//! with a socket error.

use std::collections::HashSet;

use proc_macro2::TokenStream;

use super::items::{items, signature};
use super::tokens::{Tok, pos, tree};

/// A test function and the hard-coded ports it reaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestSite {
    /// The line of the function's name.
    pub line: u32,
    /// The hard-coded ports, each with the line of its first use, in order of appearance.
    pub ports: Vec<PortUse>,
}

/// A hard-coded port and where it is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortUse {
    /// The port.
    pub port: u16,
    /// The line of the literal.
    pub line: u32,
}

/// How many helpers deep a test's calls are followed, and how many items at most: enough for
/// `test -> start_server -> bind_addr`, bounded on any file.
const MAX_DEPTH: usize = 4;
const MAX_ITEMS: usize = 64;

/// The function `name` in `source` and the hard-coded ports of its body, of the functions of
/// the same file it calls (and they call, a few levels deep) and of the constants and statics
/// they name. `None` when the file has no such function or cannot be lexed.
///
/// ```
/// use cargo_loopcheck::lint::test_site;
///
/// let source = r#"
/// const PORT: u16 = 7878;
/// fn start() -> std::net::TcpListener { std::net::TcpListener::bind(("127.0.0.1", PORT)).unwrap() }
/// #[test]
/// fn serves() {
///     let _server = start();
///     std::net::TcpStream::connect("127.0.0.1:9090").unwrap();
/// }
/// "#;
/// let site = test_site(source, "serves").expect("found");
/// assert_eq!(site.line, 5);
/// let ports: Vec<u16> = site.ports.iter().map(|p| p.port).collect();
/// assert_eq!(ports, [7878, 9090]);
/// ```
pub fn test_site(source: &str, name: &str) -> Option<TestSite> {
    let hits = super::rules::lint(source, true).ok()?;
    let stream = source.parse::<TokenStream>().ok()?;
    let toks = tree(stream);
    let mut found = Vec::new();
    collect(&toks, &mut found);
    proc_macro2::extra::invalidate_current_thread_spans();

    let start = found
        .iter()
        .position(|item| item.is_fn && item.test && item.name == name)
        .or_else(|| found.iter().position(|item| item.is_fn && item.name == name))?;
    let mut reached = vec![start];
    let mut frontier = vec![start];
    for _ in 0..MAX_DEPTH {
        let mut next = Vec::new();
        for &index in &frontier {
            for (other, item) in found.iter().enumerate() {
                if reached.len() >= MAX_ITEMS {
                    break;
                }
                if !reached.contains(&other) && found[index].idents.contains(&item.name) {
                    reached.push(other);
                    next.push(other);
                }
            }
        }
        if next.is_empty() {
            break;
        }
        frontier = next;
    }

    let mut ports: Vec<PortUse> = Vec::new();
    for hit in &hits {
        let Some(port) = hit.port else { continue };
        let inside = reached
            .iter()
            .any(|&i| (found[i].first..=found[i].last).contains(&hit.line));
        if inside && !ports.iter().any(|p| p.port == port) {
            ports.push(PortUse { port, line: hit.line });
        }
    }
    Some(TestSite {
        line: found[start].line,
        ports,
    })
}

/// A function, constant or static of the file, with its lines and the identifiers it names.
struct Item {
    name: String,
    is_fn: bool,
    test: bool,
    line: u32,
    first: u32,
    last: u32,
    idents: HashSet<String>,
}

fn collect(toks: &[Tok], out: &mut Vec<Item>) {
    for item in items(toks) {
        let Some((keyword, k)) = &item.keyword else {
            continue;
        };
        match keyword.as_str() {
            "mod" | "impl" | "trait" => {
                if let Some(body) = item.toks.last().and_then(Tok::brace) {
                    collect(body, out);
                }
            }
            "fn" => {
                let Some(sig) = signature(item.toks, *k) else {
                    continue;
                };
                let line = item.toks.get(k + 1).map_or(0, |t| pos(t.span()).line);
                let mut idents = HashSet::new();
                names(sig.body, &mut idents);
                let (first, last) = lines(item.toks);
                out.push(Item {
                    name: sig.name,
                    is_fn: true,
                    test: item.test_fn(),
                    line,
                    first,
                    last,
                    idents,
                });
            }
            "const" | "static" => {
                let mut at = k + 1;
                if item.toks.get(at).is_some_and(|t| t.is("mut")) {
                    at += 1;
                }
                let Some(name) = item.toks.get(at).and_then(Tok::ident) else {
                    continue;
                };
                let (first, last) = lines(item.toks);
                let mut idents = HashSet::new();
                names(&item.toks[at + 1..], &mut idents);
                out.push(Item {
                    name: name.to_string(),
                    is_fn: false,
                    test: false,
                    line: first,
                    first,
                    last,
                    idents,
                });
            }
            _ => {}
        }
    }
}

fn names(toks: &[Tok], out: &mut HashSet<String>) {
    for tok in toks {
        match tok {
            Tok::Ident(ident) => {
                out.insert(ident.to_string());
            }
            Tok::Group(_, _, inner) => names(inner, out),
            _ => {}
        }
    }
}

/// The first and last line of any token in `toks`.
fn lines(toks: &[Tok]) -> (u32, u32) {
    fn walk(toks: &[Tok], range: &mut (u32, u32)) {
        for tok in toks {
            let line = pos(tok.span()).line;
            range.0 = range.0.min(line);
            range.1 = range.1.max(line);
            if let Tok::Group(_, _, inner) = tok {
                walk(inner, range);
            }
        }
    }
    let mut range = (u32::MAX, 0);
    walk(toks, &mut range);
    if range.0 > range.1 { (0, 0) } else { range }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ports(site: &TestSite) -> Vec<u16> {
        site.ports.iter().map(|p| p.port).collect()
    }

    #[test]
    fn follows_helpers_and_constants_but_not_other_tests() {
        let source = r#"
const ADDR: &str = "127.0.0.1:4000";
static OTHER: &str = "127.0.0.1:4001";

fn server() { let _ = std::net::TcpListener::bind(ADDR); }
fn client() { inner() }
fn inner() { let _ = std::net::TcpStream::connect("127.0.0.1:4002"); }

#[test]
fn a() { server(); client(); }

#[test]
fn b() { let _ = std::net::TcpListener::bind(OTHER); }

mod nested {
    #[test]
    fn c() { let _ = std::net::TcpListener::bind("[::1]:4003"); }
}
"#;
        let a = test_site(source, "a").unwrap();
        assert_eq!(a.line, 10);
        assert_eq!(ports(&a), [4000, 4002]);
        assert_eq!(ports(&test_site(source, "b").unwrap()), [4001]);
        assert_eq!(ports(&test_site(source, "c").unwrap()), [4003]);
        assert_eq!(test_site(source, "missing"), None);
    }

    #[test]
    fn a_test_without_ports_has_none_and_a_broken_file_has_no_site() {
        let source = "#[test]\nfn plain() { assert_eq!(1 + 1, 2); }\n";
        assert_eq!(
            test_site(source, "plain"),
            Some(TestSite {
                line: 2,
                ports: Vec::new()
            })
        );
        assert_eq!(test_site("fn broken( {", "broken"), None);
    }
}
