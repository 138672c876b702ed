//! The sampling thread (Linux): every tick, the processes this command started (its
//! descendants) and the host's listeners; each new socket's owner is looked for among the
//! descendants at once, and through all of `/proc` at most every [`FULL_WALK_EVERY`].

use std::collections::{HashMap, HashSet};
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

/// Between full listings of `/proc`, a tick lists only the processes started since the last
/// one (see [`Listing`]); a full listing still runs at least this often, and whenever pids
/// have wrapped around.
const FULL_LISTING_EVERY: Duration = Duration::from_millis(200);

/// More descendants than this are not followed (a fork bomb must not stall the sampler).
const MAX_DESCENDANTS: usize = 4096;

/// At most this many accept queue changes are kept per listener; the first ones and the last
/// one matter.
const MAX_QUEUE_CHANGES: usize = 64;

/// For this many sightings (2 s at 5 ms) a process is checked for an `exec` since it was read.
const MAX_REREADS: u32 = 400;

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
    /// Starts the sampling thread; the error says why it could not start.
    pub(super) fn start(interval: Duration) -> std::io::Result<Running> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let started = Instant::now();
        let handle = std::thread::Builder::new()
            .name("loopcheck-timeline".into())
            .spawn(move || sample(&flag, started, interval))?;
        Ok(Running { stop, handle })
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
    /// Live descendants by pid: how often they were seen, and their lifetime's index.
    live: HashMap<u32, (u32, usize)>,
    /// Processes seen that this command did not start (as of the last full listing, and
    /// those started since).
    foreign: HashSet<u32>,
    pids: Vec<u32>,
    listing: Listing,
    /// Sockets seen in the last tick, by (protocol, local address, inode): their span's index.
    open: HashMap<(Protocol, SocketAddr, Option<u64>), usize>,
    /// Spans whose owner is not among the descendants, for the next full walk.
    unowned: Vec<usize>,
    last_full_walk: Option<Instant>,
    last_tick: Option<Duration>,
    sockets: Vec<SocketEntry>,
}

fn sample(stop: &AtomicBool, started: Instant, interval: Duration) -> Timeline {
    let mut watch = match Watch::open() {
        Ok(watch) => watch,
        Err(error) => {
            return Timeline::missing(format!("no socket timeline was recorded: {error}"));
        }
    };
    let listing = Listing::start(&mut watch);
    let mut state = State {
        watch,
        started,
        me: std::process::id(),
        timeline: Timeline {
            interval,
            ..Timeline::default()
        },
        live: HashMap::new(),
        foreign: HashSet::new(),
        pids: Vec::new(),
        listing,
        open: HashMap::new(),
        unowned: Vec::new(),
        last_full_walk: None,
        last_tick: None,
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
        let now = self.now();
        self.timeline.samples += 1;
        if let Some(previous) = self.last_tick.replace(now) {
            self.timeline.max_gap = self.timeline.max_gap.max(now.saturating_sub(previous));
        }
        if self.timeline.ticks.len() < super::MAX_TICKS {
            self.timeline.ticks.push(now);
        }
        let descendants = self.processes(now);
        self.sockets.clear();
        if self.watch.listeners(&mut self.sockets).is_err() {
            return;
        }
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
            let unresolved = self.resolve(&fresh, &descendants);
            // A test process started since the listing at the top of this tick binds at once:
            // list the processes again and look at the new ones.
            let still = if unresolved.is_empty() {
                unresolved
            } else {
                let newer: Vec<u32> = self
                    .processes(now)
                    .into_iter()
                    .filter(|pid| !descendants.contains(pid))
                    .collect();
                if newer.is_empty() {
                    unresolved
                } else {
                    self.resolve(&unresolved, &newer)
                }
            };
            // Sockets open before the run began (a dev server, PID 1's) are not the run's:
            // their owners are looked up only if a failure needs them, while the blame is
            // written (a full walk now would cost a short suite milliseconds).
            if self.timeline.samples > 1 {
                self.unowned.extend(still);
            }
        }
        self.resolve_unowned(false);
    }

    /// Updates the lifetimes of this command's descendants; returns their pids.
    fn processes(&mut self, now: Duration) -> Vec<u32> {
        // A pid not seen before is read once, to learn whether this command started it;
        // every other process is left alone.
        let mut pids = std::mem::take(&mut self.pids);
        pids.clear();
        let full = self.listing.list(&self.watch, &mut pids);
        let mut live = HashMap::with_capacity(self.live.len() + 4);
        let mut fresh: Vec<(u32, Option<u32>)> = Vec::new();
        if full {
            // What the listing lacks has ended; the foreign set is rebuilt from it.
            let mut foreign = HashSet::with_capacity(self.foreign.len());
            for &pid in &pids {
                if let Some(&entry) = self.live.get(&pid) {
                    live.insert(pid, entry);
                } else if (self.foreign.contains(&pid) && !self.listing.wrapped)
                    || self.listing.is_foreign_by_age(pid)
                {
                    foreign.insert(pid);
                } else if pid != self.me {
                    fresh.push((pid, self.watch.parent(pid)));
                }
            }
            self.foreign = foreign;
        } else {
            // Only new processes were listed: the live ones are asked whether they still are.
            for (&pid, &entry) in &self.live {
                if self.watch.exists(pid) {
                    live.insert(pid, entry);
                }
            }
            for &pid in &pids {
                if pid != self.me && !live.contains_key(&pid) && !self.foreign.contains(&pid) {
                    fresh.push((pid, self.watch.parent(pid)));
                }
            }
        }
        // Parents before children, whatever order the listing had: a new process whose
        // parent is new too waits for the next pass.
        let mut pending = fresh;
        for _ in 0..MAX_DESCENDANTS {
            let before = pending.len();
            let waiting: HashSet<u32> = pending.iter().map(|&(pid, _)| pid).collect();
            let mut rest = Vec::new();
            for (pid, ppid) in pending {
                match ppid {
                    Some(parent)
                        if (parent == self.me || live.contains_key(&parent))
                            && live.len() < MAX_DESCENDANTS =>
                    {
                        if let Some(index) = self.first_sight(pid, ppid, now, &live) {
                            live.insert(pid, (0, index));
                        }
                    }
                    Some(parent) if waiting.contains(&parent) => rest.push((pid, ppid)),
                    _ => {
                        self.foreign.insert(pid);
                    }
                }
            }
            pending = rest;
            if pending.is_empty() || pending.len() == before {
                break;
            }
        }
        self.foreign.extend(pending.into_iter().map(|(pid, _)| pid));
        let mut descendants = Vec::with_capacity(live.len());
        for (&pid, entry) in &mut live {
            let (seen, index) = *entry;
            if seen < MAX_REREADS {
                self.refresh(pid, index);
            }
            *entry = (seen.saturating_add(1), index);
            self.timeline.processes[index].last = now;
            descendants.push((index, pid));
        }
        // The newest first: a new socket most likely belongs to a new test process.
        descendants.sort_unstable_by(|a, b| b.cmp(a));
        self.live = live;
        self.pids = pids;
        descendants.into_iter().map(|(_, pid)| pid).collect()
    }

    /// Reads the descendant `pid` (lifetime `index`) again when it has run `exec` since it was
    /// read: a child seen between its fork and its exec still looks like its parent (cargo,
    /// nextest's `__double-spawn`), and one read during its exec shows no command line yet.
    fn refresh(&mut self, pid: u32, index: usize) {
        let was_empty = self.timeline.processes[index].owner.command_line_empty;
        let exe = self.watch.exe(pid);
        if !was_empty && exe == self.timeline.processes[index].owner.exe {
            return;
        }
        let Some((owner, _)) = self.owner(pid) else {
            return;
        };
        if owner.command_line_empty && !was_empty {
            return;
        }
        let cached = &mut self.timeline.processes[index].owner;
        *cached = Owner {
            of_run: true,
            test_exe: owner.test_exe.clone().or_else(|| cached.test_exe.clone()),
            test: owner.test.clone().or_else(|| cached.test.clone()),
            ..owner
        };
    }

    /// Reads a newly seen descendant, child of `ppid`, and starts its lifetime.
    fn first_sight(
        &mut self,
        pid: u32,
        ppid: Option<u32>,
        now: Duration,
        live: &HashMap<u32, (u32, usize)>,
    ) -> Option<usize> {
        if self.timeline.processes.len() >= MAX_ENTRIES {
            self.timeline.dropped += 1;
            return None;
        }
        let (mut owner, _) = self.owner(pid)?;
        owner.of_run = true;
        // A child inherits its test from the process that started it: the environment does
        // so under nextest; under cargo test, it belongs to the binary of its parent.
        if !owner.is_test_process
            && let Some(&(_, at)) = ppid.and_then(|ppid| live.get(&ppid))
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
        let cargo_test_binary = run_dir.is_some()
            && test_name.is_none()
            && process.exe.as_deref().is_some_and(loopcheck::sys::is_test_binary);
        let is_test_process =
            (test_name.is_some() && exact.as_deref() == test_name.as_deref()) || cargo_test_binary;
        let test_exe = is_test_process.then(|| process.exe.clone()).flatten();
        let owner = Owner {
            pid,
            command_line_empty: process.cmdline.is_empty(),
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
    /// Returns the spans whose owner was not found.
    fn resolve(&mut self, fresh: &[usize], descendants: &[u32]) -> Vec<usize> {
        let inodes: Vec<u64> = fresh
            .iter()
            .filter_map(|&i| self.timeline.sockets[i].inode)
            .collect();
        // The newest descendants first (a test process that has just started), this process
        // last: its own descriptors hold no test's socket but the sampler's own tests'.
        let mut first = Vec::with_capacity(descendants.len() + 1);
        first.extend_from_slice(descendants);
        first.push(self.me);
        let found = self.watch.owners(&inodes, &first, false);
        let mut unresolved = Vec::new();
        for &index in fresh {
            let holder = self.timeline.sockets[index]
                .inode
                .and_then(|inode| found.get(&inode))
                .and_then(|pids| pids.first().copied());
            match holder {
                Some(pid) => {
                    let owner = match self.live.get(&pid).copied() {
                        Some((_, at)) => {
                            self.refresh(pid, at);
                            Some(self.timeline.processes[at].owner.clone())
                        }
                        None => self.owner(pid).map(|(mut o, _)| {
                            o.of_run = true;
                            o
                        }),
                    };
                    self.timeline.sockets[index].owner = owner;
                }
                None => unresolved.push(index),
            }
        }
        unresolved
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
        // A socket closed since it was seen has no owner left to find: a listener of a test
        // that lived a millisecond is often gone by now, and a walk would not find it.
        let latest = self.last_tick;
        let (sockets, watch) = (&self.timeline.sockets, &self.watch);
        self.unowned.retain(|&i| {
            let held = &sockets[i];
            Some(held.last) == latest
                && (force || held.protocol != Protocol::Tcp || watch.tcp_listening(held.local) != Some(false))
        });
        if self.unowned.is_empty() {
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

/// How a tick finds the processes started since the last one. A full listing of `/proc`
/// costs about a microsecond per process on the host (the kernel builds an entry for each);
/// where the kernel tells the last pid it handed out (`ns_last_pid`), a tick lists nothing
/// when no process started, and otherwise only the pids above the last one seen.
#[derive(Default)]
struct Listing {
    /// The kernel's last pid at the last tick and at the one before; `None` when it does
    /// not say, and then every tick lists all of `/proc`. A new process takes its pid a
    /// moment before it shows in `/proc`, so each listing starts after the older of the two.
    last_pid: Option<u32>,
    before_last: Option<u32>,
    /// The processes there when the sampler started that were not this command's
    /// descendants then: no descendant can have their pids, until pids wrap around (then
    /// `None`).
    foreign_at_start: Option<HashSet<u32>>,
    /// Set by a full listing after a wrap-around: what is known of old pids is stale.
    wrapped: bool,
    last_full: Option<Instant>,
}

impl Listing {
    fn start(watch: &mut Watch) -> Listing {
        let Some(last_pid) = watch.last_pid() else {
            return Listing::default();
        };
        // Listed first, then the descendants: a process is in its parent's `children` from
        // the moment it shows in `/proc`, so none listed here is missed below.
        let mut existing = Vec::new();
        watch.pids(&mut existing);
        let mut preexisting = HashSet::new();
        let mut parents = vec![std::process::id()];
        while let Some(parent) = parents.pop() {
            for child in watch.children(parent) {
                if preexisting.len() < MAX_DESCENDANTS && preexisting.insert(child) {
                    parents.push(child);
                }
            }
        }
        let me = std::process::id();
        let foreign = existing
            .into_iter()
            .filter(|pid| *pid != me && !preexisting.contains(pid))
            .collect();
        Listing {
            last_pid: Some(last_pid),
            before_last: Some(last_pid),
            foreign_at_start: Some(foreign),
            wrapped: false,
            last_full: None,
        }
    }

    /// Appends to `pids` the processes to look at this tick; `true` for a full listing (every
    /// process), `false` for only those started lately.
    fn list(&mut self, watch: &Watch, pids: &mut Vec<u32>) -> bool {
        self.wrapped = false;
        let current = self.last_pid.and(watch.last_pid());
        let full_due = self.last_full.is_none_or(|at| at.elapsed() >= FULL_LISTING_EVERY);
        match (self.before_last, self.last_pid, current) {
            (Some(before), Some(last), Some(now)) if now >= last => {
                if !full_due {
                    if now == last && last == before {
                        return false;
                    }
                    if watch.pids_from(before.saturating_add(1), pids) {
                        self.before_last = Some(last);
                        self.last_pid = Some(now);
                        return false;
                    }
                }
            }
            (_, Some(_), Some(_)) => {
                // Pids wrapped around: new processes may have low pids now.
                self.foreign_at_start = None;
                self.wrapped = true;
            }
            // The kernel no longer says: full listings from now on, and no pid is known to
            // be foreign by age (a wrap-around would go unnoticed).
            _ => self.foreign_at_start = None,
        }
        self.before_last = self.last_pid;
        self.last_pid = current;
        self.last_full = Some(Instant::now());
        watch.pids(pids);
        true
    }

    /// Whether `pid` is known to be no descendant without reading it: it existed before the
    /// sampler started and was not among this command's descendants then.
    fn is_foreign_by_age(&self, pid: u32) -> bool {
        self.foreign_at_start
            .as_ref()
            .is_some_and(|foreign| foreign.contains(&pid))
    }
}

#[cfg(test)]
mod tests {
    use loopcheck::scan::ProcessInfo;

    use super::*;

    #[test]
    fn catches_a_short_lived_child_listener_and_its_owner() {
        let running = Running::start(Duration::from_millis(5)).unwrap();
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
    fn records_the_lifetimes_of_children_started_before_and_during_the_run() {
        let sleep = |secs: &str| {
            std::process::Command::new("sleep")
                .arg(secs)
                .spawn()
                .expect("sleep runs")
        };
        // One child is there before the sampler starts, one starts while it runs and ends
        // before it stops, and a grandchild (through `sh`) starts late.
        let mut before = sleep("5");
        let running = Running::start(Duration::from_millis(5)).unwrap();
        std::thread::sleep(Duration::from_millis(30));
        let mut during = sleep("5");
        std::thread::sleep(Duration::from_millis(60));
        during.kill().unwrap();
        during.wait().unwrap();
        let mut shell = std::process::Command::new("sh")
            .args(["-c", "sleep 5 & wait"])
            .spawn()
            .expect("sh runs");
        std::thread::sleep(Duration::from_millis(80));
        let timeline = running.stop();
        // The `sleep` whose parent is our `sh`: other tests of this binary start sleeps too.
        let grandchild = timeline
            .processes
            .iter()
            .map(|p| p.owner.pid)
            .find(|&pid| ProcessInfo::read(pid).and_then(|p| p.ppid) == Some(shell.id()));
        // `sh` waits for its `sleep`: ending that `sleep` lets `sh` end too.
        if let Some(pid) = grandchild {
            // SAFETY: kill has no memory preconditions; the pid is the sleep this test started.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        }
        shell.kill().unwrap();
        shell.wait().unwrap();
        before.kill().unwrap();
        before.wait().unwrap();

        let lifetime = |pid: u32| timeline.processes.iter().find(|p| p.owner.pid == pid);
        let first = lifetime(before.id()).expect("the child started before the sampler is seen");
        assert!(first.owner.of_run);
        let second = lifetime(during.id()).expect("the child started during the run is seen");
        assert!(
            second.owner.of_run && second.owner.command.starts_with("sleep"),
            "{second:?}"
        );
        assert!(
            second.last < first.last,
            "the ended child's lifetime ends first: {second:?} {first:?}"
        );
        assert!(
            grandchild.is_some(),
            "a grandchild is a descendant: {:?}",
            timeline.processes
        );
    }

    #[test]
    fn test_binaries_by_name() {
        assert!(loopcheck::sys::is_test_binary(std::path::Path::new(
            "/w/target/debug/deps/echo-0123456789abcdef"
        )));
        assert!(!loopcheck::sys::is_test_binary(std::path::Path::new(
            "/usr/bin/python3"
        )));
    }
}
