//! SMTP replies as values. Handlers build a [`Reply`]; only
//! [`Reply::write_to`] turns one into bytes.

use std::borrow::Cow;

/// One SMTP reply: code, enhanced status (RFC 3463) and text lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    /// Enhanced status code; `None` for the greeting and EHLO/HELO
    /// replies, which RFC 2034 leaves without one.
    pub status: Option<[u8; 3]>,
    pub lines: Vec<Cow<'static, str>>,
    /// Bytes written as they are, instead of the above: the test sink's
    /// canned and scripted replies (a fault script may want a malformed
    /// one). herald's own servers never use it.
    pub raw: Option<Cow<'static, [u8]>>,
}

impl Reply {
    /// A one-line reply with an enhanced status code.
    pub fn new(code: u16, status: [u8; 3], text: impl Into<Cow<'static, str>>) -> Self {
        Self { code, status: Some(status), lines: vec![text.into()], raw: None }
    }

    /// A reply without an enhanced status code.
    pub fn plain(code: u16, text: impl Into<Cow<'static, str>>) -> Self {
        Self { code, status: None, lines: vec![text.into()], raw: None }
    }

    /// A reply sent byte for byte (`bytes` ends with CRLF); its code is
    /// read from the first three digits, 0 when there are none.
    pub fn raw(bytes: impl Into<Cow<'static, [u8]>>) -> Self {
        let bytes = bytes.into();
        let code = std::str::from_utf8(bytes.get(..3).unwrap_or_default()).ok().and_then(|c| c.parse().ok()).unwrap_or(0);
        Self { code, status: None, lines: Vec::new(), raw: Some(bytes) }
    }

    pub fn is_positive(&self) -> bool {
        self.code < 400
    }

    /// Appends the wire form to `out`. Line breaks in texts become
    /// continuation lines, so no text can end a reply early.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        if let Some(raw) = &self.raw {
            out.extend_from_slice(raw);
            return;
        }
        let lines: Vec<&str> = self.lines.iter().flat_map(|l| l.split(['\r', '\n'])).filter(|l| !l.is_empty()).collect();
        let lines = if lines.is_empty() { vec![""] } else { lines };
        let last = lines.len() - 1;
        for (i, line) in lines.iter().enumerate() {
            let sep = if i == last { ' ' } else { '-' };
            out.extend_from_slice(format!("{}{sep}", self.code).as_bytes());
            if let Some([a, b, c]) = self.status {
                out.extend_from_slice(format!("{a}.{b}.{c} ").as_bytes());
            }
            out.extend_from_slice(line.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
}

/// Replies used from more than one place.
pub mod common {
    use super::Reply;

    pub fn bad_sequence(text: &'static str) -> Reply {
        Reply::new(503, [5, 5, 1], text)
    }

    pub fn syntax(text: impl Into<std::borrow::Cow<'static, str>>) -> Reply {
        Reply::new(501, [5, 5, 4], text)
    }

    /// The reply to a command smtp-proto could not parse.
    pub fn parse_error(e: smtp_proto::Error) -> Reply {
        use smtp_proto::Error as E;
        match e {
            E::UnknownCommand => Reply::new(500, [5, 5, 1], "Command unrecognized"),
            E::InvalidSenderAddress => Reply::new(501, [5, 1, 7], "Bad sender address syntax"),
            E::InvalidRecipientAddress => Reply::new(501, [5, 1, 3], "Bad recipient address syntax"),
            E::SyntaxError { syntax: expected } => syntax(format!("Syntax: {expected}")),
            E::InvalidParameter { param } => syntax(format!("Invalid parameter {param}")),
            E::UnsupportedParameter { param } => Reply::new(555, [5, 5, 4], format!("Unsupported parameter {param}")),
            E::ResponseTooLong => Reply::new(500, [5, 5, 2], "Line too long"),
            E::NeedsMoreData { .. } | E::InvalidResponse { .. } => Reply::new(500, [5, 5, 2], "Syntax error"),
        }
    }

    /// The reply to HELO (`esmtp` false) or EHLO, with the extensions every
    /// herald server offers; callers append their own (STARTTLS, AUTH).
    pub fn hello(ours: &str, theirs: &str, esmtp: bool, max_message_size: usize) -> Reply {
        if !esmtp {
            return Reply::plain(250, ours.to_string());
        }
        let lines = vec![
            format!("{ours} greets {theirs}").into(),
            "PIPELINING".into(),
            format!("SIZE {max_message_size}").into(),
            "8BITMIME".into(),
            "ENHANCEDSTATUSCODES".into(),
            "SMTPUTF8".into(),
        ];
        Reply { code: 250, status: None, lines, raw: None }
    }

    /// The data directory is below `store.min_free_mb`: try later.
    pub fn disk_full() -> Reply {
        Reply::new(452, [4, 3, 1], "Insufficient system storage: the relay's disk is nearly full; try again later")
    }

    pub fn local_error() -> Reply {
        Reply::new(451, [4, 3, 0], "Local error in processing; nothing was queued, please try again later")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_forms() {
        let cases = [
            (Reply::new(250, [2, 0, 0], "Ok"), "250 2.0.0 Ok\r\n"),
            (Reply::plain(220, "relay ESMTP"), "220 relay ESMTP\r\n"),
            (Reply::new(550, [5, 6, 0], "a\r\nb"), "550-5.6.0 a\r\n550 5.6.0 b\r\n"),
            (Reply { code: 250, status: None, lines: vec!["host".into(), "SIZE 10".into()], raw: None }, "250-host\r\n250 SIZE 10\r\n"),
            (Reply::raw(&b"451 4.3.0 later\r\n"[..]), "451 4.3.0 later\r\n"),
        ];
        for (reply, want) in cases {
            let mut out = Vec::new();
            reply.write_to(&mut out);
            assert_eq!(String::from_utf8(out).unwrap(), want);
        }
    }
}
