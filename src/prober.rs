//! Probe sockets kept out of child processes.
//!
//! A child gets a copy of every descriptor of the thread that forks it, and keeps it until its
//! `exec` closes it. A probe socket copied that way keeps its port bound for that moment, so a
//! caller that binds the port it was just leased can find it in use, in a test binary whose
//! other tests start processes. On Linux, probes therefore run on a thread of their own whose
//! descriptor table is its own (`unshare(CLONE_FILES)`): no other thread's fork copies it.

use std::io;

/// Runs `probe` where no child of this process can inherit its sockets: on the probing thread
/// (Linux), or here where there is none.
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
    use std::sync::OnceLock;
    use std::sync::mpsc::{Sender, channel, sync_channel};

    type Job = Box<dyn FnOnce() + Send>;

    /// The probing thread's queue, and the process it was started in: a child forked without
    /// `exec` has a copy of the queue but not the thread, and probes by itself.
    static PROBER: OnceLock<Option<(u32, Sender<Job>)>> = OnceLock::new();

    pub(super) fn run(probe: impl FnOnce() -> io::Result<()> + Send + 'static) -> io::Result<()> {
        let Some((started_in, queue)) = PROBER.get_or_init(start) else {
            return probe();
        };
        if *started_in != std::process::id() {
            return probe();
        }
        let (done, result) = sync_channel(1);
        let job: Job = Box::new(move || {
            let _ = done.send(probe());
        });
        if let Err(returned) = queue.send(job) {
            // The thread is gone: the probe runs here.
            (returned.0)();
        }
        result
            .recv()
            .unwrap_or_else(|_| Err(io::Error::other("the probing thread ended")))
    }

    /// Starts the probing thread; `None` where this kernel cannot give it a table of its own.
    fn start() -> Option<(u32, Sender<Job>)> {
        let (queue, jobs) = channel::<Job>();
        let (ready, is_ready) = sync_channel::<bool>(1);
        std::thread::Builder::new()
            .name("loopcheck-probe".into())
            .spawn(move || {
                // SAFETY: both calls act only on this thread's descriptor table: unshare makes
                // it a private copy, and close_range closes that copy's descriptors from 3 up,
                // so that it holds none of the process's files open (a copy would keep a closed
                // socket of another thread alive).
                let private = unsafe { libc::unshare(libc::CLONE_FILES) } == 0
                    && unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) } == 0;
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
}
