//! A message during one delivery round: its record (updated as each
//! destination's outcome arrives) and the prepared header block, computed
//! once and shared by every destination. The body is not held here: the
//! round's jobs share it ([`super::send`]) until the last one reports, so
//! memory grows with the messages claimed (`queue.workers` × 4 at most),
//! not with the queue.
//!
//! Each destination's outcome is written (a finished message's retirement
//! handed to the committer, which applies it with its next round, in that
//! round's batch) before its connection carries anything else, and is on
//! disk with the next commit, a few milliseconds later at most
//! (`store::commit::LINGER`): a crash in between sends that message
//! again, at least once. When the round's last destination
//! reports, recipients that became final failures are reported to the
//! sender in one DSN at once, not when the whole message is done.

use super::QueueCore;
use super::backoff;
use super::dsn;
use crate::delivery::JobOutcome;
use crate::id::MessageId;
use crate::events::{Event, EventKind};
use crate::store::{Attempt, MessageRecord, Outcome, Prepared, RcptStatus, Recipient, StoreError, records::RECORD_VERSION};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

pub struct InFlight {
    core: Arc<QueueCore>,
    pub id: MessageId,
    record: tokio::sync::Mutex<MessageRecord>,
    prepared: tokio::sync::OnceCell<Result<Prepared, String>>,
    jobs_left: AtomicUsize,
}

impl InFlight {
    pub fn new(core: Arc<QueueCore>, record: MessageRecord, jobs: usize) -> Arc<Self> {
        Arc::new(Self {
            core,
            id: record.id,
            record: tokio::sync::Mutex::new(record),
            prepared: tokio::sync::OnceCell::new(),
            jobs_left: AtomicUsize::new(jobs),
        })
    }

    /// The message as submitted, reassembled from the store.
    pub fn body(&self) -> Result<Arc<Vec<u8>>, String> {
        match self.core.store.body(&self.id) {
            Ok(Some(b)) => Ok(Arc::new(b)),
            Ok(None) => Err("the message body is missing from the spool".into()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Recipient addresses by index.
    pub async fn addresses(&self, rcpts: &[usize]) -> Vec<String> {
        let record = self.record.lock().await;
        rcpts.iter().filter_map(|&i| record.recipients.get(i).map(|r| r.address.clone())).collect()
    }

    /// The envelope sender and header block: stored ones on a retry, else
    /// prepared now (once, however many destinations ask). A new one is
    /// stored with the round's first outcome, so every later attempt sends
    /// the same bytes; a crash before that prepares the message afresh.
    pub async fn prepared(&self, body: &Arc<Vec<u8>>) -> Result<Prepared, String> {
        self.prepared
            .get_or_init(|| async {
                // Held while preparing: no destination reports before the
                // message is prepared, so nobody else waits for it.
                let mut record = self.record.lock().await;
                if let Some(p) = &record.prepared {
                    return Ok(p.clone());
                }
                let p = self.core.preparer.prepare(&record, body.clone()).await?;
                tracing::info!(msg_id = %self.id, signed_as = %p.signed_domain, selector = %p.selector, envelope_from = %p.envelope_from, reason = %p.reason, "prepared");
                record.prepared = Some(p.clone());
                Ok(p)
            })
            .await
            .clone()
    }

    /// Records one destination's results, calls `recorded` once they are
    /// written or handed to the committer (the courier may then use its
    /// connection again), and asks
    /// for them to reach the disk soon. When it was the last destination
    /// of this round, failures that became final are reported to the
    /// sender, and the message is retired if finished.
    pub async fn complete(&self, results: Vec<JobOutcome>, recorded: impl FnOnce()) {
        let core = &self.core;
        let now = core.clock.now_ms();
        let mut record = self.record.lock().await;
        let expired = now >= record.received_ms + core.lifetime_ms;
        let mut events = Vec::new();
        for r in results {
            if r.rcpt >= record.recipients.len() {
                continue;
            }
            // Classified once, here; the event and the suppression list
            // take the attempt's class.
            let attempt = Attempt::new(now, r.host.clone(), r.outcome, r.reply.clone());
            if !record.is_dsn {
                events.push(outcome_event(&record, &r, attempt.bounce, expired, now));
                if let Some(bounce) = attempt.bounce {
                    events.extend(core.note_failure(&record, r.rcpt, bounce, &r.reply, "delivery", now));
                }
            }
            let rcpt = &mut record.recipients[r.rcpt];
            rcpt.status = match (r.outcome, expired) {
                (Outcome::Delivered, _) => RcptStatus::Delivered,
                (Outcome::Permanent, _) => RcptStatus::Failed,
                (Outcome::Temporary, true) => RcptStatus::Expired,
                (Outcome::Temporary, false) => RcptStatus::Deferred,
            };
            match rcpt.status {
                RcptStatus::Delivered => tracing::info!(msg_id = %self.id, rcpt = %rcpt.address, host = %r.host, reply = %r.reply, "delivered"),
                RcptStatus::Deferred => tracing::info!(msg_id = %self.id, rcpt = %rcpt.address, host = %r.host, reply = %r.reply, "deferred"),
                _ => tracing::warn!(msg_id = %self.id, rcpt = %rcpt.address, host = %r.host, reply = %r.reply, status = ?rcpt.status, "failed"),
            }
            rcpt.attempts.push(attempt);
        }
        let last = self.jobs_left.fetch_sub(1, Ordering::AcqRel) == 1;
        // Whether the message is released here; a retirement releases it
        // once the committer has applied it.
        let mut release = last;
        let written = if last {
            let old_due = record.due_ms;
            // An attempt that outlasted its retry delay must not come due
            // at once: the next one waits its full delay from now.
            if record.due_ms < now {
                record.due_ms = now + backoff::backoff(record.attempts, &core.schedule, rand::random::<f64>()).as_millis() as i64;
            }
            core.report_failures(&mut record).await;
            if record.is_finished() {
                // Retiring drops the due key of the record as stored.
                record.due_ms = old_due;
                release = false;
                finish_soon(core, record.clone(), events);
                Ok(())
            } else {
                // The next attempt's time is known only now.
                for e in events.iter_mut().filter(|e| e.kind == Some(EventKind::Deferred)) {
                    e.next_attempt_ms = Some(record.due_ms);
                }
                core.store.update_with(&record, Some(old_due), events)
            }
        } else {
            for e in events.iter_mut().filter(|e| e.kind == Some(EventKind::Deferred)) {
                e.next_attempt_ms = Some(record.due_ms);
            }
            core.store.update_with(&record, Some(record.due_ms), events)
        };
        if let Err(e) = written {
            tracing::error!(msg_id = %self.id, error = %e, "cannot record the outcome; the attempt will be repeated");
        }
        drop(record);
        recorded();
        // Nobody waits for an outcome to reach the disk: it rides on the
        // next commit (a failed flush is the committer's to report).
        core.store.durable_soon();
        if release {
            core.release(&self.id);
        }
    }
}

/// The event for one recipient's result from one attempt.
fn outcome_event(record: &MessageRecord, r: &JobOutcome, bounce: Option<crate::bounce::Bounce>, expired: bool, now: i64) -> Event {
    let kind = match (r.outcome, expired) {
        (Outcome::Delivered, _) => EventKind::Delivered,
        (Outcome::Temporary, false) => EventKind::Deferred,
        (Outcome::Permanent, _) | (Outcome::Temporary, true) => EventKind::Failed,
    };
    let mut e = record.rcpt_event(r.rcpt, kind, now);
    e.bounce = bounce.map(Into::into);
    e.host = (!r.host.is_empty()).then(|| r.host.clone());
    e.reply = Some(r.reply.clone());
    if kind == EventKind::Delivered {
        e.tls = Some(r.tls);
    }
    if kind == EventKind::Failed {
        e.reasons = vec![if r.outcome == Outcome::Permanent { "synchronous: refused during delivery".into() } else { "expired: the queue lifetime ran out".into() }];
    }
    e
}

/// Marks a message finished and builds the DSN for its failures not
/// reported yet (an expiry, a bounce), to be spooled once it is retired.
fn finishing(core: &Arc<QueueCore>, record: &mut MessageRecord) -> Option<(MessageRecord, Vec<u8>)> {
    record.finished_ms = Some(core.clock.now_ms());
    core.take_dsn(record, |core, record| core.store.body(&record.id).ok().flatten().map(|b| dsn::header_section(&b).to_vec()).unwrap_or_default())
}

/// Retires a finished message, with `events` in the same batch. Failures
/// not reported yet (an expiry, a bounce) must have been reported by the
/// caller, or are reported here without waiting.
pub(crate) fn finish(core: &Arc<QueueCore>, mut record: MessageRecord, events: Vec<Event>) -> Result<(), StoreError> {
    let dsn = finishing(core, &mut record);
    core.store.retire_with(&record, events)?;
    tracing::info!(msg_id = %record.id, "finished");
    if let Some((dsn_record, bytes)) = dsn {
        spool_dsn(core.store.clone(), core.wake.clone(), dsn_record, bytes);
    }
    Ok(())
}

/// [`finish`] at the end of a delivery round, whose message stays held:
/// the committer retires it with its next round, in that round's batch,
/// and only then is it released (until then it still reads as queued).
fn finish_soon(core: &Arc<QueueCore>, mut record: MessageRecord, events: Vec<Event>) {
    let dsn = finishing(core, &mut record);
    let (id, held) = (record.id, core.clone());
    core.store.retire_soon(&record, events, move |result| {
        match result {
            Ok(()) => tracing::info!(msg_id = %id, "finished"),
            Err(e) => tracing::error!(msg_id = %id, error = %e, "cannot record the outcome; the attempt will be repeated"),
        }
        held.release(&id);
    });
    if let Some((dsn_record, bytes)) = dsn {
        spool_dsn(core.store.clone(), core.wake.clone(), dsn_record, bytes);
    }
}

impl QueueCore {
    /// Retires a message none of whose recipients waits any longer, as the
    /// scheduler does; for callers outside the delivery round (a bounce
    /// that failed the last pending recipient).
    pub fn finish(self: &Arc<Self>, record: MessageRecord, events: Vec<Event>) -> Result<(), StoreError> {
        finish(self, record, events)
    }

    /// Reports every failure of `record` not reported yet in one DSN, and
    /// waits until it is spooled; the recipients are then marked reported
    /// in `record` (which the caller writes). A crash in between sends the
    /// DSN again rather than never.
    pub async fn report_failures(&self, record: &mut MessageRecord) {
        let mut marked = record.clone();
        let Some((dsn_record, bytes)) = self.take_dsn(&mut marked, |core, record| core.store.body(&record.id).ok().flatten().map(|b| dsn::header_section(&b).to_vec()).unwrap_or_default()) else {
            // Nothing to report, or DSNs are off: still mark them handled.
            *record = marked;
            return;
        };
        match self.store.spool(&dsn_record, Arc::new(bytes), Vec::new()).await {
            Ok(()) => {
                self.wake.notify_one();
                *record = marked;
            }
            Err(e) => tracing::error!(msg_id = %record.id, dsn_id = %dsn_record.id, error = %e, "cannot queue the DSN; it is tried again with the next outcome"),
        }
    }

    /// Spools, without waiting, a DSN for the recipients in `record`'s
    /// failed state (for a retired message whose bounce arrived later).
    /// `original_headers` is the header section quoted in the DSN.
    pub fn notify_sender(&self, record: &MessageRecord, original_headers: &[u8]) {
        let mut view = record.clone();
        for r in &mut view.recipients {
            r.reported = false;
        }
        let headers = original_headers.to_vec();
        if let Some((dsn_record, bytes)) = self.take_dsn(&mut view, move |_, _| headers) {
            spool_dsn(self.store.clone(), self.wake.clone(), dsn_record, bytes);
        }
    }

    /// Builds the DSN for `record`'s unreported failures (if DSNs are
    /// wanted for it) and marks them reported. `headers` gives the header
    /// section to quote; it is only called when a DSN is built.
    fn take_dsn(&self, record: &mut MessageRecord, headers: impl FnOnce(&Self, &MessageRecord) -> Vec<u8>) -> Option<(MessageRecord, Vec<u8>)> {
        let unreported: Vec<usize> = record.recipients.iter().enumerate().filter(|(_, r)| r.unreported_failure()).map(|(i, _)| i).collect();
        if unreported.is_empty() {
            return None;
        }
        let mut view = record.clone();
        view.recipients = unreported.iter().map(|&i| record.recipients[i].clone()).collect();
        for &i in &unreported {
            record.recipients[i].reported = true;
        }
        if !dsn::wanted(&view, self.dsn) {
            return None;
        }
        let now = self.clock.now_ms();
        let id = MessageId::generate(now);
        let bytes = dsn::build(&view, &headers(self, record), &self.hostname, &self.relay_domain, now / 1000, id.as_str());
        let dsn_record = MessageRecord {
            v: RECORD_VERSION,
            id,
            received_ms: now,
            mail_from: String::new(),
            from_address: format!("mailer-daemon@{}", self.relay_domain),
            from_domain: self.relay_domain.clone(),
            auth_user: None,
            client_addr: "127.0.0.1".into(),
            client_helo: self.hostname.clone(),
            tls: false,
            size: bytes.len(),
            received_header: crate::message::received_header(&self.hostname, "127.0.0.1", &self.hostname, false, false, id.as_str(), Some(&record.mail_from), now / 1000),
            recipients: vec![Recipient::queued(record.mail_from.clone())],
            due_ms: now,
            decision: None,
            attempts: 0,
            prepared: None,
            finished_ms: None,
            is_dsn: true,
            smtputf8: view.smtputf8,
            message_id_header: None,
            reference: None,
        };
        tracing::info!(msg_id = %record.id, dsn_id = %id, to = %record.mail_from, recipients = unreported.len(), "sending delivery status notification");
        Some((dsn_record, bytes))
    }
}

/// Spools a DSN without waiting, and wakes the scheduler to send it.
fn spool_dsn(store: crate::store::Store, wake: Arc<tokio::sync::Notify>, record: MessageRecord, bytes: Vec<u8>) {
    tokio::spawn(async move {
        match store.spool(&record, Arc::new(bytes), Vec::new()).await {
            Ok(()) => wake.notify_one(),
            Err(e) => tracing::error!(msg_id = %record.id, error = %e, "cannot queue the DSN"),
        }
    });
}
