//! SPF (RFC 7208) for the envelope sender as a receiver checks it:
//! mail-auth's verdict over the relay's resolver, and herald's account of
//! which top-level term of the record decided it.

use crate::inspect::types::SpfCheckV1;
use crate::dns::Dns;
use mail_auth::common::parse::TxtRecordParser;
use mail_auth::spf::verify::SpfParameters;
use mail_auth::spf::{Macro, Mechanism, Spf};
use mail_auth::{MessageAuthenticator, SpfOutput, SpfResult};
use std::net::IpAddr;

/// What SPF is checked for.
pub struct SpfInput<'a> {
    pub ip: IpAddr,
    pub helo: &'a str,
    /// The envelope sender; `""` for the null sender (then the HELO name is checked).
    pub mail_from: &'a str,
    /// The checking host's name (for `%{r}`).
    pub host: &'a str,
}

/// The verdict (kept for DMARC) and its description.
pub async fn check(auth: &MessageAuthenticator, dns: &Dns, input: &SpfInput<'_>) -> (SpfOutput, SpfCheckV1) {
    let params = if input.mail_from.is_empty() {
        SpfParameters::verify_ehlo(input.ip, input.helo, input.host)
    } else {
        SpfParameters::verify_mail_from(input.ip, input.helo, input.host, input.mail_from)
    };
    let output = auth.verify_spf(params).await;
    let domain = output.domain().to_string();
    let record = match dns.txt(&domain).await {
        Ok(txts) => txts.into_iter().find(|t| t.to_ascii_lowercase().starts_with("v=spf1")),
        Err(_) => None,
    };
    let decided = match (&record, output.result()) {
        (Some(text), SpfResult::Pass | SpfResult::Fail | SpfResult::SoftFail | SpfResult::Neutral) => deciding_term(auth, dns, text, input, &domain).await,
        _ => None,
    };
    let result = word(output.result());
    let check = SpfCheckV1 {
        explanation: explain(output.result(), &domain, &input.ip.to_string(), decided.as_deref(), record.is_some()),
        domain,
        ip: input.ip.to_string(),
        helo: input.helo.to_string(),
        mail_from: input.mail_from.to_string(),
        record,
        result: result.into(),
        mechanism: decided,
    };
    (output, check)
}

/// The first top-level term of `text` that matches the IP (RFC 7208 §4.6:
/// terms are tried left to right), as written in the record.
async fn deciding_term(auth: &MessageAuthenticator, dns: &Dns, text: &str, input: &SpfInput<'_>, domain: &str) -> Option<String> {
    let spf = Spf::parse(text.as_bytes()).ok()?;
    let terms = mechanism_terms(text);
    for (directive, term) in spf.directives.iter().zip(terms) {
        if matches(auth, dns, &directive.mechanism, input, domain).await? {
            return Some(term);
        }
    }
    spf.redirect.as_ref().and_then(|_| text.split_whitespace().find(|t| t.to_ascii_lowercase().starts_with("redirect=")).map(str::to_string))
}

/// Whether one mechanism matches; `None` when herald cannot tell (macros,
/// `ptr`, `exists`).
async fn matches(auth: &MessageAuthenticator, dns: &Dns, mechanism: &Mechanism, input: &SpfInput<'_>, domain: &str) -> Option<bool> {
    let ip = input.ip;
    match mechanism {
        Mechanism::All => Some(true),
        Mechanism::Ip4 { addr, mask } => Some(match ip.to_canonical() {
            IpAddr::V4(v4) => u32::from(v4) & mask == u32::from(*addr) & mask,
            IpAddr::V6(_) => false,
        }),
        Mechanism::Ip6 { addr, mask } => Some(match ip {
            IpAddr::V6(v6) => u128::from(v6) & mask == u128::from(*addr) & mask,
            IpAddr::V4(_) => false,
        }),
        Mechanism::Include { macro_string } => {
            let target = literal(macro_string, domain)?;
            let params = SpfParameters::new(ip, &target, input.helo, input.host, input.mail_from);
            Some(auth.check_host(params.into()).await.result() == SpfResult::Pass)
        }
        Mechanism::A { macro_string, ip4_mask, ip6_mask } => {
            let target = literal(macro_string, domain)?;
            let ips = dns.ips(&target).await.unwrap_or_default();
            Some(ips.iter().any(|a| within(ip, *a, *ip4_mask, *ip6_mask)))
        }
        Mechanism::Mx { macro_string, ip4_mask, ip6_mask } => {
            let target = literal(macro_string, domain)?;
            for mx in dns.mx(&target).await.unwrap_or_default() {
                if dns.ips(&mx.exchange).await.unwrap_or_default().iter().any(|a| within(ip, *a, *ip4_mask, *ip6_mask)) {
                    return Some(true);
                }
            }
            Some(false)
        }
        Mechanism::Ptr { .. } | Mechanism::Exists { .. } => None,
    }
}

fn within(ip: IpAddr, candidate: IpAddr, mask4: u32, mask6: u128) -> bool {
    match (ip.to_canonical(), candidate) {
        (IpAddr::V4(a), IpAddr::V4(b)) => u32::from(a) & mask4 == u32::from(b) & mask4,
        (IpAddr::V6(a), IpAddr::V6(b)) => u128::from(a) & mask6 == u128::from(b) & mask6,
        _ => false,
    }
}

/// The domain a mechanism names: its literal, or the current domain.
fn literal(m: &Macro, domain: &str) -> Option<String> {
    match m {
        Macro::None => Some(domain.to_string()),
        Macro::Literal(bytes) => Some(String::from_utf8_lossy(bytes).trim_end_matches('.').to_string()),
        _ => None,
    }
}

/// The record's mechanisms as written, without `v=spf1` and modifiers.
pub fn mechanism_terms(record: &str) -> Vec<String> {
    record
        .split_whitespace()
        .skip(1)
        .filter(|t| {
            let name = t.split([':', '/']).next().unwrap_or(t);
            !name.contains('=')
        })
        .map(str::to_string)
        .collect()
}

fn word(r: SpfResult) -> &'static str {
    match r {
        SpfResult::Pass => "pass",
        SpfResult::Fail => "fail",
        SpfResult::SoftFail => "softfail",
        SpfResult::Neutral => "neutral",
        SpfResult::TempError => "temperror",
        SpfResult::PermError => "permerror",
        SpfResult::None => "none",
    }
}

/// The verdict in words.
pub fn explain(result: SpfResult, domain: &str, ip: &str, term: Option<&str>, has_record: bool) -> String {
    let by = term.map(|t| format!(": `{t}` matched")).unwrap_or_default();
    match result {
        SpfResult::Pass => format!("{ip} may send for {domain}{by}"),
        SpfResult::Fail => format!("{ip} may not send for {domain}{by}; receivers reject or junk it unless DKIM aligns"),
        SpfResult::SoftFail => format!("{ip} is probably not allowed to send for {domain}{by} (softfail: accepted but suspicious)"),
        SpfResult::Neutral => format!("{domain} makes no statement about {ip}{by}"),
        SpfResult::None if !has_record => format!("{domain} publishes no SPF record"),
        SpfResult::None => format!("{domain} has no SPF verdict for {ip}"),
        SpfResult::TempError => format!("a DNS lookup for {domain}'s SPF failed temporarily; receivers defer"),
        SpfResult::PermError => format!("the SPF record of {domain} is broken (a syntax error, or more than 10 DNS lookups)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terms_as_written() {
        let cases = [
            ("v=spf1 ip4:192.0.2.0/24 include:_spf.example.net -all", vec!["ip4:192.0.2.0/24", "include:_spf.example.net", "-all"]),
            ("v=spf1 a mx/24 redirect=_spf.example.net", vec!["a", "mx/24"]),
            ("v=spf1 exp=explain.example.net ~all", vec!["~all"]),
        ];
        for (record, want) in cases {
            assert_eq!(mechanism_terms(record), want, "{record}");
            let parsed = Spf::parse(record.as_bytes()).unwrap();
            assert_eq!(parsed.directives.len(), want.len(), "{record}");
        }
    }

    #[test]
    fn verdicts_in_words() {
        let cases = [
            (SpfResult::Pass, Some("ip4:127.0.0.0/8"), true, "127.0.0.1 may send for em1.customer.nl: `ip4:127.0.0.0/8` matched"),
            (SpfResult::Fail, Some("-all"), true, "127.0.0.1 may not send for em1.customer.nl: `-all` matched"),
            (SpfResult::None, None, false, "em1.customer.nl publishes no SPF record"),
            (SpfResult::PermError, None, true, "is broken"),
        ];
        for (result, term, has, want) in cases {
            let got = explain(result, "em1.customer.nl", "127.0.0.1", term, has);
            assert!(got.contains(want), "{got}");
        }
    }

    #[test]
    fn masks() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(within(ip("192.0.2.7"), ip("192.0.2.1"), 0xffff_ff00, 0));
        assert!(!within(ip("192.0.3.7"), ip("192.0.2.1"), 0xffff_ff00, 0));
        assert!(within(ip("::ffff:192.0.2.7"), ip("192.0.2.7"), u32::MAX, 0));
        assert!(!within(ip("::1"), ip("192.0.2.7"), u32::MAX, u128::MAX));
    }
}
