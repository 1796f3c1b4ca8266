//! `herald inspect`: what a receiving server computes for a message —
//! each DKIM signature, SPF for the envelope, DMARC for the From domain —
//! and on failure the cause in words. The verdicts are mail-auth's,
//! computed through the resolver it is given (the relay's, or `--dns`);
//! the explanations are herald's, pure functions in the check modules.
//!
//! Herald's own view (which identity it would choose for the From
//! domain) needs the domain registry, so it is added by the admin API
//! (the admin API) and fetched from there by the CLI.

pub mod types;
mod dkim;
mod dmarc;
pub mod identity;
mod key;
mod spf;

use crate::inspect::types::{InspectRequestV1, InspectV1};
use crate::dns::Dns;
use mail_auth::{AuthenticatedMessage, SpfOutput};
use std::net::IpAddr;

/// Why a message cannot be inspected; the text names the input at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InspectError {
    #[error("the input is not a message: it has no header section")]
    NotAMessage,
    #[error("`ip` (--ip) `{0}` is not an IP address; write e.g. 192.0.2.10")]
    BadIp(String),
}

/// Runs every check on `raw` through `dns`. `host` names the checking
/// host (SPF's `%{r}`). SPF is checked only when `request.ip` is given.
pub async fn inspect(dns: &Dns, raw: &[u8], request: &InspectRequestV1, host: &str) -> Result<InspectV1, InspectError> {
    let auth = dns.authenticator();
    let message = AuthenticatedMessage::parse(raw).filter(|m| !m.headers.is_empty()).ok_or(InspectError::NotAMessage)?;
    let from_domain = crate::message::check_from(raw).ok().map(|f| f.domain);
    let outputs = auth.verify_dkim(&message).await;
    let dkim_checks = dkim::check(&auth, dns, raw, &outputs).await;

    let mail_from = request.mail_from.clone().unwrap_or_default();
    let mail_from = mail_from.trim().trim_start_matches('<').trim_end_matches('>').to_string();
    let sender_domain = mail_from.rsplit_once('@').map(|(_, d)| d.to_ascii_lowercase());
    let helo = request.helo.clone().filter(|h| !h.trim().is_empty()).or_else(|| sender_domain.clone()).unwrap_or_else(|| "unknown".into());
    let (spf_output, spf_check) = match request.ip.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        Some(text) => {
            let ip: IpAddr = text.parse().map_err(|_| InspectError::BadIp(text.to_string()))?;
            let input = spf::SpfInput { ip, helo: &helo, mail_from: &mail_from, host };
            let (output, check) = spf::check(&auth, dns, &input).await;
            (output, Some(check))
        }
        None => (SpfOutput::new(sender_domain.clone().unwrap_or_default()), None),
    };
    let spf_domain = spf_check.as_ref().map(|c| c.domain.clone()).or(sender_domain).unwrap_or_default();
    let dmarc = match &from_domain {
        Some(_) => Some(dmarc::check(&auth, dns, &message, (&outputs, &dkim_checks), (&spf_output, spf_check.as_ref()), &spf_domain).await),
        None => None,
    };
    Ok(InspectV1 { from_domain, stored: None, dkim: dkim_checks, spf: spf_check, dmarc, identity: None })
}

/// The report as text for a person: one block per check.
pub fn render(report: &InspectV1) -> String {
    let mut out = String::new();
    if let Some(s) = &report.stored {
        out.push_str(&format!("Stored message {}\n  envelope sender  <{}>\n  signs as         d={} s={} ({})\n", s.id, s.envelope_from, s.signed_domain, s.selector, s.reason));
        if !s.prepared_at_first_attempt {
            out.push_str("  (not attempted yet: the header block below is what preparing it now gives)\n");
        }
        out.push_str("  header block herald adds:\n");
        for line in s.prepared_headers.lines() {
            out.push_str(&format!("    {line}\n"));
        }
        out.push('\n');
    }
    if report.dkim.is_empty() {
        out.push_str("DKIM   none: the message carries no DKIM-Signature\n");
    }
    for (i, d) in report.dkim.iter().enumerate() {
        out.push_str(&format!("DKIM #{}  {}  d={} s={} a={} c={}\n", i + 1, d.result.to_uppercase(), d.domain, d.selector, d.algorithm, d.canonicalization));
        out.push_str(&format!("  h={}\n", d.headers.join(":")));
        let bits = d.key_bits.map(|b| format!(" ({b}-bit RSA)")).unwrap_or_default();
        out.push_str(&format!("  key {}{bits}: {}\n", d.key_name, shorten(&d.key, 72)));
        if let Some(x) = d.expires {
            out.push_str(&format!("  expires x={x}\n"));
        }
        if let Some(c) = &d.cause {
            out.push_str(&format!("  cause: {c}\n"));
        }
    }
    match &report.spf {
        Some(s) => {
            out.push_str(&format!("SPF    {}  {} from {} (helo {})\n", s.result.to_uppercase(), s.domain, s.ip, s.helo));
            if let Some(r) = &s.record {
                out.push_str(&format!("  record: {r}\n"));
            }
            out.push_str(&format!("  {}\n", s.explanation));
        }
        None => out.push_str("SPF    not checked: give --ip (and --mail-from, --helo) to check the envelope\n"),
    }
    match &report.dmarc {
        Some(d) => {
            out.push_str(&format!("DMARC  {}  {} policy={} adkim={} aspf={}\n", d.result.to_uppercase(), d.domain, d.policy, d.adkim, d.aspf));
            if let (Some(n), Some(r)) = (&d.record_name, &d.record) {
                out.push_str(&format!("  record {n}: {r}\n"));
            }
            out.push_str(&format!("  aligned: {}\n", d.aligned.as_deref().unwrap_or("nothing")));
            out.push_str(&format!("  {}\n  disposition: {}\n", d.explanation, d.disposition));
        }
        None => out.push_str("DMARC  not checked: the message has no single From address\n"),
    }
    if let Some(i) = &report.identity {
        out.push_str(&format!(
            "herald would send From {} as: {} (d={} s={}, envelope @{})\n  {}\n",
            i.from_domain, i.kind, i.signing_domain, i.selector, i.envelope_domain, i.reason
        ));
    }
    out
}

fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let cut: String = text.chars().take(max).collect();
    format!("{cut}…")
}
