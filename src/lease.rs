//! The cross-process lease registry.
//!
//! One small file per port in a per-user directory. A process leases a port by holding an OS
//! file lock on that port's file (`flock` on Unix, `LockFileEx` on Windows), so the kernel
//! releases the lease the moment the holder exits or is killed: no daemon, no clean-up. The
//! file's content is only a record for diagnostics (who holds the port, for which test); the
//! lock alone decides.
//!
//! Files are never deleted: removing a lock file while another process opens it would let two
//! processes lock two different files for the same port. Reusing them also keeps file creation
//! (about a millisecond on ext4) off the allocation path.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::run::{current_test, run_id};

/// The environment variable that overrides the registry directory.
pub const DIR_VAR: &str = "LOOPCHECK_DIR";

// The run contract is defined in `crate::run`; re-exported here where it has always been
// public.
/// Only `cargo loopcheck` reads the records file; hidden from the docs for that reason, kept
/// at this path for it.
#[doc(hidden)]
pub use crate::run::RECORDS_FILE;
pub use crate::run::{RUN_DIR_VAR, TEST_VAR};

/// Records are padded to this size so that rewriting one never needs a truncate, and to a
/// whole block of the usual 4 KiB file systems: a write of part of a block that is not in the
/// page cache reads the block from disk first. Lease files of a registry in use go cold (a
/// build evicts them), and every test process's first lease was such a write: a median of
/// 67 us here, against 2.5 us for the whole block (`cargo bench --bench alloc -- cold-write`).
const RECORD_SIZE: usize = 4096;

/// The most a reader reads of a record; records are kept shorter by cutting the test's name
/// and the run id to these lengths of their JSON strings (escapes included).
const MAX_RECORD: usize = RECORD_SIZE;
const MAX_TEST_NAME: usize = 2048;
const MAX_RUN_ID: usize = 1024;

/// The most the other fields of a record take, rounded up: the keys, quotes and commas (73
/// bytes), a port (5), an IPv6 address (45), a pid (10) and a time in milliseconds (20).
const MAX_OTHER_FIELDS: usize = 160;
// Every record, with its newline, fits in the block it is padded to.
const _: () = assert!(MAX_OTHER_FIELDS + MAX_TEST_NAME + MAX_RUN_ID < RECORD_SIZE - 1);

/// Offset of the state word in a record: records start with `{"state":"held"`.
const STATE_OFFSET: u64 = 10;

/// The registry directory this process uses: `LOOPCHECK_DIR`, else
/// `$XDG_RUNTIME_DIR/loopcheck`, else `<temp>/loopcheck-<uid>`.
///
/// The directory is not created or checked by this function.
///
/// ```
/// let dir = loopcheck::lease::registry_dir();
/// assert!(dir.is_absolute() || std::env::var_os("LOOPCHECK_DIR").is_some());
/// ```
pub fn registry_dir() -> PathBuf {
    match std::env::var_os(DIR_VAR).filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => default_registry_dir(),
    }
}

/// The directory loopcheck makes for itself when `LOOPCHECK_DIR` is not set: the only one
/// whose mode it may advise changing, as it created it.
fn default_registry_dir() -> PathBuf {
    if let Some(runtime) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(runtime).join("loopcheck");
    }
    match crate::sys::current_uid() {
        Some(uid) => std::env::temp_dir().join(format!("loopcheck-{uid}")),
        None => std::env::temp_dir().join("loopcheck"),
    }
}

static REGISTRY: OnceLock<Registry> = OnceLock::new();

/// A validated registry directory.
#[derive(Debug)]
pub(crate) struct Registry {
    dir: PathBuf,
}

impl Registry {
    /// The registry of this process, created and checked on first use.
    pub(crate) fn get() -> Result<&'static Registry> {
        if let Some(registry) = REGISTRY.get() {
            return Ok(registry);
        }
        let registry = Registry::open(registry_dir())?;
        Ok(REGISTRY.get_or_init(|| registry))
    }

    /// Creates `dir` (mode 0700) if needed and refuses it if it is not safe to use.
    pub(crate) fn open(dir: PathBuf) -> Result<Registry> {
        let meta = match fs::symlink_metadata(&dir) {
            Ok(meta) => meta,
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                create_private_dir(&dir)?;
                fs::symlink_metadata(&dir).map_err(|source| Error::Registry {
                    action: "inspect",
                    path: dir.clone(),
                    source,
                })?
            }
            Err(source) => {
                return Err(Error::Registry {
                    action: "inspect",
                    path: dir,
                    source,
                });
            }
        };
        check_dir(&dir, &meta, dir == default_registry_dir())?;
        Ok(Registry { dir })
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    fn path_of(&self, port: u16) -> PathBuf {
        self.dir.join(port.to_string())
    }

    /// Tries to lease `port`: never blocks.
    pub(crate) fn try_acquire(&self, port: u16) -> Attempt {
        let path = self.path_of(port);
        let file = match open_lease_file(&path) {
            Ok(file) => file,
            // No other port's file would open either: the limit is at fault, not the file.
            Err(err) if crate::sys::is_out_of_files(&err) => return Attempt::OutOfFiles(err),
            // Only debris is repaired; a failure such as EMFILE says nothing about the file.
            Err(err) if is_debris(&err) => match repair(&path) {
                Ok(file) => file,
                Err(_) => return Attempt::Unusable,
            },
            Err(_) => return Attempt::Unusable,
        };
        self.lock(port, file)
    }

    fn lock(&self, port: u16, file: File) -> Attempt {
        match file.try_lock() {
            Ok(()) => Attempt::Acquired(Lease {
                file: Some(file),
                port,
                pooled: self.is_global(),
                handed_over: false,
            }),
            Err(fs::TryLockError::WouldBlock) => Attempt::Held,
            Err(fs::TryLockError::Error(_)) => Attempt::Unusable,
        }
    }

    /// Tries to lease again a port whose lease this process gave back: its file is still
    /// open, so this costs a `flock` instead of an `open`, a `flock` and, at release, a
    /// `close`. `None` when no released file is kept; a port another process took since
    /// goes back to the end of the queue.
    pub(crate) fn try_reacquire(&self) -> Option<Attempt> {
        if !self.is_global() {
            return None;
        }
        let (port, file) = {
            let mut pool = lock_pool();
            // Never the port of one of the last allocations: a slow client of one test must
            // not reach the next test's server.
            if pool.len() < REUSE_AFTER {
                return None;
            }
            pool.pop_front()?
        };
        Some(match file.try_lock() {
            Ok(()) => Attempt::Acquired(Lease {
                file: Some(file),
                port,
                pooled: true,
                handed_over: false,
            }),
            Err(fs::TryLockError::WouldBlock) => {
                lock_pool().push_back((port, file));
                Attempt::Held
            }
            Err(fs::TryLockError::Error(_)) => Attempt::Unusable,
        })
    }

    /// Whether this is the process's registry ([`Registry::get`]), whose released files are
    /// kept open for reuse; a registry opened by hand (tests) closes them.
    fn is_global(&self) -> bool {
        REGISTRY.get().is_some_and(|global| std::ptr::eq(global, self))
    }

    /// Every lease file of the registry, with its state, sorted by port.
    pub(crate) fn leases(&self) -> Result<Vec<LeaseInfo>> {
        let entries = fs::read_dir(&self.dir).map_err(|source| Error::Registry {
            action: "list",
            path: self.dir.clone(),
            source,
        })?;
        let mut leases: Vec<LeaseInfo> = entries
            .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u16>().ok())
            .filter_map(|port| self.inspect(port))
            .collect();
        leases.sort_by_key(|lease| lease.port);
        Ok(leases)
    }

    /// Marks the record of a stale lease free, under the lease's lock so that no holder is
    /// overwritten; returns the lease as it was, or `None` if it was not stale (any more).
    pub(crate) fn reclaim(&self, port: u16) -> Option<LeaseInfo> {
        let path = self.path_of(port);
        let file = open_existing(&path).ok()?;
        file.try_lock().ok()?;
        let record = read_record(&file)?;
        if record.state != RecordState::Held {
            return None;
        }
        write_at(&file, b"free", STATE_OFFSET).ok()?;
        Some(LeaseInfo {
            port,
            status: LeaseStatus::Stale,
            record: Some(record),
            path,
        })
    }

    /// The state of one port's lease, or `None` when it has no usable lease file.
    pub(crate) fn inspect(&self, port: u16) -> Option<LeaseInfo> {
        let path = self.path_of(port);
        let file = open_existing(&path).ok()?;
        let record = read_record(&file);
        let locked = match file.try_lock_shared() {
            Ok(()) => false,
            Err(fs::TryLockError::WouldBlock) => true,
            Err(fs::TryLockError::Error(_)) => return None,
        };
        drop(file);
        let status = match (&record, locked) {
            (_, true) => LeaseStatus::Held,
            (Some(record), false) if record.state == RecordState::Held => LeaseStatus::Stale,
            (_, false) => LeaseStatus::Free,
        };
        Some(LeaseInfo {
            port,
            status,
            record,
            path,
        })
    }
}

/// The outcome of one attempt to lease a port.
pub(crate) enum Attempt {
    Acquired(Lease),
    /// A live process holds the lease.
    Held,
    /// The lease file could not be opened, repaired or locked.
    Unusable,
    /// The lease file could not be opened: no file descriptor is left (`EMFILE`, `ENFILE`).
    OutOfFiles(io::Error),
}

/// How many released lease files a process keeps open (unlocked) for reuse: few enough to
/// cost little in descriptors.
const POOL_SIZE: usize = 24;

/// A kept file is leased again only while at least this many are kept, oldest first, so a
/// port is not leased again by the next `REUSE_AFTER - 1` allocations. The rest of [`POOL_SIZE`] absorbs
/// the batches in which closed sockets' leases come back (`alloc`'s sweep).
const REUSE_AFTER: usize = 16;

/// Lease files of the process's registry given back by this process: open, unlocked, their
/// records marked free, oldest first.
static POOL: std::sync::Mutex<std::collections::VecDeque<(u16, File)>> =
    std::sync::Mutex::new(std::collections::VecDeque::new());

/// Set at process exit: released files are then closed, not kept (the kernel would close them
/// a moment later anyway; unlocking first would be one more syscall).
static EXITING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// From now on, released lease files are closed instead of kept for reuse.
#[cfg_attr(not(unix), allow(dead_code))]
pub(crate) fn stop_keeping_released_files() {
    EXITING.store(true, std::sync::atomic::Ordering::Relaxed);
}

fn lock_pool() -> std::sync::MutexGuard<'static, std::collections::VecDeque<(u16, File)>> {
    POOL.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A held lease: the port is ours until this is dropped.
#[derive(Debug)]
pub(crate) struct Lease {
    /// Always `Some` until dropped, when it is closed or kept in [`POOL`].
    file: Option<File>,
    port: u16,
    /// From the process's registry: the released file goes to [`POOL`].
    pooled: bool,
    /// Its descriptor was handed to child processes, which share the lock ([`Lease::hand_over`]).
    handed_over: bool,
}

impl Lease {
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    fn file(&self) -> &File {
        self.file
            .as_ref()
            .expect("a lease's file is only taken when it is dropped")
    }

    /// Writes who holds the lease, for diagnostics. Failing to write does not void the lease.
    pub(crate) fn write_record(&self, ip: IpAddr) {
        self.write_record_of(ip, own_pid());
    }

    /// Names `pid`, a child that inherited this lease's descriptor, as its holder, and from now
    /// on shares the lock with the processes that have the descriptor: dropping the lease then
    /// closes this process's copy without unlocking it (an unlock would end the lease for all
    /// of them) and marks the record free only when none of them holds the lock any more.
    pub(crate) fn hand_over(&mut self, ip: IpAddr, pid: u32) {
        self.write_record_of(ip, pid);
        self.handed_over = true;
    }

    fn write_record_of(&self, ip: IpAddr, pid: u32) {
        let test = current_test();
        let since_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        // On this stack frame, and borrowed: a record moved by value would touch fresh stack
        // pages of the test's new thread, each a page fault.
        let mut block = [b' '; RECORD_SIZE];
        encode_held_record(
            &mut block,
            self.port,
            ip,
            pid,
            test.as_deref(),
            run_id(),
            since_ms,
        );
        let _ = write_at(self.file(), &block, 0);
    }
}

/// A lease record as it is written: into a block of [`RECORD_SIZE`] bytes padded with spaces
/// and ending in a newline, so that rewriting it never needs a truncate (and a whole block
/// written is never read from disk first).
///
/// Written into the block in place rather than through a `String`: in the unoptimised builds
/// tests run in, every `String` append is a chain of calls, and every port allocation writes
/// a record.
struct RecordText<'a> {
    block: &'a mut [u8; RECORD_SIZE],
    len: usize,
}

impl crate::json::Out for RecordText<'_> {
    fn put(&mut self, bytes: &[u8]) {
        // Always fits: the fields are cut so that a record is shorter than the block (see
        // `MAX_OTHER_FIELDS`), whose last byte is the newline.
        let end = self.len + bytes.len();
        if end < RECORD_SIZE {
            self.block[self.len..end].copy_from_slice(bytes);
            self.len = end;
        }
    }
}

/// A `held` [`LeaseRecord`] as JSON, starting `{"state":"held"` (see [`STATE_OFFSET`]), in
/// `block`, which must hold spaces: they are the padding.
///
/// Written by hand rather than by `serde_json`: every port allocation writes one, and in the
/// unoptimised builds tests run in, serde's generic code cost more than the rest of the
/// record's path together. The test's name and the run id are cut (to [`MAX_TEST_NAME`] and
/// [`MAX_RUN_ID`] bytes of JSON), so that every record is readable in one [`MAX_RECORD`] read.
fn encode_held_record(
    block: &mut [u8; RECORD_SIZE],
    port: u16,
    ip: IpAddr,
    pid: u32,
    test: Option<&str>,
    run_id: Option<&str>,
    since_ms: u64,
) {
    use crate::json::{Out, prefix_within, push_ip, push_string, push_u64};

    block[RECORD_SIZE - 1] = b'\n';
    let mut record = RecordText { block, len: 0 };
    record.put(br#"{"state":"held","port":"#);
    push_u64(&mut record, u64::from(port));
    record.put(br#","ip":""#);
    push_ip(&mut record, ip);
    record.put(br#"","pid":"#);
    push_u64(&mut record, u64::from(pid));
    if let Some(test) = test {
        record.put(br#","test":"#);
        push_string(&mut record, prefix_within(test, MAX_TEST_NAME));
    }
    if let Some(run_id) = run_id {
        record.put(br#","run_id":"#);
        push_string(&mut record, prefix_within(run_id, MAX_RUN_ID));
    }
    record.put(br#","since_ms":"#);
    push_u64(&mut record, since_ms);
    record.put(b"}");
}

#[cfg(unix)]
impl std::os::fd::AsFd for Lease {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.file().as_fd()
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let Some(file) = self.file.take() else { return };
        if self.handed_over {
            // Closing one descriptor leaves the lock to the others; when none is left, the
            // lock is free, and taking it again here is what tells.
            drop(file);
            if let Some(registry) = REGISTRY.get()
                && let Ok(file) = open_existing(&registry.path_of(self.port))
                && file.try_lock().is_ok()
            {
                let _ = write_at(&file, b"free", STATE_OFFSET);
            }
            return;
        }
        // Marks the record released before the lock goes, so a reader that finds the lock
        // free and the record still `held` knows the holder died.
        let _ = write_at(&file, b"free", STATE_OFFSET);
        if self.pooled && !EXITING.load(std::sync::atomic::Ordering::Relaxed) {
            let mut pool = lock_pool();
            if pool.len() < POOL_SIZE && file.unlock().is_ok() {
                pool.push_back((self.port, file));
            }
        }
        // A file not kept is closed here, which releases the lock.
    }
}

/// Names the leases this process takes from now on, where no test is running: what `ports`
/// and diagnoses show as their test. `cargo loopcheck lease` names them after its command.
/// The first name set stays; returns `false` if a name was set before.
///
/// ```
/// assert!(loopcheck::lease::set_holder_name("integration: docker compose up"));
/// let lease = loopcheck::reserve_port()?;
/// let record = loopcheck::lease::lease_of(lease.port())?.and_then(|l| l.record).unwrap();
/// assert_eq!(record.test.as_deref(), Some("integration: docker compose up"));
/// # Ok::<(), loopcheck::Error>(())
/// ```
pub fn set_holder_name(name: impl Into<String>) -> bool {
    crate::run::set_holder_name(name.into())
}

/// This process's id, asked of the kernel once: `getpid` is a real syscall on Linux.
pub(crate) fn own_pid() -> u32 {
    static PID: OnceLock<u32> = OnceLock::new();
    *PID.get_or_init(std::process::id)
}

/// What a lease file says about its holder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    /// Whether the holder had the lease when it last wrote.
    pub state: RecordState,
    /// The leased port.
    pub port: u16,
    /// The address the holder was given, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<IpAddr>,
    /// The holder's process id. A process with this pid that started after
    /// [`since_ms`](LeaseRecord::since_ms) is not the holder: the pid was reused.
    pub pid: u32,
    /// The test that asked for the port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<String>,
    /// The `cargo loopcheck test` run the holder belonged to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// When the lease was taken, in milliseconds since the Unix epoch.
    pub since_ms: u64,
}

/// The state word of a [`LeaseRecord`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordState {
    /// Written when the lease is taken.
    Held,
    /// Written when the lease is given back.
    Free,
}

/// The state of one port's lease, as another process sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaseStatus {
    /// A live process holds the lock.
    Held,
    /// Nobody holds it; the last holder gave it back.
    Free,
    /// Nobody holds it, but the record says `held`: the holder died without releasing it.
    /// The port is leasable again at once (diagnostic code LC015).
    Stale,
}

/// One port's lease as found in the registry.
#[derive(Debug, Clone, Serialize)]
pub struct LeaseInfo {
    /// The port.
    pub port: u16,
    /// Whether it is held.
    pub status: LeaseStatus,
    /// The record of the last holder; `None` if the file is empty or corrupt.
    pub record: Option<LeaseRecord>,
    /// The lease file.
    pub path: PathBuf,
}

/// Every lease in this user's registry, sorted by port.
///
/// ```
/// let port = loopcheck::reserve_port()?;
/// let leases = loopcheck::lease::leases()?;
/// let mine = leases.iter().find(|l| l.port == port.port()).expect("our own lease is listed");
/// assert_eq!(mine.status, loopcheck::lease::LeaseStatus::Held);
/// assert_eq!(mine.record.as_ref().map(|r| r.pid), Some(std::process::id()));
/// # Ok::<(), loopcheck::Error>(())
/// ```
pub fn leases() -> Result<Vec<LeaseInfo>> {
    Registry::get()?.leases()
}

/// The leases of the given ports that have a lease file, sorted by port: cheaper than
/// [`leases`] when only a few ports matter.
pub fn leases_of(ports: impl IntoIterator<Item = u16>) -> Result<Vec<LeaseInfo>> {
    let registry = Registry::get()?;
    let mut ports: Vec<u16> = ports.into_iter().collect();
    ports.sort_unstable();
    ports.dedup();
    Ok(ports
        .into_iter()
        .filter_map(|port| registry.inspect(port))
        .collect())
}

/// Reclaims every stale lease of this user's registry: its record is marked free, so it is
/// reported once. The ports were free already; only the records change. Returns the stale
/// leases as they were found.
///
/// ```
/// let reclaimed = loopcheck::lease::reclaim_stale()?;
/// assert!(reclaimed.iter().all(|l| l.status == loopcheck::lease::LeaseStatus::Stale));
/// # Ok::<(), loopcheck::Error>(())
/// ```
pub fn reclaim_stale() -> Result<Vec<LeaseInfo>> {
    let registry = Registry::get()?;
    let stale = registry
        .leases()?
        .into_iter()
        .filter(|l| l.status == LeaseStatus::Stale);
    Ok(stale.filter_map(|lease| registry.reclaim(lease.port)).collect())
}

/// The lease of one port, if the registry has a file for it.
pub fn lease_of(port: u16) -> Result<Option<LeaseInfo>> {
    Ok(Registry::get()?.inspect(port))
}

/// The registry directory after checking that it is safe: exists (or was created with mode
/// 0700), is a real directory, is owned by this user and is not writable by others.
pub fn checked_registry_dir() -> Result<PathBuf> {
    Ok(Registry::get()?.dir().to_path_buf())
}

fn read_record(file: &File) -> Option<LeaseRecord> {
    let mut buf = [0u8; MAX_RECORD];
    let len = read_at(file, &mut buf, 0).ok()?;
    let line = buf[..len].split(|&b| b == b'\n').next()?;
    serde_json::from_slice(line.trim_ascii()).ok()
}

fn create_private_dir(dir: &Path) -> Result<()> {
    crate::sys::create_private_dir(dir).map_err(|source| Error::Registry {
        action: "create directory",
        path: dir.to_path_buf(),
        source,
    })
}

/// Refuses `dir` unless it is a private directory of this user. `own`: whether it is the
/// directory loopcheck makes for itself; any other (`LOOPCHECK_DIR=/etc`) is someone's, and
/// the advice is never to change or remove it but to use a private directory instead.
fn check_dir(dir: &Path, meta: &fs::Metadata, own: bool) -> Result<()> {
    let unsafe_dir = |reason: String| Error::UnsafeDir {
        path: dir.to_path_buf(),
        reason,
    };
    let elsewhere = format!(
        "point `{DIR_VAR}` at a private directory of your own instead (create one with `mkdir -m 700 DIR`), or unset it to use {}",
        default_registry_dir().display()
    );
    if meta.file_type().is_symlink() {
        return Err(unsafe_dir(if own {
            format!("it is a symbolic link; remove it or point `{DIR_VAR}` at a private directory")
        } else {
            format!("it is a symbolic link; {elsewhere}")
        }));
    }
    if !meta.is_dir() {
        return Err(unsafe_dir(if own {
            format!("it is not a directory; remove it or set `{DIR_VAR}`")
        } else {
            format!("it is not a directory; {elsewhere}")
        }));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let Some(uid) = crate::sys::current_uid()
            && meta.uid() != uid
        {
            return Err(unsafe_dir(if own {
                format!(
                    "it is owned by uid {}, not by this user (uid {uid}); set `{DIR_VAR}` to a directory of your own",
                    meta.uid()
                )
            } else {
                format!(
                    "it is owned by uid {}, not by this user (uid {uid}); {elsewhere}",
                    meta.uid()
                )
            }));
        }
        if meta.mode() & 0o077 != 0 {
            let mode = meta.mode() & 0o7777;
            return Err(unsafe_dir(if own {
                format!(
                    "other users can read or write it (mode {mode:o}); run `chmod 700 {}` or set `{DIR_VAR}`",
                    dir.display()
                )
            } else {
                format!("other users can read or write it (mode {mode:o}); {elsewhere}")
            }));
        }
    }
    Ok(())
}

fn lease_file_options(create: bool) -> OpenOptions {
    let mut options = OpenOptions::new();
    options.read(true).write(true).create(create);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600).custom_flags(libc::O_NOFOLLOW);
    }
    options
}

fn open_lease_file(path: &Path) -> io::Result<File> {
    lease_file_options(true).open(path)
}

fn open_existing(path: &Path) -> io::Result<File> {
    lease_file_options(false).open(path)
}

/// Whether opening a lease file failed because something other than a usable lease file
/// stands at its path: a symlink (`O_NOFOLLOW`), a directory, a file without permissions.
fn is_debris(err: &io::Error) -> bool {
    #[cfg(unix)]
    if err.raw_os_error() == Some(libc::ELOOP) {
        return true;
    }
    matches!(
        err.kind(),
        io::ErrorKind::IsADirectory | io::ErrorKind::PermissionDenied
    )
}

/// Replaces a symlink or an empty directory at a lease path by a fresh lease file, or gives a
/// lease file without permissions back its mode. Only this user can write to the registry, so
/// that is this user's own debris. A regular file is never removed: another process may hold
/// its lock, and a new file at the same path would let two processes lease one port.
fn repair(path: &Path) -> io::Result<File> {
    let meta = fs::symlink_metadata(path)?;
    if meta.is_file() {
        #[cfg(unix)]
        fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        return open_lease_file(path);
    }
    if meta.is_dir() {
        fs::remove_dir(path)?;
    } else {
        fs::remove_file(path)?;
    }
    // Exclusive create: when two processes repair at once, the second opens the first's file.
    let mut options = lease_file_options(true);
    match options.create_new(true).open(path) {
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => open_lease_file(path),
        result => result,
    }
}

#[cfg(unix)]
fn write_at(file: &File, bytes: &[u8], offset: u64) -> io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(file, bytes, offset)
}

#[cfg(unix)]
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    std::os::unix::fs::FileExt::read_at(file, buf, offset)
}

#[cfg(windows)]
fn write_at(file: &File, mut bytes: &[u8], mut offset: u64) -> io::Result<()> {
    while !bytes.is_empty() {
        let written = std::os::windows::fs::FileExt::seek_write(file, bytes, offset)?;
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        bytes = &bytes[written..];
        offset += written as u64;
    }
    Ok(())
}

#[cfg(windows)]
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    std::os::windows::fs::FileExt::seek_read(file, buf, offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> (tempfile::TempDir, Registry) {
        let root = tempfile::tempdir().unwrap();
        let registry = Registry::open(root.path().join("leases")).unwrap();
        (root, registry)
    }

    fn acquire(registry: &Registry, port: u16) -> Lease {
        match registry.try_acquire(port) {
            Attempt::Acquired(lease) => lease,
            _ => panic!("port {port} should be leasable"),
        }
    }

    #[cfg(unix)]
    #[test]
    fn new_directory_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let (_root, registry) = registry();
        let mode = fs::metadata(registry.dir()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }

    #[test]
    fn a_lease_excludes_others_until_dropped() {
        let (_root, registry) = registry();
        // loopcheck:allow(LC010): a lease file name in a temporary registry, never bound
        let lease = acquire(&registry, 20001);
        assert!(matches!(registry.try_acquire(20001), Attempt::Held));
        lease.write_record("127.0.0.1".parse().unwrap());
        // loopcheck:allow(LC010): a lease file name in a temporary registry, never bound
        let info = registry.inspect(20001).unwrap();
        assert_eq!(info.status, LeaseStatus::Held);
        let record = info.record.unwrap();
        assert_eq!(
            (record.pid, record.state, record.port),
            (std::process::id(), RecordState::Held, 20001)
        );
        drop(lease);
        // loopcheck:allow(LC010): a lease file name in a temporary registry, never bound
        assert_eq!(registry.inspect(20001).unwrap().status, LeaseStatus::Free);
        // loopcheck:allow(LC010): a lease file name in a temporary registry, never bound
        drop(acquire(&registry, 20001));
    }

    #[test]
    fn a_lock_released_without_the_free_mark_is_stale() {
        let (_root, registry) = registry();
        // loopcheck:allow(LC010): a lease file name in a temporary registry, never bound
        let lease = acquire(&registry, 20002);
        lease.write_record("127.0.0.1".parse().unwrap());
        // What a killed holder leaves behind: the record still says `held`, the lock is gone.
        let file = lease.file().try_clone().unwrap();
        std::mem::forget(lease);
        file.unlock().unwrap();
        // loopcheck:allow(LC010): a lease file name in a temporary registry, never bound
        assert_eq!(registry.inspect(20002).unwrap().status, LeaseStatus::Stale);
        // loopcheck:allow(LC010): a lease file name in a temporary registry, never bound
        drop(acquire(&registry, 20002));
    }

    /// A record of port 20001 with `test`, `run_id` and `since_ms`, as written to a lease file,
    /// and what `read_record` reads back from that file.
    fn written(
        ip: IpAddr,
        test: Option<&str>,
        run_id: Option<&str>,
        since_ms: u64,
    ) -> ([u8; RECORD_SIZE], Option<LeaseRecord>) {
        let mut block = [b' '; RECORD_SIZE];
        // loopcheck:allow(LC010): numbers of a record encoded in memory, never bound
        encode_held_record(&mut block, 20001, ip, 42, test, run_id, since_ms);
        let file = tempfile::tempfile().unwrap();
        write_at(&file, &block, 0).unwrap();
        (block, read_record(&file))
    }

    #[test]
    fn records_are_the_json_readers_expect() {
        let names = [
            "module::plain_name",
            "quotes \" and \\ backslash",
            "lines\nand\ttabs\r and \u{1} \u{1f}",
            "unicode: ü ✓ 🦀",
        ];
        for (name, ip) in names
            .into_iter()
            .zip(["127.0.0.1", "::1", "127.3.2.1", "0.0.0.0"])
        {
            let ip: IpAddr = ip.parse().unwrap();
            let (block, record) = written(ip, Some(name), Some("run-1.0.0"), 1_700_000_000_123);
            assert_eq!(block.last(), Some(&b'\n'));
            assert!(
                block.starts_with(br#"{"state":"held""#),
                "the state word is at STATE_OFFSET"
            );
            assert_eq!(&block[STATE_OFFSET as usize..STATE_OFFSET as usize + 4], b"held");
            assert_eq!(
                record.expect("valid JSON"),
                LeaseRecord {
                    state: RecordState::Held,
                    // loopcheck:allow(LC010): numbers of a record encoded in memory, never bound
                    port: 20001,
                    ip: Some(ip),
                    pid: 42,
                    test: Some(name.to_owned()),
                    run_id: Some("run-1.0.0".to_owned()),
                    since_ms: 1_700_000_000_123,
                }
            );
        }
        let localhost: IpAddr = "127.0.0.1".parse().unwrap();
        let record = written(localhost, None, None, 0).1.unwrap();
        assert_eq!((record.test, record.run_id), (None, None));
    }

    #[test]
    fn long_names_and_run_ids_are_cut_to_keep_the_record_readable() {
        let localhost: IpAddr = "127.0.0.1".parse().unwrap();
        let escaped_len = |text: &str| {
            let mut json = Vec::new();
            crate::json::push_string(&mut json, text);
            json.len() - 2
        };
        // Cut at the limit, keeping whole characters; escapes count at their written length
        // (a control character's is six bytes), so that no record outgrows its block.
        for (name, run_id) in [
            ("é".repeat(MAX_TEST_NAME), "run-1".to_owned()),
            ("\u{1}".repeat(MAX_TEST_NAME), "run-1".to_owned()),
            ("\"\\".repeat(MAX_TEST_NAME), "\u{1f}".repeat(MAX_RUN_ID)),
        ] {
            let record = written(localhost, Some(&name), Some(&run_id), 7)
                .1
                .expect("read back whole");
            let (test, run) = (record.test.unwrap(), record.run_id.unwrap());
            assert!(!test.is_empty() && name.starts_with(&test) && escaped_len(&test) <= MAX_TEST_NAME);
            assert!(!run.is_empty() && run_id.starts_with(&run) && escaped_len(&run) <= MAX_RUN_ID);
            assert_eq!(record.since_ms, 7);
        }
    }

    #[test]
    fn a_long_test_name_keeps_the_record_readable() {
        let (_root, registry) = registry();
        // The second name takes six times its length in JSON.
        for name in ["module::".repeat(1000), "\u{1}::".repeat(1000)] {
            let record = std::thread::scope(|scope| {
                std::thread::Builder::new()
                    .name(name.clone())
                    .spawn_scoped(scope, || {
                        // loopcheck:allow(LC010): a lease file name in a temporary registry, never bound
                        let lease = acquire(&registry, 20009);
                        lease.write_record("127.0.0.1".parse().unwrap());
                        // loopcheck:allow(LC010): a lease file name in a temporary registry, never bound
                        registry.inspect(20009).unwrap().record
                    })
                    .unwrap()
                    .join()
                    .unwrap()
            });
            let test = record.expect("the record parses").test.unwrap();
            assert!(!test.is_empty() && test.len() <= MAX_TEST_NAME && name.starts_with(&test));
        }
    }

    #[test]
    fn corrupt_and_truncated_files_are_repaired() {
        let (_root, registry) = registry();
        for (port, junk) in [
            (20003u16, &b"\0\xff garbage"[..]),
            (20004, b"{\"state\":\"he"),
            (20005, b""),
        ] {
            fs::write(registry.path_of(port), junk).unwrap();
            let info = registry.inspect(port).unwrap();
            assert_eq!((info.status, info.record), (LeaseStatus::Free, None));
            let lease = acquire(&registry, port);
            lease.write_record("127.0.0.1".parse().unwrap());
            assert_eq!(registry.inspect(port).unwrap().record.unwrap().port, port);
        }
        // A record longer than the padding, then a shorter one over it, reads back cleanly.
        let long = vec![b'x'; 3 * RECORD_SIZE];
        // loopcheck:allow(LC010): a lease file name in a temporary registry, never bound
        fs::write(registry.path_of(20006), &long).unwrap();
        // loopcheck:allow(LC010): a lease file name in a temporary registry, never bound
        let lease = acquire(&registry, 20006);
        lease.write_record("127.0.0.1".parse().unwrap());
        // loopcheck:allow(LC010): a lease file name in a temporary registry, never bound
        assert_eq!(registry.inspect(20006).unwrap().record.unwrap().port, 20006);
    }

    #[cfg(unix)]
    #[test]
    fn a_symlink_or_directory_in_place_of_a_lease_file_is_replaced() {
        let (root, registry) = registry();
        let outside = root.path().join("outside");
        fs::write(&outside, "keep").unwrap();
        // loopcheck:allow(LC010): a lease file name in a temporary registry, never bound
        std::os::unix::fs::symlink(&outside, registry.path_of(20007)).unwrap();
        // loopcheck:allow(LC010): a lease file name in a temporary registry, never bound
        fs::create_dir(registry.path_of(20008)).unwrap();
        for port in [20007, 20008] {
            let lease = acquire(&registry, port);
            lease.write_record("127.0.0.1".parse().unwrap());
            assert!(fs::symlink_metadata(registry.path_of(port)).unwrap().is_file());
        }
        assert_eq!(
            fs::read_to_string(&outside).unwrap(),
            "keep",
            "the symlink's target is never written"
        );
    }

    #[cfg(unix)]
    #[test]
    fn unsafe_directories_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        let real = root.path().join("real");
        fs::create_dir(&real).unwrap();
        fs::set_permissions(&real, fs::Permissions::from_mode(0o700)).unwrap();

        let link = root.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let err = Registry::open(link).unwrap_err().to_string();
        assert!(err.contains("symbolic link"), "{err}");

        let file = root.path().join("file");
        fs::write(&file, "").unwrap();
        let err = Registry::open(file).unwrap_err().to_string();
        assert!(err.contains("not a directory"), "{err}");

        let readable = root.path().join("readable");
        fs::create_dir(&readable).unwrap();
        fs::set_permissions(&readable, fs::Permissions::from_mode(0o755)).unwrap();
        let err = Registry::open(readable).unwrap_err().to_string();
        assert!(err.contains("mode 755"), "{err}");

        let shared = root.path().join("shared");
        fs::create_dir(&shared).unwrap();
        fs::set_permissions(&shared, fs::Permissions::from_mode(0o777)).unwrap();
        let err = Registry::open(shared.clone()).unwrap_err().to_string();
        assert!(err.contains("other users can read or write"), "{err}");
        // Not a directory loopcheck made: its mode is not loopcheck's to change.
        assert!(!err.contains("chmod"), "{err}");
        assert!(err.contains("private directory of your own"), "{err}");
        // The directory loopcheck made for itself may be fixed in place.
        let meta = fs::symlink_metadata(&shared).unwrap();
        let err = check_dir(&shared, &meta, true).unwrap_err().to_string();
        assert!(err.contains(&format!("chmod 700 {}", shared.display())), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn a_system_directory_is_never_advised_a_new_mode() {
        // `LOOPCHECK_DIR=/etc`: owned by root, mode 755; refused whoever runs this.
        let err = Registry::open(PathBuf::from("/etc")).unwrap_err().to_string();
        assert!(!err.contains("chmod"), "{err}");
        assert!(!err.contains("remove it"), "{err}");
        assert!(err.contains("private directory of your own"), "{err}");
        let err = Registry::open(PathBuf::from("/etc/passwd"))
            .unwrap_err()
            .to_string();
        assert!(!err.contains("remove it"), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn a_directory_owned_by_another_user_is_refused() {
        let uid = crate::sys::current_uid().unwrap();
        let foreign = if uid == 0 {
            // Root can make a directory that belongs to somebody else.
            let root = tempfile::tempdir().unwrap();
            let dir = root.path().join("foreign");
            fs::create_dir(&dir).unwrap();
            std::os::unix::fs::chown(&dir, Some(65534), Some(65534)).unwrap();
            (Some(root), dir)
        } else {
            (None, PathBuf::from("/"))
        };
        let err = Registry::open(foreign.1.clone()).unwrap_err().to_string();
        assert!(
            err.contains("owned by uid") && err.contains("LOOPCHECK_DIR"),
            "{err}"
        );
    }
}
