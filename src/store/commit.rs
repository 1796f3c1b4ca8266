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
//!    one `fdatasync` ([`super::segments`]): that makes them durable, and
//!    their writers are answered at once (the client's 250 need not wait
//!    for step 2);
//! 2. applies those messages' records, due keys, location keys and events
//!    (or, for those sent on at once, keeps them out of sled until their
//!    first write: [`super::pending`]),
//!    the retirements handed to it ([`Committer::retire`]; they gather
//!    for up to [`RETIRE_EVERY`] and go in one batch) and the replay
//!    checkpoint in one sled batch (every batch costs sled two log writes
//!    of its own), then runs each new message's `then` (its first delivery
//!    round starts there, never before its record is in sled). Until the
//!    batch is applied, reads of the store wait ([`Committer::settled`]),
//!    so whoever saw a 250 finds the message;
//! 3. flushes sled once — when somebody waits for it, or once what nobody
//!    waits for has waited [`LINGER`] — which covers every batch applied
//!    before it began (what a crash takes before that is replayed from the
//!    record frames at the next start: [`super::replay`]);
//! 4. answers everyone else, and deletes segments emptied before the flush.
//!
//! It never sleeps while anyone waits: whoever arrives while a round runs
//! is served by the next one, so one session pays one round and fifty
//! share one (the way PostgreSQL's WAL writer and RocksDB's write groups
//! batch). A flush nobody waits for (after a delivery outcome,
//! [`Committer::soon`]) lingers up to [`LINGER`] for a writer that does,
//! and rides on its round; retirements gather for [`RETIRE_EVERY`].

use super::StoreError;
use super::events::EventLog;
use super::pending::{Held, Pending, SETTLE_AFTER};
use super::segments::{HEADER, Position, Segments};
use crate::id::MessageId;
use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Instant;
use tokio::sync::oneshot;

type Waiter = oneshot::Sender<Result<(), String>>;

/// What to do once a new message's record is applied (or failed to be):
/// runs on the commit thread, so it must be quick (spawn, notify).
pub type Then = Box<dyn FnOnce(Result<(), String>) + Send>;

/// A new message for the committer: its body, and what makes it queued
/// once the body is on disk (its encoded record, due time and events).
pub struct NewMessage {
    pub id: MessageId,
    /// Shared: the caller may send it on from memory once it is on disk.
    pub body: Arc<Vec<u8>>,
    /// The record frame's payload ([`super::replay::encode`]): record, due
    /// time and events, encoded by the caller, off the commit thread.
    pub note: Vec<u8>,
    pub due_ms: i64,
    pub events: Vec<crate::events::Event>,
    /// Sent on at once from memory: kept out of sled until its first
    /// write ([`super::pending`]).
    pub sending: bool,
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

/// How often, at most, retirements are applied: they gather until then,
/// or until somebody waits for durability ([`Committer::durable`]), and
/// go in one sled batch. Each batch costs sled two log writes and wakes
/// its IO threads: applied with every round (every ~2 ms at ten
/// sessions), that was 0.05 ms of CPU per message, a tenth of what the
/// relay spends besides signing; gathered, about 0.02. A crash in between
/// sends the messages again (at least once, as before: the window grows
/// from [`LINGER`] to this plus `LINGER`).
pub const RETIRE_EVERY: std::time::Duration = std::time::Duration::from_millis(10);

enum Request {
    /// Everything applied before the request is to be made durable.
    Durable(Waiter),
    /// The same, soon; nobody waits.
    Soon,
    Spool(Box<NewMessage>, Waiter, Then),
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
    unapplied: Arc<Unapplied>,
}

thread_local! {
    static ON_COMMIT_THREAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// New messages whose writers were answered and whose batch is not
/// applied yet: reads wait for none to be left.
#[derive(Default)]
struct Unapplied {
    count: std::sync::Mutex<usize>,
    applied: std::sync::Condvar,
}

impl Unapplied {
    fn add(&self, n: usize) {
        *self.count.lock().unwrap_or_else(std::sync::PoisonError::into_inner) += n;
    }

    fn done(&self, n: usize) {
        let mut count = self.count.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *count = count.saturating_sub(n);
        if *count == 0 {
            self.applied.notify_all();
        }
    }

    /// Waits (a batch, well under a millisecond; a second at most, should
    /// the commit thread be stuck) until every answered message is applied.
    fn settled(&self) {
        if ON_COMMIT_THREAD.get() {
            // Its own round is applied before anything it runs next.
            return;
        }
        let count = self.count.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if *count > 0 {
            let _ = self.applied.wait_timeout_while(count, std::time::Duration::from_secs(1), |n| *n > 0);
        }
    }
}

struct Round<'a> {
    db: &'a sled::Db,
    spool: &'a sled::Tree,
    events: &'a EventLog,
    segments: &'a Segments,
    pending: &'a Pending,
    failed: &'a tokio::sync::watch::Sender<bool>,
    unapplied: &'a Unapplied,
    /// Where the committer's appends have reached.
    end: Cell<Option<Position>>,
    /// The replay checkpoint last put in a batch.
    checkpoint: Cell<Option<Position>>,
}

impl Round<'_> {
    /// Writes the new messages' frames and answers their writers (the
    /// messages are durable then), then applies their records (or keeps
    /// those being sent at once out of sled, [`super::pending`]), the
    /// retirements, the settling of messages held too long and the
    /// checkpoint in one batch, and runs what waited for that.
    fn apply(&self, new: Vec<(Box<NewMessage>, Waiter, Then)>, retiring: Vec<Box<Retirement>>) {
        let mut refs = Vec::new();
        let new: Vec<(Box<NewMessage>, Then)> = if new.is_empty() {
            Vec::new()
        } else {
            let messages: Vec<(MessageId, Option<&[u8]>, &[u8])> = new.iter().map(|(m, _, _)| (m.id, Some(m.note.as_slice()), m.body.as_slice())).collect();
            match self.segments.append_records(&messages) {
                Ok((r, position)) => {
                    refs = r;
                    self.end.set(Some(position));
                    // Those being sent too: until they are in `pending`.
                    self.unapplied.add(new.len());
                    new.into_iter()
                        .map(|(m, w, then)| {
                            let _ = w.send(Ok(()));
                            (m, then)
                        })
                        .collect()
                }
                Err(e) => {
                    let e = format!("writing message bodies: {e}");
                    tracing::error!(error = %e, waiting = new.len(), "writing the spool failed");
                    self.failed.send_replace(true);
                    for (_, w, then) in new {
                        let _ = w.send(Err(e.clone()));
                        then(Err(e.clone()));
                    }
                    Vec::new()
                }
            }
        };
        let now = Instant::now();
        // Until the places retirements leave are released (and before
        // `held`: the lock order).
        let locations = self.segments.locations();
        // Held until the batch is applied (see `super::pending`).
        let mut held = self.pending.lock();
        let mut batch = sled::Batch::default();
        let mut events = Vec::new();
        let mut queued = 0;
        let mut thens = Vec::with_capacity(new.len());
        for ((m, then), r) in new.into_iter().zip(&refs) {
            let NewMessage { id, note, due_ms, events: mut accepted, sending, .. } = *m;
            if sending {
                let frame = Position { segment: r.segment, offset: r.offset - (HEADER + note.len()) as u64 };
                held.insert(id, Held { note, due_ms, body: *r, events: accepted, frame, since: now });
            } else {
                super::enqueue(&mut batch, &id, super::replay::record_in(&note), due_ms, r);
                events.append(&mut accepted);
                queued += 1;
            }
            thens.push((sending, then));
        }
        // Taken out of `held` by this batch: put back should it fail.
        let mut taken = Vec::new();
        for id in Pending::overdue(&held, now) {
            if let Some(h) = held.remove(&id) {
                h.settle(&mut batch, &id, &mut events);
                taken.push((id, h));
            }
        }
        let mut freed = Vec::new();
        let mut done = Vec::new();
        // Run once `held` is let go: a `then` may read the store.
        let mut unreadable = Vec::new();
        for r in retiring {
            let Retirement { id, record, finished_ms, due_ms, events: more, then } = *r;
            if let Some(h) = held.remove(&id) {
                // Never in sled: only its retired record and its events.
                freed.push(h.body);
                events.extend(h.events.iter().cloned());
                taken.push((id, h));
            } else {
                match super::read_location(self.spool, &id) {
                    Ok(location) => freed.extend(location),
                    Err(e) => {
                        unreadable.push((then, e.to_string()));
                        continue;
                    }
                }
                super::unqueue(&mut batch, &id, due_ms);
            }
            super::keep_retired(&mut batch, &id, record, finished_ms);
            events.extend(more);
            done.push(then);
        }
        let checkpoint = self.end.get().map(|end| Pending::checkpoint(&held, end));
        let moved = checkpoint.is_some() && checkpoint != self.checkpoint.get();
        if let (Some(position), true) = (checkpoint, moved) {
            batch.insert(super::replay::CHECKPOINT, &position.encode());
        }
        if queued == 0 && !moved && taken.is_empty() && done.is_empty() {
            drop(held);
            drop(locations);
            unreadable.into_iter().for_each(|(then, e)| then(Err(e)));
            self.unapplied.done(thens.len());
            thens.into_iter().for_each(|(_, then)| then(Ok(())));
            return;
        }
        // A failure here leaves the new messages' frames on disk, and
        // their writers were told yes: their bodies stay counted, and the
        // next start brings them back from the frames (their first round
        // does not run now).
        let error = self.events.apply(batch, events).err().map(|e| e.to_string());
        match &error {
            None => {
                freed.into_iter().for_each(|r| self.segments.release(r));
                if moved {
                    self.checkpoint.set(checkpoint);
                }
            }
            Some(e) => {
                tracing::error!(error = %e, "applying the spool batch failed; new messages come back from their record frames at the next start");
                self.failed.send_replace(true);
                held.extend(taken);
            }
        }
        drop(held);
        drop(locations);
        unreadable.into_iter().for_each(|(then, e)| then(Err(e)));
        self.unapplied.done(thens.len());
        for then in done {
            then(error.clone().map_or(Ok(()), Err));
        }
        for (sending, then) in thens {
            // One being sent is held, whatever became of the batch.
            then(if sending { Ok(()) } else { error.clone().map_or(Ok(()), Err) });
        }
    }

    /// When the oldest message held out of sled is due to be settled.
    fn settle_deadline(&self) -> Option<Instant> {
        self.pending.lock().values().map(|h| h.since + SETTLE_AFTER).min()
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
    pub fn start(db: sled::Db, spool: sled::Tree, events: Arc<EventLog>, segments: Arc<Segments>, pending: Arc<Pending>) -> Self {
        let (tx, rx) = mpsc::channel::<Request>();
        let flushes = Arc::new(AtomicU64::new(0));
        let counter = flushes.clone();
        let failed = Arc::new(tokio::sync::watch::Sender::new(false));
        let failed_flag = failed.clone();
        let soon = Arc::new(AtomicBool::new(false));
        let soon_asked = soon.clone();
        let unapplied = Arc::new(Unapplied::default());
        let unapplied_here = unapplied.clone();
        std::thread::Builder::new()
            .name("herald-commit".into())
            .spawn(move || {
                ON_COMMIT_THREAD.set(true);
                let round = Round {
                    db: &db,
                    spool: &spool,
                    events: &events,
                    segments: &segments,
                    pending: &pending,
                    failed: &failed_flag,
                    unapplied: &unapplied_here,
                    end: Cell::new(None),
                    checkpoint: Cell::new(None),
                };
                // Something was applied and not flushed since `last_flush`;
                // it reaches the disk by `last_flush + LINGER` at the latest.
                let mut dirty = false;
                let mut last_flush = Instant::now();
                let mut deferred: Vec<Box<Retirement>> = Vec::new();
                let mut last_retired = Instant::now();
                loop {
                    let deadline = dirty.then(|| last_flush + LINGER);
                    let settle = round.settle_deadline();
                    let retire_at = (!deferred.is_empty()).then(|| last_retired + RETIRE_EVERY);
                    let first = match deadline.into_iter().chain(settle).chain(retire_at).min() {
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
                    // A flush nobody waits for waits, until it is due, for
                    // one somebody does, to share it. (Retirements gather
                    // on their own: `RETIRE_EVERY`.)
                    if !requests.is_empty() && requests.iter().all(|r| matches!(r, Request::Soon)) {
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
                            Request::Spool(m, w, then) => new.push((m, w, then)),
                            Request::Retire(r) => retiring.push(r),
                            Request::Soon => dirty = true,
                        }
                    }
                    // Retirements gather for one batch (`RETIRE_EVERY`);
                    // whoever waits for durability has them applied first.
                    deferred.append(&mut retiring);
                    let retiring = if !deferred.is_empty() && (last_retired.elapsed() >= RETIRE_EVERY || !durable.is_empty()) {
                        last_retired = Instant::now();
                        std::mem::take(&mut deferred)
                    } else {
                        Vec::new()
                    };
                    if !new.is_empty() || !retiring.is_empty() || settle.is_some_and(|d| d <= Instant::now()) {
                        dirty = true;
                        if !new.is_empty() {
                            counter.fetch_add(1, Ordering::Relaxed);
                        }
                        round.apply(new, retiring);
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
                // Every handle is gone: what gathered goes to disk now.
                if !deferred.is_empty() {
                    round.apply(Vec::new(), std::mem::take(&mut deferred));
                    dirty = true;
                }
                if dirty {
                    let _ = round.flush();
                }
            })
            .unwrap_or_else(|e| panic!("cannot start the commit thread: {e}"));
        Self { tx, soon, flushes, failed, unapplied }
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

    /// Hands a retirement to the committer, which applies it within
    /// [`RETIRE_EVERY`] (at once for a [`Committer::durable`] asked after
    /// it); its `then` runs on the commit thread once it is applied, or
    /// failed.
    pub fn retire(&self, retirement: Retirement) {
        if let Err(mpsc::SendError(Request::Retire(r))) = self.tx.send(Request::Retire(Box::new(retirement))) {
            (r.then)(Err("commit thread is gone".into()));
        }
    }

    /// Writes a new message's record frame and body, and resolves once
    /// they are durable; its record is applied right after, and `then`
    /// runs once it is (or with the error, if either step failed).
    pub async fn spool(&self, message: NewMessage, then: Then) -> Result<(), StoreError> {
        let gone = || StoreError::Flush("commit thread is gone".into());
        let (tx, rx) = oneshot::channel();
        if let Err(mpsc::SendError(Request::Spool(_, _, then))) = self.tx.send(Request::Spool(Box::new(message), tx, then)) {
            then(Err("commit thread is gone".into()));
            return Err(gone());
        }
        rx.await.map_err(|_| gone())?.map_err(StoreError::Flush)
    }

    /// Waits until every message whose writer was answered is applied:
    /// a read after a 250 sees the message.
    pub fn settled(&self) {
        self.unapplied.settled();
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

#[cfg(test)]
mod tests {
    use crate::id::MessageId;
    use crate::store::{MessageRecord, Store};
    use std::sync::Arc;

    fn record(n: i64) -> MessageRecord {
        crate::store::records::sample(MessageId::generate(1_700_000_000_000 + n), 1_000_000_000_000 + n)
    }

    /// The writer is answered once the frame is on disk, before the batch:
    /// whatever it reads next must still find the message, and `then`
    /// must run only once the record is in sled.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_read_after_the_answer_finds_the_message_and_then_runs_after_the_batch() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 8).unwrap();
        for n in 0..200 {
            let r = record(n);
            let (tx, rx) = tokio::sync::oneshot::channel();
            let seen = store.clone();
            let id = r.id;
            store
                .spool_then(&r, Arc::new(b"body".to_vec()), Vec::new(), move |applied| {
                    let found = seen.message(&id).unwrap().is_some();
                    let _ = tx.send((applied.is_ok(), found));
                })
                .await
                .unwrap();
            // At once: the batch may be under way on the commit thread.
            assert_eq!(store.message(&r.id).unwrap().map(|m| m.id), Some(r.id), "message {n} read right after its answer");
            assert_eq!(store.body(&r.id).unwrap().as_deref(), Some(&b"body"[..]));
            assert_eq!(rx.await.unwrap(), (true, true), "message {n}: `then` ran after its record was applied");
        }
    }

    /// Retirements gather for one batch, but whoever asks for durability
    /// after handing them over finds them applied and on disk: at the
    /// next start they are retired, not queued.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn retirements_gather_but_a_durable_after_them_finds_them_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let ids: Vec<MessageId> = {
            let store = Store::open(dir.path(), 8).unwrap();
            let mut records = Vec::new();
            for n in 0..20 {
                let r = record(n);
                store.spool(&r, Arc::new(b"body".to_vec()), Vec::new()).await.unwrap();
                records.push(r);
            }
            store.durable().await.unwrap();
            // Two rounds of ten: the second is handed right after the first
            // is applied, so it gathers, and only `durable` applies it now.
            for round in records.chunks(10) {
                let applied = Arc::new(std::sync::atomic::AtomicUsize::new(0));
                for r in round {
                    let mut done = r.clone();
                    done.finished_ms = Some(done.received_ms + 1);
                    let applied = applied.clone();
                    store.retire_soon(&done, Vec::new(), move |result| {
                        result.unwrap();
                        applied.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    });
                }
                store.durable().await.unwrap();
                assert_eq!(applied.load(std::sync::atomic::Ordering::SeqCst), 10, "every retirement handed before `durable` was applied by its answer");
                for r in round {
                    assert!(store.message(&r.id).unwrap().is_none(), "{} no longer queued", r.id);
                }
            }
            records.iter().map(|r| r.id).collect()
        };
        let store = crate::store::reopened(|| Store::open(dir.path(), 8)).await;
        for id in &ids {
            assert!(store.message(id).unwrap().is_none(), "{id} is not queued again after a restart");
            assert!(store.find(id).unwrap().is_some_and(|r| r.finished_ms.is_some()), "{id} is kept as retired");
        }
    }
}
