//! Checks on the submitted message itself, made at the end of DATA, and
//! the trace header the relay adds. Pure functions over bytes.

mod from;
mod trace;

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

#[cfg(test)]
mod tests {
    use super::*;

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
