//! Reading and taking out single header fields: the billing app's
//! reference header (recorded, then removed before signing, so it never
//! leaves the relay) and the Message-ID (carried by events).

use super::field_ranges;

/// Longest reference kept; the rest is cut (it is the app's own key, not
/// a place for documents).
const MAX_VALUE: usize = 256;

/// The unfolded, trimmed value of the first `name:` field, cut to
/// [`MAX_VALUE`] characters.
pub fn field_value(message: &[u8], name: &str) -> Option<String> {
    let (start, end) = *field_ranges(message, name).first()?;
    let field = String::from_utf8_lossy(&message[start..end]);
    let value = field.split_once(':').map(|(_, v)| v)?.replace("\r\n", "").replace('\n', "");
    let value: String = value.trim().chars().take(MAX_VALUE).collect();
    (!value.is_empty()).then_some(value)
}

/// Takes every `name:` field out of the header section; returns the
/// message without them and the first one's value.
pub fn take_field(message: Vec<u8>, name: &str) -> (Vec<u8>, Option<String>) {
    let ranges = field_ranges(&message, name);
    if ranges.is_empty() {
        return (message, None);
    }
    let value = field_value(&message, name);
    let mut out = Vec::with_capacity(message.len());
    let mut pos = 0;
    for (start, end) in ranges {
        out.extend_from_slice(&message[pos..start]);
        pos = end;
    }
    out.extend_from_slice(&message[pos..]);
    (out, value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_the_reference_out() {
        let cases: &[(&str, &str, Option<&str>)] = &[
            ("From: a@b.c\r\nX-Herald-Ref: inv-42\r\nSubject: s\r\n\r\nX-Herald-Ref: body\r\n", "From: a@b.c\r\nSubject: s\r\n\r\nX-Herald-Ref: body\r\n", Some("inv-42")),
            ("x-herald-ref:  folded\r\n value\r\nFrom: a@b.c\r\n\r\nb\r\n", "From: a@b.c\r\n\r\nb\r\n", Some("folded value")),
            ("X-Herald-Ref: one\r\nX-Herald-Ref: two\r\n\r\n", "\r\n", Some("one")),
            ("From: a@b.c\r\n\r\nbody\r\n", "From: a@b.c\r\n\r\nbody\r\n", None),
            ("X-Herald-Ref:\r\nFrom: a\r\n\r\n", "From: a\r\n\r\n", None),
        ];
        for (message, want, value) in cases {
            let (out, got) = take_field(message.as_bytes().to_vec(), "X-Herald-Ref");
            assert_eq!((String::from_utf8(out).unwrap().as_str(), got.as_deref()), (*want, *value), "{message:?}");
        }
        let long = format!("X-Herald-Ref: {}\r\n\r\n", "x".repeat(1000));
        assert_eq!(field_value(long.as_bytes(), "X-Herald-Ref").unwrap().len(), 256);
        assert_eq!(field_value(b"Message-ID: <a@b>\r\n\r\n", "message-id").as_deref(), Some("<a@b>"));
    }
}
