//! What a person may register as a customer domain, and the errors that
//! tell them what to type instead. Pure functions; the registry calls them
//! before it touches the database.

use super::names;
use serde::{Deserialize, Serialize};

/// Why a domain could not be added. The texts are meant to be shown to the
/// person who typed the domain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum AddError {
    #[error("`{input}` is not a domain name: {why}")]
    NotADomain { input: String, why: String },
    #[error(
        "`{domain}` is a public suffix, under which anyone can register domains; add the domain you registered, such as `yourcompany.{domain}`"
    )]
    PublicSuffix { domain: String },
    #[error("`{domain}` is the relay's own zone `{zone}` or a name in it; add the customer's domain, such as `customer.nl`")]
    OperatorZone { domain: String, zone: String },
    #[error("`{domain}` is already registered (tenant t{tenant}); use it as it is, or remove it first to start over")]
    Duplicate { domain: String, tenant: u64 },
    #[error("selector prefix `{prefix}`: {why}; use a short label of letters and digits such as `hr`")]
    BadSelectorPrefix { prefix: String, why: String },
    #[error("return-path label `{label}`: {why}; use one label of letters, digits and hyphens such as `em4821`, or leave it out")]
    BadReturnPathLabel { label: String, why: String },
    #[error("the domain registry is unavailable: {0}")]
    Store(String),
    #[error("the DKIM keys for the domain could not be created: {0}")]
    Keys(String),
}

/// Public suffixes refused as customer domains. This is a list of the
/// common ones (generic and country top-level domains, and the usual
/// second-level registries such as `co.uk`), not the full Public Suffix List.
#[rustfmt::skip]
pub const PUBLIC_SUFFIXES: &[&str] = &[
    // generic
    "com", "net", "org", "edu", "gov", "mil", "int", "info", "biz", "name", "pro", "mobi", "app", "dev", "io", "ai", "co", "me", "tv",
    "cc", "xyz", "online", "site", "shop", "store", "tech", "cloud", "email", "localhost", "test", "example", "invalid",
    // country codes
    "eu", "nl", "de", "be", "fr", "uk", "it", "es", "pt", "at", "ch", "se", "no", "dk", "fi", "pl", "cz", "ie", "lu", "us", "ca", "au",
    "nz", "jp", "cn", "in", "br", "ru", "za", "mx", "ar", "tr", "kr", "sg", "hk", "tw", "il", "gr", "hu", "ro", "sk", "si", "hr", "bg",
    "lt", "lv", "ee", "is",
    // second-level registries
    "co.uk", "org.uk", "ac.uk", "gov.uk", "me.uk", "ltd.uk", "plc.uk", "net.uk", "sch.uk", "nhs.uk", "com.au", "net.au", "org.au",
    "edu.au", "gov.au", "id.au", "co.nz", "net.nz", "org.nz", "govt.nz", "ac.nz", "co.jp", "ne.jp", "or.jp", "ac.jp", "go.jp", "com.br",
    "net.br", "org.br", "gov.br", "com.cn", "net.cn", "org.cn", "gov.cn", "co.in", "net.in", "org.in", "gov.in", "co.za", "org.za",
    "gov.za", "com.mx", "org.mx", "gob.mx", "com.ar", "com.tr", "gov.tr", "co.kr", "or.kr", "com.sg", "com.hk", "com.tw", "co.il",
    "org.il", "co.at", "or.at", "gv.at", "com.es", "com.pl", "com.pt", "com.gr", "co.hu", "com.ua", "co.id", "co.th", "com.my",
    "com.ph", "com.vn", "com.eg", "com.sa", "com.co", "com.pe", "co.ve",
];

/// Longest DNS name in text form (RFC 1035 §2.3.4, without the root dot).
const MAX_NAME: usize = 253;

/// The domain as stored: trimmed, lowercase, ASCII (punycode for an
/// internationalised name), no trailing dot — or why `input` is not one.
pub fn normalise_domain(input: &str) -> Result<String, AddError> {
    let not = |why: &str| AddError::NotADomain {
        input: input.to_string(),
        why: why.to_string(),
    };
    let text = input.trim();
    let text = text.strip_suffix('.').unwrap_or(text);
    if text.is_empty() {
        return Err(not("it is empty"));
    }
    if text.contains('@') {
        return Err(not("it looks like an e-mail address; enter only the part after the @"));
    }
    if text.contains("://") || text.contains('/') {
        return Err(not(
            "it looks like a web address; enter only the domain name, such as `customer.nl`",
        ));
    }
    let ascii = if text.is_ascii() {
        text.to_ascii_lowercase()
    } else {
        let name = hickory_resolver::proto::rr::Name::from_utf8(text).map_err(|_| not("it holds characters a domain name cannot have"))?;
        name.to_ascii().trim_end_matches('.').to_ascii_lowercase()
    };
    // No top-level domain is numeric, so `127.0.0.1` (or `10.1`) is an
    // address, never a name; `[…]` and IPv6 fail the host-name check.
    if ascii.rsplit('.').next().is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit())) || text.parse::<std::net::IpAddr>().is_ok() || text.starts_with('[') {
        return Err(not("it is an IP address; enter the customer's domain name, such as `customer.nl`"));
    }
    if ascii.contains('_') || !crate::config::is_hostname(&ascii) {
        return Err(not("it holds characters a domain name cannot have, or an empty or over-long label"));
    }
    if !ascii.contains('.') && !PUBLIC_SUFFIXES.contains(&ascii.as_str()) {
        return Err(not("a domain name has at least two labels, such as `customer.nl`"));
    }
    Ok(ascii)
}

/// Refuses public suffixes and the operator's zone (or names in it).
/// `domain` and `zone` are normalised.
pub fn check_allowed(domain: &str, zone: &str) -> Result<(), AddError> {
    if PUBLIC_SUFFIXES.contains(&domain) {
        return Err(AddError::PublicSuffix {
            domain: domain.to_string(),
        });
    }
    if domain == zone || domain.ends_with(&format!(".{zone}")) {
        return Err(AddError::OperatorZone {
            domain: domain.to_string(),
            zone: zone.to_string(),
        });
    }
    Ok(())
}

/// A selector prefix: a letter, then letters, digits or hyphens, at most
/// 20 characters (selectors append a digit).
pub fn check_selector_prefix(prefix: &str) -> Result<(), AddError> {
    label(prefix, 20).map_err(|why| AddError::BadSelectorPrefix {
        prefix: prefix.to_string(),
        why,
    })
}

/// A return-path label: one DNS label of letters, digits and hyphens that
/// starts with a letter.
pub fn check_return_path_label(label_text: &str) -> Result<(), AddError> {
    label(label_text, 63).map_err(|why| AddError::BadReturnPathLabel {
        label: label_text.to_string(),
        why,
    })
}

/// The customer-side names built on `domain` must stay within 253 characters.
pub fn check_lengths(domain: &str, return_path_label: &str, selector_prefix: &str) -> Result<(), AddError> {
    let records = names::customer_records(domain, 0, return_path_label, selector_prefix, "x");
    if records.iter().any(|r| r.host.len() > MAX_NAME) {
        let why = format!("it is too long: `{}` would pass {MAX_NAME} characters", records[1].label);
        return Err(AddError::NotADomain {
            input: domain.to_string(),
            why,
        });
    }
    Ok(())
}

fn label(text: &str, max: usize) -> Result<(), String> {
    match text.bytes().next() {
        None => Err("it is empty".into()),
        Some(b) if !b.is_ascii_alphabetic() => Err("it must start with a letter".into()),
        _ if !text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') => Err("only letters, digits and hyphens are allowed".into()),
        _ if text.ends_with('-') => Err("it must not end with a hyphen".into()),
        _ if text.len() > max => Err(format!("it is longer than {max} characters")),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalise_table() {
        let cases: &[(&str, Result<&str, &str>)] = &[
            ("customer.nl", Ok("customer.nl")),
            ("  Customer.NL. ", Ok("customer.nl")),
            ("billing.customer.nl", Ok("billing.customer.nl")),
            ("bücher.de", Ok("xn--bcher-kva.de")),
            ("co.uk", Ok("co.uk")), // refused later, as a public suffix
            ("com", Ok("com")),
            ("", Err("empty")),
            ("localhostish", Err("at least two labels")),
            ("billing@customer.nl", Err("e-mail address")),
            ("https://customer.nl/", Err("web address")),
            ("cust omer.nl", Err("characters")),
            ("a..b", Err("characters")),
            ("_dmarc.customer.nl", Err("characters")),
            ("-x.nl", Err("characters")),
            ("127.0.0.1", Err("IP address")),
            ("[127.0.0.1]", Err("IP address")),
            ("::1", Err("IP address")),
            ("2001:db8::1", Err("IP address")),
            ("10.1", Err("IP address")),
            ("intranet", Err("at least two labels")),
        ];
        for (input, want) in cases {
            match (normalise_domain(input), want) {
                (Ok(got), Ok(w)) => assert_eq!(got, *w, "{input:?}"),
                (Err(e), Err(words)) => assert!(e.to_string().contains(words), "{input:?}: want `{words}` in {e}"),
                (got, want) => panic!("{input:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn allowed_table() {
        let zone = "wl.relay.test";
        let cases: &[(&str, Option<&str>)] = &[
            ("customer.nl", None),
            ("customer.co.uk", None),
            ("relay.test", None),
            ("co.uk", Some("public suffix")),
            ("com", Some("public suffix")),
            ("com.au", Some("public suffix")),
            ("wl.relay.test", Some("relay's own zone")),
            ("t1.wl.relay.test", Some("relay's own zone")),
        ];
        for (domain, want) in cases {
            match (check_allowed(domain, zone), want) {
                (Ok(()), None) => {}
                (Err(e), Some(words)) => assert!(e.to_string().contains(words), "{domain}: {e}"),
                (got, want) => panic!("{domain}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn labels_table() {
        let cases: &[(&str, Option<&str>)] = &[
            ("em4821", None),
            ("rp-1", None),
            ("", Some("empty")),
            ("4821", Some("start with a letter")),
            ("em_1", Some("only letters")),
            ("em-", Some("end with a hyphen")),
        ];
        for (text, want) in cases {
            match (check_return_path_label(text), want) {
                (Ok(()), None) => {}
                (Err(e), Some(words)) => assert!(e.to_string().contains(words), "{text:?}: {e}"),
                (got, want) => panic!("{text:?}: got {got:?}, want {want:?}"),
            }
        }
        assert!(
            check_selector_prefix(&"h".repeat(21))
                .unwrap_err()
                .to_string()
                .contains("longer than 20")
        );
        let long = format!("{}.nl", vec!["a".repeat(60); 4].join("."));
        assert!(check_lengths(&long, "em4821", "hr").unwrap_err().to_string().contains("too long"));
        assert_eq!(check_lengths("customer.nl", "em4821", "hr"), Ok(()));
    }
}
