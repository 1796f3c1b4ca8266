//! Mailbox syntax, from the grammar of RFC 5321 §4.1.2 (with RFC 6531's
//! UTF-8 extension, since SMTPUTF8 is offered), which is also a valid
//! RFC 5322 §3.4.1 `addr-spec`:
//!
//! ```text
//! Mailbox        = Local-part "@" ( Domain / address-literal )
//! Local-part     = Dot-string / Quoted-string      ; at most 64 octets
//! Dot-string     = Atom *("." Atom)
//! Quoted-string  = DQUOTE *QcontentSMTP DQUOTE
//! QcontentSMTP   = qtextSMTP / quoted-pairSMTP     ; %d32-33 / %d35-91 / %d93-126
//! quoted-pairSMTP = %d92 %d32-126                  ; backslash, then any printable
//! Domain         = sub-domain *("." sub-domain)    ; at most 255 octets
//! sub-domain     = Let-dig [Ldh-str]
//! address-literal = "[" ( IPv4-address-literal / "IPv6:" IPv6-addr ) "]"
//! ```

use std::net::{Ipv4Addr, Ipv6Addr};

/// A syntactically valid mailbox, split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox<'a> {
    /// As written (quotes kept).
    pub local: &'a str,
    pub domain: Domain<'a>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Domain<'a> {
    Name(&'a str),
    /// `[192.0.2.1]` or `[IPv6:2001:db8::1]`, brackets kept.
    Literal(&'a str),
}

impl Domain<'_> {
    pub fn as_str(&self) -> &str {
        match self {
            Domain::Name(s) | Domain::Literal(s) => s,
        }
    }
}

/// Parses `text` as a mailbox, or says what is wrong with it.
pub fn parse_mailbox(text: &str) -> Result<Mailbox<'_>, &'static str> {
    let local_end = if text.starts_with('"') { quoted_end(text)? } else { text.find('@').ok_or("no @")? };
    let (local, rest) = text.split_at(local_end);
    let domain = rest.strip_prefix('@').ok_or("the local part is followed by something other than @")?;
    if local.is_empty() {
        return Err("empty local part");
    }
    if local.len() > 64 {
        return Err("the local part is longer than 64 octets");
    }
    if !local.starts_with('"') && !local.split('.').all(is_atom) {
        return Err("the local part holds characters that need quoting, or misplaced dots");
    }
    let domain = if domain.starts_with('[') { Domain::Literal(literal(domain)?) } else { Domain::Name(name(domain)?) };
    Ok(Mailbox { local, domain })
}

/// The index just past the closing quote of a quoted local part.
fn quoted_end(text: &str) -> Result<usize, &'static str> {
    let mut escaped = false;
    for (i, c) in text.char_indices().skip(1) {
        if escaped {
            if c.is_ascii() && !(' '..='~').contains(&c) {
                return Err("a control character in the quoted local part");
            }
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == '"' {
            return Ok(i + 1);
        } else if c.is_ascii() && !(' '..='~').contains(&c) {
            return Err("a control character in the quoted local part");
        }
    }
    Err("the quoted local part is not closed")
}

/// RFC 5322 atext, plus UTF-8 (RFC 6531).
fn is_atom(atom: &str) -> bool {
    !atom.is_empty() && atom.chars().all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || !c.is_ascii())
}

fn name(domain: &str) -> Result<&str, &'static str> {
    if domain.is_empty() {
        return Err("no domain");
    }
    if domain.len() > 255 {
        return Err("the domain is longer than 255 octets");
    }
    let ok = domain.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || !c.is_ascii())
    });
    if ok { Ok(domain) } else { Err("the domain is not a host name") }
}

fn literal(domain: &str) -> Result<&str, &'static str> {
    let inner = domain.strip_prefix('[').and_then(|d| d.strip_suffix(']')).ok_or("the address literal is not closed with ]")?;
    let ok = match inner.strip_prefix("IPv6:").or_else(|| inner.strip_prefix("ipv6:")) {
        Some(v6) => v6.parse::<Ipv6Addr>().is_ok(),
        None => inner.parse::<Ipv4Addr>().is_ok(),
    };
    if ok { Ok(domain) } else { Err("the address literal is neither an IPv4 address nor IPv6:<address>") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grammar() {
        use Domain::{Literal as L, Name as N};
        let ok = |local, domain| Ok(Mailbox { local, domain });
        let cases: &[(&str, Result<Mailbox<'_>, &str>)] = &[
            // Dot-string.
            ("a@b.example", ok("a", N("b.example"))),
            ("first.last+tag@sub.example.net", ok("first.last+tag", N("sub.example.net"))),
            ("!#$%&'*+-/=?^_`{|}~@x.example", ok("!#$%&'*+-/=?^_`{|}~", N("x.example"))),
            ("a@localhost", ok("a", N("localhost"))),
            ("ü@bücher.example", ok("ü", N("bücher.example"))),
            // Quoted-string (RFC 5321 §4.1.2, RFC 5322 §3.2.4).
            ("\"john doe\"@example.net", ok("\"john doe\"", N("example.net"))),
            ("\"a@b\"@example.net", ok("\"a@b\"", N("example.net"))),
            ("\"quote\\\"d\"@example.net", ok("\"quote\\\"d\"", N("example.net"))),
            ("\"\"@example.net", ok("\"\"", N("example.net"))),
            // Address literals (RFC 5321 §4.1.3).
            ("a@[127.0.0.1]", ok("a", L("[127.0.0.1]"))),
            ("a@[IPv6:2001:db8::1]", ok("a", L("[IPv6:2001:db8::1]"))),
            // Refused.
            ("@example.net", Err("empty local part")),
            ("a@", Err("no domain")),
            ("nodomain", Err("no @")),
            ("a b@example.net", Err("the local part holds characters that need quoting, or misplaced dots")),
            (".a@example.net", Err("the local part holds characters that need quoting, or misplaced dots")),
            ("a..b@example.net", Err("the local part holds characters that need quoting, or misplaced dots")),
            ("a.@example.net", Err("the local part holds characters that need quoting, or misplaced dots")),
            ("\"open@example.net", Err("the quoted local part is not closed")),
            ("\"a\"b@example.net", Err("the local part is followed by something other than @")),
            ("\"a\x01\"@example.net", Err("a control character in the quoted local part")),
            ("a@b..c", Err("the domain is not a host name")),
            ("a@-b.example", Err("the domain is not a host name")),
            ("a@b_c.example", Err("the domain is not a host name")),
            ("a@[127.0.0.256]", Err("the address literal is neither an IPv4 address nor IPv6:<address>")),
            ("a@[2001:db8::1]", Err("the address literal is neither an IPv4 address nor IPv6:<address>")),
            ("a@[127.0.0.1", Err("the address literal is not closed with ]")),
        ];
        for (text, want) in cases {
            assert_eq!(&parse_mailbox(text), want, "{text}");
        }
        let long = format!("{}@example.net", "a".repeat(65));
        assert_eq!(parse_mailbox(&long), Err("the local part is longer than 64 octets"));
    }
}
