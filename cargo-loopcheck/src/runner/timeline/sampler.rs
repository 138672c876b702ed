//! The sampling thread (Linux): every tick, the processes this command started (its
//! descendants) and the host's listeners; each new socket's owner is looked for among the
//! descendants at once, and through all of `/proc` at most every [`FULL_WALK_EVERY`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use loopcheck::scan::{Protocol, SocketEntry, Watch};

use super::{Held, Lifetime, MAX_ENTRIES, Owner, Timeline, watched};

/// A full `/proc` walk costs milliseconds on a busy host: it runs at most this often, for
/// sockets whose owner is not a process of the run (a dev server, another user's listener).
const FULL_WALK_EVERY: Duration = Duration::from_millis(200);

/// More descendants than this are not followed (a fork bomb must not stall the sampler).
const MAX_DESCENDANTS: usize = 4096;

/// At most this many accept queue changes are kept per listener; the first ones and the last
/// one matter.
const MAX_QUEUE_CHANGES: usize = 64;

/// After this many sightings a process is taken to have run `exec` if it was going to.
const SETTLED: u32 = 3;

/// The environment variables a process is attributed by.
const KEYS: [&str; 5] = [
    "NEXTEST_TEST_NAME",
    "NEXTEST_BINARY_ID",
    "NEXTEST_ATTEMPT_ID",
    "LOOPCHECK_TEST",
    loopcheck::lease::RUN_DIR_VAR,
];

/// A sampler thread and the flag that stops it.
pub(super) struct Running {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<Timeline>,
}

impl Running {
    pub(super) fn start(interval: Duration) -> Running {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let started = Instant::now();
        let handle = std::thread::Builder::new()
            .name("loopcheck-timeline".into())
            .spawn(move || sample(&flag, started, interval))
            .expect("a thread can be started");
        Running { stop, handle }
    }

    pub(super) fn stop(self) -> Timeline {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.thread().unpark();
        self.handle
            .join()
            .unwrap_or_else(|_| Timeline::missing("no socket timeline was recorded: its sampler failed"))
    }
}

/// The sampler's state between ticks.
struct State {
    watch: Watch,
    started: Instant,
    me: u32,
    timeline: Timeline,
    /// Live descendants by pid: their lifetime's index and how often they were seen.
    live: HashMap<u32, (u32, usize)>,
    /// Sockets seen in the last tick, by (protocol, local address, inode): their span's index.
    open: HashMap<(Protocol, SocketAddr, Option<u64>), usize>,
    /// Spans whose owner is not among the descendants, for the next full walk.
    unowned: Vec<usize>,
    last_full_walk: Option<Instant>,
    sockets: Vec<SocketEntry>,
}

fn sample(stop: &AtomicBool, started: Instant, interval: Duration) -> Timeline {
    let watch = match Watch::open() {
        Ok(watch) => watch,
        Err(error) => {
            return Timeline::missing(format!("no socket timeline was recorded: {error}"));
        }
    };
    let mut state = State {
        watch,
        started,
        me: std::process::id(),
        timeline: Timeline {
            interval,
            ..Timeline::default()
        },
        live: HashMap::new(),
        open: HashMap::new(),
        unowned: Vec::new(),
        last_full_walk: None,
        sockets: Vec::new(),
    };
    // Bounded by the stop flag, which the runner sets as the round ends; the one extra tick
    // after it catches what lived until the very end.
    loop {
        let tick = Instant::now();
        let stopping = stop.load(Ordering::Relaxed);
        state.tick();
        if stopping {
            break;
        }
        if let Some(rest) = interval.checked_sub(tick.elapsed()) {
            std::thread::park_timeout(rest);
        }
    }
    // Owners still unknown get one last full walk.
    state.last_full_walk = None;
    state.resolve_unowned(true);
    state.timeline
}

impl State {
    fn now(&self) -> Duration {
        self.started.elapsed()
    }

    fn tick(&mut self) {
        self.timeline.samples += 1;
        let descendants = self.processes();
        self.sockets.clear();
        if self.watch.listeners(&mut self.sockets).is_err() {
            return;
        }
        let now = self.now();
        let mut seen = HashMap::with_capacity(self.open.len());
        let mut fresh: Vec<usize> = Vec::new();
        let sockets = std::mem::take(&mut self.sockets);
        for socket in sockets.iter().filter(|s| watched(s.local.ip())) {
            let key = (socket.protocol, socket.local, socket.inode);
            let index = match self.open.get(&key) {
                Some(&index) => index,
                None => {
                    if self.timeline.sockets.len() >= MAX_ENTRIES {
                        self.timeline.dropped += 1;
                        continue;
                    }
                    self.timeline.sockets.push(Held {
                        protocol: socket.protocol,
                        local: socket.local,
                        inode: socket.inode,
                        owner: None,
                        first: now,
                        last: now,
                        backlog: socket.send_queue,
                        queue: Vec::new(),
                    });
                    let index = self.timeline.sockets.len() - 1;
                    fresh.push(index);
                    index
                }
            };
            seen.insert(key, index);
            let held = &mut self.timeline.sockets[index];
            held.last = now;
            if socket.protocol == Protocol::Tcp
                && held.queue.last().is_none_or(|&(_, len)| len != socket.recv_queue)
            {
                if held.queue.len() >= MAX_QUEUE_CHANGES {
                    held.queue.pop();
                }
                held.queue.push((now, socket.recv_queue));
            }
        }
        self.sockets = sockets;
        self.open = seen;
        if !fresh.is_empty() {
            self.resolve(&fresh, &descendants);
        }
        self.resolve_unowned(false);
    }

    /// Updates the lifetimes of this command's descendants; returns their pids.
    fn processes(&mut self) -> Vec<u32> {
        let descendants = self.watch.descendants(self.me, MAX_DESCENDANTS);
        let now = self.now();
        let mut live = HashMap::with_capacity(descendants.len());
        for &pid in &descendants {
            let index = match self.live.get(&pid) {
                Some(&(seen, index)) => {
                    // A child seen between its fork and its exec still looks like its parent
                    // (cargo, nextest): read it again on the next sightings.
                    if seen < SETTLED
                        && let Some((owner, _)) = self.owner(pid)
                    {
                        let cached = &mut self.timeline.processes[index].owner;
                        if owner.exe != cached.exe || owner.command != cached.command {
                            *cached = Owner {
                                of_run: true,
                                test_exe: owner.test_exe.clone().or_else(|| cached.test_exe.clone()),
                                test: owner.test.clone().or_else(|| cached.test.clone()),
                                ..owner
                            };
                        }
                    }
                    Some((seen + 1, index))
                }
                None => self.first_sight(pid, now, &live).map(|index| (1, index)),
            };
            if let Some((seen, index)) = index {
                self.timeline.processes[index].last = now;
                live.insert(pid, (seen, index));
            }
        }
        self.live = live;
        descendants
    }

    /// Reads a newly seen descendant and starts its lifetime.
    fn first_sight(&mut self, pid: u32, now: Duration, live: &HashMap<u32, (u32, usize)>) -> Option<usize> {
        if self.timeline.processes.len() >= MAX_ENTRIES {
            self.timeline.dropped += 1;
            return None;
        }
        let (mut owner, ppid) = self.owner(pid)?;
        owner.of_run = true;
        // A child inherits its test from the process that started it: the environment does
        // so under nextest; under cargo test, it belongs to the binary of its parent.
        if !owner.is_test_process
            && let Some(&(_, at)) = ppid.and_then(|ppid| live.get(&ppid).or(self.live.get(&ppid)))
        {
            let parent = &self.timeline.processes[at].owner;
            if owner.test_exe.is_none() {
                owner.test_exe.clone_from(&parent.test_exe);
            }
            if owner.test.is_none() {
                owner.test.clone_from(&parent.test);
            }
        }
        self.timeline.processes.push(Lifetime {
            owner,
            first: now,
            last: now,
        });
        Some(self.timeline.processes.len() - 1)
    }

    /// Who process `pid` is, attributed to its test, and its parent's pid.
    fn owner(&mut self, pid: u32) -> Option<(Owner, Option<u32>)> {
        let process = self.watch.process(pid)?;
        let [test_name, binary_id, attempt, loopcheck_test, run_dir] =
            <[Option<String>; 5]>::try_from(self.watch.environment(pid, &KEYS)).ok()?;
        let exact = process
            .cmdline
            .iter()
            .position(|a| a == "--exact")
            .and_then(|at| process.cmdline.get(at + 1))
            .cloned();
        let cargo_test_binary =
            run_dir.is_some() && test_name.is_none() && process.exe.as_deref().is_some_and(is_test_binary);
        let is_test_process =
            (test_name.is_some() && exact.as_deref() == test_name.as_deref()) || cargo_test_binary;
        let test_exe = is_test_process.then(|| process.exe.clone()).flatten();
        let owner = Owner {
            pid,
            command: process.command(),
            exe: process.exe.clone(),
            test_exe,
            user: process.user.clone(),
            test: test_name
                .or(exact.filter(|_| binary_id.is_some()))
                .or(loopcheck_test),
            binary_id,
            attempt,
            run_dir: run_dir.map(PathBuf::from),
            of_run: false,
            is_test_process,
        };
        Some((owner, process.ppid))
    }

    /// Looks for the owners of the new spans `fresh` among the descendants.
    fn resolve(&mut self, fresh: &[usize], descendants: &[u32]) {
        let inodes: Vec<u64> = fresh
            .iter()
            .filter_map(|&i| self.timeline.sockets[i].inode)
            .collect();
        // This process first: the cheapest, and what a test of the sampler binds in.
        let mut first = Vec::with_capacity(descendants.len() + 1);
        first.push(self.me);
        first.extend_from_slice(descendants);
        let found = self.watch.owners(&inodes, &first, false);
        for &index in fresh {
            let holder = self.timeline.sockets[index]
                .inode
                .and_then(|inode| found.get(&inode))
                .and_then(|pids| pids.first().copied());
            match holder {
                Some(pid) => {
                    let cached = self.live.get(&pid).copied();
                    let owner = match cached {
                        Some((seen, at)) if seen >= SETTLED => {
                            Some(self.timeline.processes[at].owner.clone())
                        }
                        // Read afresh: it may have run `exec` since it was first seen.
                        _ => self.owner(pid).map(|(mut o, _)| {
                            o.of_run = true;
                            if let Some((_, at)) = cached {
                                let known = &self.timeline.processes[at].owner;
                                o.test_exe = o.test_exe.or_else(|| known.test_exe.clone());
                                o.test = o.test.or_else(|| known.test.clone());
                            }
                            o
                        }),
                    };
                    self.timeline.sockets[index].owner = owner;
                }
                None => self.unowned.push(index),
            }
        }
    }

    /// A full `/proc` walk for the owners not found among the descendants, when due.
    fn resolve_unowned(&mut self, force: bool) {
        if self.unowned.is_empty() {
            return;
        }
        let due = self
            .last_full_walk
            .is_none_or(|at| at.elapsed() >= FULL_WALK_EVERY);
        if !due && !force {
            return;
        }
        self.last_full_walk = Some(Instant::now());
        let pending = std::mem::take(&mut self.unowned);
        let inodes: Vec<u64> = pending
            .iter()
            .filter_map(|&i| self.timeline.sockets[i].inode)
            .collect();
        let found = self.watch.owners(&inodes, &[], true);
        for index in pending {
            let pid = self.timeline.sockets[index]
                .inode
                .and_then(|inode| found.get(&inode))
                .and_then(|pids| pids.first().copied());
            if let Some(pid) = pid {
                self.timeline.sockets[index].owner = self.owner(pid).map(|(owner, _)| owner);
            }
        }
    }
}

/// `target/debug/deps/NAME-HASH`: how cargo names a test binary.
fn is_test_binary(exe: &std::path::Path) -> bool {
    let in_deps = exe
        .parent()
        .and_then(std::path::Path::file_name)
        .is_some_and(|d| d == "deps");
    let hashed = exe
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.trim_end_matches(" (deleted)").rsplit_once('-'))
        .is_some_and(|(_, hash)| hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()));
    in_deps && hashed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catches_a_short_lived_child_listener_and_its_owner() {
        let running = Running::start(Duration::from_millis(5));
        std::thread::sleep(Duration::from_millis(30));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::sleep(Duration::from_millis(60));
        drop(listener);
        std::thread::sleep(Duration::from_millis(30));
        let timeline = running.stop();
        assert!(timeline.missing.is_none(), "{:?}", timeline.missing);
        let held = timeline
            .sockets
            .iter()
            .find(|h| h.local == addr)
            .expect("the listener was seen");
        assert!(held.last > held.first, "{held:?}");
        assert_eq!(held.owner.as_ref().map(|o| o.pid), Some(std::process::id()));
        assert!(timeline.samples > 5);
    }

    #[test]
    fn test_binaries_by_name() {
        assert!(is_test_binary(std::path::Path::new(
            "/w/target/debug/deps/echo-0123456789abcdef"
        )));
        assert!(!is_test_binary(std::path::Path::new("/usr/bin/python3")));
    }
}
