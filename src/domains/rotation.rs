//! DKIM key rotation behind the customer's CNAMEs, as pure functions of a
//! domain's key phases and the time.
//!
//! Each domain has two selectors (`hr1`, `hr2`) whose CNAMEs the customer
//! added once. Rotation only ever changes what is at the operator's end:
//!
//! ```text
//! hr1 active, hr2 standby
//!   start        → hr2 gets a fresh key, published (Publishing)
//!   visible      → hr2 active; hr1 Retiring until now + key_retention
//!                  (only once the new key resolves through the customer's
//!                  own CNAME from the relay's resolver)
//!   retention up → hr1 Withdrawn: its private key deleted, its record
//!                  removed (or published as `p=`, revoked)
//!   start        → hr1 gets a fresh key … and so on, back and forth.
//! ```
//!
//! A second rotation cannot start while the old key is still retained:
//! its selector is the only place a new key could go, and replacing it
//! would break mail signed before the last switch.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Most rotation steps kept per domain.
pub const MAX_STEPS: usize = 50;

/// What one selector's key is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum KeyPhase {
    /// Signs mail.
    Active,
    /// Published but not signing: the spare key from `domain add`.
    Standby,
    /// A fresh key, published; signing moves to it once it is visible
    /// through the customer's CNAME.
    Publishing { since_ms: i64 },
    /// Replaced; still published until `until_ms` so that mail signed
    /// before the switch still verifies.
    Retiring { until_ms: i64 },
    /// Replaced and no longer published; the private key is deleted.
    Withdrawn { at_ms: i64 },
}

impl fmt::Display for KeyPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyPhase::Active => "active",
            KeyPhase::Standby => "standby",
            KeyPhase::Publishing { .. } => "publishing",
            KeyPhase::Retiring { .. } => "retiring",
            KeyPhase::Withdrawn { .. } => "withdrawn",
        })
    }
}

/// One rotation step, kept in the domain's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyStep {
    pub at_ms: i64,
    pub selector: String,
    /// `published`, `switched`, `withdrawn`, `revoked`.
    pub step: String,
    pub detail: String,
}

/// The key phases of a domain's two selectors, as stored with its record.
/// Records from before rotation existed hold none: selector 1 active,
/// selector 2 standby.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Keys {
    /// In selector order; empty means the default.
    #[serde(default)]
    pub phases: Vec<KeyPhase>,
    /// When signing last moved to a new key (the domain's creation first).
    #[serde(default)]
    pub active_since_ms: Option<i64>,
    /// Steps, oldest first (at most [`MAX_STEPS`]).
    #[serde(default)]
    pub steps: Vec<KeyStep>,
}

/// Why a rotation cannot start now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RotateError {
    #[error("a rotation is already under way: {selector} is published and waiting to be visible through the customer's CNAME")]
    InProgress { selector: String },
    #[error("the previous key {selector} is kept published until {until} so mail signed with it still verifies; rotate again after that")]
    Retained { selector: String, until: String },
}

/// What [`advance`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Advanced {
    /// Signing moved to selector index `to`.
    Switched { to: usize },
    /// The key of selector index `index` was withdrawn: delete it.
    Withdrawn { index: usize },
}

impl Keys {
    /// The two phases, defaults filled in.
    pub fn phases(&self) -> [KeyPhase; 2] {
        match self.phases.as_slice() {
            [a, b] => [*a, *b],
            _ => [KeyPhase::Active, KeyPhase::Standby],
        }
    }

    /// Index of the selector that signs.
    pub fn active(&self) -> usize {
        usize::from(self.phases()[0] != KeyPhase::Active)
    }

    /// Index of the selector being published, if a rotation waits for it.
    pub fn publishing(&self) -> Option<usize> {
        self.phases().iter().position(|p| matches!(p, KeyPhase::Publishing { .. }))
    }

    /// Whether the key of selector `index` should be in DNS.
    pub fn published(&self, index: usize) -> bool {
        !matches!(self.phases().get(index), Some(KeyPhase::Withdrawn { .. }) | None)
    }

    fn set(&mut self, index: usize, phase: KeyPhase) {
        let mut phases = self.phases();
        phases[index] = phase;
        self.phases = phases.to_vec();
    }

    fn step(&mut self, at_ms: i64, selector: &str, step: &str, detail: String) {
        // Each step becomes a `domain.key_rotation` event (Domains::emit_steps).
        self.steps.push(KeyStep {
            at_ms,
            selector: selector.to_string(),
            step: step.to_string(),
            detail,
        });
        let excess = self.steps.len().saturating_sub(MAX_STEPS);
        self.steps.drain(..excess);
    }
}

/// Starts a rotation at `now_ms`: the idle selector (index returned) is to
/// get a fresh key, published at once. `selectors` are the domain's two.
pub fn start(keys: &mut Keys, selectors: &[String; 2], now_ms: i64, external: bool) -> Result<usize, RotateError> {
    let idle = 1 - keys.active();
    match keys.phases()[idle] {
        KeyPhase::Publishing { .. } => {
            return Err(RotateError::InProgress {
                selector: selectors[idle].clone(),
            });
        }
        KeyPhase::Retiring { until_ms } => {
            return Err(RotateError::Retained {
                selector: selectors[idle].clone(),
                until: time(until_ms),
            });
        }
        KeyPhase::Active | KeyPhase::Standby | KeyPhase::Withdrawn { .. } => {}
    }
    keys.set(idle, KeyPhase::Publishing { since_ms: now_ms });
    let how = if external {
        "publish it from `herald dns zone` at your DNS provider"
    } else {
        "served by the embedded DNS server at once"
    };
    keys.step(
        now_ms,
        &selectors[idle],
        "published",
        format!("new key for {}; {how}; signing switches once it resolves through the customer's CNAME", selectors[idle]),
    );
    Ok(idle)
}

/// Moves a rotation on at `now_ms`. `visible` says whether the publishing
/// selector's new key resolves through the customer's CNAME now (`None`
/// when it was not checked). Returns what changed.
pub fn advance(keys: &mut Keys, selectors: &[String; 2], visible: Option<bool>, now_ms: i64, retention_ms: i64, revoke: bool) -> Vec<Advanced> {
    let mut done = Vec::new();
    if let (Some(new), Some(true)) = (keys.publishing(), visible) {
        let old = 1 - new;
        let until = now_ms.saturating_add(retention_ms);
        keys.set(new, KeyPhase::Active);
        keys.set(old, KeyPhase::Retiring { until_ms: until });
        keys.active_since_ms = Some(now_ms);
        keys.step(
            now_ms,
            &selectors[new],
            "switched",
            format!(
                "{} resolves through the customer's CNAME; signing switched from {} to {}; {} stays published until {}",
                selectors[new],
                selectors[old],
                selectors[new],
                selectors[old],
                time(until)
            ),
        );
        done.push(Advanced::Switched { to: new });
    }
    for (index, selector) in selectors.iter().enumerate() {
        if let KeyPhase::Retiring { until_ms } = keys.phases()[index]
            && now_ms >= until_ms
        {
            keys.set(index, KeyPhase::Withdrawn { at_ms: now_ms });
            let (step, detail) = if revoke {
                ("revoked", format!("retention over: {selector} now publishes an empty `p=` (revoked)"))
            } else {
                ("withdrawn", format!("retention over: {selector} withdrawn from DNS"))
            };
            keys.step(now_ms, selector, step, detail);
            done.push(Advanced::Withdrawn { index });
        }
    }
    done
}

/// Whether the schedule (`rotate_every`) starts a rotation at `now_ms`:
/// nothing under way and the active key older than the period.
pub fn scheduled(keys: &Keys, created_ms: i64, now_ms: i64, every_ms: Option<i64>) -> bool {
    let Some(every) = every_ms else { return false };
    let busy = keys
        .phases()
        .iter()
        .any(|p| matches!(p, KeyPhase::Publishing { .. } | KeyPhase::Retiring { .. }));
    let since = keys.active_since_ms.unwrap_or(created_ms);
    !busy && now_ms.saturating_sub(since) >= every
}

/// When the rotation needs attention next: at once while publishing (the
/// caller paces visibility checks), at the end of retention, or when the
/// schedule comes due.
pub fn next_due_ms(keys: &Keys, created_ms: i64, every_ms: Option<i64>) -> Option<i64> {
    let mut due: Option<i64> = None;
    let mut earliest = |t: i64| due = Some(due.map_or(t, |d| d.min(t)));
    for phase in keys.phases() {
        match phase {
            KeyPhase::Publishing { since_ms } => earliest(since_ms),
            KeyPhase::Retiring { until_ms } => earliest(until_ms),
            KeyPhase::Active | KeyPhase::Standby | KeyPhase::Withdrawn { .. } => {}
        }
    }
    if let Some(every) = every_ms
        && keys.publishing().is_none()
    {
        earliest(keys.active_since_ms.unwrap_or(created_ms).saturating_add(every));
    }
    due
}

fn time(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use KeyPhase::*;

    const D: i64 = 86_400_000;

    fn sel() -> [String; 2] {
        ["hr1".into(), "hr2".into()]
    }

    #[test]
    fn defaults_for_old_records() {
        let k = Keys::default();
        assert_eq!(k.phases(), [Active, Standby]);
        assert_eq!((k.active(), k.publishing(), k.published(1)), (0, None, true));
    }

    #[test]
    fn a_full_rotation_there_and_back() {
        let mut k = Keys::default();
        assert_eq!(start(&mut k, &sel(), 10, false), Ok(1));
        assert_eq!(k.phases(), [Active, Publishing { since_ms: 10 }]);
        // Not visible yet: nothing moves, the old key keeps signing.
        assert_eq!(advance(&mut k, &sel(), Some(false), 20, 7 * D, false), vec![]);
        assert_eq!(advance(&mut k, &sel(), None, 25, 7 * D, false), vec![]);
        assert_eq!(k.active(), 0);
        assert_eq!(advance(&mut k, &sel(), Some(true), 30, 7 * D, false), vec![Advanced::Switched { to: 1 }]);
        assert_eq!(k.phases(), [Retiring { until_ms: 30 + 7 * D }, Active]);
        assert_eq!(k.active(), 1);
        assert_eq!(k.active_since_ms, Some(30));
        // Retained: a new rotation must wait.
        let err = start(&mut k, &sel(), 40, false).unwrap_err();
        assert!(matches!(err, RotateError::Retained { ref selector, .. } if selector == "hr1"), "{err}");
        assert_eq!(advance(&mut k, &sel(), None, 30 + 7 * D - 1, 7 * D, false), vec![]);
        assert_eq!(advance(&mut k, &sel(), None, 30 + 7 * D, 7 * D, true), vec![Advanced::Withdrawn { index: 0 }]);
        assert_eq!(k.phases(), [Withdrawn { at_ms: 30 + 7 * D }, Active]);
        assert!(!k.published(0));
        // And back to selector 1.
        assert_eq!(start(&mut k, &sel(), 8 * D, true), Ok(0));
        assert!(matches!(start(&mut k, &sel(), 8 * D, true), Err(RotateError::InProgress { .. })));
        assert_eq!(advance(&mut k, &sel(), Some(true), 9 * D, 7 * D, false), vec![Advanced::Switched { to: 0 }]);
        assert_eq!(k.active(), 0);
        let steps: Vec<(&str, &str)> = k.steps.iter().map(|s| (s.selector.as_str(), s.step.as_str())).collect();
        assert_eq!(
            steps,
            [("hr2", "published"), ("hr2", "switched"), ("hr1", "revoked"), ("hr1", "published"), ("hr1", "switched")]
        );
        assert!(k.steps[3].detail.contains("herald dns zone"), "{}", k.steps[3].detail);
        assert!(k.steps[0].detail.contains("embedded DNS"), "{}", k.steps[0].detail);
    }

    #[test]
    fn schedule_table() {
        let every = Some(180 * D);
        let busy = Keys {
            phases: vec![Active, Publishing { since_ms: 0 }],
            ..Default::default()
        };
        let retiring = Keys {
            phases: vec![Retiring { until_ms: 5 }, Active],
            active_since_ms: Some(0),
            ..Default::default()
        };
        let cases = [
            (Keys::default(), 0, 180 * D - 1, every, false),
            (Keys::default(), 0, 180 * D, every, true),
            (Keys::default(), 0, 999 * D, None, false),
            (busy, 0, 999 * D, every, false),
            (retiring, 0, 999 * D, every, false),
        ];
        for (keys, created, now, every, want) in cases {
            assert_eq!(scheduled(&keys, created, now, every), want, "{keys:?} at {now}");
        }
    }

    #[test]
    fn next_due_table() {
        let cases = [
            (Keys::default(), None, None),
            (Keys::default(), Some(10 * D), Some(10 * D)),
            (
                Keys {
                    phases: vec![Retiring { until_ms: 3 * D }, Active],
                    active_since_ms: Some(D),
                    ..Default::default()
                },
                Some(10 * D),
                Some(3 * D),
            ),
            (
                Keys {
                    phases: vec![Active, Publishing { since_ms: 7 }],
                    ..Default::default()
                },
                Some(10 * D),
                Some(7),
            ),
        ];
        for (keys, every, want) in cases {
            assert_eq!(next_due_ms(&keys, 0, every), want, "{keys:?}");
        }
    }
}
