//! Per-message policy (DESIGN "Per-message policy"): which identity signs,
//! what the envelope sender becomes, and whether From must be rewritten.
//! Pure functions; the caller does the DNS.

mod dmarc;

pub use dmarc::{DmarcPolicy, DmarcRecord, parse_dmarc, policy_for};

use crate::id::MessageId;

/// Who a message is sent as.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Identity {
    /// The relay's own domain: the customer domain is not verified.
    Relay,
    /// A verified customer domain.
    Customer {
        /// The verified domain covering the From domain (`d=`).
        domain: String,
        /// Active DKIM selector.
        selector: String,
        /// Return-path host, `em1234.customer.nl`.
        return_path: String,
    },
}

/// The verified (or failing-in-grace) domain that covers a From domain,
/// as the domain registry found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Covering {
    pub domain: String,
    pub selector: String,
    pub return_path: String,
    /// `verified` or `failing`.
    pub state: String,
}

/// The decision made at acceptance and stored with the message.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Decision {
    pub identity: Identity,
    pub reason: String,
}

/// Chooses the identity for mail From `from_domain` (DESIGN policy 2–4):
/// the covering customer domain if there is one, else the relay.
pub fn decide(from_domain: &str, covering: Option<Covering>) -> Decision {
    match covering {
        Some(c) => {
            let reason = if c.domain.eq_ignore_ascii_case(from_domain) {
                format!("{} is a {} domain, signing as the customer", c.domain, c.state)
            } else {
                format!("{} covers {from_domain} as a {} domain, signing as the customer", c.domain, c.state)
            };
            Decision { identity: Identity::Customer { domain: c.domain, selector: c.selector, return_path: c.return_path }, reason }
        }
        None => Decision { identity: Identity::Relay, reason: format!("{from_domain} is not covered by a verified domain, sending as the relay") },
    }
}

/// The envelope sender for a message: `bounces+<id>@<host>`, on the
/// customer's return-path host when verified, else the relay's bounce domain.
pub fn envelope_sender(identity: &Identity, relay_bounce_domain: &str, id: &MessageId) -> String {
    match identity {
        Identity::Relay => format!("bounces+{id}@{relay_bounce_domain}"),
        Identity::Customer { return_path, .. } => format!("bounces+{id}@{return_path}"),
    }
}

/// The relay id in a `bounces+<id>@…` address, if it is one.
pub fn bounce_id(address: &str) -> Option<MessageId> {
    let (local, _) = address.rsplit_once('@')?;
    let tag = local.strip_prefix("bounces+").or_else(|| local.strip_prefix("BOUNCES+"))?;
    MessageId::parse(tag)
}

/// Whether From must be rewritten: only on the relay identity, only when
/// the author domain's DMARC policy would make receivers quarantine or
/// reject unaligned mail, and only if the operator allows it.
pub fn must_rewrite_from(identity: &Identity, policy: Option<DmarcPolicy>, enabled: bool) -> bool {
    enabled && *identity == Identity::Relay && matches!(policy, Some(DmarcPolicy::Quarantine | DmarcPolicy::Reject))
}

/// The From and Reply-To fields of a rewritten message, CRLF-ended, the
/// way mailing lists do it: `"Acme via Relay" <noreply@relay>`, with the
/// original address in Reply-To unless the message already has one.
pub fn rewritten_from(name: Option<&str>, address: &str, relay_name: &str, relay_domain: &str, has_reply_to: bool) -> String {
    let shown = name.map(str::trim).filter(|n| !n.is_empty()).unwrap_or(address);
    let display = encode_phrase(&format!("{shown} via {relay_name}"));
    let mut out = format!("From: {display} <noreply@{relay_domain}>\r\n");
    if !has_reply_to {
        let original = match name.map(str::trim).filter(|n| !n.is_empty()) {
            Some(n) => format!("{} <{address}>", encode_phrase(n)),
            None => format!("<{address}>"),
        };
        out.push_str(&format!("Reply-To: {original}\r\n"));
    }
    out
}

/// A display name as a quoted string, or an RFC 2047 encoded word when it
/// is not ASCII.
fn encode_phrase(text: &str) -> String {
    let clean: String = text.chars().filter(|c| !c.is_control()).collect();
    if clean.is_ascii() {
        format!("\"{}\"", clean.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        use base64::Engine;
        format!("=?utf-8?b?{}?=", base64::engine::general_purpose::STANDARD.encode(clean.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn customer() -> Identity {
        Identity::Customer { domain: "customer.nl".into(), selector: "hr1".into(), return_path: "em4821.customer.nl".into() }
    }

    #[test]
    fn decisions() {
        let cov = |d: &str, state: &str| Some(Covering { domain: d.into(), selector: "hr1".into(), return_path: format!("em1234.{d}"), state: state.into() });
        let cases = [
            ("customer.nl", cov("customer.nl", "verified"), "customer.nl", "customer.nl is a verified domain, signing as the customer"),
            ("billing.customer.nl", cov("customer.nl", "verified"), "customer.nl", "customer.nl covers billing.customer.nl as a verified domain, signing as the customer"),
            ("customer.nl", cov("customer.nl", "failing"), "customer.nl", "customer.nl is a failing domain, signing as the customer"),
        ];
        for (from, covering, domain, reason) in cases {
            let d = decide(from, covering);
            assert!(matches!(&d.identity, Identity::Customer { domain: got, .. } if got == domain), "{d:?}");
            assert_eq!(d.reason, reason);
        }
        let d = decide("other.nl", None);
        assert_eq!(d.identity, Identity::Relay);
        assert_eq!(d.reason, "other.nl is not covered by a verified domain, sending as the relay");
    }

    #[test]
    fn envelope_senders() {
        let id = MessageId::parse("01jd5x3q8k2m7n4p").unwrap();
        assert_eq!(envelope_sender(&Identity::Relay, "bounces.relay.net", &id), "bounces+01jd5x3q8k2m7n4p@bounces.relay.net");
        assert_eq!(envelope_sender(&customer(), "bounces.relay.net", &id), "bounces+01jd5x3q8k2m7n4p@em4821.customer.nl");
        assert_eq!(bounce_id("bounces+01jd5x3q8k2m7n4p@em4821.customer.nl"), Some(id));
        for bad in ["bounces@x", "bounces+nope@x", "other+01jd5x3q8k2m7n4p@x", "bounces+01jd5x3q8k2m7n4p"] {
            assert_eq!(bounce_id(bad), None, "{bad}");
        }
    }

    #[test]
    fn from_rewrite_decision() {
        use DmarcPolicy::*;
        let cases = [
            (Identity::Relay, Some(Reject), true, true),
            (Identity::Relay, Some(Quarantine), true, true),
            (Identity::Relay, Some(None), true, false),
            (Identity::Relay, Option::None, true, false),
            (Identity::Relay, Some(Reject), false, false),
            (customer(), Some(Reject), true, false),
        ];
        for (identity, policy, enabled, want) in cases {
            assert_eq!(must_rewrite_from(&identity, policy, enabled), want, "{identity:?} {policy:?} {enabled}");
        }
    }

    #[test]
    fn rewritten_from_fields() {
        let cases = [
            (Some("Acme"), false, "From: \"Acme via Herald\" <noreply@relay.net>\r\nReply-To: \"Acme\" <invoice@acme.nl>\r\n"),
            (None, false, "From: \"invoice@acme.nl via Herald\" <noreply@relay.net>\r\nReply-To: <invoice@acme.nl>\r\n"),
            (Some("Acme"), true, "From: \"Acme via Herald\" <noreply@relay.net>\r\n"),
            (Some("Ac\"me"), true, "From: \"Ac\\\"me via Herald\" <noreply@relay.net>\r\n"),
            (Some("Café"), true, "From: =?utf-8?b?Q2Fmw6kgdmlhIEhlcmFsZA==?= <noreply@relay.net>\r\n"),
        ];
        for (name, has_reply_to, want) in cases {
            assert_eq!(rewritten_from(name, "invoice@acme.nl", "Herald", "relay.net", has_reply_to), want);
        }
    }
}
