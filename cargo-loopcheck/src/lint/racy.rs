//! LC014 racy-allocation: a port picked by number and let go (`portpicker::pick_unused_port`
//! and its kin), and a listener dropped right after its port is read, in place or in a helper
//! that returns the number.

use loopcheck::report::Code;

use super::facts::Racy;
use super::items::Signature;
use super::pickers::{ProbeScan, reads_port, returns_port, skip_unwraps};
use super::tokens::{Pos, Tok};
use super::walk::Linter;

impl Linter<'_> {
    /// A call of a function of another file that returns a racy port: LC014 at the call, as
    /// in the helper's own file.
    pub(super) fn check_racy_helper(&mut self, segments: &[String], at: Pos, shown: &str) {
        let workspace = self.workspace;
        // Expanded first: `use ports::free_port as spare;` then `spare()` calls `free_port`.
        let expanded = workspace.expand(&self.imports, segments);
        let Some(name) = expanded.last() else {
            return;
        };
        self.note_name(name);
        if !workspace.has_function(name) {
            return;
        }
        let Some(fact) = workspace.function(&expanded, false, self.file, self.imported(segments)) else {
            return;
        };
        let Some(racy) = fact.racy.as_ref().filter(|_| *fact.file != *self.file) else {
            return;
        };
        let defined = format!("`{shown}` (defined at {}:{})", fact.file, fact.line);
        let message = match racy {
            Racy::Picks(picker) => format!(
                "{defined} returns a port `{picker}` picks and lets go: another process can bind it before the test does"
            ),
            Racy::Drops(call) => format!(
                "{defined} returns the port of a listener it drops (`{call}`): another process can bind the port before the test does"
            ),
        };
        let suggestion = self.suggest_socket();
        self.hit(Code::RacyAllocation, at, None, message, suggestion);
    }

    pub(super) fn suggest_socket(&self) -> String {
        format!(
            "use `loopcheck::pick_unused_port()` (same signature; the port stays leased), or take the socket from the test: `{}(listener: {})`",
            self.test_form(),
            self.listener_type()
        )
    }

    pub(super) fn check_racy_call(&mut self, segments: &[String], at: Pos) {
        if let Some(full) = self.imports.racy(segments, &|name| self.local_fns.contains(name)) {
            let message = format!(
                "`{}` picks a port and lets it go: another process can bind it before the test does",
                full.join("::")
            );
            let suggestion = self.suggest_socket();
            self.hit(Code::RacyAllocation, at, None, message, suggestion);
        }
    }

    /// A function returning a port that binds a listener, reads its port and drops it.
    pub(super) fn check_probe_function(&mut self, sig: &Signature<'_>) {
        if !returns_port(sig.ret) {
            return;
        }
        let mut scan = ProbeScan::default();
        scan.scan(sig.body);
        if let Some((_, at, call)) = scan
            .listeners
            .iter()
            .find(|(name, _, _)| scan.port_read.contains(name))
        {
            let message = format!(
                "`{}` returns the port of a listener it drops (`{call}`): another process can bind the port before the test does",
                sig.name
            );
            let socket = if call.contains("Udp") {
                "UdpSocket"
            } else {
                "TcpListener"
            };
            let suggestion = format!(
                "keep the socket and hand it over: `#[loopback_test] fn name(socket: {socket})`, or use `loopcheck::pick_unused_port()` (same signature; the port stays leased)"
            );
            self.hit(Code::RacyAllocation, *at, None, message, suggestion);
        }
    }

    /// `TcpListener::bind(..)?.local_addr()?.port()`: the listener of the call ending at `end`
    /// is dropped as soon as its port is read.
    pub(super) fn check_port_of_dropped_listener(&mut self, toks: &[Tok], end: usize, at: Pos, shown: &str) {
        if reads_port(toks, skip_unwraps(toks, end + 1)) {
            let message = format!(
                "the listener of `{shown}` is dropped right after its port is read: another process can bind the port before the test does"
            );
            let suggestion = self.suggest_socket();
            self.hit(Code::RacyAllocation, at, None, message, suggestion);
        }
    }
}
