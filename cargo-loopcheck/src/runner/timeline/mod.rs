//! The socket timeline: which process held which loopback or wildcard listener, and which test
//! processes lived, from when to when, while one round of the suite ran. The post-run scan
//! cannot see a holder that lived only during a test; the timeline can.
//!
//! [`Sampler`] records it on a thread of its own (Linux; elsewhere it records nothing and says
//! so); the blamer asks it about a failing test's ports and time window.

pub(crate) mod code;
pub(crate) mod holders;
#[cfg(target_os = "linux")]
mod sampler;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use loopcheck::report::ProcessRef;
use loopcheck::scan::Protocol;

/// How often the sampler looks: short enough to catch a listener that lives 10 ms (see the
/// catch-rate table in `docs/benchmarks.md`), long enough to cost little.
pub(crate) const INTERVAL: Duration = Duration::from_millis(5);

/// At most this many socket spans and process lifetimes each are kept; later ones are counted
/// as dropped.
pub(crate) const MAX_ENTRIES: usize = 20_000;

/// At most this many sample times are kept (about 16 minutes at [`INTERVAL`]); past it,
/// sightings are widened by the longest gap seen between samples instead.
#[cfg_attr(
    not(target_os = "linux"),
    allow(dead_code, reason = "only the Linux sampler takes samples")
)]
pub(crate) const MAX_TICKS: usize = 200_000;

/// The environment variable that turns the timeline off (`LOOPCHECK_TIMELINE=off`).
pub(crate) const SWITCH_VAR: &str = "LOOPCHECK_TIMELINE";

/// A process as the timeline names it: read once, when first seen.
#[derive(Debug, Clone, Default)]
pub(crate) struct Owner {
    pub(crate) pid: u32,
    pub(crate) command: String,
    /// Its command line was empty when read (a process in the middle of `exec`).
    #[cfg_attr(
        not(target_os = "linux"),
        allow(dead_code, reason = "only the Linux sampler reads processes")
    )]
    pub(crate) command_line_empty: bool,
    pub(crate) exe: Option<PathBuf>,
    /// The executable of the test binary it is, or that started it.
    pub(crate) test_exe: Option<PathBuf>,
    pub(crate) user: Option<String>,
    /// The test it is (or was started by): `NEXTEST_TEST_NAME`, the `--exact NAME` of a
    /// nextest test process, or `LOOPCHECK_TEST`.
    pub(crate) test: Option<String>,
    /// `NEXTEST_BINARY_ID`.
    pub(crate) binary_id: Option<String>,
    /// `NEXTEST_ATTEMPT_ID`: one per try of a test under retries.
    pub(crate) attempt: Option<String>,
    /// `LOOPCHECK_RUN_DIR`: the copy of the suite it belongs to.
    pub(crate) run_dir: Option<PathBuf>,
    /// Started by this `cargo loopcheck test` (a descendant of it).
    pub(crate) of_run: bool,
    /// A test process itself (nextest's `binary --exact NAME`, or a cargo test binary), not a
    /// child a test started.
    pub(crate) is_test_process: bool,
}

/// A socket seen held by one owner.
#[derive(Debug, Clone)]
pub(crate) struct Held {
    pub(crate) protocol: Protocol,
    pub(crate) local: SocketAddr,
    #[cfg_attr(
        not(target_os = "linux"),
        allow(dead_code, reason = "only the Linux sampler keys sockets by inode")
    )]
    pub(crate) inode: Option<u64>,
    /// `None` when the owner could not be found (hidden, or gone before it was looked for).
    pub(crate) owner: Option<Owner>,
    pub(crate) first: Duration,
    pub(crate) last: Duration,
    /// A TCP listener's accept queue: its backlog and the lengths seen, as changes.
    pub(crate) backlog: u32,
    pub(crate) queue: Vec<(Duration, u32)>,
}

/// A process of the run, from when it was first seen to when it was last seen.
#[derive(Debug, Clone)]
pub(crate) struct Lifetime {
    pub(crate) owner: Owner,
    pub(crate) first: Duration,
    pub(crate) last: Duration,
}

/// A stretch of the round.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Window {
    pub(crate) from: Duration,
    pub(crate) to: Duration,
}

/// What the sampler recorded during one round.
#[derive(Debug, Clone, Default)]
pub(crate) struct Timeline {
    pub(crate) sockets: Vec<Held>,
    pub(crate) processes: Vec<Lifetime>,
    pub(crate) interval: Duration,
    pub(crate) samples: u64,
    /// When each sample was taken (the first [`MAX_TICKS`]).
    pub(crate) ticks: Vec<Duration>,
    /// The longest time between two samples: a loaded host delays the sampler.
    pub(crate) max_gap: Duration,
    /// Entries that did not fit under [`MAX_ENTRIES`].
    pub(crate) dropped: u64,
    /// Why nothing was recorded: another platform, netlink refused, turned off.
    pub(crate) missing: Option<String>,
}

/// Where a failing test ran: its copy of the suite, its binary and name.
pub(crate) struct Subject<'a> {
    pub(crate) run_dir: &'a Path,
    pub(crate) binary: &'a str,
    pub(crate) name: &'a str,
    /// The binary's executable stem cargo test ran it from (`echo` for `deps/echo-9a8b`), when
    /// the runner is cargo test.
    pub(crate) crate_name: Option<&'a str>,
}

impl Timeline {
    /// Adds this round's counts to `summary` (which starts as recorded, before any round).
    pub(crate) fn add_to(&self, summary: &mut super::model::TimelineSummary, first: bool) {
        summary.recorded = (first || summary.recorded) && self.missing.is_none();
        summary.interval_ms = summary.interval_ms.max(self.interval.as_millis() as u64);
        summary.samples += self.samples;
        summary.sockets += self.sockets.len();
        summary.processes += self.processes.len();
        summary.dropped += self.dropped;
        if summary.note.is_none() {
            summary.note.clone_from(&self.missing);
        }
        if self.dropped > 0 && self.missing.is_none() {
            summary.note = Some(format!(
                "the socket timeline kept at most {MAX_ENTRIES} sockets and {MAX_ENTRIES} processes a round and dropped {} more: holders seen after that are not named",
                summary.dropped
            ));
        }
    }

    /// The timeline of a platform or setting that records none.
    pub(crate) fn missing(why: impl Into<String>) -> Timeline {
        Timeline {
            missing: Some(why.into()),
            ..Timeline::default()
        }
    }

    /// The test processes of `subject`: nextest's process for the test, or, under cargo test,
    /// the binary's process, which runs all its tests.
    pub(crate) fn processes_of<'t>(&'t self, subject: &'t Subject<'_>) -> impl Iterator<Item = &'t Lifetime> {
        self.processes
            .iter()
            .filter(move |l| l.owner.is_test_process && l.owner.belongs_to(subject))
    }

    /// When `subject` ran: the span of its test processes, `None` when none was seen.
    pub(crate) fn window_of(&self, subject: &Subject<'_>) -> Option<Window> {
        self.processes_of(subject).fold(None, |window, l| {
            Some(match window {
                None => Window {
                    from: l.first,
                    to: l.last,
                },
                Some(w) => Window {
                    from: w.from.min(l.first),
                    to: w.to.max(l.last),
                },
            })
        })
    }

    /// Whether something seen from `first` to `last` may have been alive during `window`.
    /// Each of them lived somewhere between the sample before its first sighting and the
    /// sample after its last one.
    pub(crate) fn may_overlap(&self, window: Window, first: Duration, last: Duration) -> bool {
        let (from, to) = self.widen(first, last);
        let (window_from, window_to) = self.widen(window.from, window.to);
        from < window_to && window_from < to
    }

    /// The samples around a span seen from `first` to `last`.
    fn widen(&self, first: Duration, last: Duration) -> (Duration, Duration) {
        let gap = self.max_gap.max(self.interval);
        let covered = self.ticks.last().is_some_and(|&end| end >= last);
        if !covered {
            return (first.saturating_sub(gap), last + gap);
        }
        let at = self.ticks.partition_point(|&t| t < first);
        let before = at.checked_sub(1).map_or(Duration::ZERO, |i| self.ticks[i]);
        let after = self.ticks.partition_point(|&t| t <= last);
        let after = self.ticks.get(after).copied().unwrap_or(last + gap);
        (before, after)
    }
}

impl Owner {
    /// Whether this process is, or was started by, `subject`.
    pub(crate) fn belongs_to(&self, subject: &Subject<'_>) -> bool {
        if self.run_dir.as_deref() != Some(subject.run_dir) {
            return false;
        }
        match (&self.binary_id, &self.test) {
            (Some(binary), Some(test)) => binary == subject.binary && test == subject.name,
            _ => match subject.crate_name {
                Some(crate_name) => self.exe_crate() == Some(crate_name),
                None => false,
            },
        }
    }

    /// The crate name of the test binary it is or was started by: `echo` for `deps/echo-9a8b`.
    /// Under cargo test, the tests of a binary share its process.
    pub(crate) fn exe_crate(&self) -> Option<&str> {
        let name = self.test_exe.as_deref()?.file_name()?.to_str()?;
        let name = name.trim_end_matches(" (deleted)");
        Some(name.rsplit_once('-').map_or(name, |(stem, _)| stem))
    }

    /// How a diagnosis names it, with when it held the socket.
    pub(crate) fn process_ref(
        &self,
        role: &str,
        binary: Option<String>,
        seen: (Duration, Duration),
    ) -> ProcessRef {
        ProcessRef {
            pid: self.pid,
            command: self.command.clone(),
            user: self.user.clone(),
            exe: self.exe.clone(),
            test: self.test.clone(),
            role: role.to_owned(),
            binary,
            first_seen: Some(round_ms(seen.0)),
            last_seen: Some(round_ms(seen.1)),
        }
    }
}

impl Held {
    /// The accept queue lengths seen during `window`, and the last one before it.
    fn queue_during(&self, window: Window) -> (Option<u32>, Vec<u32>) {
        let before = self
            .queue
            .iter()
            .take_while(|(at, _)| *at < window.from)
            .last()
            .map(|&(_, len)| len);
        let during = self
            .queue
            .iter()
            .filter(|(at, _)| *at >= window.from && *at <= window.to)
            .map(|&(_, len)| len)
            .collect();
        (before, during)
    }

    /// Whether a connection arrived in the listener's accept queue during `window`.
    pub(crate) fn grew_during(&self, window: Window) -> bool {
        let (before, during) = self.queue_during(window);
        let lengths: Vec<u32> = before.into_iter().chain(during).collect();
        lengths.windows(2).any(|pair| pair[1] > pair[0])
            || (before.is_none() && lengths.first().is_some_and(|&l| l > 0))
    }

    /// Whether the listener's accept queue held connections during `window` and never shrank:
    /// nobody called `accept()` on it. Returns the longest queue seen then.
    pub(crate) fn stuck_during(&self, window: Window) -> Option<u32> {
        if self.protocol != Protocol::Tcp {
            return None;
        }
        let (before, during) = self.queue_during(window);
        let lengths: Vec<u32> = before.into_iter().chain(during).collect();
        let shrank = lengths.windows(2).any(|pair| pair[1] < pair[0]);
        let longest = lengths.iter().copied().max()?;
        (longest > 0 && !shrank && lengths.last().is_some_and(|&l| l > 0)).then_some(longest)
    }
}

/// Seconds with millisecond precision, as the report shows them.
pub(crate) fn round_ms(at: Duration) -> f64 {
    (at.as_millis() as f64) / 1000.0
}

/// `0.41 s`.
pub(crate) fn seconds(at: Duration) -> String {
    format!("{:.2} s", at.as_secs_f64())
}

/// Whether a socket bound to `bound` takes the port from a bind of `wanted` (or answers a
/// connection to it): the same address, or a wildcard on either side within a family (`[::]`
/// also covers IPv4 unless it is IPv6-only, which the dump does not say).
pub(crate) fn conflicts(bound: IpAddr, wanted: IpAddr) -> bool {
    let unmap = |ip: IpAddr| match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    let (bound, wanted) = (unmap(bound), unmap(wanted));
    bound == wanted
        || match (bound, wanted) {
            (IpAddr::V6(b), _) if b.is_unspecified() => true,
            (_, IpAddr::V6(w)) if w.is_unspecified() => true,
            (IpAddr::V4(b), IpAddr::V4(w)) => b.is_unspecified() || w.is_unspecified(),
            _ => false,
        }
}

/// Whether a listener on `ip` matters to tests: loopback or wildcard.
#[cfg_attr(
    not(target_os = "linux"),
    allow(
        dead_code,
        reason = "the sampler is Linux-only; the filter is tested everywhere"
    )
)]
pub(crate) fn watched(ip: IpAddr) -> bool {
    ip.is_loopback()
        || ip.is_unspecified()
        || matches!(ip, IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()))
}

/// Records a timeline on its own thread from [`Sampler::start`] to [`Sampler::stop`].
pub(crate) struct Sampler {
    #[cfg(target_os = "linux")]
    inner: Option<sampler::Running>,
    off: Option<String>,
}

impl Sampler {
    /// Starts sampling every [`INTERVAL`], unless `LOOPCHECK_TIMELINE=off`.
    pub(crate) fn start() -> Sampler {
        Sampler::every(INTERVAL)
    }

    /// Starts sampling every `interval`, unless `LOOPCHECK_TIMELINE=off`.
    pub(crate) fn every(interval: Duration) -> Sampler {
        if std::env::var_os(SWITCH_VAR).is_some_and(|v| v == "off" || v == "0") {
            return Sampler {
                #[cfg(target_os = "linux")]
                inner: None,
                off: Some(format!("no socket timeline was recorded: {SWITCH_VAR}=off")),
            };
        }
        #[cfg(target_os = "linux")]
        {
            match sampler::Running::start(interval) {
                Ok(running) => Sampler {
                    inner: Some(running),
                    off: None,
                },
                Err(error) => Sampler {
                    inner: None,
                    off: Some(format!(
                        "no socket timeline was recorded: its sampling thread could not start ({error})"
                    )),
                },
            }
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = interval;
            Sampler {
                off: Some(
                    "no socket timeline was recorded: it is recorded on Linux only, so holders that exited before the end of the round are not named".to_owned(),
                ),
            }
        }
    }

    /// Stops the sampler and returns what it recorded.
    pub(crate) fn stop(self) -> Timeline {
        #[cfg(target_os = "linux")]
        if let Some(running) = self.inner {
            return running.stop();
        }
        Timeline::missing(self.off.unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn listener(queue: &[(u64, u32)]) -> Held {
        Held {
            protocol: Protocol::Tcp,
            // loopcheck:allow(LC010): test data the code under test parses or prints, never bound
            local: "127.0.0.1:7000".parse().unwrap(),
            inode: Some(1),
            owner: None,
            first: ms(0),
            last: ms(1000),
            backlog: 128,
            queue: queue.iter().map(|&(at, len)| (ms(at), len)).collect(),
        }
    }

    #[test]
    fn a_queue_that_fills_and_never_drains_is_stuck() {
        let window = Window {
            from: ms(100),
            to: ms(600),
        };
        assert_eq!(
            listener(&[(0, 0), (150, 1), (300, 2)]).stuck_during(window),
            Some(2)
        );
        assert_eq!(
            listener(&[(0, 3)]).stuck_during(window),
            Some(3),
            "full before, never drained"
        );
        assert_eq!(
            listener(&[(0, 0), (150, 1), (160, 0)]).stuck_during(window),
            None,
            "accepted"
        );
        assert_eq!(listener(&[(0, 0)]).stuck_during(window), None, "never queued");
        assert_eq!(listener(&[]).stuck_during(window), None);
        let mut udp = listener(&[(0, 5)]);
        udp.protocol = Protocol::Udp;
        assert_eq!(
            udp.stuck_during(window),
            None,
            "a UDP receive queue is no accept queue"
        );
    }

    #[test]
    fn sightings_are_widened_to_the_samples_around_them() {
        let timeline = Timeline {
            interval: ms(5),
            ticks: (0..100).map(|i| ms(5 * i)).collect(),
            max_gap: ms(5),
            ..Timeline::default()
        };
        let window = Window {
            from: ms(100),
            to: ms(200),
        };
        assert!(timeline.may_overlap(window, ms(150), ms(160)));
        // First seen one sample after the test was last seen: it may have started before.
        assert!(timeline.may_overlap(window, ms(205), ms(300)));
        assert!(
            !timeline.may_overlap(window, ms(210), ms(300)),
            "two samples after"
        );
        assert!(timeline.may_overlap(window, ms(0), ms(95)));
        assert!(!timeline.may_overlap(window, ms(0), ms(90)));
        // Past the kept samples, the longest gap is the margin.
        let late = Window {
            from: ms(1000),
            to: ms(1100),
        };
        assert!(timeline.may_overlap(late, ms(1104), ms(1200)));
        assert!(!timeline.may_overlap(late, ms(1110), ms(1200)));
    }

    #[test]
    fn conflicting_addresses() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(conflicts(ip("0.0.0.0"), ip("127.0.0.1")));
        assert!(conflicts(ip("127.0.0.1"), ip("0.0.0.0")));
        assert!(conflicts(ip("::"), ip("127.0.0.1")));
        assert!(!conflicts(ip("127.0.0.2"), ip("127.0.0.1")));
        assert!(!conflicts(ip("::1"), ip("127.0.0.1")));
        assert!(watched(ip("127.0.0.1")) && watched(ip("::")) && watched(ip("::ffff:127.0.0.1")));
        assert!(!watched(ip("10.0.0.1")));
    }

    #[test]
    fn owners_belong_to_their_test_and_copy() {
        let dir = Path::new("/r/run.0.0");
        let nextest = Owner {
            test: Some("serves".into()),
            binary_id: Some("app::upgrade".into()),
            run_dir: Some(dir.into()),
            ..Owner::default()
        };
        let subject = |name| Subject {
            run_dir: dir,
            binary: "app::upgrade",
            name,
            crate_name: None,
        };
        assert!(nextest.belongs_to(&subject("serves")));
        assert!(!nextest.belongs_to(&subject("other")));
        let other_copy = Subject {
            run_dir: Path::new("/r/run.0.1"),
            ..subject("serves")
        };
        assert!(!nextest.belongs_to(&other_copy));
        let cargo_test = Owner {
            test_exe: Some("/w/target/debug/deps/upgrade-0123456789abcdef".into()),
            run_dir: Some(dir.into()),
            ..Owner::default()
        };
        assert_eq!(cargo_test.exe_crate(), Some("upgrade"));
        let by_binary = Subject {
            crate_name: Some("upgrade"),
            ..subject("anything")
        };
        assert!(cargo_test.belongs_to(&by_binary));
    }
}
