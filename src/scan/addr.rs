//! Socket addresses as `lsof` and `netstat` print them: `127.0.0.1:80`, `[::1]:80`,
//! `[fe80::1%4]:546`, `*:80`, `*:*`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};

/// Parses one endpoint. A `*` host is the wildcard of the family given by `ipv6`; a `*` port
/// is 0. A zone (`%4`, `%en0`) becomes the scope id when numeric and is dropped otherwise.
pub(crate) fn parse_endpoint(text: &str, ipv6: bool) -> Option<SocketAddr> {
    let (host, port) = match text.strip_prefix('[') {
        Some(rest) => rest.split_once("]:")?,
        None => text.rsplit_once(':')?,
    };
    let port = match port {
        "*" => 0,
        digits if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => digits.parse().ok()?,
        _ => return None,
    };
    if host == "*" {
        let ip = if ipv6 {
            IpAddr::V6(Ipv6Addr::UNSPECIFIED)
        } else {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        };
        return Some(SocketAddr::new(ip, port));
    }
    let (host, zone) = match host.split_once('%') {
        Some((host, zone)) => (host, zone.parse::<u32>().unwrap_or(0)),
        None => (host, 0),
    };
    match host.parse::<IpAddr>().ok()? {
        IpAddr::V6(ip) => Some(SocketAddr::V6(SocketAddrV6::new(ip, port, 0, zone))),
        ip @ IpAddr::V4(_) if zone == 0 && !text.starts_with('[') => Some(SocketAddr::new(ip, port)),
        IpAddr::V4(_) => None,
    }
}

/// `None` for the "no peer" forms (`*:*`, `0.0.0.0:0`, `[::]:0`).
pub(crate) fn peer(addr: SocketAddr) -> Option<SocketAddr> {
    (!(addr.ip().is_unspecified() && addr.port() == 0)).then_some(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        let ok = |text: &str, ipv6: bool, expected: &str| {
            assert_eq!(
                parse_endpoint(text, ipv6),
                Some(expected.parse().unwrap()),
                "{text}"
            );
        };
        // loopcheck:allow(LC010): test data the code under test parses or prints, never bound
        ok("127.0.0.1:8080", false, "127.0.0.1:8080");
        // loopcheck:allow(LC010): test data the code under test parses or prints, never bound
        ok("[::1]:8080", true, "[::1]:8080");
        ok("[::ffff:127.0.0.1]:80", true, "[::ffff:127.0.0.1]:80");
        // loopcheck:allow(LC010): test data the code under test parses or prints, never bound
        ok("*:2024", false, "0.0.0.0:2024");
        // loopcheck:allow(LC010): test data the code under test parses or prints, never bound
        ok("*:2024", true, "[::]:2024");
        ok("*:*", false, "0.0.0.0:0");
        ok("[fe80::1%4]:546", true, "[fe80::1%4]:546");
        ok("[fe80::1%en0]:546", true, "[fe80::1]:546");
        for bad in [
            "",
            ":",
            "127.0.0.1",
            "127.0.0.1:",
            "127.0.0.1:x",
            "127.0.0.1:70000",
            "[::1]8080",
            "::1:80x",
            "[127.0.0.1]:80",
            "host:80",
            "127.0.0.1:+80",
        ] {
            assert_eq!(parse_endpoint(bad, false), None, "{bad}");
        }
    }

    #[test]
    fn peers() {
        assert_eq!(peer("0.0.0.0:0".parse().unwrap()), None);
        assert_eq!(peer("[::]:0".parse().unwrap()), None);
        assert!(peer("127.0.0.1:0".parse().unwrap()).is_some());
    }
}
