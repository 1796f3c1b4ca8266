//! New messages out on their first delivery round, kept out of sled.
//!
//! A message the queue sends on at once from memory is durable in its
//! record frame (record, due time, events) and body frame before its 250
//! ([`super::segments`]). Most are delivered within milliseconds, and
//! writing their record, due key and body location into sled only to
//! take them out again a moment later was half of sled's work per
//! message. So the committer keeps such a message here instead, and its
//! first write decides where it goes:
//! - retired (delivered, or failed for good): only the retired record
//!   and the events (those of its acceptance first) are written, in the
//!   retirement's batch;
//! - anything else (deferred, edited, a bounce, a second destination's
//!   outcome): it is *settled* into sled — record, due key, body
//!   location, acceptance events — in the batch of that write;
//! - still here after [`SETTLE_AFTER`] (a slow receiver): the committer
//!   settles it with its next round, so the replay checkpoint never lags
//!   more than that behind.
//!
//! Reads see these messages as queued ([`super::Store::message`] and the
//! rest look here first). A crash loses nothing: the replay checkpoint
//! never passes the record frame of a message still here
//! ([`Pending::checkpoint`]), so the next start brings it back from its
//! frame, as it does a message whose batch a crash took
//! ([`super::replay`]).
//!
//! Whoever takes a message out of here holds the lock until the batch
//! that takes it over is applied: a reader that no longer finds it here
//! finds it in sled, and the checkpoint the committer computes never
//! passes a message whose batch is not applied yet.

use super::segments::{BodyRef, Position};
use crate::events::Event;
use crate::id::MessageId;
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// How long a message stays out of sled at most.
pub const SETTLE_AFTER: Duration = Duration::from_secs(1);

/// One message kept here.
pub struct Held {
    /// Its record frame's payload ([`super::replay::encode`]).
    pub note: Vec<u8>,
    pub due_ms: i64,
    pub body: BodyRef,
    /// Its acceptance events, written with its first batch.
    pub events: Vec<Event>,
    /// Where its record frame starts.
    pub frame: Position,
    pub since: Instant,
}

impl Held {
    /// The record, encoded as stored in sled.
    pub fn record(&self) -> &[u8] {
        super::replay::record_in(&self.note)
    }

    /// Adds to `batch` what queues it in sled (record, due key, body
    /// location) and to `events` its acceptance events. It stays as it is
    /// (the caller puts it back should the batch fail).
    pub fn settle(&self, batch: &mut sled::Batch, id: &MessageId, events: &mut Vec<Event>) {
        super::enqueue(batch, id, self.record(), self.due_ms, &self.body);
        events.extend(self.events.iter().cloned());
    }
}

#[derive(Default)]
pub struct Pending {
    held: Mutex<HashMap<MessageId, Held>>,
}

pub type Guard<'a> = MutexGuard<'a, HashMap<MessageId, Held>>;

impl Pending {
    /// The messages, locked (see the module's note on holding it).
    pub fn lock(&self) -> Guard<'_> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Where the replay must start so that it finds every message still
    /// here, given that the appends have reached `end` (pure, for tests).
    pub fn checkpoint(held: &HashMap<MessageId, Held>, end: Position) -> Position {
        held.values().map(|h| h.frame).min().map_or(end, |first| first.min(end))
    }

    /// The messages here for longer than [`SETTLE_AFTER`] at `now`.
    pub fn overdue(held: &HashMap<MessageId, Held>, now: Instant) -> Vec<MessageId> {
        held.iter().filter(|(_, h)| now.duration_since(h.since) >= SETTLE_AFTER).map(|(id, _)| *id).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(segment: u64, offset: u64, since: Instant) -> Held {
        Held { note: super::super::replay::encode(b"{}", 0, &[]), due_ms: 0, body: BodyRef { segment, offset: offset + 40, len: 1 }, events: Vec::new(), frame: Position { segment, offset }, since }
    }

    #[test]
    fn the_checkpoint_stops_at_the_first_frame_still_held() {
        let end = Position { segment: 3, offset: 900 };
        let now = Instant::now();
        let cases: &[(&[(u64, u64)], Position)] = &[
            (&[], end),
            (&[(3, 100)], Position { segment: 3, offset: 100 }),
            (&[(3, 500), (2, 700), (3, 100)], Position { segment: 2, offset: 700 }),
            (&[(3, 900)], end),
        ];
        for (frames, want) in cases {
            let map: HashMap<MessageId, Held> = frames.iter().enumerate().map(|(i, (s, o))| (MessageId::generate(1_700_000_000_000 + i as i64), held(*s, *o, now))).collect();
            assert_eq!(Pending::checkpoint(&map, end), *want, "{frames:?}");
        }
    }

    #[test]
    fn messages_held_too_long_are_overdue() {
        let now = Instant::now() + Duration::from_secs(10);
        let old = MessageId::generate(1_700_000_000_000);
        let new = MessageId::generate(1_700_000_000_001);
        let edge = MessageId::generate(1_700_000_000_002);
        let map: HashMap<MessageId, Held> = [(old, held(1, 0, now - Duration::from_secs(5))), (new, held(1, 100, now - Duration::from_millis(10))), (edge, held(1, 200, now - SETTLE_AFTER))].into_iter().collect();
        let mut overdue = Pending::overdue(&map, now);
        overdue.sort();
        let mut want = vec![old, edge];
        want.sort();
        assert_eq!(overdue, want);
    }

    use crate::events::EventKind;
    use crate::store::{LOCATION, META, MessageRecord, Store, key};
    use std::sync::Arc;

    fn record(n: i64) -> MessageRecord {
        crate::store::records::sample(MessageId::generate(1_700_000_000_000 + n), 1_000_000_000_000 + n)
    }

    fn accepted(r: &MessageRecord) -> Vec<Event> {
        vec![r.event(EventKind::Accepted, 1_700_000_000_000)]
    }

    /// Spools `r` as sent on at once; returns once `then` ran.
    async fn spool_sending(store: &Store, r: &MessageRecord) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        store.spool_sending(r, Arc::new(b"body".to_vec()), accepted(r), move |x| {
            let _ = tx.send(x.is_ok());
        }).await.unwrap();
        assert!(rx.await.unwrap(), "then ran with Ok");
    }

    fn in_sled(store: &Store, id: &MessageId) -> (bool, bool) {
        (store.spool.contains_key(key(META, id)).unwrap(), store.spool.contains_key(key(LOCATION, id)).unwrap())
    }

    fn event_kinds(store: &Store) -> Vec<String> {
        store.spool.scan_prefix(b"e/").map(|item| serde_json::from_slice::<Event>(&item.unwrap().1).unwrap().kind.unwrap().as_str().to_string()).collect()
    }

    async fn reopen(dir: &std::path::Path) -> Store {
        crate::store::reopened(|| Store::open(dir, 8)).await
    }

    /// A new store holding message `n`, sent on at once.
    async fn holding(n: i64) -> (tempfile::TempDir, Store, MessageRecord) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 8).unwrap();
        let r = record(n);
        spool_sending(&store, &r).await;
        (dir, store, r)
    }

    #[tokio::test]
    async fn a_message_sent_at_once_reads_as_queued_and_reaches_sled_only_retired() {
        let (_dir, store, r) = holding(1).await;
        assert_eq!(store.message(&r.id).unwrap().as_ref(), Some(&r));
        assert_eq!(store.find(&r.id).unwrap().as_ref(), Some(&r));
        assert_eq!(store.body(&r.id).unwrap().as_deref(), Some(&b"body"[..]));
        assert_eq!(store.messages().map(|m| m.unwrap().id).collect::<Vec<_>>(), vec![r.id]);
        assert_eq!(store.held(), vec![r.id]);
        assert_eq!(in_sled(&store, &r.id), (false, false), "kept out of sled");
        assert!(event_kinds(&store).is_empty(), "its events wait for its first batch");

        let mut done = r.clone();
        done.finished_ms = Some(1_700_000_000_500);
        let (tx, rx) = tokio::sync::oneshot::channel();
        store.retire_soon(&done, vec![done.event(EventKind::Delivered, 1_700_000_000_500)], move |x| {
            let _ = tx.send(x.is_ok());
        });
        assert!(rx.await.unwrap());
        assert_eq!(store.message(&r.id).unwrap(), None);
        assert_eq!(store.find(&r.id).unwrap().and_then(|m| m.finished_ms), Some(1_700_000_000_500), "retired");
        assert_eq!(store.body(&r.id).unwrap(), None);
        assert!(store.held().is_empty());
        assert_eq!(in_sled(&store, &r.id), (false, false));
        assert_eq!(event_kinds(&store), ["message.accepted", "message.delivered"], "acceptance first, in the retirement's batch");
    }

    #[tokio::test]
    async fn a_write_to_a_held_message_settles_it_into_sled() {
        let (_dir, store, r) = holding(2).await;
        let mut deferred = r.clone();
        deferred.due_ms = r.due_ms + 60_000;
        store.update_with(&deferred, Some(r.due_ms), vec![r.event(EventKind::Deferred, 1_700_000_000_100)]).unwrap();
        assert!(store.held().is_empty());
        assert_eq!(in_sled(&store, &r.id), (true, true), "record and body location in sled");
        assert_eq!(store.message(&r.id).unwrap().as_ref(), Some(&deferred));
        assert_eq!(store.body(&r.id).unwrap().as_deref(), Some(&b"body"[..]));
        assert_eq!(store.due(i64::MAX, 10).unwrap(), vec![(deferred.due_ms, r.id)], "one due key, the new one");
        assert_eq!(event_kinds(&store), ["message.accepted", "message.deferred"]);
        // Retired from sled like any queued message, its body released.
        store.retire(&deferred).unwrap();
        assert_eq!(in_sled(&store, &r.id), (false, false));
        assert!(store.due(i64::MAX, 10).unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_message_held_too_long_is_settled_by_the_committer() {
        let (_dir, store, r) = holding(3).await;
        tokio::time::sleep(SETTLE_AFTER + Duration::from_millis(300)).await;
        assert!(store.held().is_empty());
        assert_eq!(in_sled(&store, &r.id), (true, true));
        assert_eq!(store.message(&r.id).unwrap().as_ref(), Some(&r));
        assert_eq!(event_kinds(&store), ["message.accepted"]);
    }

    /// A crash while a message is held: it is in no batch, but the
    /// checkpoint stayed before its frame, so the next start brings it
    /// back, once, and nothing else twice.
    #[tokio::test]
    async fn a_crash_brings_back_a_held_message_from_its_frame() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 8).unwrap();
        let (before, held, after) = (record(4), record(5), record(6));
        store.spool(&before, Arc::new(b"before".to_vec()), accepted(&before)).await.unwrap();
        spool_sending(&store, &held).await;
        store.spool(&after, Arc::new(b"after".to_vec()), accepted(&after)).await.unwrap();
        store.durable().await.unwrap();
        assert_eq!(in_sled(&store, &held.id), (false, false));
        // The crash: the process ends with the message held.
        drop(store);
        let store = reopen(dir.path()).await;
        assert_eq!(store.message(&held.id).unwrap().as_ref(), Some(&held), "brought back");
        assert_eq!(store.body(&held.id).unwrap().as_deref(), Some(&b"body"[..]));
        assert_eq!(in_sled(&store, &held.id), (true, true));
        assert_eq!(store.messages().count(), 3);
        assert_eq!(event_kinds(&store).len(), 3, "each acceptance once");
        drop(store);
        let store = reopen(dir.path()).await;
        assert_eq!(store.messages().count(), 3);
        assert_eq!(event_kinds(&store).len(), 3);
    }
}
