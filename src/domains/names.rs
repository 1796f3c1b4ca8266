//! Record naming, as pure functions: what the customer adds to their zone
//! (three CNAMEs) and what the operator's zone must hold for them to point
//! at (SPF, MX and two DKIM keys per tenant).
//!
//! For customer `customer.nl`, tenant 7, operator zone `wl.relay.example.net`:
//!
//! | customer host                | CNAME to                                  |
//! |------------------------------|-------------------------------------------|
//! | `em4821.customer.nl`         | `t7.wl.relay.example.net`                 |
//! | `hr1._domainkey.customer.nl` | `hr1.domainkey.t7.wl.relay.example.net`   |
//! | `hr2._domainkey.customer.nl` | `hr2.domainkey.t7.wl.relay.example.net`   |
//!
//! The targets avoid `_domainkey` on the operator side on purpose: the
//! operator's names are ordinary host names any DNS provider accepts, and
//! the DKIM lookup (RFC 6376 §3.6.2.1) only cares about the customer-side
//! name, which the CNAME makes point here.

use serde::{Deserialize, Serialize};

/// The record type the customer adds, for all three records.
pub const CNAME: &str = "CNAME";

/// `t<id>`: the tenant's label in the operator's zone. Short and stable.
pub fn tenant_label(tenant: u64) -> String {
    format!("t{tenant}")
}

/// `t<id>.<zone>`: target of the return-path CNAME; holds SPF and MX.
pub fn tenant_host(tenant: u64, zone: &str) -> String {
    format!("{}.{}", tenant_label(tenant), bare(zone))
}

/// `<prefix><4 digits>`, e.g. `em4821` (`digits` is taken modulo 10 000).
pub fn return_path_label(prefix: &str, digits: u16) -> String {
    format!("{prefix}{:04}", digits % 10_000)
}

/// The two DKIM selectors of a domain: `<prefix>1` and `<prefix>2`.
pub fn selectors(prefix: &str) -> [String; 2] {
    [format!("{prefix}1"), format!("{prefix}2")]
}

/// The selector signing now. Rotation will choose between the two; until
/// then it is always the first.
pub fn active_selector(prefix: &str) -> String {
    selectors(prefix)[0].clone()
}

/// `em4821.customer.nl`.
pub fn return_path_host(label: &str, domain: &str) -> String {
    format!("{label}.{}", bare(domain))
}

/// `hr1._domainkey`: what the customer types as the host name of a DKIM record.
pub fn dkim_label(selector: &str) -> String {
    format!("{selector}._domainkey")
}

/// `hr1._domainkey.customer.nl`.
pub fn dkim_host(selector: &str, domain: &str) -> String {
    format!("{}.{}", dkim_label(selector), bare(domain))
}

/// `hr1.domainkey.t7.<zone>`: where the DKIM key lives in the operator's zone.
pub fn dkim_target(selector: &str, tenant: u64, zone: &str) -> String {
    format!("{selector}.domainkey.{}", tenant_host(tenant, zone))
}

/// `v=spf1 <mechanisms> -all`.
pub fn spf_value(mechanisms: &str) -> String {
    format!("v=spf1 {} -all", mechanisms.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// One of the three records the customer adds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerRecord {
    /// Fully qualified host in the customer's zone, e.g. `em4821.customer.nl`.
    pub host: String,
    /// The host relative to the customer's domain (`em4821`,
    /// `hr1._domainkey`): what most DNS providers want typed in.
    pub label: String,
    /// Always [`CNAME`].
    pub kind: String,
    /// The target in the operator's zone.
    pub value: String,
    /// What the record is for, in words.
    pub purpose: String,
    /// The DKIM selector for the two key records; `None` for the return path.
    pub selector: Option<String>,
}

/// The three CNAMEs for `domain`, in the order of the design's table:
/// return path, DKIM selector 1, DKIM selector 2.
pub fn customer_records(domain: &str, tenant: u64, return_path_label: &str, selector_prefix: &str, zone: &str) -> [CustomerRecord; 3] {
    let [s1, s2] = selectors(selector_prefix);
    let dkim = |selector: String, purpose: &str| CustomerRecord {
        host: dkim_host(&selector, domain),
        label: dkim_label(&selector),
        kind: CNAME.into(),
        value: dkim_target(&selector, tenant, zone),
        purpose: purpose.into(),
        selector: Some(selector),
    };
    [
        CustomerRecord {
            host: return_path_host(return_path_label, domain),
            label: return_path_label.to_string(),
            kind: CNAME.into(),
            value: tenant_host(tenant, zone),
            purpose: "return path: SPF + bounces".into(),
            selector: None,
        },
        dkim(s1, "DKIM key, selector 1"),
        dkim(s2, "DKIM key, selector 2 (rotation)"),
    ]
}

/// What an operator record holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OperatorData {
    /// Character-strings of at most 255 bytes each (RFC 1035 §3.3.14).
    Txt(Vec<String>),
    Mx {
        preference: u16,
        exchange: String,
    },
}

/// One record the operator's zone must hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorRecord {
    /// Fully qualified, without trailing dot.
    pub name: String,
    pub data: OperatorData,
}

/// The operator-side records of one tenant: SPF and MX at `t<id>.<zone>`,
/// and a DKIM TXT per `(selector, base64 public key)` in `dkim`.
pub fn operator_records(
    tenant: u64,
    zone: &str,
    spf_mechanisms: &str,
    inbound_host: &str,
    dkim: &[(String, String)],
) -> Vec<OperatorRecord> {
    let host = tenant_host(tenant, zone);
    let mut out = vec![
        OperatorRecord {
            name: host.clone(),
            data: OperatorData::Txt(crate::dkim::split_txt(&spf_value(spf_mechanisms))),
        },
        OperatorRecord {
            name: host,
            data: OperatorData::Mx {
                preference: 10,
                exchange: bare(inbound_host).to_string(),
            },
        },
    ];
    for (selector, public_b64) in dkim {
        out.push(OperatorRecord {
            name: dkim_target(selector, tenant, zone),
            data: OperatorData::Txt(crate::dkim::split_txt(&crate::dkim::txt_value(public_b64))),
        });
    }
    out
}

/// Renders records as an RFC 1035 §5 master-file fragment with absolute
/// names, one record per line (`herald dns zone`).
pub fn zone_fragment(records: &[OperatorRecord], ttl: u32) -> String {
    let mut out = String::new();
    for r in records {
        let rdata = match &r.data {
            OperatorData::Txt(strings) => {
                let quoted: Vec<String> = strings.iter().map(|s| quote(s)).collect();
                format!("TXT {}", quoted.join(" "))
            }
            OperatorData::Mx { preference, exchange } => format!("MX {preference} {}.", bare(exchange)),
        };
        out.push_str(&format!("{}. {ttl} IN {rdata}\n", bare(&r.name)));
    }
    out
}

/// A `"character-string"` with `"` and `\` escaped (RFC 1035 §5.1).
fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// The name without surrounding blanks and trailing dot (case unchanged).
pub fn bare(name: &str) -> &str {
    let t = name.trim();
    t.strip_suffix('.').unwrap_or(t)
}

/// Two host names are the same: ASCII case-insensitive, trailing dot ignored.
pub fn same_host(a: &str, b: &str) -> bool {
    bare(a).eq_ignore_ascii_case(bare(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_table() {
        let cases: &[(String, &str)] = &[
            (tenant_label(7), "t7"),
            (tenant_label(12345), "t12345"),
            (tenant_host(7, "wl.relay.example.net."), "t7.wl.relay.example.net"),
            (return_path_label("em", 4821), "em4821"),
            (return_path_label("em", 7), "em0007"),
            (return_path_label("bounce", 10_042), "bounce0042"),
            (selectors("hr")[0].clone(), "hr1"),
            (selectors("hr")[1].clone(), "hr2"),
            (active_selector("s"), "s1"),
            (return_path_host("em4821", "customer.nl"), "em4821.customer.nl"),
            (dkim_label("hr2"), "hr2._domainkey"),
            (dkim_host("hr1", "customer.nl."), "hr1._domainkey.customer.nl"),
            (
                dkim_target("hr2", 7, "wl.relay.example.net"),
                "hr2.domainkey.t7.wl.relay.example.net",
            ),
            (
                spf_value("ip4:192.0.2.1   ip6:2001:db8::1"),
                "v=spf1 ip4:192.0.2.1 ip6:2001:db8::1 -all",
            ),
        ];
        for (got, want) in cases {
            assert_eq!(got, want);
        }
    }

    #[test]
    fn customer_records_follow_the_design_table() {
        let got = customer_records("customer.nl", 7, "em4821", "hr", "wl.relay.example.net");
        let rows: Vec<(&str, &str, &str, &str, Option<&str>)> = got
            .iter()
            .map(|r| {
                (
                    r.host.as_str(),
                    r.label.as_str(),
                    r.kind.as_str(),
                    r.value.as_str(),
                    r.selector.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            rows,
            [
                ("em4821.customer.nl", "em4821", "CNAME", "t7.wl.relay.example.net", None),
                (
                    "hr1._domainkey.customer.nl",
                    "hr1._domainkey",
                    "CNAME",
                    "hr1.domainkey.t7.wl.relay.example.net",
                    Some("hr1")
                ),
                (
                    "hr2._domainkey.customer.nl",
                    "hr2._domainkey",
                    "CNAME",
                    "hr2.domainkey.t7.wl.relay.example.net",
                    Some("hr2")
                ),
            ]
        );
        assert!(got[0].purpose.contains("return path"));
        assert!(got[2].purpose.contains("rotation"));
        // Other prefixes, so a customer with `s1._domainkey` elsewhere does not collide.
        let other = customer_records("b.example", 1, "rp0001", "hx", "z.test");
        assert_eq!(other[1].host, "hx1._domainkey.b.example");
        assert_eq!(other[2].value, "hx2.domainkey.t1.z.test");
    }

    #[test]
    fn operator_records_and_zone_fragment() {
        let key = "A".repeat(392);
        let records = operator_records(
            7,
            "wl.relay.example.net",
            "ip4:192.0.2.1",
            "mx.relay.example.net.",
            &[("hr1".into(), key.clone()), ("hr2".into(), "QUJD".into())],
        );
        assert_eq!(records.len(), 4);
        assert_eq!(records[0].data, OperatorData::Txt(vec!["v=spf1 ip4:192.0.2.1 -all".into()]));
        assert_eq!(
            records[1].data,
            OperatorData::Mx {
                preference: 10,
                exchange: "mx.relay.example.net".into()
            }
        );
        assert_eq!(records[2].name, "hr1.domainkey.t7.wl.relay.example.net");
        let OperatorData::Txt(strings) = &records[2].data else {
            panic!("TXT expected")
        };
        assert!(strings.len() == 2 && strings.iter().all(|s| s.len() <= 255), "{strings:?}");
        assert_eq!(strings.concat(), format!("v=DKIM1; k=rsa; p={key}"));

        let text = zone_fragment(&records, 3600);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "t7.wl.relay.example.net. 3600 IN TXT \"v=spf1 ip4:192.0.2.1 -all\"");
        assert_eq!(lines[1], "t7.wl.relay.example.net. 3600 IN MX 10 mx.relay.example.net.");
        assert!(
            lines[2].starts_with("hr1.domainkey.t7.wl.relay.example.net. 3600 IN TXT \"v=DKIM1; k=rsa; p=AAA"),
            "{}",
            lines[2]
        );
        assert_eq!(lines[2].matches('"').count(), 4, "two character-strings");
        assert_eq!(
            lines[3],
            "hr2.domainkey.t7.wl.relay.example.net. 3600 IN TXT \"v=DKIM1; k=rsa; p=QUJD\""
        );
    }

    #[test]
    fn quoting_and_host_comparison() {
        assert_eq!(quote(r#"a"b\c"#), r#""a\"b\\c""#);
        let cases = [
            ("T7.WL.Relay.Test.", "t7.wl.relay.test", true),
            ("t7.wl.relay.test", "t8.wl.relay.test", false),
            (" x.test ", "x.test.", true),
        ];
        for (a, b, want) in cases {
            assert_eq!(same_host(a, b), want, "{a} vs {b}");
        }
    }
}
