//! The rules' walk over a file's token trees, looking only at test code, and LC010
//! hard-coded-port. LC011 is in `wildcard`, LC014 in `racy`, the checks that use the workspace
//! facts in `calls`.
//!
//! The file is lexed with proc-macro2 (comments are dropped, doc comments become attributes,
//! which are skipped) and never parsed into a syntax tree: lexing alone is about six times faster
//! than `syn::parse_file` (measured on the bench corpus), and the rules only need items,
//! attributes, calls, macro arguments, tuples, struct fields and `let`s, which token trees show.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use loopcheck::report::Code;
use proc_macro2::{Delimiter, Ident, Literal, TokenStream};

use super::addr::{self, ArgRef, HostKind};
use super::eval::{Binding, Env, IntLit, strip};
use super::facts::{FileFacts, WorkspaceFacts};
use super::imports::Imports;
use super::items::{Signature, items, loopback_test_form, param_names, pattern_names, signature};
use super::tokens::{
    Pos, Tok, last_two, path_end, path_pos, path_sep, pos, segments, shown, skip_angle, split_commas,
    string_text, tree,
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
            let own = WorkspaceFacts::new(vec![super::facts::extract(&toks, file, test, &[])], Vec::new());
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
            let facts = super::facts::extract(&toks, file, test, crates);
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
    let mut facts = Facts::default();
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

/// `port`, `with_port`, `set_port`, `http_port`; not `pick_unused_port` and its kin.
pub(super) fn is_port_name(name: &str) -> bool {
    name == "port"
        || (name.ends_with("_port")
            && !["free", "unused", "open", "local", "pick"]
                .iter()
                .any(|w| name.contains(w)))
}

/// Calls whose first argument is an address to listen on.
pub(super) fn is_bind_name(name: &str) -> bool {
    matches!(
        name,
        "bind" | "try_bind" | "bind_addr" | "listen" | "serve" | "run"
    )
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

/// What the rules need to know about the whole file before walking it.
#[derive(Default)]
struct Facts {
    env: Env,
    /// Function name to the index and name of its parameters named like a port.
    port_params: HashMap<String, Vec<(usize, String)>>,
    imports: Imports,
    /// Functions the file defines.
    fns: HashSet<String>,
}

impl Facts {
    fn module(&mut self, toks: &[Tok], test: bool) {
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

/// How a finding describes where a port was written.
pub(super) enum Place {
    /// Always this description.
    Fixed(String),
    /// The call it is an argument of, else this description.
    InCall(String),
}

/// Which `#[loopback_test]` form to suggest.
#[derive(Clone, Copy)]
pub(super) enum Form {
    Addr,
    Port,
}

struct FnInfo {
    name: String,
    test: bool,
    asynchronous: bool,
}

pub(super) struct Linter<'w> {
    pub(super) env: Env,
    port_params: HashMap<String, Vec<(usize, String)>>,
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
    fn new(facts: Facts, workspace: &'w WorkspaceFacts, file: &'w str) -> Linter<'w> {
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

    fn hit_as(
        &mut self,
        code: Code,
        at: Pos,
        port: Option<u16>,
        message: String,
        suggestion: String,
        warning: bool,
    ) {
        if self.seen.insert((code, at, port)) {
            self.hits.push(Hit {
                code,
                line: at.line,
                column: at.column,
                port,
                message,
                suggestion,
                warning,
            });
        }
    }

    fn report_port(&mut self, lit: IntLit, via: Option<String>, place: Place, ctx: Option<&str>, form: Form) {
        self.report_port_from(lit, via.map(|name| format!("`{name}`")), place, ctx, form);
    }

    /// Reports `lit`; `via` is the name it was bound to, as the message shows it.
    pub(super) fn report_port_from(
        &mut self,
        lit: IntLit,
        via: Option<String>,
        place: Place,
        ctx: Option<&str>,
        form: Form,
    ) {
        if lit.value == 0 || self.quiet.contains(&lit.pos) {
            return;
        }
        let warning = ctx.is_some_and(super::calls::goes_nowhere) || self.weak.contains(&lit.pos);
        let place = match (place, ctx) {
            (Place::Fixed(place), _) => place,
            (Place::InCall(_), Some(call)) => format!("`{call}`"),
            (Place::InCall(fallback), None) => fallback,
        };
        let message = match via {
            Some(name) => format!("hard-coded port {} in {name}, used in {place}", lit.value),
            None => format!("hard-coded port {} in {place}", lit.value),
        };
        let test = self.test_form();
        let suggestion = match form {
            Form::Addr => format!(
                "take the port from the test: `{test}(addr: SocketAddr)`, or `loopcheck::tcp_listener()`"
            ),
            Form::Port => {
                format!("take the port from the test: `{test}(port: u16)`, or `loopcheck::reserve_port()`")
            }
        };
        let code = Code::HardCodedPort;
        self.hit_as(code, lit.pos, Some(lit.value), message, suggestion, warning);
    }

    pub(super) fn check_port(&mut self, expr: &[Tok], place: Place, ctx: Option<&str>, form: Form) {
        if let Some((lit, via)) = self.env.port_of(expr) {
            self.report_port(lit, via, place, ctx, form);
        } else if let Some((lit, via)) = self.constant_port(expr) {
            self.report_port_from(lit, Some(via), place, ctx, form);
        }
    }

    fn check_literal(&mut self, lit: &Literal, ctx: Option<&str>) {
        let repr = lit.to_string();
        let Some(text) = string_text(&repr) else {
            return;
        };
        super::config_files::note_path(text, &mut self.config_files);
        if !text.contains(':') {
            return;
        }
        for found in addr::addresses(text) {
            if found.port != 0 {
                let port = IntLit {
                    value: found.port,
                    pos: pos(lit.span()),
                };
                let place = Place::InCall(format!("`{}`", found.text));
                self.report_port(port, None, place, ctx, Form::Addr);
            }
        }
    }

    fn check_format(&mut self, format: &Literal, args: &[&[Tok]], mac: &str) {
        let repr = format.to_string();
        let Some(text) = string_text(&repr) else {
            return;
        };
        if !text.contains(":{") {
            return;
        }
        let mut positional = Vec::new();
        let mut named = HashMap::new();
        for arg in args {
            match arg {
                [Tok::Ident(name), eq, value @ ..] if eq.lone('=') => {
                    named.insert(name.to_string(), value);
                }
                _ => positional.push(*arg),
            }
        }
        let mut next = 0;
        for (before, arg) in addr::placeholders(text) {
            let target = match &arg {
                ArgRef::Next => {
                    next += 1;
                    positional.get(next - 1).copied()
                }
                ArgRef::Index(index) => positional.get(*index).copied(),
                ArgRef::Name(name) => named.get(name).copied(),
            };
            let Some((_, host)) = addr::host_before_colon(&before) else {
                continue;
            };
            let place = Place::Fixed(format!("`{host}:{{}}` built by `{mac}!`"));
            match (target, &arg) {
                (Some(expr), _) => self.check_port(expr, place, None, Form::Addr),
                (None, ArgRef::Name(name)) => {
                    if let Some(lit) = self.env.lookup(name.as_str()).and_then(|b| b.port) {
                        self.report_port(lit, Some(name.clone()), place, None, Form::Addr);
                    } else if let Some((lit, via)) = self.constant_named(name, pos(format.span())) {
                        self.report_port_from(lit, Some(via), place, None, Form::Addr);
                    }
                }
                (None, _) => {}
            }
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
        // Struct literal fields: `Config { port: 8080 }`, `Config { port }`.
        let named_type = i > 0
            && toks[i - 1]
                .ident()
                .is_some_and(|t| t.to_string().starts_with(char::is_uppercase));
        let has_field = inner
            .windows(2)
            .any(|w| matches!(&w[0], Tok::Ident(_)) && (w[1].lone(':') || w[1].punct(',')));
        if (has_field || (named_type && inner.len() == 1)) && !self.names_remote_host(inner) {
            for part in split_commas(inner) {
                match part {
                    [Tok::Ident(name), colon, value @ ..] if colon.lone(':') && !value.is_empty() => {
                        let name = name.to_string();
                        if is_port_name(&name) {
                            self.check_port(value, Place::Fixed(format!("field `{name}`")), None, Form::Port);
                        }
                    }
                    [Tok::Ident(name)] if named_type => {
                        let name = name.to_string();
                        if is_port_name(&name) {
                            self.check_port(part, Place::Fixed(format!("field `{name}`")), None, Form::Port);
                        }
                    }
                    _ => {}
                }
            }
        }
        self.env.scopes.push(HashMap::new());
        self.code(inner, None, false);
        self.env.scopes.pop();
    }

    fn tuple(&mut self, inner: &[Tok], ctx: Option<&str>) {
        if !inner.iter().any(|t| t.punct(',')) {
            return;
        }
        let parts = split_commas(inner);
        if let [host, port] = parts.as_slice()
            && self
                .env
                .host_of(host)
                .is_some_and(|h| h.kind != HostKind::Other && h.port.is_none())
        {
            let place = Place::InCall("a `(host, port)` tuple".to_owned());
            self.check_port(port, place, ctx, Form::Addr);
        }
    }

    fn call(&mut self, toks: &[Tok], start: usize, end: usize, args: &[Tok]) -> usize {
        let segments = segments(&toks[start..end]);
        let at = path_pos(&toks[start..end]);
        self.check_racy_call(&segments, at);
        let shown = shown(&segments);
        let (ty, name) = last_two(&segments);
        let parts = split_commas(args);
        let socket_addr = matches!(ty, "SocketAddr" | "SocketAddrV4" | "SocketAddrV6");
        let not_other = |linter: &Linter<'_>, host: &[Tok]| {
            linter.env.host_of(host).is_none_or(|h| h.kind != HostKind::Other)
        };
        let place = || Place::Fixed(format!("`{shown}`"));
        if socket_addr && name == "new" && parts.len() >= 2 && not_other(self, parts[0]) {
            self.check_port(parts[1], place(), None, Form::Addr);
        }
        if socket_addr
            && name == "from"
            && let [arg] = parts.as_slice()
            && let [Tok::Group(Delimiter::Parenthesis, _, tuple)] = strip(arg)
            && let [host, port] = split_commas(tuple).as_slice()
            && not_other(self, host)
        {
            self.check_port(port, place(), None, Form::Addr);
        }
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

    fn port_args(&mut self, name: &str, shown: &str, args: &[&[Tok]]) {
        if args.iter().any(|arg| self.is_remote_host(arg)) {
            return;
        }
        if is_port_name(name) {
            for arg in args {
                self.check_port(arg, Place::Fixed(format!("`{shown}`")), None, Form::Port);
            }
        } else if let Some(params) = self.port_params.get(name).cloned() {
            for (index, param) in params {
                if let Some(arg) = args.get(index) {
                    let place = Place::Fixed(format!("parameter `{param}` of `{shown}`"));
                    self.check_port(arg, place, None, Form::Port);
                }
            }
        }
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
                self.check_child_args(&name, &parts);
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
                let name = method.to_string();
                if is_port_name(&name) {
                    let end = toks[j..]
                        .iter()
                        .position(|t| t.punct(';') || t.punct(','))
                        .map_or(toks.len(), |p| p + j);
                    self.check_port(
                        &toks[j + 1..end],
                        Place::Fixed(format!("field `{name}`")),
                        None,
                        Form::Port,
                    );
                }
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
