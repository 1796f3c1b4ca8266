//! `[suppression]`: hard-bounced recipients are refused until the
//! suppression expires or is removed.

use super::{ConfigError, Unknown};
use serde::{Deserialize, Serialize};

pub(super) const KEYS: &[&str] = &["enabled", "scope", "days", "mailbox_full_after", "mailbox_full_window_days", "at_rcpt"];

/// Whose bounces suppress whose mail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SuppressionScope {
    /// One list for all mail through the relay.
    Relay,
    /// One list per sending identity (the customer domain, or the relay).
    Domain,
}

/// What a submission to a suppressed recipient gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AtRcpt {
    /// `550 5.1.1` at RCPT, naming the suppression.
    Refuse,
    /// Accepted, and the recipient failed at once (`message.failed`, class
    /// `suppressed`), never sent.
    AcceptAndFail,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct SuppressionConfig {
    pub enabled: bool,
    pub scope: SuppressionScope,
    /// How long a suppression lasts, in days; 0 = until removed.
    pub days: u64,
    /// `mailbox_full` bounces within the window that suppress (0: never).
    pub mailbox_full_after: u32,
    pub mailbox_full_window_days: u64,
    pub at_rcpt: AtRcpt,
    #[serde(flatten, skip_serializing)]
    pub unknown: Unknown,
}

impl Default for SuppressionConfig {
    fn default() -> Self {
        Self { enabled: true, scope: SuppressionScope::Relay, days: 90, mailbox_full_after: 3, mailbox_full_window_days: 7, at_rcpt: AtRcpt::Refuse, unknown: Unknown::new() }
    }
}

pub(super) fn problems(s: &SuppressionConfig) -> Vec<ConfigError> {
    let mut out = Vec::new();
    if s.days > 3650 {
        out.push(ConfigError { key: "suppression.days".into(), problem: format!("{} is out of range", s.days), fix: "set it between 0 (never expires) and 3650 days".into() });
    }
    if !(1..=365).contains(&s.mailbox_full_window_days) {
        out.push(ConfigError { key: "suppression.mailbox_full_window_days".into(), problem: format!("{} is out of range", s.mailbox_full_window_days), fix: "set it between 1 and 365 days".into() });
    }
    if s.scope == SuppressionScope::Domain && s.at_rcpt == AtRcpt::Refuse {
        // Not an error: documented. RCPT comes before the From header, so
        // per-domain suppressions are applied when the message is taken.
    }
    out
}
