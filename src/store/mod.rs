//! The durable spool: one sled database under the data directory for
//! what is small and structured, and append-only segment files
//! (`bodies/`, see [`segments`]) for the messages themselves.
//!
//! Layout of the `spool` tree (one tree, so a message's record, its body's
//! location and its due-index key change together in one atomic batch):
//!
//! | key                          | value                          |
//! |------------------------------|--------------------------------|
//! | `m/<id>`                     | [`MessageRecord`] (JSON, versioned) |
//! | `l/<id>`                     | where the body is ([`segments::BodyRef`]) |
//! | `q/<due ms, 8 bytes BE><id>` | empty: the due index the scheduler range-scans |
//!
//! (Spool format 1 kept bodies in the tree as `b/<id><n>` 4 KiB chunks;
//! [`migrate`] moves them to segments when such a directory is opened.)
//!
//! Durability is shared: writers apply their batch, then wait on the
//! [`commit::Committer`], which fsyncs once for everyone waiting. A new
//! message is written by the committer itself: its record frame and body
//! go to a segment in one write and fdatasync, which makes it durable and
//! answers its writer; its batch is applied right after (reads wait for
//! it), and sled flushed after that (what a crash takes from sled then is
//! replayed at start: [`replay`]). A new message the queue sends on at
//! once stays out of sled until its first write, most often its
//! retirement ([`pending`]).
//! `c/wal` holds the replay's checkpoint.
//!
//! Finished messages are retired (record only, no body) in the same tree,
//! in the batch that takes them out of the queue, and stay readable until
//! `queue.retire_after` has passed: `r/<id>` → record,
//! `x/<finished ms, 8 bytes BE><id>` → empty. (Formats 1 and 2 kept them
//! in a `retired` tree of their own; [`migrate`] moves them.)

pub mod commit;
mod compact;
mod crc32c;
mod frames;
pub mod disk;
pub mod events;
mod migrate;
mod pending;
mod replay;
pub mod suppressions;
pub mod records;
pub mod segments;

pub use records::{Attempt, MessageRecord, Outcome, Prepared, RcptStatus, Recipient};

use crate::id::MessageId;
use commit::Committer;
use std::path::Path;

const META: u8 = b'm';
const BODY: u8 = b'b';
const LOCATION: u8 = b'l';
const DUE: u8 = b'q';
const RETIRED: u8 = b'r';
const FINISHED: u8 = b'x';

/// Anything the store can fail with.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Sled(#[from] sled::Error),
    #[error("stored record {key} is unreadable: {reason}")]
    Corrupt { key: String, reason: String },
    #[error("the database could not be flushed to disk: {0}")]
    Flush(String),
    #[error("message bodies: {0}")]
    Bodies(#[from] std::io::Error),
    #[error("{0}")]
    Format(String),
}

/// Handle to the open database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    spool: sled::Tree,
    committer: Committer,
    segments: std::sync::Arc<segments::Segments>,
    disk: std::sync::Arc<disk::DiskWatch>,
    events: std::sync::Arc<events::EventLog>,
    /// New messages on their first round, not in sled yet.
    pending: std::sync::Arc<pending::Pending>,
}

fn key(prefix: u8, id: &MessageId) -> [u8; 18] {
    let mut k = [0u8; 18];
    k[0] = prefix;
    k[1] = b'/';
    k[2..].copy_from_slice(id.as_bytes());
    k
}

fn due_key(due_ms: i64, id: &MessageId) -> [u8; 26] {
    time_key(DUE, due_ms, id)
}

fn time_key(prefix: u8, ms: i64, id: &MessageId) -> [u8; 26] {
    let mut k = [0u8; 26];
    k[0] = prefix;
    k[1] = b'/';
    k[2..10].copy_from_slice(&(ms.max(0) as u64).to_be_bytes());
    k[10..].copy_from_slice(id.as_bytes());
    k
}

impl Store {
    /// Opens (or creates) the database in `dir`, with a page cache of
    /// `cache_mb` MiB. Fails if another process holds it.
    pub fn open(dir: &Path, cache_mb: u64) -> Result<Self, StoreError> {
        Self::open_sized(dir, cache_mb, segments::SEGMENT_MAX)
    }

    /// [`Store::open`] for a relay whose webhooks keep `outboxes`: the
    /// events of messages brought back at opening ([`replay`]) go into
    /// them like every other event.
    pub fn open_with(dir: &Path, cache_mb: u64, outboxes: Vec<events::Outbox>) -> Result<Self, StoreError> {
        Self::open_inner(dir, cache_mb, segments::SEGMENT_MAX, outboxes)
    }

    /// [`Store::open`], closing body segments past `segment_max` bytes.
    pub fn open_sized(dir: &Path, cache_mb: u64, segment_max: u64) -> Result<Self, StoreError> {
        Self::open_inner(dir, cache_mb, segment_max, Vec::new())
    }

    fn open_inner(dir: &Path, cache_mb: u64, segment_max: u64, outboxes: Vec<events::Outbox>) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Sled(sled::Error::Io(e)))?;
        // The database holds DKIM private keys and customers' mail: only the
        // relay's own user may enter the directory.
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(|e| StoreError::Sled(sled::Error::Io(e)))?;
        }
        let db = sled::Config::new()
            .path(dir.join("herald.sled"))
            .cache_capacity(cache_mb * 1024 * 1024)
            // We flush explicitly (group commit); no need for sled's timer.
            .flush_every_ms(None)
            .mode(sled::Mode::HighThroughput)
            .open()?;
        let spool = db.open_tree("spool")?;
        let format = migrate::check_format(&db)?;
        let events = std::sync::Arc::new(events::EventLog::open(spool.clone())?);
        events.set_outboxes(outboxes)?;
        let salted_from = migrate::salted_from(&db, &spool, &dir.join("bodies"))?;
        if replay::replay(&spool, &events, &dir.join("bodies"), salted_from)? > 0 {
            db.flush()?;
        }
        let segments = std::sync::Arc::new(segments::Segments::open_sized(&dir.join("bodies"), migrate::live_counts(&spool)?, segment_max, salted_from)?);
        migrate::to_current(&db, &spool, &segments, format)?;
        let pending = std::sync::Arc::new(pending::Pending::default());
        let committer = Committer::start(db.clone(), spool.clone(), events.clone(), segments.clone(), pending.clone());
        let disk = std::sync::Arc::new(disk::DiskWatch::new(dir.to_path_buf()));
        Ok(Self { db, spool, committer, segments, disk, events, pending })
    }

    /// The underlying database, for modules that keep their own trees.
    pub fn db(&self) -> &sled::Db {
        &self.db
    }

    /// The event log and webhook outboxes.
    pub fn events(&self) -> &events::EventLog {
        &self.events
    }

    /// Free space on the data directory, against `store.min_free_mb`.
    pub fn disk(&self) -> &disk::DiskWatch {
        &self.disk
    }

    /// Waits until everything written so far is on disk.
    pub async fn durable(&self) -> Result<(), StoreError> {
        self.committer.durable().await
    }

    /// Asks for everything written so far to reach the disk within a few
    /// milliseconds, without waiting ([`commit::Committer::soon`]).
    pub fn durable_soon(&self) {
        self.committer.soon()
    }

    /// Resolves once the database has failed to write (see
    /// [`commit::Committer::failed`]): it must then be reopened.
    pub async fn failed(&self) {
        self.committer.failed().await
    }

    /// How many fsyncs the committer has done (for the benchmark).
    pub fn flushes(&self) -> u64 {
        self.committer.flushes()
    }

    /// Spools a new message: the body goes to a segment, then record,
    /// body location, due key and `events` in one batch (shared with the
    /// other messages of the commit round). Returns once the message is
    /// on disk and its record applied.
    ///
    /// Whoever spools wakes whoever waits for new mail (the queue's
    /// scheduler, unless the message goes out at once from memory).
    pub async fn spool(&self, record: &MessageRecord, body: std::sync::Arc<Vec<u8>>, events: Vec<crate::events::Event>) -> Result<(), StoreError> {
        let (tx, applied) = tokio::sync::oneshot::channel();
        self.spool_then(record, body, events, move |r| drop(tx.send(r))).await?;
        applied.await.map_err(|_| StoreError::Flush("commit thread is gone".into()))?
    }

    /// [`Store::spool`] that returns as soon as the message is on disk (the
    /// caller may say 250 then), before its record is applied; `then` runs
    /// once it is (on the commit thread: it must not block), or with the
    /// error. Reads meanwhile wait for it ([`commit::Committer::settled`]).
    pub async fn spool_then(&self, record: &MessageRecord, body: std::sync::Arc<Vec<u8>>, events: Vec<crate::events::Event>, then: impl FnOnce(Result<(), StoreError>) + Send + 'static) -> Result<(), StoreError> {
        self.spool_new(record, body, events, false, then).await
    }

    /// [`Store::spool_then`] for a message the caller sends on at once
    /// from memory: it is kept out of sled until it is first written
    /// (retired, most often: [`pending`]), and `then` runs once its frame
    /// is on disk.
    pub async fn spool_sending(&self, record: &MessageRecord, body: std::sync::Arc<Vec<u8>>, events: Vec<crate::events::Event>, then: impl FnOnce(Result<(), StoreError>) + Send + 'static) -> Result<(), StoreError> {
        self.spool_new(record, body, events, true, then).await
    }

    async fn spool_new(&self, record: &MessageRecord, body: std::sync::Arc<Vec<u8>>, events: Vec<crate::events::Event>, sending: bool, then: impl FnOnce(Result<(), StoreError>) + Send + 'static) -> Result<(), StoreError> {
        let note = replay::encode(&record.encode(), record.due_ms, &events);
        let message = commit::NewMessage { id: record.id, body, note, due_ms: record.due_ms, events, sending };
        self.committer.spool(message, Box::new(move |r| then(r.map_err(StoreError::Flush)))).await
    }

    /// Applies a batch that `fill` fills, with `events`. Each of `ids`
    /// still held out of sled ([`pending`]) is settled by it: the batch
    /// first queues it there (unless `retiring`: a retired message needs
    /// only what `fill` writes), and its acceptance events go ahead of
    /// `events`.
    fn apply_settling(&self, ids: &[MessageId], retiring: bool, events: Vec<crate::events::Event>, fill: impl FnOnce(&mut sled::Batch)) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        let mut held = self.pending.lock();
        if !ids.iter().any(|id| held.contains_key(id)) {
            drop(held);
            fill(&mut batch);
            return self.events.apply(batch, events);
        }
        let mut taken = Vec::new();
        let mut all = Vec::new();
        for id in ids {
            if let Some(h) = held.remove(id) {
                if retiring {
                    all.extend(h.events.iter().cloned());
                } else {
                    h.settle(&mut batch, id, &mut all);
                }
                taken.push((*id, h));
            }
        }
        fill(&mut batch);
        all.extend(events);
        // Held until applied (see `pending`); put back should it fail.
        let result = self.events.apply(batch, all);
        if result.is_err() {
            held.extend(taken);
        }
        result
    }

    /// Rewrites a record and moves its due key, atomically; `old_due` is the
    /// due time the record had when it was read.
    pub fn update(&self, record: &MessageRecord, old_due: Option<i64>) -> Result<(), StoreError> {
        self.update_with(record, old_due, Vec::new())
    }

    /// [`Store::update`] for several records, in one batch.
    pub fn update_all(&self, records: &[(&MessageRecord, Option<i64>)]) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        self.committer.settled();
        let ids: Vec<MessageId> = records.iter().map(|(r, _)| r.id).collect();
        self.apply_settling(&ids, false, Vec::new(), |batch| {
            for (record, old_due) in records {
                rewrite(batch, record, *old_due);
            }
        })
    }

    /// [`Store::update`], with `events` appended in the same batch.
    pub fn update_with(&self, record: &MessageRecord, old_due: Option<i64>, events: Vec<crate::events::Event>) -> Result<(), StoreError> {
        self.committer.settled();
        self.apply_settling(&[record.id], false, events, |batch| rewrite(batch, record, old_due))
    }

    /// A queued message's record.
    pub fn message(&self, id: &MessageId) -> Result<Option<MessageRecord>, StoreError> {
        self.committer.settled();
        if let Some(h) = self.pending.lock().get(id) {
            return MessageRecord::decode(h.record()).map(Some);
        }
        match self.spool.get(key(META, id))? {
            Some(v) => MessageRecord::decode(&v).map(Some),
            None => Ok(None),
        }
    }

    /// A message's record, queued or retired.
    pub fn find(&self, id: &MessageId) -> Result<Option<MessageRecord>, StoreError> {
        if let Some(r) = self.message(id)? {
            return Ok(Some(r));
        }
        match self.spool.get(key(RETIRED, id))? {
            Some(v) => MessageRecord::decode(&v).map(Some),
            None => Ok(None),
        }
    }

    /// Moves a finished message out of the queue, in one batch: its record
    /// is kept as retired, its body and due key are dropped. Safe to repeat.
    pub fn retire(&self, record: &MessageRecord) -> Result<(), StoreError> {
        self.retire_with(record, Vec::new())
    }

    /// [`Store::retire`], with `events` appended in the batch that takes
    /// the message out of the queue (a crash before it leaves the message
    /// queued, to be finished, and its events written, again).
    pub fn retire_with(&self, record: &MessageRecord, events: Vec<crate::events::Event>) -> Result<(), StoreError> {
        self.committer.settled();
        let retired = (record.encode(), record.finished_ms.unwrap_or(record.received_ms));
        self.remove_in(Some(retired), record, events)
    }

    /// [`Store::retire_with`], applied by the committer in its next batch
    /// of finished messages, within [`commit::RETIRE_EVERY`] (at once for a
    /// [`Store::durable`] asked after it); `then` runs (on the commit thread, so it
    /// must not block) once it is applied, or failed. Until then the
    /// message reads as queued: the caller keeps it out of the
    /// scheduler's reach until `then`.
    pub fn retire_soon(&self, record: &MessageRecord, events: Vec<crate::events::Event>, then: impl FnOnce(Result<(), StoreError>) + Send + 'static) {
        self.committer.retire(commit::Retirement {
            id: record.id,
            record: record.encode(),
            finished_ms: record.finished_ms.unwrap_or(record.received_ms),
            due_ms: record.due_ms,
            events,
            then: Box::new(move |result| then(result.map_err(StoreError::Flush))),
        });
    }

    /// Rewrites a retired record in place (a bounce that arrived after
    /// delivery). Its purge time stays that of `finished_ms` at retirement.
    /// `false`, and nothing written, when the record is not (or no longer)
    /// retired.
    pub fn update_retired(&self, record: &MessageRecord, events: Vec<crate::events::Event>) -> Result<bool, StoreError> {
        self.committer.settled();
        let bytes = record.encode();
        let before = self.spool.fetch_and_update(key(RETIRED, &record.id), |old| old.map(|_| bytes.clone()))?;
        if before.is_some() {
            // Written right behind the record, before the caller's flush.
            self.events.apply(sled::Batch::default(), events)?;
        }
        Ok(before.is_some())
    }

    /// Retired records, oldest finished first.
    pub fn retired(&self) -> impl Iterator<Item = Result<MessageRecord, StoreError>> + '_ {
        self.committer.settled();
        self.spool
            .scan_prefix([RETIRED, b'/'])
            .map(|item| item.map_err(StoreError::from).and_then(|(_, v)| MessageRecord::decode(&v)))
    }

    /// Forgets retired messages that finished before `before_ms`; returns how many.
    pub fn purge_retired(&self, before_ms: i64) -> Result<usize, StoreError> {
        let end = time_key(FINISHED, before_ms, &MessageId::MIN);
        let mut n = 0;
        let mut batch = sled::Batch::default();
        for item in self.spool.range(time_key(FINISHED, 0, &MessageId::MIN)..end) {
            let (k, _) = item?;
            let (_, id) = decode_due(&k)?;
            batch.remove(k);
            batch.remove(&key(RETIRED, &id));
            n += 1;
            if n % 512 == 0 {
                self.spool.apply_batch(std::mem::take(&mut batch))?;
            }
        }
        self.spool.apply_batch(batch)?;
        Ok(n)
    }

    /// Where a queued message's body is.
    fn location(&self, id: &MessageId) -> Result<Option<segments::BodyRef>, StoreError> {
        self.committer.settled();
        self.location_now(id)
    }

    /// [`Store::location`], without waiting for the committer first.
    fn location_now(&self, id: &MessageId) -> Result<Option<segments::BodyRef>, StoreError> {
        if let Some(h) = self.pending.lock().get(id) {
            return Ok(Some(h.body));
        }
        read_location(&self.spool, id)
    }

    /// The message as submitted, `None` once it is no longer queued.
    pub fn body(&self, id: &MessageId) -> Result<Option<Vec<u8>>, StoreError> {
        match self.location(id)? {
            Some(r) => Ok(Some(self.segments.read(r)?)),
            None => Ok(None),
        }
    }

    /// Up to `limit` (due ms, id) pairs due at or before `now_ms`, oldest first.
    pub fn due(&self, now_ms: i64, limit: usize) -> Result<Vec<(i64, MessageId)>, StoreError> {
        self.committer.settled();
        let start = due_key(0, &MessageId::MIN);
        let end = due_key(now_ms.saturating_add(1), &MessageId::MIN);
        let mut out = Vec::new();
        for item in self.spool.range(start..end).take(limit) {
            let (k, _) = item?;
            out.push(decode_due(&k)?);
        }
        Ok(out)
    }

    /// The earliest due time in the queue, if anything is queued.
    pub fn next_due(&self) -> Result<Option<i64>, StoreError> {
        self.committer.settled();
        match self.spool.scan_prefix([DUE, b'/']).next() {
            Some(item) => Ok(Some(decode_due(&item?.0)?.0)),
            None => Ok(None),
        }
    }

    /// Every message record, in id order (for the CLI and API listings).
    pub fn messages(&self) -> impl Iterator<Item = Result<MessageRecord, StoreError>> + '_ {
        self.committer.settled();
        let mut held: Vec<Result<MessageRecord, StoreError>> = self.pending.lock().values().map(|h| MessageRecord::decode(h.record())).collect();
        held.sort_by_key(|r| r.as_ref().ok().map(|r| r.id));
        let mut held = held.into_iter().peekable();
        let mut queued = self.spool.scan_prefix([META, b'/']).map(|item| item.map_err(StoreError::from).and_then(|(_, v)| MessageRecord::decode(&v))).peekable();
        // Both in id order; one settled meanwhile is taken from sled.
        let id = |r: &Result<MessageRecord, StoreError>| r.as_ref().ok().map(|r| r.id);
        std::iter::from_fn(move || match (held.peek().map(id), queued.peek().map(id)) {
            (None, _) => queued.next(),
            (Some(_), None) => held.next(),
            (Some(h), Some(q)) if h == q => {
                held.next();
                queued.next()
            }
            (Some(h), Some(q)) if h < q => held.next(),
            _ => queued.next(),
        })
    }

    /// The messages sent on from memory and not in sled yet (counted as
    /// queued and in flight; [`pending`]).
    pub fn held(&self) -> Vec<MessageId> {
        self.pending.lock().keys().copied().collect()
    }

    /// Removes a message entirely (record, body, due key).
    pub fn remove(&self, record: &MessageRecord) -> Result<(), StoreError> {
        self.remove_with(record, Vec::new())
    }

    fn remove_with(&self, record: &MessageRecord, events: Vec<crate::events::Event>) -> Result<(), StoreError> {
        self.committer.settled();
        self.remove_in(None, record, events)
    }

    /// Takes a queued message out of the queue, keeping its record as
    /// `retired` (encoded, and its finish time) if given, with `events`;
    /// the body's space is released once that is applied.
    fn remove_in(&self, retired: Option<(Vec<u8>, i64)>, record: &MessageRecord, events: Vec<crate::events::Event>) -> Result<(), StoreError> {
        let id = record.id;
        // The callers waited for the committer already: it may need this
        // lock to finish its round.
        let _locations = self.segments.locations();
        let location = self.location_now(&id)?;
        self.apply_settling(&[id], true, events, |batch| {
            if let Some((encoded, finished_ms)) = retired {
                keep_retired(batch, &id, encoded, finished_ms);
            }
            unqueue(batch, &id, record.due_ms);
        })?;
        if let Some(r) = location {
            self.segments.release(r);
        }
        Ok(())
    }
}

/// Adds to `batch` a new message, queued: its `record`, its due key and
/// where its body is.
fn enqueue(batch: &mut sled::Batch, id: &MessageId, record: &[u8], due_ms: i64, body: &segments::BodyRef) {
    batch.insert(&key(META, id), record);
    batch.insert(&due_key(due_ms, id), &[]);
    batch.insert(&key(LOCATION, id), &body.encode());
}

/// Adds to `batch` a finished message's `record`, kept as retired.
fn keep_retired(batch: &mut sled::Batch, id: &MessageId, record: Vec<u8>, finished_ms: i64) {
    batch.insert(&key(RETIRED, id), record);
    batch.insert(&time_key(FINISHED, finished_ms, id), &[]);
}

/// Adds to `batch` the removal of a queued message's record, body
/// location and due key (`due_ms`: the due time it was written with).
fn unqueue(batch: &mut sled::Batch, id: &MessageId, due_ms: i64) {
    batch.remove(&key(META, id));
    batch.remove(&key(LOCATION, id));
    batch.remove(&due_key(due_ms, id));
}

/// Writes a queued record and moves its due key (from `old_due`).
fn rewrite(batch: &mut sled::Batch, record: &MessageRecord, old_due: Option<i64>) {
    if let Some(old) = old_due {
        batch.remove(&due_key(old, &record.id));
    }
    batch.insert(&key(META, &record.id), record.encode());
    if !record.is_finished() {
        batch.insert(&due_key(record.due_ms, &record.id), &[]);
    }
}

/// Where a queued message's body is, read from the spool tree.
fn read_location(spool: &sled::Tree, id: &MessageId) -> Result<Option<segments::BodyRef>, StoreError> {
    match spool.get(key(LOCATION, id))? {
        Some(v) => segments::BodyRef::decode(&v).map(Some).ok_or_else(|| StoreError::Corrupt { key: format!("l/{id}"), reason: "bad body location".into() }),
        None => Ok(None),
    }
}

fn decode_due(k: &[u8]) -> Result<(i64, MessageId), StoreError> {
    let corrupt = || StoreError::Corrupt { key: String::from_utf8_lossy(k).into_owned(), reason: "bad due key".into() };
    if k.len() != 26 {
        return Err(corrupt());
    }
    let due = u64::from_be_bytes(k[2..10].try_into().map_err(|_| corrupt())?) as i64;
    let id = std::str::from_utf8(&k[10..]).ok().and_then(MessageId::parse).ok_or_else(corrupt)?;
    Ok((due, id))
}

/// A store opened with `open` once the previous handle's commit thread has
/// let go of the database (for tests that restart one).
#[cfg(test)]
pub(crate) async fn reopened(open: impl Fn() -> Result<Store, StoreError>) -> Store {
    for _ in 0..50 {
        if let Ok(s) = open() {
            return s;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    open().unwrap()
}
