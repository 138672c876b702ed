//! What the rules need to know about one file before walking it: its constants, imports,
//! functions and the parameters of those named like a port.

use std::collections::{HashMap, HashSet};

use super::eval::{Env, IntLit, strip};
use super::imports::Imports;
use super::items::{Signature, items, param_names, signature};
use super::names::is_port_name;
use super::tokens::{Tok, pos, string_text};

/// What the rules need to know about the whole file before walking it.
#[derive(Default)]
pub(super) struct LocalFacts {
    pub(super) env: Env,
    /// Function name to the index and name of its parameters named like a port.
    pub(super) port_params: HashMap<String, Vec<(usize, String)>>,
    pub(super) imports: Imports,
    /// Functions the file defines.
    pub(super) fns: HashSet<String>,
}

impl LocalFacts {
    pub(super) fn module(&mut self, toks: &[Tok], test: bool) {
        for item in items(toks) {
            let test = test || item.cfg_test() || item.test_fn();
            let Some((keyword, k)) = &item.keyword else {
                continue;
            };
            match keyword.as_str() {
                "use" => self.import(&item.toks[k + 1..]),
                "const" | "static" if test => self.constant(item.toks, *k),
                "mod" | "impl" | "trait" => {
                    if let Some(body) = item.toks.last().and_then(Tok::brace) {
                        self.module(body, test);
                    }
                }
                "fn" => {
                    if let Some(sig) = signature(item.toks, *k) {
                        self.function(&sig);
                        self.body(sig.body, test);
                    }
                }
                _ => {}
            }
        }
    }

    /// Items declared inside function bodies, at any depth.
    fn body(&mut self, toks: &[Tok], test: bool) {
        for (i, tok) in toks.iter().enumerate() {
            match tok {
                Tok::Group(_, _, inner) => self.body(inner, test),
                Tok::Ident(ident)
                    if ident == "use"
                        && (i == 0 || toks[i - 1].punct(';') || toks[i - 1].brace().is_some()) =>
                {
                    self.import(&toks[i + 1..]);
                }
                Tok::Ident(ident)
                    if test
                        && (ident == "const" || ident == "static")
                        && toks.get(i + 2).is_some_and(|t| t.lone(':')) =>
                {
                    self.constant(toks, i);
                }
                Tok::Ident(ident) if ident == "fn" => {
                    if let Some(sig) = signature(toks, i) {
                        self.function(&sig);
                    }
                }
                _ => {}
            }
        }
    }

    fn import(&mut self, toks: &[Tok]) {
        let end = toks.iter().position(|t| t.punct(';')).unwrap_or(toks.len());
        self.imports.add(&toks[..end], &mut Vec::new());
    }

    /// `const NAME: T = expr;` with `const` at `k`.
    fn constant(&mut self, toks: &[Tok], k: usize) {
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
        if let [Tok::Lit(lit)] = strip(&toks[eq + 1..end])
            && let Some(value) = string_text(&lit.to_string()).and_then(|text| text.parse::<u16>().ok())
        {
            let number = IntLit {
                value,
                pos: pos(lit.span()),
            };
            self.env.numeric_strings.insert(name.to_string(), number);
        }
        let binding = self.env.binding_of(&toks[eq + 1..end]);
        self.env.consts.insert(name.to_string(), binding);
    }

    fn function(&mut self, sig: &Signature<'_>) {
        self.fns.insert(sig.name.clone());
        let params: Vec<(usize, String)> = param_names(sig.params)
            .into_iter()
            .enumerate()
            .filter_map(|(index, name)| name.filter(|n| is_port_name(n)).map(|n| (index, n)))
            .collect();
        if !params.is_empty() {
            self.port_params
                .entry(sig.name.clone())
                .or_default()
                .extend(params);
        }
    }
}
