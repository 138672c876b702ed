//! Hand-written JSON for the records every test writes: the lease record and the run record.
//!
//! Tests run unoptimised, and there `serde_json`'s generic code costs more per record than
//! the rest of the record's path together, and so does the formatting machinery of `write!`;
//! these writers produce the same JSON values (the tests of each record compare them with
//! `serde_json`'s) with a few appends of bytes, into a vector or straight into a lease
//! record's block.

use std::net::{IpAddr, SocketAddr};

/// Where hand-written JSON goes: the bytes of a run record, or a lease record's block.
pub(crate) trait Out {
    /// Appends `bytes`.
    fn put(&mut self, bytes: &[u8]);
}

impl Out for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// Appends `text` as a JSON string literal.
pub(crate) fn push_string(json: &mut impl Out, text: &str) {
    json.put(b"\"");
    if needs_no_escape(text) {
        json.put(text.as_bytes());
    } else {
        let mut buf = [0; 6];
        for c in text.chars() {
            match escape(c, &mut buf) {
                Some(escaped) => json.put(escaped),
                None => json.put(c.encode_utf8(&mut [0; 4]).as_bytes()),
            }
        }
    }
    json.put(b"\"");
}

/// The escape a JSON string holds for `c`, written into `buf`; `None` for a character that
/// goes in as it is.
fn escape(c: char, buf: &mut [u8; 6]) -> Option<&[u8]> {
    let short = match c {
        '"' => b'"',
        '\\' => b'\\',
        '\n' => b'n',
        '\t' => b't',
        '\r' => b'r',
        c if (c as u32) < 0x20 => {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            let low = c as usize;
            *buf = [b'\\', b'u', b'0', b'0', HEX[low >> 4], HEX[low & 0xf]];
            return Some(&buf[..]);
        }
        _ => return None,
    };
    buf[0] = b'\\';
    buf[1] = short;
    Some(&buf[..2])
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

/// The longest prefix of `text`, cut at a character boundary, whose JSON string takes at most
/// `max` bytes between its quotes: escapes count at their written length (a control character
/// takes six bytes), so that a record built from cut fields has a known greatest length.
pub(crate) fn prefix_within(text: &str, max: usize) -> &str {
    if needs_no_escape(text) {
        let mut cut = text.len().min(max);
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        return &text[..cut];
    }
    let mut used = 0;
    let mut buf = [0; 6];
    for (at, c) in text.char_indices() {
        let len = escape(c, &mut buf).map_or(c.len_utf8(), <[u8]>::len);
        if used + len > max {
            return &text[..at];
        }
        used += len;
    }
    text
}

/// Appends `text` as a JSON string, or `null` when there is none.
pub(crate) fn push_optional_string(json: &mut impl Out, text: Option<&str>) {
    match text {
        Some(text) => push_string(json, text),
        None => json.put(b"null"),
    }
}

/// Appends `n` in decimal, as `Display` writes it, without the formatting machinery (about a
/// thousand instructions a number in unoptimised builds).
pub(crate) fn push_u64(json: &mut impl Out, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    json.put(&digits[at..]);
}

/// Appends `addr` as `Display` writes it: IPv4 by hand, IPv6 (whose short forms have rules of
/// their own) through `Display`.
pub(crate) fn push_ip(json: &mut impl Out, addr: IpAddr) {
    match addr {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            push_u64(json, u64::from(a));
            json.put(b".");
            push_u64(json, u64::from(b));
            json.put(b".");
            push_u64(json, u64::from(c));
            json.put(b".");
            push_u64(json, u64::from(d));
        }
        IpAddr::V6(v6) => json.put(v6.to_string().as_bytes()),
    }
}

/// Appends `addr` as `Display` writes it: `IP:PORT`, or `[IP]:PORT` for IPv6.
pub(crate) fn push_socket_addr(json: &mut impl Out, addr: SocketAddr) {
    match addr {
        SocketAddr::V4(v4) => {
            push_ip(json, IpAddr::V4(*v4.ip()));
            json.put(b":");
            push_u64(json, u64::from(v4.port()));
        }
        SocketAddr::V6(v6) => json.put(v6.to_string().as_bytes()),
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
            "\u{0}\u{b}\u{1b}",
        ] {
            let mut json = Vec::new();
            push_string(&mut json, text);
            let json = String::from_utf8(json).unwrap();
            assert_eq!(serde_json::from_str::<String>(&json).unwrap(), text, "{json}");
        }
    }

    #[test]
    fn a_cut_string_stays_within_its_length_and_whole() {
        for (text, max) in [
            ("plain", 3),
            ("plain", 10),
            ("ü→🦀", 4),
            ("ü→🦀", 5),
            ("\"q\"", 3),
            ("a\u{1}b", 6),
            ("a\u{1}b", 7),
            ("\u{1}\u{1}", 11),
            ("", 0),
        ] {
            let cut = prefix_within(text, max);
            let mut json = Vec::new();
            push_string(&mut json, cut);
            assert!(json.len() - 2 <= max, "{text:?} within {max}: {cut:?}");
            assert!(text.starts_with(cut));
            // The longest such prefix: one more character would not fit.
            if let Some(next) = text[cut.len()..].chars().next() {
                let mut longer = Vec::new();
                push_string(&mut longer, &text[..cut.len() + next.len_utf8()]);
                assert!(longer.len() - 2 > max, "{text:?} within {max}: {cut:?}");
            }
        }
    }

    #[test]
    fn numbers_and_addresses_are_written_as_display_writes_them() {
        for n in [0, 7, 9, 10, 99, 100, 65_535, 1_700_000_000_123, u64::MAX] {
            let mut json = b"x".to_vec();
            push_u64(&mut json, n);
            assert_eq!(json, format!("x{n}").into_bytes());
        }
        for addr in [
            // loopcheck:allow(LC010): addresses formatted in memory, never bound
            "127.0.0.1:20001",
            "0.0.0.0:0",
            "255.255.255.255:65535",
            "10.0.0.9:80",
            // loopcheck:allow(LC010): addresses formatted in memory, never bound
            "[::1]:20001",
            "[fe80::1%2]:9",
            "[::ffff:127.0.0.1]:1",
        ] {
            let addr: SocketAddr = addr.parse().unwrap();
            let (mut ip, mut whole) = (Vec::new(), Vec::new());
            push_ip(&mut ip, addr.ip());
            push_socket_addr(&mut whole, addr);
            assert_eq!(
                (ip, whole),
                (addr.ip().to_string().into_bytes(), addr.to_string().into_bytes())
            );
        }
    }
}
