//! `cargo loopcheck doctor`: what this host does to loopback tests.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use loopcheck::policy::{self, PortPolicy};
use loopcheck::report::Code;

use crate::Exit;
use crate::cli::Common;
use crate::error::Result;
use crate::report;
use crate::report::host::{Check, HostChecks, Status};
use crate::term::{Format, Term};

/// Runs every host check.
pub fn checks() -> Vec<Check> {
    vec![
        loopback(),
        ipv6(),
        per_test_addresses(),
        localhost(),
        hosts_file(),
        port_ranges(),
        loopback_traffic(),
        registry(),
        open_files(),
        nextest(),
        isolation(),
    ]
}

/// Whether `cargo loopcheck test --isolate` can isolate here, and why not.
fn isolation() -> Check {
    match crate::isolate::available() {
        Ok(how) => Check::new(
            "isolation",
            Status::Ok,
            format!("test --isolate runs each test in a network namespace of its own, {how}"),
        ),
        Err(unavailable) => Check {
            fix: Some(unavailable.fix),
            ..Check::new(
                "isolation",
                Status::Warning,
                format!("test --isolate is unavailable: {}", unavailable.why),
            )
        },
    }
}

fn loopback() -> Check {
    match TcpListener::bind((Ipv4Addr::LOCALHOST, 0)) {
        Ok(_) => Check::new("loopback", Status::Ok, "127.0.0.1 is bindable"),
        Err(err) => Check::problem(
            "loopback",
            Status::Error,
            Code::LoopbackUnavailable,
            format!("127.0.0.1 cannot be bound ({err})"),
            "bring the loopback interface up: `ip link set lo up` (Linux) or `ifconfig lo0 up` (macOS)",
        ),
    }
}

fn ipv6() -> Check {
    if policy::ipv6_available() {
        Check::new("ipv6 loopback", Status::Ok, "[::1] is bindable")
    } else {
        Check::problem(
            "ipv6 loopback",
            Status::Warning,
            Code::LoopbackUnavailable,
            "[::1] cannot be bound: IPv6 is disabled; loopcheck checks IPv4 only, and clients that resolve `localhost` to ::1 are refused",
            "enable IPv6 on loopback (`sysctl net.ipv6.conf.lo.disable_ipv6=0`), or connect to 127.0.0.1",
        )
    }
}

fn per_test_addresses() -> Check {
    if policy::per_test_addresses_available() {
        Check::new(
            "per-test addresses",
            Status::Ok,
            format!(
                "127.X.Y.Z addresses are bindable: this process would get {}",
                loopcheck::loopback_ip()
            ),
        )
    } else {
        let fix = if cfg!(target_os = "macos") {
            "alias an address to lo0 (`sudo ifconfig lo0 alias 127.1.0.1 up`); until then loopcheck uses 127.0.0.1"
        } else {
            "loopcheck uses 127.0.0.1 instead; check that lo owns 127.0.0.0/8 (`ip addr show lo`)"
        };
        Check::problem(
            "per-test addresses",
            Status::Warning,
            Code::LoopbackUnavailable,
            "addresses of 127.0.0.0/8 other than 127.0.0.1 cannot be bound",
            fix,
        )
    }
}

/// What `localhost` resolves to, and whether that misleads clients.
pub fn localhost_verdict(resolved: &[IpAddr]) -> Check {
    let list = resolved
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    match resolved.first() {
        None => Check::problem(
            "localhost",
            Status::Error,
            Code::LocalhostResolution,
            "`localhost` does not resolve",
            "add `127.0.0.1 localhost` and `::1 localhost` to /etc/hosts",
        ),
        Some(_) if resolved.iter().any(|ip| !ip.is_loopback()) => Check::problem(
            "localhost",
            Status::Error,
            Code::LocalhostResolution,
            format!("`localhost` resolves to a non-loopback address: {list}"),
            "map `localhost` to 127.0.0.1 and ::1 only, in /etc/hosts",
        ),
        Some(IpAddr::V6(_)) => Check::problem(
            "localhost",
            Status::Warning,
            Code::LocalhostResolution,
            format!(
                "`localhost` resolves to {list}: IPv6 first, so a client of a server bound to 127.0.0.1 is refused first"
            ),
            "connect to the address the server bound (`listener.local_addr()`), or bind servers on both families",
        ),
        Some(_) => Check::new("localhost", Status::Ok, format!("`localhost` resolves to {list}")),
    }
}

fn localhost() -> Check {
    let resolved: Vec<IpAddr> = match ("localhost", 0).to_socket_addrs() {
        Ok(addrs) => addrs.map(|a| a.ip()).collect(),
        Err(_) => Vec::new(),
    };
    localhost_verdict(&resolved)
}

/// What the hosts file says about `localhost`.
pub fn hosts_verdict(text: &str) -> Check {
    let mut mapped = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or_default();
        let mut fields = line.split_whitespace();
        let Some(ip) = fields.next() else { continue };
        if fields.any(|name| name.eq_ignore_ascii_case("localhost")) {
            mapped.push(ip.to_owned());
        }
    }
    let bad: Vec<&String> = mapped
        .iter()
        .filter(|ip| !ip.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback()))
        .collect();
    if !bad.is_empty() {
        let bad: Vec<&str> = bad.iter().map(|s| s.as_str()).collect();
        Check::problem(
            "hosts file",
            Status::Error,
            Code::LocalhostResolution,
            format!("/etc/hosts maps `localhost` to {}", bad.join(", ")),
            "map `localhost` to 127.0.0.1 and ::1 only",
        )
    } else if mapped.is_empty() {
        Check::new(
            "hosts file",
            Status::Info,
            "/etc/hosts has no `localhost` line; the resolver supplies it",
        )
    } else {
        Check::new(
            "hosts file",
            Status::Ok,
            format!("/etc/hosts maps `localhost` to {}", mapped.join(", ")),
        )
    }
}

fn hosts_file() -> Check {
    if cfg!(windows) {
        return Check::new("hosts file", Status::Info, "not checked on Windows");
    }
    match std::fs::read_to_string("/etc/hosts") {
        Ok(text) => hosts_verdict(&text),
        Err(err) => Check::new(
            "hosts file",
            Status::Info,
            format!("/etc/hosts is unreadable ({err})"),
        ),
    }
}

fn port_ranges() -> Check {
    match PortPolicy::current() {
        Ok(policy) => {
            let ephemeral = policy.ephemeral.map_or("unknown".into(), |r| r.to_string());
            let reserved = if policy.reserved.is_empty() {
                "none".to_owned()
            } else {
                policy
                    .reserved
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            };
            let message = format!(
                "ephemeral {ephemeral}; reserved {reserved}; loopcheck allocates from {} ({} ports), trying {} first and the rest in order once those are taken{}",
                join(&bridged(&policy.allocation, &policy.named)),
                policy.allocation_len(),
                join(&bridged(&policy.tried_first(), &policy.named)),
                left_out(policy)
            );
            if policy.allocation_len() < 1000 {
                Check {
                    fix: Some(
                        "widen `LOOPCHECK_PORT_RANGE`, or shrink the ephemeral range (`sysctl net.ipv4.ip_local_port_range`)"
                            .into(),
                    ),
                    ..Check::new("port ranges", Status::Warning, format!("{message}: few ports for parallel tests"))
                }
            } else {
                Check::new("port ranges", Status::Info, message)
            }
        }
        Err(err) => Check::new("port ranges", Status::Error, err.to_string()),
    }
}

fn join(ranges: &[loopcheck::policy::PortRange]) -> String {
    ranges
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// `ranges` with the gaps made only of `named` ports closed: the shape of the range, with the
/// named ports listed apart.
fn bridged(ranges: &[loopcheck::policy::PortRange], named: &[u16]) -> Vec<loopcheck::policy::PortRange> {
    use loopcheck::policy::{DEFAULT_LOWEST, PortRange};
    let only_named = |from: u32, to: u32| (from..to).all(|p| named.binary_search(&(p as u16)).is_ok());
    let mut out: Vec<PortRange> = Vec::new();
    for &range in ranges {
        match out.last_mut() {
            Some(last) if only_named(last.end as u32 + 1, range.start as u32) => last.end = range.end,
            None if range.start > DEFAULT_LOWEST && only_named(DEFAULT_LOWEST.into(), range.start.into()) => {
                out.push(PortRange::new(DEFAULT_LOWEST, range.end));
            }
            _ => out.push(range),
        }
    }
    out
}

/// What the default range leaves out, and how to get it.
fn left_out(policy: &PortPolicy) -> String {
    use loopcheck::policy::{DEFAULT_LOWEST, PORT_RANGE_VAR, RangeSource, SERVICES_FILE};
    if policy.source == RangeSource::Environment {
        return format!(" (`{PORT_RANGE_VAR}`)");
    }
    let mut ports: Vec<String> = policy.named.iter().take(8).map(u16::to_string).collect();
    if policy.named.len() > 8 {
        ports.push("...".into());
    }
    let named = match policy.named.len() {
        0 => String::new(),
        1 => format!(" and the port named in {SERVICES_FILE} ({})", ports.join(", ")),
        n => format!(" and {n} ports named in {SERVICES_FILE} ({})", ports.join(", ")),
    };
    format!("; ports below {DEFAULT_LOWEST}{named} are left out unless `{PORT_RANGE_VAR}` asks for them")
}

fn loopback_traffic() -> Check {
    let attempt = || -> std::io::Result<Duration> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let addr: SocketAddr = listener.local_addr()?;
        let started = Instant::now();
        TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
        Ok(started.elapsed())
    };
    match attempt() {
        Ok(took) => Check::new(
            "loopback traffic",
            Status::Ok,
            format!(
                "a connection over 127.0.0.1 completed in {:.1} ms",
                took.as_secs_f64() * 1e3
            ),
        ),
        Err(err) => Check::problem(
            "loopback traffic",
            Status::Error,
            Code::ConnectTimeout,
            format!(
                "a connection to a fresh listener on 127.0.0.1 failed within 1 s ({err}): loopback traffic is filtered"
            ),
            "allow traffic on lo: list the rules with `iptables -S`, `ip6tables -S` or `nft list ruleset`",
        ),
    }
}

fn registry() -> Check {
    match loopcheck::lease::checked_registry_dir() {
        Ok(dir) => {
            let leases = loopcheck::lease::leases().unwrap_or_default();
            let held = leases
                .iter()
                .filter(|l| l.status == loopcheck::lease::LeaseStatus::Held)
                .count();
            let stale = leases
                .iter()
                .filter(|l| l.status == loopcheck::lease::LeaseStatus::Stale)
                .count();
            Check::new(
                "lease registry",
                Status::Ok,
                format!(
                    "{} is private; {held} leases held, {stale} stale, {} files",
                    dir.display(),
                    leases.len()
                ),
            )
        }
        Err(err) => Check {
            fix: Some(
                "point `LOOPCHECK_DIR` at a private directory of your own (`mkdir -m 700 DIR`); change a directory's mode only if loopcheck created it"
                    .into(),
            ),
            ..Check::new("lease registry", Status::Error, err.to_string())
        },
    }
}

fn open_files() -> Check {
    match open_files_limit() {
        Some(limit) if limit < 1024 => Check {
            fix: Some("raise it: `ulimit -n 4096`".into()),
            ..Check::new(
                "open files",
                Status::Warning,
                format!("`ulimit -n` is {limit}: suites with many sockets fail with `Too many open files`"),
            )
        },
        Some(limit) => Check::new("open files", Status::Ok, format!("`ulimit -n` is {limit}")),
        None => Check::new(
            "open files",
            Status::Info,
            "the open-file limit is not known on this platform",
        ),
    }
}

#[cfg(unix)]
fn open_files_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is valid for writes.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    #[allow(
        clippy::unnecessary_cast,
        reason = "rlim_t is narrower than u64 on some platforms"
    )]
    (rc == 0).then_some(limit.rlim_cur as u64)
}

#[cfg(not(unix))]
fn open_files_limit() -> Option<u64> {
    None
}

fn nextest() -> Check {
    match which::which("cargo-nextest") {
        Ok(path) => Check::new(
            "cargo-nextest",
            Status::Ok,
            format!("installed at {}", path.display()),
        ),
        Err(_) => Check::new(
            "cargo-nextest",
            Status::Info,
            "not installed (optional: `cargo install cargo-nextest --locked`); loopcheck coordinates tests under both runners",
        ),
    }
}

/// Runs `doctor`. Exit code 1 when a check found an error.
pub fn run(common: &Common, term: &Term) -> Result<u8> {
    let format = common
        .format
        .expect_one_of("doctor", &[Format::Human, Format::Json])?;
    let checks = HostChecks { checks: checks() };
    report::emit(&checks, format, term)?;
    Ok(if checks.checks.iter().any(Check::is_error) {
        Exit::FOUND
    } else {
        Exit::OK
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_shown_without_their_named_holes() {
        use loopcheck::policy::PortRange;
        let ranges = [
            PortRange::new(10001, 11210),
            PortRange::new(11212, 32767),
            PortRange::new(61000, 65535),
        ];
        assert_eq!(
            join(&bridged(&ranges, &[10000, 11211])),
            "10000-32767,61000-65535"
        );
        assert_eq!(join(&bridged(&ranges, &[11211])), "10001-32767,61000-65535");
        assert_eq!(
            join(&bridged(&ranges, &[])),
            "10001-11210,11212-32767,61000-65535"
        );
    }

    #[test]
    fn localhost_resolving_to_ipv6_first_is_a_warning() {
        let v4: IpAddr = "127.0.0.1".parse().unwrap();
        let v6: IpAddr = "::1".parse().unwrap();
        assert_eq!(localhost_verdict(&[v4, v6]).status, Status::Ok);
        let check = localhost_verdict(&[v6, v4]);
        assert_eq!(
            (check.status, check.code),
            (Status::Warning, Some(Code::LocalhostResolution))
        );
        assert_eq!(localhost_verdict(&[]).status, Status::Error);
        assert_eq!(
            localhost_verdict(&["10.1.2.3".parse().unwrap()]).status,
            Status::Error
        );
    }

    #[test]
    fn the_hosts_file_must_map_localhost_to_loopback() {
        assert_eq!(
            hosts_verdict("127.0.0.1 localhost\n::1 localhost ip6-localhost\n").status,
            Status::Ok
        );
        assert_eq!(hosts_verdict("# 10.0.0.1 localhost\n").status, Status::Info);
        let check = hosts_verdict("127.0.0.1 localhost\n10.0.0.1 localhost # oops\n");
        assert_eq!(check.status, Status::Error);
        assert!(check.message.contains("10.0.0.1"), "{}", check.message);
    }
}
