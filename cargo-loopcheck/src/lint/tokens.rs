//! Token trees of a file, and reading paths, lists and literals off them.

use proc_macro2::{Delimiter, Ident, Literal, Spacing, Span, TokenStream, TokenTree};

/// A token tree, owned, with groups as vectors for random access.
pub(super) enum Tok {
    /// An identifier or keyword.
    Ident(Ident),
    /// A punctuation character; `true` when it joins the next one (`:` of `::`, `=` of `==`).
    Punct(char, bool, Span),
    /// A literal, as written.
    Lit(Literal),
    /// A delimited group: its delimiter, the span of its opening delimiter, its tokens.
    Group(Delimiter, Span, Vec<Tok>),
}

/// The token trees of `stream`.
pub(super) fn tree(stream: TokenStream) -> Vec<Tok> {
    stream
        .into_iter()
        .map(|token| match token {
            TokenTree::Ident(ident) => Tok::Ident(ident),
            TokenTree::Punct(punct) => {
                Tok::Punct(punct.as_char(), punct.spacing() == Spacing::Joint, punct.span())
            }
            TokenTree::Literal(literal) => Tok::Lit(literal),
            TokenTree::Group(group) => {
                let delimiter = group.delimiter();
                let open = group.span_open();
                let stream = group.stream();
                // The group's stream is now the only owner: taking it apart copies nothing.
                drop(group);
                Tok::Group(delimiter, open, tree(stream))
            }
        })
        .collect()
}

impl Tok {
    pub(super) fn is(&self, name: &str) -> bool {
        matches!(self, Tok::Ident(ident) if ident == name)
    }

    pub(super) fn punct(&self, c: char) -> bool {
        matches!(self, Tok::Punct(p, ..) if *p == c)
    }

    /// A `c` that does not start a longer operator (`=` but not `==` or `=>`).
    pub(super) fn lone(&self, c: char) -> bool {
        matches!(self, Tok::Punct(p, false, _) if *p == c)
    }

    pub(super) fn group(&self, delimiter: Delimiter) -> Option<&[Tok]> {
        match self {
            Tok::Group(d, _, inner) if *d == delimiter => Some(inner),
            _ => None,
        }
    }

    pub(super) fn paren(&self) -> Option<&[Tok]> {
        self.group(Delimiter::Parenthesis)
    }

    pub(super) fn brace(&self) -> Option<&[Tok]> {
        self.group(Delimiter::Brace)
    }

    pub(super) fn ident(&self) -> Option<&Ident> {
        match self {
            Tok::Ident(ident) => Some(ident),
            _ => None,
        }
    }

    pub(super) fn span(&self) -> Span {
        match self {
            Tok::Ident(ident) => ident.span(),
            Tok::Punct(_, _, span) | Tok::Group(_, span, _) => *span,
            Tok::Lit(lit) => lit.span(),
        }
    }
}

/// A place in the file: line and column from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct Pos {
    pub(super) line: u32,
    pub(super) column: u32,
}

pub(super) fn pos(span: Span) -> Pos {
    let start = span.start();
    Pos {
        line: start.line as u32,
        column: start.column as u32 + 1,
    }
}

/// `::` at `i`.
pub(super) fn path_sep(toks: &[Tok], i: usize) -> bool {
    matches!(toks.get(i), Some(Tok::Punct(':', true, _))) && toks.get(i + 1).is_some_and(|t| t.punct(':'))
}

/// The end of the `<...>` that starts at `i`, past the closing `>`; `->` inside does not close.
pub(super) fn skip_angle(toks: &[Tok], mut i: usize) -> usize {
    let mut depth = 0;
    while let Some(tok) = toks.get(i) {
        if tok.punct('<') {
            depth += 1;
        } else if tok.punct('>') && !(i > 0 && matches!(toks[i - 1], Tok::Punct('-', true, _))) {
            depth -= 1;
            if depth == 0 {
                return i + 1;
            }
        }
        i += 1;
    }
    toks.len()
}

/// The end of the path starting at `i` (`a::b::<T>::c`), and its segments' tokens.
pub(super) fn path_end(toks: &[Tok], start: usize) -> usize {
    let mut i = start;
    if path_sep(toks, i) {
        i += 2;
    }
    if toks.get(i).and_then(Tok::ident).is_none() {
        return start;
    }
    i += 1;
    while path_sep(toks, i) {
        match toks.get(i + 2) {
            Some(Tok::Ident(_)) => i += 3,
            Some(tok) if tok.punct('<') => i = skip_angle(toks, i + 2),
            _ => break,
        }
    }
    i
}

/// Where a path starts: its first segment, past a leading `::`.
pub(super) fn path_pos(path: &[Tok]) -> Pos {
    path.iter().find_map(Tok::ident).map_or_else(
        || pos(path.first().map_or_else(Span::call_site, Tok::span)),
        |i| pos(i.span()),
    )
}

pub(super) fn segments(path: &[Tok]) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < path.len() {
        if path[i].punct('<') {
            i = skip_angle(path, i);
            continue;
        }
        if let Tok::Ident(ident) = &path[i] {
            out.push(ident.to_string());
        }
        i += 1;
    }
    out
}

/// The last two segments of a path: `("TcpListener", "bind")`, or `("", "bind")`.
pub(super) fn last_two(segments: &[String]) -> (&str, &str) {
    match segments {
        [.., ty, name] => (ty, name),
        [name] => ("", name),
        [] => ("", ""),
    }
}

pub(super) fn shown(segments: &[String]) -> String {
    match last_two(segments) {
        ("", name) => name.to_owned(),
        (ty, name) => format!("{ty}::{name}"),
    }
}

/// The top-level comma-separated parts of a group's tokens (a trailing comma adds nothing).
pub(super) fn split_commas(toks: &[Tok]) -> Vec<&[Tok]> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < toks.len() {
        if path_sep(toks, i) && toks.get(i + 2).is_some_and(|t| t.punct('<')) {
            i = skip_angle(toks, i + 2);
            continue;
        }
        if toks[i].punct(',') {
            parts.push(&toks[start..i]);
            start = i + 1;
        }
        i += 1;
    }
    if start < toks.len() {
        parts.push(&toks[start..]);
    }
    parts
}

/// The text of a string literal (`"..."`, `r#"..."#`), escapes left as written; not byte or C
/// strings.
pub(super) fn string_text(repr: &str) -> Option<&str> {
    let body = repr
        .strip_prefix('r')
        .map_or(repr, |raw| raw.trim_start_matches('#'));
    let end = repr.rfind('"')?;
    let start = repr.len() - body.len();
    (body.starts_with('"') && end > start).then(|| &repr[start + 1..end])
}

/// The value of an integer literal: `8080`, `8_080u16`, `0x1F90`.
pub(super) fn int_value(repr: &str) -> Option<u64> {
    let (digits, radix) = match repr.get(..2) {
        Some("0x") => (&repr[2..], 16),
        Some("0o") => (&repr[2..], 8),
        Some("0b") => (&repr[2..], 2),
        _ => (repr, 10),
    };
    let end = digits
        .find(|c: char| !(c.is_digit(radix) || c == '_'))
        .unwrap_or(digits.len());
    let suffix = &digits[end..];
    if !(suffix.is_empty() || suffix.starts_with('u') || suffix.starts_with('i')) {
        return None;
    }
    let digits: String = digits[..end].chars().filter(|&c| c != '_').collect();
    u64::from_str_radix(&digits, radix).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_literals() {
        // loopcheck:allow(LC010): source text the lint test reads, never bound
        assert_eq!(string_text(r#""127.0.0.1:80""#), Some("127.0.0.1:80"));
        assert_eq!(string_text(r##"r#"a"b"#"##), Some(r#"a"b"#));
        assert_eq!(string_text(r#"b"x""#), None);
        assert_eq!(string_text("8080"), None);
        assert_eq!(int_value("8080"), Some(8080));
        assert_eq!(int_value("8_080u16"), Some(8080));
        assert_eq!(int_value("0x1F90"), Some(8080));
        assert_eq!(int_value("1.5"), None);
        assert_eq!(int_value("80f32"), None);
    }

    #[test]
    fn splits_lists_and_paths() {
        let toks = tree("a, HashMap::<u8, u8>::new(), (b, c),".parse().unwrap());
        assert_eq!(split_commas(&toks).len(), 3);
        let toks = tree("::std::net::TcpListener::bind(x)".parse().unwrap());
        let end = path_end(&toks, 0);
        assert_eq!(segments(&toks[..end]), ["std", "net", "TcpListener", "bind"]);
        assert_eq!(shown(&segments(&toks[..end])), "TcpListener::bind");
    }
}
