//! Checks on the submitted message itself, made at the end of DATA, and
//! the trace header the relay adds. Pure functions over bytes.

mod fields;
mod address;
mod fill;
mod from;
mod lines;
mod trace;

pub use fields::{field_value, take_field};
pub use address::{Domain, Mailbox, parse_mailbox};
pub use fill::missing_fields;
pub use lines::{MAX_LINE, long_line, normalize_bare_lf};
pub use from::{FromError, FromHeader, check_from};
pub use trace::received_header;

/// A byte sequence a message may not contain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forbidden {
    /// A LF not preceded by CR.
    BareLf,
    /// A CR not followed by LF.
    BareCr,
    /// A NUL byte (RFC 5322 §3.5 forbids it; some receivers end lines on it).
    Nul,
}

impl Forbidden {
    pub fn describe(self) -> &'static str {
        match self {
            Forbidden::BareLf => "a bare LF",
            Forbidden::BareCr => "a bare CR",
            Forbidden::Nul => "a NUL byte",
        }
    }
}

/// Finds a bare CR, bare LF or NUL anywhere in `data` (the message after
/// dot-unstuffing, without the final CRLF.CRLF). Accepting such bytes and
/// passing them on is what makes SMTP smuggling possible: a receiver that
/// treats `\n.\n` as end of data would see a second message.
pub fn find_forbidden(data: &[u8]) -> Option<Forbidden> {
    let mut pos = 0;
    while let Some(off) = memchr::memchr3(b'\r', b'\n', 0, &data[pos..]) {
        let i = pos + off;
        match data[i] {
            b'\n' => return Some(Forbidden::BareLf),
            0 => return Some(Forbidden::Nul),
            _ if data.get(i + 1) != Some(&b'\n') => return Some(Forbidden::BareCr),
            _ => pos = i + 2,
        }
    }
    None
}

/// Byte ranges of every field named `name` in the header section (name
/// through the CRLF ending its last continuation line), in order.
pub fn field_ranges(message: &[u8], name: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut pos = 0;
    let mut current: Option<usize> = None;
    while pos < message.len() {
        let end = memchr::memchr(b'\n', &message[pos..]).map(|i| pos + i + 1).unwrap_or(message.len());
        let line = &message[pos..end];
        let folded = matches!(line.first(), Some(b' ' | b'\t'));
        if !folded {
            if let Some(start) = current.take() {
                out.push((start, pos));
            }
            if line == b"\r\n" || line == b"\n" {
                break; // end of the header section
            }
            let is_match = line.len() > name.len() && line[..name.len()].eq_ignore_ascii_case(name.as_bytes()) && matches!(line[name.len()], b':' | b' ' | b'\t');
            if is_match && line[name.len()..].iter().find(|&&b| b != b' ' && b != b'\t') == Some(&b':') {
                current = Some(pos);
            }
        }
        pos = end;
    }
    if let Some(start) = current {
        out.push((start, pos));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_ranges_cover_folded_lines() {
        let m = b"Received: x\r\nFrom: A\r\n <a@b.c>\r\nfrom : b\r\nX-From: no\r\nSubject: s\r\n\r\nFrom: body\r\n";
        let r = field_ranges(m, "From");
        assert_eq!(r.len(), 2);
        assert_eq!(&m[r[0].0..r[0].1], b"From: A\r\n <a@b.c>\r\n");
        assert_eq!(&m[r[1].0..r[1].1], b"from : b\r\n");
        assert!(field_ranges(m, "Reply-To").is_empty());
        assert_eq!(field_ranges(b"Subject: only", "subject"), vec![(0, 13)]);
    }

    #[test]
    fn forbidden_bytes() {
        let cases: &[(&[u8], Option<Forbidden>)] = &[
            (b"a\r\nb\r\n", None),
            (b"", None),
            (b"a\nb", Some(Forbidden::BareLf)),
            (b"a\rb", Some(Forbidden::BareCr)),
            (b"a\r\n\n", Some(Forbidden::BareLf)),
            (b"a\r\r\n", Some(Forbidden::BareCr)),
            (b"a\r", Some(Forbidden::BareCr)),
            (b"\n.\n", Some(Forbidden::BareLf)),
            (b"x\r\n.\r", Some(Forbidden::BareCr)),
            (b"x\r\n\x00.\r\n", Some(Forbidden::Nul)),
        ];
        for (data, want) in cases {
            assert_eq!(find_forbidden(data), *want, "{:?}", String::from_utf8_lossy(data));
        }
    }
}
