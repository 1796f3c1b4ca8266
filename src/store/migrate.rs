//! The spool format mark, and the moves that bring an older data
//! directory to the current format when it is opened.
//!
//! | format | what changed                                                |
//! |--------|-------------------------------------------------------------|
//! | 1      | bodies in the tree as `b/<id><n>` 4 KiB chunks (no mark)     |
//! | 2      | bodies in segment files                                      |
//! | 3      | retired records in the spool tree (`r/`, `x/`), not in a `retired` tree of their own, so retiring is one batch |
//! | 4      | record frames in the segments, before each body ([`super::replay`]); nothing to move, but a herald of format 3 would take them for a torn tail and cut the segment there |
//! | 5      | frame checksums salted with the segment's number, from the segment in [`SALTED_FROM`] on (emptied segments are reused: [`super::segments`]); nothing to move, but a herald of format 4 would take them for a torn tail |
//!
//! The mark lives in sled's default tree under [`FORMAT_KEY`]. Format 1's
//! bodies are copied to segments (one write and fdatasync per group), each
//! group's location keys are written and its chunks removed in one batch.
//! Formats 1 and 2's retired records are copied into the spool tree, then
//! the old tree is dropped. The mark is written last: a crash in between
//! redoes the rest at the next start (each step is safe to repeat; a body
//! copied twice only costs space until its segment empties). A directory
//! marked by a newer herald is refused.

use super::segments::{BodyRef, Segments};
use super::{BODY, FINISHED, LOCATION, META, RETIRED, StoreError, key};
use crate::id::MessageId;
use std::collections::HashMap;

pub const FORMAT_KEY: &[u8] = b"herald/spool-format";

/// The format this herald writes: bodies and record frames in segments,
/// salted checksums, retired records in the spool tree.
pub const FORMAT: u32 = 5;

/// In the spool tree: the first segment whose checksums are salted
/// (u64 big-endian).
pub const SALTED_FROM: &[u8] = b"c/salted-from";

/// The first segment whose checksums are salted: as recorded, or, the
/// first time a herald of format 5 opens the directory, the segment after
/// the last one there (recorded, and flushed, before any is written).
pub fn salted_from(db: &sled::Db, spool: &sled::Tree, bodies: &std::path::Path) -> Result<u64, StoreError> {
    if let Some(v) = spool.get(SALTED_FROM)? {
        let b: [u8; 8] = v.as_ref().try_into().map_err(|_| StoreError::Corrupt { key: "c/salted-from".into(), reason: "not 8 bytes".into() })?;
        return Ok(u64::from_be_bytes(b));
    }
    let first = super::segments::last(bodies)?.map_or(1, |n| n + 1);
    spool.insert(SALTED_FROM, &first.to_be_bytes())?;
    db.flush()?;
    Ok(first)
}

/// Messages moved per write.
const GROUP: usize = 128;

/// What a stored format mark means for this herald.
#[derive(Debug, PartialEq, Eq)]
pub enum Mark {
    /// Written by this format: open as is.
    Current,
    /// An older format, moved to the current one: 1 (no mark) to 4.
    Older(u32),
    /// Newer than this herald: refuse.
    Newer(u32),
    Unreadable,
}

/// Reads a format mark (pure, for the tests).
pub fn read_mark(value: Option<&[u8]>) -> Mark {
    match value {
        None => Mark::Older(1),
        Some(v) => match <[u8; 4]>::try_from(v).map(u32::from_be_bytes) {
            Ok(FORMAT) => Mark::Current,
            Ok(n) if n > FORMAT => Mark::Newer(n),
            Ok(n @ 1..FORMAT) => Mark::Older(n),
            _ => Mark::Unreadable,
        },
    }
}

/// The directory's format, when this herald can open it (the current one,
/// or an older one [`to_current`] moves); an error when it cannot.
pub fn check_format(db: &sled::Db) -> Result<u32, StoreError> {
    match read_mark(db.get(FORMAT_KEY)?.as_deref()) {
        Mark::Current => Ok(FORMAT),
        Mark::Older(n) => Ok(n),
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

/// Brings a directory of `format` to the current one, then writes the
/// mark; nothing to do for the current format.
pub fn to_current(db: &sled::Db, spool: &sled::Tree, segments: &Segments, format: u32) -> Result<(), StoreError> {
    if format == FORMAT {
        return Ok(());
    }
    if format < 2 {
        bodies_to_segments(db, spool, segments)?;
    }
    retired_into_spool(db, spool)?;
    db.insert(FORMAT_KEY, &FORMAT.to_be_bytes())?;
    db.flush()?;
    Ok(())
}

/// Copies the `retired` tree's records (`m/`, `x/` keys there) into the
/// spool tree (`r/`, `x/`), then drops that tree.
fn retired_into_spool(db: &sled::Db, spool: &sled::Tree) -> Result<(), StoreError> {
    if !db.tree_names().iter().any(|n| n.as_ref() == b"retired") {
        return Ok(());
    }
    let retired = db.open_tree("retired")?;
    let mut batch = sled::Batch::default();
    let mut n = 0usize;
    for item in retired.iter() {
        let (k, v) = item?;
        match k.first() {
            Some(&META) => {
                let mut to = k.to_vec();
                to[0] = RETIRED;
                batch.insert(to, v);
            }
            Some(&FINISHED) => batch.insert(k, v),
            _ => continue,
        }
        n += 1;
        if n % 512 == 0 {
            spool.apply_batch(std::mem::take(&mut batch))?;
        }
    }
    spool.apply_batch(batch)?;
    db.flush()?;
    drop(retired);
    db.drop_tree("retired")?;
    if n > 0 {
        tracing::info!(keys = n, "moved retired message records into the spool tree (spool format {FORMAT})");
    }
    Ok(())
}

/// Moves every chunked body to segments.
fn bodies_to_segments(db: &sled::Db, spool: &sled::Tree, segments: &Segments) -> Result<(), StoreError> {
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
            (None, Mark::Older(1)),
            (Some(&1u32.to_be_bytes()), Mark::Older(1)),
            (Some(&2u32.to_be_bytes()), Mark::Older(2)),
            (Some(&3u32.to_be_bytes()), Mark::Older(3)),
            (Some(&4u32.to_be_bytes()), Mark::Older(4)),
            (Some(&5u32.to_be_bytes()), Mark::Current),
            (Some(&6u32.to_be_bytes()), Mark::Newer(6)),
            (Some(&0u32.to_be_bytes()), Mark::Unreadable),
            (Some(b"4"), Mark::Unreadable),
        ];
        for (value, want) in cases {
            assert_eq!(&read_mark(*value), want, "{value:?}");
        }
    }

    #[test]
    fn salting_starts_after_the_last_segment_and_stays_there() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().temporary(true).open().unwrap();
        let spool = db.open_tree("spool").unwrap();
        let bodies = dir.path().join("bodies");
        assert_eq!(salted_from(&db, &spool, &bodies).unwrap(), 1, "a new directory: from the first");
        spool.remove(SALTED_FROM).unwrap();
        std::fs::create_dir_all(&bodies).unwrap();
        for n in [2, 3] {
            std::fs::write(bodies.join(format!("{n:08}.seg")), b"").unwrap();
        }
        assert_eq!(salted_from(&db, &spool, &bodies).unwrap(), 4, "format 4's segments stay plain");
        std::fs::write(bodies.join("00000009.seg"), b"").unwrap();
        assert_eq!(salted_from(&db, &spool, &bodies).unwrap(), 4, "recorded once");
    }
}
