//! Group commit: many sessions, one fsync.
//!
//! A writer applies its sled batch (in memory), then asks the committer
//! for durability. The committer thread takes every request waiting at
//! that moment, flushes sled once — which covers every write applied
//! before the flush began — and answers them all. Under load one fsync
//! serves dozens of messages (flushes are spaced at least 4 ms apart);
//! idle, a lone message pays one fsync and no wait.

use super::StoreError;
use super::events::EventLog;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use tokio::sync::oneshot;

type Waiter = oneshot::Sender<Result<(), String>>;

/// A flush that served this many writers means the relay is busy.
const LOADED_BATCH: usize = 2;

/// Least time between two flushes while the relay is busy.
const MIN_INTERVAL: std::time::Duration = std::time::Duration::from_millis(10);

#[derive(Clone)]
pub struct Committer {
    tx: mpsc::Sender<Waiter>,
    flushes: Arc<AtomicU64>,
    /// Flips to `true` at the first failed flush. sled keeps a write
    /// error (ENOSPC, EIO) as a global state and fails every later flush
    /// until the database is reopened, so one failure means the database
    /// must be reopened.
    failed: Arc<tokio::sync::watch::Sender<bool>>,
}

impl Committer {
    /// Starts the committer thread for `db`. It ends when every handle
    /// (and so every sender) is gone.
    pub fn start(db: sled::Db, events: Arc<EventLog>) -> Self {
        let (tx, rx) = mpsc::channel::<Waiter>();
        let flushes = Arc::new(AtomicU64::new(0));
        let counter = flushes.clone();
        let failed = Arc::new(tokio::sync::watch::Sender::new(false));
        let failed_flag = failed.clone();
        std::thread::Builder::new()
            .name("herald-commit".into())
            .spawn(move || {
                let mut last_flush = std::time::Instant::now();
                let mut last_batch = 0usize;
                while let Ok(first) = rx.recv() {
                    // Under load (the last flush served several writers —
                    // more than the delivery side alone produces per message),
                    // space flushes at least MIN_INTERVAL apart so one flush
                    // serves everyone writing meanwhile: each sled flush
                    // seals a log buffer and wakes its I/O threads, which
                    // costs far more CPU than the wait. A lone writer is
                    // flushed at once.
                    if last_batch >= LOADED_BATCH
                        && let Some(wait) = MIN_INTERVAL.checked_sub(last_flush.elapsed())
                    {
                        std::thread::sleep(wait);
                    }
                    last_flush = std::time::Instant::now();
                    let mut waiters = vec![first];
                    waiters.extend(rx.try_iter());
                    last_batch = waiters.len();
                    // Every event applied before the flush begins is on
                    // disk once it returns.
                    let mark = events.applied();
                    let result = db.flush().map(|_| ()).map_err(|e| e.to_string());
                    if result.is_ok() {
                        events.set_durable(mark);
                    }
                    counter.fetch_add(1, Ordering::Relaxed);
                    if let Err(e) = &result {
                        tracing::error!(error = %e, waiting = waiters.len(), "flushing the spool failed");
                        failed_flag.send_replace(true);
                    }
                    for w in waiters {
                        let _ = w.send(result.clone());
                    }
                }
            })
            .unwrap_or_else(|e| panic!("cannot start the commit thread: {e}"));
        Self { tx, flushes, failed }
    }

    /// Resolves once everything applied before this call is on disk.
    pub async fn durable(&self) -> Result<(), StoreError> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(tx).map_err(|_| StoreError::Flush("commit thread is gone".into()))?;
        match rx.await {
            Ok(result) => result.map_err(StoreError::Flush),
            Err(_) => Err(StoreError::Flush("commit thread is gone".into())),
        }
    }

    /// Resolves once a flush has failed (at once if one already did).
    pub async fn failed(&self) {
        let mut rx = self.failed.subscribe();
        let _ = rx.wait_for(|&f| f).await;
    }

    pub fn flushes(&self) -> u64 {
        self.flushes.load(Ordering::Relaxed)
    }
}
