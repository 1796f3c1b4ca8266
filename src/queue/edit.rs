//! The operator's edits of a queued message — make it due now, or drop
//! it — done by the queue, which owns the records: each takes the same
//! hold the scheduler claims through, so an edit and a delivery attempt
//! never write the same record at once.

use super::QueueCore;
use crate::events::{Event, EventKind};
use crate::id::MessageId;
use crate::store::{Attempt, MessageRecord, Outcome, RcptStatus, StoreError};

/// The reply recorded for recipients an operator dropped.
pub const DROPPED_REPLY: &str = "dropped by the operator";

/// Why an edit was not made.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    #[error("message {0} is being delivered right now; try again once this attempt has ended")]
    Busy(MessageId),
    #[error("message {0} has already finished")]
    Finished(MessageId),
    #[error("no message {0}: unknown, or finished longer ago than `queue.retire_after`")]
    Unknown(MessageId),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl QueueCore {
    /// The queued record of `id`, for an edit.
    fn queued(&self, id: &MessageId) -> Result<MessageRecord, EditError> {
        match self.store.message(id)? {
            Some(record) => Ok(record),
            None if self.store.find(id)?.is_some() => Err(EditError::Finished(*id)),
            None => Err(EditError::Unknown(*id)),
        }
    }

    /// Makes a waiting message due now; its record after the change.
    pub async fn retry_now(&self, id: &MessageId) -> Result<MessageRecord, EditError> {
        let hold = self.hold(id).ok_or(EditError::Busy(*id))?;
        let mut record = self.queued(id)?;
        let now = self.clock.now_ms();
        let old_due = record.due_ms;
        if old_due > now {
            record.due_ms = now;
            self.store.update(&record, Some(old_due))?;
        }
        drop(hold);
        self.store.durable().await?;
        tracing::info!(msg_id = %id, was_due_ms = old_due, "retry requested by the operator; due now");
        self.wake.notify_one();
        Ok(record)
    }

    /// Fails every pending recipient with [`DROPPED_REPLY`] and retires
    /// the message, with a `message.dropped` event each. No DSN: the
    /// operator decided, and the sender can read the outcome.
    pub async fn drop_message(&self, id: &MessageId) -> Result<MessageRecord, EditError> {
        let hold = self.hold(id).ok_or(EditError::Busy(*id))?;
        let mut record = self.queued(id)?;
        let now = self.clock.now_ms();
        let mut events: Vec<Event> = Vec::new();
        for i in 0..record.recipients.len() {
            if !record.recipients[i].status.is_pending() {
                continue;
            }
            let mut e = record.rcpt_event(i, EventKind::Dropped, now);
            e.reasons = vec![DROPPED_REPLY.into()];
            events.push(e);
            let r = &mut record.recipients[i];
            r.status = RcptStatus::Failed;
            r.reported = true;
            r.attempts.push(Attempt::new(now, String::new(), Outcome::Permanent, DROPPED_REPLY.into()));
            tracing::warn!(msg_id = %id, rcpt = %r.address, "failed: dropped by the operator");
        }
        record.finished_ms = Some(now);
        self.store.retire_with(&record, events)?;
        drop(hold);
        self.store.durable().await?;
        tracing::info!(msg_id = %id, "finished (dropped)");
        Ok(record)
    }
}
