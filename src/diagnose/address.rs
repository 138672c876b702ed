//! Problems of the address itself rather than of who holds its port: an address this host
//! does not have (LC008), a port this user may not bind (LC009); and which addresses answer
//! for which: wildcards, v4-mapped addresses, what `localhost` resolves to (LC007).

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};

use crate::policy::PortPolicy;
use crate::report::{Code, Diagnosis};

pub(super) fn not_available(addr: SocketAddr, err: &io::Error) -> Diagnosis {
    let (summary, fix) = match addr.ip() {
        IpAddr::V6(ip) if ip.is_loopback() && !crate::policy::ipv6_available() => (
            format!("{addr} is not available: IPv6 is disabled on this host ({err})"),
            "use 127.0.0.1, or enable IPv6 on loopback (`sysctl net.ipv6.conf.lo.disable_ipv6=0`)".to_owned(),
        ),
        IpAddr::V4(ip) if ip.is_loopback() && ip != Ipv4Addr::LOCALHOST => (
            format!("{addr} is not configured on this host ({err}); only 127.0.0.1 is usable here"),
            if cfg!(target_os = "macos") {
                format!(
                    "alias the address first: `sudo ifconfig lo0 alias {ip} up`, or use 127.0.0.1 (`loopcheck::loopback_ip()` does so when aliases are missing)"
                )
            } else {
                "check that the loopback interface is up and owns 127.0.0.0/8 (`ip addr show lo`), or use 127.0.0.1".to_owned()
            },
        ),
        ip if ip.is_loopback() => (
            format!("{addr} is not available: the loopback interface seems down ({err})"),
            "bring it up: `ip link set lo up` (Linux) or `ifconfig lo0 up` (macOS)".to_owned(),
        ),
        _ => (
            format!("{addr} is not an address of this host ({err})"),
            "tests should bind loopback addresses only: use `loopcheck::loopback_ip()`".to_owned(),
        ),
    };
    Diagnosis::new(Code::LoopbackUnavailable, Some(addr), summary, fix)
}

pub(super) fn permission_denied(addr: SocketAddr, err: &io::Error, policy: Option<&PortPolicy>) -> Diagnosis {
    let unprivileged = unprivileged_port_start();
    let (summary, fix) = if addr.port() < unprivileged {
        (
            format!(
                "port {} of {addr} is privileged: ports below {unprivileged} need root or CAP_NET_BIND_SERVICE ({err})",
                addr.port()
            ),
            "use a port from `loopcheck::reserve_port()`; tests should never need a privileged port"
                .to_owned(),
        )
    } else if let Some(range) = policy.and_then(|p| p.reserved.iter().find(|r| r.contains(addr.port()))) {
        (
            format!("port {} of {addr} lies in the excluded or reserved range {range} ({err})", addr.port()),
            "pick a port outside the excluded ranges (`netsh int ipv4 show excludedportrange protocol=tcp` on Windows); loopcheck's allocation avoids them".to_owned(),
        )
    } else {
        (
            format!("binding or connecting {addr} was denied ({err})"),
            "a security policy (SELinux, AppArmor, a sandbox or seccomp profile) forbids it; check the policy's audit log".to_owned(),
        )
    };
    Diagnosis::new(Code::PermissionDenied, Some(addr), summary, fix)
}

fn unprivileged_port_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(1024)
}

/// Whether a socket bound to `bound` conflicts with, or answers for, `wanted`.
pub(super) fn overlaps(bound: IpAddr, wanted: IpAddr) -> bool {
    let (bound, wanted) = (unmap(bound), unmap(wanted));
    if bound == wanted {
        return true;
    }
    match (bound, wanted) {
        // `[::]` is dual-stack unless IPV6_V6ONLY is set, which the table does not show.
        (IpAddr::V6(b), _) if b.is_unspecified() => true,
        (IpAddr::V4(b), IpAddr::V4(_)) if b.is_unspecified() => true,
        (_, IpAddr::V6(w)) if w.is_unspecified() => true,
        (IpAddr::V4(_), IpAddr::V4(w)) if w.is_unspecified() => true,
        _ => false,
    }
}

fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

pub(super) fn localhost_all(port: u16) -> Vec<String> {
    ("localhost", port)
        .to_socket_addrs()
        .map(|addrs| addrs.map(|a| a.ip().to_string()).collect())
        .unwrap_or_default()
}

pub(super) fn localhost_first(port: u16) -> Option<SocketAddr> {
    ("localhost", port).to_socket_addrs().ok()?.next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_and_mapped_addresses_overlap() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(overlaps(ip("0.0.0.0"), ip("127.0.0.1")));
        assert!(overlaps(ip("::"), ip("127.0.0.1")));
        assert!(overlaps(ip("::ffff:127.0.0.1"), ip("127.0.0.1")));
        assert!(overlaps(ip("127.0.0.1"), ip("0.0.0.0")));
        assert!(!overlaps(ip("127.0.0.2"), ip("127.0.0.1")));
        assert!(!overlaps(ip("::1"), ip("127.0.0.1")));
        assert!(!overlaps(ip("0.0.0.0"), ip("::1")));
    }

    #[test]
    fn unavailable_addresses_and_denied_ports_are_explained() {
        let err = io::Error::from(io::ErrorKind::AddrNotAvailable);
        let d = not_available("10.9.8.7:4000".parse().unwrap(), &err);
        assert_eq!(d.code, Code::LoopbackUnavailable);
        assert!(d.summary.contains("not an address of this host"), "{d}");
        let d = not_available("127.3.2.1:4000".parse().unwrap(), &err);
        assert!(d.summary.contains("not configured"), "{d}");

        let err = io::Error::from(io::ErrorKind::PermissionDenied);
        let d = permission_denied("127.0.0.1:80".parse().unwrap(), &err, None);
        assert_eq!(d.code, Code::PermissionDenied);
        if unprivileged_port_start() > 80 {
            assert!(d.summary.contains("privileged"), "{d}");
        }
        let mut policy = PortPolicy::current().unwrap().clone();
        policy.reserved = vec![crate::policy::PortRange::new(50000, 50059)];
        let d = permission_denied("127.0.0.1:50010".parse().unwrap(), &err, Some(&policy));
        assert!(
            d.summary.contains("excluded or reserved range 50000-50059"),
            "{d}"
        );
        let d = permission_denied("127.0.0.1:40000".parse().unwrap(), &err, Some(&policy));
        assert!(d.fix.contains("security policy"), "{d}");
    }
}
