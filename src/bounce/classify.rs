//! The classifier: the enhanced status code first (RFC 3463, and the
//! extensions receivers publish, such as Gmail's 5.7.26 or Microsoft's
//! 5.4.3xx), then words in the reply text, then the basic code. Pure.

use super::{Bounce, BounceClass as C};

/// `(basic code, enhanced code)` read from the start of a reply line such
/// as `550 5.1.1 no such user` or `550-5.7.1 …`; either may be missing.
pub fn parse_reply(reply: &str) -> (Option<u16>, Option<(u8, u16, u16)>) {
    let reply = reply.trim_start();
    let code = reply.get(..3).filter(|c| c.bytes().all(|b| b.is_ascii_digit())).and_then(|c| c.parse().ok()).filter(|c| (200..600).contains(c));
    let rest = if code.is_some() { reply[3..].trim_start_matches([' ', '-']) } else { reply };
    let token = rest.split_whitespace().next().unwrap_or("");
    let mut parts = token.trim_end_matches([';', ',', ':']).split('.');
    let esc = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(a), Some(b), Some(c), None) => match (a.parse::<u8>(), b.parse::<u16>(), c.parse::<u16>()) {
            (Ok(a @ (2 | 4 | 5)), Ok(b), Ok(c)) if b < 1000 && c < 1000 => Some((a, b, c)),
            _ => None,
        },
        _ => None,
    };
    (code, esc)
}

/// Classifies a failure from its reply (or local reason); `permanent` is
/// what delivery decided (a 5xx, a null MX, expiry…), used when the text
/// carries no code.
pub fn classify(reply: &str, permanent: bool) -> Bounce {
    let (code, esc) = parse_reply(reply);
    let text = reply.to_ascii_lowercase();
    let permanent = match code {
        Some(c) => c >= 500,
        None => permanent,
    };
    let class = esc
        .and_then(|e| by_status(e, &text))
        .or_else(|| by_text(&text))
        .or_else(|| esc.and_then(broad_status))
        .unwrap_or(if permanent { C::OtherPermanent } else { C::OtherTemporary });
    Bounce::new(class, permanent)
}

fn any(text: &str, words: &[&str]) -> bool {
    words.iter().any(|w| text.contains(w))
}

const RATE: &[&str] = &["rate limit", "rate that prevents", "unusual rate", "too many", "throttl", "slow down", "limits for how many", "unexpected volume", "server busy"];

/// Enhanced codes that name the class on their own (some refined by text).
fn by_status((_, subject, detail): (u8, u16, u16), text: &str) -> Option<C> {
    Some(match (subject, detail) {
        // Our own envelope sender refused: never the recipient's fault.
        (1, 7) | (1, 8) => C::OtherPermanent,
        (1, 1..=3) | (1, 10) => C::InvalidRecipient,
        (1, 6) => C::MailboxDisabled,
        (2, 1) if any(text, RATE) || text.contains("rate") => C::RateLimited,
        (2, 1) => C::MailboxDisabled,
        (2, 2) => C::MailboxFull,
        (2, 3) | (3, 4) => C::MessageTooLarge,
        (3, 1) => C::OtherTemporary,
        // Microsoft's 5.4.316 is "message expired" among its DNS codes.
        (4, 300..=399) if text.contains("expired") => C::OtherTemporary,
        (4, 3) | (4, 4) | (4, 300..=399) => C::DnsFailure,
        (4, 7) => C::OtherTemporary,
        (7, 23) | (7, 24) => C::PolicySpf,
        (7, 26) | (7, 509) => C::PolicyDmarc,
        (7, 25) => C::ReputationBlock,
        (7, 28) => C::RateLimited,
        (7, 10) | (7, 11) => C::TlsRequired,
        (7, 27) => C::OtherPermanent,
        (7, 64) => C::RelayDenied,
        (6, 1..) => C::OtherPermanent,
        _ => return None,
    })
}

/// Words in the reply, most specific first.
fn by_text(t: &str) -> Option<C> {
    Some(if t.contains("greylist") || t.contains("graylist") {
        C::OtherTemporary
    } else if any(t, RATE) {
        C::RateLimited
    } else if any(t, &["dmarc", "unauthenticated", "authenticate with"]) {
        C::PolicyDmarc
    } else if any(t, &["spf", "sender policy framework"]) {
        C::PolicySpf
    } else if any(t, &["starttls", "tls", "encryption"]) {
        C::TlsRequired
    } else if any(t, &["spamhaus", "spamcop", "blocked using", "block list", "blocklist", "blacklist", "dnsbl", "rbl", "listed", "ptr", "reverse dns", "reverse hostname", "client host rejected", "dynamic", "banned", "reputation", "proofpoint"]) {
        C::ReputationBlock
    } else if any(t, &["sender address rejected", "sender domain", "sender rejected", "sender refused"]) {
        C::OtherPermanent
    } else if any(t, &["nxdomain", "nonexistent domain", "non-existent domain", "domain does not exist", "domain not found", "no mx", "null mx", "host not found", "dns query failed", "name service", "no such domain", "accepts no mail"]) {
        C::DnsFailure
    } else if any(
        t,
        &[
            "user unknown", "unknown user", "no such user", "does not exist", "doesn't exist", "not exist", "doesn't have a", "invalid recipient", "recipient address rejected", "unknown recipient",
            "recipient not found", "user not found", "mailbox not found", "mailbox unavailable", "no mailbox", "invalid mailbox", "address rejected", "no such recipient", "addressee unknown",
            "bad destination mailbox",
        ],
    ) {
        C::InvalidRecipient
    } else if any(t, &["over quota", "quota", "mailbox full", "mailbox is full", "is full", "exceeded storage", "insufficient storage"]) {
        C::MailboxFull
    } else if any(t, &["disabled", "inactive", "deactivated", "suspended", "frozen", "no longer", "account closed", "has moved"]) {
        C::MailboxDisabled
    } else if any(t, &["too large", "too big", "size limit", "message size", "exceeds the maximum size"]) {
        C::MessageTooLarge
    } else if t.contains("relay") {
        C::RelayDenied
    } else if any(t, &["spam", "unsolicited", "content", "virus", "malware", "phish"]) {
        C::ContentSpam
    } else if any(t, &["blocked", "policy restrictions", "local policy", "not accepted from", "permanently deferred", "policy reasons", "has a policy"]) {
        C::ReputationBlock
    } else if t.contains("queue lifetime") || t.contains("expired") {
        C::OtherTemporary
    } else {
        return None;
    })
}

/// What an enhanced code says when nothing more specific did.
fn broad_status((class, subject, _): (u8, u16, u16)) -> Option<C> {
    match (class, subject) {
        // A permanent security or policy refusal with no better words.
        (5, 7) => Some(C::ReputationBlock),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_parse() {
        let cases: &[(&str, Option<u16>, Option<(u8, u16, u16)>)] = &[
            ("550 5.1.1 no such user", Some(550), Some((5, 1, 1))),
            ("550-5.7.26 Unauthenticated", Some(550), Some((5, 7, 26))),
            ("451 4.7.500 Server busy", Some(451), Some((4, 7, 500))),
            ("554 delivery error: dd", Some(554), None),
            ("550 SC-001 (BAY004) blocked", Some(550), None),
            ("queue lifetime exceeded", None, None),
            ("550 5.1.1; x", Some(550), Some((5, 1, 1))),
            ("250 2.0.0 Ok", Some(250), Some((2, 0, 0))),
            ("999 9.9.9 x", None, None),
        ];
        for (reply, code, esc) in cases {
            assert_eq!(parse_reply(reply), (*code, *esc), "{reply}");
        }
    }
}
