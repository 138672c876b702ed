//! The Windows backend: `netstat -ano` for sockets and owning pids, `tasklist /FO CSV /NH`
//! for process names. The parsers are compiled everywhere so they are tested on every host.

use std::collections::{BTreeMap, HashMap};

use super::addr::{parse_endpoint, peer};
use super::{ProcessInfo, Protocol, SocketEntry, SocketState};

/// What `netstat -ano` output holds.
#[derive(Debug, Default)]
pub(crate) struct Parsed {
    pub(crate) sockets: Vec<SocketEntry>,
    /// TCP rows whose state name is not known (Windows translates them in some languages).
    pub(crate) unknown_states: usize,
}

/// Parses `netstat -ano` output. Rows look like
/// `TCP    127.0.0.1:5000    127.0.0.1:50123    ESTABLISHED    4321` and
/// `UDP    [::]:5353    *:*    2345` (UDP has no state column); headers, which Windows
/// translates, and other lines are skipped. PID 0 (the idle process, which holds TIME_WAIT
/// connections) means no owner.
pub(crate) fn parse(text: &str) -> Parsed {
    let mut out = Parsed::default();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (protocol, local, foreign, state, pid) = match fields.as_slice() {
            [proto, local, foreign, state, pid] if proto.eq_ignore_ascii_case("tcp") => {
                (Protocol::Tcp, *local, *foreign, Some(*state), *pid)
            }
            [proto, local, foreign, pid] if proto.eq_ignore_ascii_case("udp") => {
                (Protocol::Udp, *local, *foreign, None, *pid)
            }
            _ => continue,
        };
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        let ipv6 = local.starts_with('[');
        let Some(local) = parse_endpoint(local, ipv6) else {
            continue;
        };
        let Some(remote) = parse_endpoint(foreign, ipv6) else {
            continue;
        };
        let remote = peer(remote);
        let state = match state {
            Some(name) => {
                let state = SocketState::from_name(name);
                if state == SocketState::Unknown {
                    out.unknown_states += 1;
                }
                state
            }
            None if remote.is_some() => SocketState::Established,
            None => SocketState::Close,
        };
        out.sockets.push(SocketEntry {
            protocol,
            local,
            remote,
            state,
            recv_queue: 0,
            send_queue: 0,
            uid: None,
            inode: None,
            pids: if pid == 0 { Vec::new() } else { vec![pid] },
        });
    }
    out
}

/// Parses `tasklist /FO CSV /NH` output (`"image","pid","session","#","memory"`) into image
/// names by pid.
pub(crate) fn parse_tasklist(text: &str) -> HashMap<u32, String> {
    let mut names = HashMap::new();
    for line in text.lines() {
        let mut fields = csv_fields(line);
        let (Some(image), Some(pid)) = (fields.next(), fields.next()) else {
            continue;
        };
        if let Ok(pid) = pid.parse::<u32>() {
            names.insert(pid, image);
        }
    }
    names
}

/// The fields of one CSV line with double-quoted fields (`""` is a quote inside one).
fn csv_fields(line: &str) -> impl Iterator<Item = String> + '_ {
    let mut rest = line.trim_end_matches('\r');
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut field = String::new();
        if let Some(quoted) = rest.strip_prefix('"') {
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((i, c)) = chars.next() {
                if c == '"' {
                    if quoted[i + 1..].starts_with('"') {
                        field.push('"');
                        chars.next();
                    } else {
                        end = i + 1;
                        break;
                    }
                } else {
                    field.push(c);
                }
            }
            // Anything between the closing quote and the next comma is dropped.
            let tail = &quoted[end..];
            rest = tail.find(',').map_or("", |comma| &tail[comma + 1..]);
        } else {
            let (value, tail) = rest.split_once(',').unwrap_or((rest, ""));
            field.push_str(value);
            rest = tail;
        }
        Some(field)
    })
}

/// Processes for the pids in `sockets`, named from `tasklist` where it knew them.
pub(crate) fn processes(sockets: &[SocketEntry], names: &HashMap<u32, String>) -> BTreeMap<u32, ProcessInfo> {
    sockets
        .iter()
        .flat_map(|s| s.pids.iter().copied())
        .map(|pid| {
            let info = ProcessInfo {
                pid,
                ppid: None,
                pgid: None,
                name: names.get(&pid).cloned().unwrap_or_default(),
                cmdline: Vec::new(),
                exe: None,
                uid: None,
                user: None,
                start_time: None,
                state: None,
                loopcheck_test: None,
            };
            (pid, info)
        })
        .collect()
}

/// The sentences for [`SocketTable::limitations`](super::SocketTable::limitations).
pub(crate) fn limitations(parsed: &Parsed, named: bool) -> Vec<String> {
    let mut limitations = vec![
        "netstat reports no socket user, inode or queue sizes, and no state for UDP sockets \
         (shown as unconnected unless they have a peer)"
            .to_owned(),
    ];
    limitations.push(if named {
        "processes are named by image name only (tasklist): no command line, executable, user or start time"
            .to_owned()
    } else {
        "process names are unknown: `tasklist` failed".to_owned()
    });
    if parsed.unknown_states > 0 {
        limitations.push(format!(
            "{} TCP state {} not recognized (translated netstat output?) and {} `unknown`",
            parsed.unknown_states,
            if parsed.unknown_states == 1 {
                "name was"
            } else {
                "names were"
            },
            if parsed.unknown_states == 1 { "is" } else { "are" },
        ));
    }
    limitations
}

/// Runs `netstat -ano` and, for owners, `tasklist`, and fills `table`.
#[cfg(windows)]
pub(crate) fn scan(table: &mut super::SocketTable, owners: bool) -> Result<(), super::ScanError> {
    use super::command;

    let system = std::env::var_os("SystemRoot").map(|root| std::path::PathBuf::from(root).join("System32"));
    let fallbacks: Vec<&str> = system.as_deref().and_then(|p| p.to_str()).into_iter().collect();
    let netstat = command::find_program("netstat", &fallbacks)
        .ok_or(super::ScanError::ProgramNotFound { program: "netstat" })?;
    let output = command::run(&netstat, &["-ano"], command::TIMEOUT)?;
    if !output.status.success() {
        return Err(command::failed(&netstat, &output));
    }
    let parsed = parse(&String::from_utf8_lossy(&output.stdout));
    let names = if owners {
        command::find_program("tasklist", &fallbacks)
            .and_then(|tasklist| command::run(&tasklist, &["/FO", "CSV", "/NH"], command::TIMEOUT).ok())
            .filter(|output| output.status.success())
            .map(|output| parse_tasklist(&String::from_utf8_lossy(&output.stdout)))
    } else {
        None
    };
    table.processes = processes(&parsed.sockets, names.as_ref().unwrap_or(&HashMap::new()));
    table.limitations = limitations(&parsed, names.is_some() || !owners);
    table.sockets = parsed.sockets;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    // loopcheck:allow(LC010): test data the code under test parses or prints, never bound
    const NETSTAT: &str = "\r
Active Connections\r
\r
  Proto  Local Address          Foreign Address        State           PID\r
  TCP    0.0.0.0:135            0.0.0.0:0              LISTENING       1044\r
  TCP    127.0.0.1:5000         127.0.0.1:50123        ESTABLISHED     4321\r
  TCP    127.0.0.1:5000         127.0.0.1:50100        TIME_WAIT       0\r
  TCP    127.0.0.1:6000         127.0.0.1:50200        FIN_WAIT_2      4321\r
  TCP    [::]:135               [::]:0                 LISTENING       1044\r
  TCP    [::1]:7000             [::]:0                 ABHÖREN         77\r
  UDP    0.0.0.0:5353           *:*                                    2345\r
  UDP    [fe80::1%5]:1900       *:*                                    2345\r
  UDP    127.0.0.1:9999         127.0.0.1:53                           2345\r
";

    #[test]
    fn netstat_rows() {
        let parsed = parse(NETSTAT);
        assert_eq!(parsed.sockets.len(), 9);
        assert_eq!(parsed.unknown_states, 1);
        let s = &parsed.sockets;
        // loopcheck:allow(LC010): test data the code under test parses or prints, never bound
        assert_eq!(s[0].local, "0.0.0.0:135".parse().unwrap());
        assert_eq!((s[0].state, s[0].remote), (SocketState::Listen, None));
        assert_eq!(s[0].pids, [1044]);
        // loopcheck:allow(LC010): test data the code under test parses or prints, never bound
        assert_eq!(s[1].remote, Some("127.0.0.1:50123".parse().unwrap()));
        assert_eq!((s[2].state, s[2].pids.len()), (SocketState::TimeWait, 0));
        assert_eq!(s[3].state, SocketState::FinWait2);
        // loopcheck:allow(LC010): test data the code under test parses or prints, never bound
        assert_eq!(s[4].local, "[::]:135".parse().unwrap());
        assert_eq!(s[4].remote, None);
        assert_eq!(s[5].state, SocketState::Unknown);
        assert_eq!(
            (s[6].protocol, s[6].state, s[6].remote),
            (Protocol::Udp, SocketState::Close, None)
        );
        assert!(s[6].is_listener());
        assert_eq!(s[7].local, "[fe80::1%5]:1900".parse().unwrap());
        assert_eq!(s[8].state, SocketState::Established);
        assert!(s.iter().all(|s| s.uid.is_none() && s.inode.is_none()));
        assert_eq!(limitations(&parsed, true).len(), 3);
    }

    #[test]
    fn tasklist_rows() {
        let text = "\"System Idle Process\",\"0\",\"Services\",\"0\",\"8 K\"\r\n\
\"svchost.exe\",\"1044\",\"Services\",\"0\",\"12,345 K\"\r\n\
\"my \"\"quoted\"\", app.exe\",\"4321\",\"Console\",\"1\",\"1,000 K\"\r\n\
plain.exe,2345,Console,1,5 K\r\n\
INFO: No tasks are running which match the specified criteria.\r\n\
\"broken,\"x\r\n";
        let names = parse_tasklist(text);
        assert_eq!(names[&1044], "svchost.exe");
        assert_eq!(names[&4321], "my \"quoted\", app.exe");
        assert_eq!(names[&2345], "plain.exe");
        assert_eq!(names.len(), 4);

        let sockets = parse(NETSTAT).sockets;
        let processes = processes(&sockets, &names);
        assert_eq!(
            processes.keys().copied().collect::<Vec<_>>(),
            [77, 1044, 2345, 4321]
        );
        assert_eq!(processes[&4321].command(), "my \"quoted\", app.exe");
        assert_eq!(processes[&77].name, "");
    }

    mod fuzz {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn never_panics(text in "\\PC{0,400}") {
                let _ = parse(&text);
                let _ = parse_tasklist(&text);
            }

            #[test]
            fn never_panics_on_near_valid_rows(
                proto in "(TCP|UDP|tcp)", local in "[0-9.:\\[\\]*%a-f]{0,20}",
                foreign in "[0-9.:\\[\\]*]{0,20}", state in "[A-Z_]{0,12}", pid in "[0-9]{0,11}",
            ) {
                let _ = parse(&format!("  {proto}  {local}  {foreign}  {state}  {pid}"));
                let _ = parse_tasklist(&format!("\"{local}\",\"{pid}\",{state}"));
            }
        }
    }
}
