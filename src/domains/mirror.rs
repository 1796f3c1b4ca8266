//! The registry's copy in memory of what the message path reads from the
//! `domains` tree: every domain record and the relay's key phases.
//!
//! Each message asks for its From domain (and its parents) at the end of
//! DATA, and for the relay's selector when it is signed. Read from sled,
//! those lookups ran on the runtime's threads and waited whenever the
//! commit thread applied a batch (sled's batches hold a process-wide
//! lock): at 50 sessions, 1 % of them waited 2.7 ms or more, and all the
//! sessions on that thread waited with them.
//!
//! The copy is loaded at open and changed only by the registry, which
//! makes every change to the tree: after each write it reads the key back
//! from sled under the copy's lock ([`Mirror::refresh`]), so of two
//! writers racing on one key the later read wins and the copy ends as
//! the tree is.

use super::registry::DomainRecord;
use super::rotation::Keys;
use crate::store::StoreError;
use std::collections::HashMap;
use std::sync::{PoisonError, RwLock};

/// A value as read, or why it could not be: `(key, reason)` of
/// [`StoreError::Corrupt`], given back on every read as the tree would.
type Entry<T> = Result<T, (String, String)>;

pub(super) struct Mirror {
    /// By tree key (`d/<domain>`).
    records: RwLock<HashMap<Vec<u8>, Entry<DomainRecord>>>,
    relay_keys: RwLock<Entry<Keys>>,
}

fn entry<T>(read: Result<T, StoreError>) -> Entry<T> {
    read.map_err(|e| match e {
        StoreError::Corrupt { key, reason } => (key, reason),
        other => ("domains".to_string(), other.to_string()),
    })
}

fn given<T: Clone>(e: &Entry<T>) -> Result<T, StoreError> {
    e.clone().map_err(|(key, reason)| StoreError::Corrupt { key, reason })
}

impl Mirror {
    /// Reads every record (`d/` keys) and the relay's key phases.
    pub(super) fn load(tree: &sled::Tree, relay_key: &[u8]) -> Result<Self, StoreError> {
        let mut records = HashMap::new();
        for item in tree.scan_prefix(b"d/") {
            let (k, v) = item?;
            records.insert(k.to_vec(), entry(DomainRecord::decode(&k, &v)));
        }
        let relay_keys = entry(read_keys(tree.get(relay_key)?.as_deref()));
        Ok(Self { records: RwLock::new(records), relay_keys: RwLock::new(relay_keys) })
    }

    /// The record stored at `key`, as of the registry's last write.
    pub(super) fn record(&self, key: &[u8]) -> Result<Option<DomainRecord>, StoreError> {
        self.records.read().unwrap_or_else(PoisonError::into_inner).get(key).map(given).transpose()
    }

    pub(super) fn relay_keys(&self) -> Result<Keys, StoreError> {
        given(&self.relay_keys.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Reads `key` back from `tree` after a write to it.
    pub(super) fn refresh(&self, tree: &sled::Tree, key: &[u8]) {
        let mut records = self.records.write().unwrap_or_else(PoisonError::into_inner);
        match tree.get(key) {
            Ok(Some(v)) => {
                records.insert(key.to_vec(), entry(DomainRecord::decode(key, &v)));
            }
            Ok(None) => {
                records.remove(key);
            }
            Err(e) => {
                tracing::error!(key = %String::from_utf8_lossy(key), error = %e, "cannot read a domain record back after changing it");
                records.insert(key.to_vec(), entry(Err(e.into())));
            }
        }
    }

    /// Reads the relay's key phases back from `tree` after a write.
    pub(super) fn refresh_relay_keys(&self, tree: &sled::Tree, relay_key: &[u8]) {
        let mut keys = self.relay_keys.write().unwrap_or_else(PoisonError::into_inner);
        *keys = entry(tree.get(relay_key).map_err(StoreError::from).and_then(|v| read_keys(v.as_deref())));
    }
}

/// The relay's key phases as stored; the default before any rotation.
pub(super) fn read_keys(bytes: Option<&[u8]>) -> Result<Keys, StoreError> {
    match bytes {
        Some(bytes) => serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt { key: "relay_keys".into(), reason: e.to_string() }),
        None => Ok(Keys::default()),
    }
}
