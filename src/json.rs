//! Hand-written JSON for the records every test writes: the lease record and the run record.
//!
//! Tests run unoptimised, and there `serde_json`'s generic code costs more per record than
//! the rest of the record's path together; these writers produce the same JSON values (the
//! tests of each record compare them with `serde_json`'s) with a few string appends.

use std::fmt::Write as _;

/// Appends `text` as a JSON string literal.
pub(crate) fn push_string(json: &mut String, text: &str) {
    json.push('"');
    if needs_no_escape(text) {
        json.push_str(text);
    } else {
        for c in text.chars() {
            match c {
                '"' => json.push_str("\\\""),
                '\\' => json.push_str("\\\\"),
                '\n' => json.push_str("\\n"),
                '\t' => json.push_str("\\t"),
                '\r' => json.push_str("\\r"),
                c if (c as u32) < 0x20 => {
                    // Writing to a String cannot fail.
                    let _ = write!(json, "\\u{:04x}", c as u32);
                }
                c => json.push(c),
            }
        }
    }
    json.push('"');
}

/// Whether `text` goes into a JSON string as it is: no control character, quote or backslash.
/// An index loop, not `bytes().all(..)`, whose iterator costs several calls a byte in the
/// unoptimised builds tests run in.
fn needs_no_escape(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut at = 0;
    while at < bytes.len() {
        let b = bytes[at];
        if b < 0x20 || b == b'"' || b == b'\\' {
            return false;
        }
        at += 1;
    }
    true
}

/// Appends `text` as a JSON string, or `null` when there is none.
pub(crate) fn push_optional_string(json: &mut String, text: Option<&str>) {
    match text {
        Some(text) => push_string(json, text),
        None => json.push_str("null"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_decode_to_what_was_encoded() {
        for text in [
            "plain",
            "",
            "quote \" and \\ back",
            "new\nline\ttab\r",
            "\u{1}\u{1f}\u{7f}",
            "ü → 🦀",
        ] {
            let mut json = String::new();
            push_string(&mut json, text);
            assert_eq!(serde_json::from_str::<String>(&json).unwrap(), text, "{json}");
        }
    }
}
