//! The host's port policy: which ports the kernel hands out by itself, which are reserved, and
//! which are left for loopcheck to allocate.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::OnceLock;

use crate::error::{Error, Result};

mod services;

/// The environment variable that overrides the allocation range.
pub const PORT_RANGE_VAR: &str = "LOOPCHECK_PORT_RANGE";

/// The lowest port loopcheck ever allocates: below it binding needs privileges on most hosts.
pub const MIN_PORT: u16 = 1024;

/// The lowest port of the default allocation range: below it live the ports that databases and
/// development servers use by default (3000, 5432, 6379, 8080, ...), which a lease must not
/// take from them. `LOOPCHECK_PORT_RANGE` can ask for lower ports.
pub const DEFAULT_LOWEST: u16 = 10000;

/// The services file whose named ports the default range leaves out, where it exists.
pub const SERVICES_FILE: &str = "/etc/services";

/// Ports are tried in a window of this many allocatable ports first, so that the registry
/// stays small and its files are reused instead of created.
pub(crate) const WINDOW: usize = 4096;

/// The window starts at the first allocatable port at or above this one.
pub(crate) const WINDOW_START: u16 = 20000;

/// An inclusive range of ports, written `LO-HI`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct PortRange {
    /// The first port of the range.
    pub start: u16,
    /// The last port of the range (inclusive).
    pub end: u16,
}

impl PortRange {
    /// A range from `start` to `end`, both included.
    ///
    /// ```
    /// let range = loopcheck::policy::PortRange::new(20000, 20009);
    /// assert_eq!(range.len(), 10);
    /// assert!(range.contains(20009));
    /// ```
    pub const fn new(start: u16, end: u16) -> Self {
        PortRange { start, end }
    }

    /// How many ports the range holds.
    pub const fn len(&self) -> usize {
        self.end as usize + 1 - self.start as usize
    }

    /// Whether the range holds no port (never true for a range built with `start <= end`).
    pub const fn is_empty(&self) -> bool {
        self.end < self.start
    }

    /// Whether `port` lies in the range.
    pub const fn contains(&self, port: u16) -> bool {
        self.start <= port && port <= self.end
    }

    fn overlaps(&self, other: &PortRange) -> bool {
        self.start <= other.end && other.start <= self.end
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.start == self.end {
            write!(f, "{}", self.start)
        } else {
            write!(f, "{}-{}", self.start, self.end)
        }
    }
}

/// Where the allocation range came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RangeSource {
    /// Everything from 10000 up that the kernel does not use by itself and that
    /// `/etc/services` does not name.
    Default,
    /// `LOOPCHECK_PORT_RANGE`, less the kernel's own ports.
    Environment,
}

/// The port policy of this host, as loopcheck uses it.
///
/// Ports that the kernel hands out as source ports of outgoing connections (the ephemeral
/// range) can be taken at any moment by an unrelated `connect`, so loopcheck never allocates
/// them; nor ports the administrator reserved, nor privileged ports.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PortPolicy {
    /// The kernel's ephemeral (dynamic) range, when it could be read.
    pub ephemeral: Option<PortRange>,
    /// Ports reserved by the administrator (Linux `ip_local_reserved_ports`) or excluded from
    /// use (Windows excluded port ranges).
    pub reserved: Vec<PortRange>,
    /// The ranges loopcheck allocates from: sorted, disjoint, outside all of the above.
    pub allocation: Vec<PortRange>,
    /// Where the allocation range came from.
    pub source: RangeSource,
    /// Ports of the default range left out because `/etc/services` names them (empty with
    /// `LOOPCHECK_PORT_RANGE`, which is taken as asked).
    pub named: Vec<u16>,
    /// What could not be read, in plain words; empty when the policy is complete.
    pub notes: Vec<String>,
}

impl PortPolicy {
    /// The policy of this host, read once per process and cached.
    ///
    /// ```
    /// let policy = loopcheck::policy::PortPolicy::current()?;
    /// let ephemeral = policy.ephemeral;
    /// assert!(policy.allocation.iter().all(|r| r.start >= 1024));
    /// assert!(!policy.is_allocatable(ephemeral.map_or(49152, |e| e.start)));
    /// # Ok::<(), loopcheck::Error>(())
    /// ```
    pub fn current() -> Result<&'static PortPolicy> {
        static POLICY: OnceLock<PortPolicy> = OnceLock::new();
        if let Some(policy) = POLICY.get() {
            return Ok(policy);
        }
        let policy = PortPolicy::read()?;
        Ok(POLICY.get_or_init(|| policy))
    }

    /// Reads the policy of this host now, honouring `LOOPCHECK_PORT_RANGE`.
    pub fn read() -> Result<PortPolicy> {
        let kernel = sys::kernel_ports();
        let requested = std::env::var(PORT_RANGE_VAR).ok();
        let services = match requested {
            Some(_) => Vec::new(),
            None => services::named_ports(),
        };
        PortPolicy::build(kernel, requested.as_deref(), &services)
    }

    /// The policy from the kernel's ports, `LOOPCHECK_PORT_RANGE` and the ports the services
    /// file names.
    fn build(kernel: KernelPorts, requested: Option<&str>, services: &[u16]) -> Result<PortPolicy> {
        let (wanted, source) = match requested {
            Some(value) => (parse_range(PORT_RANGE_VAR, value)?, RangeSource::Environment),
            None => (PortRange::new(DEFAULT_LOWEST, u16::MAX), RangeSource::Default),
        };
        let mut excluded: Vec<PortRange> = kernel.reserved.clone();
        excluded.extend(kernel.ephemeral);
        let outside_kernel = subtract(wanted, &excluded);
        let (allocation, named) = match source {
            RangeSource::Default if is_sorted(services) => without_ports(&outside_kernel, services),
            RangeSource::Default => {
                let mut sorted = services.to_vec();
                sorted.sort_unstable();
                without_ports(&outside_kernel, &sorted)
            }
            RangeSource::Environment => (outside_kernel, Vec::new()),
        };
        if allocation.is_empty() {
            let mut taken: Vec<String> = kernel
                .ephemeral
                .iter()
                .map(|r| format!("ephemeral {r}"))
                .collect();
            taken.extend(kernel.reserved.iter().map(|r| format!("reserved {r}")));
            return Err(Error::EmptyRange {
                range: wanted.to_string(),
                ephemeral: taken.join(", "),
            });
        }
        Ok(PortPolicy {
            ephemeral: kernel.ephemeral,
            reserved: kernel.reserved,
            allocation,
            source,
            named,
            notes: kernel.notes,
        })
    }

    /// The ports each process tries first, in order from a point of its own: a window of up to
    /// 4096 allocatable ports from 20000 (or the first allocatable port above it). Only when
    /// the window is exhausted are the other ports of the allocation range tried, in order.
    ///
    /// ```
    /// let policy = loopcheck::policy::PortPolicy::current()?;
    /// let first = policy.tried_first();
    /// assert!(first.iter().all(|r| policy.is_allocatable(r.start) && policy.is_allocatable(r.end)));
    /// # Ok::<(), loopcheck::Error>(())
    /// ```
    pub fn tried_first(&self) -> Vec<PortRange> {
        let len = self.allocation_len();
        let (base, window) = self.allocation_window();
        let mut ranges: Vec<PortRange> = Vec::new();
        for index in (base..base + window).map(|i| i % len) {
            let port = self.nth_port(index);
            match ranges.last_mut() {
                Some(last) if last.end.checked_add(1) == Some(port) => last.end = port,
                _ => ranges.push(PortRange::new(port, port)),
            }
        }
        ranges.sort();
        ranges
    }

    /// The window allocations try first, as (index of its first port in the allocation
    /// range, number of ports): [`WINDOW`] ports from the first allocatable port at or above
    /// [`WINDOW_START`], wrapping around the end of the range.
    pub(crate) fn allocation_window(&self) -> (usize, usize) {
        let base = self.index_of_first_at_or_above(WINDOW_START).unwrap_or(0);
        (base, WINDOW.min(self.allocation_len()))
    }

    /// Whether loopcheck may hand out `port`.
    pub fn is_allocatable(&self, port: u16) -> bool {
        self.allocation.iter().any(|r| r.contains(port))
    }

    /// Whether `port` is one the kernel may pick as a source port by itself.
    pub fn is_ephemeral(&self, port: u16) -> bool {
        self.ephemeral.is_some_and(|r| r.contains(port))
    }

    /// How many ports the allocation range holds.
    pub fn allocation_len(&self) -> usize {
        self.allocation.iter().map(PortRange::len).sum()
    }

    /// The `index`-th allocatable port, counting across the allocation ranges in order.
    pub(crate) fn nth_port(&self, mut index: usize) -> u16 {
        for range in &self.allocation {
            if index < range.len() {
                return range.start + index as u16;
            }
            index -= range.len();
        }
        unreachable!("nth_port is only called with an index below allocation_len")
    }

    /// The index of the first allocatable port at or above `port`.
    pub(crate) fn index_of_first_at_or_above(&self, port: u16) -> Option<usize> {
        let mut before = 0;
        for range in &self.allocation {
            if range.end >= port {
                return Some(before + port.saturating_sub(range.start) as usize);
            }
            before += range.len();
        }
        None
    }

    /// The allocation range as `LO-HI[,LO-HI..]`.
    pub fn allocation_display(&self) -> String {
        join_ranges(&self.allocation)
    }
}

pub(crate) fn join_ranges(ranges: &[PortRange]) -> String {
    let parts: Vec<String> = ranges.iter().map(ToString::to_string).collect();
    parts.join(",")
}

/// Parses `LO-HI` as given in `variable`.
fn parse_range(variable: &'static str, value: &str) -> Result<PortRange> {
    let invalid = |reason: &str| Error::InvalidRange {
        variable,
        value: value.to_owned(),
        reason: reason.to_owned(),
    };
    let (lo, hi) = value
        .trim()
        .split_once('-')
        .ok_or_else(|| invalid("no `-` between the bounds"))?;
    let parse = |bound: &str| {
        bound
            .trim()
            .parse::<u16>()
            .map_err(|_| invalid(&format!("`{}` is not a port number", bound.trim())))
    };
    let (lo, hi) = (parse(lo)?, parse(hi)?);
    if lo > hi {
        return Err(invalid("the range is reversed"));
    }
    if lo < MIN_PORT {
        return Err(invalid("ports below 1024 need privileges"));
    }
    Ok(PortRange::new(lo, hi))
}

/// `wanted` minus every range of `excluded`, as sorted disjoint ranges.
fn subtract(wanted: PortRange, excluded: &[PortRange]) -> Vec<PortRange> {
    let mut excluded: Vec<PortRange> = excluded.iter().copied().filter(|r| r.overlaps(&wanted)).collect();
    excluded.sort();
    let mut left = Vec::new();
    let mut next = wanted.start as u32;
    for cut in excluded {
        if (cut.start as u32) > next {
            left.push(PortRange::new(next as u16, cut.start - 1));
        }
        next = next.max(cut.end as u32 + 1);
    }
    if next <= wanted.end as u32 {
        left.push(PortRange::new(next as u16, wanted.end));
    }
    left
}

/// Whether `ports` are in order: `<[u16]>::is_sorted`, as an index loop. It runs in every test
/// process, unoptimised, where the slice method's iterator costs several calls a port.
fn is_sorted(ports: &[u16]) -> bool {
    let mut at = 1;
    while at < ports.len() {
        if ports[at - 1] > ports[at] {
            return false;
        }
        at += 1;
    }
    true
}

/// `ranges` (sorted, disjoint) without the sorted `ports`, and those of `ports` that were in
/// them, once each. One pass over both: it runs in every test process, unoptimised, on a
/// services list of hundreds of ports.
fn without_ports(ranges: &[PortRange], ports: &[u16]) -> (Vec<PortRange>, Vec<u16>) {
    let mut left = Vec::with_capacity(ranges.len() + ports.len());
    let mut removed: Vec<u16> = Vec::new();
    let mut at = 0;
    for range in ranges {
        while at < ports.len() && ports[at] < range.start {
            at += 1;
        }
        let mut next = u32::from(range.start);
        while at < ports.len() && ports[at] <= range.end {
            let port = ports[at];
            if u32::from(port) > next {
                left.push(PortRange::new(next as u16, port - 1));
            }
            if removed.last() != Some(&port) {
                removed.push(port);
            }
            next = u32::from(port) + 1;
            at += 1;
        }
        if next <= u32::from(range.end) {
            left.push(PortRange::new(next as u16, range.end));
        }
    }
    (left, removed)
}

/// Ports the kernel uses by itself, as read from the host.
#[derive(Debug, Clone, Default)]
pub(crate) struct KernelPorts {
    pub(crate) ephemeral: Option<PortRange>,
    pub(crate) reserved: Vec<PortRange>,
    pub(crate) notes: Vec<String>,
}

/// Parses Linux's `ip_local_port_range` (`32768\t60999`).
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub(crate) fn parse_linux_ephemeral(text: &str) -> Option<PortRange> {
    let mut bounds = text.split_whitespace().map(str::parse::<u16>);
    match (bounds.next(), bounds.next()) {
        (Some(Ok(lo)), Some(Ok(hi))) if lo <= hi => Some(PortRange::new(lo, hi)),
        _ => None,
    }
}

/// Parses Linux's `ip_local_reserved_ports` (`8080,10000-10005`); unreadable items are skipped.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub(crate) fn parse_linux_reserved(text: &str) -> Vec<PortRange> {
    text.trim()
        .split(',')
        .filter_map(|item| {
            let item = item.trim();
            let (lo, hi) = item.split_once('-').unwrap_or((item, item));
            let (lo, hi) = (lo.trim().parse::<u16>().ok()?, hi.trim().parse::<u16>().ok()?);
            (lo <= hi).then(|| PortRange::new(lo, hi))
        })
        .collect()
}

/// Parses `netsh int ipv4 show dynamicport tcp`: a start port and a number of ports.
#[cfg_attr(not(windows), allow(dead_code))]
pub(crate) fn parse_netsh_dynamic(text: &str) -> Option<PortRange> {
    let mut numbers = text
        .lines()
        .filter_map(|line| line.split_once(':'))
        .filter_map(|(_, v)| v.trim().parse::<u32>().ok());
    let (start, count) = (numbers.next()?, numbers.next()?);
    let end = start.checked_add(count)?.checked_sub(1)?;
    (count > 0 && end <= u16::MAX as u32).then(|| PortRange::new(start as u16, end as u16))
}

/// Parses `netsh int ipv4 show excludedportrange protocol=tcp`: lines of two port numbers.
#[cfg_attr(not(windows), allow(dead_code))]
pub(crate) fn parse_netsh_excluded(text: &str) -> Vec<PortRange> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let lo = fields.next()?.parse::<u16>().ok()?;
            let hi = fields.next()?.parse::<u16>().ok()?;
            (lo <= hi).then(|| PortRange::new(lo, hi))
        })
        .collect()
}

/// Whether this host can bind an address on `ip` right now.
pub(crate) fn can_bind(ip: IpAddr) -> bool {
    // A datagram socket bound to port 0 is the cheapest proof: no listen queue, no handshake.
    let addr = SocketAddr::new(ip, 0);
    socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::DGRAM, None)
        .and_then(|socket| socket.bind(&addr.into()))
        .is_ok()
}

/// Whether IPv6 loopback (`[::1]`) exists on this host; checked once per process.
pub fn ipv6_available() -> bool {
    static IPV6: OnceLock<bool> = OnceLock::new();
    *IPV6.get_or_init(|| can_bind(IpAddr::V6(Ipv6Addr::LOCALHOST)))
}

/// Whether addresses of `127.0.0.0/8` other than `127.0.0.1` can be bound without
/// configuration (Linux: yes; macOS: only after `ifconfig lo0 alias`). Probes now.
pub fn per_test_addresses_available() -> bool {
    can_bind(IpAddr::V4(Ipv4Addr::new(127, 1, 0, 1)))
}

#[cfg(target_os = "linux")]
mod sys {
    use super::{KernelPorts, parse_linux_ephemeral, parse_linux_reserved};

    const EPHEMERAL: &str = "/proc/sys/net/ipv4/ip_local_port_range";
    const RESERVED: &str = "/proc/sys/net/ipv4/ip_local_reserved_ports";

    pub(super) fn kernel_ports() -> KernelPorts {
        let mut ports = KernelPorts::default();
        match crate::sys::read_small(EPHEMERAL)
            .as_deref()
            .and_then(parse_linux_ephemeral)
        {
            Some(range) => ports.ephemeral = Some(range),
            None => {
                // The kernel's default since 2.6.x; assuming it is safer than assuming none.
                ports.ephemeral = Some(super::PortRange::new(32768, 60999));
                ports
                    .notes
                    .push(format!("`{EPHEMERAL}` is unreadable: assumed 32768-60999"));
            }
        }
        match crate::sys::read_small(RESERVED) {
            Some(text) => ports.reserved = parse_linux_reserved(&text),
            None => ports
                .notes
                .push(format!("`{RESERVED}` is unreadable: assumed no reserved ports")),
        }
        ports
    }
}

#[cfg(any(
    target_os = "macos",
    target_os = "ios",
    target_os = "freebsd",
    target_os = "dragonfly"
))]
mod sys {
    use super::{KernelPorts, PortRange};

    fn sysctl_int(name: &std::ffi::CStr) -> Option<i32> {
        let mut value: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>();
        // SAFETY: `value` and `len` are valid for writes and `len` holds the size of `value`.
        let rc = unsafe {
            libc::sysctlbyname(
                name.as_ptr(),
                (&raw mut value).cast(),
                &mut len,
                std::ptr::null_mut(),
                0,
            )
        };
        (rc == 0).then_some(value)
    }

    pub(super) fn kernel_ports() -> KernelPorts {
        let mut ports = KernelPorts::default();
        let first = sysctl_int(c"net.inet.ip.portrange.first");
        let last = sysctl_int(c"net.inet.ip.portrange.last");
        match (
            first.and_then(|v| u16::try_from(v).ok()),
            last.and_then(|v| u16::try_from(v).ok()),
        ) {
            (Some(lo), Some(hi)) if lo <= hi => ports.ephemeral = Some(PortRange::new(lo, hi)),
            _ => {
                ports.ephemeral = Some(PortRange::new(49152, 65535));
                ports.notes.push(
                    "sysctl `net.inet.ip.portrange.first/last` is unreadable: assumed 49152-65535".into(),
                );
            }
        }
        ports
    }
}

#[cfg(windows)]
mod sys {
    use super::{KernelPorts, PortRange, parse_netsh_dynamic, parse_netsh_excluded};
    use std::process::Command;

    fn netsh(args: &[&str]) -> Option<String> {
        let output = Command::new("netsh").args(args).output().ok()?;
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
    }

    pub(super) fn kernel_ports() -> KernelPorts {
        let mut ports = KernelPorts::default();
        match netsh(&["int", "ipv4", "show", "dynamicport", "tcp"]).and_then(|t| parse_netsh_dynamic(&t)) {
            Some(range) => ports.ephemeral = Some(range),
            None => {
                ports.ephemeral = Some(PortRange::new(49152, 65535));
                ports
                    .notes
                    .push("`netsh int ipv4 show dynamicport tcp` failed: assumed 49152-65535".into());
            }
        }
        for protocol in ["protocol=tcp", "protocol=udp"] {
            match netsh(&["int", "ipv4", "show", "excludedportrange", protocol]) {
                Some(text) => ports.reserved.extend(parse_netsh_excluded(&text)),
                None => ports
                    .notes
                    .push(format!("excluded port ranges ({protocol}) are unreadable")),
            }
        }
        ports
    }
}

#[cfg(not(any(
    target_os = "linux",
    target_os = "macos",
    target_os = "ios",
    target_os = "freebsd",
    target_os = "dragonfly",
    windows
)))]
mod sys {
    use super::{KernelPorts, PortRange};

    pub(super) fn kernel_ports() -> KernelPorts {
        KernelPorts {
            ephemeral: Some(PortRange::new(49152, 65535)),
            reserved: Vec::new(),
            notes: vec![
                "this platform's ephemeral range is not known to loopcheck: assumed 49152-65535 (IANA)"
                    .into(),
            ],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kernel(ephemeral: (u16, u16), reserved: &[(u16, u16)]) -> KernelPorts {
        KernelPorts {
            ephemeral: Some(PortRange::new(ephemeral.0, ephemeral.1)),
            reserved: reserved.iter().map(|&(a, b)| PortRange::new(a, b)).collect(),
            notes: Vec::new(),
        }
    }

    #[test]
    fn default_range_avoids_ephemeral_and_reserved_ports() {
        let policy =
            PortPolicy::build(kernel((32768, 60999), &[(8080, 8080), (20000, 20010)]), None, &[]).unwrap();
        assert_eq!(policy.allocation_display(), "10000-19999,20011-32767,61000-65535");
        assert_eq!(policy.source, RangeSource::Default);
        assert!(
            !policy.is_allocatable(32768) && !policy.is_allocatable(8080) && !policy.is_allocatable(9999)
        );
        assert!(policy.is_allocatable(61000) && policy.is_allocatable(65535));
        let all: Vec<u16> = (0..policy.allocation_len()).map(|i| policy.nth_port(i)).collect();
        assert_eq!(all.len(), policy.allocation_len());
        assert!(all.iter().all(|&p| policy.is_allocatable(p)));
        assert_eq!(all.last(), Some(&65535));
        for port in [0, 1024, 8080, 10000, 19999, 20000, 20005, 40000, 65535] {
            let expected = all.iter().position(|&p| p >= port);
            assert_eq!(policy.index_of_first_at_or_above(port), expected, "{port}");
        }
    }

    #[test]
    fn environment_range_is_clipped_to_the_kernels_free_ports() {
        let policy = PortPolicy::build(kernel((32768, 60999), &[]), Some("30000-40000"), &[]).unwrap();
        assert_eq!(policy.allocation_display(), "30000-32767");
        assert_eq!(policy.source, RangeSource::Environment);
    }

    #[test]
    fn environment_range_inside_the_ephemeral_range_is_an_error() {
        let err = PortPolicy::build(kernel((32768, 60999), &[]), Some("40000-40010"), &[]).unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("40000-40010") && message.contains("ephemeral 32768-60999"),
            "{message}"
        );
        assert!(message.contains("LOOPCHECK_PORT_RANGE"), "{message}");
    }

    #[test]
    fn bad_environment_values_name_the_variable_and_the_form() {
        for (value, reason) in [
            ("", "no `-`"),
            ("abc", "no `-`"),
            ("2000-x", "`x` is not a port number"),
            ("2000-70000", "`70000` is not a port number"),
            ("3000-2000", "reversed"),
            ("80-2000", "below 1024"),
            ("-5", "`` is not a port number"),
        ] {
            let err = PortPolicy::build(kernel((32768, 60999), &[]), Some(value), &[]).unwrap_err();
            let message = err.to_string();
            assert!(
                message.contains("LOOPCHECK_PORT_RANGE") && message.contains("LO-HI"),
                "{value}: {message}"
            );
            assert!(message.contains(reason), "{value}: {message}");
        }
    }

    #[test]
    fn the_default_range_leaves_out_low_ports_and_named_services() {
        let named = services::parse(services::SERVICES);
        let policy = PortPolicy::build(kernel((32768, 60999), &[]), None, &named).unwrap();
        assert_eq!(policy.allocation_display(), "10000-11210,11212-32767,61000-65535");
        assert_eq!(
            policy.named,
            [11211],
            "only named ports that would otherwise be allocated"
        );
        // A range that asks for low and named ports gets them.
        let asked = PortPolicy::build(kernel((32768, 60999), &[]), Some("3000-12000"), &named).unwrap();
        assert_eq!(asked.allocation_display(), "3000-12000");
        assert!(asked.named.is_empty());
    }

    #[test]
    fn the_order_check_agrees_with_the_slice_method() {
        let cases: [&[u16]; 7] = [
            &[],
            &[7],
            &[1, 1],
            &[1, 2, 3],
            &[2, 1],
            &[1, 3, 2],
            &[0, 65535, 65535],
        ];
        for ports in cases {
            assert_eq!(is_sorted(ports), ports.is_sorted(), "{ports:?}");
        }
    }

    #[test]
    fn named_ports_are_cut_out_in_one_pass_as_subtract_would() {
        let ranges = [PortRange::new(10000, 10009), PortRange::new(10020, 10029)];
        let cases: [&[u16]; 6] = [
            &[],
            &[10000, 10009, 10020, 10029],
            &[10001, 10002, 10003],
            &[10005, 10005, 10006],
            &[80, 10015, 10025, 65535],
            &[
                10000, 10001, 10002, 10003, 10004, 10005, 10006, 10007, 10008, 10009,
            ],
        ];
        for ports in cases {
            let (left, removed) = without_ports(&ranges, ports);
            let mut excluded = vec![PortRange::new(10010, 10019)];
            excluded.extend(ports.iter().map(|&p| PortRange::new(p, p)));
            assert_eq!(
                left,
                subtract(PortRange::new(10000, 10029), &excluded),
                "{ports:?}"
            );
            let mut inside: Vec<u16> = ports
                .iter()
                .copied()
                .filter(|&p| ranges.iter().any(|r| r.contains(p)))
                .collect();
            inside.dedup();
            assert_eq!(removed, inside, "{ports:?}");
        }
        // A list out of order (a services cache written by another version) is sorted first.
        let policy = PortPolicy::build(kernel((32768, 60999), &[]), None, &[40000, 11211, 80]).unwrap();
        assert_eq!(policy.allocation_display(), "10000-11210,11212-32767,61000-65535");
        assert_eq!(policy.named, [11211]);
    }

    #[test]
    fn the_window_is_what_is_tried_first() {
        let policy = PortPolicy::build(kernel((32768, 60999), &[(21000, 21999)]), None, &[]).unwrap();
        assert_eq!(
            join_ranges(&policy.tried_first()),
            "20000-20999,22000-25095",
            "4096 allocatable ports from 20000"
        );
        let small = PortPolicy::build(kernel((32768, 60999), &[]), Some("30000-30009"), &[]).unwrap();
        assert_eq!(join_ranges(&small.tried_first()), "30000-30009");
        let wrapping = PortPolicy::build(kernel((32768, 60999), &[]), Some("10000-21000"), &[]).unwrap();
        assert_eq!(join_ranges(&wrapping.tried_first()), "10000-13094,20000-21000");
    }

    #[test]
    fn linux_files_parse() {
        assert_eq!(
            parse_linux_ephemeral("32768\t60999\n"),
            Some(PortRange::new(32768, 60999))
        );
        assert_eq!(parse_linux_ephemeral("garbage"), None);
        assert_eq!(parse_linux_ephemeral("9 3"), None);
        assert_eq!(parse_linux_reserved("\n"), vec![]);
        assert_eq!(
            parse_linux_reserved("8080,10000-10005,bad,9-1\n"),
            vec![PortRange::new(8080, 8080), PortRange::new(10000, 10005)]
        );
    }

    #[test]
    fn netsh_output_parses() {
        let dynamic = "\nProtocol tcp Dynamic Port Range\n---------------------------------\nStart Port      : 49152\nNumber of Ports : 16384\n";
        assert_eq!(parse_netsh_dynamic(dynamic), Some(PortRange::new(49152, 65535)));
        assert_eq!(
            parse_netsh_dynamic("Start Port : 60000\nNumber of Ports : 9000\n"),
            None
        );
        let excluded = "\nProtocol tcp Port Exclusion Ranges\n\nStart Port    End Port\n----------    --------\n      5357        5357\n     50000       50059     *\n\n* - Administered port exclusions.\n";
        assert_eq!(
            parse_netsh_excluded(excluded),
            vec![PortRange::new(5357, 5357), PortRange::new(50000, 50059)]
        );
    }
}
