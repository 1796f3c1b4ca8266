//! One immutable picture of the operator zone as DNS records, and the
//! answer to a question from it, as pure functions.
//!
//! Answers follow RFC 1034 §4.3.2 for a zone without CNAMEs, delegations
//! or wildcards: the asked records with AA set; NODATA (NOERROR, empty)
//! when the name exists without that type, NXDOMAIN when it does not exist
//! at all — both with the SOA in the authority section so resolvers can
//! cache the negative answer (RFC 2308 §3, TTL = min(SOA TTL, minimum)).
//! An empty non-terminal (`domainkey.t7.<zone>`) exists (RFC 8020).
//! Names outside the zone are REFUSED: this server is authoritative only.
//! ANY gets one RRset, not all of them (RFC 8482).

use crate::domains::names::OperatorData;
use crate::domains::zone::ZoneContent;
use hickory_server::proto::op::ResponseCode;
use hickory_server::proto::rr::rdata::{MX, NS, SOA, TXT};
use hickory_server::proto::rr::{Name, RData, Record, RecordType};
use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};

/// The SOA timers (RFC 1912 §2.2 suggestions for a small zone).
const REFRESH: i32 = 3600;
const RETRY: i32 = 600;
const EXPIRE: i32 = 14 * 86400;

/// What goes into the SOA and NS records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Apex {
    /// The zone, lowercase, no trailing dot.
    pub zone: String,
    /// NS names; the first is the SOA's MNAME.
    pub nameservers: Vec<String>,
    /// `hostmaster@example.net`.
    pub hostmaster: String,
    pub negative_ttl: u32,
}

/// The zone as records, ready to answer from.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub zone: Name,
    pub serial: u32,
    soa: Record,
    /// By lowercase absolute name; apex SOA and NS included.
    records: BTreeMap<String, Vec<Record>>,
    /// Every existing name, empty non-terminals included.
    names: BTreeSet<String>,
    /// All records in zone order (apex first), for AXFR.
    ordered: Vec<Record>,
}

/// What the server says to one question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: ResponseCode,
    /// AA: set for every answer about the zone.
    pub authoritative: bool,
    pub answers: Vec<Record>,
    pub authorities: Vec<Record>,
}

/// A digest of the zone's records, to see whether they changed (and the
/// serial must move).
pub fn digest(content: &ZoneContent, zone: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    content.ttl.hash(&mut h);
    for r in content.records_in(zone) {
        r.name.to_ascii_lowercase().hash(&mut h);
        format!("{:?}", r.data).hash(&mut h);
    }
    h.finish()
}

/// The next serial: one more than `old`, or the Unix time when that is
/// larger (a common convention that keeps serials increasing across a
/// lost database too). RFC 1982 arithmetic wraps, so plain `wrapping_add`.
pub fn next_serial(old: u32, now_secs: i64) -> u32 {
    let now = u32::try_from(now_secs.max(0)).unwrap_or(u32::MAX);
    if now > old { now } else { old.wrapping_add(1) }
}

fn name(text: &str) -> Result<Name, String> {
    let mut n = Name::from_ascii(text.trim().trim_end_matches('.')).map_err(|e| format!("`{text}` is not a DNS name: {e}"))?;
    n.set_fqdn(true);
    Ok(n.to_lowercase())
}

fn key(n: &Name) -> String {
    let text = n.to_ascii().to_ascii_lowercase();
    if text.ends_with('.') { text } else { format!("{text}.") }
}

fn rdata(data: &OperatorData) -> Result<RData, String> {
    Ok(match data {
        OperatorData::Txt(strings) => RData::TXT(TXT::from_bytes(strings.iter().map(|s| s.as_bytes()).collect())),
        OperatorData::Mx { preference, exchange } => RData::MX(MX::new(*preference, name(exchange)?)),
    })
}

impl Snapshot {
    /// The records of `content` inside `apex.zone`, with SOA and NS at the
    /// apex, `ttl` on every record.
    pub fn build(content: &ZoneContent, apex: &Apex, serial: u32) -> Result<Snapshot, String> {
        let zone = name(&apex.zone)?;
        let mname = name(apex.nameservers.first().map(String::as_str).unwrap_or("localhost"))?;
        let rname = name(&apex.hostmaster.replacen('@', ".", 1))?;
        let ttl = content.ttl;
        let soa = Record::from_rdata(
            zone.clone(),
            ttl,
            RData::SOA(SOA::new(mname, rname, serial, REFRESH, RETRY, EXPIRE, apex.negative_ttl)),
        );
        let mut ordered = vec![soa.clone()];
        for ns in &apex.nameservers {
            ordered.push(Record::from_rdata(zone.clone(), ttl, RData::NS(NS(name(ns)?))));
        }
        for r in content.records_in(&apex.zone) {
            ordered.push(Record::from_rdata(name(&r.name)?, ttl, rdata(&r.data)?));
        }
        let mut records: BTreeMap<String, Vec<Record>> = BTreeMap::new();
        let mut names = BTreeSet::new();
        for r in &ordered {
            records.entry(key(&r.name)).or_default().push(r.clone());
            // The name and every ancestor down to the apex exist.
            let mut n = r.name.clone();
            while zone.zone_of(&n) {
                names.insert(key(&n));
                if n.num_labels() == 0 {
                    break;
                }
                n = n.base_name();
            }
        }
        Ok(Snapshot {
            zone,
            serial,
            soa,
            records,
            names,
            ordered,
        })
    }

    /// The answer to `qname`/`qtype` (not AXFR: see [`Snapshot::transfer`]).
    pub fn answer(&self, qname: &Name, qtype: RecordType) -> Reply {
        let refused = Reply {
            code: ResponseCode::Refused,
            authoritative: false,
            answers: Vec::new(),
            authorities: Vec::new(),
        };
        if !self.zone.zone_of(qname) {
            return refused;
        }
        let k = key(qname);
        let here = self.records.get(&k).map(Vec::as_slice).unwrap_or_default();
        let wanted: Vec<Record> = if qtype == RecordType::ANY {
            // RFC 8482 §4.2: one RRset is enough.
            let first = here.first().map(Record::record_type);
            here.iter().filter(|r| Some(r.record_type()) == first).cloned().collect()
        } else {
            here.iter().filter(|r| r.record_type() == qtype).cloned().collect()
        };
        let with_query_case = |mut r: Record| {
            r.name = qname.clone();
            r
        };
        if !wanted.is_empty() {
            return Reply {
                code: ResponseCode::NoError,
                authoritative: true,
                answers: wanted.into_iter().map(with_query_case).collect(),
                authorities: Vec::new(),
            };
        }
        let code = if self.names.contains(&k) {
            ResponseCode::NoError
        } else {
            ResponseCode::NXDomain
        };
        Reply {
            code,
            authoritative: true,
            answers: Vec::new(),
            authorities: vec![self.negative_soa()],
        }
    }

    /// The SOA for a negative answer: TTL min(SOA TTL, minimum) (RFC 2308 §3).
    fn negative_soa(&self) -> Record {
        let mut soa = self.soa.clone();
        if let RData::SOA(data) = &soa.data {
            soa.ttl = soa.ttl.min(data.minimum);
        }
        soa
    }

    /// A full zone transfer's records: SOA, every record, SOA (RFC 5936 §2.2).
    pub fn transfer(&self) -> Vec<Record> {
        let mut out = self.ordered.clone();
        out.push(self.soa.clone());
        out
    }

    pub fn soa(&self) -> &Record {
        &self.soa
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domains::names::{OperatorRecord, operator_records};
    use crate::domains::zone::Block;

    fn snapshot() -> Snapshot {
        let records: Vec<OperatorRecord> = operator_records(
            7,
            "wl.relay.test",
            "ip4:127.0.0.1",
            "mx.relay.test",
            &[("hr1".into(), "A".repeat(400)), ("hr2".into(), "QUJD".into())],
        );
        let content = ZoneContent {
            blocks: vec![Block {
                comment: vec![],
                records,
            }],
            ttl: 600,
        };
        let apex = Apex {
            zone: "wl.relay.test".into(),
            nameservers: vec!["ns1.relay.test".into(), "ns2.relay.test".into()],
            hostmaster: "hostmaster@relay.test".into(),
            negative_ttl: 60,
        };
        Snapshot::build(&content, &apex, 42).unwrap()
    }

    fn n(text: &str) -> Name {
        Name::from_ascii(text).unwrap()
    }

    #[test]
    fn answer_table() {
        let s = snapshot();
        use RecordType::*;
        use ResponseCode as C;
        // (name, type) → (code, answers, authority SOA, AA)
        let cases = [
            ("wl.relay.test.", SOA, C::NoError, 1, 0, true),
            ("wl.relay.test.", NS, C::NoError, 2, 0, true),
            ("WL.relay.TEST.", NS, C::NoError, 2, 0, true),
            ("t7.wl.relay.test.", TXT, C::NoError, 1, 0, true),
            ("t7.wl.relay.test.", MX, C::NoError, 1, 0, true),
            ("t7.wl.relay.test.", A, C::NoError, 0, 1, true),
            ("hr1.domainkey.t7.wl.relay.test.", TXT, C::NoError, 1, 0, true),
            ("domainkey.t7.wl.relay.test.", TXT, C::NoError, 0, 1, true),
            ("hr3.domainkey.t7.wl.relay.test.", TXT, C::NXDomain, 0, 1, true),
            ("t8.wl.relay.test.", TXT, C::NXDomain, 0, 1, true),
            ("t7.wl.relay.test.", ANY, C::NoError, 1, 0, true),
            ("example.com.", A, C::Refused, 0, 0, false),
            ("relay.test.", SOA, C::Refused, 0, 0, false),
        ];
        for (name, qtype, code, answers, soa, aa) in cases {
            let r = s.answer(&n(name), qtype);
            assert_eq!(
                (r.code, r.answers.len(), r.authorities.len(), r.authoritative),
                (code, answers, soa, aa),
                "{name} {qtype}"
            );
            assert!(r.answers.iter().all(|a| a.name == n(name)), "owner keeps the query's case");
        }
    }

    #[test]
    fn negative_answers_carry_the_soa_with_the_negative_ttl() {
        let r = snapshot().answer(&n("t8.wl.relay.test."), RecordType::TXT);
        let RData::SOA(soa) = &r.authorities[0].data else {
            panic!("SOA expected")
        };
        assert_eq!((soa.serial, soa.minimum, r.authorities[0].ttl), (42, 60, 60));
        assert_eq!(soa.rname, n("hostmaster.relay.test."));
    }

    #[test]
    fn dkim_txt_is_split_into_255_byte_strings() {
        let r = snapshot().answer(&n("hr1.domainkey.t7.wl.relay.test."), RecordType::TXT);
        let RData::TXT(txt) = &r.answers[0].data else { panic!("TXT") };
        assert!(txt.txt_data.len() == 2 && txt.txt_data.iter().all(|s| s.len() <= 255));
        assert_eq!(r.answers[0].ttl, 600);
    }

    #[test]
    fn transfer_starts_and_ends_with_the_soa() {
        let t = snapshot().transfer();
        assert_eq!(t.first().map(Record::record_type), Some(RecordType::SOA));
        assert_eq!(t.last().map(Record::record_type), Some(RecordType::SOA));
        assert_eq!(t.len(), 1 + 2 + 4 + 1);
    }

    #[test]
    fn serials_increase() {
        let cases = [(0, 1_700_000_000, 1_700_000_000), (1_800_000_000, 1_700_000_000, 1_800_000_001), (u32::MAX, 5, 0)];
        for (old, now, want) in cases {
            assert_eq!(next_serial(old, now), want, "{old} at {now}");
        }
    }
}
