//! The queue: one scheduler task range-scans the due index, claims what
//! is due (writing the attempt and the next due time *before* anything is
//! sent, so a crash cannot cause a hot retry loop), groups recipients by
//! destination domain and hands the groups to the delivery dispatcher.
//! Outcomes come back through [`InFlight`]; a finished message is retired
//! and, if anything failed, answered with a DSN.

pub mod backoff;
mod inflight;

pub use inflight::{InFlight, JobOutcome};

use crate::clock::SharedClock;
use crate::config::Config;
use crate::delivery::{Dispatcher, Job, Preparer};
use crate::id::MessageId;
use crate::store::{Attempt, Outcome, RcptStatus, Store};
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// Everything the queue needs, shared by the scheduler and the in-flight
/// messages.
pub struct QueueCore {
    pub store: Store,
    pub clock: SharedClock,
    pub preparer: Preparer,
    pub schedule: Vec<Duration>,
    pub lifetime_ms: i64,
    pub retire_after_ms: i64,
    pub dsn: bool,
    pub hostname: String,
    pub relay_domain: String,
    inflight: Mutex<HashSet<MessageId>>,
    /// Most messages claimed at once; the rest wait in the due index, so
    /// a backlog costs disk, not memory.
    pub max_in_flight: usize,
    /// Poked to rescan now (retry from the API, a DSN spooled).
    pub wake: tokio::sync::Notify,
}

impl QueueCore {
    pub fn new(config: &Config, store: Store, clock: SharedClock, preparer: Preparer) -> Self {
        Self {
            store,
            clock,
            preparer,
            schedule: config.queue.schedule(),
            lifetime_ms: config.queue.lifetime().as_millis() as i64,
            retire_after_ms: config.queue.retire_after().as_millis() as i64,
            dsn: config.queue.dsn,
            hostname: config.server.hostname.clone(),
            relay_domain: config.identity.domain.clone(),
            inflight: Mutex::new(HashSet::new()),
            max_in_flight: config.queue.workers * 4,
            wake: tokio::sync::Notify::new(),
        }
    }

    /// How many messages are claimed right now.
    pub fn in_flight_count(&self) -> usize {
        self.inflight.lock().map(|s| s.len()).unwrap_or(0)
    }

    /// Takes a message out of the scheduler's reach while the caller edits
    /// it (admin retry/drop, a bounce): `None` while a delivery round or
    /// another editor holds it. The scheduler claims through the same set,
    /// so check-and-write cannot race an attempt.
    pub fn hold(&self, id: &MessageId) -> Option<Hold<'_>> {
        let mut set = self.inflight.lock().ok()?;
        set.insert(*id).then_some(Hold { core: self, id: *id, kept: false })
    }

    pub fn in_flight(&self, id: &MessageId) -> bool {
        self.inflight.lock().map(|s| s.contains(id)).unwrap_or(false)
    }

    fn release(&self, id: &MessageId) {
        let freed = self.inflight.lock().map(|mut s| s.remove(id) && s.len() + 1 == self.max_in_flight).unwrap_or(false);
        if freed {
            // The scheduler may be waiting for room.
            self.wake.notify_one();
        }
    }
}

/// A message held out of the scheduler's reach; released on drop.
pub struct Hold<'a> {
    core: &'a QueueCore,
    id: MessageId,
    kept: bool,
}

impl Hold<'_> {
    /// Keeps the message held after this guard is gone; the delivery round
    /// releases it when it ends.
    fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for Hold<'_> {
    fn drop(&mut self) {
        if !self.kept {
            self.core.release(&self.id);
        }
    }
}

/// Runs the scheduler until `shutdown` flips.
pub async fn run(core: Arc<QueueCore>, dispatcher: Dispatcher, mut shutdown: watch::Receiver<bool>) {
    let mut last_purge = 0i64;
    loop {
        let now = core.clock.now_ms();
        let room = core.max_in_flight.saturating_sub(core.in_flight_count());
        match core.store.due(now, room.min(512)) {
            Ok(due) => {
                let mut jobs = Vec::new();
                for (due_ms, id) in due {
                    let Some(hold) = core.hold(&id) else { continue };
                    match claim(&core, id, due_ms, now) {
                        Ok(j) if j.is_empty() => {}
                        Ok(mut j) => {
                            hold.keep();
                            jobs.append(&mut j);
                        }
                        Err(e) => tracing::error!(msg_id = %id, error = %e, "cannot claim message"),
                    }
                }
                if !jobs.is_empty() {
                    // The attempts and next due times are on disk before any
                    // connection is made.
                    if let Err(e) = core.store.durable().await {
                        tracing::error!(error = %e, "flush before delivery failed");
                    }
                    for job in jobs {
                        dispatcher.submit(job);
                    }
                    continue;
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot scan the queue"),
        }
        if now - last_purge > 60_000 {
            last_purge = now;
            match core.store.purge_retired(now - core.retire_after_ms) {
                Ok(0) => {}
                Ok(n) => tracing::info!(purged = n, "forgot retired messages"),
                Err(e) => tracing::warn!(error = %e, "purging retired messages failed"),
            }
        }
        let next = core.store.next_due().ok().flatten().map(|d| (d - core.clock.now_ms()).clamp(0, 1000)).unwrap_or(1000);
        tokio::select! {
            _ = core.store.spooled().notified(), if room > 0 => {}
            _ = core.wake.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(next as u64)) => {}
            _ = crate::submission::stopping(&mut shutdown) => return,
        }
    }
}

/// Claims one due message: expire what is past its lifetime, write the
/// attempt and the next due time, and return its delivery jobs.
fn claim(core: &Arc<QueueCore>, id: MessageId, due_ms: i64, now: i64) -> Result<Vec<Job>, String> {
    let Some(mut record) = core.store.message(&id).map_err(|e| e.to_string())? else {
        return Ok(Vec::new());
    };
    if record.due_ms != due_ms {
        // A stale index key (crash between writes): drop it.
        core.store.update(&record, Some(due_ms)).map_err(|e| e.to_string())?;
        return Ok(Vec::new());
    }
    let expired = now >= record.received_ms + core.lifetime_ms;
    if record.is_finished() || expired {
        if expired {
            for r in record.recipients.iter_mut().filter(|r| r.status.is_pending()) {
                r.status = RcptStatus::Expired;
                r.attempts.push(Attempt { at_ms: now, host: String::new(), outcome: Outcome::Temporary, reply: "queue lifetime exceeded".into() });
                tracing::warn!(msg_id = %id, rcpt = %r.address, "expired");
            }
        }
        inflight::finish(core, record);
        return Ok(Vec::new());
    }
    let old_due = record.due_ms;
    record.attempts += 1;
    record.due_ms = now + backoff::backoff(record.attempts, &core.schedule, rand::random::<f64>()).as_millis() as i64;
    core.store.update(&record, Some(old_due)).map_err(|e| e.to_string())?;
    let mut by_domain: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, r) in record.recipients.iter().enumerate().filter(|(_, r)| r.status.is_pending()) {
        let domain = r.address.rsplit_once('@').map(|(_, d)| d.to_ascii_lowercase()).unwrap_or_default();
        by_domain.entry(domain).or_default().push(i);
    }
    tracing::debug!(msg_id = %id, attempt = record.attempts, domains = by_domain.len(), "attempt started");
    let msg = InFlight::new(core.clone(), record, by_domain.len());
    Ok(by_domain.into_iter().map(|(domain, rcpts)| Job { msg: msg.clone(), domain, rcpts }).collect())
}
