//! The end of DATA, exactly as RFC 5321 §4.1.1.4 says: `<CRLF>.<CRLF>`
//! and nothing else.
//!
//! smtp-proto's `DataReceiver` does the dot-unstuffing, but after a line
//! that starts with a dot it also ends on `CR CR … LF` (`\r\n.\r\r\n`).
//! A relay must not end DATA anywhere a downstream server would not, so a
//! false end is detected here (the body then ends in a CR, not CRLF) and
//! reading goes on; the message, which now holds a bare CR, is refused.

use smtp_proto::request::receiver::DataReceiver;

pub struct DataReader {
    rx: DataReceiver,
}

impl DataReader {
    pub fn new() -> Self {
        // The receiver recognises a dot only after CRLF; the CRLF ending the
        // DATA command line counts, so an empty message (".") ends at once.
        let mut rx = DataReceiver::new();
        rx.ingest(&mut b"\r\n".iter(), &mut Vec::new());
        Self { rx }
    }

    /// Feeds bytes; `true` once `<CRLF>.<CRLF>` has been read. The message
    /// (dot-unstuffed, without the final `.CRLF`) is appended to `body`;
    /// bytes after the end stay in `bytes`.
    pub fn ingest(&mut self, bytes: &mut std::slice::Iter<'_, u8>, body: &mut Vec<u8>) -> bool {
        loop {
            if !self.rx.ingest(bytes, body) {
                return false;
            }
            if body.is_empty() || body.ends_with(b"\r\n") {
                return true;
            }
            // `.` then CR…CR LF: the receiver dropped one CR; restore it and
            // the LF it swallowed, and carry on as inside a line's end.
            body.extend_from_slice(b"\r\n");
            *self = Self::new();
        }
    }
}

impl Default for DataReader {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in chunks of every size; returns (ended, body, rest).
    fn feed(input: &[u8]) -> Vec<(bool, Vec<u8>, Vec<u8>)> {
        (1..=input.len().max(1))
            .map(|chunk| {
                let mut r = DataReader::new();
                let mut body = Vec::new();
                let mut rest = Vec::new();
                let mut ended = false;
                for part in input.chunks(chunk) {
                    let mut it = part.iter();
                    if !ended && r.ingest(&mut it, &mut body) {
                        ended = true;
                    }
                    if ended {
                        rest.extend(it);
                    }
                }
                (ended, body, rest)
            })
            .collect()
    }

    #[test]
    fn ends_only_at_crlf_dot_crlf() {
        let cases: &[(&[u8], bool, &[u8], &[u8])] = &[
            (b"a\r\n.\r\nNOOP\r\n", true, b"a\r\n", b"NOOP\r\n"),
            (b".\r\n", true, b"", b""),
            (b"..x\r\n.\r\n", true, b".x\r\n", b""),
            (b"a\r\n..\r\n.\r\n", true, b"a\r\n.\r\n", b""),
            (b"a\n.\nMAIL\r\n", false, b"", b""),
            (b"a\n.\r\nMAIL\r\n", false, b"", b""),
            (b"a\r.\rMAIL\r\n", false, b"", b""),
            (b"a\r\n.\rMAIL\r\n", false, b"", b""),
            (b"a\r\n\x00.\r\nMAIL\r\n", false, b"", b""),
            (b"a\r\n.\r\r\nMAIL\r\n", false, b"", b""),
            (b"a\r\n.\r\r\nMAIL\r\n.\r\n", true, b"a\r\n\r\r\nMAIL\r\n", b""),
        ];
        for &(input, want_end, want_body, want_rest) in cases {
            for (ended, body, rest) in feed(input) {
                assert_eq!(ended, want_end, "{:?}", String::from_utf8_lossy(input));
                if want_end {
                    assert_eq!(body, want_body, "{:?}", String::from_utf8_lossy(input));
                    assert_eq!(rest, want_rest, "{:?}", String::from_utf8_lossy(input));
                }
            }
        }
    }
}
