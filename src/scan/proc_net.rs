//! The `/proc/net/{tcp,tcp6,udp,udp6}` tables: the Linux fallback when netlink is refused.
//!
//! The parser is plain text processing, compiled on every platform so it is tested everywhere.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::{Protocol, SocketEntry, SocketState};

/// Parses one `/proc/net/{tcp,udp}[6]` table, header included.
///
/// Lines that do not parse are skipped: the kernel's format is stable, so such a line is a
/// torn read, and losing it is better than failing the scan.
pub(crate) fn parse_table(text: &str, protocol: Protocol) -> impl Iterator<Item = SocketEntry> + '_ {
    text.lines().filter_map(move |line| parse_line(line, protocol))
}

/// Parses one row:
/// `sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode ...`.
pub(crate) fn parse_line(line: &str, protocol: Protocol) -> Option<SocketEntry> {
    let mut fields = line.split_ascii_whitespace();
    let slot = fields.next()?;
    if !slot.ends_with(':') {
        return None;
    }
    let local = parse_address(fields.next()?)?;
    let remote = parse_address(fields.next()?)?;
    if local.is_ipv4() != remote.is_ipv4() {
        return None;
    }
    let state = SocketState::from_kernel(u8::from_str_radix(fields.next()?, 16).ok()?);
    let (tx_queue, rx_queue) = fields.next()?.split_once(':')?;
    let send_queue = u32::from_str_radix(tx_queue, 16).ok()?;
    let recv_queue = u32::from_str_radix(rx_queue, 16).ok()?;
    let _timer = fields.next()?;
    let _retransmits = fields.next()?;
    let uid: u32 = fields.next()?.parse().ok()?;
    let _timeout = fields.next()?;
    let inode: u64 = fields.next()?.parse().ok()?;

    let remote = super::addr::peer(remote);
    // A TIME_WAIT socket has no owner any more: the kernel prints 0 for both.
    let time_wait = state == SocketState::TimeWait;
    Some(SocketEntry {
        protocol,
        local,
        remote,
        state,
        recv_queue,
        send_queue,
        uid: (!time_wait).then_some(uid),
        inode: (inode != 0).then_some(inode),
        pids: Vec::new(),
    })
}

/// Parses `HEXADDR:HEXPORT`. The address is printed as 32-bit words, each in host byte order
/// (`%08X` of the word as loaded from memory), so the bytes of each word come back with
/// `to_ne_bytes`; the port is printed as a plain number.
fn parse_address(field: &str) -> Option<SocketAddr> {
    let (addr, port) = field.split_once(':')?;
    if port.len() != 4 {
        return None;
    }
    let port = u16::from_str_radix(port, 16).ok()?;
    let ip = match addr.len() {
        8 => IpAddr::V4(Ipv4Addr::from(parse_word(addr)?)),
        32 => {
            let mut bytes = [0u8; 16];
            for (i, chunk) in bytes.chunks_exact_mut(4).enumerate() {
                chunk.copy_from_slice(&parse_word(addr.get(i * 8..i * 8 + 8)?)?);
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// One 8-hex-digit word, back to the bytes it was printed from.
fn parse_word(hex: &str) -> Option<[u8; 4]> {
    if hex.len() != 8 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some(u32::from_str_radix(hex, 16).ok()?.to_ne_bytes())
}

/// Reads the tables for the selected protocols into `out`. A missing table (no IPv6 on this
/// host) is skipped.
#[cfg(target_os = "linux")]
pub(crate) fn read(tcp: bool, udp: bool, out: &mut Vec<SocketEntry>) -> Result<(), super::ScanError> {
    let tables: [(&std::ffi::CStr, Protocol, bool); 4] = [
        (c"/proc/net/tcp", Protocol::Tcp, tcp),
        (c"/proc/net/tcp6", Protocol::Tcp, tcp),
        (c"/proc/net/udp", Protocol::Udp, udp),
        (c"/proc/net/udp6", Protocol::Udp, udp),
    ];
    let mut buf = Vec::with_capacity(64 * 1024);
    for (path, protocol, wanted) in tables {
        if !wanted {
            continue;
        }
        match super::procfs::read_at(libc::AT_FDCWD, path, &mut buf) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => {
                let path = std::path::PathBuf::from(path.to_string_lossy().into_owned());
                return Err(super::ScanError::Read { path, source });
            }
        }
        out.extend(parse_table(&String::from_utf8_lossy(&buf), protocol));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured on x86_64: the words are little-endian.
    #[cfg(target_endian = "little")]
    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:AE8B 00000000:0000 0A 00000000:00000003 00:00000000 00000000  1000        0 6200 1 00000000da0cbd2f 100 0 0 10 0
   1: 00000000:07E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1445 1 000000000fd1a026 100 0 0 10 0
   2: 0100007F:AE8B 0100007F:C47C 01 0000001A:00000002 00:00000000 00000000     0        0 6202 1 0000000001e123e3 20 0 0 10 -1
   3: 0100007F:AE8B 0100007F:C47E 06 00000000:00000000 03:00001770 00000000     0        0 0 3 0000000000000000
";

    #[cfg(target_endian = "little")]
    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 7001 1 0000000000000000 100 0 0 10 0
   1: 0000000000000000FFFF00000100007F:1F91 0000000000000000FFFF00000100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 7002 1 0000000000000000 20 4 30 10 -1
   2: 000080FE00000000FFFEFF02000001FE:0016 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 7003 1 0000000000000000 100 0 0 10 0
";

    #[cfg(target_endian = "little")]
    #[test]
    fn tcp_v4_rows() {
        let rows: Vec<_> = parse_table(TCP, Protocol::Tcp).collect();
        assert_eq!(rows.len(), 4);

        // loopcheck:allow(LC010): test data the code under test parses or prints, never bound
        assert_eq!(rows[0].local, "127.0.0.1:44683".parse().unwrap());
        assert_eq!(rows[0].remote, None);
        assert_eq!(rows[0].state, SocketState::Listen);
        assert_eq!((rows[0].recv_queue, rows[0].send_queue), (3, 0));
        assert_eq!(rows[0].uid, Some(1000));
        assert_eq!(rows[0].inode, Some(6200));

        // loopcheck:allow(LC010): test data the code under test parses or prints, never bound
        assert_eq!(rows[1].local, "0.0.0.0:2024".parse().unwrap());

        // loopcheck:allow(LC010): test data the code under test parses or prints, never bound
        assert_eq!(rows[2].remote, Some("127.0.0.1:50300".parse().unwrap()));
        assert_eq!(rows[2].state, SocketState::Established);
        assert_eq!((rows[2].recv_queue, rows[2].send_queue), (2, 26));

        assert_eq!(rows[3].state, SocketState::TimeWait);
        assert_eq!((rows[3].uid, rows[3].inode), (None, None));
        assert!(
            rows.iter()
                .all(|r| r.protocol == Protocol::Tcp && r.pids.is_empty())
        );
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn tcp_v6_rows() {
        let rows: Vec<_> = parse_table(TCP6, Protocol::Tcp).collect();
        assert_eq!(rows.len(), 3);
        // loopcheck:allow(LC010): test data the code under test parses or prints, never bound
        assert_eq!(rows[0].local, "[::1]:8080".parse().unwrap());
        assert_eq!(rows[0].remote, None);
        assert_eq!(rows[1].local, "[::ffff:127.0.0.1]:8081".parse().unwrap());
        assert_eq!(rows[1].remote, Some("[::ffff:127.0.0.1]:54321".parse().unwrap()));
        assert_eq!(rows[2].local, "[fe80::2ff:feff:fe01:0]:22".parse().unwrap());
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn udp_rows() {
        let udp = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
 1291: 0100007F:88D4 0100007F:0009 01 00000000:00000000 00:00000000 00000000     0        0 6204 2 0000000000000000 0
 3774: 00000000:14E9 00000000:0000 07 00000000:00000100 00:00000000 00000000   101        0 6203 2 0000000000000000 0
";
        let rows: Vec<_> = parse_table(udp, Protocol::Udp).collect();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].state, SocketState::Established);
        // loopcheck:allow(LC010): test data the code under test parses or prints, never bound
        assert_eq!(rows[0].remote, Some("127.0.0.1:9".parse().unwrap()));
        assert!(!rows[0].is_listener());
        // loopcheck:allow(LC010): test data the code under test parses or prints, never bound
        assert_eq!(rows[1].local, "0.0.0.0:5353".parse().unwrap());
        assert_eq!(rows[1].state, SocketState::Close);
        assert_eq!(rows[1].recv_queue, 256);
        assert!(rows[1].is_listener());
    }

    #[test]
    fn rejects_malformed_rows() {
        for line in [
            "",
            "  sl  local_address rem_address   st",
            "0: 0100007F:AE8B",
            "0: 0100007F:AE8B 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0",
            "0: 0100007F:AE8B 00000000:0000 0A 00000000 00:00000000 00000000 0 0 1",
            "0: 0100007G:AE8B 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 1",
            "0: 0100007F:AE8 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 1",
            "0: 0100007F:AE8B 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 1",
            "0: +100007F:AE8B 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 1",
            "0: 0100007F:AE8B 00000000:0000 0A 00000000:00000000 00:00000000 00000000 x 0 1",
        ] {
            assert_eq!(parse_line(line, Protocol::Tcp), None, "{line:?}");
        }
        let ok = "0: 0100007F:AE8B 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 1";
        assert!(parse_line(ok, Protocol::Tcp).is_some());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn reads_this_host() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut out = Vec::new();
        read(true, true, &mut out).expect("/proc/net is readable");
        let local = listener.local_addr().unwrap();
        assert!(
            out.iter()
                .any(|s| s.local == local && s.state == SocketState::Listen)
        );
    }

    mod fuzz {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn never_panics(text in "\\PC{0,300}") {
                let _ = parse_table(&text, Protocol::Tcp).count();
            }

            #[test]
            fn never_panics_on_near_valid_rows(
                local in "[0-9A-Fa-f]{0,33}", port in "[0-9A-F:]{0,5}", state in "[0-9A-Z]{0,3}",
                queues in "[0-9A-F:]{0,18}", rest in "[0-9 x:-]{0,30}",
            ) {
                let line = format!("0: {local}:{port} 00000000:0000 {state} {queues} {rest}");
                let _ = parse_line(&line, Protocol::Udp);
            }

            #[test]
            fn round_trips_addresses(ip in any::<[u8; 16]>(), port in any::<u16>(), inode in 1u64..u64::from(u32::MAX)) {
                let words: String = ip.chunks_exact(4)
                    .map(|w| format!("{:08X}", u32::from_ne_bytes([w[0], w[1], w[2], w[3]])))
                    .collect();
                let line = format!(
                    "0: {words}:{port:04X} {words}:{port:04X} 01 00000000:00000000 00:00000000 00000000 0 0 {inode}"
                );
                let entry = parse_line(&line, Protocol::Tcp).expect("valid row");
                let expected = SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port);
                prop_assert_eq!(entry.local, expected);
                prop_assert_eq!(entry.inode, Some(inode));
            }
        }
    }
}
