//! The registered customer domains, in their own sled tree:
//!
//! | key                       | value                                   |
//! |---------------------------|-----------------------------------------|
//! | `d/<domain>`              | [`DomainRecord`] (JSON, versioned)      |
//! | `t/<tenant, 8 bytes BE>`  | the domain, so a tenant label can be looked up |
//! | `next_tenant`             | the last tenant id handed out (8 bytes BE) |
//!
//! Tenant ids count up from 1 and are never reused, not even after a
//! domain is removed: an old CNAME to `t<id>` must never start pointing at
//! someone else's keys.

use super::input::{self, AddError};
use super::mirror::{self, Mirror};
use super::rotation::{self, Advanced, Keys, RotateError};
use super::names::{self, CustomerRecord};
use super::state::{self, DomainState, Timing, Transition};
use crate::clock::SharedClock;
use crate::config::DomainsConfig;
use crate::dkim::KeyStore;
use crate::store::StoreError;
use rand::Rng;
use serde::{Deserialize, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionError};
use std::sync::Arc;
use tokio::sync::watch;

/// Version of [`DomainRecord`] as stored.
pub const RECORD_VERSION: u32 = 1;
const NEXT_TENANT: &[u8] = b"next_tenant";
const ZONE_SERIAL: &[u8] = b"zone_serial";
const RELAY_KEYS: &[u8] = b"relay_keys";

/// One customer domain as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainRecord {
    /// [`RECORD_VERSION`].
    pub v: u32,
    /// Lowercase ASCII, no trailing dot.
    pub domain: String,
    /// `t<tenant>` in the operator's zone.
    pub tenant: u64,
    /// `em4821` in `em4821.customer.nl`.
    pub return_path_label: String,
    /// Selectors are `<prefix>1` and `<prefix>2`.
    pub selector_prefix: String,
    pub state: DomainState,
    pub state_since_ms: i64,
    /// When the records were last checked; `None` before the first check.
    pub last_check_ms: Option<i64>,
    pub next_check_ms: i64,
    /// State changes, oldest first (at most [`state::MAX_HISTORY`]).
    pub history: Vec<Transition>,
    pub created_ms: i64,
    /// What each selector's key is doing (rotation); absent in records
    /// from before rotation, which means selector 1 signs.
    #[serde(default)]
    pub keys: Keys,
}

impl DomainRecord {
    /// A new pending record.
    pub fn new(domain: &str, tenant: u64, return_path_label: &str, selector_prefix: &str, created_ms: i64, next_check_ms: i64) -> Self {
        Self {
            v: RECORD_VERSION,
            domain: domain.to_string(),
            tenant,
            return_path_label: return_path_label.to_string(),
            selector_prefix: selector_prefix.to_string(),
            state: DomainState::Pending,
            state_since_ms: created_ms,
            last_check_ms: None,
            next_check_ms,
            history: Vec::new(),
            created_ms,
            keys: Keys::default(),
        }
    }

    /// The three CNAMEs the customer adds, pointing into `zone`.
    pub fn customer_records(&self, zone: &str) -> [CustomerRecord; 3] {
        names::customer_records(&self.domain, self.tenant, &self.return_path_label, &self.selector_prefix, zone)
    }

    pub fn selectors(&self) -> [String; 2] {
        names::selectors(&self.selector_prefix)
    }

    /// The selector mail is signed with now.
    pub fn active_selector(&self) -> String {
        self.selectors()[self.keys.active()].clone()
    }

    /// `em4821.customer.nl`: the envelope sender's domain when verified.
    pub fn return_path_host(&self) -> String {
        names::return_path_host(&self.return_path_label, &self.domain)
    }

    /// Whether mail is signed as the customer at `now_ms`.
    pub fn signs_as_customer(&self, now_ms: i64, grace_ms: i64) -> bool {
        state::signs_as_customer(self.state, self.state_since_ms, now_ms, grace_ms)
    }

    fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a domain record always serialises")
    }

    pub(super) fn decode(key: &[u8], bytes: &[u8]) -> Result<Self, StoreError> {
        let corrupt = |reason: String| StoreError::Corrupt {
            key: String::from_utf8_lossy(key).into_owned(),
            reason,
        };
        let record: DomainRecord = serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
        if record.v != RECORD_VERSION {
            return Err(corrupt(format!(
                "record version {} is not known to this herald (knows {RECORD_VERSION})",
                record.v
            )));
        }
        Ok(record)
    }
}

/// The domain registry; cheap to clone.
#[derive(Clone)]
pub struct Registry {
    tree: sled::Tree,
    /// What the message path reads, in memory; changed with every write.
    mirror: Arc<Mirror>,
    keys: KeyStore,
    clock: SharedClock,
    config: Arc<DomainsConfig>,
    timing: Timing,
    /// Counts changes to what the operator zone holds (domains, keys),
    /// for the embedded DNS server to rebuild and NOTIFY.
    changes: Arc<watch::Sender<u64>>,
}

/// Why a rotation step failed.
#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    #[error("`{0}` is not a registered domain")]
    NotFound(String),
    #[error(transparent)]
    Busy(#[from] RotateError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot make a new DKIM key: {0}")]
    Keys(String),
}

fn domain_key(domain: &str) -> Vec<u8> {
    [b"d/".as_slice(), domain.as_bytes()].concat()
}

fn tenant_key(tenant: u64) -> Vec<u8> {
    [b"t/".as_slice(), &tenant.to_be_bytes()].concat()
}

/// How a name given to a lookup is compared with stored domains; a name
/// that is not a domain falls back to its plain lowercase form (and is
/// simply not found).
fn lookup_name(name: &str) -> String {
    input::normalise_domain(name).unwrap_or_else(|_| names::bare(name).to_ascii_lowercase())
}

impl Registry {
    /// Opens the `domains` tree. `config` gives the operator zone, the
    /// default prefixes and the timing. Open it once per database and
    /// clone it: the copy in memory ([`super::mirror`]) follows the writes
    /// made through this registry and its clones only.
    pub fn open(db: &sled::Db, keys: KeyStore, clock: SharedClock, config: &DomainsConfig) -> Result<Self, StoreError> {
        let tree = db.open_tree("domains")?;
        Ok(Self {
            mirror: Arc::new(Mirror::load(&tree, RELAY_KEYS)?),
            tree,
            keys,
            clock,
            config: Arc::new(config.clone()),
            timing: Timing::from_config(config),
            changes: Arc::new(watch::Sender::new(0)),
        })
    }

    /// Notified whenever the operator zone's content may have changed.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// The change counter now (see [`Registry::subscribe`]).
    pub fn generation(&self) -> u64 {
        *self.changes.borrow()
    }

    /// The operator zone's SOA serial for content `digest`: the stored one
    /// while the digest is the same, else `next(old serial)`, stored with
    /// the new digest (so the serial survives restarts and only moves when
    /// the records do).
    pub fn zone_serial(&self, digest: u64, next: impl Fn(u32) -> u32) -> Result<u32, StoreError> {
        let read = |v: Option<&[u8]>| -> (u32, Option<u64>) {
            match v.and_then(|b| <[u8; 12]>::try_from(b).ok()) {
                Some(b) => (
                    u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
                    Some(u64::from_be_bytes([b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11]])),
                ),
                None => (0, None),
            }
        };
        let new = self.tree.update_and_fetch(ZONE_SERIAL, |old| {
            let (serial, stored) = read(old);
            let serial = if stored == Some(digest) { serial } else { next(serial) };
            Some([serial.to_be_bytes().as_slice(), &digest.to_be_bytes()].concat())
        })?;
        Ok(read(new.as_deref()).0)
    }

    /// The key phases of the relay's own two selectors (see
    /// [`super::relay_key`]); the default before any rotation.
    pub fn relay_keys(&self) -> Result<Keys, StoreError> {
        self.mirror.relay_keys()
    }

    /// Changes the relay's key phases with `change` (compare-and-swap).
    pub fn update_relay_keys(&self, mut change: impl FnMut(&mut Keys)) -> Result<Keys, StoreError> {
        loop {
            let old = self.tree.get(RELAY_KEYS)?;
            let mut keys = mirror::read_keys(old.as_deref())?;
            change(&mut keys);
            let bytes = serde_json::to_vec(&keys).expect("key phases always serialise");
            if self.tree.compare_and_swap(RELAY_KEYS, old, Some(bytes))?.is_ok() {
                self.mirror.refresh_relay_keys(&self.tree, RELAY_KEYS);
                self.changed();
                return Ok(keys);
            }
        }
    }

    /// Tells the embedded DNS server the zone may have changed (a key
    /// written outside [`Registry`]'s own methods).
    pub fn touch(&self) {
        self.changed();
    }

    fn changed(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub fn config(&self) -> &DomainsConfig {
        &self.config
    }

    pub fn timing(&self) -> Timing {
        self.timing
    }

    pub fn keys(&self) -> &KeyStore {
        &self.keys
    }

    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Registers `domain` (pending): assigns the next tenant id, a random
    /// `<prefix><4 digits>` return-path label unless one is given, and
    /// creates both DKIM keys.
    pub fn add(&self, domain: &str, selector_prefix: Option<&str>, return_path_label: Option<&str>) -> Result<DomainRecord, AddError> {
        let domain = input::normalise_domain(domain)?;
        input::check_allowed(&domain, &self.config.zone())?;
        let prefix = selector_prefix
            .map(str::to_ascii_lowercase)
            .unwrap_or_else(|| self.config.selector_prefix.to_ascii_lowercase());
        input::check_selector_prefix(&prefix)?;
        let label = match return_path_label {
            Some(l) => l.to_ascii_lowercase(),
            None => names::return_path_label(
                &self.config.return_path_prefix.to_ascii_lowercase(),
                rand::thread_rng().gen_range(1000..10_000),
            ),
        };
        input::check_return_path_label(&label)?;
        input::check_lengths(&domain, &label, &prefix)?;
        let store = |e: StoreError| AddError::Store(e.to_string());
        if let Some(existing) = self.get(&domain).map_err(store)? {
            return Err(AddError::Duplicate {
                domain,
                tenant: existing.tenant,
            });
        }

        let now = self.clock.now_ms();
        let tenant = self.next_tenant().map_err(store)?;
        for selector in names::selectors(&prefix) {
            self.keys.get_or_create(&domain, &selector, now).map_err(AddError::Keys)?;
        }
        let record = DomainRecord::new(
            &domain,
            tenant,
            &label,
            &prefix,
            now,
            now.saturating_add(self.timing.recheck_pending_ms),
        );
        let (dkey, bytes) = (domain_key(&domain), record.encode());
        let result = self.tree.transaction(|tx| {
            if let Some(existing) = tx.get(&dkey)? {
                let tenant = DomainRecord::decode(&dkey, &existing).map(|r| r.tenant).unwrap_or_default();
                return Err(ConflictableTransactionError::Abort(tenant));
            }
            tx.insert(dkey.as_slice(), bytes.as_slice())?;
            tx.insert(tenant_key(tenant), domain.as_bytes())?;
            Ok(())
        });
        match result {
            Ok(()) => {
                self.mirror.refresh(&self.tree, &dkey);
                self.changed();
                tracing::info!(domain = %record.domain, tenant = record.tenant, return_path = %record.return_path_host(), "domain added (pending)");
                Ok(record)
            }
            // Added by someone else meanwhile; the keys are theirs now.
            Err(TransactionError::Abort(tenant)) => Err(AddError::Duplicate { domain, tenant }),
            Err(TransactionError::Storage(e)) => Err(AddError::Store(e.to_string())),
        }
    }

    fn next_tenant(&self) -> Result<u64, StoreError> {
        let read = |v: Option<&[u8]>| v.and_then(|b| <[u8; 8]>::try_from(b).ok()).map(u64::from_be_bytes).unwrap_or(0);
        let new = self
            .tree
            .update_and_fetch(NEXT_TENANT, |old| Some((read(old) + 1).to_be_bytes().to_vec()))?;
        Ok(read(new.as_deref()))
    }

    /// The record of `domain` (any case, trailing dot allowed).
    /// Read from memory ([`super::mirror`]): it is on the message path.
    pub fn get(&self, domain: &str) -> Result<Option<DomainRecord>, StoreError> {
        self.mirror.record(&domain_key(&lookup_name(domain)))
    }

    /// The domain of tenant `t<tenant>`.
    pub fn by_tenant(&self, tenant: u64) -> Result<Option<DomainRecord>, StoreError> {
        match self.tree.get(tenant_key(tenant))? {
            Some(domain) => self.get(&String::from_utf8_lossy(&domain)),
            None => Ok(None),
        }
    }

    /// Every registered domain, sorted by name.
    pub fn list(&self) -> Result<Vec<DomainRecord>, StoreError> {
        self.tree
            .scan_prefix(b"d/")
            .map(|item| item.map_err(StoreError::from).and_then(|(k, v)| DomainRecord::decode(&k, &v)))
            .collect()
    }

    /// Removes `domain` and its DKIM keys; the removed record, or `None`
    /// when it was not registered. Its tenant id is not handed out again.
    pub fn remove(&self, domain: &str) -> Result<Option<DomainRecord>, StoreError> {
        let key = domain_key(&lookup_name(domain));
        let removed = self.tree.transaction(|tx| {
            let Some(bytes) = tx.remove(key.as_slice())? else { return Ok(None) };
            let record = DomainRecord::decode(&key, &bytes).map_err(ConflictableTransactionError::Abort)?;
            tx.remove(tenant_key(record.tenant))?;
            Ok(Some(record))
        });
        let removed = match removed {
            Ok(r) => r,
            Err(TransactionError::Abort(e)) => return Err(e),
            Err(TransactionError::Storage(e)) => return Err(e.into()),
        };
        if let Some(r) = &removed {
            self.mirror.refresh(&self.tree, &key);
            for selector in r.selectors() {
                self.keys.remove(&r.domain, &selector)?;
            }
            self.changed();
            tracing::info!(domain = %r.domain, tenant = r.tenant, state = %r.state, "domain removed, with its DKIM keys");
        }
        Ok(removed)
    }

    /// Changes the stored record of `domain` with `change`, retrying when
    /// someone else changed it meanwhile (compare-and-swap). `None` when
    /// the domain is not (or no longer) registered.
    pub fn update(&self, domain: &str, mut change: impl FnMut(&mut DomainRecord)) -> Result<Option<DomainRecord>, StoreError> {
        let key = domain_key(&lookup_name(domain));
        loop {
            let Some(old) = self.tree.get(&key)? else { return Ok(None) };
            let mut record = DomainRecord::decode(&key, &old)?;
            change(&mut record);
            if self.tree.compare_and_swap(&key, Some(&old), Some(record.encode()))?.is_ok() {
                self.mirror.refresh(&self.tree, &key);
                self.changed();
                return Ok(Some(record));
            }
        }
    }

    /// The registered domain that signs mail from `from_domain` now: the
    /// most specific of the domain itself and its parents that is verified,
    /// or failing inside its grace period; with its active selector.
    pub fn covering(&self, from_domain: &str) -> Result<Option<(DomainRecord, String)>, StoreError> {
        let now = self.clock.now_ms();
        let name = lookup_name(from_domain);
        let mut candidate = name.as_str();
        loop {
            if let Some(record) = self.get(candidate)?
                && record.signs_as_customer(now, self.timing.grace_ms)
            {
                let selector = record.active_selector();
                return Ok(Some((record, selector)));
            }
            match candidate.split_once('.') {
                Some((_, parent)) => candidate = parent,
                None => return Ok(None),
            }
        }
    }

    /// The identity for mail From `from_domain` now (DESIGN policy 2–4).
    pub fn decide(&self, from_domain: &str) -> Result<crate::policy::Decision, StoreError> {
        let covering = self.covering(from_domain)?.map(|(record, selector)| crate::policy::Covering {
            return_path: record.return_path_host(),
            state: record.state.to_string(),
            domain: record.domain,
            selector,
        });
        Ok(crate::policy::decide(from_domain, covering))
    }

    /// `(selector, base64 public key)` for each selector of `record` whose
    /// key is published; a withdrawn one with an empty key when
    /// `domains.revoke_withdrawn` (published as `p=`), else left out.
    pub fn public_keys(&self, record: &DomainRecord) -> Result<Vec<(String, String)>, String> {
        let mut out = Vec::new();
        for (index, selector) in record.selectors().into_iter().enumerate() {
            if !record.keys.published(index) {
                if self.config.revoke_withdrawn {
                    out.push((selector, String::new()));
                }
                continue;
            }
            let key = self
                .keys
                .get(&record.domain, &selector)
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("no DKIM key {selector} for {}", record.domain))?;
            out.push((selector, crate::dkim::public_key_b64(&key.der()?)?));
        }
        Ok(out)
    }

    /// Starts a key rotation of `domain` (see [`rotation`]): a fresh key
    /// for the idle selector, stored and published. `external` says the
    /// operator publishes the zone by hand (for the history's words).
    pub fn start_rotation(&self, domain: &str, external: bool) -> Result<DomainRecord, RotationError> {
        let current = self.get(domain)?.ok_or_else(|| RotationError::NotFound(domain.to_string()))?;
        // Refused early, before spending a key generation on it.
        rotation::start(&mut current.keys.clone(), &current.selectors(), 0, external)?;
        let now = self.clock.now_ms();
        let idle = current.selectors()[1 - current.keys.active()].clone();
        let key = KeyStore::fresh(&current.domain, &idle, now).map_err(RotationError::Keys)?;
        let mut refused = None;
        let stored = self.update(&current.domain, |r| {
            refused = None;
            if r.tenant != current.tenant {
                refused = Some(RotationError::NotFound(current.domain.clone()));
                return;
            }
            let selectors = r.selectors();
            if let Err(e) = rotation::start(&mut r.keys, &selectors, now, external) {
                refused = Some(e.into());
            }
        })?;
        if let Some(e) = refused {
            return Err(e);
        }
        let stored = stored.ok_or_else(|| RotationError::NotFound(current.domain.clone()))?;
        // The record says "publishing" a moment before the key is there;
        // `visible_key_is_new` keeps a check in that moment from counting.
        self.keys.replace(&key).map_err(RotationError::Keys)?;
        self.changed();
        tracing::info!(domain = %stored.domain, selector = %idle, "DKIM key rotation started: new key published");
        Ok(stored)
    }

    /// Whether the stored key of the publishing selector is the rotation's
    /// new one (made at or after the rotation started).
    pub fn publishing_key_ready(&self, record: &DomainRecord) -> bool {
        let Some(index) = record.keys.publishing() else { return false };
        let since = match record.keys.phases()[index] {
            rotation::KeyPhase::Publishing { since_ms } => since_ms,
            _ => return false,
        };
        let selector = &record.selectors()[index];
        matches!(self.keys.get(&record.domain, selector), Ok(Some(k)) if k.created_ms >= since)
    }

    /// Moves the rotation of `domain` on ([`rotation::advance`]);
    /// `visible`: whether the new key resolves through the customer's
    /// CNAME now. Withdrawn keys are deleted.
    pub fn advance_rotation(&self, domain: &str, tenant: u64, visible: Option<bool>) -> Result<(DomainRecord, Vec<Advanced>), RotationError> {
        let now = self.clock.now_ms();
        let retention = i64::try_from(self.config.key_retention().as_millis()).unwrap_or(i64::MAX);
        let revoke = self.config.revoke_withdrawn;
        let mut done = Vec::new();
        let stored = self.update(domain, |r| {
            let selectors = r.selectors();
            done = if r.tenant == tenant {
                rotation::advance(&mut r.keys, &selectors, visible, now, retention, revoke)
            } else {
                Vec::new()
            };
        })?;
        let stored = stored
            .filter(|r| r.tenant == tenant)
            .ok_or_else(|| RotationError::NotFound(domain.to_string()))?;
        for step in &done {
            match step {
                Advanced::Switched { to } => {
                    tracing::info!(domain = %stored.domain, selector = %stored.selectors()[*to], "DKIM signing switched to the new key")
                }
                Advanced::Withdrawn { index } => {
                    let selector = &stored.selectors()[*index];
                    self.keys.remove(&stored.domain, selector)?;
                    self.changed();
                    tracing::info!(domain = %stored.domain, selector = %selector, revoked = revoke, "old DKIM key withdrawn");
                }
            }
        }
        Ok((stored, done))
    }}
