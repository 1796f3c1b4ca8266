//! Whether a transaction goes out with `SMTPUTF8` (RFC 6531).
//!
//! A message submitted with `SMTPUTF8` is relayed with it when the
//! receiver offers it. When the receiver does not, a message that needs
//! it (a non-ASCII address or header) cannot be sent as it is (RFC 6531
//! §3.4): that is a permanent failure, reported with a DSN, and nothing is
//! sent. An all-ASCII message never needs it.

use crate::store::Outcome;

/// How MAIL FROM is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Utf8Mode {
    /// No `SMTPUTF8` parameter.
    Plain,
    /// `MAIL FROM:<…> SMTPUTF8`.
    SmtpUtf8,
    /// Not sent: the outcome and reply text for every recipient.
    Refuse(Outcome, String),
}

/// Decides for one transaction. `submitted` is whether the submission
/// used `SMTPUTF8`, `offered` whether the receiver's EHLO lists it.
pub fn mode(submitted: bool, from: &str, rcpts: &[&str], chunks: &[&[u8]], offered: bool) -> Utf8Mode {
    let needs = !from.is_ascii() || rcpts.iter().any(|r| !r.is_ascii()) || !headers_ascii(chunks);
    match (offered, submitted || needs) {
        (true, true) => Utf8Mode::SmtpUtf8,
        (_, false) => Utf8Mode::Plain,
        (false, true) if needs => Utf8Mode::Refuse(
            Outcome::Permanent,
            "550 5.6.7 the receiving server does not offer SMTPUTF8, which this message needs \
             (UTF-8 in an address or a header; RFC 6531 3.4); not sent"
                .into(),
        ),
        (false, true) => Utf8Mode::Plain,
    }
}

/// Whether the header section (up to the first empty line) is ASCII.
fn headers_ascii(chunks: &[&[u8]]) -> bool {
    let mut previous_end_lf = true;
    for chunk in chunks {
        for line in chunk.split_inclusive(|&b| b == b'\n') {
            if previous_end_lf && (line == b"\r\n" || line == b"\n") {
                return true;
            }
            if !line.is_ascii() {
                return false;
            }
            previous_end_lf = line.ends_with(b"\n");
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes() {
        let ascii: &[&[u8]] = &[b"DKIM-Signature: x\r\n", b"From: a@b.c\r\nSubject: hi\r\n\r\nbody \xc3\xa9\r\n"];
        let utf8_header: &[&[u8]] = &[b"DKIM-Signature: x\r\n", b"From: a@b.c\r\nSubject: caf\xc3\xa9\r\n\r\nbody\r\n"];
        let refused = |m: &Utf8Mode| matches!(m, Utf8Mode::Refuse(Outcome::Permanent, t) if t.starts_with("550 5.6.7 "));
        assert_eq!(mode(true, "a@b.c", &["x@y.z"], utf8_header, true), Utf8Mode::SmtpUtf8);
        assert_eq!(mode(true, "a@b.c", &["x@y.z"], ascii, true), Utf8Mode::SmtpUtf8, "relayed as submitted");
        assert_eq!(mode(false, "a@b.c", &["x@y.z"], ascii, true), Utf8Mode::Plain);
        assert_eq!(mode(false, "a@b.c", &["x@y.z"], ascii, false), Utf8Mode::Plain);
        assert_eq!(mode(true, "a@b.c", &["x@y.z"], ascii, false), Utf8Mode::Plain, "an ASCII message needs no SMTPUTF8");
        assert!(refused(&mode(true, "a@b.c", &["x@y.z"], utf8_header, false)));
        assert!(refused(&mode(true, "a@b.c", &["jö@y.z"], ascii, false)));
        assert_eq!(mode(false, "a@b.c", &["jö@y.z"], ascii, true), Utf8Mode::SmtpUtf8);
    }

    #[test]
    fn header_sections() {
        let cases: &[(&[&[u8]], bool)] = &[
            (&[b"A: b\r\n\r\n\xc3\xa9"], true),
            (&[b"A: \xc3\xa9\r\n\r\n"], false),
            (&[b"A: b\r\n", b"\r\nbody \xc3\xa9"], true),
            (&[b"A: b\r\n", b"C: \xc3\xa9\r\n\r\n"], false),
            (&[b""], true),
        ];
        for (chunks, want) in cases {
            assert_eq!(headers_ascii(chunks), *want, "{chunks:?}");
        }
    }
}
