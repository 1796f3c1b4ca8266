//! The suppression list: recipients that hard-bounced as invalid or
//! disabled (or whose mailbox was full too often), per scope — `relay`,
//! or the customer domain that sent — until they expire or are removed.
//! Kept in its own sled tree:
//!
//! | key                          | value |
//! |------------------------------|-------|
//! | `s/<scope>/<address>`        | [`SuppressionV1`] (JSON) |
//! | `c/<scope>/<address>`        | times (ms) of recent `mailbox_full` bounces (JSON) |
//!
//! Addresses are kept lowercase (the domain part is case-insensitive;
//! local parts are case-sensitive in theory and not in practice).
//!
//! Every RCPT asks whether its address is suppressed. The keys of the
//! suppressions (`s/…`, not their values) are kept in memory too, so the
//! answer for an address that is not listed — nearly every one — costs no
//! sled read: sled's reads wait while the commit thread applies a batch,
//! and they ran on the runtime's threads, holding up every session on
//! them (at 50 sessions, 1 % of RCPTs waited a millisecond or more).
//! Open the list once per database and clone it: the set in memory is
//! changed by the writes made through it.

use super::StoreError;
use crate::bounce::{Bounce, BounceClass};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::sync::{Arc, PoisonError, RwLock};

/// One suppressed address (`GET /api/suppressions`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SuppressionV1 {
    pub address: String,
    /// `relay`, or the customer domain whose mail bounced.
    pub scope: String,
    pub class: BounceClass,
    /// Why, in words.
    pub reason: String,
    /// The reply that caused it, if it came from a bounce.
    #[serde(default)]
    pub reply: Option<String>,
    /// The relay message id that caused it.
    #[serde(default)]
    pub message: Option<String>,
    pub since_ms: i64,
    /// `None`: never expires.
    pub until_ms: Option<i64>,
    /// `delivery` (a 5xx), `bounce` (an asynchronous DSN) or `manual`.
    pub source: String,
}

/// The rules of `[suppression]`.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    /// How long a suppression lasts; 0 = forever.
    pub days: u64,
    /// `mailbox_full` bounces within the window that suppress.
    pub mailbox_full_after: u32,
    pub mailbox_full_window_ms: i64,
}

#[derive(Clone)]
pub struct Suppressions {
    tree: sled::Tree,
    /// The `s/` keys in the tree: changed together with it, under this
    /// lock, by [`Suppressions::write`].
    listed: Arc<RwLock<HashSet<Vec<u8>>>>,
}

fn key(kind: u8, scope: &str, address: &str) -> Vec<u8> {
    format!("{}/{}/{}", kind as char, scope.to_ascii_lowercase(), address.to_ascii_lowercase()).into_bytes()
}

fn corrupt(e: serde_json::Error) -> StoreError {
    StoreError::Corrupt { key: "suppression".into(), reason: e.to_string() }
}

impl Suppressions {
    pub fn open(db: &sled::Db) -> Result<Suppressions, StoreError> {
        let tree = db.open_tree("suppressions")?;
        let listed = tree.scan_prefix(b"s/").keys().map(|k| k.map(|k| k.to_vec())).collect::<Result<_, _>>()?;
        Ok(Suppressions { tree, listed: Arc::new(RwLock::new(listed)) })
    }

    /// Puts `value` at the `s/` key `k` (or removes it), and changes the
    /// keys in memory with it.
    fn write(&self, k: Vec<u8>, value: Option<Vec<u8>>) -> Result<(), StoreError> {
        let mut listed = self.listed.write().unwrap_or_else(PoisonError::into_inner);
        match value {
            Some(v) => {
                self.tree.insert(&k, v)?;
                listed.insert(k);
            }
            None => {
                self.tree.remove(&k)?;
                listed.remove(&k);
            }
        }
        Ok(())
    }

    /// The suppression in force for `address` in `scope` at `now_ms`; an
    /// expired one is forgotten on the way.
    pub fn active(&self, scope: &str, address: &str, now_ms: i64) -> Result<Option<SuppressionV1>, StoreError> {
        let k = key(b's', scope, address);
        if !self.listed.read().unwrap_or_else(PoisonError::into_inner).contains(&k) {
            return Ok(None);
        }
        let Some(bytes) = self.tree.get(&k)? else { return Ok(None) };
        let s: SuppressionV1 = serde_json::from_slice(&bytes).map_err(corrupt)?;
        if s.until_ms.is_some_and(|u| u <= now_ms) {
            // Unless it was put again meanwhile.
            let mut listed = self.listed.write().unwrap_or_else(PoisonError::into_inner);
            if self.tree.compare_and_swap(&k, Some(&bytes), None as Option<&[u8]>)?.is_ok() {
                listed.remove(&k);
            }
            return Ok(None);
        }
        Ok(Some(s))
    }

    pub fn put(&self, s: &SuppressionV1) -> Result<(), StoreError> {
        self.write(key(b's', &s.scope, &s.address), Some(serde_json::to_vec(s).map_err(corrupt)?))
    }

    /// Removes `address` from `scope`, or from every scope; the removed ones.
    pub fn remove(&self, address: &str, scope: Option<&str>) -> Result<Vec<SuppressionV1>, StoreError> {
        let mut removed = Vec::new();
        for s in self.list(scope, usize::MAX, 0)? {
            if s.address.eq_ignore_ascii_case(address) {
                self.write(key(b's', &s.scope, &s.address), None)?;
                self.tree.remove(key(b'c', &s.scope, &s.address))?;
                removed.push(s);
            }
        }
        Ok(removed)
    }

    /// Suppressions in force, by scope then address; at most `limit`.
    pub fn list(&self, scope: Option<&str>, limit: usize, now_ms: i64) -> Result<Vec<SuppressionV1>, StoreError> {
        let prefix = match scope {
            Some(s) => format!("s/{}/", s.to_ascii_lowercase()),
            None => "s/".to_string(),
        };
        let mut out = Vec::new();
        for item in self.tree.scan_prefix(prefix.as_bytes()) {
            let (_, v) = item?;
            let s: SuppressionV1 = serde_json::from_slice(&v).map_err(corrupt)?;
            if now_ms > 0 && s.until_ms.is_some_and(|u| u <= now_ms) {
                continue;
            }
            out.push(s);
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    pub fn count(&self) -> usize {
        self.tree.scan_prefix(b"s/").count()
    }

    /// Applies the rules to one failure: a hard `invalid_recipient` or
    /// `mailbox_disabled` suppresses at once; `mailbox_full` after
    /// `mailbox_full_after` of them within the window; nothing else ever.
    /// Returns the new suppression, if this failure made one.
    #[allow(clippy::too_many_arguments)]
    pub fn note_failure(&self, rules: &Rules, scope: &str, address: &str, bounce: Bounce, reply: &str, message: &str, source: &str, now_ms: i64) -> Result<Option<SuppressionV1>, StoreError> {
        let suppress = match bounce.class {
            BounceClass::InvalidRecipient | BounceClass::MailboxDisabled => bounce.hard,
            BounceClass::MailboxFull => self.count_full(rules, scope, address, now_ms)?,
            _ => false,
        };
        if !suppress || self.active(scope, address, now_ms)?.is_some() {
            return Ok(None);
        }
        let s = SuppressionV1 {
            address: address.to_ascii_lowercase(),
            scope: scope.to_ascii_lowercase(),
            class: bounce.class,
            reason: bounce.class.words().to_string(),
            reply: Some(reply.to_string()),
            message: Some(message.to_string()),
            since_ms: now_ms,
            until_ms: (rules.days > 0).then(|| now_ms + rules.days as i64 * 86_400_000),
            source: source.to_string(),
        };
        self.put(&s)?;
        Ok(Some(s))
    }

    /// Counts one `mailbox_full` bounce; true when the window now holds
    /// enough of them.
    fn count_full(&self, rules: &Rules, scope: &str, address: &str, now_ms: i64) -> Result<bool, StoreError> {
        let k = key(b'c', scope, address);
        let mut times: Vec<i64> = match self.tree.get(&k)? {
            Some(v) => serde_json::from_slice(&v).map_err(corrupt)?,
            None => Vec::new(),
        };
        times.retain(|&t| now_ms - t < rules.mailbox_full_window_ms);
        times.push(now_ms);
        let enough = rules.mailbox_full_after > 0 && times.len() as u32 >= rules.mailbox_full_after;
        if enough {
            self.tree.remove(&k)?;
        } else {
            self.tree.insert(k, serde_json::to_vec(&times).map_err(corrupt)?)?;
        }
        Ok(enough)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> Rules {
        Rules { days: 90, mailbox_full_after: 3, mailbox_full_window_ms: 7 * 86_400_000 }
    }

    /// Whether an address is suppressed is answered from the keys in
    /// memory when it is not listed; they follow every write through any
    /// clone, and a list opened afresh loads them from the tree.
    #[test]
    fn the_keys_in_memory_follow_the_tree() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).temporary(true).open().unwrap();
        let day = 86_400_000;
        {
            let s = Suppressions::open(&db).unwrap();
            let hard = Bounce { class: BounceClass::InvalidRecipient, hard: true };
            s.note_failure(&rules(), "relay", "Gone@Dest.test", hard, "550 5.1.1", "id1", "delivery", day).unwrap().unwrap();
        }
        let s = Suppressions::open(&db).unwrap();
        let clone = s.clone();
        assert!(s.active("relay", "gone@dest.test", 2 * day).unwrap().is_some(), "loaded at open");
        assert!(s.active("relay", "other@dest.test", 2 * day).unwrap().is_none());
        clone.remove("GONE@dest.test", None).unwrap();
        assert!(s.active("relay", "gone@dest.test", 2 * day).unwrap().is_none(), "removed through a clone");
        let manual = SuppressionV1 {
            address: "new@dest.test".into(),
            scope: "relay".into(),
            class: BounceClass::MailboxDisabled,
            reason: "manual".into(),
            reply: None,
            message: None,
            since_ms: day,
            until_ms: Some(3 * day),
            source: "manual".into(),
        };
        clone.put(&manual).unwrap();
        assert_eq!(s.active("relay", "New@dest.test", 2 * day).unwrap(), Some(manual.clone()), "put through a clone");
        // Expired: forgotten on the way, in memory and in the tree.
        assert!(s.active("relay", "new@dest.test", 3 * day).unwrap().is_none());
        assert_eq!(s.count(), 0);
        assert!(Suppressions::open(&db).unwrap().active("relay", "new@dest.test", day).unwrap().is_none());
    }

    #[test]
    fn rules_decide_what_is_suppressed() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).temporary(true).open().unwrap();
        let s = Suppressions::open(&db).unwrap();
        let b = |class, hard| Bounce { class, hard };
        let day = 86_400_000;
        // Hard invalid: at once, for 90 days, case folded.
        let got = s.note_failure(&rules(), "relay", "Payer@Dest.test", b(BounceClass::InvalidRecipient, true), "550 5.1.1 no such user", "id1", "delivery", day).unwrap().unwrap();
        assert_eq!((got.address.as_str(), got.until_ms), ("payer@dest.test", Some(91 * day)));
        assert!(s.active("relay", "PAYER@dest.test", 2 * day).unwrap().is_some());
        assert!(s.active("relay", "payer@dest.test", 92 * day).unwrap().is_none(), "expired");
        assert!(s.active("relay", "payer@dest.test", 2 * day).unwrap().is_none(), "and forgotten");
        // Soft classes never; temporary invalid never.
        for (class, hard) in [(BounceClass::RateLimited, false), (BounceClass::ReputationBlock, true), (BounceClass::InvalidRecipient, false), (BounceClass::OtherPermanent, true)] {
            assert!(s.note_failure(&rules(), "relay", "x@d.test", b(class, hard), "r", "id", "delivery", day).unwrap().is_none(), "{class:?}");
        }
        // Mailbox full: the third within the window.
        for (n, at) in [(1, day), (2, 3 * day), (3, 20 * day), (4, 21 * day), (5, 22 * day)] {
            let made = s.note_failure(&rules(), "customer.nl", "full@d.test", b(BounceClass::MailboxFull, false), "452 4.2.2 full", "id", "delivery", at).unwrap();
            assert_eq!(made.is_some(), n == 5, "bounce {n}: the first two fell out of the window");
        }
        assert!(s.active("relay", "full@d.test", 22 * day).unwrap().is_none(), "scopes are apart");
        assert_eq!(s.list(None, 10, 22 * day).unwrap().len(), 1);
        assert_eq!(s.remove("FULL@d.test", None).unwrap().len(), 1);
        assert_eq!(s.count(), 0);
        // Forever.
        let forever = Rules { days: 0, ..rules() };
        let got = s.note_failure(&forever, "relay", "gone@d.test", b(BounceClass::MailboxDisabled, true), "550 5.2.1", "id", "bounce", day).unwrap().unwrap();
        assert_eq!(got.until_ms, None);
        assert!(s.active("relay", "gone@d.test", i64::MAX / 2).unwrap().is_some());
    }
}
