//! Group commit: many sessions, one write and one fsync each for bodies
//! and records.
//!
//! A writer either applies its sled batch (in memory) and asks for
//! durability, or — a new message — hands its record and body to the
//! committer. The committer thread takes every request waiting at that
//! moment and:
//!
//! 1. appends every waiting message — a record frame (record, due time,
//!    events) and the body — to the current segment in one `write` and
//!    one `fdatasync` ([`super::segments`]): that makes them durable;
//! 2. applies those messages' records, due keys, location keys and events,
//!    the retirements handed to it ([`Committer::retire`]) and the replay
//!    checkpoint in one sled batch (every batch costs sled two log writes
//!    of its own), and answers the new messages' writers;
//! 3. flushes sled once — when somebody waits for it, or once what nobody
//!    waits for has waited [`LINGER`] — which covers every batch applied
//!    before it began (what a crash takes before that is replayed from the
//!    record frames at the next start: [`super::replay`]);
//! 4. answers everyone else, and deletes segments emptied before the flush.
//!
//! It never sleeps while anyone waits: whoever arrives while a round runs
//! is served by the next one, so one session pays one round and fifty
//! share one (the way PostgreSQL's WAL writer and RocksDB's write groups
//! batch). A write nobody waits for (a delivery outcome, [`Committer::soon`],
//! a retirement) lingers up to [`LINGER`] for a writer that does, and rides
//! on its round.

use super::StoreError;
use super::events::EventLog;
use super::segments::Segments;
use crate::id::MessageId;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Instant;
use tokio::sync::oneshot;

type Waiter = oneshot::Sender<Result<(), String>>;

/// A new message for the committer: its body, and what makes it queued
/// once the body is on disk (its encoded record, due time and events).
pub struct NewMessage {
    pub id: MessageId,
    /// Shared: the caller may send it on from memory once it is on disk.
    pub body: Arc<Vec<u8>>,
    pub record: Vec<u8>,
    pub due_ms: i64,
    pub events: Vec<crate::events::Event>,
}

/// A finished message to take out of the queue with the next round: its
/// record (kept as retired), the keys to drop, and what to do once that
/// is applied (or failed).
pub struct Retirement {
    pub id: MessageId,
    pub record: Vec<u8>,
    pub finished_ms: i64,
    /// The due time its due key was written with.
    pub due_ms: i64,
    pub events: Vec<crate::events::Event>,
    pub then: Box<dyn FnOnce(Result<(), String>) + Send>,
}

/// How long a write that nobody waits for waits for one that somebody
/// does, to share its round; and how long anything applied waits for a
/// sled flush at most.
pub const LINGER: std::time::Duration = std::time::Duration::from_millis(5);

enum Request {
    /// Everything applied before the request is to be made durable.
    Durable(Waiter),
    /// The same, soon; nobody waits.
    Soon,
    Spool(Box<NewMessage>, Waiter),
    Retire(Box<Retirement>),
}

#[derive(Clone)]
pub struct Committer {
    tx: mpsc::Sender<Request>,
    /// A [`Request::Soon`] is on its way and no round has taken it yet:
    /// asking again would only wake the thread for nothing.
    soon: Arc<AtomicBool>,
    flushes: Arc<AtomicU64>,
    /// Flips to `true` at the first failed flush or body write. sled keeps
    /// a write error (ENOSPC, EIO) as a global state and fails every later
    /// flush until the database is reopened, so one failure means the
    /// database must be reopened.
    failed: Arc<tokio::sync::watch::Sender<bool>>,
}

struct Round<'a> {
    db: &'a sled::Db,
    spool: &'a sled::Tree,
    events: &'a EventLog,
    segments: &'a Segments,
    failed: &'a tokio::sync::watch::Sender<bool>,
}

impl Round<'_> {
    /// Writes the new messages' frames, then applies their records and
    /// the retirements in one batch. Returns the new messages' waiters,
    /// each with its answer: the messages are durable once this returns
    /// without an error.
    fn apply(&self, mut new: Vec<(Box<NewMessage>, Waiter)>, retiring: Vec<Box<Retirement>>) -> Vec<(Waiter, Option<String>)> {
        let mut answers = Vec::new();
        let mut refs = Vec::new();
        let mut reached = None;
        if !new.is_empty() {
            let notes: Vec<Vec<u8>> = new.iter().map(|(m, _)| super::replay::encode(&m.record, m.due_ms, &m.events)).collect();
            let messages: Vec<(MessageId, Option<&[u8]>, &[u8])> = new.iter().zip(&notes).map(|((m, _), n)| (m.id, Some(n.as_slice()), m.body.as_slice())).collect();
            match self.segments.append_records(&messages) {
                Ok((r, position)) => {
                    refs = r;
                    reached = Some(position);
                }
                Err(e) => {
                    let e = format!("writing message bodies: {e}");
                    tracing::error!(error = %e, waiting = new.len(), "writing the spool failed");
                    self.failed.send_replace(true);
                    answers.extend(new.drain(..).map(|(_, w)| (w, Some(e.clone()))));
                }
            }
        }
        if new.is_empty() && retiring.is_empty() {
            return answers;
        }
        let mut batch = sled::Batch::default();
        let mut events = Vec::new();
        for ((m, _), r) in new.iter_mut().zip(&refs) {
            batch.insert(&super::key(super::META, &m.id), std::mem::take(&mut m.record));
            batch.insert(&super::due_key(m.due_ms, &m.id), &[]);
            batch.insert(&super::key(super::LOCATION, &m.id), &r.encode());
            events.append(&mut m.events);
        }
        if let Some(position) = reached {
            batch.insert(super::replay::CHECKPOINT, &position.encode());
        }
        let mut freed = Vec::new();
        let mut done = Vec::new();
        for r in retiring {
            let Retirement { id, record, finished_ms, due_ms, events: mut more, then } = *r;
            match super::read_location(self.spool, &id) {
                Ok(location) => freed.extend(location),
                Err(e) => {
                    then(Err(e.to_string()));
                    continue;
                }
            }
            super::keep_retired(&mut batch, &id, record, finished_ms);
            super::unqueue(&mut batch, &id, due_ms);
            events.append(&mut more);
            done.push(then);
        }
        // A failure here leaves the new messages' frames on disk: their
        // writers are told no, and the next start brings them back (sent,
        // then, though refused: at least once).
        let error = self.events.apply(batch, events).err().map(|e| e.to_string());
        match &error {
            None => freed.into_iter().for_each(|r| self.segments.release(r)),
            Some(_) => refs.into_iter().for_each(|r| self.segments.release(r)),
        }
        for then in done {
            then(error.clone().map_or(Ok(()), Err));
        }
        answers.extend(new.into_iter().map(|(_, w)| (w, error.clone())));
        answers
    }

    /// Flushes sled; on success, events applied so far become readable and
    /// emptied segments are deleted.
    fn flush(&self) -> Result<(), String> {
        let doomed = self.segments.take_doomed();
        // Every event applied before the flush begins is on disk once it
        // returns.
        let mark = self.events.applied();
        let result = self.db.flush().map(|_| ()).map_err(|e| e.to_string());
        match &result {
            Ok(()) => {
                self.events.set_durable(mark);
                self.segments.delete(doomed);
            }
            Err(e) => {
                tracing::error!(error = %e, "flushing the spool failed");
                self.failed.send_replace(true);
            }
        }
        result
    }
}

impl Committer {
    /// Starts the committer thread for `db` and the body `segments`. It
    /// ends when every handle (and so every sender) is gone.
    pub fn start(db: sled::Db, spool: sled::Tree, events: Arc<EventLog>, segments: Arc<Segments>) -> Self {
        let (tx, rx) = mpsc::channel::<Request>();
        let flushes = Arc::new(AtomicU64::new(0));
        let counter = flushes.clone();
        let failed = Arc::new(tokio::sync::watch::Sender::new(false));
        let failed_flag = failed.clone();
        let soon = Arc::new(AtomicBool::new(false));
        let soon_asked = soon.clone();
        std::thread::Builder::new()
            .name("herald-commit".into())
            .spawn(move || {
                let round = Round { db: &db, spool: &spool, events: &events, segments: &segments, failed: &failed_flag };
                // Something was applied and not flushed since `last_flush`;
                // it reaches the disk by `last_flush + LINGER` at the latest.
                let mut dirty = false;
                let mut last_flush = Instant::now();
                loop {
                    let deadline = dirty.then(|| last_flush + LINGER);
                    let first = match deadline {
                        Some(d) => match rx.recv_timeout(d.saturating_duration_since(Instant::now())) {
                            Ok(r) => Some(r),
                            Err(mpsc::RecvTimeoutError::Timeout) => None,
                            Err(mpsc::RecvTimeoutError::Disconnected) => break,
                        },
                        None => match rx.recv() {
                            Ok(r) => Some(r),
                            Err(_) => break,
                        },
                    };
                    let mut requests: Vec<Request> = first.into_iter().chain(rx.try_iter()).collect();
                    // Writes nobody waits for wait, until the flush is due,
                    // for one somebody does, to share its batch.
                    if !requests.is_empty() && requests.iter().all(|r| matches!(r, Request::Soon | Request::Retire(_))) {
                        let until = deadline.unwrap_or_else(|| Instant::now() + LINGER);
                        if let Ok(next) = rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
                            requests.push(next);
                            requests.extend(rx.try_iter());
                        }
                    }
                    // From here on, a new `soon` needs a new round.
                    soon_asked.store(false, Ordering::Release);
                    let mut durable = Vec::new();
                    let mut new = Vec::new();
                    let mut retiring = Vec::new();
                    for req in requests {
                        match req {
                            Request::Durable(w) => durable.push(w),
                            Request::Spool(m, w) => new.push((m, w)),
                            Request::Retire(r) => retiring.push(r),
                            Request::Soon => dirty = true,
                        }
                    }
                    if !new.is_empty() || !retiring.is_empty() {
                        dirty = true;
                        if !new.is_empty() {
                            counter.fetch_add(1, Ordering::Relaxed);
                        }
                        for (w, error) in round.apply(new, retiring) {
                            let _ = w.send(error.map_or(Ok(()), Err));
                        }
                    }
                    // New messages are durable in their record frames: sled
                    // is flushed when somebody waits for it, or once what
                    // nobody waits for has waited `LINGER`.
                    if durable.is_empty() && !(dirty && last_flush.elapsed() >= LINGER) {
                        continue;
                    }
                    let result = round.flush();
                    counter.fetch_add(1, Ordering::Relaxed);
                    (dirty, last_flush) = (false, Instant::now());
                    for w in durable {
                        let _ = w.send(result.clone());
                    }
                }
                if dirty {
                    let _ = round.flush();
                }
            })
            .unwrap_or_else(|e| panic!("cannot start the commit thread: {e}"));
        Self { tx, soon, flushes, failed }
    }

    async fn ask(&self, req: impl FnOnce(Waiter) -> Request) -> Result<(), StoreError> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(req(tx)).map_err(|_| StoreError::Flush("commit thread is gone".into()))?;
        match rx.await {
            Ok(result) => result.map_err(StoreError::Flush),
            Err(_) => Err(StoreError::Flush("commit thread is gone".into())),
        }
    }

    /// Resolves once everything applied before this call is on disk.
    pub async fn durable(&self) -> Result<(), StoreError> {
        self.ask(Request::Durable).await
    }

    /// Asks for everything applied so far to be made durable within
    /// [`LINGER`] (sooner when a round runs anyway), without waiting.
    pub fn soon(&self) {
        if !self.soon.swap(true, Ordering::AcqRel) {
            let _ = self.tx.send(Request::Soon);
        }
    }

    /// Hands a retirement to the next round (within [`LINGER`]); its
    /// `then` runs on the commit thread once it is applied, or failed.
    pub fn retire(&self, retirement: Retirement) {
        if let Err(mpsc::SendError(Request::Retire(r))) = self.tx.send(Request::Retire(Box::new(retirement))) {
            (r.then)(Err("commit thread is gone".into()));
        }
    }

    /// Writes a new message's record frame and body, then applies its
    /// record, and resolves once it is durable (before sled is flushed).
    pub async fn spool(&self, message: NewMessage) -> Result<(), StoreError> {
        self.ask(|w| Request::Spool(Box::new(message), w)).await
    }

    /// Resolves once a flush has failed (at once if one already did).
    pub async fn failed(&self) {
        let mut rx = self.failed.subscribe();
        let _ = rx.wait_for(|&f| f).await;
    }

    pub fn flushes(&self) -> u64 {
        self.flushes.load(Ordering::Relaxed)
    }
}
