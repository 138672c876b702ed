//! The `lsof` backend: `lsof -F` field output, the portable way to list sockets with their
//! processes on macOS and the BSDs. The parser is compiled everywhere, and the backend can be
//! forced on Linux, so both are tested there.
//!
//! Field output is one field per line, the first character naming it: a `p` line starts a
//! process (then `c` command, `R` parent pid, `u` uid, `L` login), an `f` line starts one of
//! its files (then `t` type, `d` device, `i` inode, `P` protocol, `n` name, and `T` lines:
//! `TST=` state, `TQR=`/`TQS=` queues).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;

use super::addr::{parse_endpoint, peer};
use super::{ProcessInfo, Protocol, SocketEntry, SocketState, SocketTable};

/// The `-F` field letters asked for.
const FIELDS: &str = "pcRuLftdinPT";

/// What `lsof -F` output holds.
#[derive(Debug, Default)]
pub(crate) struct Parsed {
    pub(crate) sockets: Vec<SocketEntry>,
    pub(crate) processes: BTreeMap<u32, ProcessInfo>,
    /// TCP/UDP files whose name could not be parsed as addresses.
    pub(crate) unparsed: usize,
}

#[derive(Default)]
struct File<'a> {
    kind: Option<&'a str>,
    device: Option<&'a str>,
    inode: Option<u64>,
    protocol: Option<&'a str>,
    name: Option<&'a str>,
    state: Option<&'a str>,
    recv_queue: Option<u32>,
    send_queue: Option<u32>,
}

/// Identifies a socket listed once per holding descriptor: the device (a kernel address on
/// macOS, the socket inode on Linux) where given, with the addresses in any case.
type Key<'a> = (Protocol, SocketAddr, Option<SocketAddr>, Option<&'a str>);

struct Parser<'a> {
    out: Parsed,
    index: HashMap<Key<'a>, usize>,
    pid: Option<u32>,
    file: Option<File<'a>>,
}

/// Parses `lsof -F` output. Files that are not TCP or UDP sockets are ignored; a socket held
/// by several descriptors or processes becomes one entry listing every pid.
pub(crate) fn parse(text: &str) -> Parsed {
    let mut parser = Parser {
        out: Parsed::default(),
        index: HashMap::new(),
        pid: None,
        file: None,
    };
    for line in text.lines() {
        let Some(tag) = line.chars().next() else {
            continue;
        };
        let value = &line[tag.len_utf8()..];
        match tag {
            'p' => {
                parser.finish_file();
                parser.pid = value.parse().ok();
                if let Some(pid) = parser.pid {
                    parser
                        .out
                        .processes
                        .entry(pid)
                        .or_insert_with(|| bare_process(pid));
                }
            }
            'f' => {
                parser.finish_file();
                parser.file = parser.pid.map(|_| File::default());
            }
            _ => match &mut parser.file {
                Some(file) => file_field(file, tag, value),
                None => parser.process_field(tag, value),
            },
        }
    }
    parser.finish_file();
    let Parser { mut out, .. } = parser;
    // Keep only processes that hold a socket.
    let mut holders: Vec<u32> = out.sockets.iter().flat_map(|s| s.pids.iter().copied()).collect();
    holders.sort_unstable();
    out.processes.retain(|pid, _| holders.binary_search(pid).is_ok());
    for socket in &mut out.sockets {
        socket.pids.sort_unstable();
    }
    out
}

fn file_field<'a>(file: &mut File<'a>, tag: char, value: &'a str) {
    match tag {
        't' => file.kind = Some(value),
        'd' => file.device = Some(value),
        'i' => file.inode = value.parse().ok(),
        'P' => file.protocol = Some(value),
        'n' => file.name = Some(value),
        'T' => {
            if let Some((key, value)) = value.split_once('=') {
                match key {
                    "ST" => file.state = Some(value),
                    "QR" => file.recv_queue = value.parse().ok(),
                    "QS" => file.send_queue = value.parse().ok(),
                    _ => {}
                }
            }
        }
        _ => {}
    }
}

fn bare_process(pid: u32) -> ProcessInfo {
    ProcessInfo {
        pid,
        ppid: None,
        pgid: None,
        name: String::new(),
        cmdline: Vec::new(),
        exe: None,
        uid: None,
        user: None,
        start_time: None,
        state: None,
        loopcheck_test: None,
    }
}

impl<'a> Parser<'a> {
    fn process_field(&mut self, tag: char, value: &str) {
        let Some(process) = self.pid.and_then(|pid| self.out.processes.get_mut(&pid)) else {
            return;
        };
        match tag {
            'c' => process.name = value.to_owned(),
            'R' => process.ppid = value.parse().ok().filter(|&ppid| ppid != 0),
            'u' => process.uid = value.parse().ok(),
            'L' => process.user = Some(value.to_owned()),
            _ => {}
        }
    }

    fn finish_file(&mut self) {
        let (Some(file), Some(pid)) = (self.file.take(), self.pid) else {
            return;
        };
        let protocol = match file.protocol {
            Some(p) if p.eq_ignore_ascii_case("tcp") => Protocol::Tcp,
            Some(p) if p.eq_ignore_ascii_case("udp") => Protocol::Udp,
            _ => return,
        };
        let ipv6 = file.kind.is_some_and(|kind| kind.eq_ignore_ascii_case("ipv6"));
        // Plain (non `-F`) output appends ` (LISTEN)`; cut anything after the addresses.
        let name = file
            .name
            .unwrap_or_default()
            .split(' ')
            .next()
            .unwrap_or_default();
        let (local, remote) = match name.split_once("->") {
            Some((local, remote)) => (local, Some(remote)),
            None => (name, None),
        };
        let Some(local) = parse_endpoint(local, ipv6) else {
            self.out.unparsed += 1;
            return;
        };
        let remote = match remote.map(|remote| parse_endpoint(remote, ipv6)) {
            Some(Some(remote)) => peer(remote),
            Some(None) => {
                self.out.unparsed += 1;
                return;
            }
            None => None,
        };
        // A socket bound to no port (created, not yet bound or connected) holds nothing.
        if local.port() == 0 {
            return;
        }
        let state = match (file.state, protocol) {
            (Some(state), _) => SocketState::from_name(state),
            (None, Protocol::Udp) if remote.is_some() => SocketState::Established,
            (None, Protocol::Udp) => SocketState::Close,
            (None, Protocol::Tcp) => SocketState::Unknown,
        };
        let key = (protocol, local, remote, file.device);
        if let Some(&at) = self.index.get(&key) {
            let pids = &mut self.out.sockets[at].pids;
            if !pids.contains(&pid) {
                pids.push(pid);
            }
            return;
        }
        self.index.insert(key, self.out.sockets.len());
        let uid = self.out.processes.get(&pid).and_then(|p| p.uid);
        self.out.sockets.push(SocketEntry {
            protocol,
            local,
            remote,
            state,
            recv_queue: file.recv_queue.unwrap_or(0),
            send_queue: file.send_queue.unwrap_or(0),
            uid,
            inode: file.inode,
            pids: vec![pid],
        });
    }
}

/// The arguments for one `lsof` run: numeric hosts and ports (`-n -P`, no DNS), no warnings
/// (`-w`), full command names (`+c 0`), queue and state details (`-T qs`), field output.
pub(crate) fn arguments(tcp: bool, udp: bool, listen_only: bool) -> Vec<&'static str> {
    let mut args = vec!["-n", "-P", "-w", "+c", "0", "-Tqs", "-F", FIELDS];
    if tcp {
        args.push("-iTCP");
    }
    if udp {
        args.push("-iUDP");
    }
    // `-s` would also drop UDP files, which have no TCP state: only narrow a TCP-only run.
    if listen_only && tcp && !udp {
        args.push("-sTCP:LISTEN");
    }
    args
}

/// Runs `lsof` and fills `table` with its sockets, their processes, and the sentences for
/// [`SocketTable::limitations`].
pub(crate) fn scan(
    table: &mut SocketTable,
    tcp: bool,
    udp: bool,
    listen_only: bool,
) -> Result<(), super::ScanError> {
    use super::command;

    let program = command::find_program("lsof", &["/usr/sbin", "/usr/bin", "/sbin", "/bin"])
        .ok_or(super::ScanError::ProgramNotFound { program: "lsof" })?;
    let output = command::run(&program, &arguments(tcp, udp, listen_only), command::TIMEOUT)?;
    // lsof exits with 1 when one of its selections (`-iUDP`) matched nothing, as well as on
    // errors; only errors print something, warnings being off (`-w`).
    let nothing_matched = output.status.code() == Some(1) && output.stderr.is_empty();
    if !(output.status.success() || nothing_matched) {
        return Err(command::failed(&program, &output));
    }
    let parsed = parse(&String::from_utf8_lossy(&output.stdout));

    let mut unseen = String::from(
        "lsof lists only sockets held by a process it can inspect: sockets without one (TIME_WAIT) \
         or whose holder hides its descriptors are missing",
    );
    if !is_root() {
        unseen.push_str(", and so are other users' sockets unless run as root");
    }
    table.limitations.push(unseen);
    table.limitations.push(
        "lsof names processes only by command name, user and parent: no command line, \
         executable or start time"
            .to_owned(),
    );
    if parsed.unparsed > 0 {
        table.limitations.push(format!(
            "{} lsof socket {} could not be parsed and {} skipped",
            parsed.unparsed,
            if parsed.unparsed == 1 { "record" } else { "records" },
            if parsed.unparsed == 1 { "was" } else { "were" },
        ));
    }
    table.sockets = parsed.sockets;
    table.processes = parsed.processes;
    Ok(())
}

#[cfg(unix)]
fn is_root() -> bool {
    crate::sys::current_uid() == Some(0)
}

#[cfg(not(unix))]
fn is_root() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    // loopcheck:allow(LC010): test data the code under test parses or prints, never bound
    const LINUX: &str = "p2486\nR2484\ncpython3\nu1000\nLdev\nf3\ntIPv4\nd6200\nPTCP\nn127.0.0.1:44683\nTST=LISTEN\nTQR=2\nTQS=0\n\
f4\ntIPv4\nd6201\nPTCP\nn127.0.0.1:50300->127.0.0.1:44683\nTST=ESTABLISHED\nTQR=0\nTQS=0\n\
f5\ntIPv4\nd6202\nPTCP\nn127.0.0.1:44683->127.0.0.1:50300\nTST=ESTABLISHED\nTQR=0\nTQS=7\n\
f6\ntIPv6\nd6203\nPUDP\nn[::1]:48419\nTQR=0\nTQS=0\n\
f7\ntIPv4\nd6204\nPUDP\nn127.0.0.1:35028->127.0.0.1:9\nTQR=0\nTQS=0\n\
p2600\nR1\ncsome server (v2)\nu0\nLroot\nf3\ntIPv4\nd6200\nPTCP\nn127.0.0.1:44683\nTST=LISTEN\nTQR=2\nTQS=0\n\
f9\ntIPv6\nd7000\nPTCP\nn*:8080\nTST=LISTEN\n\
f10\ntIPv4\nd7001\nPTCP\nn*:*\nTST=CLOSE\n\
f11\ntREG\nd64768\ni1234\nn/var/log/x.log\n\
p2700\ncquiet\nu0\n";

    // macOS: kernel addresses as devices, IPv6 wildcards as `*`, `_` states.
    const MACOS: &str = "p501\ncControlCenter\nu501\nLalice\nR1\nf12\ntIPv4\nd0x4a3c1e2f0d1b2c3d\nPUDP\nn*:*\n\
f13\ntIPv6\nd0x4a3c1e2f0d1b2c3e\nPTCP\nn*:7000\nTST=LISTEN\nTQR=0\nTQS=0\n\
f14\ntIPv6\nd0x4a3c1e2f0d1b2c3f\nPTCP\nn[fe80:4::aede:48ff:fe00:1122]:49152->[fe80:4::aede:48ff:fe00:1133]:1234\nTST=SYN_SENT\n\
f15\ntIPv4\nd0x4a3c1e2f0d1b2c40\nPTCP\nn127.0.0.1:631\nTST=LISTEN\nTQR=0\nTQS=0\n\
p502\ncrapportd\nu501\nLalice\nR1\nf3\ntIPv4\nd0x4a3c1e2f0d1b2c41\nPTCP\nn10.0.0.5:50000->17.57.146.20:5223\nTST=ESTABLISHED\n";

    #[test]
    fn linux_output() {
        let parsed = parse(LINUX);
        assert_eq!(parsed.unparsed, 0);
        assert_eq!(parsed.sockets.len(), 6, "{:#?}", parsed.sockets);

        let listener = &parsed.sockets[0];
        assert_eq!(listener.protocol, Protocol::Tcp);
        // loopcheck:allow(LC010): test data the code under test parses or prints, never bound
        assert_eq!(listener.local, "127.0.0.1:44683".parse().unwrap());
        assert_eq!(listener.state, SocketState::Listen);
        assert_eq!(listener.recv_queue, 2);
        assert_eq!(listener.pids, [2486, 2600], "one socket, two holders");
        assert_eq!(listener.uid, Some(1000));
        assert_eq!(listener.inode, None);

        // loopcheck:allow(LC010): test data the code under test parses or prints, never bound
        assert_eq!(parsed.sockets[2].remote, Some("127.0.0.1:50300".parse().unwrap()));
        assert_eq!(parsed.sockets[2].send_queue, 7);

        let udp = &parsed.sockets[3];
        assert_eq!((udp.protocol, udp.state), (Protocol::Udp, SocketState::Close));
        // loopcheck:allow(LC010): test data the code under test parses or prints, never bound
        assert_eq!(udp.local, "[::1]:48419".parse().unwrap());
        assert!(udp.is_listener());
        assert_eq!(parsed.sockets[4].state, SocketState::Established);

        // loopcheck:allow(LC010): test data the code under test parses or prints, never bound
        assert_eq!(parsed.sockets[5].local, "[::]:8080".parse().unwrap());

        let python = &parsed.processes[&2486];
        assert_eq!(
            (python.name.as_str(), python.ppid, python.uid),
            ("python3", Some(2484), Some(1000))
        );
        assert_eq!(python.user.as_deref(), Some("dev"));
        assert_eq!(python.command(), "python3");
        assert_eq!(parsed.processes[&2600].name, "some server (v2)");
        assert!(!parsed.processes.contains_key(&2700), "holds no socket");
    }

    #[test]
    fn macos_output() {
        let parsed = parse(MACOS);
        assert_eq!(parsed.unparsed, 0);
        assert_eq!(parsed.sockets.len(), 4, "the unbound UDP socket holds no port");
        // loopcheck:allow(LC010): test data the code under test parses or prints, never bound
        assert_eq!(parsed.sockets[0].local, "[::]:7000".parse().unwrap());
        let link_local = &parsed.sockets[1];
        assert_eq!(link_local.state, SocketState::SynSent);
        assert!(link_local.remote.is_some());
        // loopcheck:allow(LC010): test data the code under test parses or prints, never bound
        assert_eq!(parsed.sockets[2].local, "127.0.0.1:631".parse().unwrap());
        assert_eq!(parsed.sockets[3].pids, [502]);
        assert_eq!(parsed.processes[&502].name, "rapportd");
    }

    #[test]
    fn odd_input() {
        assert!(parse("").sockets.is_empty());
        // Files before any process, unknown tags, garbage names.
        let parsed = parse(
            "f3\nPTCP\nn127.0.0.1:1\nx\n\np1\nf3\nPTCP\nnnot-an-address\nf4\nPUDP\nn1.2.3.4:5->bad\nf5\nPTCP\nn1.2.3.4:5\n",
        );
        assert_eq!(parsed.unparsed, 2);
        assert_eq!(parsed.sockets.len(), 1);
        assert_eq!(parsed.sockets[0].state, SocketState::Unknown);
        assert_eq!(parsed.sockets[0].pids, [1]);
        assert_eq!(parsed.processes[&1].name, "");
    }

    #[test]
    fn arguments_never_drop_udp() {
        assert!(arguments(true, false, true).contains(&"-sTCP:LISTEN"));
        assert!(!arguments(true, true, true).contains(&"-sTCP:LISTEN"));
        assert!(arguments(false, true, false).contains(&"-iUDP"));
    }

    mod fuzz {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn never_panics(text in "\\PC{0,400}") {
                let _ = parse(&text);
            }

            #[test]
            fn never_panics_on_field_lines(lines in proptest::collection::vec("[pfcRuLtdinPT][ -~]{0,30}", 0..40)) {
                let parsed = parse(&lines.join("\n"));
                for socket in &parsed.sockets {
                    prop_assert!(!socket.pids.is_empty());
                }
            }
        }
    }
}
