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
    /// Whether it is an `async fn` (`#[tokio::test]`): it takes its ports with
    /// `#[loopback_test(tokio)] async fn`.
    pub asynchronous: bool,
}

/// A hard-coded port and where it is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortUse {
    /// The port.
    pub port: u16,
    /// The line of the literal.
    pub line: u32,
    /// Whether it is bound (`TcpListener::bind`, `UdpSocket::bind`) rather than connected to
    /// or only written down.
    pub bind: bool,
}

/// How many helpers deep a test's calls are followed, and how many items at most: enough for
/// `test -> start_server -> bind_addr`, bounded on any file.
const MAX_DEPTH: usize = 4;
const MAX_ITEMS: usize = 64;

/// The function at `path` in `source` (`serves`, or `tests::serves` for one in an inline
/// `mod tests`) and the hard-coded ports of its body, of the functions of the same file it
/// calls (and they call, a few levels deep) and of the constants and statics they name. A
/// function of that name in another module is taken only when none matches the whole path.
/// `None` when the file has no such function or cannot be lexed.
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
pub fn test_site(source: &str, path: &str) -> Option<TestSite> {
    let mut segments: Vec<&str> = path.split("::").collect();
    let name = segments.pop()?;
    let hits = super::walk::lint(source, true).ok()?;
    let stream = source.parse::<TokenStream>().ok()?;
    let toks = tree(stream);
    let mut found = Vec::new();
    collect(&toks, &mut Vec::new(), &mut found);
    proc_macro2::extra::invalidate_current_thread_spans();

    let named = |item: &Item| item.is_fn && item.name == name;
    let start = found
        .iter()
        .position(|item| named(item) && item.modules == segments)
        .or_else(|| found.iter().position(|item| named(item) && item.test))
        .or_else(|| found.iter().position(named))?;
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

    // The arguments of `bind` calls in the reached functions: their lines, and the names of
    // the constants they use.
    let binds: Vec<(u32, u32)> = reached
        .iter()
        .flat_map(|&i| found[i].binds.iter().copied())
        .collect();
    let bound_names: HashSet<&String> = reached.iter().flat_map(|&i| &found[i].bound).collect();
    let mut ports: Vec<PortUse> = Vec::new();
    for hit in &hits {
        let Some(port) = hit.port else { continue };
        let inside = reached
            .iter()
            .any(|&i| (found[i].first..=found[i].last).contains(&hit.line));
        if !inside {
            continue;
        }
        let bind = binds
            .iter()
            .any(|(first, last)| (*first..=*last).contains(&hit.line))
            || reached.iter().any(|&i| {
                !found[i].is_fn
                    && bound_names.contains(&&found[i].name)
                    && (found[i].first..=found[i].last).contains(&hit.line)
            });
        match ports.iter_mut().find(|p| p.port == port) {
            Some(known) => known.bind |= bind,
            None => ports.push(PortUse {
                port,
                line: hit.line,
                bind,
            }),
        }
    }
    Some(TestSite {
        line: found[start].line,
        ports,
        asynchronous: found[start].asynchronous,
    })
}

/// A function, constant or static of the file, with its lines and the identifiers it names.
struct Item {
    name: String,
    /// The inline modules around it, outermost first.
    modules: Vec<String>,
    /// The lines of the arguments of each `bind` call in it.
    binds: Vec<(u32, u32)>,
    /// The names used in those arguments.
    bound: HashSet<String>,
    is_fn: bool,
    test: bool,
    asynchronous: bool,
    line: u32,
    first: u32,
    last: u32,
    idents: HashSet<String>,
}

fn collect(toks: &[Tok], modules: &mut Vec<String>, out: &mut Vec<Item>) {
    for item in items(toks) {
        let Some((keyword, k)) = &item.keyword else {
            continue;
        };
        match keyword.as_str() {
            "mod" => {
                let name = item.toks.get(k + 1).and_then(Tok::ident).map(ToString::to_string);
                if let (Some(name), Some(body)) = (name, item.toks.last().and_then(Tok::brace)) {
                    modules.push(name.trim_start_matches("r#").to_owned());
                    collect(body, modules, out);
                    modules.pop();
                }
            }
            "impl" | "trait" => {
                if let Some(body) = item.toks.last().and_then(Tok::brace) {
                    collect(body, modules, out);
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
                let (mut binds, mut bound) = (Vec::new(), HashSet::new());
                bind_arguments(sig.body, &mut binds, &mut bound);
                out.push(Item {
                    name: sig.name,
                    modules: modules.clone(),
                    binds,
                    bound,
                    is_fn: true,
                    test: item.test_fn(),
                    asynchronous: item.is_async(),
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
                    modules: modules.clone(),
                    binds: Vec::new(),
                    bound: HashSet::new(),
                    is_fn: false,
                    test: false,
                    asynchronous: false,
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

/// The arguments of every `bind(..)` call in `toks` (`TcpListener::bind`, `.bind`): their
/// lines, and the names they use.
fn bind_arguments(toks: &[Tok], lines_out: &mut Vec<(u32, u32)>, names_out: &mut HashSet<String>) {
    for (i, tok) in toks.iter().enumerate() {
        if tok.is("bind")
            && let Some(args) = toks.get(i + 1).and_then(Tok::paren)
        {
            let (first, last) = lines(args);
            if first <= last && last > 0 {
                lines_out.push((first, last));
            }
            names(args, names_out);
        }
        if let Tok::Group(_, _, inner) = tok {
            bind_arguments(inner, lines_out, names_out);
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
        // loopcheck:allow(LC010): source text the lint test reads, never bound
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
        assert_eq!(ports(&test_site(source, "nested::c").unwrap()), [4003]);
        assert_eq!(test_site(source, "missing"), None);
        let binds: Vec<bool> = test_site(source, "a")
            .unwrap()
            .ports
            .iter()
            .map(|p| p.bind)
            .collect();
        assert_eq!(binds, [true, false], "4000 is bound, 4002 connected to");
    }

    #[test]
    fn the_module_path_tells_tests_of_the_same_name_apart() {
        // loopcheck:allow(LC010): source text the lint test reads, never bound
        let source = r#"
mod tcp {
    #[test]
    fn connects() { let _ = std::net::TcpStream::connect("127.0.0.1:7001"); }
}
mod udp {
    #[test]
    fn connects() { let _ = std::net::UdpSocket::bind("127.0.0.1:7002"); }
}
"#;
        let udp = test_site(source, "udp::connects").unwrap();
        assert_eq!((udp.line, ports(&udp)), (8, vec![7002]));
        let tcp = test_site(source, "tcp::connects").unwrap();
        assert_eq!((tcp.line, ports(&tcp)), (4, vec![7001]));
    }

    #[test]
    fn a_test_without_ports_has_none_and_a_broken_file_has_no_site() {
        let source = "#[test]\nfn plain() { assert_eq!(1 + 1, 2); }\n";
        assert_eq!(
            test_site(source, "plain"),
            Some(TestSite {
                line: 2,
                ports: Vec::new(),
                asynchronous: false,
            })
        );
        assert_eq!(test_site("fn broken( {", "broken"), None);
    }
}
