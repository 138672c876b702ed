//! `use` declarations of a file, and the paths they make of the names a call is written with.

use std::collections::HashMap;

use proc_macro2::Delimiter;

use super::items::items;
use super::tokens::{Tok, path_sep, split_commas};

/// `use` declarations of a file: local name to full path.
#[derive(Default)]
pub(super) struct Imports {
    pub(super) names: HashMap<String, Vec<String>>,
    pub(super) globs: Vec<Vec<String>>,
}

impl Imports {
    /// Every `use` of the file's items, inline modules included (one namespace for the file:
    /// close enough for names that are imported to be called).
    pub(super) fn of_items(toks: &[Tok]) -> Imports {
        fn walk(toks: &[Tok], imports: &mut Imports) {
            for item in items(toks) {
                let Some((keyword, k)) = &item.keyword else {
                    continue;
                };
                match keyword.as_str() {
                    "use" => imports.add_statement(&item.toks[k + 1..]),
                    "mod" => {
                        if let Some(body) = item.toks.last().and_then(Tok::brace) {
                            walk(body, imports);
                        }
                    }
                    _ => {}
                }
            }
        }
        let mut imports = Imports::default();
        walk(toks, &mut imports);
        imports
    }

    /// Adds `use` tokens after the keyword, up to the `;`.
    pub(super) fn add_statement(&mut self, toks: &[Tok]) {
        let end = toks.iter().position(|t| t.punct(';')).unwrap_or(toks.len());
        self.add(&toks[..end], &mut Vec::new());
    }

    /// Adds the use tree `toks` (after `use`, without the `;`).
    pub(super) fn add(&mut self, toks: &[Tok], prefix: &mut Vec<String>) {
        let depth = prefix.len();
        let mut i = if path_sep(toks, 0) { 2 } else { 0 };
        while let Some(tok) = toks.get(i) {
            match tok {
                Tok::Ident(ident) => {
                    let name = ident.to_string();
                    if path_sep(toks, i + 1) {
                        prefix.push(name);
                        i += 3;
                        continue;
                    }
                    let mut full = prefix.clone();
                    if name != "self" {
                        full.push(name.clone());
                    }
                    let local = match (toks.get(i + 1), toks.get(i + 2)) {
                        (Some(r#as), Some(Tok::Ident(alias))) if r#as.is("as") => alias.to_string(),
                        _ if name == "self" => prefix.last().cloned().unwrap_or_default(),
                        _ => name,
                    };
                    self.names.insert(local, full);
                }
                Tok::Punct('*', ..) => self.globs.push(prefix.clone()),
                Tok::Group(Delimiter::Brace, _, inner) => {
                    for part in split_commas(inner) {
                        self.add(part, prefix);
                    }
                }
                _ => {}
            }
            break;
        }
        prefix.truncate(depth);
    }

    /// The path a call written as `segments` names, with its first segment expanded through
    /// the imports, and `crate::`, `self::`, `super::` and the workspace's own crate names
    /// dropped: what is left is matched against the definitions' module paths from the end.
    pub(super) fn expand(&self, segments: &[String], crates: &dyn Fn(&str) -> bool) -> Vec<String> {
        let mut full: Vec<String> = match segments.first().and_then(|first| self.names.get(first)) {
            Some(path) => path.iter().chain(&segments[1..]).cloned().collect(),
            None => segments.to_vec(),
        };
        let skip = full
            .iter()
            .take_while(|s| matches!(s.as_str(), "crate" | "self" | "super") || crates(s))
            .count();
        // Keep the last segment even for `use my_crate;`.
        full.drain(..skip.min(full.len().saturating_sub(1)));
        full
    }

    /// Whether a name written alone may come from a glob import (`use common::*;`).
    pub(super) fn has_globs(&self) -> bool {
        !self.globs.is_empty()
    }
}
