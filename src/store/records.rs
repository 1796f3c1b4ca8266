//! What the spool stores about a message, per recipient.
//!
//! Records are JSON with a version number `v`, so a later herald can read
//! what an earlier one wrote; new fields carry `#[serde(default)]`.

use super::StoreError;
use crate::id::MessageId;
use serde::{Deserialize, Serialize};

/// The record version this herald writes.
pub const RECORD_VERSION: u32 = 1;

/// Everything known about one accepted message except its bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageRecord {
    pub v: u32,
    pub id: MessageId,
    /// Acceptance time, ms since the epoch.
    pub received_ms: i64,
    /// The envelope sender as submitted (`""` for the null sender).
    pub mail_from: String,
    /// The single address of the From header, and its domain (lowercase).
    pub from_address: String,
    pub from_domain: String,
    /// The authenticated user, if the client authenticated.
    pub auth_user: Option<String>,
    /// Client address and the name it gave in EHLO/HELO.
    pub client_addr: String,
    pub client_helo: String,
    /// Whether the submission came over TLS.
    pub tls: bool,
    /// Size of the stored body in bytes.
    pub size: usize,
    /// The Received header the relay adds in front of the message.
    pub received_header: String,
    pub recipients: Vec<Recipient>,
    /// When the next delivery attempt is due (ms); meaningless once finished.
    pub due_ms: i64,
    /// The sending identity chosen at acceptance (DESIGN policy 2–4).
    #[serde(default)]
    pub decision: Option<crate::policy::Decision>,
    /// Delivery rounds started so far (written before each round begins).
    #[serde(default)]
    pub attempts: u32,
    /// The sending identity and header block, fixed at the first attempt
    /// so every retry sends the same bytes.
    #[serde(default)]
    pub prepared: Option<Prepared>,
    /// When the last recipient reached a final state (ms).
    #[serde(default)]
    pub finished_ms: Option<i64>,
    /// A delivery status notification made by the relay: sent with the
    /// null sender, and never answered with another one.
    #[serde(default)]
    pub is_dsn: bool,
    /// The submission used `SMTPUTF8` (RFC 6531): delivery asks for it
    /// too, and a DSN uses RFC 6533's global types.
    #[serde(default)]
    pub smtputf8: bool,
    /// The `Message-ID` header as submitted (or as the relay added it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id_header: Option<String>,
    /// The billing app's reference (`events.reference_header`), taken out
    /// of the message at submission.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
}

/// What the relay adds to and changes in a message, computed once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prepared {
    /// MAIL FROM used for delivery (`""` for a DSN).
    pub envelope_from: String,
    /// Header fields placed in front of the message (DKIM-Signature,
    /// Received, a rewritten From and Reply-To, a Message-ID), CRLF-ended.
    pub prefix: String,
    /// Byte range of the original From field to leave out when From was
    /// rewritten.
    pub skip: Option<(usize, usize)>,
    /// `d=` and `s=` of the signature, for the log and the API.
    pub signed_domain: String,
    pub selector: String,
    /// Why this identity (e.g. "unverified: relay identity").
    pub reason: String,
    /// Send with `SMTPUTF8` (the submission used it).
    #[serde(default)]
    pub smtputf8: bool,
}

impl Prepared {
    /// The bytes to transmit, as chunks: prefix, then the message minus
    /// the skipped range. Nothing is copied.
    pub fn chunks<'a>(&'a self, body: &'a [u8]) -> [&'a [u8]; 3] {
        match self.skip {
            Some((start, end)) if start <= end && end <= body.len() => [self.prefix.as_bytes(), &body[..start], &body[end..]],
            _ => [self.prefix.as_bytes(), body, &[]],
        }
    }
}

/// One try at one recipient.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    pub at_ms: i64,
    /// The server tried (`mx.example.net [192.0.2.1]:25`), if one was reached.
    pub host: String,
    pub outcome: Outcome,
    /// The remote reply or the local error, as text.
    pub reply: String,
    /// What a failure means (not set on deliveries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bounce: Option<crate::bounce::Bounce>,
}

impl Attempt {
    /// An attempt, classified when it did not deliver.
    pub fn new(at_ms: i64, host: String, outcome: Outcome, reply: String) -> Attempt {
        let bounce = (outcome != Outcome::Delivered).then(|| crate::bounce::classify(&reply, outcome == Outcome::Permanent));
        Attempt { at_ms, host, outcome, reply, bounce }
    }
}

/// How one attempt ended for one recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Delivered,
    /// Try again later (4xx, network, TLS, DNS trouble).
    Temporary,
    /// Never going to work (5xx, null MX, no such domain).
    Permanent,
}

/// One envelope recipient and its fate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recipient {
    pub address: String,
    pub status: RcptStatus,
    #[serde(default)]
    pub attempts: Vec<Attempt>,
    /// The envelope sender has been sent a DSN for this recipient's
    /// failure (each failure is reported once, as soon as it is final).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reported: bool,
}

impl Recipient {
    /// A recipient waiting for its first attempt.
    pub fn queued(address: String) -> Self {
        Self { address, status: RcptStatus::Queued, attempts: Vec::new(), reported: false }
    }

    /// Failed or expired, and not yet reported to the sender.
    pub fn unreported_failure(&self) -> bool {
        matches!(self.status, RcptStatus::Failed | RcptStatus::Expired) && !self.reported
    }
}

/// Where a recipient stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RcptStatus {
    /// Accepted, waiting for its first attempt.
    Queued,
    /// Tried, temporarily refused; waiting for the next attempt.
    Deferred,
    /// The receiving server took it.
    Delivered,
    /// Permanently refused.
    Failed,
    /// Still refused when its queue lifetime ran out.
    Expired,
}

impl RcptStatus {
    /// Still waiting for delivery.
    pub fn is_pending(self) -> bool {
        matches!(self, RcptStatus::Queued | RcptStatus::Deferred)
    }
}

impl MessageRecord {
    /// An event about this message, with everything every message event
    /// carries (ids, reference, From domain, identity, user) filled in.
    pub fn event(&self, kind: crate::events::EventKind, time_ms: i64) -> crate::events::Event {
        // The identity decided at acceptance, the same on every event of
        // the message: the customer domain, or `relay`.
        let identity = self.decision.as_ref().map(|d| match &d.identity {
            crate::policy::Identity::Relay => "relay".to_string(),
            crate::policy::Identity::Customer { domain, .. } => domain.clone(),
        });
        crate::events::Event {
            message: Some(self.id.to_string()),
            message_id: self.message_id_header.clone(),
            reference: self.reference.clone(),
            from_domain: Some(self.from_domain.clone()),
            identity,
            user: self.auth_user.clone(),
            ..crate::events::Event::new(kind, time_ms)
        }
    }

    /// An event about recipient `i`.
    pub fn rcpt_event(&self, i: usize, kind: crate::events::EventKind, time_ms: i64) -> crate::events::Event {
        let mut e = self.event(kind, time_ms);
        e.recipient = self.recipients.get(i).map(|r| r.address.clone());
        e.attempt = Some(self.attempts);
        e
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        let record: Self = serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt { key: "message record".into(), reason: e.to_string() })?;
        if record.v > RECORD_VERSION {
            return Err(StoreError::Corrupt {
                key: record.id.to_string(),
                reason: format!("record version {} is newer than this herald understands ({RECORD_VERSION})", record.v),
            });
        }
        Ok(record)
    }

    /// True once no recipient waits for delivery.
    pub fn is_finished(&self) -> bool {
        self.recipients.iter().all(|r| !r.status.is_pending())
    }
}

/// A queued record with one recipient, for the store's tests.
#[cfg(test)]
pub(crate) fn sample(id: MessageId, due_ms: i64) -> MessageRecord {
    let json = serde_json::json!({
        "v": 1, "id": id, "received_ms": 1, "mail_from": "a@b.test", "from_address": "a@b.test", "from_domain": "b.test",
        "auth_user": null, "client_addr": "127.0.0.1", "client_helo": "c", "tls": false, "size": 600,
        "received_header": "", "recipients": [{"address": "x@y.test", "status": "queued"}], "due_ms": due_ms,
    });
    MessageRecord::decode(&serde_json::to_vec(&json).unwrap()).unwrap()
}
