//! LC010 hard-coded-port: a literal port written in test code where it reaches an address (a
//! `host:port` string, a `(host, port)` tuple, a `SocketAddr`, an address built by `format!`, a
//! struct field, a call's port parameter). Ports through the workspace facts are in `calls`.

use std::collections::HashMap;

use loopcheck::report::Code;
use proc_macro2::{Delimiter, Literal};

use super::addr::{self, ArgRef, HostKind};
use super::eval::{IntLit, strip};
use super::names::is_port_name;
use super::tokens::{Tok, pos, split_commas, string_text};
use super::walk::Linter;

/// How a finding describes where a port was written.
pub(super) enum Place {
    /// Always this description.
    Fixed(String),
    /// The call it is an argument of, else this description.
    InCall(String),
    /// A field named like a port (`Config { port: 8080 }`, `config.port = 8080`): where the
    /// struct goes the lint does not follow, so this alone is a warning.
    Field(String),
}

/// Which `#[loopback_test]` form to suggest.
#[derive(Clone, Copy)]
pub(super) enum Form {
    Addr,
    Port,
}

impl Linter<'_> {
    pub(super) fn report_port(
        &mut self,
        lit: IntLit,
        via: Option<String>,
        place: Place,
        ctx: Option<&str>,
        form: Form,
    ) {
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
        let warning = ctx.is_some_and(super::calls::goes_nowhere)
            || self.weak.contains(&lit.pos)
            || matches!(place, Place::Field(_));
        let place = match (place, ctx) {
            (Place::Fixed(place) | Place::Field(place), _) => place,
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
        } else if let Some((lit, via)) = self.returned_port(expr) {
            self.report_port_from(lit, Some(via), place, ctx, form);
        }
    }

    pub(super) fn check_literal(&mut self, lit: &Literal, ctx: Option<&str>) {
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

    pub(super) fn check_format(&mut self, format: &Literal, args: &[&[Tok]], mac: &str) {
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

    /// Struct literal fields: `Config { port: 8080 }`, `Config { port }`; `i` is the brace.
    pub(super) fn check_port_fields(&mut self, toks: &[Tok], i: usize, inner: &[Tok]) {
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
                            self.check_port(value, Place::Field(format!("field `{name}`")), None, Form::Port);
                        }
                    }
                    [Tok::Ident(name)] if named_type => {
                        let name = name.to_string();
                        if is_port_name(&name) {
                            self.check_port(part, Place::Field(format!("field `{name}`")), None, Form::Port);
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    pub(super) fn tuple(&mut self, inner: &[Tok], ctx: Option<&str>) {
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

    pub(super) fn port_args(&mut self, name: &str, shown: &str, args: &[&[Tok]]) {
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

    /// `SocketAddr::new(host, port)` and `SocketAddr::from((host, port))`, `ty::name` being the
    /// call.
    pub(super) fn check_socket_addr(&mut self, ty: &str, name: &str, parts: &[&[Tok]], shown: &str) {
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
            && let [arg] = parts
            && let [Tok::Group(Delimiter::Parenthesis, _, tuple)] = strip(arg)
            && let [host, port] = split_commas(tuple).as_slice()
            && not_other(self, host)
        {
            self.check_port(port, place(), None, Form::Addr);
        }
    }

    /// `.name = value` with the `=` at `j`.
    pub(super) fn check_port_assignment(&mut self, toks: &[Tok], j: usize, name: &str) {
        if is_port_name(name) {
            let end = toks[j..]
                .iter()
                .position(|t| t.punct(';') || t.punct(','))
                .map_or(toks.len(), |p| p + j);
            self.check_port(
                &toks[j + 1..end],
                Place::Field(format!("field `{name}`")),
                None,
                Form::Port,
            );
        }
    }
}
