//! `[domains]`: whitelabel customer domains — the operator's zone the
//! customers' CNAMEs point into, the names of the three records, what the
//! operator's records hold, and how often verification runs.

use super::{ConfigError, Unknown, is_hostname, parse_duration};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Every key of `[domains]`, for the unknown-key check.
pub(super) const KEYS: &[&str] = &[
    "zone",
    "selector_prefix",
    "return_path_prefix",
    "spf_mechanisms",
    "inbound_host",
    "grace_period",
    "recheck_verified",
    "recheck_pending",
    "rotate_every",
    "key_retention",
    "revoke_withdrawn",
];

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct DomainsConfig {
    /// The operator's zone: customers' CNAMEs point at `t<id>.<zone>`.
    pub zone: String,
    /// DKIM selectors are `<prefix>1` and `<prefix>2` (`hr1._domainkey`).
    pub selector_prefix: String,
    /// Return-path hosts are `<prefix><4 digits>` (`em4821.customer.nl`).
    pub return_path_prefix: String,
    /// SPF mechanisms published at `t<id>.<zone>`: `v=spf1 <these> -all`.
    pub spf_mechanisms: String,
    /// MX target of `t<id>.<zone>`: where bounces come back to the relay.
    pub inbound_host: String,
    /// How long a failing domain still signs as the customer before it
    /// falls back to unverified sending.
    pub grace_period: String,
    /// How often verified (and failing) domains are checked again.
    pub recheck_verified: String,
    /// First delay between checks of a pending domain; it grows from here
    /// up to `recheck_verified`.
    pub recheck_pending: String,
    /// Rotate every domain's DKIM key this often (e.g. `180d`); empty = only
    /// on `herald domain rotate`.
    pub rotate_every: String,
    /// How long a replaced DKIM key stays published after signing moved to
    /// the new one, so mail signed before the switch still verifies.
    pub key_retention: String,
    /// After retention, publish the old selector as `p=` (revoked, RFC 6376
    /// §3.6.1) rather than removing its record.
    pub revoke_withdrawn: bool,
    #[serde(flatten, skip_serializing)]
    pub unknown: Unknown,
}

impl Default for DomainsConfig {
    fn default() -> Self {
        Self {
            zone: "wl.relay.localhost".into(),
            selector_prefix: "hr".into(),
            return_path_prefix: "em".into(),
            spf_mechanisms: "ip4:127.0.0.1".into(),
            inbound_host: "mx.relay.localhost".into(),
            grace_period: "72h".into(),
            recheck_verified: "24h".into(),
            recheck_pending: "10m".into(),
            rotate_every: String::new(),
            key_retention: "7d".into(),
            revoke_withdrawn: false,
            unknown: Unknown::new(),
        }
    }
}

impl DomainsConfig {
    /// The zone lowercased, without a trailing dot.
    pub fn zone(&self) -> String {
        self.zone.trim().trim_end_matches('.').to_ascii_lowercase()
    }

    /// Parsed `grace_period`; the default when invalid (validation reports it).
    pub fn grace_period(&self) -> Duration {
        parse_duration(&self.grace_period).unwrap_or(Duration::from_secs(72 * 3600))
    }

    pub fn recheck_verified(&self) -> Duration {
        parse_duration(&self.recheck_verified).unwrap_or(Duration::from_secs(24 * 3600))
    }

    pub fn recheck_pending(&self) -> Duration {
        parse_duration(&self.recheck_pending).unwrap_or(Duration::from_secs(600))
    }

    /// Parsed `rotate_every`; `None` when automatic rotation is off.
    pub fn rotate_every(&self) -> Option<Duration> {
        match self.rotate_every.trim() {
            "" => None,
            text => parse_duration(text).ok(),
        }
    }

    pub fn key_retention(&self) -> Duration {
        parse_duration(&self.key_retention).unwrap_or(Duration::from_secs(7 * 86400))
    }
}

/// Every problem in `[domains]` (unknown keys aside), each naming its key.
pub(super) fn problems(d: &DomainsConfig) -> Vec<ConfigError> {
    let mut out = Vec::new();
    let mut push = |key: &str, problem: String, fix: &str| {
        out.push(ConfigError {
            key: format!("domains.{key}"),
            problem,
            fix: fix.to_string(),
        });
    };
    let zone = d.zone();
    if !is_hostname(&zone) || !zone.contains('.') || zone.contains('_') {
        push(
            "zone",
            format!("`{}` is not a domain name", d.zone),
            "use a zone you control, e.g. `wl.relay.example.net`",
        );
    }
    if let Err(e) = prefix(&d.selector_prefix) {
        push(
            "selector_prefix",
            e,
            "use a short label of letters and digits such as `hr`; selectors become `hr1` and `hr2`",
        );
    }
    if let Err(e) = prefix(&d.return_path_prefix) {
        push(
            "return_path_prefix",
            e,
            "use a short label of letters and digits such as `em`; hosts become `em4821`",
        );
    }
    if let Err(e) = spf_mechanisms(&d.spf_mechanisms) {
        push(
            "spf_mechanisms",
            e,
            "list the relay's outgoing addresses, e.g. `ip4:192.0.2.10 ip6:2001:db8::10`; `v=spf1` and `-all` are added",
        );
    }
    if !is_hostname(&d.inbound_host) || d.inbound_host.contains('_') {
        push(
            "inbound_host",
            format!("`{}` is not a host name", d.inbound_host),
            "use the host that receives bounces, e.g. `mx.relay.example.net`",
        );
    }
    let mut duration = |key: &str, text: &str, min: Duration| match parse_duration(text) {
        Ok(v) if v < min => {
            push(key, format!("`{text}` is shorter than {}s", min.as_secs()), "use a longer duration");
            None
        }
        Ok(v) => Some(v),
        Err(e) => {
            push(key, e, "write a duration like `10m`, `24h` or `3d`");
            None
        }
    };
    duration("grace_period", &d.grace_period, Duration::ZERO);
    duration("key_retention", &d.key_retention, Duration::ZERO);
    if !d.rotate_every.trim().is_empty() {
        duration("rotate_every", &d.rotate_every, Duration::from_secs(60));
    }
    let verified = duration("recheck_verified", &d.recheck_verified, Duration::from_secs(1));
    let pending = duration("recheck_pending", &d.recheck_pending, Duration::from_secs(1));
    if let (Some(v), Some(p)) = (verified, pending)
        && p > v
    {
        push(
            "recheck_pending",
            format!(
                "`{}` is longer than `recheck_verified` (`{}`)",
                d.recheck_pending, d.recheck_verified
            ),
            "pending checks start at `recheck_pending` and grow up to `recheck_verified`; make it the shorter one",
        );
    }
    out
}

/// A record-name prefix: a letter, then letters, digits or hyphens, short
/// enough to leave room for the digits appended to it.
fn prefix(text: &str) -> Result<(), String> {
    let ok_chars = text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    match text.bytes().next() {
        None => Err("empty".into()),
        Some(first) if !first.is_ascii_alphabetic() => Err(format!("`{text}` does not start with a letter")),
        _ if !ok_chars => Err(format!("`{text}` holds characters other than letters, digits and hyphens")),
        _ if text.len() > 20 => Err(format!("`{text}` is longer than 20 characters")),
        _ => Ok(()),
    }
}

/// The middle of `v=spf1 … -all`: mechanisms only (RFC 7208 §5), no `all`,
/// no modifiers, addresses that parse.
fn spf_mechanisms(text: &str) -> Result<(), String> {
    let terms: Vec<&str> = text.split_whitespace().collect();
    if terms.is_empty() {
        return Err("empty".into());
    }
    for term in terms {
        let bare = term.trim_start_matches(['+', '-', '~', '?']);
        let (name, arg) = match bare.split_once([':', '/']) {
            Some((n, _)) => (n.to_ascii_lowercase(), &bare[n.len()..]),
            None => (bare.to_ascii_lowercase(), ""),
        };
        let arg = arg.strip_prefix(':').unwrap_or(arg);
        match name.as_str() {
            "ip4" | "ip6" => {
                let net_ok = match super::parse_network(arg) {
                    Ok(ipnet::IpNet::V4(_)) => name == "ip4",
                    Ok(ipnet::IpNet::V6(_)) => name == "ip6",
                    Err(_) => false,
                };
                if !net_ok {
                    return Err(format!(
                        "`{term}`: `{arg}` is not an {} address or network",
                        if name == "ip4" { "IPv4" } else { "IPv6" }
                    ));
                }
            }
            "a" | "mx" | "include" | "exists" | "ptr" => {
                let needs_domain = matches!(name.as_str(), "include" | "exists");
                if needs_domain && arg.is_empty() {
                    return Err(format!("`{term}` needs a domain after `{name}:`"));
                }
            }
            "v=spf1" => return Err("holds `v=spf1`, which herald adds itself".into()),
            "all" => return Err(format!("holds `{term}`; herald ends the record with `-all` itself")),
            _ => return Err(format!("`{term}` is not an SPF mechanism (ip4, ip6, a, mx, include, exists)")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(problems(&DomainsConfig::default()), Vec::new());
        let d = DomainsConfig::default();
        assert_eq!(d.grace_period(), Duration::from_secs(72 * 3600));
        assert_eq!(d.recheck_verified(), Duration::from_secs(86400));
        assert_eq!(d.recheck_pending(), Duration::from_secs(600));
    }

    #[test]
    fn each_problem_names_its_key() {
        type Tweak = fn(&mut DomainsConfig);
        let cases: &[(Tweak, &str, &str)] = &[
            (|d| d.zone = "localhost".into(), "domains.zone", "not a domain"),
            (|d| d.zone = "a..b".into(), "domains.zone", "not a domain"),
            (|d| d.selector_prefix = "".into(), "domains.selector_prefix", "empty"),
            (
                |d| d.selector_prefix = "1x".into(),
                "domains.selector_prefix",
                "start with a letter",
            ),
            (
                |d| d.selector_prefix = "h.r".into(),
                "domains.selector_prefix",
                "other than letters",
            ),
            (
                |d| d.return_path_prefix = "e_m".into(),
                "domains.return_path_prefix",
                "other than letters",
            ),
            (
                |d| d.return_path_prefix = "x".repeat(21),
                "domains.return_path_prefix",
                "longer than 20",
            ),
            (|d| d.spf_mechanisms = " ".into(), "domains.spf_mechanisms", "empty"),
            (
                |d| d.spf_mechanisms = "v=spf1 ip4:192.0.2.1".into(),
                "domains.spf_mechanisms",
                "v=spf1",
            ),
            (|d| d.spf_mechanisms = "ip4:192.0.2.1 ~all".into(), "domains.spf_mechanisms", "-all"),
            (|d| d.spf_mechanisms = "ip4:2001:db8::1".into(), "domains.spf_mechanisms", "IPv4"),
            (|d| d.spf_mechanisms = "ip6:192.0.2.1".into(), "domains.spf_mechanisms", "IPv6"),
            (|d| d.spf_mechanisms = "include".into(), "domains.spf_mechanisms", "needs a domain"),
            (
                |d| d.spf_mechanisms = "redirect=x.test".into(),
                "domains.spf_mechanisms",
                "not an SPF mechanism",
            ),
            (|d| d.inbound_host = "mx relay".into(), "domains.inbound_host", "not a host name"),
            (|d| d.grace_period = "3w".into(), "domains.grace_period", "unknown unit"),
            (|d| d.recheck_verified = "0s".into(), "domains.recheck_verified", "shorter than 1s"),
            (|d| d.recheck_pending = "soon".into(), "domains.recheck_pending", "not a duration"),
            (|d| d.rotate_every = "10s".into(), "domains.rotate_every", "shorter than 60s"),
            (|d| d.key_retention = "a week".into(), "domains.key_retention", "not a duration"),
            (
                |d| d.recheck_pending = "2d".into(),
                "domains.recheck_pending",
                "longer than `recheck_verified`",
            ),
        ];
        for (tweak, key, words) in cases {
            let mut d = DomainsConfig::default();
            tweak(&mut d);
            let errs = problems(&d);
            let hit = errs
                .iter()
                .find(|e| e.key == *key)
                .unwrap_or_else(|| panic!("no error for {key} in {errs:?}"));
            assert!(hit.to_string().contains(words), "{key}: want `{words}` in {hit}");
        }
    }

    #[test]
    fn good_spf_mechanisms() {
        for text in [
            "ip4:192.0.2.0/24",
            "ip6:2001:db8::/32 ip4:192.0.2.1",
            "a mx include:_spf.example.net",
            "+a:relay.example.net/24",
            "?exists:x.test",
        ] {
            assert_eq!(spf_mechanisms(text), Ok(()), "{text}");
        }
    }
}
