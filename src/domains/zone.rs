//! The operator zone's content in one place, for both ways of publishing
//! it: the zone-file text of `herald dns zone` (for a DNS provider) and the
//! embedded DNS server (which serves exactly these records, plus SOA/NS).
//!
//! Blocks, in order: the relay's own DKIM key (and, when the bounce domain
//! lies inside the zone, its MX and SPF), then one block per tenant.

use super::names::{self, OperatorData, OperatorRecord};
use serde::{Deserialize, Serialize};

/// The relay's own identity, as far as the zone is concerned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayIdentity {
    /// `identity.domain`: `d=` of the relay's own signature.
    pub domain: String,
    /// `identity.dkim_selector`.
    pub selector: String,
    /// `identity.bounce_domain`.
    pub bounce_domain: String,
}

/// How the zone is published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneSettings {
    /// TTL of every record (`dns_server.ttl`).
    pub ttl: u32,
    /// The relay's own records; `None` leaves them out (tests, tools).
    pub relay: Option<RelayIdentity>,
    /// Served by the embedded DNS server (changes are live at once).
    pub embedded: bool,
}

impl Default for ZoneSettings {
    fn default() -> Self {
        Self {
            ttl: super::ZONE_TTL,
            relay: None,
            embedded: false,
        }
    }
}

/// One commented group of records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// Comment lines, without the leading `; `.
    pub comment: Vec<String>,
    pub records: Vec<OperatorRecord>,
}

/// The whole operator zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneContent {
    pub blocks: Vec<Block>,
    pub ttl: u32,
}

impl ZoneContent {
    /// As `herald dns zone` prints it.
    pub fn text(&self) -> String {
        let mut out = String::from("; herald operator zone: records the relay's DNS must publish (`herald dns zone`).\n");
        for block in &self.blocks {
            for line in &block.comment {
                out.push_str(&format!("; {line}\n"));
            }
            out.push_str(&names::zone_fragment(&block.records, self.ttl));
        }
        out
    }

    /// Every record whose name lies in `zone` (at or below it), in order.
    pub fn records_in(&self, zone: &str) -> Vec<&OperatorRecord> {
        self.blocks
            .iter()
            .flat_map(|b| b.records.iter())
            .filter(|r| in_zone(&r.name, zone))
            .collect()
    }
}

/// Whether `name` is `zone` or below it (case-insensitive, dots ignored).
pub fn in_zone(name: &str, zone: &str) -> bool {
    let (name, zone) = (names::bare(name).to_ascii_lowercase(), names::bare(zone).to_ascii_lowercase());
    name == zone || name.ends_with(&format!(".{zone}"))
}

/// The relay's own block: its DKIM keys (`(selector, base64 key)`; two
/// during a rotation), and the bounce domain's MX and SPF when that domain
/// is inside `zone` (the relay's DNS then holds it).
pub fn relay_block(id: &RelayIdentity, keys: &[(String, String)], zone: &str, spf_mechanisms: &str, inbound_host: &str) -> Block {
    let mut records: Vec<OperatorRecord> = keys
        .iter()
        .map(|(selector, public_b64)| OperatorRecord {
            name: names::dkim_host(selector, &id.domain),
            data: OperatorData::Txt(crate::dkim::split_txt(&crate::dkim::txt_value(public_b64))),
        })
        .collect();
    let mut comment = vec![format!(
        "The relay's own DKIM key (identity.domain {}, selector {}):",
        id.domain, id.selector
    )];
    if in_zone(&id.bounce_domain, zone) {
        comment.push(format!("and its bounce domain {} (SPF and MX):", names::bare(&id.bounce_domain)));
        records.push(OperatorRecord {
            name: names::bare(&id.bounce_domain).to_ascii_lowercase(),
            data: OperatorData::Txt(crate::dkim::split_txt(&names::spf_value(spf_mechanisms))),
        });
        records.push(OperatorRecord {
            name: names::bare(&id.bounce_domain).to_ascii_lowercase(),
            data: OperatorData::Mx {
                preference: 10,
                exchange: names::bare(inbound_host).to_string(),
            },
        });
    }
    Block { comment, records }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_zone_table() {
        let cases = [
            ("t1.wl.relay.test", "wl.relay.test", true),
            ("WL.Relay.Test.", "wl.relay.test", true),
            ("xwl.relay.test", "wl.relay.test", false),
            ("relay.test", "wl.relay.test", false),
            ("hr1.domainkey.t1.wl.relay.test", "wl.relay.test.", true),
        ];
        for (name, zone, want) in cases {
            assert_eq!(in_zone(name, zone), want, "{name} in {zone}");
        }
    }

    #[test]
    fn relay_block_adds_bounce_records_only_inside_the_zone() {
        let mut id = RelayIdentity {
            domain: "relay.test".into(),
            selector: "herald".into(),
            bounce_domain: "bounces.relay.test".into(),
        };
        let outside = relay_block(&id, &[("herald".into(), "QUJD".into())], "wl.relay.test", "ip4:127.0.0.1", "mx.relay.test");
        assert_eq!(outside.records.len(), 1);
        assert_eq!(outside.records[0].name, "herald._domainkey.relay.test");
        id.bounce_domain = "b.wl.relay.test".into();
        let inside = relay_block(&id, &[("herald".into(), "QUJD".into())], "wl.relay.test", "ip4:127.0.0.1", "mx.relay.test");
        let kinds: Vec<(&str, bool)> = inside
            .records
            .iter()
            .map(|r| (r.name.as_str(), matches!(r.data, OperatorData::Mx { .. })))
            .collect();
        assert_eq!(
            kinds,
            [("herald._domainkey.relay.test", false), ("b.wl.relay.test", false), ("b.wl.relay.test", true)]
        );
        let content = ZoneContent {
            blocks: vec![inside],
            ttl: 60,
        };
        assert_eq!(content.records_in("wl.relay.test").len(), 2);
        assert!(content.text().contains("b.wl.relay.test. 60 IN MX 10 mx.relay.test."), "{}", content.text());
    }
}
