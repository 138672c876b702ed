use std::collections::HashMap;
use std::path::PathBuf;

use serde::Serialize;

/// The environment variable the test harness sets for a test's duration; children inherit it.
pub(crate) const LOOPCHECK_TEST: &[u8] = b"LOOPCHECK_TEST";

/// A process that holds sockets.
///
/// On Linux every field comes from `/proc/PID`; a piece that is unreadable (another user's
/// process, a process that exited mid-read) is `None` or empty, never an error. Other
/// backends fill what their tool prints.
///
/// ```
/// use loopcheck::scan::ProcessInfo;
///
/// if let Some(me) = ProcessInfo::read(std::process::id()) {
///     println!("{} started at tick {:?}: {}", me.pid, me.start_time, me.command());
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProcessInfo {
    /// The process id.
    pub pid: u32,
    /// The parent's pid; `None` when the process has none (PID 1, kernel roots) or it is not
    /// known. An orphan's parent is the reaper, often PID 1.
    pub ppid: Option<u32>,
    /// The process group id (field 5 of `/proc/PID/stat`): a child started by a test runner
    /// stays in the runner's group, so a group whose leader is gone marks a leftover.
    pub pgid: Option<u32>,
    /// The short command name (`comm`: at most 15 bytes on Linux).
    pub name: String,
    /// The arguments, program first. Empty for kernel threads, zombies, and with backends
    /// that do not report it (`lsof`, `netstat`).
    pub cmdline: Vec<String>,
    /// The executable's path; on Linux `" (deleted)"` is appended when the file was removed or
    /// replaced since the process started (for example a test binary rebuilt by cargo).
    pub exe: Option<PathBuf>,
    /// The real user id.
    pub uid: Option<u32>,
    /// The user name of [`uid`](ProcessInfo::uid), from `/etc/passwd` on Linux.
    pub user: Option<String>,
    /// When the process started, in clock ticks after boot (field 22 of `/proc/PID/stat`).
    /// With the pid it identifies a process: a reused pid has a later start time.
    pub start_time: Option<u64>,
    /// The scheduler state letter from `/proc/PID/stat`: `R` running, `S` sleeping, `D` disk
    /// sleep, `T` stopped, `t` traced, `Z` zombie...
    pub state: Option<char>,
    /// The value of `LOOPCHECK_TEST` in the process's environment, when readable: the test
    /// that started it, or one of its ancestors.
    pub loopcheck_test: Option<String>,
}

impl ProcessInfo {
    /// The command line joined with spaces, or [`name`](ProcessInfo::name) when the command
    /// line is empty (kernel threads, zombies, backends that do not report it). On one line:
    /// control characters in it are escaped (`python3 -c 'import socket\n..'` keeps its
    /// `\n` as the two characters), so that it never breaks the layout of a report.
    ///
    /// ```
    /// use loopcheck::scan::ProcessInfo;
    ///
    /// if let Some(me) = ProcessInfo::read(std::process::id()) {
    ///     println!("running as {}", me.command());
    /// }
    /// ```
    pub fn command(&self) -> String {
        if self.cmdline.is_empty() {
            one_line(&self.name)
        } else {
            one_line(&self.cmdline.join(" "))
        }
    }

    /// Reads one process from `/proc/PID` (Linux). `None` when it does not exist (any more),
    /// and always `None` on other platforms.
    ///
    /// ```
    /// use loopcheck::scan::ProcessInfo;
    ///
    /// let me = ProcessInfo::read(std::process::id());
    /// if cfg!(target_os = "linux") {
    ///     let me = me.expect("this process exists");
    ///     assert_eq!(me.pid, std::process::id());
    ///     assert!(me.start_time.is_some());
    /// }
    /// ```
    pub fn read(pid: u32) -> Option<ProcessInfo> {
        #[cfg(target_os = "linux")]
        {
            let proc = super::procfs::ProcFs::open().ok()?;
            ProcessReader::new(&proc).read(pid)
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = pid;
            None
        }
    }
}

/// The fields of `/proc/PID/stat` this module uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stat<'a> {
    pub(crate) comm: &'a [u8],
    pub(crate) state: Option<char>,
    pub(crate) ppid: Option<u32>,
    pub(crate) pgid: Option<u32>,
    pub(crate) start_time: Option<u64>,
}

/// Parses `/proc/PID/stat`: `PID (COMM) STATE PPID ... STARTTIME ...`.
///
/// `COMM` is chosen by the process and may hold spaces and parentheses, so it ends at the
/// *last* `)`. Fields after it that are missing or malformed become `None`.
pub(crate) fn parse_stat(buf: &[u8]) -> Option<Stat<'_>> {
    let open = buf.iter().position(|&b| b == b'(')?;
    let close = buf.iter().rposition(|&b| b == b')')?;
    if close < open {
        return None;
    }
    let comm = &buf[open + 1..close];
    // After the comm: field 3 (state) is index 0, field 4 (ppid) index 1, field 22
    // (starttime) index 19.
    let mut fields = buf[close + 1..].split(|&b| b == b' ').filter(|f| !f.is_empty());
    let state = fields.next().and_then(|f| match f {
        [c] if c.is_ascii_graphic() => Some(char::from(*c)),
        _ => None,
    });
    let ppid = fields
        .next()
        .and_then(parse_decimal)
        .and_then(|p| u32::try_from(p).ok())
        .filter(|&p| p != 0);
    let pgid = fields
        .next()
        .and_then(parse_decimal)
        .and_then(|p| u32::try_from(p).ok())
        .filter(|&p| p != 0);
    let start_time = fields.nth(16).and_then(parse_decimal);
    Some(Stat {
        comm,
        state,
        ppid,
        pgid,
        start_time,
    })
}

/// The real uid from `/proc/PID/status` (`Uid:\tREAL\tEFFECTIVE\tSAVED\tFS`).
pub(crate) fn parse_status_uid(buf: &[u8]) -> Option<u32> {
    let line = buf
        .split(|&b| b == b'\n')
        .find(|line| line.starts_with(b"Uid:"))?;
    let real = line[4..]
        .split(|b| b.is_ascii_whitespace())
        .find(|f| !f.is_empty())?;
    parse_decimal(real).and_then(|uid| u32::try_from(uid).ok())
}

/// A live process started, directly or through others, by a test of one run: it carries that
/// run's `LOOPCHECK_RUN_DIR`, which every descendant of the test runner inherits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunProcess {
    /// The process.
    pub process: ProcessInfo,
    /// `NEXTEST_BINARY_ID`: the test binary whose test started it, under nextest.
    pub binary_id: Option<String>,
    /// `NEXTEST_TEST_NAME`: the test that started it, under nextest.
    pub test_name: Option<String>,
}

/// The live processes (zombies left out) whose environment holds `LOOPCHECK_RUN_DIR=run_dir`,
/// other than this one and other than those the build started (a rustc wrapper's server, a
/// build script's child: they carry cargo's compile-time variables). After a test run has
/// ended these are what its tests left running.
///
/// Linux reads `/proc/PID/environ`, which only the process's owner (and root) can read:
/// another user's processes are never counted. Elsewhere this finds nothing.
///
/// ```
/// let dir = std::env::temp_dir().join("loopcheck-doc-no-such-run");
/// assert!(loopcheck::scan::processes_of_run(&dir).is_empty());
/// ```
pub fn processes_of_run(run_dir: &std::path::Path) -> Vec<RunProcess> {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::ffi::OsStrExt;

        let Ok(proc) = super::procfs::ProcFs::open() else {
            return Vec::new();
        };
        let Ok(pids) = proc.pids() else {
            return Vec::new();
        };
        let mut reader = ProcessReader::new(&proc);
        let own = std::process::id();
        let wanted = run_dir.as_os_str().as_bytes();
        let mut environ = Vec::with_capacity(4096);
        let mut found = Vec::new();
        for pid in pids.filter(|&pid| pid != own) {
            if proc.read(pid, c"environ", &mut environ).is_err() {
                continue;
            }
            // Bytes, not text: a directory name need not be UTF-8.
            let in_run = environ.split(|&b| b == 0).any(|var| {
                var.strip_prefix(crate::run::RUN_DIR_VAR.as_bytes())
                    .and_then(|value| value.strip_prefix(b"="))
                    == Some(wanted)
            });
            // Started by the build rather than by a test: a rustc wrapper's server (sccache)
            // carries the compiler's `CARGO_CRATE_NAME`, a build script's child its
            // `OUT_DIR`, `TARGET` and `HOST`. Tests run with none of these.
            let has = |key: &[u8]| find_env(&environ, key).is_some();
            let of_build = has(b"CARGO_CRATE_NAME") || (has(b"OUT_DIR") && has(b"TARGET") && has(b"HOST"));
            if !in_run || of_build {
                continue;
            }
            let Some(process) = reader.read(pid).filter(|p| p.state != Some('Z')) else {
                continue;
            };
            found.push(RunProcess {
                process,
                binary_id: find_env(&environ, b"NEXTEST_BINARY_ID"),
                test_name: find_env(&environ, b"NEXTEST_TEST_NAME"),
            });
        }
        found.sort_by_key(|p| p.process.pid);
        found
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = run_dir;
        Vec::new()
    }
}

/// `/proc/PID/cmdline`: NUL-separated arguments, usually with a trailing NUL.
pub(crate) fn parse_cmdline(buf: &[u8]) -> Vec<String> {
    let buf = buf.strip_suffix(b"\0").unwrap_or(buf);
    if buf.is_empty() {
        return Vec::new();
    }
    buf.split(|&b| b == 0)
        .map(|arg| String::from_utf8_lossy(arg).into_owned())
        .collect()
}

/// The value of variable `key` in a NUL-separated environment block (`/proc/PID/environ`).
pub(crate) fn find_env(environ: &[u8], key: &[u8]) -> Option<String> {
    environ.split(|&b| b == 0).find_map(|entry| {
        let value = entry.strip_prefix(key)?.strip_prefix(b"=")?;
        Some(String::from_utf8_lossy(value).into_owned())
    })
}

/// User names by uid from `/etc/passwd` text (`name:password:uid:gid:...`); the first entry
/// for a uid wins, as `getpwuid` does.
pub(crate) fn parse_passwd(text: &[u8]) -> HashMap<u32, String> {
    let mut users = HashMap::new();
    for line in text.split(|&b| b == b'\n') {
        if line.starts_with(b"#") {
            continue;
        }
        let mut fields = line.split(|&b| b == b':');
        let (Some(name), Some(_), Some(uid)) = (fields.next(), fields.next(), fields.next()) else {
            continue;
        };
        let Some(uid) = parse_decimal(uid).and_then(|uid| u32::try_from(uid).ok()) else {
            continue;
        };
        if !name.is_empty() {
            users
                .entry(uid)
                .or_insert_with(|| String::from_utf8_lossy(name).into_owned());
        }
    }
    users
}

/// Parses a non-empty run of ASCII digits that fits `u64`.
pub(crate) fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &b| {
        if !b.is_ascii_digit() {
            return None;
        }
        acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

/// Reads processes from `/proc`, reusing one buffer and parsing `/etc/passwd` at most once.
#[cfg(target_os = "linux")]
pub(crate) struct ProcessReader<'p> {
    proc: &'p super::procfs::ProcFs,
    buf: Vec<u8>,
    link: Vec<u8>,
    users: Option<HashMap<u32, String>>,
}

#[cfg(target_os = "linux")]
impl<'p> ProcessReader<'p> {
    pub(crate) fn new(proc: &'p super::procfs::ProcFs) -> ProcessReader<'p> {
        ProcessReader {
            proc,
            buf: Vec::with_capacity(4096),
            link: vec![0; libc::PATH_MAX as usize + 1],
            users: None,
        }
    }

    /// `None` when `/proc/PID/stat` cannot be read: the process is gone.
    pub(crate) fn read(&mut self, pid: u32) -> Option<ProcessInfo> {
        use std::os::unix::ffi::OsStrExt;

        self.proc.read(pid, c"stat", &mut self.buf).ok()?;
        let stat = parse_stat(&self.buf)?;
        let name = String::from_utf8_lossy(stat.comm).into_owned();
        let (state, ppid, pgid, start_time) = (stat.state, stat.ppid, stat.pgid, stat.start_time);

        let cmdline = match self.proc.read(pid, c"cmdline", &mut self.buf) {
            Ok(()) => parse_cmdline(&self.buf),
            Err(_) => Vec::new(),
        };
        let exe = self
            .proc
            .readlink(pid, c"exe", &mut self.link)
            .ok()
            .map(|path| PathBuf::from(std::ffi::OsStr::from_bytes(path)));
        let uid = match self.proc.read(pid, c"status", &mut self.buf) {
            Ok(()) => parse_status_uid(&self.buf),
            Err(_) => None,
        };
        let user = uid.and_then(|uid| self.user_name(uid));
        // Another user's environment needs ptrace access: unreadable is normal.
        let loopcheck_test = match self.proc.read(pid, c"environ", &mut self.buf) {
            Ok(()) => find_env(&self.buf, LOOPCHECK_TEST),
            Err(_) => None,
        };
        Some(ProcessInfo {
            pid,
            ppid,
            pgid,
            name,
            cmdline,
            exe,
            uid,
            user,
            start_time,
            state,
            loopcheck_test,
        })
    }

    /// Hands over the user names read so far, for a later reader.
    pub(crate) fn into_users(self) -> Option<HashMap<u32, String>> {
        self.users
    }

    /// A reader that starts with the user names an earlier one read.
    pub(crate) fn with_users(
        proc: &'p super::procfs::ProcFs,
        users: Option<HashMap<u32, String>>,
    ) -> ProcessReader<'p> {
        ProcessReader {
            users,
            ..ProcessReader::new(proc)
        }
    }

    fn user_name(&mut self, uid: u32) -> Option<String> {
        let users = self.users.get_or_insert_with(|| {
            let mut text = Vec::new();
            match super::procfs::read_at(libc::AT_FDCWD, c"/etc/passwd", &mut text) {
                Ok(()) => parse_passwd(&text),
                Err(_) => HashMap::new(),
            }
        });
        users.get(&uid).cloned()
    }
}

/// `text` with its control characters escaped as Rust writes them: `\n`, `\t`, `\u{1b}`.
pub fn one_line(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_owned();
    }
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &[u8] = b"1234 (cargo) S 1200 1234 1200 34816 1234 4194560 2577 0 0 0 5 3 0 0 20 0 1 0 987654 12345678 900 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 1 0 0 0 0 0\n";

    #[test]
    fn stat_fields() {
        let stat = parse_stat(STAT).expect("valid stat");
        assert_eq!(stat.comm, b"cargo");
        assert_eq!(stat.state, Some('S'));
        assert_eq!(stat.ppid, Some(1200));
        assert_eq!(stat.start_time, Some(987654));
    }

    #[test]
    fn stat_with_nasty_comm() {
        let stat = b"77 (a) b) (c ) d) T 1 77 77 0 -1 4194304 0 0 0 0 0 0 0 0 20 0 1 0 4242 0 0 0";
        let stat = parse_stat(stat).expect("valid stat");
        assert_eq!(stat.comm, b"a) b) (c ) d");
        assert_eq!(stat.state, Some('T'));
        assert_eq!(stat.ppid, Some(1));
        assert_eq!(stat.start_time, Some(4242));

        let empty = parse_stat(b"5 () Z 0 0 0").expect("valid stat");
        assert_eq!(empty.comm, b"");
        assert_eq!(empty.state, Some('Z'));
        assert_eq!(empty.ppid, None, "ppid 0 means no parent");
        assert_eq!(empty.start_time, None, "truncated");

        let spaces = parse_stat(b"9 (  x  ) R 2 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 31 0").expect("valid stat");
        assert_eq!(spaces.comm, b"  x  ");
        assert_eq!(spaces.start_time, Some(31));
    }

    #[test]
    fn stat_garbage() {
        assert_eq!(parse_stat(b""), None);
        assert_eq!(parse_stat(b"1 no parens"), None);
        assert_eq!(parse_stat(b"1 )backwards( S"), None);
        let odd = parse_stat(b"1 (x) SS -5 ").expect("parens present");
        assert_eq!((odd.state, odd.ppid), (None, None));
    }

    #[test]
    fn status_uid() {
        let status = b"Name:\tbash\nUmask:\t0022\nState:\tS (sleeping)\nUid:\t1000\t1001\t1000\t1000\nGid:\t100\t100\t100\t100\n";
        assert_eq!(parse_status_uid(status), Some(1000));
        assert_eq!(parse_status_uid(b"Name:\tx\n"), None);
        assert_eq!(parse_status_uid(b"Uid:\t\n"), None);
    }

    #[test]
    fn cmdline_and_environ() {
        assert_eq!(
            parse_cmdline(b"python3\0-c\0print(1)\0"),
            ["python3", "-c", "print(1)"]
        );
        assert_eq!(parse_cmdline(b"nginx: worker process"), ["nginx: worker process"]);
        assert_eq!(parse_cmdline(b"a\0\0b\0"), ["a", "", "b"]);
        assert!(parse_cmdline(b"").is_empty());
        assert!(parse_cmdline(b"\0").is_empty());

        let environ = b"PATH=/bin\0LOOPCHECK_TESTX=no\0LOOPCHECK_TEST=suite::a_test\0HOME=/root\0";
        assert_eq!(
            find_env(environ, LOOPCHECK_TEST).as_deref(),
            Some("suite::a_test")
        );
        assert_eq!(find_env(b"LOOPCHECK_TEST\0", LOOPCHECK_TEST), None);
        assert_eq!(find_env(b"", LOOPCHECK_TEST), None);
    }

    #[test]
    fn passwd() {
        let users = parse_passwd(b"root:x:0:0:root:/root:/bin/bash\n# comment:x:5\nbad line\ndaemon:x:1:1::/:/sbin/nologin\ntoor:x:0:0::/:/bin/sh\n:x:7:7::/:\nnum:x:99999999999:1::/:\n");
        assert_eq!(users.get(&0).map(String::as_str), Some("root"));
        assert_eq!(users.get(&1).map(String::as_str), Some("daemon"));
        assert_eq!(users.get(&7), None);
        assert_eq!(users.len(), 2);
    }

    #[test]
    fn command_falls_back_to_name() {
        let mut info = ProcessInfo {
            pid: 2,
            ppid: None,
            pgid: None,
            name: "kthreadd".into(),
            cmdline: Vec::new(),
            exe: None,
            uid: Some(0),
            user: None,
            start_time: None,
            state: Some('S'),
            loopcheck_test: None,
        };
        assert_eq!(info.command(), "kthreadd");
        info.cmdline = vec!["sleep".into(), "10".into()];
        assert_eq!(info.command(), "sleep 10");
        info.cmdline = vec![
            "python3".into(),
            "-c".into(),
            "import socket\n\tserve()\r\u{1b}".into(),
        ];
        assert_eq!(info.command(), r"python3 -c import socket\n\tserve()\r\u{1b}");
        assert_eq!(one_line("pid 7 `ünïcode`"), "pid 7 `ünïcode`");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn reads_own_process() {
        let me = ProcessInfo::read(std::process::id()).expect("this process exists");
        assert_eq!(me.pid, std::process::id());
        assert!(me.ppid.is_some());
        assert!(!me.name.is_empty());
        assert!(!me.cmdline.is_empty());
        assert!(me.exe.is_some());
        assert!(me.uid.is_some());
        assert!(me.start_time.is_some());
        assert!(matches!(me.state, Some('R' | 'S')));
        assert_eq!(ProcessInfo::read(u32::MAX), None);
    }

    mod fuzz {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
                let _ = parse_stat(&bytes);
                let _ = parse_status_uid(&bytes);
                let _ = parse_cmdline(&bytes);
                let _ = find_env(&bytes, LOOPCHECK_TEST);
                let _ = parse_passwd(&bytes);
            }

            #[test]
            fn stat_keeps_any_comm(comm in "[ -~]{0,15}", start in any::<u64>()) {
                let stat = format!("42 ({comm}) S 7 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 {start} 0");
                let parsed = parse_stat(stat.as_bytes()).expect("valid stat");
                prop_assert_eq!(parsed.comm, comm.as_bytes());
                prop_assert_eq!(parsed.ppid, Some(7));
                prop_assert_eq!(parsed.start_time, Some(start));
            }
        }
    }
}
