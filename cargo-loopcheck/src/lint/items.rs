//! Items, attributes and function signatures, read off token trees.

use proc_macro2::{Delimiter, TokenStream};

use super::tokens::{Tok, path_end, path_sep, segments, skip_angle, split_commas, string_text, tree};

/// `#[test]`, `#[tokio::test]`, `#[loopback_test]`, `#[rstest]`, `#[test_case(..)]`, `#[bench]`.
pub(super) fn is_test_attr(attr: &[Tok]) -> bool {
    let end = path_end(attr, 0);
    segments(&attr[..end])
        .last()
        .is_some_and(|name| name.ends_with("test") || name == "test_case" || name == "bench")
}

/// `#[cfg(test)]`, `#[cfg(all(test, unix))]`: compiled only for tests.
pub(super) fn is_cfg_test(attr: &[Tok]) -> bool {
    match attr {
        [cfg, Tok::Group(Delimiter::Parenthesis, _, inner)] if cfg.is("cfg") => {
            let predicates = split_commas(inner);
            predicates.len() == 1 && requires_test(predicates[0])
        }
        _ => false,
    }
}

pub(super) fn requires_test(predicate: &[Tok]) -> bool {
    match predicate {
        [test] => test.is("test"),
        [op, Tok::Group(Delimiter::Parenthesis, _, inner)] => {
            let inner = split_commas(inner);
            if op.is("all") {
                inner.iter().any(|p| requires_test(p))
            } else if op.is("any") {
                !inner.is_empty() && inner.iter().all(|p| requires_test(p))
            } else {
                false
            }
        }
        _ => false,
    }
}

/// An item of a module, impl or trait body: its attributes' contents and its tokens.
pub(super) struct ItemRef<'a> {
    pub(super) attrs: Vec<&'a [Tok]>,
    pub(super) toks: &'a [Tok],
    /// The item's keyword (`fn`, `mod`, `const`, ...), and its index in `toks`.
    pub(super) keyword: Option<(String, usize)>,
}

impl ItemRef<'_> {
    pub(super) fn is(&self, keyword: &str) -> bool {
        self.keyword.as_ref().is_some_and(|(k, _)| k == keyword)
    }

    pub(super) fn cfg_test(&self) -> bool {
        self.attrs.iter().any(|a| is_cfg_test(a))
    }

    pub(super) fn test_fn(&self) -> bool {
        self.is("fn") && self.attrs.iter().any(|a| is_test_attr(a))
    }

    /// Whether the item is an `async fn`.
    pub(super) fn is_async(&self) -> bool {
        self.keyword
            .as_ref()
            .is_some_and(|(k, at)| k == "fn" && self.toks[..*at].iter().any(|t| t.is("async")))
    }
}

/// The keyword of an item, past `pub(..)`, `unsafe`, `async`, `extern "C"`, `default`, and `const`
/// before `fn`.
pub(super) fn item_keyword(toks: &[Tok]) -> Option<(String, usize)> {
    let mut i = 0;
    while let Some(tok) = toks.get(i) {
        let Tok::Ident(ident) = tok else {
            return None;
        };
        if ident == "pub" {
            i += 1;
            if toks.get(i).and_then(Tok::paren).is_some() {
                i += 1;
            }
        } else if ident == "unsafe" || ident == "async" || ident == "default" || ident == "safe" {
            i += 1;
        } else if ident == "extern" {
            i += 1;
            if matches!(toks.get(i), Some(Tok::Lit(_))) {
                i += 1;
            }
            if toks.get(i).is_some_and(|t| t.is("crate")) {
                return Some(("use".to_owned(), i));
            }
            if toks.get(i).and_then(Tok::brace).is_some() {
                return Some(("extern".to_owned(), i));
            }
        } else if ident == "const"
            && toks
                .get(i + 1)
                .is_some_and(|t| ["fn", "unsafe", "async", "extern"].iter().any(|k| t.is(k)))
        {
            i += 1;
        } else {
            return Some((ident.to_string(), i));
        }
    }
    None
}

pub(super) fn items(toks: &[Tok]) -> Vec<ItemRef<'_>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        let mut attrs = Vec::new();
        while toks[i].punct('#') {
            let mut j = i + 1;
            if toks.get(j).is_some_and(|t| t.punct('!')) {
                j += 1;
            }
            let Some(inner) = toks.get(j).and_then(|t| t.group(Delimiter::Bracket)) else {
                break;
            };
            attrs.push(inner);
            i = j + 1;
            if i >= toks.len() {
                return out;
            }
        }
        let start = i;
        let keyword = item_keyword(&toks[start..]);
        let until_semicolon = keyword
            .as_ref()
            .is_some_and(|(k, _)| matches!(k.as_str(), "const" | "static" | "use" | "type" | "let"));
        while i < toks.len() {
            let tok = &toks[i];
            i += 1;
            if tok.punct(';') || (!until_semicolon && tok.brace().is_some()) {
                break;
            }
        }
        out.push(ItemRef {
            attrs,
            toks: &toks[start..i],
            keyword,
        });
    }
    out
}

/// The parts of a function: `fn name<..>(params) -> ret where .. { body }`.
pub(super) struct Signature<'a> {
    pub(super) name: String,
    pub(super) params: &'a [Tok],
    pub(super) ret: &'a [Tok],
    pub(super) body: &'a [Tok],
    /// The index of the body in the tokens given to [`signature`].
    pub(super) body_at: usize,
}

/// The function whose `fn` keyword is at `k`.
pub(super) fn signature(toks: &[Tok], k: usize) -> Option<Signature<'_>> {
    let name = toks.get(k + 1)?.ident()?.to_string();
    let mut i = k + 2;
    if toks.get(i).is_some_and(|t| t.punct('<')) {
        i = skip_angle(toks, i);
    }
    let params = toks.get(i)?.paren()?;
    let ret_start = i + 1;
    let mut j = ret_start;
    while j < toks.len() && toks[j].brace().is_none() {
        if toks[j].punct(';') {
            return None;
        }
        j += 1;
    }
    let body = toks.get(j)?.brace()?;
    Some(Signature {
        name,
        params,
        ret: &toks[ret_start..j],
        body,
        body_at: j,
    })
}

/// The names of a function's parameters, `self` left out.
pub(super) fn param_names(params: &[Tok]) -> Vec<Option<String>> {
    split_commas(params)
        .into_iter()
        .filter(|param| !param.iter().any(|t| t.is("self")))
        .map(|param| {
            let param: Vec<&Tok> = param.iter().filter(|t| !t.is("mut")).collect();
            match param.as_slice() {
                [Tok::Ident(name), colon, ..] if colon.lone(':') => Some(name.to_string()),
                _ => None,
            }
        })
        .collect()
}

/// The lower-case names a pattern binds: `x`, `mut x`, `Ok(x)`, `(a, b)`.
pub(super) fn pattern_names(pattern: &[Tok], out: &mut Vec<String>) {
    for (i, tok) in pattern.iter().enumerate() {
        match tok {
            Tok::Ident(ident) => {
                let name = ident.to_string();
                let after_path = i > 0 && pattern[i - 1].punct(':');
                if name.starts_with(|c: char| c.is_lowercase() || c == '_')
                    && !["mut", "ref", "box"].contains(&name.as_str())
                    && !after_path
                    && !path_sep(pattern, i + 1)
                    && pattern.get(i + 1).and_then(Tok::paren).is_none()
                {
                    out.push(name);
                }
            }
            Tok::Group(_, _, inner) => pattern_names(inner, out),
            _ => {}
        }
    }
}

/// An out-of-line module declared in test code: `#[cfg(test)] mod name;`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ModDecl {
    /// The inline modules around the declaration, outermost first.
    pub(crate) inline: Vec<String>,
    /// The module's name.
    pub(crate) name: String,
    /// Its `#[path = ".."]`, if any.
    pub(crate) path: Option<String>,
}

/// The out-of-line modules that `source` declares in test code; `test`: whether all of it is
/// test code. A file that cannot be lexed declares none.
pub(crate) fn test_module_decls(source: &str, test: bool) -> Vec<ModDecl> {
    fn collect(toks: &[Tok], test: bool, inline: &mut Vec<String>, out: &mut Vec<ModDecl>) {
        for item in items(toks) {
            let Some((keyword, k)) = &item.keyword else {
                continue;
            };
            if keyword != "mod" {
                continue;
            }
            let Some(name) = item.toks.get(k + 1).and_then(Tok::ident) else {
                continue;
            };
            let name = name.to_string();
            let name = name.strip_prefix("r#").unwrap_or(&name).to_owned();
            let test = test || item.cfg_test();
            if let Some(body) = item.toks.last().and_then(Tok::brace) {
                inline.push(name);
                collect(body, test, inline, out);
                inline.pop();
            } else if test {
                let path = item.attrs.iter().find_map(|attr| match attr {
                    [path, eq, Tok::Lit(lit)] if path.is("path") && eq.lone('=') => {
                        string_text(&lit.to_string()).map(str::to_owned)
                    }
                    _ => None,
                });
                out.push(ModDecl {
                    inline: inline.clone(),
                    name,
                    path,
                });
            }
        }
    }
    let mut out = Vec::new();
    if let Ok(stream) = source.parse::<TokenStream>() {
        collect(&tree(stream), test, &mut Vec::new(), &mut out);
    }
    proc_macro2::extra::invalidate_current_thread_spans();
    out
}

/// How a test takes its ports from loopcheck: `#[loopback_test] fn`, or for an async test
/// (`#[tokio::test] async fn`) `#[loopback_test(tokio)] async fn`.
pub(crate) fn loopback_test_form(asynchronous: bool) -> &'static str {
    if asynchronous {
        "#[loopback_test(tokio)] async fn"
    } else {
        "#[loopback_test] fn"
    }
}
