//! What goes out, fixed at the first attempt: the identity, the envelope
//! sender, a From rewrite if the author's DMARC policy needs one, the
//! relay's headers and the DKIM signature over all of it. Stored with the
//! message so every retry sends the same bytes.

use crate::config::IdentityConfig;
use crate::dkim::{KeyStore, SignPool, Signer};
use crate::dns::{Dns, DnsError};
use crate::message::field_ranges;
use crate::policy::{self, DmarcPolicy, Identity, parse_dmarc, policy_for};
use crate::store::{MessageRecord, Prepared};
use std::collections::HashMap;
use std::sync::Mutex;

/// What preparing needs.
pub struct Preparer {
    pub hostname: String,
    pub identity: IdentityConfig,
    pub dns: Dns,
    pub keys: KeyStore,
    pub clock: crate::clock::SharedClock,
    signers: Mutex<HashMap<(String, String), (String, Signer)>>,
    pool: SignPool,
    /// The relay's signing selector now (it changes with key rotation);
    /// `identity.dkim_selector` when not set.
    relay_selector: Option<RelaySelector>,
}

/// Tells which selector the relay's own key signs with now.
pub type RelaySelector = Box<dyn Fn() -> Option<String> + Send + Sync>;

impl Preparer {
    pub fn new(hostname: String, identity: IdentityConfig, dns: Dns, keys: KeyStore, clock: crate::clock::SharedClock) -> Self {
        let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2).min(4);
        Self { hostname, identity, dns, keys, clock, signers: Mutex::new(HashMap::new()), pool: SignPool::new(threads), relay_selector: None }
    }

    /// Where the relay's current selector comes from (the domain
    /// registry, which rotates it).
    pub fn with_relay_selector(mut self, selector: RelaySelector) -> Self {
        self.relay_selector = Some(selector);
        self
    }

    /// The selector the relay's own signature uses now.
    pub fn relay_selector(&self) -> String {
        self.relay_selector.as_ref().and_then(|f| f()).unwrap_or_else(|| self.identity.dkim_selector.clone())
    }

    /// The signer for `domain`/`selector`, from memory or the key store
    /// (the relay's own key is generated on first use). The stored key is
    /// read every time (one sled lookup): key rotation replaces the key
    /// behind a selector, and the parsed signer is only reused while the
    /// stored key is the same.
    pub fn signer(&self, domain: &str, selector: &str) -> Result<Signer, String> {
        let k = (domain.to_string(), selector.to_string());
        let stored = self.keys.get_or_create(domain, selector, self.clock.now_ms())?;
        if let Some((pkcs8, s)) = self.signers.lock().map_err(|_| "signer cache poisoned")?.get(&k)
            && *pkcs8 == stored.pkcs8
        {
            return Ok(s.clone());
        }
        let signer = Signer::new(domain, selector, &stored.der()?)?;
        self.signers.lock().map_err(|_| "signer cache poisoned")?.insert(k, (stored.pkcs8, signer.clone()));
        Ok(signer)
    }

    /// The DMARC policy for mail from `domain`: `_dmarc.<domain>`, else the
    /// organizational domain's (approximated as the last two labels).
    /// `Err` only for temporary DNS failure.
    pub async fn dmarc(&self, domain: &str) -> Result<Option<DmarcPolicy>, String> {
        let exact = self.dmarc_record(domain).await?;
        let labels: Vec<&str> = domain.split('.').collect();
        let org = if exact.is_none() && labels.len() > 2 { self.dmarc_record(&labels[labels.len() - 2..].join(".")).await? } else { None };
        Ok(policy_for(exact, org))
    }

    async fn dmarc_record(&self, domain: &str) -> Result<Option<policy::DmarcRecord>, String> {
        match self.dns.txt(&format!("_dmarc.{domain}")).await {
            Ok(txts) => Ok(txts.iter().find_map(|t| parse_dmarc(t))),
            Err(DnsError::NxDomain | DnsError::NoData) => Ok(None),
            Err(DnsError::Temporary(e)) => Err(format!("DMARC lookup for {domain}: {e}")),
        }
    }

    /// Builds the [`Prepared`] block. `Err` means "try again later"
    /// (temporary DNS failure or a key problem).
    pub async fn prepare(&self, record: &MessageRecord, body: std::sync::Arc<Vec<u8>>) -> Result<Prepared, String> {
        let (mut identity, mut reason) = match &record.decision {
            Some(d) => (d.identity.clone(), d.reason.clone()),
            None => (Identity::Relay, "sending as the relay".to_string()),
        };
        if let Identity::Customer { domain, selector, .. } = &identity
            && self.keys.get(domain, selector).map_err(|e| e.to_string())?.is_none()
        {
            // The domain was removed after acceptance: its key is gone.
            reason = format!("{domain} has no key {selector} any more (domain removed?), sending as the relay");
            identity = Identity::Relay;
        }
        let (sign_domain, selector) = match &identity {
            Identity::Relay => (self.identity.domain.clone(), self.relay_selector()),
            Identity::Customer { domain, selector, .. } => (domain.clone(), selector.clone()),
        };
        let envelope_from = if record.is_dsn { String::new() } else { policy::envelope_sender(&identity, &self.identity.bounce_domain, &record.id) };
        let mut prefix = record.received_header.clone();
        let mut skip = None;
        if !record.is_dsn && self.identity.rewrite_from && identity == Identity::Relay {
            let dmarc = self.dmarc(&record.from_domain).await?;
            if policy::must_rewrite_from(&identity, dmarc, true) {
                let from = crate::message::check_from(&body).map_err(|e| e.to_string())?;
                let has_reply_to = !field_ranges(&body, "Reply-To").is_empty();
                prefix.push_str(&policy::rewritten_from(from.name.as_deref(), &from.address, &self.identity.relay_name, &self.identity.domain, has_reply_to));
                skip = field_ranges(&body, "From").first().copied();
                reason = format!("{reason}; DMARC p={} for {}, From rewritten", dmarc.map_or("none", |p| p.as_str()), record.from_domain);
            }
        }
        // RFC 6409 §8: Date and Message-ID when missing, before signing.
        prefix.push_str(&crate::message::missing_fields(&body, record.id.as_str(), &self.hostname, record.received_ms / 1000));
        let signer = self.signer(&sign_domain, &selector)?;
        let unsigned = Prepared { envelope_from, prefix, skip, signed_domain: sign_domain, selector, reason, smtputf8: record.smtputf8 };
        // RSA signing is CPU work: keep it off the I/O threads.
        self.pool
            .run(move || {
                let chunks = unsigned.chunks(&body);
                let signature = signer.sign(&chunks)?;
                Ok(Prepared { prefix: format!("{signature}{}", unsigned.prefix), ..unsigned })
            })
            .await?
    }
}
