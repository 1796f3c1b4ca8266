//! Delivery status notifications (RFC 3464) for recipients that failed
//! or expired, sent to the submission's envelope sender with the null
//! sender, so a DSN can never cause another DSN. For a message submitted
//! with SMTPUTF8 the report uses RFC 6533's global types, which may carry
//! UTF-8 (and is itself sent with SMTPUTF8).

use crate::store::{Attempt, MessageRecord, RcptStatus};

/// Whether a finished message warrants a DSN.
pub fn wanted(record: &MessageRecord, enabled: bool) -> bool {
    enabled
        && !record.is_dsn
        && !record.mail_from.is_empty()
        && !record.mail_from.to_ascii_lowercase().starts_with("mailer-daemon@")
        && record.recipients.iter().any(|r| matches!(r.status, RcptStatus::Failed | RcptStatus::Expired))
}

/// The `Status:` code for a failed recipient: the enhanced code of the
/// last reply when it has one, 4.4.7 for expiry, else 5.0.0.
pub fn status_code(status: RcptStatus, last: Option<&Attempt>) -> String {
    if status == RcptStatus::Expired {
        return "4.4.7".into();
    }
    let from_reply = last.and_then(|a| a.reply.split_whitespace().nth(1)).filter(|c| {
        let parts: Vec<&str> = c.split('.').collect();
        parts.len() == 3 && parts[0] == "5" && parts.iter().all(|p| !p.is_empty() && p.chars().all(|ch| ch.is_ascii_digit()))
    });
    from_reply.unwrap_or("5.0.0").to_string()
}

/// The media types of a report's parts: (`report-type`, status part,
/// returned headers). RFC 6533 §6 for a message that used SMTPUTF8.
pub fn media_types(smtputf8: bool) -> (&'static str, &'static str, &'static str) {
    if smtputf8 {
        ("global-delivery-status", "message/global-delivery-status", "message/global-headers")
    } else {
        ("delivery-status", "message/delivery-status", "text/rfc822-headers")
    }
}

/// The address type of `Final-Recipient` (RFC 6533 §3: `utf-8` for a
/// non-ASCII address in a global report).
fn address_type(smtputf8: bool, address: &str) -> &'static str {
    if smtputf8 && !address.is_ascii() { "utf-8" } else { "rfc822" }
}

/// The DSN message: human part, machine-readable part, original headers.
pub fn build(record: &MessageRecord, original_headers: &[u8], hostname: &str, relay_domain: &str, now_secs: i64, dsn_id: &str) -> Vec<u8> {
    let date = mail_builder::headers::date::Date::new(now_secs).to_rfc822();
    let arrival = mail_builder::headers::date::Date::new(record.received_ms / 1000).to_rfc822();
    let boundary = format!("herald-dsn-{dsn_id}");
    let failed: Vec<_> = record.recipients.iter().filter(|r| matches!(r.status, RcptStatus::Failed | RcptStatus::Expired)).collect();
    let mut human = format!("This is the mail system at {hostname}.\r\n\r\nYour message {} could not be delivered to the following recipient(s):\r\n\r\n", record.id);
    let mut machine = format!("Reporting-MTA: dns; {hostname}\r\nX-Herald-Message-Id: {}\r\nArrival-Date: {arrival}\r\n", record.id);
    for r in &failed {
        let last = r.attempts.last();
        let reply = last.map(|a| a.reply.as_str()).unwrap_or("no attempt was possible");
        let why = if r.status == RcptStatus::Expired { "gave up: the queue lifetime ran out" } else { "refused permanently" };
        human.push_str(&format!("<{}>: {why}.\r\n    Last reply: {}\r\n\r\n", r.address, one_line(reply)));
        let kind = address_type(record.smtputf8, &r.address);
        machine.push_str(&format!("\r\nFinal-Recipient: {kind}; {}\r\nAction: failed\r\nStatus: {}\r\n", r.address, status_code(r.status, last)));
        if let Some(a) = last.filter(|a| !a.host.is_empty()) {
            let host = a.host.split_whitespace().next().unwrap_or(&a.host);
            machine.push_str(&format!("Remote-MTA: dns; {host}\r\n"));
        }
        machine.push_str(&format!("Diagnostic-Code: smtp; {}\r\n", one_line(reply)));
        if let Some(a) = last {
            machine.push_str(&format!("Last-Attempt-Date: {}\r\n", mail_builder::headers::date::Date::new(a.at_ms / 1000).to_rfc822()));
        }
    }
    let (report_type, status_type, headers_type) = media_types(record.smtputf8);
    let mut headers = original_headers.to_vec();
    if !headers.ends_with(b"\r\n") {
        headers.extend_from_slice(b"\r\n");
    }
    let mut m = format!(
        "From: Mail Delivery System <mailer-daemon@{relay_domain}>\r\nTo: <{to}>\r\nSubject: Undelivered Mail Returned to Sender\r\nDate: {date}\r\n\
         Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type={report_type}; boundary=\"{boundary}\"\r\n\r\n\
         --{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{human}--{boundary}\r\nContent-Type: {status_type}\r\n\r\n{machine}\r\n\
         --{boundary}\r\nContent-Type: {headers_type}\r\n\r\n",
        to = record.mail_from,
    )
    .into_bytes();
    m.extend_from_slice(&headers);
    m.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    m
}

fn one_line(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

/// The header section of a message (through the blank line, exclusive).
pub fn header_section(message: &[u8]) -> &[u8] {
    match memchr::memmem::find(message, b"\r\n\r\n") {
        Some(i) => &message[..i + 2],
        None => message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Outcome;

    fn attempt(reply: &str) -> Attempt {
        Attempt::new(0, "mx.example.net [127.0.0.1]:25".into(), Outcome::Permanent, reply.into())
    }

    #[test]
    fn status_codes() {
        let cases = [
            (RcptStatus::Failed, Some(attempt("550 5.1.1 no such user")), "5.1.1"),
            (RcptStatus::Failed, Some(attempt("550 no such user")), "5.0.0"),
            (RcptStatus::Failed, Some(attempt("554 4.4.4 odd")), "5.0.0"),
            (RcptStatus::Failed, None, "5.0.0"),
            (RcptStatus::Expired, Some(attempt("451 4.3.0 later")), "4.4.7"),
        ];
        for (status, last, want) in cases {
            assert_eq!(status_code(status, last.as_ref()), want);
        }
    }

    #[test]
    fn global_types_for_smtputf8() {
        assert_eq!(media_types(false), ("delivery-status", "message/delivery-status", "text/rfc822-headers"));
        assert_eq!(media_types(true), ("global-delivery-status", "message/global-delivery-status", "message/global-headers"));
        let cases = [(false, "a@b.c", "rfc822"), (true, "a@b.c", "rfc822"), (true, "jö@b.c", "utf-8"), (false, "jö@b.c", "rfc822")];
        for (smtputf8, address, want) in cases {
            assert_eq!(address_type(smtputf8, address), want, "{smtputf8} {address}");
        }
    }

    #[test]
    fn header_sections() {
        assert_eq!(header_section(b"A: b\r\nC: d\r\n\r\nbody"), b"A: b\r\nC: d\r\n");
        assert_eq!(header_section(b"A: b"), b"A: b");
    }
}
