//! The fields a submission server adds when the message lacks them
//! (RFC 6409 §8.2 Message-ID, §8.3 Date), before anything is signed: a
//! signature made without them would be broken by the first MTA on the way
//! that adds them (Postfix does, for local clients).

use super::field_ranges;

/// `Date:` and `Message-ID:` fields for whichever of the two `message`
/// lacks, CRLF-ended (empty when it has both). `time_secs` is the
/// acceptance time; the Message-ID is the relay id at the relay's host.
pub fn missing_fields(message: &[u8], relay_id: &str, hostname: &str, time_secs: i64) -> String {
    let mut out = String::new();
    if field_ranges(message, "Date").is_empty() {
        let date = mail_builder::headers::date::Date::new(time_secs).to_rfc822();
        out.push_str(&format!("Date: {date}\r\n"));
    }
    if field_ranges(message, "Message-ID").is_empty() {
        out.push_str(&format!("Message-ID: <{relay_id}@{hostname}>\r\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_only_what_is_missing() {
        let cases: &[(&str, bool, bool)] = &[
            ("From: a@b.c\r\nSubject: s\r\n\r\nbody\r\n", true, true),
            ("From: a@b.c\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n\r\nbody\r\n", false, true),
            ("From: a@b.c\r\nmessage-id: <x@y>\r\n\r\nbody\r\n", true, false),
            ("Date: x\r\nMessage-ID: <x@y>\r\n\r\n", false, false),
            // A Date in the body is not a Date field.
            ("From: a@b.c\r\n\r\nDate: x\r\nMessage-ID: <x@y>\r\n", true, true),
        ];
        for (message, date, mid) in cases {
            let got = missing_fields(message.as_bytes(), "01jd5x3q8k2m7n4p", "relay.test", 0);
            assert_eq!(got.contains("Date: Thu, 1 Jan 1970 00:00:00 +0000\r\n"), *date, "{message:?} → {got:?}");
            assert_eq!(got.contains("Message-ID: <01jd5x3q8k2m7n4p@relay.test>\r\n"), *mid, "{message:?} → {got:?}");
            assert_eq!(got.matches("\r\n").count(), usize::from(*date) + usize::from(*mid));
        }
    }
}
