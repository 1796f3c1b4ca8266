//! The suppression list's owner: decides, from `[suppression]`, which
//! failures suppress a recipient and under which scope, answers the
//! submission's question "is this recipient suppressed?", and makes every
//! change an event. The list itself is stored by
//! [`crate::store::suppressions`].

use crate::bounce::{Bounce, BounceClass};
use crate::config::{AtRcpt, SuppressionConfig, SuppressionScope};
use crate::events::{Event, EventKind};
use crate::store::suppressions::{Rules, SuppressionV1, Suppressions};
use crate::store::{MessageRecord, Store, StoreError};

/// The scope name of the relay-wide list (and of relay-identity mail).
pub const RELAY: &str = "relay";

#[derive(Clone)]
pub struct SuppressionList {
    list: Suppressions,
    store: Store,
    rules: Rules,
    scope: SuppressionScope,
    at_rcpt: AtRcpt,
    enabled: bool,
}

impl SuppressionList {
    pub fn open(store: &Store, config: &SuppressionConfig) -> Result<SuppressionList, StoreError> {
        Ok(SuppressionList {
            list: Suppressions::open(store.db())?,
            store: store.clone(),
            rules: Rules { days: config.days, mailbox_full_after: config.mailbox_full_after, mailbox_full_window_ms: config.mailbox_full_window_days as i64 * 86_400_000 },
            scope: config.scope,
            at_rcpt: config.at_rcpt,
            enabled: config.enabled,
        })
    }

    /// The scope a message's failures are filed under, and its recipients
    /// checked against: `relay`, or (per-domain scope) its identity.
    pub fn scope_of(&self, record: &MessageRecord) -> String {
        match (self.scope, &record.decision) {
            (SuppressionScope::Domain, Some(d)) => match &d.identity {
                crate::policy::Identity::Customer { domain, .. } => domain.to_ascii_lowercase(),
                crate::policy::Identity::Relay => RELAY.into(),
            },
            _ => RELAY.into(),
        }
    }

    /// At RCPT (relay-wide scope, `at_rcpt = "refuse"`): the suppression
    /// that refuses `address`, if any. Per-domain scopes are checked when
    /// the message is taken, once its From header is known.
    pub fn refuses_at_rcpt(&self, address: &str, now_ms: i64) -> Option<SuppressionV1> {
        if !self.enabled || self.scope != SuppressionScope::Relay || self.at_rcpt != AtRcpt::Refuse {
            return None;
        }
        self.active(RELAY, address, now_ms)
    }

    /// Whether recipients are checked when the message is taken (a
    /// per-domain list, or `at_rcpt = "accept_and_fail"`); otherwise RCPT
    /// already refused them, and taking the message costs no lookups.
    pub fn checked_at_acceptance(&self) -> bool {
        self.enabled && (self.scope == SuppressionScope::Domain || self.at_rcpt == AtRcpt::AcceptAndFail)
    }

    /// The suppression of `address` under `scope`, if one is in force.
    pub fn active(&self, scope: &str, address: &str, now_ms: i64) -> Option<SuppressionV1> {
        if !self.enabled {
            return None;
        }
        self.list.active(scope, address, now_ms).unwrap_or_else(|e| {
            // A store that cannot be read must not refuse mail.
            tracing::error!(error = %e, "cannot read the suppression list; not suppressing");
            None
        })
    }

    /// Files one failure of recipient `i` of `record`; the events to
    /// store with it (a new suppression's).
    pub fn note(&self, record: &MessageRecord, i: usize, bounce: Bounce, reply: &str, source: &str, now_ms: i64) -> Vec<Event> {
        let Some(rcpt) = record.recipients.get(i) else { return Vec::new() };
        if !self.enabled || record.is_dsn {
            return Vec::new();
        }
        let scope = self.scope_of(record);
        match self.list.note_failure(&self.rules, &scope, &rcpt.address, bounce, reply, record.id.as_str(), source, now_ms) {
            Ok(Some(s)) => {
                tracing::warn!(msg_id = %record.id, rcpt = %s.address, scope = %s.scope, class = s.class.as_str(), "recipient suppressed");
                vec![event(EventKind::SuppressionAdded, &s, now_ms)]
            }
            Ok(None) => Vec::new(),
            Err(e) => {
                tracing::error!(msg_id = %record.id, error = %e, "cannot update the suppression list");
                Vec::new()
            }
        }
    }

    /// Adds an address by hand (`POST /api/suppressions`).
    pub fn add(&self, address: &str, scope: Option<&str>, reason: Option<&str>, days: Option<u64>, now_ms: i64) -> Result<SuppressionV1, StoreError> {
        let days = days.unwrap_or(self.rules.days);
        let s = SuppressionV1 {
            address: address.trim().to_ascii_lowercase(),
            scope: scope.unwrap_or(RELAY).to_ascii_lowercase(),
            class: BounceClass::Suppressed,
            reason: reason.unwrap_or("added by the operator").to_string(),
            reply: None,
            message: None,
            since_ms: now_ms,
            until_ms: (days > 0).then(|| now_ms + days as i64 * 86_400_000),
            source: "manual".into(),
        };
        self.list.put(&s)?;
        self.store.events().apply(sled::Batch::default(), vec![event(EventKind::SuppressionAdded, &s, now_ms)])?;
        tracing::info!(rcpt = %s.address, scope = %s.scope, "suppression added by the operator");
        Ok(s)
    }

    /// Removes `address` (from one scope, or all); the removed entries.
    pub fn remove(&self, address: &str, scope: Option<&str>, now_ms: i64) -> Result<Vec<SuppressionV1>, StoreError> {
        let removed = self.list.remove(address, scope)?;
        let events: Vec<Event> = removed.iter().map(|s| event(EventKind::SuppressionRemoved, s, now_ms)).collect();
        self.store.events().apply(sled::Batch::default(), events)?;
        for s in &removed {
            tracing::info!(rcpt = %s.address, scope = %s.scope, "suppression removed");
        }
        Ok(removed)
    }

    pub fn list(&self, scope: Option<&str>, limit: usize, now_ms: i64) -> Result<Vec<SuppressionV1>, StoreError> {
        self.list.list(scope, limit, now_ms)
    }

    pub fn count(&self) -> usize {
        self.list.count()
    }

    /// Waits until changes so far are on disk (and their events readable).
    pub async fn durable(&self) -> Result<(), StoreError> {
        self.store.durable().await
    }
}

/// The words of a refusal: `<a@b> is suppressed since … (until …): …`.
pub fn refusal_text(s: &SuppressionV1) -> String {
    let at = |ms: i64| humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64));
    let until = match s.until_ms {
        Some(u) => format!("until {}", at(u)),
        None => "until removed".into(),
    };
    format!("<{}> is suppressed since {} ({until}): {}", s.address, at(s.since_ms), s.reason)
}

fn event(kind: EventKind, s: &SuppressionV1, now_ms: i64) -> Event {
    let mut e = Event::new(kind, now_ms);
    e.recipient = Some(s.address.clone());
    e.domain = (s.scope != RELAY).then(|| s.scope.clone());
    e.message = s.message.clone();
    e.reply = s.reply.clone();
    e.reasons = vec![format!("{} ({})", s.reason, s.source)];
    e.bounce = Some(Bounce::new(s.class, true).into());
    e
}
