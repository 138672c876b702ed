//! LC010 and LC011 through the workspace facts: ports handed to the workspace's own functions,
//! constants of other files, remote hosts that make a port harmless, and contexts a literal
//! does not get out of.

use loopcheck::report::Code;
use proc_macro2::Delimiter;

use super::addr::{self, HostKind};
use super::eval::{IntLit, strip};
use super::hard_coded::{Form, Place};
use super::reach::Reach;
use super::tokens::{Pos, Tok, path_end, path_pos, segments, string_text};
use super::walk::Linter;

/// Whether a value in the arguments of `ctx` (a call or macro as findings show it) ends
/// there: assertions, comparisons and deserializers, whose value the lint cannot follow to an
/// address. A port found there is a warning, not an error.
pub(super) fn goes_nowhere(ctx: &str) -> bool {
    let name = ctx.rsplit("::").next().unwrap_or(ctx);
    let name = name.trim_start_matches('.').trim_end_matches('!');
    name.starts_with("assert")
        || name.starts_with("debug_assert")
        || matches!(
            name,
            "from_str"
                | "from_slice"
                | "from_value"
                | "from_reader"
                | "eq"
                | "ne"
                | "contains"
                | "starts_with"
                | "ends_with"
        )
}

/// The path `t` is made of, if that is all it is: `PORT`, `shared::CONTROL_PORT`.
fn whole_path(t: &[Tok]) -> Option<Vec<String>> {
    let end = path_end(t, 0);
    (end > 0 && end == t.len()).then(|| segments(t))
}

/// Constants are written in upper case; a lower-case name is a variable the lint cannot see.
fn constant_like(segments: &[String]) -> bool {
    segments
        .last()
        .is_some_and(|name| name.starts_with(|c: char| c.is_ascii_uppercase()))
}

impl Linter<'_> {
    /// Remembers a name looked up in the facts (see [`super::walk::Linted::names`]).
    pub(super) fn note_name(&mut self, name: &str) {
        if !self.looked_up.contains(name) {
            self.looked_up.insert(name.to_owned());
        }
    }

    fn where_defined(&self, file: &str, line: u32) -> String {
        if file == self.file {
            format!("line {line}")
        } else {
            format!("{file}:{line}")
        }
    }

    /// Whether a name written alone may come from another file: imported by name or by glob.
    pub(super) fn imported(&self, segments: &[String]) -> bool {
        segments.len() > 1
            || segments
                .first()
                .is_some_and(|first| self.imports.names.contains_key(first))
            || self.imports.has_globs()
    }

    /// A port constant of the workspace that `expr` names, as a literal at the place of use and
    /// the name to show: `PORT` (defined at src/lib.rs:3).
    pub(super) fn constant_port(&mut self, expr: &[Tok]) -> Option<(IntLit, String)> {
        let t = strip(expr);
        let segments = whole_path(t)?;
        self.constant_at(&segments, path_pos(t))
    }

    /// The port a call of a workspace function returns, when its body is a literal: `port()`
    /// with `fn port() -> u16 { 8080 }`, as a literal at the call.
    pub(super) fn returned_port(&mut self, expr: &[Tok]) -> Option<(IntLit, String)> {
        let t = strip(expr);
        let end = path_end(t, 0);
        if end == 0 || t.len() != end + 1 || !t[end].paren().is_some_and(<[Tok]>::is_empty) {
            return None;
        }
        let segments = segments(&t[..end]);
        let workspace = self.workspace;
        let expanded = workspace.expand(&self.imports, &segments);
        let name = expanded.last()?;
        self.note_name(name);
        if !workspace.has_function(name) {
            return None;
        }
        let fact = workspace.function(&expanded, false, self.file, self.imported(&segments))?;
        let value = fact.returns?;
        let via = format!(
            "`{}()` (defined at {})",
            segments.join("::"),
            self.where_defined(&fact.file, fact.line)
        );
        Some((
            IntLit {
                value,
                pos: path_pos(&t[..end]),
            },
            via,
        ))
    }

    /// [`Linter::constant_port`] for a name captured by a format string.
    pub(super) fn constant_named(&mut self, name: &str, at: Pos) -> Option<(IntLit, String)> {
        self.constant_at(&[name.to_owned()], at)
    }

    fn constant_at(&mut self, segments: &[String], at: Pos) -> Option<(IntLit, String)> {
        if !constant_like(segments) || (segments.len() == 1 && self.env.lookup(&segments[0]).is_some()) {
            return None;
        }
        let workspace = self.workspace;
        let expanded = workspace.expand(&self.imports, segments);
        let name = expanded.last()?;
        self.note_name(name);
        if !self.workspace.has_constant(name) {
            return None;
        }
        let found = workspace.constant(&expanded, self.file, self.imported(segments))?;
        if found.host.is_some() {
            return None;
        }
        let via = format!(
            "`{}` (defined at {})",
            segments.join("::"),
            self.where_defined(&found.file, found.line)
        );
        Some((
            IntLit {
                value: found.port,
                pos: at,
            },
            via,
        ))
    }

    /// A call of a function of the workspace: each integer given for a parameter that carries
    /// a port is LC010, and an address string given for one that never reaches an address is
    /// not reported. `false` when the workspace does not define the callee.
    pub(super) fn workspace_call(
        &mut self,
        segments: &[String],
        method: bool,
        shown: &str,
        args: &[&[Tok]],
    ) -> bool {
        if method
            && segments
                .last()
                .is_some_and(|name| super::reach::is_socket_sink(name))
        {
            // Without the receiver's type, `.bind(..)` may be std's as well as ours.
            return false;
        }
        let workspace = self.workspace;
        // Expanded first: `use helpers::start as begin;` then `begin(..)` calls `start`.
        let expanded = if method {
            segments.to_vec()
        } else {
            workspace.expand(&self.imports, segments)
        };
        let name = expanded.last().map_or("", String::as_str);
        self.note_name(name);
        if !self.workspace.has_function(name) {
            return false;
        }
        let Some(fact) = workspace.function(&expanded, method, self.file, self.imported(segments)) else {
            return false;
        };
        let remote = args.iter().any(|arg| self.is_remote_host(arg));
        let note = if &*fact.file == self.file {
            String::new()
        } else {
            format!(", defined at {}:{}", fact.file, fact.line)
        };
        // `Broker::start(&broker, 3000)` calls the method `start` with its receiver first.
        let receiver = usize::from(fact.method && !method);
        for param in &fact.params {
            let Some(arg) = args.get(param.index + receiver) else {
                continue;
            };
            if param.is_port() && !remote {
                let place = Place::Fixed(format!("parameter `{}` of `{shown}`{note}", param.name));
                self.check_port(arg, place, None, Form::Port);
            }
            if !method
                && param.reach != Reach::Address
                && let [Tok::Lit(lit)] = strip(arg)
            {
                let at = super::tokens::pos(lit.span());
                if param.reach == Reach::No {
                    self.quiet.insert(at);
                } else {
                    self.weak.insert(at);
                }
            }
        }
        true
    }

    /// Whether `arg` is a string naming a host that is not this machine.
    pub(super) fn is_remote_host(&self, arg: &[Tok]) -> bool {
        match strip(arg) {
            [Tok::Lit(lit)] => string_text(&lit.to_string()).is_some_and(addr::is_remote_host),
            _ => false,
        }
    }

    /// Whether a struct literal's fields name a remote host: `Config { host: "db.example.com", port: 5432 }`.
    pub(super) fn names_remote_host(&self, fields: &[Tok]) -> bool {
        super::tokens::split_commas(fields)
            .into_iter()
            .any(|field| match field {
                [Tok::Ident(_), colon, value @ ..] if colon.lone(':') => self.is_remote_host(value),
                _ => false,
            })
    }

    /// Whether the statement around the method call at `i` hands a remote host to a call of
    /// the same chain: `Options::builder().host("x.example.com").port(443)`.
    pub(super) fn chain_names_remote_host(&self, toks: &[Tok], i: usize) -> bool {
        let start = toks[..i].iter().rposition(|t| t.punct(';')).map_or(0, |p| p + 1);
        let end = toks[i..]
            .iter()
            .position(|t| t.punct(';'))
            .map_or(toks.len(), |p| p + i);
        toks[start..end].iter().any(|t| match t {
            Tok::Group(Delimiter::Parenthesis, _, inner) => super::tokens::split_commas(inner)
                .iter()
                .any(|arg| self.is_remote_host(arg)),
            _ => false,
        })
    }

    /// An address constant of another file in a `bind` or `connect`: LC010 at the place of use
    /// for library code's (test code's are reported where they are defined), and LC011 for a
    /// wildcard bind.
    pub(super) fn check_address_constant(&mut self, name: &str, arg: Option<&[Tok]>, shown: &str) {
        let bind = super::names::is_bind_name(name);
        if !(bind || matches!(name, "connect" | "connect_timeout" | "send_to")) {
            return;
        }
        let Some(t) = arg.map(strip) else {
            return;
        };
        let Some(segments) = whole_path(t) else {
            return;
        };
        if !constant_like(&segments) || (segments.len() == 1 && self.env.lookup(&segments[0]).is_some()) {
            return;
        }
        let Some(name) = segments.last() else {
            return;
        };
        self.note_name(name);
        if !self.workspace.has_constant(name) {
            return;
        }
        let workspace = self.workspace;
        let expanded = workspace.expand(&self.imports, &segments);
        let Some(found) = workspace.constant(&expanded, self.file, self.imported(&segments)) else {
            return;
        };
        let Some(kind) = found.host else {
            return;
        };
        // Test code's own address strings are reported where they are written; in its own
        // file the rules see the constant's value, in another only this look-up does.
        if found.test && &*found.file == self.file {
            return;
        }
        let at = path_pos(t);
        let via = format!(
            "`{}` (defined at {})",
            segments.join("::"),
            self.where_defined(&found.file, found.line)
        );
        if kind != HostKind::Other && !found.test {
            let lit = IntLit {
                value: found.port,
                pos: at,
            };
            self.report_port_from(
                lit,
                Some(via.clone()),
                Place::Fixed(format!("`{shown}`")),
                None,
                Form::Addr,
            );
        }
        if kind == HostKind::Wildcard && bind {
            let message =
                format!("wildcard address in {via}, bound by `{shown}`, exposes the test to the network");
            let suggestion = format!(
                "bind loopback instead: `loopcheck::loopback_ip()` or `127.0.0.1`; or take the socket from the test: `{}(listener: {})`",
                self.test_form(),
                self.listener_type()
            );
            self.hit(Code::WildcardBind, at, Some(found.port), message, suggestion);
        }
    }
}
