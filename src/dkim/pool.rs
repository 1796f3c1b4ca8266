//! Signing off the I/O threads: a few dedicated threads fed by a queue.
//!
//! RSA signing is ~1 ms of pure CPU. Run on the async workers it would
//! stall every session sharing the worker; handed to the general blocking
//! pool, each signature costs two thread wake-ups. These threads stay busy
//! while there is work, so under load a signature costs no wake-up at all.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

type Task = Box<dyn FnOnce() + Send>;

#[derive(Clone)]
pub struct SignPool {
    tx: mpsc::Sender<Task>,
}

impl SignPool {
    /// Starts `threads` signing threads; they end when every handle is gone.
    pub fn new(threads: usize) -> Self {
        let (tx, rx) = mpsc::channel::<Task>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new().name(format!("herald-sign-{i}")).spawn(move || {
                loop {
                    let task = match rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return,
                    };
                    match task {
                        Ok(task) => task(),
                        Err(_) => return,
                    }
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
