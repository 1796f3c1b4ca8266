//! Checking the customer's three CNAMEs, and saying what is wrong in words
//! the customer can act on.
//!
//! Each host is asked for its CNAME itself, which is not followed: a CNAME
//! to the right target is what makes key rotation work, so a TXT or an
//! address that happens to resolve to the right content is still wrong.
//! Only when the CNAME is right is the chain followed once, for the DKIM
//! records, to see that the key at its end is the key herald signs with.
//!
//! When the CNAME is absent (NXDOMAIN or NODATA), a few more lookups find
//! the likely mistake: the record entered at `<host>.<domain>` (the DNS
//! provider appended the zone a second time), addresses without a CNAME (a
//! provider that flattens or proxies it), or a TXT record where the CNAME
//! belongs. A temporary failure of one of these extra lookups only
//! loses the extra diagnosis; the record is then reported missing, which
//! the failed CNAME lookup already established.
//!
//! Verification only reads DNS; [`super::state::apply`] turns the result
//! into a state change.

use super::names::{CustomerRecord, same_host};
use super::registry::DomainRecord;
use super::rotation::KeyPhase;
use crate::dkim::KeyStore;
use crate::dns::{Dns, DnsError};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// What one record check found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum CheckStatus {
    /// The CNAME points at the expected target (and, for DKIM, the key at
    /// its end is the one herald holds).
    Ok,
    /// Neither the CNAME nor any of the usual mistakes is there.
    Missing,
    /// A CNAME is there, with another target.
    PointsElsewhere { found: String },
    /// The CNAME exists at `found_at` = `<host>.<domain>`: the host was
    /// entered fully qualified and the provider appended the zone again.
    ZoneAppendedTwice { found_at: String },
    /// Addresses answer at the host, but there is no CNAME: flattened or
    /// proxied by the DNS provider (e.g. a CDN proxy).
    Flattened { addresses: Vec<IpAddr> },
    /// A TXT record sits where the CNAME belongs.
    TxtInsteadOfCname { found: String },
    /// The CNAME is right, but the DKIM key at the end of the chain is
    /// missing (`found: None`) or is not the one herald holds.
    KeyMismatch { found: Option<String> },
    /// SERVFAIL, timeout, …: nothing can be concluded now.
    Temporary { reason: String },
}

impl CheckStatus {
    pub fn is_ok(&self) -> bool {
        matches!(self, CheckStatus::Ok)
    }

    /// A result that says the record is wrong (not ok, not temporary).
    pub fn is_definite_error(&self) -> bool {
        match self {
            CheckStatus::Ok | CheckStatus::Temporary { .. } => false,
            CheckStatus::Missing
            | CheckStatus::PointsElsewhere { .. }
            | CheckStatus::ZoneAppendedTwice { .. }
            | CheckStatus::Flattened { .. }
            | CheckStatus::TxtInsteadOfCname { .. }
            | CheckStatus::KeyMismatch { .. } => true,
        }
    }

    /// A short name for logs and summaries.
    pub fn name(&self) -> &'static str {
        match self {
            CheckStatus::Ok => "ok",
            CheckStatus::Missing => "missing",
            CheckStatus::PointsElsewhere { .. } => "points elsewhere",
            CheckStatus::ZoneAppendedTwice { .. } => "zone appended twice",
            CheckStatus::Flattened { .. } => "flattened or proxied",
            CheckStatus::TxtInsteadOfCname { .. } => "TXT where a CNAME belongs",
            CheckStatus::KeyMismatch { .. } => "DKIM key mismatch",
            CheckStatus::Temporary { .. } => "temporary DNS failure",
        }
    }

    /// What to tell the customer about the record at `host` (typed in as
    /// `label`) that should be a CNAME to `expected`.
    pub fn message(&self, host: &str, label: &str, expected: &str) -> String {
        match self {
            CheckStatus::Ok => format!("Ok: `{host}` is a CNAME to `{expected}`."),
            CheckStatus::Missing => format!("Missing: add a CNAME record with host `{label}` pointing to `{expected}`."),
            CheckStatus::PointsElsewhere { found } => {
                let domain = host.strip_prefix(label).and_then(|d| d.strip_prefix('.')).unwrap_or("");
                let appended = !domain.is_empty() && same_host(found, &format!("{expected}.{domain}"));
                let hint = if appended {
                    format!(" Your DNS provider appended `{domain}` to the value: enter it with a dot at the end, `{expected}.`")
                } else {
                    String::new()
                };
                format!(
                    "Points elsewhere: the CNAME at `{host}` points to `{found}`, expected `{expected}`; change its value to `{expected}`.{hint}"
                )
            }
            CheckStatus::ZoneAppendedTwice { found_at } => format!(
                "Zone appended twice: the record exists at `{found_at}`, because your DNS provider adds the domain by itself; enter only `{label}` as the host name."
            ),
            CheckStatus::Flattened { addresses } => {
                let list: Vec<String> = addresses.iter().map(ToString::to_string).collect();
                format!(
                    "Flattened or proxied: `{host}` answers with addresses ({}) but has no CNAME, so your DNS provider flattens or proxies it (e.g. a CDN proxy); switch proxying off for it (\"DNS only\") so it is a plain CNAME to `{expected}`.",
                    list.join(", ")
                )
            }
            CheckStatus::TxtInsteadOfCname { found } => format!(
                "TXT where a CNAME belongs: `{host}` has a TXT record (`{}`); delete it and add a CNAME record with host `{label}` pointing to `{expected}`.",
                shorten(found)
            ),
            CheckStatus::KeyMismatch { found: None } => format!(
                "DKIM key mismatch: the CNAME at `{host}` is right, but no DKIM key is published at `{expected}`; nothing to change on your side: the relay operator must publish the records of `herald dns zone`."
            ),
            CheckStatus::KeyMismatch { found: Some(p) } => format!(
                "DKIM key mismatch: the CNAME at `{host}` is right, but the DKIM key at `{expected}` (`p={}`) differs from the key the relay holds; nothing to change on your side: the relay operator must publish the records of `herald dns zone`.",
                shorten(p)
            ),
            CheckStatus::Temporary { reason } => {
                format!(
                    "Temporary DNS failure while checking `{host}` ({reason}); this says nothing about the record, it will be checked again."
                )
            }
        }
    }
}

/// One of the three records, checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordCheck {
    /// The customer-side host, e.g. `em4821.customer.nl`.
    pub host: String,
    /// What to type as host name, e.g. `em4821`.
    pub label: String,
    /// The CNAME target expected.
    pub expected: String,
    pub status: CheckStatus,
}

impl RecordCheck {
    pub fn message(&self) -> String {
        self.status.message(&self.host, &self.label, &self.expected)
    }
}

/// The verdict over all three records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Overall {
    /// All three records are ok.
    Verified,
    /// At least one record is definitely wrong (whatever the others say).
    NotVerified,
    /// No record is definitely wrong, but at least one could not be checked.
    Temporary,
}

/// The result of checking a domain's three records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verification {
    /// Return path, DKIM selector 1, DKIM selector 2.
    pub records: Vec<RecordCheck>,
    pub overall: Overall,
}

impl Verification {
    pub fn new(records: Vec<RecordCheck>) -> Self {
        let overall = overall(records.iter().map(|r| &r.status));
        Self { records, overall }
    }

    /// One line naming what is not ok, for logs and state history; empty
    /// when everything is.
    pub fn summary(&self) -> String {
        let bad: Vec<String> = self
            .records
            .iter()
            .filter(|r| !r.status.is_ok())
            .map(|r| format!("{}: {}", r.host, r.status.name()))
            .collect();
        bad.join("; ")
    }
}

/// A definite error anywhere wins (one wrong record is enough to know the
/// domain is not set up, even if another lookup timed out); then any
/// temporary failure; verified only when all are ok.
pub fn overall<'a>(statuses: impl IntoIterator<Item = &'a CheckStatus>) -> Overall {
    let mut temporary = false;
    for s in statuses {
        if s.is_definite_error() {
            return Overall::NotVerified;
        }
        temporary |= matches!(s, CheckStatus::Temporary { .. });
    }
    if temporary { Overall::Temporary } else { Overall::Verified }
}

/// Checks the three records of `record` against operator zone `zone` and
/// the DKIM keys in `keys`. Read-only.
///
/// The key at the end of a DKIM CNAME is compared for the selector that
/// signs, and for the spare one while no rotation is under way. During a
/// rotation the other selector's key is new (not visible yet), retained
/// or withdrawn: only its CNAME is checked, so a rotation never makes a
/// domain `failing`.
pub async fn verify(dns: &Dns, record: &DomainRecord, zone: &str, keys: &KeyStore) -> Verification {
    let [rp, k1, k2] = record.customer_records(zone);
    let compare = |index: usize, r: &CustomerRecord| {
        let phase = record.keys.phases()[index];
        matches!(phase, KeyPhase::Active | KeyPhase::Standby).then(|| expected_key(keys, &record.domain, r))
    };
    let (key1, key2) = (compare(0, &k1), compare(1, &k2));
    let (s0, s1, s2) = tokio::join!(
        check(dns, &record.domain, &rp, None),
        check(dns, &record.domain, &k1, key1),
        check(dns, &record.domain, &k2, key2)
    );
    let rows = [(rp, s0), (k1, s1), (k2, s2)];
    Verification::new(
        rows.into_iter()
            .map(|(r, status)| RecordCheck {
                host: r.host,
                label: r.label,
                expected: r.value,
                status,
            })
            .collect(),
    )
}

/// Whether the key herald holds for selector `index` of `record` resolves
/// through the customer's own CNAME (the rotation's visibility check).
pub async fn key_visible(dns: &Dns, record: &DomainRecord, zone: &str, keys: &KeyStore, index: usize) -> CheckStatus {
    let r = &record.customer_records(zone)[1 + index.min(1)];
    check(dns, &record.domain, r, Some(expected_key(keys, &record.domain, r))).await
}

/// The base64 public key herald holds for a DKIM record; an error text
/// when it cannot be read (which makes the check temporary: the DNS side
/// cannot be judged without it).
fn expected_key(keys: &KeyStore, domain: &str, r: &CustomerRecord) -> Result<String, String> {
    let selector = r.selector.as_deref().unwrap_or_default();
    let stored = keys
        .get(domain, selector)
        .map_err(|e| format!("herald cannot read its DKIM key {selector} for {domain}: {e}"))?
        .ok_or_else(|| format!("herald holds no DKIM key {selector} for {domain}; remove and add the domain again"))?;
    crate::dkim::public_key_b64(&stored.der()?)
}

async fn check(dns: &Dns, domain: &str, r: &CustomerRecord, key: Option<Result<String, String>>) -> CheckStatus {
    match dns.cname(&r.host).await {
        Ok(found) if same_host(&found, &r.value) => match key {
            None => CheckStatus::Ok,
            Some(Ok(expected)) => check_key(dns, &r.host, &expected).await,
            Some(Err(reason)) => CheckStatus::Temporary { reason },
        },
        Ok(found) => CheckStatus::PointsElsewhere { found },
        Err(DnsError::Temporary(reason)) => CheckStatus::Temporary { reason },
        Err(DnsError::NxDomain) => diagnose_absent(dns, domain, &r.host, false).await,
        Err(DnsError::NoData) => diagnose_absent(dns, domain, &r.host, true).await,
    }
}

/// No CNAME at `host`: look for the usual mistakes. `exists` is true when
/// the name has other records (NODATA rather than NXDOMAIN).
async fn diagnose_absent(dns: &Dns, domain: &str, host: &str, exists: bool) -> CheckStatus {
    let doubled = format!("{host}.{domain}");
    if dns.cname(&doubled).await.is_ok() {
        return CheckStatus::ZoneAppendedTwice { found_at: doubled };
    }
    if exists {
        // Addresses first: a provider that flattens may copy the target's
        // TXT records as well, while a hand-made TXT rarely comes with A.
        if let Ok(addresses) = dns.ips(host).await {
            return CheckStatus::Flattened { addresses };
        }
        if let Ok(texts) = dns.txt(host).await {
            return CheckStatus::TxtInsteadOfCname { found: texts.join(" ") };
        }
    }
    CheckStatus::Missing
}

/// Follows the (right) CNAME at `host` to the DKIM TXT record and compares
/// its `p=` with `expected`.
async fn check_key(dns: &Dns, host: &str, expected: &str) -> CheckStatus {
    match dns.txt(host).await {
        Ok(texts) => {
            let keys: Vec<String> = texts.iter().filter_map(|t| dkim_public_key(t)).collect();
            if keys.iter().any(|p| p == expected) {
                CheckStatus::Ok
            } else {
                CheckStatus::KeyMismatch {
                    found: keys.into_iter().next(),
                }
            }
        }
        Err(DnsError::Temporary(reason)) => CheckStatus::Temporary { reason },
        Err(DnsError::NxDomain | DnsError::NoData) => CheckStatus::KeyMismatch { found: None },
    }
}

/// The `p=` tag of a DKIM key record, whitespace removed (RFC 6376
/// §3.6.1: tag values may hold folding white space).
pub fn dkim_public_key(txt: &str) -> Option<String> {
    txt.split(';')
        .filter_map(|tag| tag.split_once('='))
        .find(|(name, _)| name.trim() == "p")
        .map(|(_, v)| v.split_whitespace().collect())
}

/// Long found values (keys) cut for messages.
fn shorten(text: &str) -> String {
    const MAX: usize = 60;
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overall_table() {
        let ok = CheckStatus::Ok;
        let tmp = CheckStatus::Temporary { reason: "SERVFAIL".into() };
        let missing = CheckStatus::Missing;
        let cases: &[(&[&CheckStatus], Overall)] = &[
            (&[&ok, &ok, &ok], Overall::Verified),
            (&[&ok, &tmp, &ok], Overall::Temporary),
            (&[&tmp, &tmp, &tmp], Overall::Temporary),
            (&[&ok, &missing, &ok], Overall::NotVerified),
            (&[&tmp, &missing, &ok], Overall::NotVerified),
            (&[&missing, &tmp, &tmp], Overall::NotVerified),
        ];
        for (statuses, want) in cases {
            assert_eq!(overall(statuses.iter().copied()), *want, "{statuses:?}");
        }
    }

    #[test]
    fn dkim_public_key_table() {
        let cases = [
            ("v=DKIM1; k=rsa; p=MIIB ABC", Some("MIIBABC")),
            ("v=DKIM1;k=rsa;p=XYZ;", Some("XYZ")),
            ("v=DKIM1; p=", Some("")),
            ("v=spf1 -all", None),
        ];
        for (txt, want) in cases {
            assert_eq!(dkim_public_key(txt).as_deref(), want, "{txt}");
        }
    }

    #[test]
    fn messages_name_the_fix() {
        let (host, label, want) = ("em4821.customer.nl", "em4821", "t7.wl.relay.example.net");
        let cases: &[(CheckStatus, &[&str])] = &[
            (
                CheckStatus::Missing,
                &["Missing: add a CNAME record with host `em4821` pointing to `t7.wl.relay.example.net`"],
            ),
            (
                CheckStatus::PointsElsewhere {
                    found: "t8.wl.relay.example.net".into(),
                },
                &["points to `t8.wl.relay.example.net`, expected `t7.wl"],
            ),
            (
                CheckStatus::PointsElsewhere {
                    found: "t7.wl.relay.example.net.customer.nl".into(),
                },
                &["appended `customer.nl`", "dot at the end"],
            ),
            (
                CheckStatus::ZoneAppendedTwice {
                    found_at: "em4821.customer.nl.customer.nl".into(),
                },
                &["exists at `em4821.customer.nl.customer.nl`", "enter only `em4821`"],
            ),
            (
                CheckStatus::Flattened {
                    addresses: vec!["127.0.0.2".parse().unwrap()],
                },
                &["addresses (127.0.0.2)", "proxying off"],
            ),
            (
                CheckStatus::TxtInsteadOfCname { found: "x".repeat(100) },
                &["has a TXT record", "delete it", "…"],
            ),
            (
                CheckStatus::KeyMismatch { found: None },
                &["no DKIM key is published at", "relay operator"],
            ),
            (
                CheckStatus::KeyMismatch {
                    found: Some("QUJD".into()),
                },
                &["(`p=QUJD`) differs from the key the relay holds"],
            ),
            (
                CheckStatus::Temporary {
                    reason: "server answered SERVFAIL".into(),
                },
                &["Temporary DNS failure", "SERVFAIL", "checked again"],
            ),
        ];
        for (status, words) in cases {
            let text = status.message(host, label, want);
            for w in *words {
                assert!(text.contains(w), "{status:?}: want `{w}` in {text}");
            }
        }
    }
}
