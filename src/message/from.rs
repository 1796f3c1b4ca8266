//! The From rule (DESIGN "Per-message policy" 1): the header must hold
//! exactly one address, because the signing identity is chosen from it.

use super::parse_mailbox;
use mail_parser::{Address, HeaderName, HeaderValue, MessageParser};

/// The one From address of an acceptable message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FromHeader {
    /// Display name, if any.
    pub name: Option<String>,
    pub address: String,
    /// The domain part, lowercase.
    pub domain: String,
}

/// Why a message's From header is unacceptable; the text goes in the reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FromError {
    #[error("the message has no header section")]
    NoHeader,
    #[error("the message has no From header")]
    Missing,
    #[error("the message has {0} From headers; exactly one is allowed")]
    Repeated(usize),
    #[error("the From header holds {0} addresses; exactly one is required")]
    Several(usize),
    #[error("the From header holds no address")]
    Empty,
    #[error("the From address `{0}` is not a valid address: {1}")]
    Invalid(String, &'static str),
}

/// Applies the From rule to a raw message.
pub fn check_from(raw: &[u8]) -> Result<FromHeader, FromError> {
    let message = MessageParser::new().parse_headers(raw).ok_or(FromError::NoHeader)?;
    let froms: Vec<_> = message.headers().iter().filter(|h| h.name == HeaderName::From).collect();
    let header = match froms.as_slice() {
        [] => return Err(FromError::Missing),
        [one] => *one,
        many => return Err(FromError::Repeated(many.len())),
    };
    // mail-parser reads a bare quoted local part (`"john doe"@example.net`)
    // as a display name; a value that is one plain addr-spec is taken as is.
    let raw_value = raw.get(header.offset_start as usize..header.offset_end as usize).and_then(|v| std::str::from_utf8(v).ok());
    let unfolded = raw_value.map(|v| v.replace(['\r', '\n'], "")).unwrap_or_default();
    let plain = unfolded.trim().trim_start_matches('<').trim_end_matches('>');
    if let Ok(mailbox) = parse_mailbox(plain) {
        return Ok(FromHeader { name: None, address: plain.to_string(), domain: mailbox.domain.as_str().to_ascii_lowercase() });
    }
    let value = &header.value;
    let HeaderValue::Address(address) = value else {
        return Err(FromError::Empty);
    };
    let addrs: Vec<_> = match address {
        Address::List(list) => list.iter().collect(),
        Address::Group(groups) => groups.iter().flat_map(|g| g.addresses.iter()).collect(),
    };
    let addr = match addrs.as_slice() {
        [] => return Err(FromError::Empty),
        [one] => *one,
        many => return Err(FromError::Several(many.len())),
    };
    let email = addr.address().map(str::trim).filter(|a| !a.is_empty()).ok_or(FromError::Empty)?;
    let domain = match parse_mailbox(email) {
        Ok(mailbox) => mailbox.domain.as_str().to_ascii_lowercase(),
        Err(why) => return Err(FromError::Invalid(email.to_string(), why)),
    };
    Ok(FromHeader { name: addr.name().map(str::to_string), address: email.to_string(), domain })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(headers: &str) -> Vec<u8> {
        format!("{headers}Subject: x\r\n\r\nbody\r\n").into_bytes()
    }

    #[test]
    fn from_rule() {
        let ok = |name: Option<&str>, address: &str, domain: &str| {
            Ok(FromHeader { name: name.map(str::to_string), address: address.into(), domain: domain.into() })
        };
        let cases: Vec<(&str, Result<FromHeader, FromError>)> = vec![
            ("From: Acme <invoice@Customer.NL>\r\n", ok(Some("Acme"), "invoice@Customer.NL", "customer.nl")),
            ("From: invoice@billing.customer.nl\r\n", ok(None, "invoice@billing.customer.nl", "billing.customer.nl")),
            ("From: \"Acme, Inc\" <a@b.example>\r\n", ok(Some("Acme, Inc"), "a@b.example", "b.example")),
            ("To: x@y.example\r\n", Err(FromError::Missing)),
            ("From: a@b.example, c@d.example\r\n", Err(FromError::Several(2))),
            ("From: a@b.example\r\nFrom: c@d.example\r\n", Err(FromError::Repeated(2))),
            ("From: undisclosed:;\r\n", Err(FromError::Empty)),
            ("From: \r\n", Err(FromError::Empty)),
            ("From: nobody\r\n", Err(FromError::Empty)),
            ("From: <nobody@>\r\n", Err(FromError::Invalid("nobody@".into(), "no domain"))),
            // A quoted local part, bare or in angle brackets (RFC 5322 §3.4.1).
            ("From: \"john doe\"@example.net\r\n", ok(None, "\"john doe\"@example.net", "example.net")),
            ("From: <\"john doe\"@Example.NET>\r\n", ok(None, "\"john doe\"@Example.NET", "example.net")),
            ("From: John <\"john doe\"@example.net>\r\n", ok(Some("John"), "\"john doe\"@example.net", "example.net")),
            ("From: a@[192.0.2.1]\r\n", ok(None, "a@[192.0.2.1]", "[192.0.2.1]")),
            ("From: a@b.example,\r\n c@d.example\r\n", Err(FromError::Several(2))),
        ];
        for (headers, want) in cases {
            assert_eq!(check_from(&msg(headers)), want, "{headers:?}");
        }
    }
}
