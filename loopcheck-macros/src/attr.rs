//! The options of `#[loopback_test(...)]`: `tokio`, `timeout = "10s"`, `leaks = "fail"`,
//! `crate = "path"`.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, quote};
use syn::ext::IdentExt;
use syn::parse::{ParseStream, Parser};
use syn::{Expr, ExprLit, Ident, Lit, LitStr, Path, Token};

use crate::error::{Errors, display};

/// What `leaks = "..."` asked for.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Leaks {
    Warn,
    Fail,
}

/// The options, validated. Options that were given badly keep their default.
pub(crate) struct Options {
    /// The `tokio` token, if given: the runtime is built with `::tokio` spanned here.
    pub(crate) tokio: Option<Span>,
    pub(crate) timeout_ms: Option<u64>,
    pub(crate) leaks: Leaks,
    pub(crate) krate: Option<Path>,
    /// The option list had a syntax error, so options after it are unknown: checks that
    /// depend on an option being absent (an `async fn` without `tokio`) are skipped.
    pub(crate) incomplete: bool,
}

const OPTIONS: &str =
    "`tokio`, `timeout = \"10s\"`, `leaks = \"fail\"` and `crate = \"path::to::loopcheck\"`";
const NAMES: [&str; 4] = ["tokio", "timeout", "leaks", "crate"];
const TOKIO_VALUE: &str =
    "`tokio` takes no value: write `#[loopback_test(tokio)]`; the test runs on a current-thread runtime";
const LEAKS: &str = "use `leaks = \"warn\"` (the default) or `leaks = \"fail\"`";
const CRATE: &str =
    "write the path through which loopcheck is reachable, like `crate = \"my_reexport::loopcheck\"`";

/// One option as written: a name, and `= value` when given.
struct Raw {
    name: Ident,
    value: Option<Expr>,
}

/// Parses as many options as it can; a syntax error is recorded and ends the list.
fn parse_raw(input: ParseStream<'_>, raw: &mut Vec<Raw>) -> syn::Result<()> {
    while !input.is_empty() {
        if !input.peek(Ident::peek_any) {
            return Err(input.error(format!(
                "expected the name of an option: the options are {OPTIONS}"
            )));
        }
        let name = input.call(Ident::parse_any)?;
        let value = if input.peek(Token![=]) {
            input.parse::<Token![=]>()?;
            Some(input.parse::<Expr>()?)
        } else {
            None
        };
        raw.push(Raw { name, value });
        if input.is_empty() {
            break;
        }
        if !input.peek(Token![,]) {
            return Err(input.error("expected `,` between options, or `= \"...\"` after the option's name"));
        }
        input.parse::<Token![,]>()?;
    }
    Ok(())
}

pub(crate) fn parse(args: TokenStream, errors: &mut Errors) -> Options {
    let mut raw = Vec::new();
    let parsed = (|input: ParseStream<'_>| parse_raw(input, &mut raw)).parse2(args);
    let mut options = Options {
        tokio: None,
        timeout_ms: None,
        leaks: Leaks::Warn,
        krate: None,
        incomplete: false,
    };
    if let Err(error) = parsed {
        errors.push(error);
        options.incomplete = true;
    }
    let mut seen: Vec<String> = Vec::new();
    for Raw { name, value } in raw {
        let key = name.to_string();
        if NAMES.contains(&key.as_str()) {
            if seen.contains(&key) {
                errors.spanned(&name, format!("duplicate option `{key}`: keep one of them"));
                continue;
            }
            seen.push(key.clone());
        }
        match (key.as_str(), value) {
            ("tokio", None) => options.tokio = Some(name.span()),
            ("tokio", Some(value)) => {
                // Still a request for tokio: the function's `async` is not reported as well.
                options.tokio = Some(name.span());
                errors.spanned(quote!(#name = #value), TOKIO_VALUE);
            }
            ("timeout", Some(value)) => match string(&value) {
                Some(lit) => match timeout_ms(&lit.value()) {
                    Ok(ms) => options.timeout_ms = Some(ms),
                    Err(message) => errors.spanned(lit, message),
                },
                None => errors.spanned(&value, timeout_not_a_string(&value)),
            },
            ("leaks", Some(value)) => match string(&value) {
                Some(lit) if lit.value() == "warn" => options.leaks = Leaks::Warn,
                Some(lit) if lit.value() == "fail" => options.leaks = Leaks::Fail,
                Some(lit) => errors.spanned(
                    lit,
                    format!("`leaks = {}` is not a choice: {LEAKS}", display(lit)),
                ),
                None => errors.spanned(
                    &value,
                    format!("`leaks` takes a string, not `{}`: {LEAKS}", display(&value)),
                ),
            },
            ("crate", Some(value)) => match crate_path(&value) {
                Some(path) => options.krate = Some(path),
                None => errors.spanned(
                    &value,
                    format!("`crate = {}` is not a path: {CRATE}", display(&value)),
                ),
            },
            ("timeout", None) => errors.spanned(&name, "`timeout` needs a value: write `timeout = \"10s\"`"),
            ("leaks", None) => errors.spanned(&name, format!("`leaks` needs a value: {LEAKS}")),
            ("crate", None) => errors.spanned(&name, format!("`crate` needs a value: {CRATE}")),
            (other, _) => {
                if suggestion(other) == Some("tokio") {
                    options.tokio = Some(name.span());
                }
                errors.spanned(&name, unknown(other));
            }
        }
    }
    options
}

fn string(value: &Expr) -> Option<&LitStr> {
    match value {
        Expr::Lit(ExprLit {
            lit: Lit::Str(lit), ..
        }) => Some(lit),
        _ => None,
    }
}

/// The option `name` is probably a misspelling of.
fn suggestion(name: &str) -> Option<&'static str> {
    NAMES
        .into_iter()
        .find(|known| name.eq_ignore_ascii_case(known) || (name.len() > 2 && edit_distance(name, known) <= 2))
}

fn unknown(name: &str) -> String {
    match suggestion(name) {
        Some(known) => format!("unknown option `{name}`: did you mean `{known}`?"),
        None => format!("unknown option `{name}`: the options are {OPTIONS}"),
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1).min(row[j] + 1).min(diagonal + usize::from(ca != cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

fn timeout_not_a_string(value: &Expr) -> String {
    match value {
        Expr::Lit(ExprLit {
            lit: Lit::Int(int), ..
        }) => format!(
            "`timeout` takes a string with a unit: write `timeout = \"{}s\"` for {} seconds",
            int.base10_digits(),
            int.base10_digits()
        ),
        _ => format!(
            "`timeout` takes a string with a unit, not `{}`: write `timeout = \"10s\"`",
            display(value)
        ),
    }
}

/// `"500ms"`, `"10s"`, `"2m"` as milliseconds, or the message saying what is wrong.
fn timeout_ms(text: &str) -> Result<u64, String> {
    let digits = text.chars().take_while(char::is_ascii_digit).count();
    let (number, unit) = text.split_at(digits);
    if number.is_empty() {
        return Err(format!(
            "`\"{text}\"` is not a duration: write a whole number and a unit, like `\"500ms\"`, `\"10s\"` or `\"2m\"`"
        ));
    }
    let scale = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "" => {
            return Err(format!(
                "`\"{text}\"` has no unit: write `\"{number}s\"`, `\"{number}ms\"` or `\"{number}m\"`"
            ));
        }
        other if matches!(other.trim(), "ms" | "s" | "m") => {
            return Err(format!("write `\"{number}{}\"`, without a space", other.trim()));
        }
        other => {
            return Err(format!(
                "`{other}` is not a unit of `\"{text}\"`: use `ms`, `s` or `m`"
            ));
        }
    };
    let ms = number.parse::<u64>().ok().and_then(|n| n.checked_mul(scale));
    match ms {
        Some(0) => {
            Err("a zero timeout fails every test: give a positive duration, like `\"10s\"`".to_owned())
        }
        Some(ms) => Ok(ms),
        None => Err(format!(
            "`\"{text}\"` is too long a timeout: give at most a few minutes, like `\"10m\"`"
        )),
    }
}

/// `crate = "a::b"` or `crate = a::b`.
fn crate_path(value: &Expr) -> Option<Path> {
    match value {
        Expr::Lit(ExprLit {
            lit: Lit::Str(lit), ..
        }) => lit
            .parse_with(Path::parse_mod_style)
            .ok()
            .filter(|p| !p.segments.is_empty()),
        Expr::Path(path) if path.qself.is_none() && path.attrs.is_empty() => {
            let reparsed = Path::parse_mod_style.parse2(path.path.to_token_stream()).ok()?;
            Some(reparsed).filter(|p| !p.segments.is_empty())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_to_milliseconds() {
        assert_eq!(timeout_ms("500ms"), Ok(500));
        assert_eq!(timeout_ms("10s"), Ok(10_000));
        assert_eq!(timeout_ms("2m"), Ok(120_000));
        for bad in ["ten", "10", "0s", "10h", "10 s", "", "99999999999999999999s"] {
            assert!(timeout_ms(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn close_names_are_suggested() {
        assert_eq!(
            unknown("timout"),
            "unknown option `timout`: did you mean `timeout`?"
        );
        assert_eq!(unknown("Tokio"), "unknown option `Tokio`: did you mean `tokio`?");
        assert!(unknown("flavor").contains("the options are"));
    }
}
