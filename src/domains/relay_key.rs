//! The relay's own DKIM key (`d=<identity.domain>`, for unverified
//! sending) rotates the same way as a customer's, between two selectors:
//! `identity.dkim_selector` and the same with `2` appended (`herald`,
//! `herald2`). There is no CNAME here: the key is published at
//! `<selector>._domainkey.<identity.domain>` directly — by the embedded DNS
//! server when that name lies inside `domains.zone`, else by the operator
//! from `herald dns zone` — and signing switches once the relay's resolver
//! sees it there.
//!
//! The second selector has no key until the first rotation (its phase
//! `standby` publishes nothing), so a relay that never rotates publishes
//! one record, as before.

use super::rotation::{self, Advanced, KeyPhase, Keys};
use super::verify::{CheckStatus, dkim_public_key};
use super::zone::RelayIdentity;
use super::{Domains, DomainsError, names};
use crate::dkim::KeyStore;
use crate::dns::DnsError;

/// The relay's two selectors: `herald` → `[herald, herald2]`.
pub fn relay_selectors(selector: &str) -> [String; 2] {
    [selector.to_ascii_lowercase(), format!("{}2", selector.to_ascii_lowercase())]
}

/// What a relay key rotation did.
#[derive(Debug, Clone)]
pub struct RelayRotated {
    pub domain: String,
    pub selectors: [String; 2],
    pub keys: Keys,
    pub check: Option<CheckStatus>,
    pub switched: bool,
    /// Whether the embedded DNS server publishes the relay's key.
    pub embedded: bool,
}

impl RelayRotated {
    /// The selector that signs.
    pub fn selector(&self) -> &str {
        &self.selectors[self.keys.active()]
    }
}

impl Domains {
    fn relay(&self) -> Result<&RelayIdentity, DomainsError> {
        self.settings
            .relay
            .as_ref()
            .ok_or_else(|| DomainsError::Rotation("the relay's identity is not configured here".into()))
    }

    /// The selector the relay's own signature uses now.
    pub fn relay_selector(&self) -> Option<String> {
        let id = self.settings.relay.as_ref()?;
        let keys = self.registry.relay_keys().unwrap_or_default();
        Some(relay_selectors(&id.selector)[keys.active()].clone())
    }

    /// `(selector, base64 public key)` the relay publishes for itself:
    /// the signing key (made on first use), a key being published or
    /// retained, and a withdrawn one as `""` when revoking.
    pub(super) fn relay_public_keys(&self, id: &RelayIdentity) -> Result<Vec<(String, String)>, DomainsError> {
        let keys = self.registry.relay_keys()?;
        let error = |reason: String| DomainsError::Keys {
            domain: id.domain.clone(),
            reason,
        };
        let mut out = Vec::new();
        for (selector, phase) in relay_selectors(&id.selector).into_iter().zip(keys.phases()) {
            let store = self.registry.keys();
            let key = match phase {
                KeyPhase::Active => Some(store.get_or_create(&id.domain, &selector, self.registry.now_ms()).map_err(error)?),
                KeyPhase::Publishing { .. } | KeyPhase::Retiring { .. } => store.get(&id.domain, &selector)?,
                KeyPhase::Standby => None,
                KeyPhase::Withdrawn { .. } => {
                    if self.registry.config().revoke_withdrawn {
                        out.push((selector.clone(), String::new()));
                    }
                    None
                }
            };
            if let Some(key) = key {
                out.push((selector, key.der().and_then(|der| crate::dkim::public_key_b64(&der)).map_err(error)?));
            }
        }
        Ok(out)
    }

    /// Whether the embedded DNS server serves the relay's key.
    fn relay_embedded(&self, id: &RelayIdentity) -> bool {
        self.settings.embedded && super::zone::in_zone(&id.domain, &self.registry.config().zone())
    }

    /// `herald domain rotate --relay`: a new key for the relay's idle
    /// selector, published; signing switches once the relay's resolver
    /// sees it. While one waits, checks again.
    pub async fn rotate_relay(&self) -> Result<RelayRotated, DomainsError> {
        let id = self.relay()?.clone();
        let selectors = relay_selectors(&id.selector);
        let current = self.registry.relay_keys()?;
        if current.publishing().is_none() {
            let embedded = self.relay_embedded(&id);
            // Refused early, before spending a key generation on it.
            rotation::start(&mut current.clone(), &selectors, 0, !embedded).map_err(DomainsError::RotationBusy)?;
            let now = self.registry.now_ms();
            let idle = selectors[1 - current.active()].clone();
            let domain = id.domain.clone();
            let key = tokio::task::spawn_blocking(move || KeyStore::fresh(&domain, &idle, now))
                .await
                .map_err(|e| DomainsError::Rotation(e.to_string()))?
                .map_err(DomainsError::Rotation)?;
            let mut refused = None;
            self.registry.update_relay_keys(|k| {
                refused = rotation::start(k, &selectors, now, !embedded).err();
            })?;
            if let Some(e) = refused {
                return Err(DomainsError::RotationBusy(e));
            }
            self.registry.keys().replace(&key).map_err(DomainsError::Rotation)?;
            self.registry.touch();
            tracing::info!(domain = %id.domain, selector = %key.selector, "relay DKIM key rotation started: new key published");
        }
        self.advance_relay().await
    }

    /// Moves the relay's rotation on: checks a publishing key, ends a
    /// retention that is over (deleting the key).
    pub(super) async fn advance_relay(&self) -> Result<RelayRotated, DomainsError> {
        let id = self.relay()?.clone();
        let selectors = relay_selectors(&id.selector);
        let keys = self.registry.relay_keys()?;
        let check = match keys.publishing() {
            Some(index) => Some(self.relay_key_visible(&id, &selectors[index]).await),
            None => None,
        };
        let visible = check.as_ref().map(CheckStatus::is_ok);
        let now = self.registry.now_ms();
        let retention = i64::try_from(self.registry.config().key_retention().as_millis()).unwrap_or(i64::MAX);
        let revoke = self.registry.config().revoke_withdrawn;
        let mut done = Vec::new();
        let keys = self.registry.update_relay_keys(|k| {
            done = rotation::advance(k, &selectors, visible, now, retention, revoke);
        })?;
        for step in &done {
            if let Advanced::Withdrawn { index } = step {
                self.registry.keys().remove(&id.domain, &selectors[*index])?;
                self.registry.touch();
            }
        }
        let switched = done.iter().any(|d| matches!(d, Advanced::Switched { .. }));
        if switched {
            tracing::info!(domain = %id.domain, selector = %selectors[keys.active()], "relay DKIM signing switched to the new key");
        }
        Ok(RelayRotated {
            domain: id.domain.clone(),
            embedded: self.relay_embedded(&id),
            selectors,
            keys,
            check,
            switched,
        })
    }

    /// The background task's share: a due relay rotation step, or the
    /// scheduled start (`domains.rotate_every`).
    pub(super) async fn advance_relay_if_due(&self) -> Result<Option<RelayRotated>, DomainsError> {
        if self.settings.relay.is_none() {
            return Ok(None);
        }
        let keys = self.registry.relay_keys()?;
        let now = self.registry.now_ms();
        // Before the first rotation the schedule counts from when the
        // relay's key was made (read, not written: nothing is stored
        // until a rotation happens).
        let since = match self.settings.relay.as_ref() {
            Some(id) if keys.active_since_ms.is_none() => self
                .registry
                .keys()
                .get(&id.domain, &relay_selectors(&id.selector)[keys.active()])?
                .map_or(now, |k| k.created_ms),
            _ => keys.active_since_ms.unwrap_or(now),
        };
        if rotation::scheduled(&keys, since, now, self.rotate_every_ms()) {
            return self.rotate_relay().await.map(Some);
        }
        match rotation::next_due_ms(&keys, since, None) {
            Some(due) if due <= now => self.advance_relay().await.map(Some),
            _ => Ok(None),
        }
    }

    /// Whether the relay's key for `selector` is what the relay's resolver
    /// finds at `<selector>._domainkey.<domain>`.
    async fn relay_key_visible(&self, id: &RelayIdentity, selector: &str) -> CheckStatus {
        let expected = match self.registry.keys().get(&id.domain, selector) {
            Ok(Some(k)) => match k.der().and_then(|der| crate::dkim::public_key_b64(&der)) {
                Ok(p) => p,
                Err(reason) => return CheckStatus::Temporary { reason },
            },
            Ok(None) => return CheckStatus::Temporary { reason: format!("no key {selector} stored yet") },
            Err(e) => return CheckStatus::Temporary { reason: e.to_string() },
        };
        match self.dns.txt(&names::dkim_host(selector, &id.domain)).await {
            Ok(texts) => {
                let found: Vec<String> = texts.iter().filter_map(|t| dkim_public_key(t)).collect();
                if found.contains(&expected) {
                    CheckStatus::Ok
                } else {
                    CheckStatus::KeyMismatch {
                        found: found.into_iter().next(),
                    }
                }
            }
            Err(DnsError::Temporary(reason)) => CheckStatus::Temporary { reason },
            Err(DnsError::NxDomain | DnsError::NoData) => CheckStatus::KeyMismatch { found: None },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_table() {
        assert_eq!(relay_selectors("herald"), ["herald", "herald2"]);
        assert_eq!(relay_selectors("S1"), ["s1", "s12"]);
    }
}
