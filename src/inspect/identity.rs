//! Herald's own view: the identity it would send mail From a domain as,
//! decided now (DESIGN "Per-message policy" 2–4), in words.

use crate::inspect::types::IdentityV1;
use crate::config::IdentityConfig;
use crate::policy::{Decision, DmarcPolicy, Identity};

/// Describes `decision` for `from_domain`. `dmarc` is the author domain's
/// policy (for the From rewrite on the relay identity); `Err` holds why it
/// could not be looked up.
pub fn describe(from_domain: &str, decision: &Decision, relay: &IdentityConfig, dmarc: Result<Option<DmarcPolicy>, String>) -> IdentityV1 {
    match &decision.identity {
        Identity::Customer { domain, selector, return_path } => IdentityV1 {
            from_domain: from_domain.into(),
            kind: "customer".into(),
            signing_domain: domain.clone(),
            selector: selector.clone(),
            envelope_domain: return_path.clone(),
            reason: format!("{}; DKIM d={domain} and the return path {return_path} align with {from_domain}", decision.reason),
        },
        Identity::Relay => {
            let rewrite = match dmarc {
                Ok(policy) if crate::policy::must_rewrite_from(&Identity::Relay, policy, relay.rewrite_from) => {
                    format!("; {from_domain} publishes DMARC {}, so From becomes noreply@{} and the author goes to Reply-To", policy_word(policy), relay.domain)
                }
                Ok(Some(p)) if p != DmarcPolicy::None && !relay.rewrite_from => {
                    format!("; {from_domain} publishes DMARC {} and identity.rewrite_from is off: receivers may reject or junk it", policy_word(Some(p)))
                }
                Ok(_) => format!("; {from_domain}'s DMARC policy does not require rewriting From"),
                Err(e) => format!("; {from_domain}'s DMARC policy could not be read ({e})"),
            };
            IdentityV1 {
                from_domain: from_domain.into(),
                kind: "relay".into(),
                signing_domain: relay.domain.clone(),
                selector: relay.dkim_selector.clone(),
                envelope_domain: relay.bounce_domain.clone(),
                reason: format!("{}{rewrite}. Add and verify the domain (`herald domain add {from_domain}`) to sign as the customer", decision.reason),
            }
        }
    }
}

fn policy_word(p: Option<DmarcPolicy>) -> &'static str {
    match p {
        Some(DmarcPolicy::Reject) => "p=reject",
        Some(DmarcPolicy::Quarantine) => "p=quarantine",
        Some(DmarcPolicy::None) => "p=none",
        None => "no policy",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Covering, decide};

    fn relay(rewrite_from: bool) -> IdentityConfig {
        IdentityConfig { domain: "relay.test".into(), bounce_domain: "bounces.relay.test".into(), rewrite_from, ..Default::default() }
    }

    #[test]
    fn views() {
        let verified = decide("customer.nl", Some(Covering { domain: "customer.nl".into(), selector: "hr1".into(), return_path: "em1234.customer.nl".into(), state: "verified".into() }));
        let unverified = decide("other.nl", None);
        type Case<'a> = (&'a str, Decision, bool, Result<Option<DmarcPolicy>, String>, &'a str, &'a str);
        let cases: Vec<Case<'_>> = vec![
            ("customer.nl", verified, true, Ok(None), "customer", "customer.nl is a verified domain, signing as the customer; DKIM d=customer.nl and the return path em1234.customer.nl align"),
            ("other.nl", unverified.clone(), true, Ok(Some(DmarcPolicy::Reject)), "relay", "other.nl publishes DMARC p=reject, so From becomes noreply@relay.test"),
            ("other.nl", unverified.clone(), false, Ok(Some(DmarcPolicy::Reject)), "relay", "identity.rewrite_from is off"),
            ("other.nl", unverified.clone(), true, Ok(None), "relay", "does not require rewriting From"),
            ("other.nl", unverified, true, Err("timeout".into()), "relay", "could not be read (timeout)"),
        ];
        for (from, decision, rewrite, dmarc, kind, want) in cases {
            let v = describe(from, &decision, &relay(rewrite), dmarc);
            assert_eq!(v.kind, kind);
            assert!(v.reason.contains(want), "{}", v.reason);
        }
    }
}
