//! The runtime of `#[loopback_test]`: per-test context, allocation of the arguments, the body
//! under `catch_unwind`, the diagnosis of a failure, the leak check and the run record.
//!
//! The macro only parses and emits calls to [`run`] or [`run_with_timeout`]; every decision
//! is made here, so it is tested without the macro.

use std::any::Any;
use std::fmt::Debug;
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr, TcpListener, UdpSocket};
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::PortLease;
use crate::diagnose::Diagnoser;
use crate::lease::own_pid;
use crate::report::{Code, Diagnosis, Protocol};
use crate::run::{GivenSocket as Given, RecordFields, TEST_VAR};
use crate::scan::{ProcessInfo, ScanOptions};

/// What `leaks = "..."` asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leaks {
    /// Print leaks as warnings (the default).
    Warn,
    /// Fail a test that otherwise passed when it leaks.
    Fail,
}

/// The static description of one test, built by the macro.
#[derive(Debug, Clone, Copy)]
pub struct Test {
    /// `module_path!()::name`.
    pub name: &'static str,
    /// `timeout = "..."`.
    pub timeout: Option<Duration>,
    /// `leaks = "..."`.
    pub leaks: Leaks,
    /// The test carries `#[should_panic]`: a panic is its success, so no diagnosis is printed.
    pub should_panic: bool,
}

/// The state of one running test: what it was given and the leases it holds.
#[derive(Debug)]
pub struct Context {
    test: Test,
    given: Vec<Given>,
    leases: Vec<PortLease>,
}

impl Context {
    fn new(test: Test) -> Context {
        crate::run::set_current(Some(test.name));
        if one_test_per_process() {
            // SAFETY: nextest runs exactly one test per process, and this runs before the test
            // body starts any thread; libtest's own thread only waits for the result.
            unsafe { std::env::set_var(TEST_VAR, test.name) };
        }
        Context {
            test,
            given: Vec::new(),
            leases: Vec::new(),
        }
    }

    fn give(&mut self, protocol: Protocol, port: u16, addrs: Vec<SocketAddr>) {
        self.given.push(Given {
            protocol,
            port,
            addrs,
        });
    }

    /// Registers a socket handed to the test by the address it is bound to.
    #[cfg(feature = "tokio")]
    fn give_bound(&mut self, protocol: Protocol, addr: io::Result<SocketAddr>) {
        if let Ok(addr) = addr {
            self.give(protocol, addr.port(), vec![addr]);
        }
    }

    fn fail(&self, what: &str, err: crate::Error) -> ! {
        panic!(
            "loopcheck could not allocate {what} for `{}`: {err}",
            self.test.name
        )
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        crate::run::set_current(None);
    }
}

/// Whether this process runs one test only: nextest's process-per-test mode.
fn one_test_per_process() -> bool {
    static ONE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ONE.get_or_init(|| {
        std::env::var_os("NEXTEST").is_some_and(|v| v == "1")
            && std::env::var("NEXTEST_EXECUTION_MODE").map_or(true, |m| m == "process-per-test")
    })
}

/// A type `#[loopback_test]` can hand to a test as an argument.
#[diagnostic::on_unimplemented(
    message = "`#[loopback_test]` cannot provide a `{Self}`",
    label = "unsupported argument type",
    note = "arguments can be u16, SocketAddr, std::net::TcpListener, std::net::UdpSocket, loopcheck::PortLease, arrays of them, and tokio's TcpListener or UdpSocket with loopcheck's `tokio` feature"
)]
pub trait Arg: Sized {
    /// Allocates the value, registering its address with `cx`. Panics (failing the test) when
    /// nothing can be allocated.
    fn allocate(cx: &mut Context) -> Self;
}

fn loopback_pair(port: u16) -> Vec<SocketAddr> {
    let mut addrs = vec![SocketAddr::from(([127, 0, 0, 1], port))];
    if crate::policy::ipv6_available() {
        addrs.push(SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), port));
    }
    addrs
}

impl Arg for u16 {
    fn allocate(cx: &mut Context) -> Self {
        let lease = crate::reserve_port().unwrap_or_else(|e| cx.fail("a port", e));
        let port = lease.port();
        cx.give(Protocol::Tcp, port, loopback_pair(port));
        cx.leases.push(lease);
        port
    }
}

impl Arg for SocketAddr {
    fn allocate(cx: &mut Context) -> Self {
        let lease = crate::alloc::reserve_on_loopback().unwrap_or_else(|e| cx.fail("an address", e));
        let addr = lease.addr();
        cx.give(Protocol::Tcp, addr.port(), vec![addr]);
        cx.leases.push(lease);
        addr
    }
}

impl Arg for PortLease {
    fn allocate(cx: &mut Context) -> Self {
        let lease = crate::reserve_port().unwrap_or_else(|e| cx.fail("a port lease", e));
        cx.give(Protocol::Tcp, lease.port(), loopback_pair(lease.port()));
        lease
    }
}

impl Arg for TcpListener {
    fn allocate(cx: &mut Context) -> Self {
        let (listener, addr) =
            crate::alloc::tcp_listener_at().unwrap_or_else(|e| cx.fail("a TcpListener", e));
        cx.give(Protocol::Tcp, addr.port(), vec![addr]);
        listener
    }
}

impl Arg for UdpSocket {
    fn allocate(cx: &mut Context) -> Self {
        let (socket, addr) = crate::alloc::udp_socket_at().unwrap_or_else(|e| cx.fail("a UdpSocket", e));
        cx.give(Protocol::Udp, addr.port(), vec![addr]);
        socket
    }
}

/// `ports: PortBlock<N>` in a `#[loopback_test]` signature: `len` contiguous leased ports,
/// each registered with `cx` for diagnosis and the leak check.
pub fn port_block(cx: &mut Context, len: usize) -> crate::PortBlock {
    let block =
        crate::reserve_port_block(len).unwrap_or_else(|e| cx.fail(&format!("a block of {len} ports"), e));
    for port in block.ports() {
        cx.give(Protocol::Tcp, port, loopback_pair(port));
    }
    block
}

impl<T: Arg, const N: usize> Arg for [T; N] {
    fn allocate(cx: &mut Context) -> Self {
        std::array::from_fn(|_| T::allocate(cx))
    }
}

#[cfg(feature = "tokio")]
impl Arg for tokio::net::TcpListener {
    fn allocate(cx: &mut Context) -> Self {
        let listener = crate::tokio::tcp_listener().unwrap_or_else(|e| cx.fail("a tokio TcpListener", e));
        cx.give_bound(Protocol::Tcp, listener.local_addr());
        listener
    }
}

#[cfg(feature = "tokio")]
impl Arg for tokio::net::UdpSocket {
    fn allocate(cx: &mut Context) -> Self {
        let socket = crate::tokio::udp_socket().unwrap_or_else(|e| cx.fail("a tokio UdpSocket", e));
        cx.give_bound(Protocol::Udp, socket.local_addr());
        socket
    }
}

/// What a test body returns: `()` or any `Result<_, E: Debug>`.
pub trait TestReturn: Sized {
    /// The failure message, as libtest would print it, or `None` on success.
    fn failure(&self) -> Option<String>;

    /// A value that makes libtest fail a `#[should_panic]` test ("did not panic as
    /// expected"), for a body that timed out; `#[should_panic]` tests return `()`.
    fn instead_of_expected_panic() -> Option<Self> {
        None
    }
}

impl TestReturn for () {
    fn failure(&self) -> Option<String> {
        None
    }

    fn instead_of_expected_panic() -> Option<Self> {
        Some(())
    }
}

impl<T, E: Debug> TestReturn for Result<T, E> {
    fn failure(&self) -> Option<String> {
        self.as_ref().err().map(|e| format!("{e:?}"))
    }
}

/// Runs a test on this thread: `setup` allocates the arguments and returns the body.
pub fn run<R: TestReturn, B: FnOnce() -> R>(test: Test, setup: impl FnOnce(&mut Context) -> B) -> R {
    let mut cx = Context::new(test);
    let body = setup(&mut cx);
    let started = Instant::now();
    let result = catch_unwind(AssertUnwindSafe(body));
    // The body ran on this thread, which is still alive: its id is asked for only when the
    // process has children at all.
    cx.finish(result, Threads::Current, started.elapsed())
}

/// Runs a test with a time limit: the body runs on a thread of its own, and the test fails
/// when it has not returned in time (the thread is left to finish by itself).
pub fn run_with_timeout<R, B>(test: Test, setup: impl FnOnce(&mut Context) -> B) -> R
where
    R: TestReturn + Send + 'static,
    B: FnOnce() -> R + Send + 'static,
{
    let timeout = test.timeout.unwrap_or(Duration::MAX);
    let mut cx = Context::new(test);
    let body = setup(&mut cx);
    let started = Instant::now();
    let (sender, receiver) = std::sync::mpsc::channel();
    // The body's thread waits for this before it exits: the kernel lists a thread's children
    // only while the thread lives, and the leak check reads that list.
    let (checked, wait_for_check) = std::sync::mpsc::channel::<()>();
    let name = test.name;
    let spawned = std::thread::Builder::new().name(name.to_owned()).spawn(move || {
        crate::run::set_current(Some(name));
        let _ = sender.send(Message::Tid(thread_id()));
        let result = catch_unwind(AssertUnwindSafe(body));
        let _ = sender.send(Message::Done(result));
        let _ = wait_for_check.recv_timeout(Duration::from_secs(60));
    });
    if let Err(err) = spawned {
        panic!("loopcheck could not start a thread for `{name}`: {err}");
    }
    let tid = match receiver.recv() {
        Ok(Message::Tid(tid)) => tid,
        _ => None,
    };
    let result = match receiver.recv_timeout(timeout.saturating_sub(started.elapsed())) {
        Ok(Message::Done(result)) => result,
        _ => {
            let message = format!("test `{name}` timed out after {}", humanize(timeout));
            cx.report(
                &Failure::TimedOut(message.clone()),
                Threads::Listed(&[tid]),
                started.elapsed(),
            );
            // The body still runs and may still bind the numbers it was given: its leases
            // stay held until the process exits.
            std::mem::forget(std::mem::take(&mut cx.leases));
            if test.should_panic {
                // A hung test must not pass as the panic it expected.
                eprintln!("{message}");
                if let Some(value) = R::instead_of_expected_panic() {
                    return value;
                }
            }
            panic!("{message}");
        }
    };
    let value = cx.finish(result, Threads::Listed(&[tid]), started.elapsed());
    drop(checked);
    value
}

/// The threads whose children count as the test's.
#[derive(Clone, Copy)]
enum Threads<'a> {
    /// The calling thread, which ran the body.
    Current,
    /// These threads (`None`: a thread whose id is unknown).
    Listed(&'a [Option<u32>]),
}

/// What the body's thread tells the test's thread: its id first, then how the body ended.
enum Message<R> {
    Tid(Option<u32>),
    Done(std::thread::Result<R>),
}

fn humanize(duration: Duration) -> String {
    if duration.subsec_millis() == 0 {
        format!("{}s", duration.as_secs())
    } else {
        format!("{}ms", duration.as_millis())
    }
}

/// How a test body failed.
enum Failure {
    Panicked(String),
    Returned(String),
    TimedOut(String),
}

impl Failure {
    fn message(&self) -> &str {
        match self {
            Failure::Panicked(m) | Failure::Returned(m) | Failure::TimedOut(m) => m,
        }
    }

    fn outcome(&self) -> &'static str {
        match self {
            Failure::Panicked(_) | Failure::Returned(_) => "failed",
            Failure::TimedOut(_) => "timed_out",
        }
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic with a non-string payload".to_owned())
}

impl Context {
    /// Diagnoses, checks for leaks and records; then hands back the body's result, or fails
    /// the test when it leaked with `leaks = "fail"`.
    fn finish<R: TestReturn>(
        &self,
        result: std::thread::Result<R>,
        tids: Threads<'_>,
        elapsed: Duration,
    ) -> R {
        let failure = match &result {
            Err(payload) if !self.test.should_panic => {
                Some(Failure::Panicked(panic_message(payload.as_ref())))
            }
            Ok(value) => value.failure().map(Failure::Returned),
            Err(_) => None,
        };
        let leaks = match &failure {
            Some(failure) => self.report(failure, tids, elapsed),
            None => self.report_success(tids, elapsed, result.is_err()),
        };
        match result {
            Err(payload) => resume_unwind(payload),
            Ok(value) => {
                if self.test.leaks == Leaks::Fail && !leaks.is_empty() && failure.is_none() {
                    let codes: Vec<String> = leaks
                        .iter()
                        .map(|d| format!("{} {}", d.code, d.summary))
                        .collect();
                    panic!(
                        "test `{}` leaked (leaks = \"fail\"): {}",
                        self.test.name,
                        codes.join("; ")
                    );
                }
                value
            }
        }
    }

    fn report_success(&self, tids: Threads<'_>, elapsed: Duration, panicked: bool) -> Vec<Diagnosis> {
        let leaks = self.leaks(tids);
        self.print_leaks(&leaks);
        let outcome = if panicked {
            "panicked_as_expected"
        } else {
            "passed"
        };
        self.record(outcome, None, &[], &leaks, elapsed);
        leaks
    }

    fn report(&self, failure: &Failure, tids: Threads<'_>, elapsed: Duration) -> Vec<Diagnosis> {
        // The harness's own "timed out" is no socket timeout: say only what each address shows.
        let symptom = match failure {
            Failure::TimedOut(_) => None,
            _ => crate::diagnose::symptom(failure.message()),
        };
        let diagnoses = self.diagnose(symptom);
        if !diagnoses.is_empty() {
            let mut text = format!("\nloopcheck: `{}` failed; its addresses:\n", self.test.name);
            for diagnosis in &diagnoses {
                text.push_str(&diagnosis.to_string());
                text.push('\n');
            }
            eprint!("{text}");
        }
        let leaks = self.leaks(tids);
        self.print_leaks(&leaks);
        self.record(
            failure.outcome(),
            Some(failure.message()),
            &diagnoses,
            &leaks,
            elapsed,
        );
        leaks
    }

    /// The diagnosis of every address the test was given, guided by the failure message.
    fn diagnose(&self, kind: Option<io::ErrorKind>) -> Vec<Diagnosis> {
        let diagnoser = Diagnoser::default();
        let own = std::process::id();
        self.given
            .iter()
            .flat_map(|given| given.addrs.iter())
            .filter_map(|&addr| match kind {
                Some(kind) => diagnoser.explain_symptom(kind, addr),
                None => Some(diagnoser.status(addr)),
            })
            // The test's own listener at its own address is what it was given, not a cause.
            .filter(|d| !(d.code == Code::PortInUse && d.holder().is_some_and(|p| p.pid == own)))
            .collect()
    }

    /// LC012 for every given address still listening, LC013 for every child of the test's
    /// threads still running.
    fn leaks(&self, tids: Threads<'_>) -> Vec<Diagnosis> {
        let mut leaks = Vec::new();
        for given in &self.given {
            for &addr in &given.addrs {
                if still_bound(given.protocol, addr) {
                    leaks.push(leaked_listener(self.test.name, given.protocol, addr));
                }
            }
        }
        for pid in children(tids) {
            if let Some(child) = ProcessInfo::read(pid).filter(|p| p.state != Some('Z')) {
                let mut d = Diagnosis::new(
                    Code::LeakedChild,
                    None,
                    format!(
                        "test `{}` ended and its child pid {} `{}` is still running",
                        self.test.name,
                        child.pid,
                        child.command()
                    ),
                    "keep the `Child` and end it before the test returns (`child.kill()` then `child.wait()`, for example in a guard's `Drop`)",
                );
                d.processes.push(crate::diagnose::process_ref(&child, "child"));
                leaks.push(d);
            }
        }
        leaks
    }

    fn print_leaks(&self, leaks: &[Diagnosis]) {
        if leaks.is_empty() {
            return;
        }
        let mut text = String::new();
        for leak in leaks {
            text.push_str(&leak.to_string());
            text.push('\n');
        }
        eprint!("{text}");
    }

    /// Writes one JSON record into `LOOPCHECK_RUN_DIR`: a line of its `records.jsonl`.
    fn record(
        &self,
        outcome: &str,
        message: Option<&str>,
        diagnoses: &[Diagnosis],
        leaks: &[Diagnosis],
        elapsed: Duration,
    ) {
        let Some(dir) = crate::run::run_dir() else {
            return;
        };
        let record = RecordFields {
            name: self.test.name,
            outcome: Some(outcome),
            message,
            given: &self.given,
            diagnoses,
            leaks,
            duration_ms: Some(elapsed.as_millis() as u64),
        };
        let ports = self.given.iter().map(|g| g.port);
        if let Err(err) = crate::run::append_record(dir, &record, ports, process_fields()) {
            eprintln!(
                "loopcheck: cannot write the run record of `{}` into {}: {err}",
                self.test.name,
                dir.display()
            );
        }
    }
}

/// The end of this process's run records: its pid and test binary, encoded once per process
/// (`current_exe` is a `readlink`).
fn process_fields() -> &'static [u8] {
    static FIELDS: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    FIELDS.get_or_init(|| {
        let binary = std::env::current_exe().ok();
        crate::run::process_fields(Some(own_pid()), binary.as_deref())
    })
}

/// Whether something still listens on (TCP) or is bound to (UDP) `addr`. One question to
/// the kernel: for TCP on Linux an exact sock_diag lookup, else (or when netlink is
/// unavailable) a bind; only when something is found is the socket table read.
fn still_bound(protocol: Protocol, addr: SocketAddr) -> bool {
    #[cfg(target_os = "linux")]
    if protocol == Protocol::Tcp
        && let Ok(listening) = crate::scan::tcp_listening(addr)
    {
        return listening;
    }
    let attempt = || -> io::Result<()> {
        let socket = match protocol {
            // With SO_REUSEADDR, TIME_WAIT leftovers do not count, only a listener; and
            // without listen() the bind alone answers, saving the syscall.
            Protocol::Tcp => {
                let socket =
                    socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, None)?;
                socket.set_reuse_address(true)?;
                socket
            }
            Protocol::Udp => {
                socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::DGRAM, None)?
            }
        };
        socket.bind(&addr.into())
    };
    attempt().is_err_and(|e| e.kind() == io::ErrorKind::AddrInUse)
}

fn leaked_listener(test: &str, protocol: Protocol, addr: SocketAddr) -> Diagnosis {
    let table = crate::scan::scan_with(&ScanOptions {
        tcp: protocol == Protocol::Tcp,
        udp: protocol == Protocol::Udp,
        listen_only: true,
        ports: Some(vec![addr.port()]),
        ..ScanOptions::all()
    })
    .ok();
    let holder = table.as_ref().and_then(|t| {
        t.listeners_on(addr.port())
            .filter(|s| s.local.ip() == addr.ip() || s.local.ip().is_unspecified())
            .find_map(|s| t.owners(s).next())
    });
    let own = holder.is_some_and(|p| p.pid == std::process::id());
    let who = match holder {
        Some(p) if own => format!(
            "this test process (pid {}): a thread or task still holds the socket",
            p.pid
        ),
        Some(p) => format!("pid {} `{}`", p.pid, p.command()),
        None => "a process whose owner is hidden".to_owned(),
    };
    let mut d = Diagnosis::new(
        Code::LeakedListener,
        Some(addr),
        format!("test `{test}` ended and {addr} is still bound, by {who}"),
        "stop the server before the test returns: keep its handle (a thread's JoinHandle with a shutdown signal, a `Child`) and end it, so the next test starts clean",
    );
    if let Some(p) = holder {
        d.processes.push(crate::diagnose::process_ref(p, "listener"));
    }
    d
}

/// Whether any thread of this process has a child, alive or not yet reaped: `false` saves
/// reading the per-thread `children` files (an open, a read and a close each) after every
/// test that spawned nothing. One `waitid` answers it: `ECHILD` means no child at all.
/// `WNOWAIT` leaves an exited child to be reaped by its owner, `WNOHANG` never blocks, and
/// `__WALL` counts children of any exit signal.
fn may_have_children() -> bool {
    #[cfg(target_os = "linux")]
    {
        let mut info = std::mem::MaybeUninit::<libc::siginfo_t>::zeroed();
        // SAFETY: `info` is valid for writes; with WNOWAIT no child changes state.
        let rc = unsafe {
            libc::waitid(
                libc::P_ALL,
                0,
                info.as_mut_ptr(),
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT | libc::__WALL,
            )
        };
        !(rc == -1 && io::Error::last_os_error().raw_os_error() == Some(libc::ECHILD))
    }
    #[cfg(not(target_os = "linux"))]
    {
        true
    }
}

/// The thread id of the caller (Linux), to find the children it spawns.
fn thread_id() -> Option<u32> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid has no preconditions.
        u32::try_from(unsafe { libc::gettid() }).ok()
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

/// Live child processes started by the given threads of this process (Linux): the kernel lists
/// a task's children in `/proc/self/task/TID/children`, which attributes each child to the
/// test whose thread spawned it even when tests share the process. Under nextest's
/// process-per-test mode every thread of the process counts.
fn children(tids: Threads<'_>) -> Vec<u32> {
    if !may_have_children() {
        return Vec::new();
    }
    let current = [thread_id()];
    let tids = match tids {
        Threads::Current => &current[..],
        Threads::Listed(tids) => tids,
    };
    let paths: Vec<PathBuf> = if one_test_per_process() {
        std::fs::read_dir("/proc/self/task")
            .map(|entries| {
                entries
                    .filter_map(|e| Some(e.ok()?.path().join("children")))
                    .collect()
            })
            .unwrap_or_default()
    } else {
        tids.iter()
            .flatten()
            .map(|tid| PathBuf::from(format!("/proc/self/task/{tid}/children")))
            .collect()
    };
    let mut pids: Vec<u32> = paths
        .iter()
        .filter_map(crate::sys::read_small)
        .flat_map(|text| {
            text.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect();
    pids.sort_unstable();
    pids.dedup();
    pids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_report_errors_like_libtest() {
        assert_eq!(().failure(), None);
        assert_eq!(Ok::<(), String>(()).failure(), None);
        assert_eq!(Err::<(), _>("boom").failure().as_deref(), Some("\"boom\""));
    }
}
