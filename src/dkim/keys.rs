//! Private keys at rest: one sled tree, `<domain>/<selector>` → key.
//! Keys leave the store only through an explicit export.
//!
//! Every message's signature looks its key up (rotation may have replaced
//! it). Keys read are kept in memory, so that lookup costs no sled read
//! on the runtime's threads (sled's reads wait while the commit thread
//! applies a batch). Open the store once per database and clone it: every
//! write through it changes the copy in memory with the tree, under one
//! lock, and a key not in memory is read under that lock too.

use crate::store::StoreError;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

/// A key as stored (versioned JSON).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredKey {
    pub v: u32,
    pub domain: String,
    pub selector: String,
    /// PKCS#8 DER, base64.
    pub pkcs8: String,
    pub created_ms: i64,
}

impl StoredKey {
    pub fn der(&self) -> Result<Vec<u8>, String> {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.decode(&self.pkcs8).map_err(|e| format!("stored key is corrupt: {e}"))
    }
}

#[derive(Clone)]
pub struct KeyStore {
    tree: sled::Tree,
    /// Keys read or written, by [`KeyStore::name`].
    known: Arc<RwLock<HashMap<String, StoredKey>>>,
}

impl KeyStore {
    pub fn open(db: &sled::Db) -> Result<Self, StoreError> {
        Ok(Self { tree: db.open_tree("dkim_keys")?, known: Arc::default() })
    }

    fn name(domain: &str, selector: &str) -> String {
        format!("{}/{}", domain.to_ascii_lowercase(), selector.to_ascii_lowercase())
    }

    pub fn get(&self, domain: &str, selector: &str) -> Result<Option<StoredKey>, StoreError> {
        let name = Self::name(domain, selector);
        if let Some(k) = self.known.read().unwrap_or_else(PoisonError::into_inner).get(&name) {
            return Ok(Some(k.clone()));
        }
        let mut known = self.known.write().unwrap_or_else(PoisonError::into_inner);
        let Some(v) = self.tree.get(&name)? else { return Ok(None) };
        let key: StoredKey = serde_json::from_slice(&v).map_err(|e| StoreError::Corrupt { key: name.clone(), reason: e.to_string() })?;
        known.insert(name, key.clone());
        Ok(Some(key))
    }

    /// The key for `domain`/`selector`, generated (RSA-2048) and stored on
    /// first use.
    pub fn get_or_create(&self, domain: &str, selector: &str, now_ms: i64) -> Result<StoredKey, String> {
        if let Some(k) = self.get(domain, selector).map_err(|e| e.to_string())? {
            return Ok(k);
        }
        let key = Self::fresh(domain, selector, now_ms)?;
        let bytes = serde_json::to_vec(&key).map_err(|e| e.to_string())?;
        // Another task may have created it meanwhile: keep the first.
        let name = Self::name(domain, selector);
        let mut known = self.known.write().unwrap_or_else(PoisonError::into_inner);
        match self.tree.compare_and_swap(&name, None as Option<&[u8]>, Some(bytes)) {
            Ok(Ok(())) => {
                known.insert(name, key.clone());
                Ok(key)
            }
            Ok(Err(_)) => {
                drop(known);
                self.get(domain, selector).map_err(|e| e.to_string())?.ok_or_else(|| "key vanished".to_string())
            }
            Err(e) => Err(e.to_string()),
        }
    }

    /// Stores `key` at its domain/selector, replacing whatever was there:
    /// key rotation (with a key from [`KeyStore::fresh`]).
    pub fn replace(&self, key: &StoredKey) -> Result<(), String> {
        let bytes = serde_json::to_vec(key).map_err(|e| e.to_string())?;
        let name = Self::name(&key.domain, &key.selector);
        let mut known = self.known.write().unwrap_or_else(PoisonError::into_inner);
        // Should the insert fail, the next read goes to the tree.
        known.remove(&name);
        self.tree.insert(&name, bytes).map_err(|e| e.to_string())?;
        known.insert(name, key.clone());
        Ok(())
    }

    /// A new RSA-2048 key for `domain`/`selector`, not stored yet.
    pub fn fresh(domain: &str, selector: &str, now_ms: i64) -> Result<StoredKey, String> {
        use base64::Engine;
        let der = super::generate_rsa()?;
        Ok(StoredKey {
            v: 1,
            domain: domain.to_ascii_lowercase(),
            selector: selector.to_ascii_lowercase(),
            pkcs8: base64::engine::general_purpose::STANDARD.encode(der),
            created_ms: now_ms,
        })
    }

    pub fn remove(&self, domain: &str, selector: &str) -> Result<(), StoreError> {
        let name = Self::name(domain, selector);
        let mut known = self.known.write().unwrap_or_else(PoisonError::into_inner);
        known.remove(&name);
        self.tree.remove(&name)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::KeyStore;

    /// Keys are read from memory after the first read, yet a key replaced
    /// or removed through any clone is what every clone reads next, and
    /// what a store opened afresh reads from the tree.
    #[test]
    fn every_clone_reads_the_key_last_written() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).temporary(true).open().unwrap();
        let store = KeyStore::open(&db).unwrap();
        let signer = store.clone();
        let first = store.get_or_create("Shop.example.nl", "hr1", 1).unwrap();
        assert_eq!(signer.get("shop.example.nl", "HR1").unwrap().unwrap().pkcs8, first.pkcs8);
        assert_eq!(signer.get_or_create("shop.example.nl", "hr1", 2).unwrap().created_ms, 1, "made once");

        let fresh = KeyStore::fresh("shop.example.nl", "hr1", 3).unwrap();
        store.replace(&fresh).unwrap();
        for s in [&signer, &store, &KeyStore::open(&db).unwrap()] {
            let got = s.get("shop.example.nl", "hr1").unwrap().unwrap();
            assert_eq!((got.pkcs8.as_str(), got.created_ms), (fresh.pkcs8.as_str(), 3));
        }

        store.remove("shop.example.nl", "hr1").unwrap();
        assert!(signer.get("shop.example.nl", "hr1").unwrap().is_none());
        assert!(KeyStore::open(&db).unwrap().get("shop.example.nl", "hr1").unwrap().is_none());
        assert_ne!(signer.get_or_create("shop.example.nl", "hr1", 4).unwrap().pkcs8, fresh.pkcs8, "a new key after removal");
    }
}
