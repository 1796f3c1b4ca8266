//! The spool format mark, and the move of format-1 bodies (4 KiB chunks
//! in the sled tree) to segment files when such a directory is opened.
//!
//! The mark lives in sled's default tree under [`FORMAT_KEY`]. A directory
//! without it was written by a herald that kept bodies in the tree: its
//! bodies are copied to segments (one write and fdatasync per group), each
//! group's location keys are written and its chunks removed in one batch,
//! and the mark is written last. A crash in between redoes the rest at the
//! next start; a body copied twice only costs space until its segment
//! empties. A directory marked by a newer herald is refused.

use super::segments::{BodyRef, Segments};
use super::{BODY, LOCATION, META, StoreError, key};
use crate::id::MessageId;
use std::collections::HashMap;

pub const FORMAT_KEY: &[u8] = b"herald/spool-format";

/// The format this herald writes: bodies in segments.
pub const FORMAT: u32 = 2;

/// Messages moved per write.
const GROUP: usize = 128;

/// What a stored format mark means for this herald.
#[derive(Debug, PartialEq, Eq)]
pub enum Mark {
    /// Written by this format: open as is.
    Current,
    /// No mark: format 1, whose bodies are moved.
    Legacy,
    /// Newer than this herald: refuse.
    Newer(u32),
    Unreadable,
}

/// Reads a format mark (pure, for the tests).
pub fn read_mark(value: Option<&[u8]>) -> Mark {
    match value {
        None => Mark::Legacy,
        Some(v) => match <[u8; 4]>::try_from(v).map(u32::from_be_bytes) {
            Ok(FORMAT) => Mark::Current,
            Ok(n) if n > FORMAT => Mark::Newer(n),
            Ok(1) => Mark::Legacy,
            _ => Mark::Unreadable,
        },
    }
}

/// `true` when the directory is format 1 and its bodies must be moved;
/// an error when this herald cannot open it.
pub fn check_format(db: &sled::Db) -> Result<bool, StoreError> {
    match read_mark(db.get(FORMAT_KEY)?.as_deref()) {
        Mark::Current => Ok(false),
        Mark::Legacy => Ok(true),
        Mark::Newer(n) => Err(StoreError::Format(format!(
            "the data directory was written by a newer herald (spool format {n}; this one reads formats 1 to {FORMAT}); refusing to open it: run the newer herald, or restore a backup"
        ))),
        Mark::Unreadable => Err(StoreError::Format("the data directory's spool format mark is unreadable; refusing to open it".into())),
    }
}

/// Queued bodies per segment, from the location keys.
pub fn live_counts(spool: &sled::Tree) -> Result<HashMap<u64, u64>, StoreError> {
    let mut live = HashMap::new();
    for item in spool.scan_prefix([LOCATION, b'/']) {
        let (k, v) = item?;
        let r = BodyRef::decode(&v).ok_or_else(|| StoreError::Corrupt { key: String::from_utf8_lossy(&k).into_owned(), reason: "bad body location".into() })?;
        *live.entry(r.segment).or_insert(0u64) += 1;
    }
    Ok(live)
}

/// The next group of chunked bodies: (id, body, chunk keys).
fn next_group(spool: &sled::Tree) -> Result<Vec<(MessageId, Vec<u8>, Vec<sled::IVec>)>, StoreError> {
    let mut group: Vec<(MessageId, Vec<u8>, Vec<sled::IVec>)> = Vec::new();
    for item in spool.scan_prefix([BODY, b'/']) {
        let (k, chunk) = item?;
        let id = k.get(2..18).and_then(|b| std::str::from_utf8(b).ok()).and_then(MessageId::parse);
        let Some(id) = id else {
            return Err(StoreError::Corrupt { key: String::from_utf8_lossy(&k).into_owned(), reason: "bad body chunk key".into() });
        };
        let full = group.len() == GROUP;
        match group.last_mut() {
            Some((last, body, keys)) if *last == id => {
                body.extend_from_slice(&chunk);
                keys.push(k);
            }
            _ if full => break,
            _ => group.push((id, chunk.to_vec(), vec![k])),
        }
    }
    Ok(group)
}

/// Moves every chunked body to segments, then writes the format mark.
pub fn bodies_to_segments(db: &sled::Db, spool: &sled::Tree, segments: &Segments) -> Result<(), StoreError> {
    let mut moved = 0usize;
    loop {
        let group = next_group(spool)?;
        if group.is_empty() {
            break;
        }
        // Chunks of a message no longer queued are only dropped.
        let mut queued = Vec::new();
        for (id, body, _) in &group {
            if spool.contains_key(key(META, id))? {
                queued.push((*id, body.as_slice()));
            }
        }
        let refs = segments.append(&queued)?;
        let mut batch = sled::Batch::default();
        for ((id, _), r) in queued.iter().zip(&refs) {
            batch.insert(&key(LOCATION, id), &r.encode());
        }
        for (_, _, keys) in &group {
            for k in keys {
                batch.remove(k);
            }
        }
        spool.apply_batch(batch)?;
        db.flush()?;
        moved += queued.len();
    }
    db.insert(FORMAT_KEY, &FORMAT.to_be_bytes())?;
    db.flush()?;
    if moved > 0 {
        tracing::info!(messages = moved, "moved queued message bodies out of the database into segment files (spool format {FORMAT})");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_marks() {
        let cases: &[(Option<&[u8]>, Mark)] = &[
            (None, Mark::Legacy),
            (Some(&1u32.to_be_bytes()), Mark::Legacy),
            (Some(&2u32.to_be_bytes()), Mark::Current),
            (Some(&3u32.to_be_bytes()), Mark::Newer(3)),
            (Some(&0u32.to_be_bytes()), Mark::Unreadable),
            (Some(b"2"), Mark::Unreadable),
        ];
        for (value, want) in cases {
            assert_eq!(&read_mark(*value), want, "{value:?}");
        }
    }
}
