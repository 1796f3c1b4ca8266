//! The event log and the webhook outboxes, kept in the spool tree so an
//! event goes into the same sled batch as the change it reports: a crash
//! can neither lose an event whose change is on disk nor keep one whose
//! change is not.
//!
//! | key                              | value              |
//! |----------------------------------|--------------------|
//! | `e/<event id, 16 bytes BE>`      | [`Event`] (JSON)   |
//! | `w/<webhook name>/<event id>`    | attempts so far (u32 BE) |
//!
//! Ids are assigned, and the batch applied, under one lock, so ids reach
//! the tree in order. Readers only see events up to the *durable* mark:
//! the last id applied before the latest successful flush began. A reader
//! that keeps the last id it saw therefore misses nothing and never sees
//! an event that a crash could still take back.

use super::StoreError;
use crate::events::{Event, EventId, EventKind, TypeFilter};
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock};
use tokio::sync::watch;

const EVENT: &[u8] = b"e/";
const OUTBOX: &[u8] = b"w/";

/// A webhook's outbox: its name and the types it wants.
#[derive(Clone, Debug)]
pub struct Outbox {
    pub name: String,
    pub filter: TypeFilter,
}

pub struct EventLog {
    tree: sled::Tree,
    /// The last id assigned (and applied: both happen under this lock).
    last: Mutex<EventId>,
    durable: watch::Sender<EventId>,
    outboxes: RwLock<Vec<Outbox>>,
    /// Events appended since start, by [`EventKind::ALL`] index (metrics).
    counts: [std::sync::atomic::AtomicU64; EventKind::ALL.len()],
}

fn event_key(id: EventId) -> [u8; 18] {
    let mut k = [0u8; 18];
    k[..2].copy_from_slice(EVENT);
    k[2..].copy_from_slice(&id.to_bytes());
    k
}

fn outbox_prefix(name: &str) -> Vec<u8> {
    let mut k = OUTBOX.to_vec();
    k.extend_from_slice(name.as_bytes());
    k.push(b'/');
    k
}

fn outbox_key(name: &str, id: EventId) -> Vec<u8> {
    let mut k = outbox_prefix(name);
    k.extend_from_slice(&id.to_bytes());
    k
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt { key: what.to_string(), reason: e.to_string() }
}

impl EventLog {
    /// Opens the log in `tree`; everything already there is durable.
    pub fn open(tree: sled::Tree) -> Result<EventLog, StoreError> {
        let last = match tree.scan_prefix(EVENT).next_back() {
            Some(item) => EventId::from_bytes(&item?.0[2..]).ok_or_else(|| corrupt("event key", "bad length"))?,
            None => EventId::default(),
        };
        Ok(EventLog { tree, last: Mutex::new(last), durable: watch::Sender::new(last), outboxes: RwLock::new(Vec::new()), counts: Default::default() })
    }

    fn last(&self) -> MutexGuard<'_, EventId> {
        self.last.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The webhooks whose outboxes new events are copied into; outboxes
    /// of webhooks no longer configured are emptied.
    pub fn set_outboxes(&self, outboxes: Vec<Outbox>) -> Result<(), StoreError> {
        let mut stale = sled::Batch::default();
        let mut n = 0;
        for item in self.tree.scan_prefix(OUTBOX) {
            let (k, _) = item?;
            let name = k[2..].split(|&b| b == b'/').next().unwrap_or_default();
            if !outboxes.iter().any(|o| o.name.as_bytes() == name) {
                stale.remove(k);
                n += 1;
            }
        }
        if n > 0 {
            tracing::warn!(events = n, "dropping the outboxes of webhooks no longer configured");
            self.tree.apply_batch(stale)?;
        }
        *self.outboxes.write().unwrap_or_else(PoisonError::into_inner) = outboxes;
        Ok(())
    }

    /// Applies `batch` with `events` appended to the log (and to the
    /// outboxes that want them), atomically.
    pub fn apply(&self, mut batch: sled::Batch, events: Vec<Event>) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(self.tree.apply_batch(batch)?);
        }
        let outboxes = self.outboxes.read().unwrap_or_else(PoisonError::into_inner).clone();
        let mut last = self.last();
        let mut id = *last;
        for mut event in events {
            if let Some(i) = EventKind::ALL.iter().position(|k| Some(*k) == event.kind) {
                self.counts[i].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            id = EventId::next(id, event.time_ms);
            event.id = id.to_string();
            let bytes = serde_json::to_vec(&event).map_err(|e| corrupt("event", e))?;
            batch.insert(&event_key(id), bytes);
            for o in outboxes.iter().filter(|o| event.kind.is_some_and(|k| o.filter.wants(k))) {
                batch.insert(outbox_key(&o.name, id), &0u32.to_be_bytes());
            }
        }
        self.tree.apply_batch(batch)?;
        *last = id;
        Ok(())
    }

    /// Events appended since start, per type.
    pub fn counts(&self) -> Vec<(EventKind, u64)> {
        EventKind::ALL.iter().zip(&self.counts).map(|(k, c)| (*k, c.load(std::sync::atomic::Ordering::Relaxed))).collect()
    }

    /// The last id applied; taken by the committer before each flush.
    pub fn applied(&self) -> EventId {
        *self.last()
    }

    /// Called after a successful flush that began after `mark` was applied.
    pub fn set_durable(&self, mark: EventId) {
        self.durable.send_if_modified(|d| {
            let newer = mark > *d;
            if newer {
                *d = mark;
            }
            newer
        });
    }

    /// The durable mark, changing as flushes complete.
    pub fn durable(&self) -> watch::Receiver<EventId> {
        self.durable.subscribe()
    }

    /// Up to `limit` durable events after `after`, oldest first, that
    /// `keep` accepts; also the id of the last event looked at (the cursor
    /// to go on from, even when `keep` refused it).
    pub fn after(&self, after: EventId, limit: usize, keep: impl Fn(&Event) -> bool) -> Result<(Vec<Event>, EventId), StoreError> {
        let durable = *self.durable.borrow();
        let mut out = Vec::new();
        let mut cursor = after;
        if after >= durable {
            return Ok((out, cursor));
        }
        let start = event_key(EventId(after.0 + 1));
        let end = event_key(durable);
        for item in self.tree.range(start..=end) {
            let (k, v) = item?;
            let event: Event = serde_json::from_slice(&v).map_err(|e| corrupt(&String::from_utf8_lossy(&k), e))?;
            cursor = EventId::from_bytes(&k[2..]).unwrap_or(cursor);
            if keep(&event) {
                out.push(event);
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok((out, cursor))
    }

    /// The oldest durable event waiting in `name`'s outbox, with the
    /// attempts made so far.
    pub fn outbox_head(&self, name: &str) -> Result<Option<(EventId, Event, u32)>, StoreError> {
        let durable = *self.durable.borrow();
        for item in self.tree.scan_prefix(outbox_prefix(name)) {
            let (k, v) = item?;
            let id = EventId::from_bytes(&k[k.len() - 16..]).ok_or_else(|| corrupt("outbox key", "bad length"))?;
            if id > durable {
                return Ok(None);
            }
            let attempts = v.get(..4).and_then(|b| b.try_into().ok()).map(u32::from_be_bytes).unwrap_or(0);
            match self.tree.get(event_key(id))? {
                Some(bytes) => {
                    let event = serde_json::from_slice(&bytes).map_err(|e| corrupt("event", e))?;
                    return Ok(Some((id, event, attempts)));
                }
                // Pruned meanwhile: nothing left to send.
                None => {
                    self.tree.remove(k)?;
                }
            }
        }
        Ok(None)
    }

    /// The event left `name`'s outbox (delivered, or given up).
    pub fn outbox_remove(&self, name: &str, id: EventId) -> Result<(), StoreError> {
        self.tree.remove(outbox_key(name, id))?;
        Ok(())
    }

    pub fn outbox_attempted(&self, name: &str, id: EventId, attempts: u32) -> Result<(), StoreError> {
        self.tree.insert(outbox_key(name, id), &attempts.to_be_bytes())?;
        Ok(())
    }

    /// Events waiting in `name`'s outbox.
    pub fn outbox_len(&self, name: &str) -> usize {
        self.tree.scan_prefix(outbox_prefix(name)).count()
    }

    /// Forgets events older than `before_ms`; returns how many.
    pub fn prune(&self, before_ms: i64) -> Result<usize, StoreError> {
        let mut n = 0;
        let mut batch = sled::Batch::default();
        for item in self.tree.range(event_key(EventId::default())..event_key(EventId::at_ms(before_ms))) {
            batch.remove(item?.0);
            n += 1;
            if n % 1024 == 0 {
                self.tree.apply_batch(std::mem::take(&mut batch))?;
            }
        }
        self.tree.apply_batch(batch)?;
        Ok(n)
    }
}
