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
}

/// One envelope recipient and its fate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recipient {
    pub address: String,
    pub status: RcptStatus,
}

/// Where a recipient stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RcptStatus {
    /// Accepted, waiting for its first or next attempt.
    Queued,
    /// The receiving server took it.
    Delivered,
    /// Permanently refused, or its queue lifetime ran out.
    Failed,
}

impl MessageRecord {
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
        self.recipients.iter().all(|r| r.status != RcptStatus::Queued)
    }
}
