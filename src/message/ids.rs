//! The two handles a billing app knows a message by besides the relay id:
//! its `Message-ID` and the app's own reference header (`X-Herald-Ref`),
//! read once at acceptance so a message can be found by them after its
//! body is gone (finished messages keep only their record).

use super::field_ranges;

/// The billing app's reference header (DESIGN "Per-message policy" 5).
pub const REFERENCE_HEADER: &str = "X-Herald-Ref";

/// Longest value kept; a header is not a place for a novel.
const MAX_VALUE: usize = 998;

/// The unfolded, trimmed value of the first `name` field in the header
/// section; `None` when absent or empty. Invalid UTF-8 is replaced.
pub fn header_value(message: &[u8], name: &str) -> Option<String> {
    let &(start, end) = field_ranges(message, name).first()?;
    let field = String::from_utf8_lossy(&message[start..end]);
    let (_, value) = field.split_once(':')?;
    let unfolded: String = value.split(['\r', '\n']).map(str::trim).filter(|s| !s.is_empty()).collect::<Vec<_>>().join(" ");
    let value: String = unfolded.chars().take(MAX_VALUE).collect();
    (!value.is_empty()).then_some(value)
}

/// The message's Message-ID as it will be sent: the submitted one, or the
/// one the relay adds (see [`super::missing_fields`]).
pub fn message_id(message: &[u8], relay_id: &str, hostname: &str) -> String {
    header_value(message, "Message-ID").unwrap_or_else(|| format!("<{relay_id}@{hostname}>"))
}

/// The app's reference, when the message carries one.
pub fn reference(message: &[u8]) -> Option<String> {
    header_value(message, REFERENCE_HEADER)
}

/// A Message-ID as typed by a person, for comparison: without angle
/// brackets and surrounding blanks, lowercase.
pub fn normalize_message_id(text: &str) -> String {
    text.trim().trim_start_matches('<').trim_end_matches('>').trim().to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_unfolded_and_trimmed() {
        let m = b"From: a@b.c\r\nMessage-ID:\r\n  <x@y>\r\nX-Herald-Ref:  inv-42 \r\nx-herald-ref: second\r\n\r\nX-Herald-Ref: body\r\n";
        assert_eq!(header_value(m, "message-id").as_deref(), Some("<x@y>"));
        assert_eq!(reference(m).as_deref(), Some("inv-42"));
        assert_eq!(message_id(m, "01jd5x3q8k2m7n4p", "relay.test"), "<x@y>");
        let bare = b"From: a@b.c\r\nX-Herald-Ref:\r\n\r\nX-Herald-Ref: body\r\n";
        assert_eq!(reference(bare), None);
        assert_eq!(message_id(bare, "01jd5x3q8k2m7n4p", "relay.test"), "<01jd5x3q8k2m7n4p@relay.test>");
    }

    #[test]
    fn typed_message_ids_compare_loosely() {
        for typed in ["<Inv42@Acme>", " inv42@acme ", "<inv42@acme"] {
            assert_eq!(normalize_message_id(typed), "inv42@acme", "{typed}");
        }
    }
}
