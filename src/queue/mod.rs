//! The queue. A new message comes in through [`Intake`] and, when there
//! is room, starts its first round from memory at once. Everything else
//! (retries, what found no room, DSNs) is the scheduler's: one task
//! range-scans the due index, claims what is due (writing the attempt and
//! the next due time *before* anything is sent, so a crash cannot cause a
//! hot retry loop), groups recipients by
//! destination domain, prepares the message once (identity, From rewrite,
//! signature: [`prepare`]) and hands the groups to the delivery courier as
//! plain data ([`send`]). Outcomes come back on a channel into
//! [`InFlight`]; a finished message is retired and, if anything failed,
//! answered with a DSN ([`dsn`]).

pub mod backoff;
pub mod dsn;
mod edit;
mod hold;
mod inflight;
mod intake;
mod prepare;
mod send;

pub use crate::delivery::JobOutcome;
pub use edit::{DROPPED_REPLY, EditError};
pub use hold::{Hold, HoldSet};
pub use inflight::InFlight;
pub use intake::Intake;
pub use prepare::Preparer;

use crate::clock::SharedClock;
use crate::config::Config;
use crate::delivery::Dispatcher;
use crate::id::MessageId;
use crate::store::{Attempt, MessageRecord, Outcome, RcptStatus, Store};
use std::collections::BTreeMap;
use std::sync::Arc;
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
    /// `events.retention_days`, in ms.
    pub event_retention_ms: i64,
    pub dsn: bool,
    pub hostname: String,
    pub relay_domain: String,
    holds: HoldSet,
    /// Most messages claimed at once; the rest wait in the due index, so
    /// a backlog costs disk, not memory.
    pub max_in_flight: usize,
    /// Poked to rescan now (a message spooled and not sent from memory,
    /// a retry from the API, a DSN spooled).
    pub wake: Arc<tokio::sync::Notify>,
    /// Where hard bounces are filed.
    pub suppressions: Option<crate::suppression::SuppressionList>,
    /// Failures by class, for `/metrics`.
    pub bounces: crate::bounce::Counters,
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
            event_retention_ms: config.events.retention_days as i64 * 86_400_000,
            dsn: config.queue.dsn,
            hostname: config.server.hostname.clone(),
            relay_domain: config.identity.domain.clone(),
            holds: HoldSet::default(),
            max_in_flight: config.queue.workers * 4,
            wake: Default::default(),
            suppressions: None,
            bounces: Default::default(),
        }
    }

    /// Files hard bounces in `list` from now on.
    pub fn with_suppressions(mut self, list: crate::suppression::SuppressionList) -> Self {
        self.suppressions = Some(list);
        self
    }

    /// Files one failure: counted by class, and given to the suppression
    /// list; the events of a suppression it made.
    pub fn note_failure(&self, record: &crate::store::MessageRecord, i: usize, bounce: crate::bounce::Bounce, reply: &str, source: &str, now_ms: i64) -> Vec<crate::events::Event> {
        self.bounces.count(bounce);
        self.suppressions.as_ref().map(|s| s.note(record, i, bounce, reply, source, now_ms)).unwrap_or_default()
    }

    /// How many messages are claimed right now.
    pub fn in_flight_count(&self) -> usize {
        self.holds.len()
    }

    /// Takes a message out of the scheduler's reach while the caller edits
    /// it (admin retry/drop, a bounce): `None` while a delivery round or
    /// another editor holds it. The scheduler claims through the same set,
    /// so check-and-write cannot race an attempt.
    pub fn hold(&self, id: &MessageId) -> Option<Hold<'_>> {
        self.holds.hold(id)
    }

    pub fn in_flight(&self, id: &MessageId) -> bool {
        self.holds.contains(id)
    }

    pub(super) fn release(&self, id: &MessageId) {
        self.holds.release(id);
    }
}

/// Store trouble in the scheduler (a full disk, an I/O error): it waits
/// longer after each failure in a row, up to [`Trouble::MAX`], and logs
/// at most one line per [`Trouble::LOG_EVERY`], counting the rest, so a
/// broken disk costs neither CPU nor a flood of log. The first success
/// resets it.
#[derive(Default)]
struct Trouble {
    failures: u32,
    last_log: Option<tokio::time::Instant>,
    unlogged: u64,
}

impl Trouble {
    const MAX: Duration = Duration::from_secs(30);
    const LOG_EVERY: Duration = Duration::from_secs(30);

    /// Records a failure; returns how long to wait before trying again.
    fn failed(&mut self, what: &str, error: &dyn std::fmt::Display) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let now = tokio::time::Instant::now();
        if self.last_log.is_none_or(|t| now - t >= Self::LOG_EVERY) {
            tracing::error!(error = %error, failures_in_a_row = self.failures, similar_not_logged = self.unlogged, "{what}; the scheduler backs off and retries");
            self.last_log = Some(now);
            self.unlogged = 0;
        } else {
            self.unlogged += 1;
        }
        trouble_delay(self.failures)
    }

    fn ok(&mut self) {
        if self.failures > 0 {
            tracing::info!(failures_in_a_row = self.failures, "the store works again; the scheduler resumes");
        }
        *self = Self::default();
    }
}

/// 100 ms after the first failure, doubling up to [`Trouble::MAX`].
fn trouble_delay(failures: u32) -> Duration {
    let ms = 100u64.saturating_mul(1 << failures.saturating_sub(1).min(16));
    Duration::from_millis(ms).min(Trouble::MAX)
}

/// Runs the scheduler until `shutdown` flips.
pub async fn run(core: Arc<QueueCore>, dispatcher: Dispatcher, mut shutdown: watch::Receiver<bool>) {
    let mut last_purge = 0i64;
    let mut trouble = Trouble::default();
    // The last scan left due messages for want of room.
    let mut backlogged = false;
    loop {
        if backlogged {
            wait_for_room(&core, &mut shutdown).await;
            if *shutdown.borrow() {
                return;
            }
        }
        let now = core.clock.now_ms();
        let room = core.max_in_flight.saturating_sub(core.in_flight_count());
        // Entries of messages still in a round (an attempt that outlasted
        // its retry delay) are skipped, so look past as many as are held.
        let mut pause = None;
        let mut only_held = false;
        match core.store.due(now, (room + core.in_flight_count()).min(4096)) {
            Ok(due) => {
                let mut claims: Vec<(MessageRecord, i64)> = Vec::new();
                let mut failed = None;
                let mut held = 0;
                for (due_ms, id) in due.iter().copied() {
                    if claims.len() >= room {
                        break;
                    }
                    let Some(hold) = core.hold(&id) else {
                        held += 1;
                        continue;
                    };
                    match claim(&core, id, due_ms, now) {
                        Ok(None) => {}
                        Ok(Some(c)) => {
                            hold.keep();
                            claims.push(c);
                        }
                        Err(e) => {
                            failed = Some(e);
                            break;
                        }
                    }
                }
                backlogged = claims.len() >= room && due.len() > claims.len() + held;
                // Every claim of the scan in one batch.
                let written: Vec<(&MessageRecord, Option<i64>)> = claims.iter().map(|(r, old)| (r, Some(*old))).collect();
                let jobs: Vec<send::Claimed> = match core.store.update_all(&written) {
                    Ok(()) => claims.into_iter().map(|(r, _)| start_round(&core, r)).collect(),
                    Err(e) => {
                        claims.iter().for_each(|(r, _)| core.release(&r.id));
                        failed = Some(e.to_string());
                        Vec::new()
                    }
                };
                only_held = !due.is_empty() && held == due.len();
                let dispatched = !jobs.is_empty();
                if dispatched {
                    // The attempts and next due times are on disk before any
                    // connection is made.
                    match core.store.durable().await {
                        Ok(()) => {
                            for claimed in jobs {
                                tokio::spawn(send::dispatch(claimed, dispatcher.clone()));
                            }
                        }
                        Err(e) => {
                            // Nothing is sent on an attempt that is not on
                            // disk: give the claims back; they are due again.
                            for claimed in &jobs {
                                core.release(&claimed.msg.id);
                            }
                            failed = Some(e.to_string());
                        }
                    }
                }
                match failed {
                    Some(e) => pause = Some(trouble.failed("cannot claim due messages", &e)),
                    None if dispatched => {
                        trouble.ok();
                        // More may be due behind what was claimed.
                        continue;
                    }
                    None => trouble.ok(),
                }
            }
            Err(e) => pause = Some(trouble.failed("cannot scan the queue", &e)),
        }
        if pause.is_some() {
            // A flush tells whether the database itself has failed (sled
            // then needs a reopen, which `herald serve` does).
            let _ = core.store.durable().await;
        }
        if now - last_purge > 60_000 {
            last_purge = now;
            match core.store.purge_retired(now - core.retire_after_ms) {
                Ok(0) => {}
                Ok(n) => tracing::info!(purged = n, "forgot retired messages"),
                Err(e) => tracing::warn!(error = %e, "purging retired messages failed"),
            }
            // Survivors of mostly empty body segments move forward, off
            // the runtime's threads.
            let store = core.store.clone();
            tokio::task::spawn_blocking(move || match store.compact() {
                Ok(0) => {}
                Ok(n) => tracing::info!(moved = n, "copied queued bodies forward out of mostly empty segments"),
                Err(e) => tracing::warn!(error = %e, "copying bodies forward failed"),
            });
            match core.store.events().prune(now - core.event_retention_ms) {
                Ok(0) => {}
                Ok(n) => tracing::info!(pruned = n, "forgot old events (`events.retention_days`)"),
                Err(e) => tracing::warn!(error = %e, "pruning old events failed"),
            }
        }
        let wait = match pause {
            Some(pause) => pause,
            // Everything due is in a round: wait for a release, not the clock.
            None if only_held => Duration::from_secs(1),
            None => Duration::from_millis(core.store.next_due().ok().flatten().map(|d| (d - core.clock.now_ms()).clamp(0, 1000)).unwrap_or(1000) as u64),
        };
        tokio::select! {
            _ = core.wake.notified(), if pause.is_none() => {}
            _ = core.holds.released.notified(), if pause.is_none() => {}
            _ = tokio::time::sleep(wait) => {}
            _ = crate::smtpd::stopping(&mut shutdown) => return,
        }
    }
}

/// While a backlog waits for room in flight, the scheduler claims once a
/// quarter of `max_in_flight` is free (or [`COALESCE`] passed), not at
/// every release: each scan that claims writes a batch and waits for a
/// flush, and a scan per released message cost a flush per message.
const COALESCE: Duration = Duration::from_millis(10);

async fn wait_for_room(core: &QueueCore, shutdown: &mut watch::Receiver<bool>) {
    let want = (core.max_in_flight / 4).max(1);
    let deadline = tokio::time::Instant::now() + COALESCE;
    while core.max_in_flight.saturating_sub(core.in_flight_count()) < want {
        tokio::select! {
            _ = core.holds.released.notified() => {}
            _ = tokio::time::sleep_until(deadline) => return,
            _ = crate::smtpd::stopping(shutdown) => return,
        }
    }
}

/// Claims one due message: expire what is past its lifetime, count the
/// attempt and set the next due time; returns the record to write (with
/// the due time it had), whose recipients the round then groups by
/// destination domain.
fn claim(core: &Arc<QueueCore>, id: MessageId, due_ms: i64, now: i64) -> Result<Option<(MessageRecord, i64)>, String> {
    let Some(mut record) = core.store.message(&id).map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    if record.due_ms != due_ms {
        // A stale index key (crash between writes): drop it.
        core.store.update(&record, Some(due_ms)).map_err(|e| e.to_string())?;
        return Ok(None);
    }
    let expired = now >= record.received_ms + core.lifetime_ms;
    if record.is_finished() || expired {
        if expired {
            for r in record.recipients.iter_mut().filter(|r| r.status.is_pending()) {
                r.status = RcptStatus::Expired;
                // Expiry keeps the class of the last refusal (a full
                // mailbox for five days is still a full mailbox).
                let last = r.attempts.last().and_then(|a| a.bounce);
                let mut attempt = Attempt::new(now, String::new(), Outcome::Temporary, "queue lifetime exceeded".into());
                attempt.bounce = last.map(|b| crate::bounce::Bounce::new(b.class, false)).or(attempt.bounce);
                r.attempts.push(attempt);
                tracing::warn!(msg_id = %id, rcpt = %r.address, "expired");
            }
        }
        let events = if record.is_dsn {
            Vec::new()
        } else {
            record
                .recipients
                .iter()
                .enumerate()
                .filter(|(_, r)| r.status == RcptStatus::Expired && r.attempts.last().is_some_and(|a| a.at_ms == now))
                .map(|(i, _)| {
                    let mut e = record.rcpt_event(i, crate::events::EventKind::Failed, now);
                    e.reply = Some("queue lifetime exceeded".into());
                    e.reasons = vec!["expired: the queue lifetime ran out".into()];
                    e.bounce = record.recipients[i].attempts.last().and_then(|a| a.bounce).map(Into::into);
                    e
                })
                .collect()
        };
        inflight::finish(core, record, events).map_err(|e| e.to_string())?;
        return Ok(None);
    }
    let old_due = record.due_ms;
    record.attempts += 1;
    record.due_ms = now + backoff::backoff(record.attempts, &core.schedule, rand::random::<f64>()).as_millis() as i64;
    Ok(Some((record, old_due)))
}

/// A claimed record (attempt counted, next due time set) as a round: its
/// pending recipients grouped by destination domain.
fn start_round(core: &Arc<QueueCore>, record: MessageRecord) -> send::Claimed {
    let mut by_domain: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, r) in record.recipients.iter().enumerate().filter(|(_, r)| r.status.is_pending()) {
        let domain = r.address.rsplit_once('@').map(|(_, d)| d.to_ascii_lowercase()).unwrap_or_default();
        by_domain.entry(domain).or_default().push(i);
    }
    tracing::debug!(msg_id = %record.id, attempt = record.attempts, domains = by_domain.len(), "attempt started");
    let msg = InFlight::new(core.clone(), record, by_domain.len());
    send::Claimed { msg, groups: by_domain.into_iter().collect(), body: None }
}
