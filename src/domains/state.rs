//! A domain's verification state and when it is checked next, as pure
//! functions of the stored record, a verification verdict and the time.
//!
//! ```text
//! pending ──all ok──▶ verified ──definite error──▶ failing ──grace over, still wrong──▶ unverified
//!                        ▲                            │                                  │
//!                        └──────────all ok────────────┴──────────────all ok──────────────┘
//! ```
//!
//! A temporary DNS failure never changes the state. A failing domain
//! still signs as the customer until its grace period (counted from when
//! it started failing) is over, whether or not a check ran since.

use super::registry::DomainRecord;
use super::verify::Overall;
use crate::config::DomainsConfig;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Most transitions kept per domain; older ones are dropped.
pub const MAX_HISTORY: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DomainState {
    /// Added; the records have never all been right.
    Pending,
    /// All three records are right: mail is signed as the customer.
    Verified,
    /// Was verified, now a record is wrong; still signs as the customer
    /// during the grace period.
    Failing,
    /// Was verified, stayed wrong past the grace period: unverified sending.
    Unverified,
}

impl fmt::Display for DomainState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DomainState::Pending => "pending",
            DomainState::Verified => "verified",
            DomainState::Failing => "failing",
            DomainState::Unverified => "unverified",
        })
    }
}

/// One state change, kept in the record's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    pub at_ms: i64,
    pub from: DomainState,
    pub to: DomainState,
    pub reason: String,
}

/// The durations of `[domains]`, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub grace_ms: i64,
    pub recheck_verified_ms: i64,
    pub recheck_pending_ms: i64,
}

impl Timing {
    pub fn from_config(c: &DomainsConfig) -> Self {
        let ms = |d: std::time::Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        Self {
            grace_ms: ms(c.grace_period()),
            recheck_verified_ms: ms(c.recheck_verified()),
            recheck_pending_ms: ms(c.recheck_pending()),
        }
    }
}

/// The state after a check with verdict `overall` at `now_ms`.
pub fn next_state(state: DomainState, state_since_ms: i64, overall: Overall, now_ms: i64, grace_ms: i64) -> DomainState {
    use DomainState::*;
    match (state, overall) {
        (_, Overall::Temporary) => state,
        (Pending | Verified | Failing | Unverified, Overall::Verified) => Verified,
        (Pending, Overall::NotVerified) => Pending,
        (Verified, Overall::NotVerified) => Failing,
        (Failing, Overall::NotVerified) if grace_over(state_since_ms, now_ms, grace_ms) => Unverified,
        (Failing, Overall::NotVerified) => Failing,
        (Unverified, Overall::NotVerified) => Unverified,
    }
}

/// Whether mail from the domain is signed as the customer now: verified,
/// or failing and still inside the grace period.
pub fn signs_as_customer(state: DomainState, state_since_ms: i64, now_ms: i64, grace_ms: i64) -> bool {
    match state {
        DomainState::Verified => true,
        DomainState::Failing => !grace_over(state_since_ms, now_ms, grace_ms),
        DomainState::Pending | DomainState::Unverified => false,
    }
}

fn grace_over(since_ms: i64, now_ms: i64, grace_ms: i64) -> bool {
    now_ms.saturating_sub(since_ms) >= grace_ms
}

/// Delay before a not-yet-right domain is checked again: half the time it
/// has spent in its state, at least `recheck_pending`, at most
/// `recheck_verified`. Checks start every `recheck_pending` and spread out
/// by half each time (10 m, 10 m, 15 m, 22 m …), with no counter to store.
pub fn backoff_ms(age_ms: i64, t: &Timing) -> i64 {
    (age_ms.max(0) / 2).clamp(t.recheck_pending_ms, t.recheck_verified_ms.max(t.recheck_pending_ms))
}

/// When the domain is checked next, after a check at `now_ms` left it in
/// `state` (since `state_since_ms`) with verdict `overall`.
pub fn next_check_ms(state: DomainState, state_since_ms: i64, overall: Overall, now_ms: i64, t: &Timing) -> i64 {
    let age = now_ms.saturating_sub(state_since_ms);
    let delay = match state {
        DomainState::Verified => t.recheck_verified_ms,
        DomainState::Pending | DomainState::Unverified => backoff_ms(age, t),
        // Checked often, and once right when the grace period ends, so the
        // fall back to unverified is recorded on time.
        DomainState::Failing => {
            let to_grace_end = state_since_ms.saturating_add(t.grace_ms).saturating_sub(now_ms);
            let b = backoff_ms(age, t);
            if to_grace_end > 0 { b.min(to_grace_end) } else { b }
        }
    };
    // A check that could not be completed is retried soon.
    let delay = if overall == Overall::Temporary {
        delay.min(t.recheck_pending_ms)
    } else {
        delay
    };
    now_ms.saturating_add(delay)
}

/// Applies a check's verdict to `record` at `now_ms`: last/next check
/// times always; on a state change also the state, its start and a
/// history entry, which is returned (for the caller to log). `problems`
/// names what was wrong (see [`super::Verification::summary`]).
pub fn apply(record: &mut DomainRecord, overall: Overall, problems: &str, now_ms: i64, t: &Timing) -> Option<Transition> {
    let from = record.state;
    let to = next_state(from, record.state_since_ms, overall, now_ms, t.grace_ms);
    let transition = (to != from).then(|| Transition {
        at_ms: now_ms,
        from,
        to,
        reason: reason(from, to, problems, t),
    });
    if let Some(tr) = &transition {
        record.state = to;
        record.state_since_ms = now_ms;
        record.history.push(tr.clone());
        let excess = record.history.len().saturating_sub(MAX_HISTORY);
        record.history.drain(..excess);
    }
    record.last_check_ms = Some(now_ms);
    record.next_check_ms = next_check_ms(record.state, record.state_since_ms, overall, now_ms, t);
    transition
}

fn reason(from: DomainState, to: DomainState, problems: &str, t: &Timing) -> String {
    let grace = humantime::format_duration(std::time::Duration::from_millis(t.grace_ms.max(0) as u64));
    match to {
        DomainState::Verified if from == DomainState::Pending => "all three records are correct".to_string(),
        DomainState::Verified => "all three records are correct again".to_string(),
        DomainState::Failing => format!("records wrong: {problems}"),
        DomainState::Unverified => format!("records still wrong after the grace period of {grace}: {problems}"),
        DomainState::Pending => format!("back to pending: {problems}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use DomainState::*;

    const H: i64 = 3_600_000;
    const M: i64 = 60_000;
    const T: Timing = Timing {
        grace_ms: 72 * H,
        recheck_verified_ms: 24 * H,
        recheck_pending_ms: 10 * M,
    };

    #[test]
    fn state_table() {
        // (state, since, verdict, now) → state
        let cases = [
            (Pending, 0, Overall::Verified, 5, Verified),
            (Pending, 0, Overall::NotVerified, 5, Pending),
            (Pending, 0, Overall::Temporary, 5, Pending),
            (Verified, 0, Overall::Verified, 5, Verified),
            (Verified, 0, Overall::NotVerified, 5, Failing),
            (Verified, 0, Overall::Temporary, 5, Verified),
            (Failing, 0, Overall::Verified, 5, Verified),
            (Failing, 0, Overall::NotVerified, 72 * H - 1, Failing),
            (Failing, 0, Overall::NotVerified, 72 * H, Unverified),
            (Failing, 0, Overall::Temporary, 100 * H, Failing),
            (Unverified, 0, Overall::Verified, 5, Verified),
            (Unverified, 0, Overall::NotVerified, 5, Unverified),
            (Unverified, 0, Overall::Temporary, 5, Unverified),
        ];
        for (state, since, verdict, now, want) in cases {
            assert_eq!(
                next_state(state, since, verdict, now, T.grace_ms),
                want,
                "{state} {verdict:?} at {now}"
            );
        }
    }

    #[test]
    fn signing_table() {
        let cases = [
            (Pending, 0, 1, false),
            (Verified, 0, 1_000 * H, true),
            (Failing, 0, 71 * H, true),
            (Failing, 0, 72 * H, false),
            (Unverified, 0, 1, false),
        ];
        for (state, since, now, want) in cases {
            assert_eq!(signs_as_customer(state, since, now, T.grace_ms), want, "{state} at {now}");
        }
    }

    #[test]
    fn next_check_table() {
        // (state, since, verdict, now) → delay after now
        let cases = [
            (Pending, 0, Overall::NotVerified, 0, 10 * M),
            (Pending, 0, Overall::NotVerified, 20 * M, 10 * M),
            (Pending, 0, Overall::NotVerified, 30 * M, 15 * M),
            (Pending, 0, Overall::NotVerified, 4 * H, 2 * H),
            (Pending, 0, Overall::NotVerified, 30 * 24 * H, 24 * H),
            (Verified, 0, Overall::Verified, 5 * H, 24 * H),
            (Verified, 0, Overall::Temporary, 5 * H, 10 * M),
            (Failing, 0, Overall::NotVerified, 0, 10 * M),
            (Failing, 0, Overall::NotVerified, 48 * H, 24 * H),
            (Failing, 0, Overall::NotVerified, 70 * H, 2 * H), // right at the end of grace
            (Unverified, 0, Overall::NotVerified, 0, 10 * M),
        ];
        for (state, since, verdict, now, want) in cases {
            assert_eq!(
                next_check_ms(state, since, verdict, now, &T) - now,
                want,
                "{state} {verdict:?} at {now}"
            );
        }
    }

    fn record(state: DomainState, since: i64) -> DomainRecord {
        let mut r = DomainRecord::new("customer.nl", 7, "em4821", "hr", 0, 0);
        r.state = state;
        r.state_since_ms = since;
        r
    }

    #[test]
    fn apply_records_history() {
        let mut r = record(Pending, 0);
        assert_eq!(apply(&mut r, Overall::NotVerified, "em4821.customer.nl: missing", 10, &T), None);
        assert_eq!((r.state, r.last_check_ms, r.history.len()), (Pending, Some(10), 0));

        let tr = apply(&mut r, Overall::Verified, "", 20, &T).unwrap();
        assert_eq!((tr.from, tr.to, tr.at_ms), (Pending, Verified, 20));
        assert_eq!(r.state_since_ms, 20);
        assert_eq!(r.next_check_ms, 20 + 24 * H);

        // A temporary failure changes nothing but the check times.
        assert_eq!(apply(&mut r, Overall::Temporary, "", 30, &T), None);
        assert_eq!((r.state, r.state_since_ms, r.next_check_ms), (Verified, 20, 30 + 10 * M));

        let tr = apply(&mut r, Overall::NotVerified, "hr1._domainkey.customer.nl: missing", 40, &T).unwrap();
        assert_eq!((tr.from, tr.to), (Verified, Failing));
        assert!(tr.reason.contains("hr1._domainkey.customer.nl: missing"), "{}", tr.reason);

        let tr = apply(&mut r, Overall::NotVerified, "x: missing", 40 + 72 * H, &T).unwrap();
        assert_eq!((tr.from, tr.to), (Failing, Unverified));
        assert!(tr.reason.contains("grace period of 3days"), "{}", tr.reason);
        assert_eq!(r.history.iter().map(|t| t.to).collect::<Vec<_>>(), [Verified, Failing, Unverified]);
    }

    #[test]
    fn history_is_bounded() {
        let mut r = record(Verified, 0);
        for i in 0..(2 * MAX_HISTORY as i64 + 1) {
            let verdict = if i % 2 == 0 { Overall::NotVerified } else { Overall::Verified };
            assert!(apply(&mut r, verdict, "x", i, &T).is_some());
        }
        assert_eq!(r.history.len(), MAX_HISTORY);
        assert_eq!(r.history.last().unwrap().at_ms, 2 * MAX_HISTORY as i64);
    }
}
