//! Each DKIM-Signature as a receiver verifies it (mail-auth's verifier over
//! the relay's resolver), and on failure the cause in words. For a header
//! hash mismatch herald finds out whether a field was *added* after
//! signing: it verifies again with each signed field instance left out,
//! and the one whose removal makes the signature pass is the added one.

use super::key;
use crate::inspect::types::DkimCheckV1;
use crate::dns::Dns;
use crate::message::field_ranges;
use mail_auth::common::crypto::{Algorithm, CryptoError};
use mail_auth::dkim::{Canonicalization, DkimError, Signature};
use mail_auth::{AuthenticatedMessage, DkimOutput, DkimResult, Error, MessageAuthenticator};

/// Describes mail-auth's verdicts on `raw`'s signatures, one per
/// DKIM-Signature field.
pub async fn check(auth: &MessageAuthenticator, dns: &Dns, raw: &[u8], outputs: &[DkimOutput<'_>]) -> Vec<DkimCheckV1> {
    let mut checks = Vec::with_capacity(outputs.len());
    for output in outputs {
        checks.push(describe(auth, dns, raw, output).await);
    }
    checks
}

async fn describe(auth: &MessageAuthenticator, dns: &Dns, raw: &[u8], output: &DkimOutput<'_>) -> DkimCheckV1 {
    let (result, error) = verdict(output.result());
    let Some(sig) = output.signature() else {
        // A DKIM-Signature mail-auth could not even read.
        return DkimCheckV1 {
            result: result.into(),
            cause: error.map(|e| format!("the DKIM-Signature field cannot be read: {e}")),
            ..Default::default()
        };
    };
    let key_name = format!("{}._domainkey.{}", sig.s, sig.d);
    let (key_text, key_bits) = match dns.txt(&key_name).await {
        Ok(txts) => {
            let record = txts.iter().find(|t| t.contains("p=")).cloned().unwrap_or_else(|| txts.join(" "));
            let bits = key::p_tag(&record).and_then(|p| key::rsa_bits(&p));
            (record, bits)
        }
        Err(e) => (format!("({e})"), None),
    };
    let cause = match error {
        None => None,
        Some(err) => {
            let added = if matches!(err, Error::Crypto(CryptoError::FailedVerification)) { added_field(auth, raw, sig).await } else { None };
            let facts = Facts { key_name: &key_name, key_bits, headers: &sig.h, expires: sig.x, added };
            Some(explain(err, &facts))
        }
    };
    DkimCheckV1 {
        domain: sig.d.clone(),
        selector: sig.s.clone(),
        algorithm: algorithm(sig.a).into(),
        canonicalization: format!("{}/{}", canon(sig.ch), canon(sig.cb)),
        headers: sig.h.clone(),
        expires: (sig.x > 0).then_some(sig.x),
        key_name,
        key: key_text,
        key_bits,
        result: result.into(),
        cause,
    }
}

/// The field instance whose removal makes `sig` verify: (name, how many
/// instances of that name the message had at signing).
async fn added_field(auth: &MessageAuthenticator, raw: &[u8], sig: &Signature) -> Option<(String, usize)> {
    let mut names: Vec<&str> = Vec::new();
    for h in &sig.h {
        if !names.iter().any(|n| n.eq_ignore_ascii_case(h)) {
            names.push(h);
        }
    }
    for name in names {
        let ranges = field_ranges(raw, name);
        for (start, end) in &ranges {
            let mut without = raw[..*start].to_vec();
            without.extend_from_slice(&raw[*end..]);
            let Some(message) = AuthenticatedMessage::parse(&without) else { continue };
            let outputs = auth.verify_dkim(&message).await;
            let passes = outputs.iter().any(|o| o.result() == &DkimResult::Pass && o.signature().is_some_and(|s| s.b == sig.b));
            if passes {
                return Some((name.to_string(), ranges.len() - 1));
            }
        }
    }
    None
}

/// What the explanation draws on besides the error.
pub struct Facts<'a> {
    pub key_name: &'a str,
    pub key_bits: Option<u32>,
    /// `h=` as signed.
    pub headers: &'a [String],
    /// `x=`, 0 when unset.
    pub expires: u64,
    /// A field found to have been added after signing, with the number
    /// of instances the message had when signed.
    pub added: Option<(String, usize)>,
}

/// mail-auth's verdict as a word, and its error.
fn verdict(result: &DkimResult) -> (&'static str, Option<&Error>) {
    match result {
        DkimResult::Pass => ("pass", None),
        DkimResult::Neutral(e) => ("neutral", Some(e)),
        DkimResult::Fail(e) => ("fail", Some(e)),
        DkimResult::PermError(e) => ("permerror", Some(e)),
        DkimResult::TempError(e) => ("temperror", Some(e)),
        DkimResult::None => ("none", None),
    }
}

/// The cause of a failed verification, in words a postmaster can act on.
pub fn explain(err: &Error, f: &Facts<'_>) -> String {
    let short = f.key_bits.filter(|b| *b < key::MIN_RSA_BITS);
    match err {
        _ if short.is_some() => format!(
            "the key at {} is {} bits; receivers refuse RSA keys under {} bits (RFC 8301): publish a 2048-bit key",
            f.key_name,
            short.unwrap_or_default(),
            key::MIN_RSA_BITS
        ),
        Error::Dkim(DkimError::FailedBodyHashMatch) => "the body was changed after signing: its hash does not match the signature's bh= \
             (a footer or disclaimer added on the way, re-encoding, or changed line endings do this)"
            .into(),
        Error::Crypto(CryptoError::FailedVerification) => match &f.added {
            Some((name, 0)) => {
                format!("a `{name}` header was added after signing; the signature listed `{name}` while the message had none")
            }
            Some((name, had)) => {
                let listed = f.headers.iter().filter(|h| h.eq_ignore_ascii_case(name)).count();
                format!(
                    "another `{name}` header was added after signing; the signature listed `{name}` {listed} times while the message had {had}"
                )
            }
            None => {
                let mut names: Vec<&str> = Vec::new();
                for h in f.headers {
                    if !names.iter().any(|n| n.eq_ignore_ascii_case(h)) {
                        names.push(h);
                    }
                }
                format!(
                    "the signed headers do not match the signature: one of {} was changed after signing, \
                     or the key at {} is not the one that signed",
                    names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", "),
                    f.key_name
                )
            }
        },
        Error::Dkim(DkimError::RevokedPublicKey) => format!("the key at {} is revoked (its p= is empty)", f.key_name),
        Error::Dkim(DkimError::SignatureExpired) => {
            let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(f.expires);
            format!("the signature expired at {} (x={}); sign again or set a later expiry", humantime::format_rfc3339_seconds(at), f.expires)
        }
        Error::Dns(mail_auth::DnsError::RecordNotFound(code)) => {
            format!("no key is published at {} ({code}): the selector's TXT record was removed or never published", f.key_name)
        }
        Error::Dns(mail_auth::DnsError::InvalidRecordType) | Error::ParseError => {
            format!("the TXT record at {} is not a usable DKIM key (expected `v=DKIM1; k=rsa; p=…`)", f.key_name)
        }
        Error::Dns(mail_auth::DnsError::Resolver(e)) => {
            format!("the key lookup at {} failed temporarily ({e}); receivers defer or treat it as temperror", f.key_name)
        }
        Error::Dkim(DkimError::FailedAuidMatch) => "the signature's i= is not within its d= domain".into(),
        Error::Dkim(DkimError::UnsupportedKeyType) | Error::Crypto(CryptoError::IncompatibleAlgorithms) => {
            format!("the key at {} does not fit the signature's algorithm", f.key_name)
        }
        other => format!("{other}"),
    }
}

fn algorithm(a: Algorithm) -> &'static str {
    match a {
        Algorithm::RsaSha256 => "rsa-sha256",
        Algorithm::RsaSha1 => "rsa-sha1",
        Algorithm::Ed25519Sha256 => "ed25519-sha256",
    }
}

fn canon(c: Canonicalization) -> &'static str {
    match c {
        Canonicalization::Relaxed => "relaxed",
        Canonicalization::Simple => "simple",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_resolver::proto::op::ResponseCode;

    #[test]
    fn causes() {
        let h: Vec<String> = ["From", "From", "Subject", "Date"].iter().map(|s| s.to_string()).collect();
        let facts = |added: Option<(&str, usize)>, bits: Option<u32>| Facts {
            key_name: "hr1._domainkey.customer.nl",
            key_bits: bits,
            headers: &h,
            expires: 1_700_000_000,
            added: added.map(|(n, c)| (n.to_string(), c)),
        };
        let verify = Error::Crypto(CryptoError::FailedVerification);
        let cases: Vec<(Error, Facts<'_>, &str)> = vec![
            (verify.clone(), facts(Some(("Date", 0)), Some(2048)), "a `Date` header was added after signing; the signature listed `Date` while the message had none"),
            (verify.clone(), facts(Some(("From", 1)), Some(2048)), "another `From` header was added after signing; the signature listed `From` 2 times while the message had 1"),
            (verify.clone(), facts(None, Some(2048)), "one of `From`, `Subject`, `Date` was changed after signing"),
            (Error::Dkim(DkimError::FailedBodyHashMatch), facts(None, None), "the body was changed after signing"),
            (Error::Dns(mail_auth::DnsError::RecordNotFound(ResponseCode::NXDomain)), facts(None, None), "no key is published at hr1._domainkey.customer.nl"),
            (Error::Dkim(DkimError::RevokedPublicKey), facts(None, None), "is revoked"),
            (Error::Dkim(DkimError::SignatureExpired), facts(None, None), "expired at 2023-11-14T22:13:20Z (x=1700000000)"),
            (verify.clone(), facts(None, Some(512)), "is 512 bits; receivers refuse RSA keys under 1024 bits"),
            (Error::Dns(mail_auth::DnsError::Resolver("timeout".into())), facts(None, None), "failed temporarily (timeout)"),
        ];
        for (err, f, want) in cases {
            let got = explain(&err, &f);
            assert!(got.contains(want), "{err:?}: {got}");
        }
    }
}
