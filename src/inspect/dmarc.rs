//! DMARC for the From domain as a receiver evaluates it (mail-auth's
//! verifier over the relay's resolver): the policy record, which
//! identifier aligned, the result and what a receiver following the policy
//! does with the message.

use crate::inspect::types::{DkimCheckV1, DmarcCheckV1, SpfCheckV1};
use crate::dns::Dns;
use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::dmarc::{Alignment, Policy};
use mail_auth::{AuthenticatedMessage, DkimOutput, DmarcResult, MessageAuthenticator, SpfOutput};

/// Evaluates DMARC; `mail_from_domain` is the SPF-checked domain (`""`
/// when SPF was not checked).
pub async fn check(
    auth: &MessageAuthenticator,
    dns: &Dns,
    message: &AuthenticatedMessage<'_>,
    dkim: (&[DkimOutput<'_>], &[DkimCheckV1]),
    spf: (&SpfOutput, Option<&SpfCheckV1>),
    mail_from_domain: &str,
) -> DmarcCheckV1 {
    let output = auth.verify_dmarc(DmarcParameters::new(message, dkim.0, mail_from_domain, spf.0)).await;
    let domain = output.domain().to_string();
    let (record_name, record) = find_record(dns, &domain).await;
    let (adkim, aspf) = output.dmarc_record().map(|r| (r.adkim, r.aspf)).unwrap_or((Alignment::Relaxed, Alignment::Relaxed));
    let aligned = if output.dkim_result() == &DmarcResult::Pass {
        dkim.1.iter().filter(|c| c.result == "pass").find(|c| same_org(&c.domain, &domain, adkim)).map(|c| format!("DKIM d={} ({})", c.domain, mode(&c.domain, &domain)))
    } else if output.spf_result() == &DmarcResult::Pass {
        Some(format!("SPF {mail_from_domain} ({})", mode(mail_from_domain, &domain)))
    } else {
        None
    };
    let result = word(&output.result());
    let policy = policy_word(output.policy());
    let passed_dkim: Vec<String> = dkim.1.iter().filter(|c| c.result == "pass").map(|c| c.domain.clone()).collect();
    let spf_words = match spf.1 {
        Some(s) => format!("SPF {} for {}", s.result, s.domain),
        None => "SPF not checked (give --ip, --mail-from and --helo)".to_string(),
    };
    DmarcCheckV1 {
        explanation: explain(result, &domain, record.is_some(), aligned.as_deref(), &passed_dkim, &spf_words),
        disposition: disposition(result, policy, record.is_some()),
        domain,
        record_name,
        record,
        policy: policy.into(),
        adkim: alignment(adkim).into(),
        aspf: alignment(aspf).into(),
        aligned,
        dkim_result: word(output.dkim_result()).into(),
        spf_result: word(output.spf_result()).into(),
        result: result.into(),
    }
}

/// The `_dmarc` TXT record that applies: the author domain's, else the
/// nearest parent's (the DNS tree walk, RFC 9989 §4.10).
async fn find_record(dns: &Dns, domain: &str) -> (Option<String>, Option<String>) {
    let labels: Vec<&str> = domain.split('.').collect();
    for start in 0..labels.len().saturating_sub(1).min(8) {
        let name = format!("_dmarc.{}", labels[start..].join("."));
        if let Ok(txts) = dns.txt(&name).await
            && let Some(r) = txts.into_iter().find(|t| t.to_ascii_lowercase().replace(' ', "").starts_with("v=dmarc1"))
        {
            return (Some(name), Some(r));
        }
    }
    (None, None)
}

/// Whether `d` aligns with the author domain under `mode` (the org domain
/// approximated by suffix, as mail-auth has already decided the verdict).
fn same_org(d: &str, author: &str, mode: Alignment) -> bool {
    let (d, author) = (d.to_ascii_lowercase(), author.to_ascii_lowercase());
    d == author || (mode == Alignment::Relaxed && (d.ends_with(&format!(".{author}")) || author.ends_with(&format!(".{d}")) || org(&d) == org(&author)))
}

fn org(domain: &str) -> String {
    let labels: Vec<&str> = domain.split('.').collect();
    labels[labels.len().saturating_sub(2)..].join(".")
}

fn mode(d: &str, author: &str) -> &'static str {
    if d.eq_ignore_ascii_case(author) { "exact match" } else { "relaxed: same organizational domain" }
}

fn word(r: &DmarcResult) -> &'static str {
    match r {
        DmarcResult::Pass => "pass",
        DmarcResult::Fail(_) => "fail",
        DmarcResult::TempError(_) => "temperror",
        DmarcResult::PermError(_) => "permerror",
        DmarcResult::None => "none",
    }
}

fn policy_word(p: Policy) -> &'static str {
    match p {
        Policy::None | Policy::Unspecified => "none",
        Policy::Quarantine => "quarantine",
        Policy::Reject => "reject",
    }
}

fn alignment(a: Alignment) -> &'static str {
    match a {
        Alignment::Relaxed => "relaxed",
        Alignment::Strict => "strict",
    }
}

/// What a receiver following the policy does.
pub fn disposition(result: &str, policy: &str, has_record: bool) -> String {
    match (result, policy) {
        _ if !has_record => "no DMARC policy: each receiver decides on its own".into(),
        ("pass", _) => "deliver: DMARC passes".into(),
        ("fail", "reject") => "reject: receivers following p=reject refuse the message".into(),
        ("fail", "quarantine") => "quarantine: receivers following p=quarantine put it in the spam folder".into(),
        ("fail", _) => "deliver: p=none asks receivers only to report".into(),
        ("temperror", _) => "defer: a DNS lookup failed temporarily".into(),
        _ => "no verdict: receivers decide on their own".into(),
    }
}

/// The verdict in words.
pub fn explain(result: &str, domain: &str, has_record: bool, aligned: Option<&str>, passed_dkim: &[String], spf: &str) -> String {
    if !has_record {
        return format!("{domain} publishes no DMARC record (and no parent does)");
    }
    match (result, aligned) {
        ("pass", Some(a)) => format!("{a} aligns with the From domain {domain}"),
        ("fail", _) => {
            let dkim = if passed_dkim.is_empty() {
                "no DKIM signature passed".to_string()
            } else {
                format!("DKIM passed only for d={} (not aligned)", passed_dkim.join(", d="))
            };
            format!("nothing aligns with the From domain {domain}: {dkim}; {spf} (not aligned or not passing)")
        }
        (r, _) => format!("DMARC {r} for {domain}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dispositions() {
        let cases = [
            ("pass", "reject", true, "deliver"),
            ("fail", "reject", true, "reject: receivers following p=reject"),
            ("fail", "quarantine", true, "quarantine"),
            ("fail", "none", true, "deliver: p=none"),
            ("none", "none", false, "no DMARC policy"),
        ];
        for (result, policy, has, want) in cases {
            assert!(disposition(result, policy, has).starts_with(want), "{result} {policy}");
        }
    }

    #[test]
    fn explanations() {
        let no_pass: [String; 0] = [];
        let relay = ["relay.test".to_string()];
        let cases = [
            ("pass", Some("DKIM d=customer.nl (exact match)"), &no_pass[..], "DKIM d=customer.nl (exact match) aligns with the From domain customer.nl"),
            ("fail", None, &relay[..], "nothing aligns with the From domain customer.nl: DKIM passed only for d=relay.test (not aligned)"),
            ("fail", None, &no_pass[..], "no DKIM signature passed"),
        ];
        for (result, aligned, passed, want) in cases {
            let got = explain(result, "customer.nl", true, aligned, passed, "SPF pass for bounces.relay.test");
            assert!(got.contains(want), "{got}");
        }
        assert!(explain("none", "x.nl", false, None, &[], "").contains("publishes no DMARC record"));
    }

    #[test]
    fn alignment_modes() {
        let cases = [
            ("customer.nl", "customer.nl", Alignment::Strict, true),
            ("em1.customer.nl", "customer.nl", Alignment::Strict, false),
            ("em1.customer.nl", "customer.nl", Alignment::Relaxed, true),
            ("relay.test", "customer.nl", Alignment::Relaxed, false),
        ];
        for (d, author, m, want) in cases {
            assert_eq!(same_org(d, author, m), want, "{d} {author}");
        }
    }
}
