//! Addresses that are not on this host: a probe of `10.0.0.5:80` can say what the connection
//! attempt saw (refused, unreachable, no answer), never what listens there, because a scan of
//! this host's sockets cannot see another machine's.

use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};

use crate::report::{Code, Diagnosis, Severity};

/// Whether `ip` is an address of this host: loopback, a wildcard, or one of its interfaces'
/// (`getifaddrs` on Unix; elsewhere, whether a UDP socket binds to it). Nothing is sent.
pub(crate) fn is_local(ip: IpAddr) -> bool {
    // `::ffff:127.0.0.1` is 127.0.0.1 as an IPv6 socket sees it: judged as that address.
    let ip = ip.to_canonical();
    if ip.is_loopback() || ip.is_unspecified() {
        return true;
    }
    #[cfg(unix)]
    if let Some(addrs) = interface_addrs() {
        return addrs.contains(&ip);
    }
    UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

/// The addresses of this host's interfaces, or `None` when they cannot be listed. (A bind
/// is no test on Linux: in a network namespace whose loopback is down, any address binds.)
#[cfg(unix)]
fn interface_addrs() -> Option<Vec<IpAddr>> {
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list` with a linked list that freeifaddrs releases below.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return None;
    }
    let mut addrs = Vec::new();
    let mut at = list;
    while !at.is_null() {
        // SAFETY: `at` is a node of the list getifaddrs returned, not yet freed.
        let entry = unsafe { &*at };
        if !entry.ifa_addr.is_null() {
            // SAFETY: ifa_addr points at a sockaddr whose family says its real type.
            let family = i32::from(unsafe { (*entry.ifa_addr).sa_family });
            if family == libc::AF_INET {
                // SAFETY: an AF_INET address is a sockaddr_in.
                let v4 = unsafe { &*(entry.ifa_addr as *const libc::sockaddr_in) };
                addrs.push(IpAddr::from(u32::from_be(v4.sin_addr.s_addr).to_be_bytes()));
            } else if family == libc::AF_INET6 {
                // SAFETY: an AF_INET6 address is a sockaddr_in6.
                let v6 = unsafe { &*(entry.ifa_addr as *const libc::sockaddr_in6) };
                addrs.push(IpAddr::from(v6.sin6_addr.s6_addr));
            }
        }
        at = entry.ifa_next;
    }
    // SAFETY: `list` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(list) };
    Some(addrs)
}

/// What a connection to `addr`, an address of another host, showed: `outcome` is the
/// connection attempt's.
pub(crate) fn explain(addr: SocketAddr, outcome: Result<(), &io::Error>) -> Diagnosis {
    let unseen = format!(
        "{} is not an address of this host: its sockets and processes are not visible to a scan from here",
        addr.ip()
    );
    let mut d = match outcome {
        Ok(()) => {
            let mut d = Diagnosis::new(
                Code::PortInUse,
                Some(addr),
                format!("{addr} accepted the connection: a server on another host answers there"),
                "to learn which process it is, run `cargo loopcheck probe` or `ss -ltnp` on that host",
            );
            d.severity = Severity::Info;
            d
        }
        Err(err) if err.kind() == io::ErrorKind::ConnectionRefused => Diagnosis::new(
            Code::ConnectionRefused,
            Some(addr),
            format!(
                "{addr} refused the connection ({err}): the host, or a firewall on the way, answered that nothing accepts on port {} there",
                addr.port()
            ),
            "check on that host that the server runs and listens on this port and on an address reachable from here (not only its loopback); tests should use loopback servers",
        ),
        Err(err) => {
            let seen = match err.kind() {
                io::ErrorKind::HostUnreachable | io::ErrorKind::NetworkUnreachable => {
                    "the host is unreachable from here: no route to it, or a router said so"
                }
                io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => {
                    "nothing answered in time: the host is down, or a firewall drops the packets"
                }
                _ => "the connection failed",
            };
            Diagnosis::new(
                Code::ConnectTimeout,
                Some(addr),
                format!("connecting to {addr} failed ({err}): {seen}"),
                "check the address and the network path to that host (`ping`, `traceroute`); tests should use loopback servers",
            )
        }
    };
    d.evidence.push(unseen);
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An address of another network; nothing is sent to it: only the explanation of an
    /// outcome is tested, and `is_local` binds without sending.
    fn remote() -> SocketAddr {
        "10.255.254.253:80".parse().unwrap()
    }

    #[test]
    fn loopback_and_wildcards_are_local_and_other_networks_are_not() {
        assert!(is_local("127.0.0.1".parse().unwrap()));
        assert!(is_local("0.0.0.0".parse().unwrap()));
        assert!(is_local("::".parse().unwrap()));
        assert!(!is_local(remote().ip()));
        assert!(!is_local("192.0.2.1".parse().unwrap()), "TEST-NET-1 is nobody's");
    }

    #[test]
    fn v4_mapped_addresses_are_judged_as_their_v4_address() {
        assert!(is_local("::ffff:127.0.0.1".parse().unwrap()));
        assert!(is_local("::ffff:127.3.2.1".parse().unwrap()));
        assert!(is_local("::ffff:0.0.0.0".parse().unwrap()));
        assert!(!is_local("::ffff:10.255.254.253".parse().unwrap()));
    }

    #[cfg(unix)]
    #[test]
    fn the_interfaces_include_loopback() {
        let addrs = interface_addrs().expect("getifaddrs works");
        assert!(addrs.contains(&"127.0.0.1".parse().unwrap()), "{addrs:?}");
    }

    #[test]
    fn a_remote_outcome_says_what_was_seen_and_never_that_nothing_listens() {
        let cases = [
            (
                io::ErrorKind::ConnectionRefused,
                Code::ConnectionRefused,
                "refused the connection",
            ),
            (
                io::ErrorKind::HostUnreachable,
                Code::ConnectTimeout,
                "unreachable",
            ),
            (
                io::ErrorKind::NetworkUnreachable,
                Code::ConnectTimeout,
                "unreachable",
            ),
            (
                io::ErrorKind::TimedOut,
                Code::ConnectTimeout,
                "nothing answered in time",
            ),
        ];
        for (kind, code, seen) in cases {
            let err = io::Error::from(kind);
            let d = explain(remote(), Err(&err));
            assert_eq!(d.code, code, "{kind:?}");
            assert!(d.summary.contains(seen), "{kind:?}: {}", d.summary);
            assert!(!d.summary.contains("nothing listens"), "{}", d.summary);
            assert!(
                d.evidence
                    .iter()
                    .any(|e| e.contains("not visible to a scan from here")),
                "{:?}",
                d.evidence
            );
            assert_eq!(d.severity, Severity::Error);
        }
        let answered = explain(remote(), Ok(()));
        assert_eq!(answered.severity, Severity::Info);
        assert!(
            answered.summary.contains("another host answers"),
            "{}",
            answered.summary
        );
    }
}
