//! Bringing back, at start, new messages whose records a crash took from
//! sled after their writers were answered.
//!
//! A new message is durable once its record frame and body frame are
//! written and fdatasync'ed ([`super::segments`]); the committer then
//! answers, applies its record to sled, and flushes sled after that.
//! Each round's batch also moves the checkpoint (`c/wal`) to the end of
//! the frames it wrote, so once that batch is on disk, so is everything
//! the frames before the checkpoint say. At start, every record frame
//! after the checkpoint whose message sled knows neither as queued nor as
//! retired (a message kept out of sled on its first round,
//! [`super::pending`], holds the checkpoint back) is applied again: record, due key, body location and events,
//! as the lost batch would have. A message that had also been delivered
//! in those few milliseconds is thus sent again: at least once, never
//! lost.
//!
//! A record frame's payload:
//!
//! | bytes | what                                       |
//! |-------|--------------------------------------------|
//! | 8     | due time, ms, i64 big-endian               |
//! | 4     | record length, u32 big-endian              |
//! | len   | the record, as stored in sled              |
//! | rest  | the events, a JSON array                   |

use super::events::EventLog;
use super::segments::{self, BodyRef, Position};
use super::{META, RETIRED, StoreError, key};
use crate::events::Event;
use crate::id::MessageId;
use std::path::Path;

/// Where the checkpoint is kept, in the spool tree.
pub const CHECKPOINT: &[u8] = b"c/wal";

/// A record frame's payload.
pub fn encode(record: &[u8], due_ms: i64, events: &[Event]) -> Vec<u8> {
    let events = serde_json::to_vec(events).unwrap_or_else(|_| b"[]".to_vec());
    let mut out = Vec::with_capacity(12 + record.len() + events.len());
    out.extend_from_slice(&due_ms.to_be_bytes());
    out.extend_from_slice(&(record.len() as u32).to_be_bytes());
    out.extend_from_slice(record);
    out.extend_from_slice(&events);
    out
}

/// The record in a payload [`encode`] made.
pub fn record_in(payload: &[u8]) -> &[u8] {
    let len = u32::from_be_bytes([payload[8], payload[9], payload[10], payload[11]]) as usize;
    &payload[12..12 + len]
}

/// A record frame's due time, record and events; `None` if malformed.
pub fn decode(payload: &[u8]) -> Option<(i64, &[u8], Vec<Event>)> {
    let due = i64::from_be_bytes(payload.get(..8)?.try_into().ok()?);
    let len = u32::from_be_bytes(payload.get(8..12)?.try_into().ok()?) as usize;
    let record = payload.get(12..12 + len)?;
    let events = serde_json::from_slice(payload.get(12 + len..)?).ok()?;
    Some((due, record, events))
}

/// Applies again every record frame after the checkpoint whose message
/// sled does not know; returns how many. Runs before the segments are
/// opened, so they count the bodies it brings back.
pub fn replay(spool: &sled::Tree, events: &EventLog, bodies: &Path, salted_from: u64) -> Result<usize, StoreError> {
    let from = spool.get(CHECKPOINT)?.and_then(|v| Position::decode(&v)).unwrap_or_default();
    let mut pending: Option<(MessageId, Vec<u8>)> = None;
    let mut n = 0;
    for (segment, frame) in segments::frames_from(bodies, from, salted_from)? {
        if frame.record {
            pending = frame.id.map(|id| (id, frame.payload));
            continue;
        }
        // A body frame: brought back with the record frame right before
        // it (a body copied forward has none).
        let Some((id, payload)) = pending.take() else { continue };
        if frame.id != Some(id) || spool.contains_key(key(META, &id))? || spool.contains_key(key(RETIRED, &id))? {
            continue;
        }
        let Some((due_ms, record, lost_events)) = decode(&payload) else {
            tracing::error!(msg_id = %id, segment, offset = frame.offset, "a record frame is unreadable; its message is not brought back");
            continue;
        };
        let mut batch = sled::Batch::default();
        super::enqueue(&mut batch, &id, record, due_ms, &BodyRef { segment, offset: frame.offset, len: frame.len });
        events.apply(batch, lost_events)?;
        tracing::warn!(msg_id = %id, "brought back a message accepted just before a crash, from its record frame");
        n += 1;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{LOCATION, MessageRecord, Store, due_key};

    fn record(n: i64) -> MessageRecord {
        crate::store::records::sample(MessageId::generate(1_700_000_000_000 + n), 1_000_000_000_000 + n)
    }

    /// Opens the store in `dir`, waiting for the previous handle's commit
    /// thread to let go of the database.
    async fn reopen(dir: &Path) -> Store {
        crate::store::reopened(|| Store::open_with(dir, 8, outboxes())).await
    }

    /// One webhook that wants every message event.
    fn outboxes() -> Vec<crate::store::events::Outbox> {
        vec![crate::store::events::Outbox { name: "billing".into(), filter: crate::events::TypeFilter::new(&["message.*".to_string()]).unwrap() }]
    }

    #[tokio::test]
    async fn a_message_whose_batch_a_crash_took_is_brought_back_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_with(dir.path(), 8, outboxes()).unwrap();
        let accepted = |r: &MessageRecord| vec![r.event(crate::events::EventKind::Accepted, 1_700_000_000_000)];
        // Spooled, retired and purged long ago: before the checkpoint.
        let gone = record(0);
        store.spool(&gone, std::sync::Arc::new(b"gone".to_vec()), Vec::new()).await.unwrap();
        store.retire(&gone).unwrap();
        assert_eq!(store.purge_retired(i64::MAX).unwrap(), 1);
        let kept = record(1);
        store.spool(&kept, std::sync::Arc::new(b"kept".to_vec()), accepted(&kept)).await.unwrap();
        let checkpoint = store.spool.get(CHECKPOINT).unwrap().unwrap();
        let lost = record(2);
        store.spool(&lost, std::sync::Arc::new(b"lost".to_vec()), accepted(&lost)).await.unwrap();
        store.durable().await.unwrap();
        // The crash: sled lost the last round's batch (its keys, the
        // checkpoint it moved, its event); the frames are on disk.
        let mut batch = sled::Batch::default();
        for k in [key(META, &lost.id).to_vec(), key(LOCATION, &lost.id).to_vec(), due_key(lost.due_ms, &lost.id).to_vec()] {
            batch.remove(k);
        }
        batch.insert(CHECKPOINT, checkpoint);
        store.spool.apply_batch(batch).unwrap();
        let last_event = store.spool.scan_prefix(b"e/").next_back().unwrap().unwrap().0;
        store.spool.remove(last_event).unwrap();
        let last_in_outbox = store.spool.scan_prefix(b"w/billing/").next_back().unwrap().unwrap().0;
        store.spool.remove(last_in_outbox).unwrap();
        assert_eq!(store.events().outbox_len("billing"), 1);
        store.durable().await.unwrap();
        drop(store);

        let store = reopen(dir.path()).await;
        assert_eq!(store.message(&lost.id).unwrap().as_ref(), Some(&lost), "brought back as spooled");
        assert_eq!(store.body(&lost.id).unwrap().unwrap(), b"lost");
        assert_eq!(store.due(i64::MAX, 10).unwrap().iter().filter(|(_, id)| *id == lost.id).count(), 1);
        assert_eq!(store.message(&kept.id).unwrap().as_ref(), Some(&kept));
        assert_eq!(store.find(&gone.id).unwrap(), None, "a message before the checkpoint stays gone");
        let events = |s: &Store| s.spool.scan_prefix(b"e/").count();
        assert_eq!(events(&store), 2, "the lost event is written again");
        assert_eq!(store.events().outbox_len("billing"), 2, "and goes to the webhook's outbox, as it did the first time");
        // Once back, it is not brought back again.
        drop(store);
        let store = reopen(dir.path()).await;
        assert_eq!(store.messages().count(), 2);
        assert_eq!(events(&store), 2);
    }

    #[test]
    fn record_frame_payloads_round_trip() {
        let event = Event::new(crate::events::EventKind::Accepted, 1_700_000_000_000);
        let cases: &[(&[u8], i64, Vec<Event>)] = &[(b"{\"v\":1}", 42, vec![event.clone()]), (b"", -1, Vec::new()), (b"x", i64::MAX, vec![event.clone(), event])];
        for (record, due, events) in cases {
            let payload = encode(record, *due, events);
            let (d, r, e) = decode(&payload).unwrap();
            assert_eq!((d, r, e.len()), (*due, *record, events.len()));
        }
        assert!(decode(b"short").is_none());
        let mut truncated = encode(b"{\"v\":1}", 1, &[]);
        truncated.truncate(14);
        assert!(decode(&truncated).is_none());
    }
}
