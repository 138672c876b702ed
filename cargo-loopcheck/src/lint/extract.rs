//! Taking the facts of one file ([`FileFacts`]): its functions with what they do with each
//! parameter, its port constants, its `#[path]` modules and its renamed re-exports, under the
//! module path the file gives them.

use std::collections::HashSet;
use std::sync::Arc;

use super::addr;
use super::eval::strip;
use super::facts::{ConstFact, FileFacts, FnFact, ParamFact, module_path};
use super::imports::Imports;
use super::items::{items, signature};
use super::pickers::{racy_function, returns_port};
use super::reach::{self, Edge};
use super::tokens::{Tok, int_value, path_end, pos, segments, skip_angle, split_commas, string_text};

/// The facts of a file's token trees. `test`: whether all of the file is test code.
pub(crate) fn extract(toks: &[Tok], file: &str, test: bool, crates: &[String]) -> FileFacts {
    let imports = Imports::of_items(toks);
    // A function of the file shadows a glob import's (LC014's pickers); looked for only then.
    let local_fns = if imports.has_globs() {
        fn_names(toks)
    } else {
        HashSet::new()
    };
    let mut walker = Extractor {
        file: Arc::from(file),
        imports,
        local_fns,
        crates,
        out: FileFacts::default(),
    };
    let mut module = module_path(file);
    walker.out.module.clone_from(&module);
    walker.items(toks, &mut module, None, test);
    walker.out
}

struct Extractor<'a> {
    file: Arc<str>,
    imports: Imports,
    local_fns: HashSet<String>,
    crates: &'a [String],
    out: FileFacts,
}

impl Extractor<'_> {
    fn items(&mut self, toks: &[Tok], module: &mut Vec<String>, ty: Option<&str>, test: bool) {
        for item in items(toks) {
            let Some((keyword, k)) = &item.keyword else {
                continue;
            };
            let test = test || item.cfg_test();
            let body = item.toks.last().and_then(Tok::brace);
            match keyword.as_str() {
                "mod" => {
                    let Some(name) = item.toks.get(k + 1).and_then(Tok::ident) else {
                        continue;
                    };
                    let name = name.to_string().trim_start_matches("r#").to_owned();
                    if let Some(body) = body {
                        module.push(name);
                        self.items(body, module, None, test);
                        module.pop();
                    } else if let Some(path) = item.attrs.iter().find_map(|attr| path_attr(attr)) {
                        let mut target = module.clone();
                        target.push(name);
                        self.out.aliases.push((beside(&self.file, &path), target));
                    }
                }
                "impl" | "trait" => {
                    if let (Some(name), Some(body)) = (impl_type(&item.toks[k + 1..]), body) {
                        self.items(body, module, Some(&name), test);
                    }
                }
                "fn" => self.function(item.toks, *k, module, ty),
                "const" | "static" => self.constant(item.toks, *k, module, test),
                "use" if item.toks[..*k].iter().any(|t| t.is("pub")) => {
                    self.renames(&item.toks[k + 1..], module)
                }
                _ => {}
            }
        }
    }

    /// The renames of a `pub use` tree (`a::A as B`), as paths of the workspace.
    fn renames(&mut self, toks: &[Tok], module: &[String]) {
        let mut tree = Imports::default();
        tree.add_statement(toks);
        for (local, full) in tree.names {
            if full.last() == Some(&local) || local == "_" {
                continue;
            }
            let mut target: Vec<String> = module.to_vec();
            let mut rest = &full[..];
            match rest.first().map(String::as_str) {
                Some("crate") => {
                    target.clear();
                    rest = &rest[1..];
                }
                Some(name) if self.crates.iter().any(|c| c == name) => {
                    target.clear();
                    rest = &rest[1..];
                }
                _ => {}
            }
            while let Some(first) = rest.first().map(String::as_str) {
                match first {
                    "self" => {}
                    "super" => {
                        target.pop();
                    }
                    _ => break,
                }
                rest = &rest[1..];
            }
            target.extend(rest.iter().cloned());
            let mut alias = module.to_vec();
            alias.push(local);
            self.out.renames.push((alias, target));
        }
    }

    fn function(&mut self, toks: &[Tok], k: usize, module: &[String], ty: Option<&str>) {
        let Some(sig) = signature(toks, k) else {
            return;
        };
        let line = toks.get(k + 1).map_or(0, |t| pos(t.span()).line);
        let mut method = false;
        let mut params = Vec::new();
        for param in split_commas(sig.params) {
            if param.iter().take(3).any(|t| t.is("self")) {
                method = true;
                continue;
            }
            let index = params.len();
            let names: Vec<&Tok> = param.iter().filter(|t| !t.is("mut")).collect();
            let (name, rest) = match names.as_slice() {
                [Tok::Ident(name), colon, rest @ ..] if colon.lone(':') => (name.to_string(), rest),
                _ => {
                    params.push(None);
                    continue;
                }
            };
            let int = rest.iter().any(|t| {
                ["u16", "u32", "u64", "usize", "i32", "i64", "NonZeroU16"]
                    .iter()
                    .any(|n| t.is(n))
            });
            let flow = reach::flow(sig.body, &name);
            let edges = flow
                .edges
                .iter()
                .map(|edge| Edge {
                    callee: if edge.method {
                        edge.callee.clone()
                    } else {
                        self.imports
                            .expand(&edge.callee, &|c| self.crates.iter().any(|k| k == c))
                    },
                    ..edge.clone()
                })
                .collect();
            params.push(Some(ParamFact {
                index,
                by_name: super::names::is_port_name(&name),
                name,
                int,
                reach: flow.own(),
                port_field: flow.port_field,
                edges,
            }));
        }
        let mut calls = Vec::new();
        let local = |name: &str| self.local_fns.contains(name);
        let racy = racy_function(&sig, &self.imports, &local, &mut calls);
        let returns_from = if racy.is_some() {
            Vec::new()
        } else {
            (calls.iter())
                .map(|callee| {
                    self.imports
                        .expand(callee, &|c| self.crates.iter().any(|k| k == c))
                })
                .collect()
        };
        let returns = match strip(sig.body) {
            [Tok::Lit(lit)] if returns_port(sig.ret) => int_value(&lit.to_string())
                .and_then(|v| u16::try_from(v).ok())
                .filter(|&port| port != 0),
            _ => None,
        };
        let mut path = module.to_vec();
        path.extend(ty.map(str::to_owned));
        path.push(sig.name);
        self.out.fns.push(FnFact {
            path,
            file: self.file.clone(),
            line,
            method,
            params: params.into_iter().flatten().collect(),
            returns,
            racy,
            returns_from,
        });
    }

    fn constant(&mut self, toks: &[Tok], k: usize, module: &[String], test: bool) {
        let mut i = k + 1;
        if toks.get(i).is_some_and(|t| t.is("mut")) {
            i += 1;
        }
        let Some(name) = toks.get(i).and_then(Tok::ident) else {
            return;
        };
        let Some(eq) = toks[i..].iter().position(|t| t.lone('=')).map(|p| p + i) else {
            return;
        };
        let end = toks[eq..]
            .iter()
            .position(|t| t.punct(';'))
            .map_or(toks.len(), |p| p + eq);
        let (port, host) = match strip(&toks[eq + 1..end]) {
            [Tok::Lit(lit)] => {
                let repr = lit.to_string();
                match string_text(&repr) {
                    Some(text) => match addr::addresses(text).first() {
                        Some(found) => (found.port, Some(found.kind)),
                        None => return,
                    },
                    None => match int_value(&repr).and_then(|v| u16::try_from(v).ok()) {
                        Some(port) => (port, None),
                        None => return,
                    },
                }
            }
            _ => return,
        };
        if port == 0 {
            return;
        }
        let mut path = module.to_vec();
        path.push(name.to_string());
        self.out.consts.push(ConstFact {
            path,
            file: self.file.clone(),
            line: pos(name.span()).line,
            port,
            host,
            test,
        });
    }
}

/// The value of `#[path = ".."]`.
fn path_attr(attr: &[Tok]) -> Option<String> {
    match attr {
        [path, eq, Tok::Lit(lit)] if path.is("path") && eq.lone('=') => {
            string_text(&lit.to_string()).map(str::to_owned)
        }
        _ => None,
    }
}

/// `relative`, a path written in `file`, as a path from the workspace root: `a/b.rs` beside
/// `tests/x.rs` is `tests/a/b.rs`.
fn beside(file: &str, relative: &str) -> String {
    let mut parts: Vec<&str> = file.split('/').collect();
    parts.pop();
    for part in relative.split('/') {
        match part {
            "." | "" => {}
            ".." => {
                parts.pop();
            }
            part => parts.push(part),
        }
    }
    parts.join("/")
}

/// The type an `impl` block is for: `Broker` in `impl<T> Trait for Broker<T> where .. {`.
fn impl_type(toks: &[Tok]) -> Option<String> {
    let mut i = 0;
    if toks.first().is_some_and(|t| t.punct('<')) {
        i = skip_angle(toks, 0);
    }
    let body = toks.iter().position(|t| t.brace().is_some() || t.is("where"))?;
    let head = &toks[i..body];
    let ty = head
        .iter()
        .rposition(|t| t.is("for"))
        .map_or(head, |f| &head[f + 1..]);
    let start = ty.iter().position(|t| t.ident().is_some())?;
    let end = path_end(ty, start);
    segments(&ty[start..end.max(start + 1)]).pop()
}

/// The names of the functions `toks` defines, at any depth.
fn fn_names(toks: &[Tok]) -> HashSet<String> {
    fn collect(toks: &[Tok], out: &mut HashSet<String>) {
        for (i, tok) in toks.iter().enumerate() {
            match tok {
                Tok::Group(_, _, inner) => collect(inner, out),
                Tok::Ident(ident) if ident == "fn" => {
                    out.extend(toks.get(i + 1).and_then(Tok::ident).map(ToString::to_string));
                }
                _ => {}
            }
        }
    }
    let mut out = HashSet::new();
    collect(toks, &mut out);
    out
}
