//! Which header fields a signature lists in `h=` (RFC 6376 §5.4).
//!
//! A signature breaks when a field it lists is added or changed on the way.
//! Listing a field the message does not have ("signing it as absent")
//! forbids adding it later; that protects `From` but breaks the signature
//! when an MTA legitimately adds the field (Postfix adds `Date` and
//! `Message-ID` for local clients, every hop adds `Received`, the final one
//! `Return-Path`). So: sign the fields of the recommended set that are
//! present; over-sign (list once more than present) only fields that no MTA
//! adds, so a second `From` or `Subject` cannot be slipped in; never list an
//! absent field an MTA may add.

/// RFC 6376 §5.4.1's recommended set, plus the fields herald's own mail
/// relies on (MIME structure, Message-ID, RFC 8058 one-click unsubscribe).
/// Signed when present.
pub const RECOMMENDED: &[&str] = &[
    "From",
    "Reply-To",
    "Subject",
    "Date",
    "To",
    "Cc",
    "Resent-Date",
    "Resent-From",
    "Resent-To",
    "Resent-Cc",
    "In-Reply-To",
    "References",
    "Message-ID",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "List-Id",
    "List-Help",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "List-Subscribe",
    "List-Post",
    "List-Owner",
    "List-Archive",
];

/// Fields no MTA adds on the way: listed once more than present (RFC 6376
/// §8.15), so another instance added after signing breaks the signature.
pub const OVERSIGNED: &[&str] = &["From", "Reply-To", "Subject", "To", "Cc"];

/// Fields an MTA may legitimately add; never listed unless present.
pub const MTA_ADDED: &[&str] = &["Date", "Message-ID", "Received", "Return-Path", "MIME-Version", "Content-Transfer-Encoding"];

/// The `h=` list for a message whose header fields are named `present`
/// (any case, repeats allowed), in the order mail-auth takes it: each name
/// once per listing; a name listed twice is over-signed.
pub fn choose<'a>(present: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let present: Vec<&str> = present.into_iter().collect();
    let has = |name: &str| present.iter().any(|p| p.trim().eq_ignore_ascii_case(name));
    let mut h = Vec::new();
    for name in RECOMMENDED {
        let oversign = OVERSIGNED.contains(name);
        if has(name) {
            h.push(name.to_string());
            if oversign {
                h.push(name.to_string());
            }
        } else if *name == "From" {
            // A message without From is refused at DATA; sign it absent
            // anyway rather than not at all.
            h.push(name.to_string());
        }
    }
    h
}

/// The names of the header fields in a message's header section, in order.
pub fn field_names(message: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    for line in message.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if matches!(line[0], b' ' | b'\t') {
            continue;
        }
        if let Some(colon) = line.iter().position(|&b| b == b':') {
            out.push(String::from_utf8_lossy(&line[..colon]).trim().to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chosen_headers() {
        let cases: &[(&[&str], &str)] = &[
            // What Python's EmailMessage sends: no Date, no Message-ID.
            (&["From", "To", "Subject", "Content-Type"], "From:From:Subject:Subject:To:To:Content-Type"),
            (
                &["Received", "Message-ID", "Date", "From", "to", "Subject", "MIME-Version"],
                "From:From:Subject:Subject:Date:To:To:Message-ID:MIME-Version",
            ),
            (&["From", "Reply-To", "Cc", "X-Herald-Ref", "List-Unsubscribe", "List-Unsubscribe-Post"], "From:From:Reply-To:Reply-To:Cc:Cc:List-Unsubscribe:List-Unsubscribe-Post"),
            (&["Subject"], "From:Subject:Subject"),
        ];
        for (present, want) in cases {
            let got = choose(present.iter().copied()).join(":");
            assert_eq!(got, *want, "{present:?}");
        }
    }

    #[test]
    fn never_lists_an_absent_field_an_mta_adds() {
        let h = choose(["From", "To", "Subject"]);
        for name in MTA_ADDED {
            assert!(!h.iter().any(|x| x.eq_ignore_ascii_case(name)), "{name} listed while absent: {h:?}");
        }
    }

    #[test]
    fn names_of_fields() {
        let m = b"Received: a\r\n\tb\r\nFrom: x\r\nsubject : y\r\n\r\nTo: body\r\n";
        assert_eq!(field_names(m), vec!["Received", "From", "subject"]);
        assert_eq!(field_names(b"A: b\nC: d\n\nE: f"), vec!["A", "C"]);
    }
}
