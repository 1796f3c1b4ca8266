//! Bounce classes: what a failure means, in words a billing app can show
//! its customer ("this address does not exist", "the mailbox is full"),
//! and whether it is hard (retrying the address is pointless) or soft.
//! [`classify`] is a pure function of the reply; the suppression list
//! (the `suppression` module) acts on the hard ones.

mod classify;
#[cfg(test)]
mod corpus;

pub use classify::{classify, parse_reply};
use serde::{Deserialize, Serialize};

/// Why a delivery failed, as a class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BounceClass {
    InvalidRecipient,
    MailboxFull,
    MailboxDisabled,
    PolicyDmarc,
    PolicySpf,
    ReputationBlock,
    ContentSpam,
    MessageTooLarge,
    RateLimited,
    TlsRequired,
    DnsFailure,
    RelayDenied,
    /// Refused at submission or failed at once: on the suppression list.
    Suppressed,
    OtherPermanent,
    OtherTemporary,
}

impl BounceClass {
    pub const ALL: [BounceClass; 15] = [
        BounceClass::InvalidRecipient,
        BounceClass::MailboxFull,
        BounceClass::MailboxDisabled,
        BounceClass::PolicyDmarc,
        BounceClass::PolicySpf,
        BounceClass::ReputationBlock,
        BounceClass::ContentSpam,
        BounceClass::MessageTooLarge,
        BounceClass::RateLimited,
        BounceClass::TlsRequired,
        BounceClass::DnsFailure,
        BounceClass::RelayDenied,
        BounceClass::Suppressed,
        BounceClass::OtherPermanent,
        BounceClass::OtherTemporary,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            BounceClass::InvalidRecipient => "invalid_recipient",
            BounceClass::MailboxFull => "mailbox_full",
            BounceClass::MailboxDisabled => "mailbox_disabled",
            BounceClass::PolicyDmarc => "policy_dmarc",
            BounceClass::PolicySpf => "policy_spf",
            BounceClass::ReputationBlock => "reputation_block",
            BounceClass::ContentSpam => "content_spam",
            BounceClass::MessageTooLarge => "message_too_large",
            BounceClass::RateLimited => "rate_limited",
            BounceClass::TlsRequired => "tls_required",
            BounceClass::DnsFailure => "dns_failure",
            BounceClass::RelayDenied => "relay_denied",
            BounceClass::Suppressed => "suppressed",
            BounceClass::OtherPermanent => "other_permanent",
            BounceClass::OtherTemporary => "other_temporary",
        }
    }

    /// The class in words, for the billing app's customer.
    pub fn words(self) -> &'static str {
        match self {
            BounceClass::InvalidRecipient => "the address does not exist",
            BounceClass::MailboxFull => "the mailbox is full",
            BounceClass::MailboxDisabled => "the mailbox is disabled or closed",
            BounceClass::PolicyDmarc => "the receiver rejected it under the sender domain's DMARC policy",
            BounceClass::PolicySpf => "the receiver rejected it because SPF failed",
            BounceClass::ReputationBlock => "the receiver blocked the sending server (reputation or policy)",
            BounceClass::ContentSpam => "the receiver rejected the content as spam",
            BounceClass::MessageTooLarge => "the message is too large for the receiver",
            BounceClass::RateLimited => "the receiver is limiting how fast it accepts mail",
            BounceClass::TlsRequired => "the receiver or route requires TLS that could not be used",
            BounceClass::DnsFailure => "the recipient's domain cannot receive mail (DNS)",
            BounceClass::RelayDenied => "the receiver refused to relay",
            BounceClass::Suppressed => "the address is on the suppression list after an earlier hard bounce",
            BounceClass::OtherPermanent => "refused permanently for another reason",
            BounceClass::OtherTemporary => "could not be delivered for a temporary reason",
        }
    }

    /// Classes that never make a failure hard: retrying later can work.
    fn always_soft(self) -> bool {
        matches!(self, BounceClass::MailboxFull | BounceClass::RateLimited | BounceClass::OtherTemporary)
    }
}

/// A failure's class, and whether it is hard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bounce {
    pub class: BounceClass,
    pub hard: bool,
}

/// A bounce as the API, CLI, events and webhooks show it: the class,
/// hard or soft, and the class in words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BounceV1 {
    pub class: BounceClass,
    pub hard: bool,
    pub description: String,
}

impl From<Bounce> for BounceV1 {
    fn from(b: Bounce) -> Self {
        BounceV1 { class: b.class, hard: b.hard, description: b.class.words().to_string() }
    }
}

/// Failures counted by class and hardness since start (`/metrics`).
#[derive(Default)]
pub struct Counters([std::sync::atomic::AtomicU64; BounceClass::ALL.len() * 2]);

impl Counters {
    pub fn count(&self, b: Bounce) {
        if let Some(i) = BounceClass::ALL.iter().position(|c| *c == b.class) {
            self.0[i * 2 + usize::from(b.hard)].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// `(class, hard, count)` for every pair.
    pub fn snapshot(&self) -> Vec<(BounceClass, bool, u64)> {
        BounceClass::ALL
            .iter()
            .enumerate()
            .flat_map(|(i, c)| [false, true].map(|hard| (*c, hard, self.0[i * 2 + usize::from(hard)].load(std::sync::atomic::Ordering::Relaxed))))
            .collect()
    }
}

impl Bounce {
    pub fn new(class: BounceClass, permanent: bool) -> Bounce {
        Bounce { class, hard: permanent && !class.always_soft() }
    }
}
