//! Line endings and line lengths of a submitted message (after DATA's
//! dot-unstuffing, before anything else looks at it).
//!
//! Bare LF: by default read as CRLF, as Postfix ≥ 3.9's
//! `smtpd_forbid_bare_newline = normalize` does. DATA still ends only at
//! `<CRLF>.<CRLF>` (see `smtpd::dot`), so a `\n.\n` inside a message
//! is content — a line holding a dot — and never a second message: SMTP
//! smuggling stays impossible. Bare CR and NUL are refused either way.
//!
//! Line length: RFC 5322 §2.1.1 allows 998 characters plus CRLF; longer
//! lines are refused by receivers (`500 Line too long`), so herald refuses
//! them at once instead of bouncing days later.

/// The longest line RFC 5322 §2.1.1 allows, CRLF excluded.
pub const MAX_LINE: usize = 998;

/// Rewrites every LF not preceded by CR as CRLF. A line that started
/// after a bare LF was not dot-unstuffed by the DATA reader (it unstuffs
/// only after CRLF), so its leading dot is removed here when other
/// characters follow it (RFC 5321 §4.5.2). A line of a single dot stays:
/// it is content here, and delivery dot-stuffs it again.
pub fn normalize_bare_lf(data: Vec<u8>) -> Vec<u8> {
    if !has_bare_lf(&data) {
        return data;
    }
    let mut out = Vec::with_capacity(data.len() + data.len() / 32);
    let mut i = 0;
    while i < data.len() {
        let b = data[i];
        if b == b'\n' && (i == 0 || data[i - 1] != b'\r') {
            out.extend_from_slice(b"\r\n");
            let lone_dot = matches!(data.get(i + 2), None | Some(b'\r' | b'\n'));
            if data.get(i + 1) == Some(&b'.') && !lone_dot {
                i += 1; // dot-unstuff the line that follows
            }
        } else {
            out.push(b);
        }
        i += 1;
    }
    out
}

fn has_bare_lf(data: &[u8]) -> bool {
    memchr::memchr_iter(b'\n', data).any(|i| i == 0 || data[i - 1] != b'\r')
}

/// The first line longer than [`MAX_LINE`] bytes: (1-based line number,
/// its length without the line ending).
pub fn long_line(data: &[u8]) -> Option<(usize, usize)> {
    let mut start = 0;
    let mut number = 1;
    loop {
        let end = memchr::memchr(b'\n', &data[start..]).map(|i| start + i);
        let line_end = end.unwrap_or(data.len());
        let content = if line_end > start && data[line_end - 1] == b'\r' && end.is_some() { line_end - 1 } else { line_end };
        let len = content - start;
        if len > MAX_LINE {
            return Some((number, len));
        }
        match end {
            Some(e) => {
                start = e + 1;
                number += 1;
            }
            None => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_lf_becomes_crlf() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"a\r\nb\r\n", b"a\r\nb\r\n"),
            (b"a\nb\n", b"a\r\nb\r\n"),
            (b"a\r\nb\nc\r\n", b"a\r\nb\r\nc\r\n"),
            (b"\n", b"\r\n"),
            // A smuggled end of data is content: a line holding one dot.
            (b"a\n.\nMAIL FROM:<x@y>\n", b"a\r\n.\r\nMAIL FROM:<x@y>\r\n"),
            (b"a\n.", b"a\r\n."),
            (b"a\n..\nb\n", b"a\r\n.\r\nb\r\n"),
            (b"a\n..x\n", b"a\r\n.x\r\n"),
            // Bare CR stays, to be refused.
            (b"a\rb\n", b"a\rb\r\n"),
            (b"", b""),
        ];
        for (input, want) in cases {
            assert_eq!(normalize_bare_lf(input.to_vec()), *want, "{:?}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn long_lines() {
        let line = |n: usize| "x".repeat(n);
        let cases: Vec<(String, Option<(usize, usize)>)> = vec![
            (format!("{}\r\n", line(998)), None),
            (format!("{}\r\n", line(999)), Some((1, 999))),
            (format!("a\r\nb\r\n{}\r\nc\r\n", line(1200)), Some((3, 1200))),
            (line(999), Some((1, 999))),
            (line(998), None),
            (String::new(), None),
            (format!("h: {}\r\n\r\nbody\r\n", line(100_000)), Some((1, 100_003))),
        ];
        for (data, want) in cases {
            assert_eq!(long_line(data.as_bytes()), want, "{}", data.len());
        }
    }
}
