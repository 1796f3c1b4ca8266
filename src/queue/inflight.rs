//! A message during one delivery round: its record (updated as each
//! destination's outcome arrives) and the prepared header block, computed
//! once and shared by every destination. The body is not held here: a
//! connection loads it right before sending and drops it right after, so
//! memory grows with open connections, not with the queue.

use super::QueueCore;
use crate::delivery::dsn;
use crate::id::MessageId;
use crate::store::{Attempt, MessageRecord, Outcome, Prepared, RcptStatus, Recipient, records::RECORD_VERSION};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// One recipient's result from one attempt.
#[derive(Debug, Clone)]
pub struct JobOutcome {
    pub rcpt: usize,
    pub outcome: Outcome,
    pub host: String,
    pub reply: String,
}

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
    /// prepared now (once, however many destinations ask) and stored.
    pub async fn prepared(&self, body: &Arc<Vec<u8>>) -> Result<Prepared, String> {
        self.prepared
            .get_or_init(|| async {
                let snapshot = self.record.lock().await.clone();
                if let Some(p) = snapshot.prepared {
                    return Ok(p);
                }
                let p = self.core.preparer.prepare(&snapshot, body.clone()).await?;
                let mut record = self.record.lock().await;
                record.prepared = Some(p.clone());
                self.core.store.update(&record, Some(record.due_ms)).map_err(|e| e.to_string())?;
                tracing::info!(msg_id = %self.id, signed_as = %p.signed_domain, selector = %p.selector, envelope_from = %p.envelope_from, reason = %p.reason, "prepared");
                Ok(p)
            })
            .await
            .clone()
    }

    /// Records one destination's results. When it was the last destination
    /// of this round, the message is retired if finished.
    pub async fn complete(&self, results: Vec<JobOutcome>) {
        let now = self.core.clock.now_ms();
        let mut record = self.record.lock().await;
        let expired = now >= record.received_ms + self.core.lifetime_ms;
        for r in results {
            let Some(rcpt) = record.recipients.get_mut(r.rcpt) else { continue };
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
            rcpt.attempts.push(Attempt { at_ms: now, host: r.host, outcome: r.outcome, reply: r.reply });
        }
        let last = self.jobs_left.fetch_sub(1, Ordering::AcqRel) == 1;
        if last && record.is_finished() {
            finish(&self.core, record.clone());
        } else if let Err(e) = self.core.store.update(&record, Some(record.due_ms)) {
            tracing::error!(msg_id = %self.id, error = %e, "cannot record the outcome");
        }
        if last {
            self.core.release(&self.id);
        }
        drop(record);
        if let Err(e) = self.core.store.durable().await {
            tracing::error!(msg_id = %self.id, error = %e, "flushing the outcome failed");
        }
    }
}

/// Retires a finished message and, if a recipient failed, spools a DSN
/// to its envelope sender.
/// The body is read back only when a DSN will quote its headers, and
/// before retiring drops it; a delivered message costs no read.
pub(crate) fn finish(core: &Arc<QueueCore>, mut record: MessageRecord) {
    let now = core.clock.now_ms();
    record.finished_ms = Some(now);
    let headers = if dsn::wanted(&record, core.dsn) {
        let body = core.store.body(&record.id).ok().flatten().unwrap_or_default();
        Some(dsn::header_section(&body).to_vec())
    } else {
        None
    };
    if let Err(e) = core.store.retire(&record) {
        tracing::error!(msg_id = %record.id, error = %e, "cannot retire message");
        return;
    }
    tracing::info!(msg_id = %record.id, "finished");
    if let Some(headers) = headers {
        core.notify_sender(&record, &headers);
    }
}

impl QueueCore {
    /// Retires a message none of whose recipients waits any longer, as the
    /// scheduler does; for callers outside the delivery round (a bounce
    /// that failed the last pending recipient).
    pub fn finish(self: &Arc<Self>, record: MessageRecord) {
        finish(self, record);
    }

    /// Spools a DSN to the envelope sender of `record` for its failed and
    /// expired recipients, if DSNs are wanted (`dsn::wanted`).
    /// `original_headers` is the header section quoted in the DSN.
    pub fn notify_sender(&self, record: &MessageRecord, original_headers: &[u8]) {
        if !dsn::wanted(record, self.dsn) {
            return;
        }
        let now = self.clock.now_ms();
        let id = MessageId::generate(now);
        let bytes = dsn::build(record, original_headers, &self.hostname, &self.relay_domain, now / 1000, id.as_str());
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
            recipients: vec![Recipient { address: record.mail_from.clone(), status: RcptStatus::Queued, attempts: Vec::new() }],
            due_ms: now,
            decision: None,
            attempts: 0,
            prepared: None,
            finished_ms: None,
            is_dsn: true,
        };
        tracing::info!(msg_id = %record.id, dsn_id = %id, to = %record.mail_from, "sending delivery status notification");
        let store = self.store.clone();
        tokio::spawn(async move {
            if let Err(e) = store.spool(&dsn_record, bytes).await {
                tracing::error!(msg_id = %dsn_record.id, error = %e, "cannot queue the DSN");
            }
        });
    }
}
