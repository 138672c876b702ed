//! Addresses that are not on this host: a probe of `10.0.0.5:80` can say what the connection
//! attempt saw (refused, unreachable, no answer), never what listens there, because a scan of
//! this host's sockets cannot see another machine's.

use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};

use crate::report::{Code, Diagnosis, Severity};

/// Whether `ip` is an address of this host: loopback, a wildcard, or one of its interfaces'.
/// Tells by binding a UDP socket to it, which sends nothing.
pub(crate) fn is_local(ip: IpAddr) -> bool {
    ip.is_loopback() || ip.is_unspecified() || UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
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
