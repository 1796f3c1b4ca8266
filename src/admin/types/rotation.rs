//! DKIM key rotation bodies: each selector's key phase, the rotation's
//! steps (the domain's key history), and the answer to `rotate`.

use super::domains::RecordCheckV1;
use crate::domains::relay_key::RelayRotated;
use crate::domains::rotation::Keys;
use crate::domains::{DomainRecord, KeyPhase, KeyStep};
use serde::{Deserialize, Serialize};

/// One selector's key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyV1 {
    /// e.g. `hr2`.
    pub selector: String,
    /// `active`, `standby`, `publishing`, `retiring`, `withdrawn`.
    pub phase: String,
    /// Publishing: since when; retiring: published until when;
    /// withdrawn: since when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_ms: Option<i64>,
}

/// One rotation step, as kept in the domain's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyStepV1 {
    pub at_ms: i64,
    pub selector: String,
    /// `published`, `switched`, `withdrawn` or `revoked`.
    pub step: String,
    pub detail: String,
}

/// `POST /api/domains/{domain}/rotate`: a rotation started (or, while one
/// waits for its new key, checked again) and where it stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotationV1 {
    pub domain: String,
    /// The selector that signs now.
    pub selector: String,
    /// Whether signing moved to the new key in this call.
    pub switched: bool,
    /// The selector whose new key waits to be visible, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publishing: Option<String>,
    /// The visibility check of the new key through the customer's CNAME.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<RecordCheckV1>,
    /// Whether the embedded DNS server publishes the zone (else the
    /// operator must publish `herald dns zone`).
    pub embedded_dns: bool,
    pub keys: Vec<KeyV1>,
    pub steps: Vec<KeyStepV1>,
}

/// Both selectors' keys of `r`.
pub fn keys(r: &DomainRecord) -> Vec<KeyV1> {
    keys_of(&r.selectors(), &r.keys)
}

/// The keys of two `selectors` in phases `keys`.
pub fn keys_of(selectors: &[String; 2], keys: &Keys) -> Vec<KeyV1> {
    selectors
        .iter()
        .cloned()
        .zip(keys.phases())
        .map(|(selector, phase)| KeyV1 {
            selector,
            phase: phase.to_string(),
            at_ms: match phase {
                KeyPhase::Active | KeyPhase::Standby => None,
                KeyPhase::Publishing { since_ms } => Some(since_ms),
                KeyPhase::Retiring { until_ms } => Some(until_ms),
                KeyPhase::Withdrawn { at_ms } => Some(at_ms),
            },
        })
        .collect()
}

impl From<&KeyStep> for KeyStepV1 {
    fn from(s: &KeyStep) -> Self {
        Self {
            at_ms: s.at_ms,
            selector: s.selector.clone(),
            step: s.step.clone(),
            detail: s.detail.clone(),
        }
    }
}

impl RotationV1 {
    pub fn new(r: &DomainRecord, switched: bool, check: Option<RecordCheckV1>, embedded_dns: bool) -> Self {
        Self {
            domain: r.domain.clone(),
            selector: r.active_selector(),
            switched,
            publishing: r.keys.publishing().map(|i| r.selectors()[i].clone()),
            check,
            embedded_dns,
            keys: keys(r),
            steps: r.keys.steps.iter().map(KeyStepV1::from).collect(),
        }
    }
}

impl RotationV1 {
    /// The relay's own key rotation (`POST /api/relay/rotate`).
    pub fn relay(r: &RelayRotated, check: Option<RecordCheckV1>) -> Self {
        Self {
            domain: r.domain.clone(),
            selector: r.selector().to_string(),
            switched: r.switched,
            publishing: r.keys.publishing().map(|i| r.selectors[i].clone()),
            check,
            embedded_dns: r.embedded,
            keys: keys_of(&r.selectors, &r.keys),
            steps: r.keys.steps.iter().map(KeyStepV1::from).collect(),
        }
    }
}
