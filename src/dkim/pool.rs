//! Signing off the I/O threads: a few dedicated threads fed by a queue.
//!
//! RSA signing is ~1 ms of pure CPU. Run on the async workers it would
//! stall every session sharing the worker; handed to the general blocking
//! pool, each signature costs two thread wake-ups. These threads stay busy
//! while there is work, so under load a signature costs no wake-up at all.
//!
//! They run at a lower priority (nice +[`NICE`]): signing is for delivery,
//! which can wait a millisecond, while the sessions and the committer are
//! what a client waits on before its 250. On a busy machine the scheduler
//! then serves those first. Not much lower: at +10, fifty sessions
//! accepted faster than the relay delivered, and the backlog cost more
//! than the gain.


type Task = Box<dyn FnOnce() + Send>;

/// How much nicer than the rest of the relay the signing threads are.
pub const NICE: i32 = 4;

/// Lowers the calling thread's priority by `NICE` (Linux: a thread's
/// nice value is its own). Failure only costs latency: logged, ignored.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: gettid and setpriority only read their arguments.
    unsafe {
        let tid = libc::gettid() as libc::id_t;
        let now = libc::getpriority(libc::PRIO_PROCESS, tid);
        if libc::setpriority(libc::PRIO_PROCESS, tid, now + NICE) != 0 {
            tracing::debug!(error = %std::io::Error::last_os_error(), "cannot lower the signing thread's priority");
        }
    }
}

#[derive(Clone)]
pub struct SignPool {
    /// A queue every signing thread takes from, which wakes one idle
    /// thread per task. (A `Mutex<mpsc::Receiver>` woke two: the one
    /// holding the lock in `recv`, and then, when it let the lock go, the
    /// one blocked on the lock, which went back to sleep.)
    tx: crossbeam_channel::Sender<Task>,
}

impl SignPool {
    /// Starts `threads` signing threads; they end when every handle is gone.
    pub fn new(threads: usize) -> Self {
        let (tx, rx) = crossbeam_channel::unbounded::<Task>();
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new().name(format!("herald-sign-{i}")).spawn(move || {
                lower_priority();
                while let Ok(task) = rx.recv() {
                    task();
                }
            });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a signing thread");
            }
        }
        Self { tx }
    }

    /// Runs `work` on a signing thread and waits for its result.
    pub async fn run<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> Result<T, String> {
        let (done, result) = tokio::sync::oneshot::channel();
        self.tx
            .send(Box::new(move || {
                let _ = done.send(work());
            }))
            .map_err(|_| "the signing threads are gone".to_string())?;
        result.await.map_err(|_| "a signing thread failed".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The calling thread's nice value.
    fn nice() -> i32 {
        // SAFETY: as in `lower_priority`.
        unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) }
    }

    #[tokio::test]
    async fn signing_threads_run_nicer_than_the_rest() {
        let here = nice();
        let pool = SignPool::new(1);
        let there = pool.run(nice).await.unwrap();
        assert_eq!(there, (here + NICE).min(19), "a signing thread's nice value");
        assert_eq!(nice(), here, "the caller's is unchanged");
    }
}
