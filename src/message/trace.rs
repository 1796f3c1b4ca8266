//! The Received trace header (RFC 5321 §4.4) the relay prepends.

/// Formats the Received header for a submission, CRLF-terminated and
/// folded. `time_secs` is the acceptance time.
#[allow(clippy::too_many_arguments)]
pub fn received_header(helo: &str, client_ip: &str, by: &str, tls: bool, authenticated: bool, id: &str, rcpt: Option<&str>, time_secs: i64) -> String {
    // RFC 3848 protocol names: ESMTP + S (TLS) + A (authenticated).
    let with = match (tls, authenticated) {
        (true, true) => "ESMTPSA",
        (true, false) => "ESMTPS",
        (false, true) => "ESMTPA",
        (false, false) => "ESMTP",
    };
    let helo: String = helo.chars().filter(|c| c.is_ascii_graphic()).take(255).collect();
    let date = mail_builder::headers::date::Date::new(time_secs).to_rfc822();
    let mut h = format!("Received: from {helo} ([{client_ip}])\r\n\tby {by} (herald) with {with} id {id}");
    if let Some(r) = rcpt {
        h.push_str(&format!("\r\n\tfor <{r}>"));
    }
    h.push_str(&format!(";\r\n\t{date}\r\n"));
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn received_shapes() {
        let h = received_header("app.example", "127.0.0.1", "relay.example.net", true, true, "01jd5x3q8k2m7n4p", Some("a@b.example"), 0);
        assert!(h.starts_with("Received: from app.example ([127.0.0.1])\r\n\tby relay.example.net (herald) with ESMTPSA id 01jd5x3q8k2m7n4p\r\n\tfor <a@b.example>;\r\n\t"), "{h}");
        assert!(h.ends_with("1970 00:00:00 +0000\r\n"), "{h}");
        let h = received_header("bad\r\nInjected: yes", "::1", "r", false, false, "x", None, 0);
        assert!(h.contains("from badInjected:yes ([::1])"), "{h}");
        assert!(h.contains("with ESMTP id x;"), "{h}");
    }
}
