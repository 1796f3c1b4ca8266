//! `herald inspect` / `POST /api/inspect` / `GET /api/inspect/{id}`: a
//! message's DKIM, SPF and DMARC as a receiver computes them, each verdict
//! with its cause in words, and the identity herald would choose.
//!
//! Verdicts are mail-auth's (`pass`, `fail`, `neutral`, `permerror`,
//! `temperror`, `none`, `softfail`); the `cause`/`explanation` texts are
//! herald's.

use serde::{Deserialize, Serialize};

/// The SPF inputs a receiver has and a file does not: the connecting IP,
/// its HELO name and the envelope sender. Query parameters of
/// `POST /api/inspect`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InspectRequestV1 {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mail_from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub helo: Option<String>,
}

/// The whole report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InspectV1 {
    /// The single From address's domain, when there is one.
    pub from_domain: Option<String>,
    /// Set for a stored message (`--id`): what herald sends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored: Option<StoredV1>,
    /// One per DKIM-Signature field, top to bottom.
    pub dkim: Vec<DkimCheckV1>,
    /// Absent when no IP was given (SPF needs the connecting address).
    pub spf: Option<SpfCheckV1>,
    pub dmarc: Option<DmarcCheckV1>,
    /// Which identity herald would choose for the From domain now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<IdentityV1>,
}

/// A stored message as herald will send it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredV1 {
    pub id: String,
    /// MAIL FROM of the delivery.
    pub envelope_from: String,
    /// The header fields herald places in front of the message
    /// (DKIM-Signature, Received, Date/Message-ID when missing, a rewritten From).
    pub prepared_headers: String,
    /// `d=`/`s=` herald signs with, and why.
    pub signed_domain: String,
    pub selector: String,
    pub reason: String,
    /// False when the message has not been prepared yet (no delivery
    /// attempt so far): the block shown is what preparing it now gives.
    pub prepared_at_first_attempt: bool,
}

/// One DKIM-Signature.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DkimCheckV1 {
    /// `d=`, `s=`, `a=`, `c=` (header/body) and `h=`.
    pub domain: String,
    pub selector: String,
    pub algorithm: String,
    pub canonicalization: String,
    pub headers: Vec<String>,
    /// `x=` (seconds since the epoch), when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<u64>,
    /// `<s>._domainkey.<d>`.
    pub key_name: String,
    /// The TXT record found there, or what the lookup said.
    pub key: String,
    /// RSA modulus length of the published key, when it could be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_bits: Option<u32>,
    pub result: String,
    /// Why it did not pass, in words; absent on pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
}

/// SPF for the envelope sender (or HELO name when the sender is null).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpfCheckV1 {
    pub domain: String,
    pub ip: String,
    pub helo: String,
    pub mail_from: String,
    /// The `v=spf1` record at the domain, if any.
    pub record: Option<String>,
    pub result: String,
    /// The top-level term that decided (`ip4:192.0.2.0/24`, `include:…`,
    /// `-all`), when herald could tell.
    pub mechanism: Option<String>,
    pub explanation: String,
}

/// DMARC for the From domain.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DmarcCheckV1 {
    pub domain: String,
    /// Where the policy record was found and its text.
    pub record_name: Option<String>,
    pub record: Option<String>,
    /// `none` / `quarantine` / `reject` after `sp=`/`t=`.
    pub policy: String,
    /// `relaxed` or `strict`.
    pub adkim: String,
    pub aspf: String,
    /// The identifier that aligned, e.g. `DKIM d=customer.nl (relaxed)`.
    pub aligned: Option<String>,
    pub dkim_result: String,
    pub spf_result: String,
    pub result: String,
    /// What a receiver following the policy does with it.
    pub disposition: String,
    pub explanation: String,
}

/// The identity herald would use for the From domain, decided now.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityV1 {
    pub from_domain: String,
    /// `customer` or `relay`.
    pub kind: String,
    /// `d=` and `s=` herald signs with.
    pub signing_domain: String,
    pub selector: String,
    /// The host of the envelope sender (`em1234.customer.nl` or the relay's bounce domain).
    pub envelope_domain: String,
    pub reason: String,
}
