//! The walk over a file's token trees, looking only at test code, that hands each call, macro,
//! tuple, struct literal and string to the rules: LC010 hard-coded-port in `hard_coded`, LC011
//! in `wildcard`, LC014 in `racy`, and the checks that use the workspace facts in `calls`.
//!
//! The file is lexed with proc-macro2 (comments are dropped, doc comments become attributes,
//! which are skipped) and never parsed into a syntax tree: lexing alone is about six times faster
//! than `syn::parse_file` (measured on the bench corpus), and the rules only need items,
//! attributes, calls, macro arguments, tuples, struct fields and `let`s, which token trees show.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use loopcheck::report::Code;
use proc_macro2::{Delimiter, Ident, TokenStream};

use super::eval::{Binding, Env};
use super::facts::{FileFacts, WorkspaceFacts};
use super::imports::Imports;
use super::items::{items, loopback_test_form, param_names, pattern_names, signature};
use super::local_facts::LocalFacts;
use super::names::{is_bind_name, is_port_name};
use super::tokens::{
    Pos, Tok, last_two, path_end, path_pos, path_sep, pos, segments, shown, skip_angle, split_commas, tree,
};

/// A finding before it is tied to a file.
#[derive(Debug, Clone)]
pub(crate) struct Hit {
    pub(crate) code: Code,
    pub(crate) line: u32,
    pub(crate) column: u32,
    pub(crate) port: Option<u16>,
    pub(crate) message: String,
    pub(crate) suggestion: String,
    /// Reported as a warning: the value may never reach an address, and nothing tells.
    pub(crate) warning: bool,
}

/// What linting a file found.
#[derive(Debug, Default)]
pub(crate) struct Linted {
    pub(crate) hits: Vec<Hit>,
    /// Paths of config files the test code names in string literals (`"tests/config/a.toml"`).
    pub(crate) config_files: Vec<String>,
    /// The names of functions and constants looked up in the facts: where another file
    /// defines one of them, the file is linted again with the facts of all.
    pub(crate) names: Vec<String>,
}

/// Where and why a file cannot be read as Rust tokens.
#[derive(Debug)]
pub(crate) struct ParseError {
    pub(crate) line: u32,
    pub(crate) column: u32,
    pub(crate) message: String,
}

/// Lints `source`; `test` says whether all of it is test code. Spans are freed before
/// returning, so nothing of the file stays in proc-macro2's per-thread source map.
pub(crate) fn lint(source: &str, test: bool) -> Result<Vec<Hit>, ParseError> {
    lint_with(source, test, "", None).map(|linted| linted.hits)
}

/// [`lint`] with the facts of the whole workspace, or of the file alone when `workspace` is
/// `None`; `file` is the file's path relative to the workspace root.
pub(crate) fn lint_with(
    source: &str,
    test: bool,
    file: &str,
    workspace: Option<&WorkspaceFacts>,
) -> Result<Linted, ParseError> {
    let result = lex(source).map(|toks| match workspace {
        Some(workspace) => lint_tokens(&toks, test, file, workspace),
        None => {
            let own = WorkspaceFacts::new(vec![super::extract::extract(&toks, file, test, &[])], Vec::new());
            lint_tokens(&toks, test, file, &own)
        }
    });
    proc_macro2::extra::invalidate_current_thread_spans();
    result
}

/// The facts of a file, and when `lint` is set, its findings with those facts alone: one lex
/// for both, the first look of the workspace pass. `crates`: the workspace's crate names.
pub(crate) fn first_look(
    source: &str,
    test: bool,
    lint: bool,
    file: &str,
    crates: &[String],
) -> (FileFacts, Option<Result<Linted, ParseError>>) {
    let result = match lex(source) {
        Ok(toks) => {
            let facts = super::extract::extract(&toks, file, test, crates);
            let linted = lint.then(|| {
                let own = WorkspaceFacts::new(vec![facts.clone()], crates.to_vec());
                Ok(lint_tokens(&toks, test, file, &own))
            });
            (facts, linted)
        }
        Err(error) => (FileFacts::default(), lint.then_some(Err(error))),
    };
    proc_macro2::extra::invalidate_current_thread_spans();
    result
}

fn lex(source: &str) -> Result<Vec<Tok>, ParseError> {
    match lexable(source).parse::<TokenStream>() {
        Ok(stream) => Ok(tree(stream)),
        Err(error) => {
            let at = pos(error.span());
            Err(ParseError {
                line: at.line.max(1),
                column: at.column,
                message: "unbalanced delimiters or an unterminated literal".to_owned(),
            })
        }
    }
}

fn lint_tokens(toks: &[Tok], test: bool, file: &str, workspace: &WorkspaceFacts) -> Linted {
    let mut facts = LocalFacts::default();
    facts.module(toks, test);
    let mut linter = Linter::new(facts, workspace, file);
    linter.module(toks, test);
    Linted {
        hits: linter.hits,
        config_files: linter.config_files,
        names: linter.looked_up.into_iter().collect(),
    }
}

/// `source` as the lexer takes it: without a byte order mark, and with a shebang line made a
/// comment, so that lines and columns stay those of the file.
pub(super) fn lexable(source: &str) -> Cow<'_, str> {
    let source = source.strip_prefix('\u{feff}').unwrap_or(source);
    if source.starts_with("#!") && !source.starts_with("#![") {
        Cow::Owned(format!("//{}", &source[2..]))
    } else {
        Cow::Borrowed(source)
    }
}

/// Keywords that can stand before a parenthesized expression or tuple.
fn is_keyword(ident: &Ident) -> bool {
    [
        "if", "match", "return", "in", "while", "let", "else", "break", "yield", "mut", "move", "as", "for",
        "loop", "unsafe", "async", "ref",
    ]
    .iter()
    .any(|k| ident == k)
}

/// A well-known macro whose arguments are expressions, and the index of its format string.
fn known_macro(name: &str) -> Option<Option<usize>> {
    Some(match name {
        "format" | "format_args" | "print" | "println" | "eprint" | "eprintln" | "panic" | "todo"
        | "unimplemented" | "unreachable" | "anyhow" | "bail" | "eyre" | "format_err" | "info" | "debug"
        | "warn" | "error" | "trace" => Some(0),
        "write" | "writeln" | "assert" | "debug_assert" | "ensure" => Some(1),
        "assert_eq" | "assert_ne" | "debug_assert_eq" | "debug_assert_ne" => Some(2),
        "vec" | "dbg" | "join" | "try_join" => None,
        _ => return None,
    })
}

struct FnInfo {
    name: String,
    test: bool,
    asynchronous: bool,
}

pub(super) struct Linter<'w> {
    pub(super) env: Env,
    pub(super) port_params: HashMap<String, Vec<(usize, String)>>,
    pub(super) imports: Imports,
    pub(super) local_fns: HashSet<String>,
    fns: Vec<FnInfo>,
    hits: Vec<Hit>,
    seen: HashSet<(Code, Pos, Option<u16>)>,
    pub(super) workspace: &'w WorkspaceFacts,
    pub(super) file: &'w str,
    /// String literals handed to a parameter that never reaches an address: not reported.
    pub(super) quiet: HashSet<Pos>,
    /// String literals handed to a parameter whose way the lint cannot follow: warnings.
    pub(super) weak: HashSet<Pos>,
    pub(super) config_files: Vec<String>,
    pub(super) looked_up: HashSet<String>,
}

impl<'w> Linter<'w> {
    fn new(facts: LocalFacts, workspace: &'w WorkspaceFacts, file: &'w str) -> Linter<'w> {
        Linter {
            env: facts.env,
            port_params: facts.port_params,
            imports: facts.imports,
            local_fns: facts.fns,
            fns: Vec::new(),
            hits: Vec::new(),
            seen: HashSet::new(),
            workspace,
            file,
            quiet: HashSet::new(),
            weak: HashSet::new(),
            config_files: Vec::new(),
            looked_up: HashSet::new(),
        }
    }

    /// The items of a module, impl or trait body; `test`: whether they are all test code.
    fn module(&mut self, toks: &[Tok], test: bool) {
        for item in items(toks) {
            let test = test || item.cfg_test() || item.test_fn();
            let Some((keyword, k)) = &item.keyword else {
                if test {
                    self.code(item.toks, None, false);
                }
                continue;
            };
            match keyword.as_str() {
                "mod" | "impl" | "trait" => {
                    if let Some(body) = item.toks.last().and_then(Tok::brace) {
                        self.module(body, test);
                    }
                }
                "macro_rules" => {}
                "fn" if test => {
                    let test_fn = item.test_fn();
                    self.function(item.toks, *k, test_fn && item.is_async(), test_fn);
                }
                _ if test => self.code(item.toks, None, false),
                _ => {}
            }
        }
    }

    fn function(&mut self, toks: &[Tok], k: usize, asynchronous: bool, test_fn: bool) -> usize {
        let Some(sig) = signature(toks, k) else {
            return k + 1;
        };
        self.fns.push(FnInfo {
            name: sig.name.clone(),
            test: test_fn,
            asynchronous,
        });
        let params = param_names(sig.params)
            .into_iter()
            .flatten()
            .map(|name| (name, Binding::default()))
            .collect();
        self.env.scopes.push(params);
        self.check_probe_function(&sig);
        self.code(sig.body, None, false);
        self.env.scopes.pop();
        self.fns.pop();
        sig.body_at + 1
    }

    pub(super) fn in_test_fn(&self) -> &str {
        match self.fns.last() {
            Some(f) if f.test => &f.name,
            _ => "name",
        }
    }

    /// `#[loopback_test] fn NAME`, or `#[loopback_test(tokio)] async fn NAME` in an async test.
    pub(super) fn test_form(&self) -> String {
        let asynchronous = self.fns.last().is_some_and(|f| f.test && f.asynchronous);
        format!("{} {}", loopback_test_form(asynchronous), self.in_test_fn())
    }

    /// The listener type a test takes: std's, or tokio's in an async test.
    pub(super) fn listener_type(&self) -> &'static str {
        if self.fns.last().is_some_and(|f| f.test && f.asynchronous) {
            "tokio::net::TcpListener"
        } else {
            "TcpListener"
        }
    }

    pub(super) fn hit(
        &mut self,
        code: Code,
        at: Pos,
        port: Option<u16>,
        message: String,
        suggestion: String,
    ) {
        self.hit_as(code, at, port, message, suggestion, false);
    }

    pub(super) fn hit_as(
        &mut self,
        code: Code,
        at: Pos,
        port: Option<u16>,
        message: String,
        suggestion: String,
        warning: bool,
    ) {
        let hit = Hit {
            code,
            line: at.line,
            column: at.column,
            port,
            message,
            suggestion,
            warning,
        };
        if self.seen.insert((code, at, port)) {
            self.hits.push(hit);
        } else if !warning
            && let Some(first) = self.hits.iter_mut().find(|h| {
                h.warning && h.code == code && (h.line, h.column) == (at.line, at.column) && h.port == port
            })
        {
            // The same literal seen twice: an error where it reaches an address outweighs a
            // warning where it is stored or compared.
            *first = hit;
        }
    }

    /// Code: statements and expressions. `ctx` is the call or macro whose arguments these are;
    /// `strings_only` is for the arguments of macros that are not known to take expressions.
    fn code(&mut self, toks: &[Tok], ctx: Option<&str>, strings_only: bool) {
        let mut i = 0;
        while i < toks.len() {
            i = match &toks[i] {
                Tok::Lit(lit) => {
                    self.check_literal(lit, ctx);
                    i + 1
                }
                Tok::Punct('#', ..) => {
                    let j = if toks.get(i + 1).is_some_and(|t| t.punct('!')) {
                        i + 2
                    } else {
                        i + 1
                    };
                    if toks.get(j).and_then(|t| t.group(Delimiter::Bracket)).is_some() {
                        j + 1
                    } else {
                        i + 1
                    }
                }
                Tok::Group(_, _, inner) if strings_only => {
                    self.code(inner, ctx, true);
                    i + 1
                }
                Tok::Group(Delimiter::Brace, _, inner) => {
                    self.brace(toks, i, inner);
                    i + 1
                }
                Tok::Group(Delimiter::Parenthesis, _, inner) => {
                    self.tuple(inner, ctx);
                    self.code(inner, ctx, false);
                    i + 1
                }
                Tok::Group(_, _, inner) => {
                    self.code(inner, ctx, false);
                    i + 1
                }
                _ if strings_only => i + 1,
                Tok::Punct('.', ..) => self.method(toks, i),
                Tok::Punct('<', ..) => self.qualified_call(toks, i),
                Tok::Ident(ident) => self.ident(toks, i, ident, ctx),
                _ => i + 1,
            };
        }
    }

    fn ident(&mut self, toks: &[Tok], i: usize, ident: &Ident, ctx: Option<&str>) -> usize {
        let leading_colons = i >= 2 && path_sep(toks, i - 2);
        let continued = (i > 0 && toks[i - 1].punct('.'))
            || (leading_colons && i >= 3 && (matches!(toks[i - 3], Tok::Ident(_)) || toks[i - 3].punct('>')));
        if continued {
            return i + 1;
        }
        let start = if leading_colons { i - 2 } else { i };
        if ident == "let"
            && (i == 0
                || toks[i - 1].punct(';')
                || toks[i - 1].brace().is_some()
                || toks[i - 1].group(Delimiter::Bracket).is_some())
        {
            return self.let_statement(toks, i);
        }
        if ident == "fn" && toks.get(i + 1).and_then(Tok::ident).is_some() {
            return self.function(toks, i, false, false);
        }
        if ident == "macro_rules" && toks.get(i + 1).is_some_and(|t| t.punct('!')) {
            let body = toks[i..]
                .iter()
                .position(|t| matches!(t, Tok::Group(..)))
                .map_or(toks.len(), |p| p + i);
            return body + 1;
        }
        if is_keyword(ident) {
            return i + 1;
        }
        let end = path_end(toks, start);
        match toks.get(end) {
            Some(bang) if bang.punct('!') && matches!(toks.get(end + 1), Some(Tok::Group(..))) => {
                self.macro_call(toks, start, end, ctx)
            }
            Some(Tok::Group(Delimiter::Parenthesis, _, args)) => self.call(toks, start, end, args),
            _ => i + 1,
        }
    }

    fn let_statement(&mut self, toks: &[Tok], i: usize) -> usize {
        let end = toks[i..]
            .iter()
            .position(|t| t.punct(';'))
            .map_or(toks.len(), |p| p + i);
        let eq = toks[i..end].iter().position(|t| t.lone('=')).map(|p| p + i);
        let pattern_end = toks[i..eq.unwrap_or(end)]
            .iter()
            .position(|t| t.lone(':'))
            .map_or(eq.unwrap_or(end), |p| p + i);
        let pattern = &toks[i + 1..pattern_end];
        let binding = match eq {
            Some(eq) => {
                let init = &toks[eq + 1..end];
                self.code(init, None, false);
                self.env.binding_of(init)
            }
            None => Binding::default(),
        };
        match pattern {
            [Tok::Ident(name)] | [_, Tok::Ident(name)] => self.env.bind(name.to_string(), binding),
            _ => {
                let mut names = Vec::new();
                pattern_names(pattern, &mut names);
                for name in names {
                    self.env.bind(name, Binding::default());
                }
            }
        }
        end + 1
    }

    fn brace(&mut self, toks: &[Tok], i: usize, inner: &[Tok]) {
        self.check_port_fields(toks, i, inner);
        self.env.scopes.push(HashMap::new());
        self.code(inner, None, false);
        self.env.scopes.pop();
    }

    fn call(&mut self, toks: &[Tok], start: usize, end: usize, args: &[Tok]) -> usize {
        let segments = segments(&toks[start..end]);
        let at = path_pos(&toks[start..end]);
        self.call_of(&segments, at, toks, end, args)
    }

    /// `<Type as Trait>::name(args)` or `<Type>::name(args)` at `i` (the `<`): a call of
    /// `Type::name`, whose receiver, for a method, is the first argument.
    fn qualified_call(&mut self, toks: &[Tok], i: usize) -> usize {
        // After a value, `<` compares; after `::`, it is a turbofish the path took.
        let starts_path = i == 0
            || match &toks[i - 1] {
                Tok::Punct(c, ..) => *c != ':' && *c != '>',
                Tok::Ident(ident) => is_keyword(ident),
                _ => false,
            };
        let ty_end = path_end(toks, i + 1);
        if !starts_path || ty_end == i + 1 {
            return i + 1;
        }
        let close = skip_angle(toks, i);
        // No `>` after the type (`( < fn )`): no qualified path.
        if close <= ty_end {
            return i + 1;
        }
        let end = path_end(toks, close);
        let qualified = toks[ty_end..close - 1].first().is_none_or(|t| t.is("as"));
        let Some(Tok::Group(Delimiter::Parenthesis, _, args)) = toks.get(end) else {
            return i + 1;
        };
        if !qualified || end == close || !path_sep(toks, close) {
            return i + 1;
        }
        let mut path = segments(&toks[i + 1..ty_end]);
        let ty = path.pop().unwrap_or_default();
        let mut callee = vec![ty];
        callee.extend(segments(&toks[close..end]));
        let at = path_pos(&toks[i + 1..ty_end]);
        self.call_of(&callee, at, toks, end, args)
    }

    fn call_of(&mut self, segments: &[String], at: Pos, toks: &[Tok], end: usize, args: &[Tok]) -> usize {
        let segments = segments.to_vec();
        self.check_racy_call(&segments, at);
        let shown = shown(&segments);
        self.check_racy_helper(&segments, at, &shown);
        let (ty, name) = last_two(&segments);
        let parts = split_commas(args);
        self.check_socket_addr(ty, name, &parts, &shown);
        if is_bind_name(name) {
            self.check_bind(parts.first().copied(), &shown);
        }
        self.check_address_constant(name, parts.first().copied(), &shown);
        if name == "bind" {
            self.check_port_of_dropped_listener(toks, end, at, &shown);
        }
        if !self.workspace_call(&segments, false, &shown, &parts) {
            self.port_args(name, &shown, &parts);
        }
        // `Ok(..)` and `Some(..)` wrap values (or match them), they are not the place to name.
        let ctx = (!matches!(name, "Ok" | "Err" | "Some")).then_some(shown.as_str());
        self.code(args, ctx, false);
        end + 1
    }

    /// `.name(args)`, `.name::<T>(args)` or `.name = value` at `i` (the dot).
    fn method(&mut self, toks: &[Tok], i: usize) -> usize {
        let Some(Tok::Ident(method)) = toks.get(i + 1) else {
            return i + 1;
        };
        let mut j = i + 2;
        if path_sep(toks, j) && toks.get(j + 2).is_some_and(|t| t.punct('<')) {
            j = skip_angle(toks, j + 2);
        }
        match toks.get(j) {
            Some(Tok::Group(Delimiter::Parenthesis, _, args)) => {
                let name = method.to_string();
                let shown = format!(".{name}");
                let parts = split_commas(args);
                if is_bind_name(&name) {
                    self.check_bind(parts.first().copied(), &shown);
                }
                self.check_address_constant(&name, parts.first().copied(), &shown);
                let after_port_flag = super::wildcard::follows_port_flag(toks, i);
                self.check_child_args(&name, &parts, after_port_flag);
                let segments = [name.clone()];
                if !self.workspace_call(&segments, true, &format!("{shown}(..)"), &parts) {
                    if is_port_name(&name) && self.chain_names_remote_host(toks, i) {
                        self.code(args, Some(&shown), false);
                        return j + 1;
                    }
                    self.port_args(&name, &format!("{shown}(..)"), &parts);
                }
                self.code(args, Some(&shown), false);
                j + 1
            }
            Some(eq) if eq.lone('=') => {
                self.check_port_assignment(toks, j, &method.to_string());
                j
            }
            _ => i + 2,
        }
    }

    fn macro_call(&mut self, toks: &[Tok], start: usize, end: usize, ctx: Option<&str>) -> usize {
        let Some(Tok::Group(_, _, args)) = toks.get(end + 1) else {
            return end + 1;
        };
        let name = segments(&toks[start..end]).pop().unwrap_or_default();
        match known_macro(&name) {
            Some(format_at) => {
                if let Some(at) = format_at {
                    let parts = split_commas(args);
                    if let Some([Tok::Lit(format)]) = parts.get(at) {
                        self.check_format(format, &parts[at + 1..], &name);
                    }
                }
                self.code(args, Some(&format!("{name}!")), false);
            }
            None => self.code(args, ctx, true),
        }
        end + 2
    }
}
