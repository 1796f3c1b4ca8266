//! Events: every outcome a billing app or an operator acts on, as a
//! durable, ordered log (stored by the store module in the same batch as
//! the change it reports), read with a resumable cursor
//! (`GET /api/events`, `herald events`) and pushed to webhooks.
//!
//! This module holds the types only: what an event says, its id and
//! cursor, and the type filter (`message.*`). It imports nothing of the
//! relay, so the store, the queue and the admin API can all use it.

pub mod filter;

pub use filter::TypeFilter;
use serde::{Deserialize, Serialize};

/// What happened. The wire names are `message.accepted` and so on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventKind {
    #[serde(rename = "message.accepted")]
    Accepted,
    #[serde(rename = "message.delivered")]
    Delivered,
    #[serde(rename = "message.deferred")]
    Deferred,
    #[serde(rename = "message.failed")]
    Failed,
    /// An asynchronous DSN came back through the bounce listener.
    #[serde(rename = "message.bounced")]
    Bounced,
    /// An operator dropped the message.
    #[serde(rename = "message.dropped")]
    Dropped,
    #[serde(rename = "domain.pending")]
    DomainPending,
    #[serde(rename = "domain.verified")]
    DomainVerified,
    #[serde(rename = "domain.failing")]
    DomainFailing,
    #[serde(rename = "domain.unverified")]
    DomainUnverified,
    /// A step of a DKIM key rotation: published, switched, withdrawn, revoked.
    #[serde(rename = "domain.key_rotation")]
    DomainKeyRotation,
    /// A recipient was put on the suppression list (or taken off).
    #[serde(rename = "suppression.added")]
    SuppressionAdded,
    #[serde(rename = "suppression.removed")]
    SuppressionRemoved,
    /// A test event (`POST /api/webhooks/{name}/test`); never stored.
    #[serde(rename = "webhook.test")]
    Test,
}

impl EventKind {
    pub const ALL: [EventKind; 14] = [
        EventKind::Accepted,
        EventKind::Delivered,
        EventKind::Deferred,
        EventKind::Failed,
        EventKind::Bounced,
        EventKind::Dropped,
        EventKind::DomainPending,
        EventKind::DomainVerified,
        EventKind::DomainFailing,
        EventKind::DomainUnverified,
        EventKind::DomainKeyRotation,
        EventKind::SuppressionAdded,
        EventKind::SuppressionRemoved,
        EventKind::Test,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Accepted => "message.accepted",
            EventKind::Delivered => "message.delivered",
            EventKind::Deferred => "message.deferred",
            EventKind::Failed => "message.failed",
            EventKind::Bounced => "message.bounced",
            EventKind::Dropped => "message.dropped",
            EventKind::DomainPending => "domain.pending",
            EventKind::DomainVerified => "domain.verified",
            EventKind::DomainFailing => "domain.failing",
            EventKind::DomainUnverified => "domain.unverified",
            EventKind::DomainKeyRotation => "domain.key_rotation",
            EventKind::SuppressionAdded => "suppression.added",
            EventKind::SuppressionRemoved => "suppression.removed",
            EventKind::Test => "webhook.test",
        }
    }

    pub fn parse(text: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.as_str() == text)
    }
}

/// An event id: milliseconds since the epoch in the high 64 bits and a
/// sequence number in the low ones, so ids sort by time and are unique.
/// Its text form (32 hex digits) is the cursor clients keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct EventId(pub u128);

impl EventId {
    pub fn time_ms(self) -> i64 {
        (self.0 >> 64) as i64
    }

    /// The first id at or after `ms`.
    pub fn at_ms(ms: i64) -> EventId {
        EventId((ms.max(0) as u128) << 64)
    }

    /// The id after `last` that is no earlier than `now_ms`.
    pub fn next(last: EventId, now_ms: i64) -> EventId {
        EventId((last.0 + 1).max(Self::at_ms(now_ms).0))
    }

    pub fn to_bytes(self) -> [u8; 16] {
        self.0.to_be_bytes()
    }

    pub fn from_bytes(bytes: &[u8]) -> Option<EventId> {
        Some(EventId(u128::from_be_bytes(bytes.try_into().ok()?)))
    }

    pub fn parse(text: &str) -> Option<EventId> {
        (text.len() == 32).then(|| u128::from_str_radix(text, 16).ok()).flatten().map(EventId)
    }
}

impl std::fmt::Display for EventId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

/// One event as stored and as sent (`EventV1` on the wire). Fields that
/// do not apply to an event's type are left out of its JSON.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Event {
    /// The cursor: time-sortable and unique. Empty until stored.
    #[serde(default)]
    pub id: String,
    /// Milliseconds since the epoch.
    pub time_ms: i64,
    #[serde(rename = "type")]
    pub kind: Option<EventKind>,
    /// The relay's message id (the one in `250 … queued as <id>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The message's `Message-ID` header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// The billing app's own reference (`events.reference_header`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient: Option<String>,
    /// Every recipient, on `message.accepted`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recipients: Vec<String>,
    /// The From header's domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_domain: Option<String>,
    /// Who signs: the customer domain, or `relay`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    /// The authenticated submission user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The customer domain, on `domain.*` events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// The remote server (`mx.example.net [192.0.2.1]:25`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The remote reply, or the local reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<String>,
    /// Whether the delivery used TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<bool>,
    /// The delivery attempt (1 for the first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// When the next attempt is due, on `message.deferred`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_ms: Option<i64>,
    /// What the failure means (`message.deferred`, `failed`, `bounced`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bounce: Option<crate::bounce::BounceV1>,
    /// Why, in words: `synchronous` (a 5xx during delivery), `expired`,
    /// `dropped by the operator`, a domain's per-record reasons.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
}

impl Event {
    /// An event of `kind` at `time_ms`, every other field empty.
    pub fn new(kind: EventKind, time_ms: i64) -> Event {
        Event { kind: Some(kind), time_ms, ..Default::default() }
    }

    pub fn kind(&self) -> Option<EventKind> {
        self.kind
    }
}

/// A page of the event log (`GET /api/events`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventPageV1 {
    pub events: Vec<Event>,
    /// Pass as `after` to read on; the last event's id, or the `after`
    /// given when nothing new has happened.
    pub cursor: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_by_time_and_are_unique() {
        let a = EventId::next(EventId::default(), 1_000);
        let b = EventId::next(a, 1_000);
        let c = EventId::next(b, 999); // a clock that went back
        let d = EventId::next(c, 2_000);
        assert!(a < b && b < c && c < d);
        assert_eq!((a.time_ms(), d.time_ms()), (1_000, 2_000));
        for id in [a, b, c, d] {
            assert_eq!(EventId::parse(&id.to_string()), Some(id));
            assert_eq!(EventId::from_bytes(&id.to_bytes()), Some(id));
        }
        assert_eq!(EventId::parse("xyz"), None);
    }

    #[test]
    fn kinds_round_trip() {
        for k in EventKind::ALL {
            assert_eq!(EventKind::parse(k.as_str()), Some(k));
            assert_eq!(serde_json::to_string(&k).unwrap(), format!("\"{}\"", k.as_str()));
        }
    }
}
