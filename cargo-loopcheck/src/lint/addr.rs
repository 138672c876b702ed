//! Addresses written as text: `127.0.0.1:8080`, `localhost:3000`, `http://[::1]:9000/x`, and
//! the host part of format strings such as `"127.0.0.1:{}"`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// What a host names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HostKind {
    /// `localhost`, `127.x.y.z`, `::1`.
    Loopback,
    /// `0.0.0.0`, `::`.
    Wildcard,
    /// Any other address or name, such as `example.com` or `10.0.0.1`.
    Other,
}

/// A `host:port` found in a string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TextAddr<'a> {
    /// Loopback or wildcard; other hosts are not reported.
    pub(crate) kind: HostKind,
    /// The port, possibly 0.
    pub(crate) port: u16,
    /// `host:port` as written.
    pub(crate) text: &'a str,
}

/// The kind of a host written alone: `localhost`, `127.0.0.1`, `::1`, `[::1]`, `0.0.0.0`, `::`.
pub(crate) fn host_kind(host: &str) -> HostKind {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if bare.eq_ignore_ascii_case("localhost") {
        return HostKind::Loopback;
    }
    match bare.parse::<IpAddr>() {
        Ok(ip) => ip_kind(ip),
        Err(_) => HostKind::Other,
    }
}

/// The kind of an IP address.
pub(crate) fn ip_kind(ip: IpAddr) -> HostKind {
    if ip.is_loopback() {
        HostKind::Loopback
    } else if ip.is_unspecified() {
        HostKind::Wildcard
    } else {
        HostKind::Other
    }
}

/// The kind of an address given as its octets (`[127, 0, 0, 1]`) or segments (8 of them).
pub(crate) fn parts_kind(parts: &[u64]) -> Option<HostKind> {
    let ip = match *parts {
        [a, b, c, d] => IpAddr::V4(Ipv4Addr::new(
            u8::try_from(a).ok()?,
            u8::try_from(b).ok()?,
            u8::try_from(c).ok()?,
            u8::try_from(d).ok()?,
        )),
        [a, b, c, d, e, f, g, h] => {
            let s = |v: u64| u16::try_from(v).ok();
            IpAddr::V6(Ipv6Addr::new(
                s(a)?,
                s(b)?,
                s(c)?,
                s(d)?,
                s(e)?,
                s(f)?,
                s(g)?,
                s(h)?,
            ))
        }
        _ => return None,
    };
    Some(ip_kind(ip))
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Every loopback or wildcard `host:port` in `text`, with any port (0 included). The host must
/// stand alone: `my-localhost:80` and `10.127.0.0.1:80` do not count, `http://localhost:80/`,
/// `user@127.0.0.1:5432` and `addr=[::1]:9000` do.
pub(crate) fn addresses(text: &str) -> Vec<TextAddr<'_>> {
    let bytes = text.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let candidate = matches!(b, b'l' | b'L' | b'1' | b'0' | b'[')
            && (i == 0 || b == b'[' || !(is_word(bytes[i - 1]) || matches!(bytes[i - 1], b'.' | b'-')));
        if candidate
            && let Some((end, kind)) = host_at(text, i)
            && let Some(port_end) = port_after(bytes, end)
        {
            if let Ok(port) = text[end + 1..port_end].parse::<u16>() {
                found.push(TextAddr {
                    kind,
                    port,
                    text: &text[i..port_end],
                });
            }
            i = port_end;
            continue;
        }
        i += 1;
    }
    found
}

/// The end of a loopback or wildcard host starting at `start`, and its kind.
fn host_at(text: &str, start: usize) -> Option<(usize, HostKind)> {
    let bytes = text.as_bytes();
    match bytes[start] {
        b'l' | b'L' => {
            let end = start + "localhost".len();
            let word = bytes.get(start..end)?;
            word.eq_ignore_ascii_case(b"localhost")
                .then_some((end, HostKind::Loopback))
        }
        b'[' => {
            let close = start + 1 + bytes[start + 1..].iter().take(48).position(|&c| c == b']')?;
            let ip: Ipv6Addr = text[start + 1..close].parse().ok()?;
            let kind = ip_kind(IpAddr::V6(ip));
            (kind != HostKind::Other).then_some((close + 1, kind))
        }
        _ => {
            let len = bytes[start..]
                .iter()
                .take(16)
                .take_while(|c| c.is_ascii_digit() || **c == b'.')
                .count();
            let ip: Ipv4Addr = text[start..start + len].parse().ok()?;
            let kind = ip_kind(IpAddr::V4(ip));
            (kind != HostKind::Other).then_some((start + len, kind))
        }
    }
}

/// The end of `:digits` at `colon`, when the digits stand alone (1 to 5 of them).
fn port_after(bytes: &[u8], colon: usize) -> Option<usize> {
    if bytes.get(colon) != Some(&b':') {
        return None;
    }
    let digits = bytes[colon + 1..]
        .iter()
        .take_while(|c| c.is_ascii_digit())
        .count();
    let end = colon + 1 + digits;
    let alone = bytes.get(end).is_none_or(|&c| !is_word(c));
    ((1..=5).contains(&digits) && alone).then_some(end)
}

/// The host written just before a `:` that ends `text`, as in the literal part `"http://127.0.0.1:"`
/// of `"http://127.0.0.1:{port}"`; only loopback and wildcard hosts.
pub(crate) fn host_before_colon(text: &str) -> Option<(HostKind, &str)> {
    let head = text.strip_suffix(':')?;
    let start = if head.ends_with(']') {
        head.rfind('[')?
    } else {
        head.len()
            - head
                .bytes()
                .rev()
                .take_while(|&c| is_word(c) || c == b'.' || c == b'-')
                .count()
    };
    let host = &head[start..];
    match host_kind(host) {
        HostKind::Other => None,
        kind => Some((kind, host)),
    }
}

/// Whether `text` names a host that is not this machine: an IP address outside 127.0.0.0/8,
/// `::1` and the wildcards, or a DNS name with a dot (`x.iot.eu-west-1.example.com`) that is
/// not under `localhost`. `host:port` is read as its host. File names (`config.toml`) are not
/// hosts.
pub(crate) fn is_remote_host(text: &str) -> bool {
    let host = text
        .rsplit_once(':')
        .filter(|(_, port)| port.parse::<u16>().is_ok())
        .map_or(text, |(host, _)| host);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = host.parse::<IpAddr>() {
        return ip_kind(ip) == HostKind::Other;
    }
    let labels: Vec<&str> = host.split('.').collect();
    let Some(top) = labels.last() else {
        return false;
    };
    labels.len() >= 2
        && labels
            .iter()
            .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        && top.len() >= 2
        && top.bytes().all(|b| b.is_ascii_alphabetic())
        && !top.eq_ignore_ascii_case("localhost")
        && !FILE_EXTENSIONS.iter().any(|e| top.eq_ignore_ascii_case(e))
}

const FILE_EXTENSIONS: [&str; 14] = [
    "rs", "toml", "json", "yaml", "yml", "txt", "md", "log", "sock", "pem", "key", "crt", "html", "csv",
];

/// Where a format string placeholder takes its value from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ArgRef {
    /// `{}`: the next positional argument.
    Next,
    /// `{0}`.
    Index(usize),
    /// `{port}`: a named argument or a captured variable.
    Name(String),
}

/// The placeholders of a format string, each with the literal text written since the
/// placeholder before it.
pub(crate) fn placeholders(format: &str) -> Vec<(String, ArgRef)> {
    let mut out = Vec::new();
    let mut text = String::new();
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                text.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                text.push('}');
            }
            '{' => {
                let inner: String = chars.by_ref().take_while(|&c| c != '}').collect();
                let arg = inner.split(':').next().unwrap_or("").trim();
                let arg = if arg.is_empty() {
                    ArgRef::Next
                } else if let Ok(index) = arg.parse() {
                    ArgRef::Index(index)
                } else {
                    ArgRef::Name(arg.to_owned())
                };
                out.push((std::mem::take(&mut text), arg));
            }
            c => text.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ports(text: &str) -> Vec<(HostKind, u16, &str)> {
        addresses(text)
            .into_iter()
            .map(|a| (a.kind, a.port, a.text))
            .collect()
    }

    #[test]
    fn finds_loopback_and_wildcard_addresses() {
        use HostKind::*;
        // loopcheck:allow(LC010): source text the lint test reads, never bound
        assert_eq!(ports("127.0.0.1:8080"), [(Loopback, 8080, "127.0.0.1:8080")]);
        // loopcheck:allow(LC010): source text the lint test reads, never bound
        assert_eq!(ports("localhost:8080"), [(Loopback, 8080, "localhost:8080")]);
        // loopcheck:allow(LC010): source text the lint test reads, never bound
        assert_eq!(ports("LocalHost:1"), [(Loopback, 1, "LocalHost:1")]);
        // loopcheck:allow(LC010): source text the lint test reads, never bound
        assert_eq!(ports("[::1]:8080"), [(Loopback, 8080, "[::1]:8080")]);
        // loopcheck:allow(LC010): source text the lint test reads, never bound
        assert_eq!(ports("0.0.0.0:8080"), [(Wildcard, 8080, "0.0.0.0:8080")]);
        assert_eq!(ports("[::]:0"), [(Wildcard, 0, "[::]:0")]);
        // loopcheck:allow(LC010): source text the lint test reads, never bound
        assert_eq!(ports("127.1.2.3:9"), [(Loopback, 9, "127.1.2.3:9")]);
        assert_eq!(
            // loopcheck:allow(LC010): source text the lint test reads, never bound
            ports("http://localhost:3000/x"),
            // loopcheck:allow(LC010): source text the lint test reads, never bound
            [(Loopback, 3000, "localhost:3000")]
        );
        // loopcheck:allow(LC010): source text the lint test reads, never bound
        assert_eq!(ports("ws://127.0.0.1:9000"), [(Loopback, 9000, "127.0.0.1:9000")]);
        assert_eq!(
            // loopcheck:allow(LC010): source text the lint test reads, never bound
            ports("a 127.0.0.1:1, b localhost:2"),
            // loopcheck:allow(LC010): source text the lint test reads, never bound
            [(Loopback, 1, "127.0.0.1:1"), (Loopback, 2, "localhost:2")]
        );
    }

    #[test]
    fn ignores_other_hosts_and_look_alikes() {
        for text in [
            "example.com:80",
            "10.0.0.1:80",
            "10.127.0.0.1:80",
            "my-localhost:80",
            "localhost",
            "127.0.0.1",
            "localhost:",
            "localhost:80x",
            "localhost:123456",
            "::1:80",
            "1127.0.0.1:80",
            "",
        ] {
            assert_eq!(ports(text), [], "{text}");
        }
    }

    #[test]
    fn reads_hosts_before_a_placeholder() {
        assert_eq!(
            host_before_colon("127.0.0.1:"),
            Some((HostKind::Loopback, "127.0.0.1"))
        );
        assert_eq!(
            host_before_colon("http://localhost:"),
            Some((HostKind::Loopback, "localhost"))
        );
        assert_eq!(host_before_colon("[::]:"), Some((HostKind::Wildcard, "[::]")));
        assert_eq!(host_before_colon("example.com:"), None);
        assert_eq!(host_before_colon("127.0.0.1"), None);
    }

    #[test]
    fn tells_remote_hosts() {
        for remote in [
            "x.iot.eu-west-1.example.com",
            "example.com:443",
            "10.0.0.1",
            "[2001:db8::1]:80",
            "8.8.8.8",
        ] {
            assert!(is_remote_host(remote), "{remote}");
        }
        for local in [
            "localhost",
            "127.0.0.1",
            "::1",
            "0.0.0.0",
            "client-1",
            "a.localhost",
            "config.toml",
            "v1.2",
            "",
        ] {
            assert!(!is_remote_host(local), "{local}");
        }
    }

    #[test]
    fn splits_format_strings() {
        assert_eq!(
            placeholders("{{x}} 127.0.0.1:{} {port:>5} {0}"),
            [
                ("{x} 127.0.0.1:".to_owned(), ArgRef::Next),
                (" ".to_owned(), ArgRef::Name("port".into())),
                (" ".to_owned(), ArgRef::Index(0)),
            ]
        );
    }

    #[test]
    fn classifies_octets() {
        assert_eq!(parts_kind(&[127, 0, 0, 1]), Some(HostKind::Loopback));
        assert_eq!(parts_kind(&[0, 0, 0, 0]), Some(HostKind::Wildcard));
        assert_eq!(parts_kind(&[10, 0, 0, 1]), Some(HostKind::Other));
        assert_eq!(parts_kind(&[0, 0, 0, 0, 0, 0, 0, 1]), Some(HostKind::Loopback));
        assert_eq!(parts_kind(&[300, 0, 0, 1]), None);
        assert_eq!(parts_kind(&[1, 2]), None);
    }
}
