//! Reading delivery status notifications (RFC 3464, and RFC 6533's
//! `global` variant): which recipients a report is about and what
//! happened to each. Pure functions over bytes.
//!
//! mail-parser finds the parts; the `message/delivery-status` body is
//! groups of header-like fields separated by blank lines (§2.1): the
//! per-message group first, then one group per recipient (§2.3).

use mail_parser::{Message, MessageParser, MessagePart, MimeHeaders};

/// What the reporting MTA did with a recipient (RFC 3464 §2.3.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Failed,
    Delayed,
    Delivered,
    Relayed,
    Expanded,
    /// A value the RFC does not define, lowercased.
    Other(String),
}

/// The fields of one per-recipient group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RcptReport {
    /// The address from `Final-Recipient`, without its type (`rfc822;`).
    pub final_recipient: String,
    /// The address from `Original-Recipient`, when given.
    pub original_recipient: Option<String>,
    pub action: Action,
    /// The status code, e.g. `5.1.1`.
    pub status: String,
    /// The host from `Remote-MTA`, without its type (`dns;`).
    pub remote_mta: Option<String>,
    /// `Diagnostic-Code` as given, e.g. `smtp; 550 5.1.1 user unknown`.
    pub diagnostic: Option<String>,
}

impl RcptReport {
    /// Whether this group is about `address`, as its final or (when the
    /// report keeps it) original recipient.
    pub fn names(&self, address: &str) -> bool {
        self.final_recipient.eq_ignore_ascii_case(address)
            || self.original_recipient.as_deref().is_some_and(|o| o.eq_ignore_ascii_case(address))
    }

    /// The text recorded in the recipient's attempt history.
    /// The class of the failure the report gives: its diagnostic code
    /// (`smtp; 550 5.1.1 …`) read with its Status.
    pub fn bounce(&self) -> crate::bounce::Bounce {
        let diagnostic = self.diagnostic.as_deref().unwrap_or("");
        let diagnostic = diagnostic.split_once(';').map_or(diagnostic, |(kind, rest)| if kind.trim().eq_ignore_ascii_case("smtp") { rest } else { diagnostic }).trim();
        let mut bounce = crate::bounce::classify(diagnostic, true);
        if matches!(bounce.class, crate::bounce::BounceClass::OtherPermanent | crate::bounce::BounceClass::OtherTemporary) {
            bounce = crate::bounce::classify(&format!("{} {diagnostic}", self.status), !self.status.starts_with('4'));
        }
        bounce
    }

    pub fn reply(&self) -> String {
        match &self.diagnostic {
            Some(d) => format!("bounced: {} {d}", self.status),
            None => format!("bounced: {}", self.status),
        }
    }
}

/// The per-recipient groups of `message` when it is a delivery status
/// notification (`multipart/report; report-type=delivery-status` holding
/// a `message/delivery-status` part); `None` for any other message.
/// Groups lacking `Final-Recipient`, `Action` or `Status` are skipped.
pub fn parse_report(message: &[u8]) -> Option<Vec<RcptReport>> {
    let parsed = MessageParser::new().parse(message)?;
    let root = parsed.root_part();
    let ct = root.content_type()?;
    let report_type = ct.attribute("report-type").unwrap_or_default();
    let is_report = ct.ctype().eq_ignore_ascii_case("multipart")
        && ct.subtype().is_some_and(|s| s.eq_ignore_ascii_case("report"))
        && (report_type.eq_ignore_ascii_case("delivery-status") || report_type.eq_ignore_ascii_case("global-delivery-status"));
    if !is_report {
        return None;
    }
    let status = status_part(&parsed, root)?;
    Some(groups(status.contents()).iter().filter_map(|g| recipient(g)).collect())
}

/// The `message/(global-)delivery-status` child of the report.
fn status_part<'a>(message: &'a Message<'a>, root: &'a MessagePart<'a>) -> Option<&'a MessagePart<'a>> {
    root.sub_parts()?.iter().filter_map(|&id| message.part(id)).find(|part| {
        part.content_type().is_some_and(|ct| {
            ct.ctype().eq_ignore_ascii_case("message")
                && ct
                    .subtype()
                    .is_some_and(|s| s.eq_ignore_ascii_case("delivery-status") || s.eq_ignore_ascii_case("global-delivery-status"))
        })
    })
}

/// The field groups, each CRLF-ended and followed by an empty line so it
/// parses as a header section.
fn groups(body: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(body);
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() {
            if !current.is_empty() {
                current.push_str("\r\n");
                out.push(std::mem::take(&mut current));
            }
        } else {
            current.push_str(line);
            current.push_str("\r\n");
        }
    }
    if !current.is_empty() {
        current.push_str("\r\n");
        out.push(current);
    }
    out
}

/// One per-recipient group; `None` for the per-message group and for a
/// group without the three required fields.
fn recipient(group: &str) -> Option<RcptReport> {
    let parsed = MessageParser::new().default_header_text().parse_headers(group.as_bytes())?;
    let field = |name: &str| {
        parsed
            .headers()
            .iter()
            .find(|h| h.name().eq_ignore_ascii_case(name))
            .and_then(|h| h.value().as_text())
            .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
            .filter(|v| !v.is_empty())
    };
    let final_recipient = typed_value(&field("Final-Recipient")?);
    let action = match field("Action")?
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase()
        .as_str()
    {
        "failed" => Action::Failed,
        "delayed" => Action::Delayed,
        "delivered" => Action::Delivered,
        "relayed" => Action::Relayed,
        "expanded" => Action::Expanded,
        other => Action::Other(other.to_string()),
    };
    let status = field("Status")?.split_whitespace().next().unwrap_or_default().to_string();
    Some(RcptReport {
        final_recipient,
        original_recipient: field("Original-Recipient").map(|v| typed_value(&v)),
        action,
        status,
        remote_mta: field("Remote-MTA").map(|v| typed_value(&v)),
        diagnostic: field("Diagnostic-Code"),
    })
}

/// `rfc822; <a@b.example>` → `a@b.example` (§2.3.1: address-type `;` address).
fn typed_value(value: &str) -> String {
    let bare = value.split_once(';').map_or(value, |(_, v)| v);
    bare.trim().trim_start_matches('<').trim_end_matches('>').trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A report as MTAs send them, with `groups` as the status part's body.
    fn report(content_type: &str, status_type: &str, groups: &str) -> Vec<u8> {
        format!(
            "From: MAILER-DAEMON@mx.example.net\r\nTo: bounces+01jd5x3q8k2m7n4p@bounces.relay.test\r\nSubject: Undelivered\r\n\
             MIME-Version: 1.0\r\nContent-Type: {content_type}; boundary=\"b1\"\r\n\r\n\
             --b1\r\nContent-Type: text/plain\r\n\r\nSorry.\r\n\
             --b1\r\nContent-Type: {status_type}\r\n\r\n{groups}\r\n\
             --b1\r\nContent-Type: text/rfc822-headers\r\n\r\nFrom: a@customer.test\r\nSubject: Invoice\r\n\r\n\
             --b1--\r\n"
        )
        .into_bytes()
    }

    const PER_MESSAGE: &str = "Reporting-MTA: dns; mx.example.net\r\nArrival-Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n\r\n";
    const DSN: &str = "multipart/report; report-type=delivery-status";

    fn rcpt(final_recipient: &str, action: Action, status: &str) -> RcptReport {
        RcptReport {
            final_recipient: final_recipient.into(),
            original_recipient: None,
            action,
            status: status.into(),
            remote_mta: None,
            diagnostic: None,
        }
    }

    #[test]
    fn reports() {
        let failed = RcptReport {
            remote_mta: Some("mx.dest.test".into()),
            diagnostic: Some("smtp; 550 5.1.1 user unknown".into()),
            ..rcpt("payer@dest.test", Action::Failed, "5.1.1")
        };
        let cases: Vec<(Vec<u8>, Option<Vec<RcptReport>>)> = vec![
            // The usual shape.
            (
                report(
                    DSN,
                    "message/delivery-status",
                    &format!(
                        "{PER_MESSAGE}Final-Recipient: rfc822; payer@dest.test\r\nAction: failed\r\nStatus: 5.1.1\r\nRemote-MTA: dns; mx.dest.test\r\nDiagnostic-Code: smtp; 550 5.1.1 user unknown\r\n"
                    ),
                ),
                Some(vec![failed.clone()]),
            ),
            // Case, folding, angle brackets, comments after the status.
            (
                report(
                    "Multipart/Report; Report-Type=\"Delivery-Status\"",
                    "Message/Delivery-Status",
                    &format!(
                        "{PER_MESSAGE}final-recipient: RFC822;<payer@dest.test>\r\nACTION: Failed\r\nstatus: 5.1.1 (bad mailbox)\r\nremote-mta: dns;\r\n mx.dest.test\r\ndiagnostic-code: smtp; 550 5.1.1\r\n  user unknown\r\n"
                    ),
                ),
                Some(vec![failed]),
            ),
            // Two recipients, the original recipient kept; an incomplete group skipped.
            (
                report(
                    DSN,
                    "message/delivery-status",
                    &format!(
                        "{PER_MESSAGE}Original-Recipient: rfc822;A@dest.test\r\nFinal-Recipient: rfc822;a@forward.test\r\nAction: delayed\r\nStatus: 4.4.1\r\n\r\n\
                         Final-Recipient: rfc822;b@dest.test\r\nAction: relayed\r\nStatus: 2.0.0\r\n\r\nFinal-Recipient: rfc822;c@dest.test\r\nStatus: 5.0.0\r\n"
                    ),
                ),
                Some(vec![
                    RcptReport {
                        original_recipient: Some("A@dest.test".into()),
                        ..rcpt("a@forward.test", Action::Delayed, "4.4.1")
                    },
                    rcpt("b@dest.test", Action::Relayed, "2.0.0"),
                ]),
            ),
            // RFC 6533.
            (
                report(
                    "multipart/report; report-type=global-delivery-status",
                    "message/global-delivery-status",
                    &format!("{PER_MESSAGE}Final-Recipient: utf-8; ü@dest.test\r\nAction: failed\r\nStatus: 5.1.1\r\n"),
                ),
                Some(vec![rcpt("ü@dest.test", Action::Failed, "5.1.1")]),
            ),
            (
                report(
                    DSN,
                    "message/delivery-status",
                    &format!("{PER_MESSAGE}Final-Recipient: rfc822; x@dest.test\r\nAction: exploded\r\nStatus: 5.0.0\r\n"),
                ),
                Some(vec![rcpt("x@dest.test", Action::Other("exploded".into()), "5.0.0")]),
            ),
            // A report of another type, a mixed message, no status part, plain text.
            (
                report(
                    "multipart/report; report-type=disposition-notification",
                    "message/disposition-notification",
                    "Final-Recipient: rfc822; x@y\r\nAction: failed\r\nStatus: 5.0.0\r\n",
                ),
                None,
            ),
            (
                report(
                    "multipart/mixed",
                    "message/delivery-status",
                    "Final-Recipient: rfc822; x@y\r\nAction: failed\r\nStatus: 5.0.0\r\n",
                ),
                None,
            ),
            (
                report(
                    DSN,
                    "text/plain",
                    "Final-Recipient: rfc822; x@y\r\nAction: failed\r\nStatus: 5.0.0\r\n",
                ),
                None,
            ),
            (
                b"From: someone@example.net\r\nSubject: Out of office\r\n\r\nI am away.\r\n".to_vec(),
                None,
            ),
            (Vec::new(), None),
        ];
        for (i, (message, want)) in cases.into_iter().enumerate() {
            assert_eq!(parse_report(&message), want, "case {i}: {}", String::from_utf8_lossy(&message));
        }
    }

    #[test]
    fn names_and_replies() {
        let mut r = rcpt("a@forward.test", Action::Failed, "5.1.1");
        assert!(r.names("A@Forward.test"));
        assert_eq!(r.reply(), "bounced: 5.1.1");
        r.original_recipient = Some("a@dest.test".into());
        r.diagnostic = Some("smtp; 550 no".into());
        assert!(r.names("a@dest.test") && r.names("a@forward.test") && !r.names("b@dest.test"));
        assert_eq!(r.reply(), "bounced: 5.1.1 smtp; 550 no");
    }
}
