//! Whitelabel customer domains: the three CNAMEs a customer adds, the
//! records the operator's zone must hold for them, verification that names
//! the mistake, and the state that decides whether mail is signed as the
//! customer.
//!
//! - [`names`]: record naming, pure (`em4821.customer.nl` → `t7.<zone>` …).
//! - [`input`]: what may be registered, with errors a person can act on.
//! - [`registry`]: the stored domains (sled tree `domains`), tenant ids,
//!   DKIM keys, and [`Registry::covering`] for the per-message policy.
//! - [`mirror`]: the registry's copy in memory of what the message path
//!   reads (records, relay key phases), so no message waits for sled.
//! - [`verify`]: DNS checks of the three records (read-only).
//! - [`state`]: the state machine and check schedule, pure.
//! - [`rotation`]: DKIM key rotation between the two selectors, pure.
//! - [`zone`]: the operator zone's content, for `herald dns zone` and the
//!   embedded DNS server (the `dns_server` module).
//!
//! [`Domains`] bundles registry, resolver and configuration for the API,
//! the CLI and the background re-check task.

pub mod recheck;
pub mod input;
mod mirror;
pub mod names;
pub mod registry;
pub mod relay_key;
pub mod rotation;
pub mod state;
pub mod verify;
pub mod zone;

pub use input::AddError;
pub use names::{CustomerRecord, OperatorData, OperatorRecord};
pub use registry::{DomainRecord, Registry, RotationError};
pub use rotation::{KeyPhase, KeyStep};
pub use zone::{RelayIdentity, ZoneContent, ZoneSettings};
pub use state::{DomainState, Timing, Transition};
pub use verify::{CheckStatus, Overall, RecordCheck, Verification};

use crate::clock::SharedClock;
use crate::config::DomainsConfig;
use crate::dkim::KeyStore;
use crate::dns::Dns;
use crate::store::StoreError;
use tokio::task::JoinSet;

/// TTL of the records in the rendered operator zone.
pub const ZONE_TTL: u32 = 3600;
/// Domains verified at once by [`Domains::recheck_due`].
const RECHECK_PARALLEL: usize = 8;

/// Why a domain operation failed.
#[derive(Debug, thiserror::Error)]
pub enum DomainsError {
    #[error("`{0}` is not a registered domain")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the DKIM keys of `{domain}` cannot be read: {reason}")]
    Keys { domain: String, reason: String },
    #[error("cannot rotate: {0}")]
    Rotation(String),
    #[error("cannot rotate now: {0}")]
    RotationBusy(rotation::RotateError),
}

impl From<RotationError> for DomainsError {
    fn from(e: RotationError) -> Self {
        match e {
            RotationError::NotFound(d) => DomainsError::NotFound(d),
            RotationError::Store(e) => DomainsError::Store(e),
            RotationError::Busy(e) => DomainsError::RotationBusy(e),
            RotationError::Keys(e) => DomainsError::Rotation(e),
        }
    }
}

/// Registry, resolver and `[domains]` configuration together; cheap to clone.
#[derive(Clone)]
pub struct Domains {
    registry: Registry,
    dns: Dns,
    settings: ZoneSettings,
    /// Where `domain.*` events go (the store's event log), when set.
    events: Option<crate::store::Store>,
}

/// What `domain rotate` did.
#[derive(Debug, Clone)]
pub struct Rotated {
    pub record: DomainRecord,
    /// The visibility check of the new key just made (None when the
    /// rotation could not be checked, e.g. no rotation under way).
    pub check: Option<CheckStatus>,
    /// Whether signing moved to the new key in this call.
    pub switched: bool,
}

impl Domains {
    pub fn new(registry: Registry, dns: Dns) -> Self {
        Self {
            registry,
            dns,
            settings: ZoneSettings::default(),
            events: None,
        }
    }

    /// How the operator zone is published (TTL, the relay's own records,
    /// embedded DNS or by hand).
    pub fn with_zone_settings(mut self, settings: ZoneSettings) -> Self {
        self.settings = settings;
        self
    }

    pub fn zone_settings(&self) -> &ZoneSettings {
        &self.settings
    }

    /// Sends `domain.*` events to `log` from now on.
    pub fn with_events(mut self, store: crate::store::Store) -> Self {
        self.events = Some(store);
        self
    }

    /// Waits until events emitted so far are durable (readable).
    pub async fn events_durable(&self) {
        if let Some(store) = &self.events
            && let Err(e) = store.durable().await
        {
            tracing::error!(error = %e, "flushing domain events failed");
        }
    }

    /// Appends a `domain.*` event for `record` in `state` (the state write
    /// itself is in the domains tree, just before; both reach the disk with
    /// the next flush).
    pub fn emit(&self, record: &DomainRecord, state: DomainState, reasons: Vec<String>) {
        let Some(store) = &self.events else { return };
        let kind = match state {
            DomainState::Pending => crate::events::EventKind::DomainPending,
            DomainState::Verified => crate::events::EventKind::DomainVerified,
            DomainState::Failing => crate::events::EventKind::DomainFailing,
            DomainState::Unverified => crate::events::EventKind::DomainUnverified,
        };
        let mut e = crate::events::Event::new(kind, self.registry.now_ms());
        e.domain = Some(record.domain.clone());
        e.reasons = reasons;
        if let Err(err) = store.events().apply(sled::Batch::default(), vec![e]) {
            tracing::error!(domain = %record.domain, error = %err, "cannot record the domain event");
        }
    }

    /// Opens the registry (and key store) in `db`.
    pub fn open(db: &sled::Db, dns: Dns, clock: SharedClock, config: &DomainsConfig) -> Result<Self, StoreError> {
        let keys = KeyStore::open(db)?;
        Ok(Self::new(Registry::open(db, keys, clock, config)?, dns))
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The three CNAMEs to show the customer.
    pub fn customer_records(&self, record: &DomainRecord) -> [CustomerRecord; 3] {
        record.customer_records(&self.registry.config().zone())
    }

    /// The operator-side records of one domain's tenant.
    pub fn operator_records(&self, record: &DomainRecord) -> Result<Vec<OperatorRecord>, DomainsError> {
        let c = self.registry.config();
        let keys = self.registry.public_keys(record).map_err(|reason| DomainsError::Keys {
            domain: record.domain.clone(),
            reason,
        })?;
        Ok(names::operator_records(
            record.tenant,
            &c.zone(),
            &c.spf_mechanisms,
            &c.inbound_host,
            &keys,
        ))
    }

    /// The operator zone of every registered domain, as a zone-file
    /// fragment, one commented block per tenant.
    pub fn zone_fragment(&self) -> Result<String, DomainsError> {
        let content = self.tenant_blocks()?;
        Ok(content
            .iter()
            .map(|b| format!("; {}\n{}", b.comment.join("\n; "), names::zone_fragment(&b.records, self.settings.ttl)))
            .collect())
    }

    fn tenant_blocks(&self) -> Result<Vec<zone::Block>, DomainsError> {
        let mut blocks = Vec::new();
        for record in self.registry.list()? {
            blocks.push(zone::Block {
                comment: vec![format!("{} ({}, {})", names::tenant_label(record.tenant), record.domain, record.state)],
                records: self.operator_records(&record)?,
            });
        }
        Ok(blocks)
    }

    /// The whole operator zone: the relay's own block (when configured),
    /// then every tenant's. What `herald dns zone` prints and the embedded
    /// DNS server serves.
    pub fn zone_content(&self) -> Result<ZoneContent, DomainsError> {
        let mut blocks = Vec::new();
        if let Some(id) = &self.settings.relay {
            let public = self.relay_public_keys(id)?;
            let c = self.registry.config();
            blocks.push(zone::relay_block(id, &public, &c.zone(), &c.spf_mechanisms, &c.inbound_host));
        }
        blocks.extend(self.tenant_blocks()?);
        Ok(ZoneContent {
            blocks,
            ttl: self.settings.ttl,
        })
    }

    /// `herald domain rotate`: starts a key rotation of `domain` and checks
    /// at once whether the new key is visible through the customer's CNAME
    /// (with the embedded DNS server it is, and signing switches now). When
    /// a rotation is already waiting for its key, only checks again.
    pub async fn rotate(&self, domain: &str) -> Result<Rotated, DomainsError> {
        let record = self.registry.get(domain)?.ok_or_else(|| DomainsError::NotFound(domain.to_string()))?;
        let before = record.keys.steps.clone();
        let record = if record.keys.publishing().is_some() {
            record
        } else {
            let registry = self.registry.clone();
            let (name, external) = (record.domain.clone(), !self.settings.embedded);
            // Generating an RSA key is ~100 ms of CPU: off the async workers.
            tokio::task::spawn_blocking(move || registry.start_rotation(&name, external))
                .await
                .map_err(|e| DomainsError::Rotation(e.to_string()))?
                .map_err(DomainsError::from)?
        };
        self.emit_steps(&before, &record);
        self.advance_one(&record).await
    }

    /// A `domain.key_rotation` event for each step `after` holds that
    /// `before` did not (the steps are stored with the record just before).
    fn emit_steps(&self, before: &[rotation::KeyStep], after: &DomainRecord) {
        let Some(store) = &self.events else { return };
        let events: Vec<crate::events::Event> = after
            .keys
            .steps
            .iter()
            .filter(|s| !before.contains(s))
            .map(|s| {
                let mut e = crate::events::Event::new(crate::events::EventKind::DomainKeyRotation, s.at_ms);
                e.domain = Some(after.domain.clone());
                e.reasons = vec![format!("{} {}: {}", s.step, s.selector, s.detail)];
                e
            })
            .collect();
        if let Err(err) = store.events().apply(sled::Batch::default(), events) {
            tracing::error!(domain = %after.domain, error = %err, "cannot record the key rotation events");
        }
    }

    /// Moves one domain's rotation on: checks a publishing key's
    /// visibility, ends a retention that is over.
    async fn advance_one(&self, record: &DomainRecord) -> Result<Rotated, DomainsError> {
        let check = match record.keys.publishing() {
            Some(index) if self.registry.publishing_key_ready(record) => {
                let zone = self.registry.config().zone();
                Some(verify::key_visible(&self.dns, record, &zone, self.registry.keys(), index).await)
            }
            _ => None,
        };
        let visible = check.as_ref().map(CheckStatus::is_ok);
        let before = record.keys.steps.clone();
        let (record, done) = self.registry.advance_rotation(&record.domain, record.tenant, visible)?;
        self.emit_steps(&before, &record);
        self.events_durable().await;
        let switched = done.iter().any(|d| matches!(d, rotation::Advanced::Switched { .. }));
        Ok(Rotated { record, check, switched })
    }

    /// For the background task: moves every rotation that is due on, and
    /// starts the scheduled ones (`domains.rotate_every`).
    pub async fn advance_rotations(&self) -> Result<Vec<Rotated>, DomainsError> {
        match self.advance_relay_if_due().await {
            Ok(Some(r)) => tracing::debug!(selector = %r.selector(), switched = r.switched, "relay DKIM key rotation step"),
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "relay DKIM key rotation step failed"),
        }
        let now = self.registry.now_ms();
        let every = self.rotate_every_ms();
        let mut out = Vec::new();
        for record in self.registry.list()? {
            let scheduled = rotation::scheduled(&record.keys, record.created_ms, now, every)
                && record.signs_as_customer(now, self.registry.timing().grace_ms);
            let due = rotation::next_due_ms(&record.keys, record.created_ms, None).is_some_and(|t| t <= now);
            let result = if scheduled {
                tracing::info!(domain = %record.domain, "scheduled DKIM key rotation (domains.rotate_every)");
                self.rotate(&record.domain).await
            } else if due {
                self.advance_one(&record).await
            } else {
                continue;
            };
            match result {
                Ok(r) => out.push(r),
                Err(DomainsError::NotFound(_)) => {}
                Err(e) => tracing::warn!(domain = %record.domain, error = %e, "DKIM key rotation step failed"),
            }
        }
        Ok(out)
    }

    fn rotate_every_ms(&self) -> Option<i64> {
        self.registry
            .config()
            .rotate_every()
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }

    /// Checks `domain` now, applies the verdict to its state and stores it.
    pub async fn verify_now(&self, domain: &str) -> Result<(DomainRecord, Verification), DomainsError> {
        let record = self
            .registry
            .get(domain)?
            .ok_or_else(|| DomainsError::NotFound(domain.to_string()))?;
        let verification = verify::verify(&self.dns, &record, &self.registry.config().zone(), self.registry.keys()).await;
        let (now, timing, problems) = (self.registry.now_ms(), self.registry.timing(), verification.summary());
        let mut transition = None;
        let stored = self.registry.update(&record.domain, |r| {
            // Removed and added again while DNS was asked: that verdict
            // was about another tenant's targets.
            transition = if r.tenant == record.tenant {
                state::apply(r, verification.overall, &problems, now, &timing)
            } else {
                None
            };
        })?;
        let stored = stored
            .filter(|r| r.tenant == record.tenant)
            .ok_or_else(|| DomainsError::NotFound(record.domain.clone()))?;
        match &transition {
            Some(t) => {
                tracing::info!(domain = %stored.domain, tenant = stored.tenant, from = %t.from, to = %t.to, reason = %t.reason, "domain state changed");
                let mut reasons = vec![t.reason.clone()];
                reasons.extend(verification.records.iter().filter(|r| !r.status.is_ok()).map(|r| r.message()));
                self.emit(&stored, t.to, reasons);
                self.events_durable().await;
            }
            None => {
                tracing::debug!(domain = %stored.domain, state = %stored.state, overall = ?verification.overall, problems = %problems, "domain checked")
            }
        }
        Ok((stored, verification))
    }

    /// Verifies every domain whose next check is due, a few at a time; the
    /// results of those that could be checked. For a background task.
    pub async fn recheck_due(&self) -> Result<Vec<(DomainRecord, Verification)>, DomainsError> {
        let now = self.registry.now_ms();
        let due: Vec<String> = self
            .registry
            .list()?
            .into_iter()
            .filter(|r| r.next_check_ms <= now)
            .map(|r| r.domain)
            .collect();
        let mut results = Vec::with_capacity(due.len());
        let mut tasks = JoinSet::new();
        for domain in due {
            if tasks.len() >= RECHECK_PARALLEL
                && let Some(done) = tasks.join_next().await
            {
                collect(done, &mut results);
            }
            let this = self.clone();
            tasks.spawn(async move { (this.verify_now(&domain).await, domain) });
        }
        while let Some(done) = tasks.join_next().await {
            collect(done, &mut results);
        }
        results.sort_by(|a, b| a.0.domain.cmp(&b.0.domain));
        Ok(results)
    }

    /// When the next check falls due (the earliest `next_check_ms`), for
    /// the background task to sleep until; `None` with no domains.
    pub fn next_due_ms(&self) -> Result<Option<i64>, StoreError> {
        let every = self.rotate_every_ms();
        let pace = i64::try_from(self.registry.config().recheck_pending().as_millis()).unwrap_or(i64::MAX);
        let now = self.registry.now_ms();
        Ok(self
            .registry
            .list()?
            .iter()
            .flat_map(|r| {
                // A key waiting to become visible is checked every `recheck_pending`.
                let rotation = rotation::next_due_ms(&r.keys, r.created_ms, every)
                    .map(|t| if r.keys.publishing().is_some() { now.saturating_add(pace) } else { t });
                [Some(r.next_check_ms), rotation]
            })
            .flatten()
            .min())
    }
}

type Checked = (Result<(DomainRecord, Verification), DomainsError>, String);

fn collect(done: Result<Checked, tokio::task::JoinError>, into: &mut Vec<(DomainRecord, Verification)>) {
    match done {
        Ok((Ok(pair), _)) => into.push(pair),
        // Removed while due: nothing to check any more.
        Ok((Err(DomainsError::NotFound(_)), _)) => {}
        Ok((Err(e), domain)) => tracing::warn!(domain = %domain, error = %e, "domain re-check failed"),
        Err(e) => tracing::warn!(error = %e, "domain re-check task failed"),
    }
}
