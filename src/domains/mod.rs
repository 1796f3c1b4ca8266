//! Whitelabel customer domains: the three CNAMEs a customer adds, the
//! records the operator's zone must hold for them, verification that names
//! the mistake, and the state that decides whether mail is signed as the
//! customer.
//!
//! - [`names`]: record naming, pure (`em4821.customer.nl` → `t7.<zone>` …).
//! - [`input`]: what may be registered, with errors a person can act on.
//! - [`registry`]: the stored domains (sled tree `domains`), tenant ids,
//!   DKIM keys, and [`Registry::covering`] for the per-message policy.
//! - [`verify`]: DNS checks of the three records (read-only).
//! - [`state`]: the state machine and check schedule, pure.
//!
//! [`Domains`] bundles registry, resolver and configuration for the API,
//! the CLI and the background re-check task.

pub mod recheck;
pub mod input;
pub mod names;
pub mod registry;
pub mod state;
pub mod verify;

pub use input::AddError;
pub use names::{CustomerRecord, OperatorData, OperatorRecord};
pub use registry::{DomainRecord, Registry};
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
}

/// Registry, resolver and `[domains]` configuration together; cheap to clone.
#[derive(Clone)]
pub struct Domains {
    registry: Registry,
    dns: Dns,
    /// Where `domain.*` events go (the store's event log), when set.
    events: Option<crate::store::Store>,
}

impl Domains {
    pub fn new(registry: Registry, dns: Dns) -> Self {
        Self { registry, dns, events: None }
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
    /// fragment (`herald dns zone`), one commented block per tenant.
    pub fn zone_fragment(&self) -> Result<String, DomainsError> {
        let mut out = String::new();
        for record in self.registry.list()? {
            out.push_str(&format!(
                "; {} ({}, {})\n",
                names::tenant_label(record.tenant),
                record.domain,
                record.state
            ));
            out.push_str(&names::zone_fragment(&self.operator_records(&record)?, ZONE_TTL));
        }
        Ok(out)
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
        Ok(self.registry.list()?.iter().map(|r| r.next_check_ms).min())
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
