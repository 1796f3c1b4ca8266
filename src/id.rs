//! Relay message ids: time-sortable, printable, safe in a local part.
//!
//! An id is 16 characters of lowercase Crockford base32 over 80 bits: 48
//! bits of milliseconds since the epoch, then 32 bits of a per-process
//! counter mixed with randomness. Sorting ids as strings sorts them by
//! acceptance time, which keeps sled's key space append-mostly.

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};

const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

/// A relay message id, e.g. `01jd5x3q8k2m7n4p`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MessageId([u8; 16]);

static COUNTER: AtomicU32 = AtomicU32::new(0);

impl MessageId {
    /// The smallest id; a lower bound for range scans.
    pub const MIN: MessageId = MessageId(*b"0000000000000000");

    /// A fresh id for a message accepted at `now_ms`.
    pub fn generate(now_ms: i64) -> Self {
        static SEED: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
        let seed = *SEED.get_or_init(rand::random::<u32>);
        let low = COUNTER.fetch_add(1, Ordering::Relaxed).wrapping_add(seed);
        Self::from_parts(now_ms as u64, low)
    }

    fn from_parts(ms: u64, low: u32) -> Self {
        let value: u128 = ((ms as u128 & 0xffff_ffff_ffff) << 32) | low as u128;
        let mut out = [0u8; 16];
        for (i, slot) in out.iter_mut().enumerate() {
            let shift = 5 * (15 - i);
            *slot = ALPHABET[((value >> shift) & 31) as usize];
        }
        Self(out)
    }

    /// Parses an id as printed; `None` when it is not one of ours.
    pub fn parse(s: &str) -> Option<Self> {
        let bytes = s.as_bytes();
        if bytes.len() != 16 {
            return None;
        }
        let mut out = [0u8; 16];
        for (slot, &b) in out.iter_mut().zip(bytes) {
            let b = b.to_ascii_lowercase();
            if !ALPHABET.contains(&b) {
                return None;
            }
            *slot = b;
        }
        Some(Self(out))
    }

    pub fn as_str(&self) -> &str {
        // Only ALPHABET bytes are ever stored.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// Milliseconds since the epoch at which the id was made.
    pub fn timestamp_ms(&self) -> i64 {
        let mut value: u128 = 0;
        for &b in &self.0 {
            let digit = ALPHABET.iter().position(|&a| a == b).unwrap_or(0) as u128;
            value = (value << 5) | digit;
        }
        (value >> 32) as i64
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MessageId({})", self.as_str())
    }
}

impl serde::Serialize for MessageId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for MessageId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        MessageId::parse(&s).ok_or_else(|| serde::de::Error::custom(format!("`{s}` is not a relay message id")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_by_time_and_round_trip() {
        let cases = [(0u64, 0u32), (1_700_000_000_000, 7), (1_700_000_000_001, 0), (281_474_976_710_655, u32::MAX)];
        let ids: Vec<_> = cases.iter().map(|&(ms, low)| MessageId::from_parts(ms, low)).collect();
        for (id, &(ms, _)) in ids.iter().zip(&cases) {
            assert_eq!(id.as_str().len(), 16);
            assert_eq!(MessageId::parse(id.as_str()), Some(*id));
            assert_eq!(id.timestamp_ms(), ms as i64);
        }
        let mut sorted = ids.clone();
        sorted.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        assert_eq!(sorted, ids);
    }

    #[test]
    fn parse_rejects_foreign_text() {
        for bad in ["", "short", "01jd5x3q8k2m7n4pX", "01jd5x3q8k2m7n4u", "01jd5x3q8k2m7n4!"] {
            assert_eq!(MessageId::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn generated_ids_are_unique() {
        let a = MessageId::generate(1_700_000_000_000);
        let b = MessageId::generate(1_700_000_000_000);
        assert_ne!(a, b);
    }
}
