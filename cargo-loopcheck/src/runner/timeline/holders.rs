//! Naming the holder at the moment of failure: the sockets the timeline saw on a failing test's
//! ports while that test ran, turned into LC001 (the port was taken, or served by another
//! test) and LC006 (a listener that never accepted).

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use loopcheck::report::{Code, Diagnosis};

use super::{Held, Owner, Subject, Timeline, Window, seconds};

/// What a failing test gives the timeline to go on.
pub(crate) struct Question<'a> {
    /// The socket error of its failure message; `None` when the message names none (an
    /// assertion about what a server answered).
    pub(crate) kind: Option<io::ErrorKind>,
    /// The addresses written in its failure message: certain.
    pub(crate) mentioned: &'a [SocketAddr],
    /// The ports its code names: its function and the helpers it calls first, then the rest of
    /// its file, then the library constants it names.
    pub(crate) ports: &'a [u16],
}

/// Where a candidate address came from, for how sure the diagnosis is.
#[derive(Clone, Copy, PartialEq)]
enum Source {
    Message,
    Code,
    Timeline,
}

/// One holder that may explain the failure.
struct Candidate<'t> {
    addr: SocketAddr,
    held: &'t Held,
    stuck: Option<u32>,
}

/// How the workspace names what the timeline saw.
pub(crate) struct Names<'a> {
    /// The test binary of a holder.
    pub(crate) binary_of: &'a dyn Fn(&Owner) -> Option<String>,
    /// Where a test binary's sources hard-code a port (`tests/upgrade.rs:8`).
    pub(crate) places: &'a dyn Fn(&str, u16) -> Vec<String>,
    /// The process that holds a socket (by inode and port) now: for sockets the sampler did
    /// not resolve, such as those open before the run.
    pub(crate) owner_now: &'a dyn Fn(u64, u16) -> Option<Owner>,
}

/// Diagnoses of `subject`'s failure from the timeline: the holders of its ports while it ran.
/// Empty when the timeline shows nothing that explains it.
pub(crate) fn explain(
    timeline: &Timeline,
    subject: &Subject<'_>,
    question: &Question<'_>,
    names: &Names<'_>,
) -> Vec<Diagnosis> {
    if timeline.missing.is_some() {
        return Vec::new();
    }
    let seen = timeline.window_of(subject);
    let window = seen.unwrap_or(Window {
        from: std::time::Duration::ZERO,
        to: timeline
            .processes
            .iter()
            .map(|l| l.last)
            .chain(timeline.sockets.iter().map(|h| h.last))
            .max()
            .unwrap_or_default(),
    });
    let timed_out = question.kind == Some(io::ErrorKind::TimedOut);
    let in_use = question.kind == Some(io::ErrorKind::AddrInUse);
    // A plain assertion, or an early EOF: only another test's server explains it.
    let served = !timed_out && !in_use;

    let mine = |held: &Held| held.owner.as_ref().is_some_and(|o| o.belongs_to(subject));
    let keep = |held: &Held| -> Option<Option<u32>> {
        if timed_out {
            return held.stuck_during(window).map(Some);
        }
        if mine(held) {
            return None;
        }
        if served {
            let other_test = held
                .owner
                .as_ref()
                .is_some_and(|o| o.of_run && (o.test.is_some() || o.test_exe.is_some()));
            return other_test.then_some(None);
        }
        Some(None)
    };
    let candidates_at = |addr: SocketAddr, port_only: bool| -> Vec<Candidate<'_>> {
        let held: Vec<&Held> = timeline
            .sockets
            .iter()
            .filter(|h| h.local.port() == addr.port())
            .filter(|h| port_only || super::conflicts(h.local.ip(), addr.ip()))
            .filter(|h| timeline.may_overlap(window, h.first, h.last))
            .collect();
        // Its own server on the port means it did talk to its own server.
        if served && held.iter().any(|h| mine(h)) {
            return Vec::new();
        }
        held.into_iter()
            .filter_map(|h| {
                keep(h).map(|stuck| Candidate {
                    addr: SocketAddr::new(h.local.ip(), addr.port()),
                    held: h,
                    stuck,
                })
            })
            .collect()
    };

    let (source, mut candidates) = if !question.mentioned.is_empty() {
        let found = question
            .mentioned
            .iter()
            .flat_map(|&addr| candidates_at(addr, false))
            .collect();
        (Source::Message, found)
    } else {
        let from_code: Vec<Candidate<'_>> = question
            .ports
            .iter()
            .flat_map(|&port| candidates_at(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port), true))
            .collect();
        // Ports of its own code that nobody else held: the timeline does not guess further.
        if !from_code.is_empty() || served || !question.ports.is_empty() {
            (Source::Code, from_code)
        } else {
            // No port known: whatever the timeline saw that fits, from other tests of this run
            // (or, for a timeout, any listener that accepted nothing).
            let found = timeline
                .sockets
                .iter()
                .filter(|h| timeline.may_overlap(window, h.first, h.last))
                // A timeout: a listener this test's connection may have joined, whoever holds
                // it; otherwise other tests of this run.
                .filter(|h| {
                    if timed_out {
                        h.grew_during(window)
                    } else {
                        h.owner.as_ref().is_some_and(|o| o.of_run && o.test.is_some())
                    }
                })
                .filter_map(|h| {
                    keep(h).map(|stuck| Candidate {
                        addr: h.local,
                        held: h,
                        stuck,
                    })
                })
                .collect();
            (Source::Timeline, found)
        }
    };
    // One candidate per holder and port, the earliest sighting first.
    candidates.sort_by_key(|c| (c.held.first, c.addr.port()));
    let mut distinct: Vec<(u16, Option<u32>)> = Vec::new();
    candidates.retain(|c| {
        let key = (c.addr.port(), c.held.owner.as_ref().map(|o| o.pid));
        let fresh = !distinct.contains(&key);
        if fresh {
            distinct.push(key);
        }
        fresh
    });
    let count = candidates.len();
    candidates
        .iter()
        .take(3)
        .map(|candidate| {
            let mut d = diagnose(candidate, question.kind, seen, names);
            let basis = match source {
                Source::Message => None,
                Source::Code => Some("the failure message names no address; the port is one this test's code names"),
                Source::Timeline => Some("the failure message names no address and the test's code names no port; the timeline shows this holder while the test ran"),
            };
            if let Some(basis) = basis {
                let how_sure = if count == 1 {
                    "it is the only candidate".to_owned()
                } else {
                    format!("it is one of {count} candidates")
                };
                d.evidence.push(format!("{basis}: {how_sure}"));
            }
            if seen.is_none() {
                d.evidence.push("this test's own process was not seen (it ran for less than the sampling interval): holders during the whole round were considered".to_owned());
            }
            d
        })
        .collect()
}

/// The diagnosis of one candidate holder.
fn diagnose(
    candidate: &Candidate<'_>,
    kind: Option<io::ErrorKind>,
    window: Option<Window>,
    names: &Names<'_>,
) -> Diagnosis {
    let Candidate { addr, held, stuck } = candidate;
    let looked_up = match (&held.owner, held.inode) {
        (None, Some(inode)) => (names.owner_now)(inode, addr.port()),
        _ => None,
    };
    let owner = held.owner.as_ref().or(looked_up.as_ref());
    let binary = owner.and_then(names.binary_of);
    let who = describe(owner, binary.as_deref());
    let when = format!("from {} to {}", seconds(held.first), seconds(held.last));
    let ran = window.map_or_else(
        || "while it ran".to_owned(),
        |w| format!("while it ran, from {} to {}", seconds(w.from), seconds(w.to)),
    );
    let mut d = match (kind, stuck) {
        (Some(io::ErrorKind::TimedOut), Some(longest)) => Diagnosis::new(
            Code::ConnectTimeout,
            Some(*addr),
            format!(
                "{addr} was held by {who} {when}, and it accepted no connection {ran}: up to {longest} waited in its accept queue (backlog {})",
                held.backlog
            ),
            match owner {
                Some(owner) => format!(
                    "this listener is not serving: end it (`kill {}`) if it is not yours, or give the test a server of its own on a port from loopcheck (`loopcheck::tcp_listener()`)",
                    owner.pid
                ),
                None => "this listener is not serving; give the test a server of its own on a port from loopcheck (`loopcheck::tcp_listener()`)".to_owned(),
            },
        ),
        (Some(io::ErrorKind::AddrInUse), _) => Diagnosis::new(
            Code::PortInUse,
            Some(*addr),
            format!("{addr} was held by {who} {when}; this test failed to bind it {ran}"),
            "give each test its own port instead of a constant, so that no two tests share one: `#[loopback_test] fn name(addr: SocketAddr)`, or `loopcheck::tcp_listener()`",
        ),
        _ => Diagnosis::new(
            Code::PortInUse,
            Some(*addr),
            format!(
                "port conflict: {addr} was served by {who} {when}, {ran}; this test reaches the same port, so it talked to that server, not to one of its own"
            ),
            "give each test its own port instead of a constant, and pass the server's real address to the client: `#[loopback_test] fn name(addr: SocketAddr)`, or `loopcheck::tcp_listener()` and `listener.local_addr()`",
        ),
    };
    d.evidence.push(format!(
        "socket timeline: {} {} seen {when}{}",
        held.protocol,
        held.local,
        owner
            .map(|o| format!(
                ", held by pid {} `{}`",
                o.pid,
                loopcheck::scan::one_line(&o.command)
            ))
            .unwrap_or_else(|| ", owner not found (hidden, or gone before /proc was walked)".to_owned())
    ));
    // Under cargo test the tests of a binary share its process: name where it hard-codes
    // the port instead.
    if let (Some(binary), true) = (&binary, owner.is_some_and(|o| o.test.is_none())) {
        let places = (names.places)(binary, addr.port());
        if !places.is_empty() {
            d.evidence.push(format!(
                "binary `{binary}` hard-codes port {} at {}",
                addr.port(),
                places.join(", ")
            ));
        }
    }
    if let Some(owner) = owner {
        if let Some(attempt) = &owner.attempt {
            d.evidence
                .push(format!("the holder is nextest attempt `{attempt}`"));
        }
        d.processes
            .push(owner.process_ref("listener", binary, (held.first, held.last)));
    }
    d
}

/// `test `serves` (binary `app::upgrade`, pid 23737)`, or `pid 811 `python3 -m http.server``.
fn describe(owner: Option<&Owner>, binary: Option<&str>) -> String {
    let Some(owner) = owner else {
        return "a process whose owner was not found".to_owned();
    };
    match (&owner.test, binary) {
        (Some(test), Some(binary)) => format!("test `{test}` (binary `{binary}`, pid {})", owner.pid),
        (Some(test), None) => format!("test `{test}` (pid {})", owner.pid),
        (None, Some(binary)) => format!("test binary `{binary}` (pid {})", owner.pid),
        (None, None) => format!(
            "pid {} `{}`",
            owner.pid,
            loopcheck::scan::one_line(&owner.command)
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use loopcheck::scan::Protocol;

    use super::super::Lifetime;
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn test_process(name: &str, dir: &Path, pid: u32) -> Owner {
        Owner {
            pid,
            command: format!("/w/target/debug/deps/app-0123456789abcdef --exact {name}"),
            test: Some(name.to_owned()),
            binary_id: Some(format!("app::{name}")),
            run_dir: Some(dir.to_path_buf()),
            of_run: true,
            is_test_process: true,
            ..Owner::default()
        }
    }

    fn timeline(dir: &Path) -> Timeline {
        let holder = test_process("serves", dir, 100);
        let failing = test_process("binds", dir, 200);
        Timeline {
            sockets: vec![Held {
                protocol: Protocol::Tcp,
                // loopcheck:allow(LC010): test data the code under test parses or prints, never bound
                local: "127.0.0.1:18080".parse().unwrap(),
                inode: Some(7),
                owner: Some(holder.clone()),
                first: ms(410),
                last: ms(520),
                backlog: 128,
                queue: vec![(ms(410), 0)],
            }],
            processes: vec![
                Lifetime {
                    owner: holder,
                    first: ms(400),
                    last: ms(530),
                },
                Lifetime {
                    owner: failing,
                    first: ms(440),
                    last: ms(460),
                },
            ],
            interval: ms(5),
            samples: 100,
            ..Timeline::default()
        }
    }

    #[test]
    fn names_the_test_that_held_the_port_when_this_one_bound_it() {
        let dir = Path::new("/r/run.0.0");
        let timeline = timeline(dir);
        let subject = Subject {
            run_dir: dir,
            binary: "app::binds",
            name: "binds",
            crate_name: None,
        };
        let binary_of = |o: &Owner| o.binary_id.clone();
        let places = |_: &str, _: u16| Vec::new();
        let owner_now = |_: u64, _: u16| None;
        let names = Names {
            binary_of: &binary_of,
            places: &places,
            owner_now: &owner_now,
        };
        // loopcheck:allow(LC010): test data the code under test parses or prints, never bound
        let mentioned = ["127.0.0.1:18080".parse().unwrap()];
        let question = Question {
            kind: Some(io::ErrorKind::AddrInUse),
            mentioned: &mentioned,
            ports: &[],
        };
        let found = explain(&timeline, &subject, &question, &names);
        assert_eq!(found.len(), 1, "{found:?}");
        let d = &found[0];
        assert_eq!(d.code, Code::PortInUse);
        assert_eq!(
            d.summary,
            // loopcheck:allow(LC010): test data the code under test parses or prints, never bound
            "127.0.0.1:18080 was held by test `serves` (binary `app::serves`, pid 100) from 0.41 s to 0.52 s; this test failed to bind it while it ran, from 0.44 s to 0.46 s"
        );
        assert_eq!(d.processes[0].pid, 100);
        assert_eq!(d.processes[0].first_seen, Some(0.41));

        // No address in the message: the port from the code, and how sure.
        let question = Question {
            kind: Some(io::ErrorKind::AddrInUse),
            mentioned: &[],
            ports: &[18080, 9999],
        };
        let found = explain(&timeline, &subject, &question, &names);
        assert!(
            found[0]
                .evidence
                .iter()
                .any(|e| e.ends_with("it is the only candidate")),
            "{:?}",
            found[0]
        );

        // Two ports of its code held by others: one of two.
        let mut two = timeline.clone();
        let mut second = two.sockets[0].clone();
        // loopcheck:allow(LC010): test data the code under test parses or prints, never bound
        second.local = "127.0.0.1:9999".parse().unwrap();
        two.sockets.push(second);
        let found = explain(&two, &subject, &question, &names);
        assert_eq!(found.len(), 2);
        assert!(
            found[0]
                .evidence
                .iter()
                .any(|e| e.ends_with("it is one of 2 candidates")),
            "{:?}",
            found[0]
        );

        // A protocol assertion: another test served the port this test reaches.
        let question = Question {
            kind: None,
            mentioned: &[],
            ports: &[18080],
        };
        let found = explain(&timeline, &subject, &question, &names);
        assert!(found[0].summary.starts_with("port conflict"), "{:?}", found[0]);

        // The holder's own test is not blamed on itself.
        let own = Subject {
            binary: "app::serves",
            name: "serves",
            ..subject
        };
        assert!(explain(&timeline, &own, &question, &names).is_empty());
        // Nor is a port nobody held.
        let question = Question {
            kind: None,
            mentioned: &[],
            ports: &[9999],
        };
        assert!(explain(&timeline, &subject, &question, &names).is_empty());
        assert!(explain(&Timeline::missing("off"), &subject, &question, &names).is_empty());
    }

    #[test]
    fn a_timeout_with_no_known_port_names_the_listener_its_connection_joined() {
        let dir = Path::new("/r/run.0.0");
        let mut timeline = timeline(dir);
        let foreign = Owner {
            pid: 300,
            command: "python3 -m slow_service".into(),
            ..Owner::default()
        };
        let listener = |port: u16, queue: Vec<(Duration, u32)>| Held {
            protocol: Protocol::Tcp,
            local: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port),
            inode: Some(u64::from(port)),
            owner: Some(foreign.clone()),
            first: ms(0),
            last: ms(900),
            backlog: 1,
            queue,
        };
        // One joined by a connection while the test ran and never drained; one stuck since
        // before it started, which this test's connection cannot have joined.
        timeline.sockets = vec![
            listener(7001, vec![(ms(0), 0), (ms(445), 1)]),
            listener(7002, vec![(ms(0), 1)]),
        ];
        let subject = Subject {
            run_dir: dir,
            binary: "app::binds",
            name: "binds",
            crate_name: None,
        };
        let binary_of = |_: &Owner| None;
        let places = |_: &str, _: u16| Vec::new();
        let owner_now = |_: u64, _: u16| None;
        let names = Names {
            binary_of: &binary_of,
            places: &places,
            owner_now: &owner_now,
        };
        let question = Question {
            kind: Some(io::ErrorKind::TimedOut),
            mentioned: &[],
            ports: &[],
        };
        let found = explain(&timeline, &subject, &question, &names);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].code, Code::ConnectTimeout);
        assert_eq!(found[0].processes[0].pid, 300);
        assert_eq!(found[0].addr.map(|a| a.port()), Some(7001));
        assert!(
            found[0]
                .evidence
                .iter()
                .any(|e| e.ends_with("it is the only candidate")),
            "{:?}",
            found[0]
        );
        // Named by the code, the port that was stuck all along is blamed too.
        let question = Question {
            ports: &[7002],
            ..question
        };
        let found = explain(&timeline, &subject, &question, &names);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].addr.map(|a| a.port()), Some(7002));
    }
}
