//! Private keys at rest: one sled tree, `<domain>/<selector>` → key.
//! Keys leave the store only through an explicit export.

use crate::store::StoreError;
use serde::{Deserialize, Serialize};

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
}

impl KeyStore {
    pub fn open(db: &sled::Db) -> Result<Self, StoreError> {
        Ok(Self { tree: db.open_tree("dkim_keys")? })
    }

    fn name(domain: &str, selector: &str) -> String {
        format!("{}/{}", domain.to_ascii_lowercase(), selector.to_ascii_lowercase())
    }

    pub fn get(&self, domain: &str, selector: &str) -> Result<Option<StoredKey>, StoreError> {
        match self.tree.get(Self::name(domain, selector))? {
            Some(v) => serde_json::from_slice(&v).map(Some).map_err(|e| StoreError::Corrupt { key: Self::name(domain, selector), reason: e.to_string() }),
            None => Ok(None),
        }
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
        match self.tree.compare_and_swap(Self::name(domain, selector), None as Option<&[u8]>, Some(bytes)) {
            Ok(Ok(())) => Ok(key),
            Ok(Err(_)) => self.get(domain, selector).map_err(|e| e.to_string())?.ok_or_else(|| "key vanished".to_string()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Stores `key` at its domain/selector, replacing whatever was there:
    /// key rotation (with a key from [`KeyStore::fresh`]).
    pub fn replace(&self, key: &StoredKey) -> Result<(), String> {
        let bytes = serde_json::to_vec(key).map_err(|e| e.to_string())?;
        self.tree.insert(Self::name(&key.domain, &key.selector), bytes).map_err(|e| e.to_string())?;
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
        self.tree.remove(Self::name(domain, selector))?;
        Ok(())
    }
}
