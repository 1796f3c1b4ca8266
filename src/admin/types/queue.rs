//! Message and queue bodies: a message's state per recipient with its
//! attempts (`GET /api/messages/{id}`, retry, drop), the queue summary and
//! the queue listing, and their conversions from the store's records.

use crate::store::{Attempt, MessageRecord, Outcome, RcptStatus, Recipient};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Whether a message still waits for delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageStateV1 {
    /// In the queue: some recipient still waits for delivery.
    Queued,
    /// Every recipient reached a final state; kept for inspection until
    /// `queue.retire_after` has passed.
    Finished,
}

/// Where one recipient stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RcptStatusV1 {
    /// Accepted, waiting for its first attempt.
    Queued,
    /// Tried, temporarily refused; waiting for the next attempt.
    Deferred,
    /// The receiving server took it.
    Delivered,
    /// Permanently refused (or dropped by the operator).
    Failed,
    /// Still refused when its queue lifetime ran out.
    Expired,
}

impl RcptStatusV1 {
    /// The name used on the wire and in `recipients_by_status`.
    pub fn as_str(self) -> &'static str {
        match self {
            RcptStatusV1::Queued => "queued",
            RcptStatusV1::Deferred => "deferred",
            RcptStatusV1::Delivered => "delivered",
            RcptStatusV1::Failed => "failed",
            RcptStatusV1::Expired => "expired",
        }
    }
}

/// How one attempt ended for one recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeV1 {
    Delivered,
    Temporary,
    Permanent,
}

impl OutcomeV1 {
    /// The name used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            OutcomeV1::Delivered => "delivered",
            OutcomeV1::Temporary => "temporary",
            OutcomeV1::Permanent => "permanent",
        }
    }
}

/// One try at one recipient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptV1 {
    /// When the outcome was recorded, ms since the epoch.
    pub at_ms: i64,
    /// The server tried (`mx.example.net [192.0.2.1]:25`); empty when none
    /// was reached.
    pub host: String,
    pub outcome: OutcomeV1,
    /// The remote server's reply, or the local error, as text.
    pub reply: String,
    /// What a failure means, in words (not on deliveries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bounce: Option<crate::bounce::BounceV1>,
}

/// One envelope recipient and its history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecipientV1 {
    pub address: String,
    pub status: RcptStatusV1,
    /// Oldest first.
    pub attempts: Vec<AttemptV1>,
}

/// `GET /api/messages/{id}`, and the answer to a retry or drop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageV1 {
    pub id: String,
    /// Acceptance time, ms since the epoch.
    pub received_ms: i64,
    /// The envelope sender as submitted (`""` for the null sender).
    pub mail_from: String,
    /// The From header's address and its domain.
    pub from_address: String,
    pub from_domain: String,
    /// The SMTP AUTH user that submitted it, if any.
    pub auth_user: Option<String>,
    /// The submitting client's address, and whether it used TLS.
    pub client_addr: String,
    pub tls: bool,
    /// Size of the message as submitted, in bytes.
    pub size: usize,
    pub state: MessageStateV1,
    /// True while a delivery attempt is running (retry and drop wait).
    pub in_flight: bool,
    /// Delivery rounds started so far.
    pub attempts: u32,
    /// When the next round is due (ms); `None` once finished.
    pub due_ms: Option<i64>,
    /// When the last recipient reached a final state (ms).
    pub finished_ms: Option<i64>,
    /// A delivery status notification made by the relay itself.
    pub is_dsn: bool,
    /// The signing identity, known from the first attempt on: `d=`, `s=`,
    /// the envelope sender used and why that identity was chosen.
    pub signed_domain: Option<String>,
    pub selector: Option<String>,
    pub envelope_from: Option<String>,
    pub reason: Option<String>,
    pub recipients: Vec<RecipientV1>,
    /// The Message-ID it is sent with, and the billing app's reference
    /// (`events.reference_header`); absent for messages accepted before
    /// herald kept them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
}

/// `GET /api/queue`: counts over the queued (unfinished) messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueSummaryV1 {
    pub messages: usize,
    pub in_flight: usize,
    /// Recipients of queued messages by status name (`queued`, `deferred`,
    /// and, in partly delivered messages, final ones).
    pub recipients_by_status: BTreeMap<String, usize>,
    /// The earliest next-attempt time in the queue.
    pub oldest_due_ms: Option<i64>,
}

/// `GET /api/messages?q=TEXT`: queued and finished messages whose relay
/// id, Message-ID (angle brackets optional), recipient or reference is
/// `TEXT` (case-insensitive, whole value), most recent first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageSearchV1 {
    /// The text searched for, as given.
    pub query: String,
    pub messages: Vec<MessageV1>,
    /// More messages matched than the answer holds (the newest are shown).
    pub truncated: bool,
}

/// `GET /api/queue/messages?limit=N`: queued messages, most recent first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueListV1 {
    /// All queued messages, of which `messages` shows the newest `limit`.
    pub total: usize,
    pub messages: Vec<MessageV1>,
}

impl From<RcptStatus> for RcptStatusV1 {
    fn from(s: RcptStatus) -> Self {
        match s {
            RcptStatus::Queued => RcptStatusV1::Queued,
            RcptStatus::Deferred => RcptStatusV1::Deferred,
            RcptStatus::Delivered => RcptStatusV1::Delivered,
            RcptStatus::Failed => RcptStatusV1::Failed,
            RcptStatus::Expired => RcptStatusV1::Expired,
        }
    }
}

impl From<Outcome> for OutcomeV1 {
    fn from(o: Outcome) -> Self {
        match o {
            Outcome::Delivered => OutcomeV1::Delivered,
            Outcome::Temporary => OutcomeV1::Temporary,
            Outcome::Permanent => OutcomeV1::Permanent,
        }
    }
}

impl From<&Attempt> for AttemptV1 {
    fn from(a: &Attempt) -> Self {
        Self {
            at_ms: a.at_ms,
            host: a.host.clone(),
            outcome: a.outcome.into(),
            reply: a.reply.clone(),
            bounce: a.bounce.map(Into::into),
        }
    }
}

impl From<&Recipient> for RecipientV1 {
    fn from(r: &Recipient) -> Self {
        Self {
            address: r.address.clone(),
            status: r.status.into(),
            attempts: r.attempts.iter().map(AttemptV1::from).collect(),
        }
    }
}

impl MessageV1 {
    /// The API view of a stored record; `in_flight` comes from the queue.
    pub fn from_record(r: &MessageRecord, in_flight: bool) -> Self {
        let finished = r.finished_ms.is_some() || r.is_finished();
        let prepared = r.prepared.as_ref();
        Self {
            id: r.id.to_string(),
            received_ms: r.received_ms,
            mail_from: r.mail_from.clone(),
            from_address: r.from_address.clone(),
            from_domain: r.from_domain.clone(),
            auth_user: r.auth_user.clone(),
            client_addr: r.client_addr.clone(),
            tls: r.tls,
            size: r.size,
            state: if finished {
                MessageStateV1::Finished
            } else {
                MessageStateV1::Queued
            },
            in_flight,
            attempts: r.attempts,
            due_ms: (!finished).then_some(r.due_ms),
            finished_ms: r.finished_ms,
            is_dsn: r.is_dsn,
            signed_domain: prepared.map(|p| p.signed_domain.clone()),
            selector: prepared.map(|p| p.selector.clone()),
            envelope_from: prepared.map(|p| p.envelope_from.clone()),
            reason: prepared.map(|p| p.reason.clone()),
            recipients: r.recipients.iter().map(RecipientV1::from).collect(),
            message_id: r.message_id_header.clone(),
            reference: r.reference.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_names_match_the_wire() {
        for s in [
            RcptStatusV1::Queued,
            RcptStatusV1::Deferred,
            RcptStatusV1::Delivered,
            RcptStatusV1::Failed,
            RcptStatusV1::Expired,
        ] {
            assert_eq!(serde_json::to_value(s).unwrap(), serde_json::Value::String(s.as_str().into()));
        }
        for o in [OutcomeV1::Delivered, OutcomeV1::Temporary, OutcomeV1::Permanent] {
            assert_eq!(serde_json::to_value(o).unwrap(), serde_json::Value::String(o.as_str().into()));
        }
    }
}
