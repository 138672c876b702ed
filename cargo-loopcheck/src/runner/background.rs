//! Work done on a thread of its own and collected later, or done when it is collected.

use std::thread::JoinHandle;

/// A value computed in the background, or on demand.
pub(crate) enum Background<T> {
    Running(JoinHandle<T>),
    Later(Box<dyn FnOnce() -> T + Send>),
}

impl<T: Send + 'static> Background<T> {
    /// Starts `work` on a thread named `name`; where no thread can start, it is done when
    /// collected.
    pub(crate) fn start<F>(name: &str, work: F) -> Background<T>
    where
        F: FnOnce() -> T + Clone + Send + 'static,
    {
        // `spawn` drops the closure when it fails: a copy is kept for that case.
        let fallback = work.clone();
        match std::thread::Builder::new().name(name.into()).spawn(work) {
            Ok(handle) => Background::Running(handle),
            Err(_) => Background::later(fallback),
        }
    }

    /// `work`, done when collected.
    pub(crate) fn later(work: impl FnOnce() -> T + Send + 'static) -> Background<T> {
        Background::Later(Box::new(work))
    }

    /// The value, once the work is done; a panic in it goes on here.
    pub(crate) fn join(self) -> T {
        match self {
            Background::Running(handle) => handle
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            Background::Later(work) => work(),
        }
    }
}
