//! The admin API's query strings (`application/x-www-form-urlencoded`):
//! one decoder, read strictly where a bad escape must be refused (search)
//! and leniently where it is taken as text (inspect, events).

/// `+` as a space and `%XX` as a byte; a `%` without two hex digits after
/// it stays as it is. The flag says whether every escape was well formed.
fn decode(text: &str) -> (Vec<u8>, bool) {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut clean = true;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match bytes.get(i + 1..i + 3).filter(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                Some(hex) => {
                    // Two ASCII hex digits: always a byte.
                    out.push(u8::from_str_radix(std::str::from_utf8(hex).unwrap_or("0"), 16).unwrap_or(0));
                    i += 2;
                }
                None => {
                    clean = false;
                    out.push(b'%');
                }
            },
            b => out.push(b),
        }
        i += 1;
    }
    (out, clean)
}

/// Decodes `text`; `None` for a malformed escape or bytes that are not UTF-8.
pub fn percent_decode_strict(text: &str) -> Option<String> {
    let (bytes, clean) = decode(text);
    clean.then(|| String::from_utf8(bytes).ok()).flatten()
}

/// Decodes `text`, keeping a malformed escape as written and replacing
/// bytes that are not UTF-8.
pub fn percent_decode(text: &str) -> String {
    String::from_utf8_lossy(&decode(text).0).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_and_lenient() {
        let cases = [
            ("a%40b.c", Some("a@b.c"), "a@b.c"),
            ("x+y", Some("x y"), "x y"),
            ("100%", None, "100%"),
            ("%4", None, "%4"),
            ("%zz", None, "%zz"),
            ("%FF", None, "\u{fffd}"),
            ("%C3%A9", Some("é"), "é"),
            ("", Some(""), ""),
        ];
        for (input, strict, lenient) in cases {
            assert_eq!(percent_decode_strict(input).as_deref(), strict, "{input}");
            assert_eq!(percent_decode(input), lenient, "{input}");
        }
    }
}
