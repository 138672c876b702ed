//! Probe sockets kept out of child processes.
//!
//! A child gets a copy of every descriptor of the thread that forks it, and keeps it until its
//! `exec` closes it. A probe socket copied that way keeps its port bound for that moment, so a
//! caller that binds the port it was just leased can find it in use, in a test binary whose
//! other tests start processes. On Linux, probes therefore run on a thread of their own whose
//! descriptor table is its own, which no other thread's fork copies.

use std::io;

/// Runs `probe` where no child of this process can inherit its sockets: on the probing thread
/// (Linux, where it can start), or here.
pub(crate) fn isolated(probe: impl FnOnce() -> io::Result<()> + Send + 'static) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        linux::run(probe)
    }
    #[cfg(not(target_os = "linux"))]
    {
        probe()
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use std::io;
    use std::panic::AssertUnwindSafe;
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::mpsc::{Sender, channel, sync_channel};

    type Job = Box<dyn FnOnce() + Send>;

    /// The probing thread's queue, and the process it was started in: a child forked without
    /// `exec` has a copy of the queue but not the thread, and probes by itself.
    static PROBER: OnceLock<Option<(u32, Sender<Job>)>> = OnceLock::new();

    /// The process that began starting the probing thread: a child forked meanwhile would
    /// wait for ever on a start that its copy of [`PROBER`] shows as under way.
    static STARTING: AtomicU32 = AtomicU32::new(0);

    pub(super) fn run(probe: impl FnOnce() -> io::Result<()> + Send + 'static) -> io::Result<()> {
        let me = std::process::id();
        if PROBER.get().is_none() {
            let starter = STARTING.compare_exchange(0, me, Ordering::AcqRel, Ordering::Acquire);
            if starter.is_err_and(|pid| pid != me) {
                return probe();
            }
        }
        let Some((started_in, queue)) = PROBER.get_or_init(start) else {
            return probe();
        };
        if *started_in != me {
            return probe();
        }
        let (done, result) = sync_channel(1);
        let job: Job = Box::new(move || {
            let outcome = std::panic::catch_unwind(AssertUnwindSafe(probe))
                .unwrap_or_else(|_| Err(io::Error::other("the probe panicked")));
            let _ = done.send(outcome);
        });
        if let Err(returned) = queue.send(job) {
            // The thread is gone: the probe runs here.
            (returned.0)();
        }
        result
            .recv()
            .unwrap_or_else(|_| Err(io::Error::other("the probing thread ended")))
    }

    /// Starts the probing thread; `None` where it cannot have a descriptor table of its own.
    fn start() -> Option<(u32, Sender<Job>)> {
        let (queue, jobs) = channel::<Job>();
        let (ready, is_ready) = sync_channel::<bool>(1);
        std::thread::Builder::new()
            .name("loopcheck-probe".into())
            .spawn(move || {
                let private = own_table();
                let _ = ready.send(private);
                if private {
                    while let Ok(job) = jobs.recv() {
                        job();
                    }
                }
            })
            .ok()?;
        is_ready
            .recv()
            .unwrap_or(false)
            .then(|| (std::process::id(), queue))
    }

    /// Gives this thread a descriptor table of its own, holding no descriptor of the process:
    /// a copy of another thread's socket would keep it open after that thread closes it.
    fn own_table() -> bool {
        // SAFETY: close_range with CLOSE_RANGE_UNSHARE acts only on this thread's table: it
        // unshares it and closes every descriptor of the copy (Linux 5.9).
        if unsafe { libc::syscall(libc::SYS_close_range, 0u32, u32::MAX, libc::CLOSE_RANGE_UNSHARE) } == 0 {
            return true;
        }
        // Older kernels, or a sandbox that refuses close_range: unshare, then close the copy's
        // descriptors one by one, as this thread's own listing names them.
        // SAFETY: unshare(CLONE_FILES) acts only on this thread's table.
        if unsafe { libc::unshare(libc::CLONE_FILES) } != 0 {
            return false;
        }
        let Ok(listing) = std::fs::read_dir("/proc/thread-self/fd") else {
            return false;
        };
        let fds: Vec<i32> = listing
            .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
            .collect();
        for fd in fds {
            // SAFETY: the descriptors are this thread's private copies; the listing's own
            // descriptor, closed with it, fails with EBADF, which is harmless.
            unsafe { libc::close(fd) };
        }
        true
    }
}
