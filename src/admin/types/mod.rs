//! The admin API's request and response bodies, shared by the server
//! ([`super`]) and its clients ([`super::client`], the `herald queue`,
//! `herald domain` and `herald dns` CLI).
//!
//! Every type carries its version in its name (`...V1`, as KumoMTA does):
//! a change that would break a client gets a new type and a new route,
//! while new optional fields may be added to a `V1` type at any time
//! (clients ignore fields they do not know).
//!
//! These types are deliberately separate from the store's records, so the
//! spool format and the API can change independently; the conversions
//! live beside the types.
//!
//! `queue` holds the message and queue types, `domains` the customer
//! domain types, `inspect` the `herald inspect` report, `session` the
//! admin page's sign-in; all are re-exported here, so every type is
//! `herald::admin::types::<Name>` (and `herald::admin::<Name>`).

mod domains;
mod queue;
mod rotation;
mod session;

pub use domains::{
    AddDomainV1, CheckStatusV1, CustomerRecordV1, DomainListV1, DomainStateV1, DomainV1, OperatorRecordV1, OverallV1, RecordCheckV1,
    TransitionV1, VerificationV1,
};
pub use rotation::{KeyStepV1, KeyV1, RotationV1};
pub use crate::inspect::types::{DkimCheckV1, DmarcCheckV1, IdentityV1, InspectRequestV1, InspectV1, SpfCheckV1, StoredV1};
pub use session::{SessionV1, SignInV1};
pub use queue::{AttemptV1, MessageSearchV1, MessageStateV1, MessageV1, OutcomeV1, QueueListV1, QueueSummaryV1, RcptStatusV1, RecipientV1};

use serde::{Deserialize, Serialize};

/// `GET /api/health`: the relay is up and its store answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthV1 {
    /// `"ok"`, or `"disk_full"` while free space on the data directory is
    /// below `store.min_free_mb` (new mail is refused, delivery goes on).
    pub status: String,
    /// The herald version serving the API.
    pub version: String,
    /// Messages in the queue (not yet finished).
    pub queued: usize,
    /// Of those, messages in a delivery attempt right now.
    pub in_flight: usize,
    /// Below `store.min_free_mb`: new mail is refused with 452 4.3.1.
    #[serde(default)]
    pub disk_pressure: bool,
    /// Free bytes on the data directory's filesystem, if known.
    #[serde(default)]
    pub disk_free_bytes: Option<u64>,
}

/// The body of every 4xx/5xx answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorV1 {
    pub error: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_from_a_newer_server_are_ignored() {
        let text = r#"{"status":"ok","version":"9.9.9","queued":1,"in_flight":0,"new_field":true}"#;
        let h: HealthV1 = serde_json::from_str(text).unwrap();
        assert_eq!(h.queued, 1);
    }
}
