//! Just enough DMARC (RFC 7489) to know whether unaligned mail from a
//! domain would be quarantined or rejected.

/// A domain's requested handling of failing mail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DmarcPolicy {
    None,
    Quarantine,
    Reject,
}

impl DmarcPolicy {
    /// The `p=` word, for people (never the debug form).
    pub fn as_str(self) -> &'static str {
        match self {
            DmarcPolicy::None => "none",
            DmarcPolicy::Quarantine => "quarantine",
            DmarcPolicy::Reject => "reject",
        }
    }
}

/// The parts of a DMARC record that matter here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DmarcRecord {
    pub p: DmarcPolicy,
    /// Policy for subdomains; `p` when absent.
    pub sp: Option<DmarcPolicy>,
    /// `pct=`: share of failing mail the policy applies to.
    pub pct: u8,
}

fn policy(value: &str) -> Option<DmarcPolicy> {
    match value.trim().to_ascii_lowercase().as_str() {
        "none" => Some(DmarcPolicy::None),
        "quarantine" => Some(DmarcPolicy::Quarantine),
        "reject" => Some(DmarcPolicy::Reject),
        _ => None,
    }
}

/// Parses one TXT string; `None` when it is not a DMARC record (RFC 7489
/// §6.3: `v=DMARC1` first, `p=` required — except that a record with an
/// invalid `p=` but a valid `rua` is treated as `p=none`; we simply
/// require a valid p).
pub fn parse_dmarc(txt: &str) -> Option<DmarcRecord> {
    let mut tags = txt.split(';').map(|t| t.trim()).filter(|t| !t.is_empty());
    let version = tags.next()?;
    let (k, v) = version.split_once('=')?;
    if !k.trim().eq_ignore_ascii_case("v") || !v.trim().eq_ignore_ascii_case("DMARC1") {
        return None;
    }
    let (mut p, mut sp, mut pct) = (None, None, 100u8);
    for tag in tags {
        let Some((k, v)) = tag.split_once('=') else { continue };
        match k.trim().to_ascii_lowercase().as_str() {
            "p" => p = policy(v),
            "sp" => sp = policy(v),
            "pct" => pct = v.trim().parse::<u8>().unwrap_or(100).min(100),
            _ => {}
        }
    }
    Some(DmarcRecord { p: p?, sp, pct })
}

/// The policy applying to mail from `domain`, given the record found at
/// `_dmarc.<domain>` (`exact`) or else at the organizational domain
/// (`org`). `pct=0` means the policy is not applied.
pub fn policy_for(exact: Option<DmarcRecord>, org: Option<DmarcRecord>) -> Option<DmarcPolicy> {
    let chosen = match (exact, org) {
        (Some(r), _) => (r.p, r.pct),
        (None, Some(r)) => (r.sp.unwrap_or(r.p), r.pct),
        (None, None) => return None,
    };
    Some(if chosen.1 == 0 { DmarcPolicy::None } else { chosen.0 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use DmarcPolicy::*;

    #[test]
    fn records() {
        let cases = [
            ("v=DMARC1; p=reject", Some((Reject, Option::None, 100))),
            ("v=DMARC1;p=quarantine;sp=none;pct=50", Some((Quarantine, Some(None), 50))),
            ("V=dmarc1; P=None; rua=mailto:x@y", Some((None, Option::None, 100))),
            ("v=spf1 -all", Option::None),
            ("v=DMARC1; rua=mailto:x@y", Option::None),
            ("p=reject; v=DMARC1", Option::None),
        ];
        for (txt, want) in cases {
            assert_eq!(parse_dmarc(txt).map(|r| (r.p, r.sp, r.pct)), want, "{txt}");
        }
    }

    #[test]
    fn applicable_policy() {
        let rec = |p, sp, pct| Some(DmarcRecord { p, sp, pct });
        let cases = [
            (rec(Reject, Option::None, 100), Option::None, Some(Reject)),
            (Option::None, rec(Reject, Some(Quarantine), 100), Some(Quarantine)),
            (Option::None, rec(Reject, Option::None, 100), Some(Reject)),
            (rec(Quarantine, Option::None, 0), Option::None, Some(None)),
            (Option::None, Option::None, Option::None),
        ];
        for (exact, org, want) in cases {
            assert_eq!(policy_for(exact, org), want, "{exact:?} {org:?}");
        }
    }
}
