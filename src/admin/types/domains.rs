//! Customer domain bodies: adding a domain, its state, the customer's
//! three records and the operator's records, the result of a check, and
//! their conversions from the domain registry's types.

use crate::domains::{
    CheckStatus, CustomerRecord, DomainRecord, DomainState, OperatorData, OperatorRecord, Overall, RecordCheck, Transition, Verification,
};
use serde::{Deserialize, Serialize};

/// `POST /api/domains`: register a customer domain (it starts pending).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddDomainV1 {
    /// The customer's domain, e.g. `customer.nl` (any case, trailing dot
    /// allowed, internationalised names as typed).
    pub domain: String,
    /// DKIM selectors become `<prefix>1` and `<prefix>2`; default
    /// `domains.selector_prefix` (`hr`). For a customer who already has
    /// `hr1._domainkey` from another provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector_prefix: Option<String>,
    /// The return-path host label, e.g. `em4821`; default
    /// `domains.return_path_prefix` and four random digits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub return_path_label: Option<String>,
}

/// Where a customer domain stands (DESIGN "Verification").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DomainStateV1 {
    /// Added; the records have never all been right.
    Pending,
    /// All three records are right: mail is signed as the customer.
    Verified,
    /// Was verified, a record is wrong now; still signs as the customer
    /// during the grace period.
    Failing,
    /// Stayed wrong past the grace period: unverified sending.
    Unverified,
}

impl DomainStateV1 {
    /// The name used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            DomainStateV1::Pending => "pending",
            DomainStateV1::Verified => "verified",
            DomainStateV1::Failing => "failing",
            DomainStateV1::Unverified => "unverified",
        }
    }
}

/// One state change of a domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransitionV1 {
    pub at_ms: i64,
    pub from: DomainStateV1,
    pub to: DomainStateV1,
    /// Why, e.g. `records wrong: hr1._domainkey.customer.nl: missing`.
    pub reason: String,
}

/// One of the three records the customer creates (DESIGN "The three
/// records"): `em4821.customer.nl CNAME t7.wl.relay.example.net`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerRecordV1 {
    /// Fully qualified host in the customer's zone.
    pub host: String,
    /// The host relative to the customer's domain (`em4821`,
    /// `hr1._domainkey`): what most DNS providers want typed in.
    pub label: String,
    /// Always `CNAME`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The target in the operator's zone.
    pub value: String,
    pub purpose: String,
}

/// One record the operator's zone must hold for a domain (DESIGN "The
/// operator's zone").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorRecordV1 {
    /// Fully qualified, without trailing dot.
    pub name: String,
    /// `TXT` or `MX`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The data as one text: the whole TXT value, or `10 mx.relay.example.net`.
    pub value: String,
    /// For TXT, the value as character-strings of at most 255 bytes, as
    /// they must be published; empty for MX.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub strings: Vec<String>,
}

/// `GET /api/domains/{domain}`, and the answer to an add or a removal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainV1 {
    /// Lowercase ASCII, no trailing dot.
    pub domain: String,
    /// The tenant label in the operator's zone, e.g. `t7`; stable, never
    /// reused.
    pub tenant: String,
    pub state: DomainStateV1,
    pub state_since_ms: i64,
    /// Whether mail from the domain is signed as the customer right now
    /// (verified, or failing inside the grace period).
    pub signs_as_customer: bool,
    pub created_ms: i64,
    /// When the records were last checked; `None` before the first check.
    pub last_check_ms: Option<i64>,
    pub next_check_ms: i64,
    /// The envelope sender's domain once verified, e.g. `em4821.customer.nl`.
    pub return_path: String,
    /// The DKIM selector mail is signed with, e.g. `hr1`.
    pub selector: String,
    /// State changes, oldest first.
    pub history: Vec<TransitionV1>,
    /// Return path, DKIM selector 1, DKIM selector 2.
    pub customer_records: Vec<CustomerRecordV1>,
    pub operator_records: Vec<OperatorRecordV1>,
    /// Each selector's DKIM key and what it is doing (rotation).
    #[serde(default)]
    pub keys: Vec<super::KeyV1>,
    /// DKIM key rotation steps, oldest first.
    #[serde(default)]
    pub key_history: Vec<super::KeyStepV1>,
}

/// `GET /api/domains`: every registered domain, sorted by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainListV1 {
    pub domains: Vec<DomainV1>,
}

/// The verdict over a domain's three records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OverallV1 {
    /// All three records are right.
    Verified,
    /// At least one record is wrong.
    NotVerified,
    /// Nothing is known to be wrong, but a lookup failed; try again later.
    Temporary,
}

/// What one record check found, by machine name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatusV1 {
    Ok,
    Missing,
    PointsElsewhere,
    ZoneAppendedTwice,
    /// Addresses without a CNAME: flattened or proxied by the DNS provider.
    Flattened,
    TxtInsteadOfCname,
    /// The CNAME is right, the DKIM key at its end is not the relay's.
    KeyMismatch,
    /// SERVFAIL, timeout: nothing could be concluded.
    Temporary,
    /// A status this client does not know (a newer server).
    #[serde(other)]
    Other,
}

/// One of the three records, checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordCheckV1 {
    /// The customer-side host, e.g. `em4821.customer.nl`.
    pub host: String,
    /// What to type as host name, e.g. `em4821`.
    pub label: String,
    /// The CNAME target expected.
    pub expected: String,
    pub status: CheckStatusV1,
    pub ok: bool,
    /// What is wrong and how to fix it, in words for the customer.
    pub message: String,
}

/// `POST /api/domains/{domain}/verify`: the "check my records" button.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerificationV1 {
    pub domain: String,
    pub overall: OverallV1,
    /// The domain's state after this check was applied.
    pub state: DomainStateV1,
    /// Return path, DKIM selector 1, DKIM selector 2.
    pub records: Vec<RecordCheckV1>,
}

impl From<DomainState> for DomainStateV1 {
    fn from(s: DomainState) -> Self {
        match s {
            DomainState::Pending => DomainStateV1::Pending,
            DomainState::Verified => DomainStateV1::Verified,
            DomainState::Failing => DomainStateV1::Failing,
            DomainState::Unverified => DomainStateV1::Unverified,
        }
    }
}

impl From<&Transition> for TransitionV1 {
    fn from(t: &Transition) -> Self {
        Self {
            at_ms: t.at_ms,
            from: t.from.into(),
            to: t.to.into(),
            reason: t.reason.clone(),
        }
    }
}

impl From<&CustomerRecord> for CustomerRecordV1 {
    fn from(r: &CustomerRecord) -> Self {
        Self {
            host: r.host.clone(),
            label: r.label.clone(),
            kind: r.kind.clone(),
            value: r.value.clone(),
            purpose: r.purpose.clone(),
        }
    }
}

impl From<&OperatorRecord> for OperatorRecordV1 {
    fn from(r: &OperatorRecord) -> Self {
        let (kind, value, strings) = match &r.data {
            OperatorData::Txt(strings) => ("TXT", strings.concat(), strings.clone()),
            OperatorData::Mx { preference, exchange } => ("MX", format!("{preference} {exchange}"), Vec::new()),
        };
        Self {
            name: r.name.clone(),
            kind: kind.into(),
            value,
            strings,
        }
    }
}

impl From<Overall> for OverallV1 {
    fn from(o: Overall) -> Self {
        match o {
            Overall::Verified => OverallV1::Verified,
            Overall::NotVerified => OverallV1::NotVerified,
            Overall::Temporary => OverallV1::Temporary,
        }
    }
}

impl From<&CheckStatus> for CheckStatusV1 {
    fn from(s: &CheckStatus) -> Self {
        match s {
            CheckStatus::Ok => CheckStatusV1::Ok,
            CheckStatus::Missing => CheckStatusV1::Missing,
            CheckStatus::PointsElsewhere { .. } => CheckStatusV1::PointsElsewhere,
            CheckStatus::ZoneAppendedTwice { .. } => CheckStatusV1::ZoneAppendedTwice,
            CheckStatus::Flattened { .. } => CheckStatusV1::Flattened,
            CheckStatus::TxtInsteadOfCname { .. } => CheckStatusV1::TxtInsteadOfCname,
            CheckStatus::KeyMismatch { .. } => CheckStatusV1::KeyMismatch,
            CheckStatus::Temporary { .. } => CheckStatusV1::Temporary,
        }
    }
}

impl From<&RecordCheck> for RecordCheckV1 {
    fn from(r: &RecordCheck) -> Self {
        Self {
            host: r.host.clone(),
            label: r.label.clone(),
            expected: r.expected.clone(),
            status: (&r.status).into(),
            ok: r.status.is_ok(),
            message: r.message(),
        }
    }
}

impl DomainV1 {
    /// The API view of a stored domain, with its records; `signs` says
    /// whether it signs as the customer now (that needs the clock).
    pub fn from_record(r: &DomainRecord, customer: &[CustomerRecord], operator: &[OperatorRecord], signs: bool) -> Self {
        Self {
            domain: r.domain.clone(),
            tenant: crate::domains::names::tenant_label(r.tenant),
            state: r.state.into(),
            state_since_ms: r.state_since_ms,
            signs_as_customer: signs,
            created_ms: r.created_ms,
            last_check_ms: r.last_check_ms,
            next_check_ms: r.next_check_ms,
            return_path: r.return_path_host(),
            selector: r.active_selector(),
            history: r.history.iter().map(TransitionV1::from).collect(),
            customer_records: customer.iter().map(CustomerRecordV1::from).collect(),
            operator_records: operator.iter().map(OperatorRecordV1::from).collect(),
            keys: super::rotation::keys(r),
            key_history: r.keys.steps.iter().map(super::KeyStepV1::from).collect(),
        }
    }
}

impl VerificationV1 {
    /// The API view of a check of `domain`, which left it in `state`.
    pub fn new(domain: &str, state: DomainState, v: &Verification) -> Self {
        Self {
            domain: domain.to_string(),
            overall: v.overall.into(),
            state: state.into(),
            records: v.records.iter().map(RecordCheckV1::from).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_names_match_the_wire() {
        for state in [
            DomainState::Pending,
            DomainState::Verified,
            DomainState::Failing,
            DomainState::Unverified,
        ] {
            let s = DomainStateV1::from(state);
            assert_eq!(serde_json::to_value(s).unwrap(), serde_json::Value::String(s.as_str().into()));
            assert_eq!(s.as_str(), state.to_string());
        }
        let cases = [
            (CheckStatus::Ok, "ok"),
            (CheckStatus::PointsElsewhere { found: "x.test".into() }, "points_elsewhere"),
            (CheckStatus::TxtInsteadOfCname { found: "v=spf1".into() }, "txt_instead_of_cname"),
            (CheckStatus::KeyMismatch { found: None }, "key_mismatch"),
        ];
        for (status, want) in cases {
            assert_eq!(serde_json::to_value(CheckStatusV1::from(&status)).unwrap(), serde_json::json!(want));
            // The same name as the stored status's tag.
            assert_eq!(serde_json::to_value(&status).unwrap()["status"], serde_json::json!(want));
        }
        let newer: CheckStatusV1 = serde_json::from_str("\"dnssec_bogus\"").unwrap();
        assert_eq!(newer, CheckStatusV1::Other);
        let bad = serde_json::from_str::<AddDomainV1>(r#"{"domain":"customer.nl","selector_prefx":"s"}"#);
        assert!(bad.unwrap_err().to_string().contains("selector_prefx"));
    }
}
