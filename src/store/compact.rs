//! Copying the survivors of old body segments forward, so disk use stays
//! bounded when a few long-deferred messages would otherwise keep whole
//! segments alive.
//!
//! A closed segment whose queued bodies take less than a quarter of it is
//! emptied: its survivors are appended to the current segment (written
//! and fdatasync'ed first), then each one's location key is swapped from
//! the old place to the new one — a compare-and-swap, so a message retired
//! meanwhile is not brought back. The old segment, empty, is deleted after
//! the next successful flush, like any other.

use super::segments::{BodyRef, HEADER};
use super::{LOCATION, Store, StoreError, key};
use crate::id::MessageId;
use std::collections::BTreeMap;

/// Bodies copied per write.
const GROUP: usize = 64;

/// Whether a closed segment of `size` bytes holding `live` bytes of queued
/// bodies should be copied forward (pure, for the tests).
pub fn worth_copying(live: u64, size: u64) -> bool {
    live.saturating_mul(4) < size
}

impl Store {
    /// Copies the survivors of mostly dead segments forward; returns how
    /// many bodies moved.
    pub fn compact(&self) -> Result<usize, StoreError> {
        let active = self.segments.active();
        let mut closed: BTreeMap<u64, (u64, Vec<(MessageId, BodyRef)>)> = BTreeMap::new();
        for item in self.spool.scan_prefix([LOCATION, b'/']) {
            let (k, v) = item?;
            let (Some(id), Some(r)) = (k.get(2..).and_then(|b| std::str::from_utf8(b).ok()).and_then(MessageId::parse), BodyRef::decode(&v)) else {
                continue;
            };
            if r.segment != active {
                let e = closed.entry(r.segment).or_default();
                e.0 += HEADER as u64 + r.len as u64;
                e.1.push((id, r));
            }
        }
        let mut moved = 0;
        for (segment, (live, survivors)) in closed {
            if !worth_copying(live, self.segments.size(segment)?) {
                continue;
            }
            for group in survivors.chunks(GROUP) {
                let bodies: Vec<(MessageId, Vec<u8>)> = group.iter().map(|(id, r)| Ok((*id, self.segments.read(*r)?))).collect::<Result<_, StoreError>>()?;
                let refs = self.segments.append(&bodies.iter().map(|(id, b)| (*id, b.as_slice())).collect::<Vec<_>>())?;
                // A retirement reads the location and releases what it
                // read: not between a swap here and its release.
                let _locations = self.segments.locations();
                for ((id, old), new) in group.iter().zip(refs) {
                    let swapped = self.spool.compare_and_swap(key(LOCATION, id), Some(&old.encode()[..]), Some(&new.encode()[..]))?;
                    if swapped.is_ok() {
                        self.segments.release(*old);
                        moved += 1;
                    } else {
                        // Retired (or moved) meanwhile: the copy is dead.
                        self.segments.release(new);
                    }
                }
            }
            tracing::info!(segment, "copied the survivors of a mostly empty body segment forward");
        }
        Ok(moved)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MessageRecord;

    #[test]
    fn which_segments_are_copied() {
        let cases = [(0, 100, true), (24, 100, true), (25, 100, false), (100, 100, false), (0, 0, false)];
        for (live, size, want) in cases {
            assert_eq!(worth_copying(live, size), want, "{live} of {size}");
        }
    }

    fn record(id: MessageId) -> MessageRecord {
        crate::store::records::sample(id, 1_000_000_000_000)
    }

    #[tokio::test]
    async fn survivors_move_forward_and_the_old_segments_go() {
        let dir = tempfile::tempdir().unwrap();
        // Each message: a record frame (record, due time, no events) and
        // a body frame of 600 bytes; a segment closes after five.
        let frames = 2 * HEADER + 12 + record(MessageId::MIN).encode().len() + 2 + 600;
        let max = 4 * frames as u64 + 1;
        let store = Store::open_sized(dir.path(), 8, max).unwrap();
        let mut records = Vec::new();
        for n in 0..12u8 {
            let r = record(MessageId::generate(1_700_000_000_000 + n as i64));
            store.spool(&r, std::sync::Arc::new(vec![b'a' + n; 600]), Vec::new()).await.unwrap();
            records.push(r);
        }
        let segments = |d: &std::path::Path| std::fs::read_dir(d.join("bodies")).unwrap().count();
        assert_eq!(segments(dir.path()), 3, "five bodies per segment");
        // Everything but the first message of each early segment leaves.
        let keep = [0usize, 5];
        for (_, r) in records.iter().enumerate().filter(|(i, _)| !keep.contains(i) && *i < 10) {
            store.retire(r).unwrap();
        }
        store.durable().await.unwrap();
        let before = segments(dir.path());
        let moved = store.compact().unwrap();
        assert_eq!(moved, keep.len());
        store.durable().await.unwrap();
        assert!(segments(dir.path()) < before, "emptied segments deleted after the flush");
        for (i, r) in records.iter().enumerate().filter(|(i, _)| keep.contains(i) || *i >= 10) {
            assert_eq!(store.body(&r.id).unwrap().unwrap(), vec![b'a' + i as u8; 600], "message {i}");
        }
        // Reopened: counts rebuilt, the same bodies.
        drop(store);
        // The commit thread lets go of the database once it sees the handle gone.
        let mut tries = 0;
        let store = loop {
            match Store::open_sized(dir.path(), 8, max) {
                Ok(s) => break s,
                Err(e) if tries < 50 => {
                    tries += 1;
                    let _ = e;
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                Err(e) => panic!("{e}"),
            }
        };
        assert_eq!(store.body(&records[5].id).unwrap().unwrap(), vec![b'a' + 5; 600]);
        assert_eq!(store.body(&records[1].id).unwrap(), None);
    }

    /// Copying a body forward, and retiring its message (at once, or by
    /// the committer), each read the location, change it, then release
    /// the place left: never two at once, else both could release the
    /// old place, and its segment go while a body in it is still queued.
    /// Each waits here while the test holds the lock they take.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn copying_forward_and_retiring_wait_for_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let frames = 2 * HEADER + 12 + record(MessageId::MIN).encode().len() + 2 + 600;
        let store = Store::open_sized(dir.path(), 8, 4 * frames as u64 + 1).unwrap();
        let mut records = Vec::new();
        for n in 0..12u8 {
            let r = record(MessageId::generate(1_700_000_000_000 + n as i64));
            store.spool(&r, std::sync::Arc::new(vec![b'a' + n; 600]), Vec::new()).await.unwrap();
            records.push(r);
        }
        // Segment 1 keeps messages 0 and 1, segment 2 message 5.
        for r in records.iter().enumerate().filter(|(i, _)| ![0usize, 1, 5].contains(i) && *i < 10).map(|(_, r)| r) {
            store.retire(r).unwrap();
        }
        store.durable().await.unwrap();
        let location = |id: &MessageId| store.spool.get(key(LOCATION, id)).unwrap().map(|v| v.to_vec());
        let before = location(&records[5].id);
        let pause = std::time::Duration::from_millis(200);

        let held = store.segments.locations();
        let copier = std::thread::spawn({
            let store = store.clone();
            move || store.compact().unwrap()
        });
        let (r0, r1) = (records[0].clone(), records[1].clone());
        let retirer = std::thread::spawn({
            let store = store.clone();
            move || store.retire(&r0).unwrap()
        });
        let (tx, mut retired) = tokio::sync::oneshot::channel();
        store.retire_soon(&r1, Vec::new(), move |r| {
            let _ = tx.send(r.is_ok());
        });
        std::thread::sleep(pause);
        assert_eq!(location(&records[5].id), before, "copied forward while the lock was held");
        assert!(location(&records[0].id).is_some() && location(&records[1].id).is_some(), "retired while the lock was held");
        assert!(retired.try_recv().is_err(), "the committer's retirement ran while the lock was held");
        drop(held);

        copier.join().unwrap();
        retirer.join().unwrap();
        assert_eq!(retired.await, Ok(true));
        store.durable().await.unwrap();
        assert_ne!(location(&records[5].id), before, "message 5 copied forward");
        assert_eq!((location(&records[0].id), location(&records[1].id)), (None, None));
        assert_eq!(store.body(&records[5].id).unwrap().unwrap(), vec![b'a' + 5; 600]);
    }
}
