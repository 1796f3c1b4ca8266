//! A new message, from its submission to its first delivery round.
//!
//! It is spooled: body and record on disk, in its record frame, before
//! the caller says 250. When the queue has room it is then sent on at
//! once from memory: no scan of the due index, no second read of the
//! body, no write of its own before it is sent, and its record stays out
//! of sled's index until the round's outcome is written — most often its
//! retirement ([`crate::store::Store::spool_sending`]). It is spooled
//! already claimed — first attempt counted, due again after the first
//! retry delay — exactly what the scheduler writes before every round; a
//! crash during the round brings it back from its record frame at the
//! next start, due then, and it is sent again (at least once), never
//! lost. The round prepares it as every round does
//! ([`super::InFlight::prepared`]). Without room, or with no recipient
//! left to send to (all suppressed at acceptance), the record is spooled
//! due now into sled's index ([`crate::store::Store::spool_then`]) and
//! the scheduler, woken once it is applied, takes it from the due index
//! as it takes every retry.

use super::{QueueCore, backoff, send, start_round};
use crate::delivery::Dispatcher;
use crate::events::Event;
use crate::store::{MessageRecord, StoreError};
use std::sync::Arc;

/// Where sessions hand accepted messages to the queue.
#[derive(Clone)]
pub struct Intake {
    core: Arc<QueueCore>,
    dispatcher: Dispatcher,
}

impl Intake {
    pub fn new(core: Arc<QueueCore>, dispatcher: Dispatcher) -> Self {
        Self { core, dispatcher }
    }

    /// Spools `record` with `body` and `events`; returns once they are on
    /// disk (the caller may then say 250), the first round already begun
    /// when there was room for it.
    pub async fn accept(&self, record: &MessageRecord, body: Arc<Vec<u8>>, events: Vec<Event>) -> Result<(), StoreError> {
        let core = &self.core;
        let sendable = record.recipients.iter().any(|r| r.status.is_pending());
        // Held before the record can be seen, so the scheduler never
        // claims it as well; kept until its round ends.
        let held = sendable && core.in_flight_count() < core.max_in_flight && core.hold(&record.id).map(|h| h.keep()).is_some();
        if !held {
            let wake = core.wake.clone();
            // The scheduler looks once the record is in the due index.
            return core.store.spool_then(record, body, events, move |_| wake.notify_one()).await;
        }
        let mut claimed = record.clone();
        claimed.attempts = 1;
        claimed.due_ms = core.clock.now_ms() + backoff::backoff(1, &core.schedule, rand::random::<f64>()).as_millis() as i64;
        let id = claimed.id;
        // The round starts once the claimed record is on disk. It is kept
        // out of sled's index until the round's outcome is written (most
        // often a retirement: `store::pending`).
        let (round_core, dispatcher, runtime) = (core.clone(), self.dispatcher.clone(), tokio::runtime::Handle::current());
        let (round_record, round_body) = (claimed.clone(), body.clone());
        let spooled = core
            .store
            .spool_sending(&claimed, body, events, move |written| {
                // Not written: the writer hears of it below, and the
                // client is told to try again.
                if written.is_ok() {
                    runtime.spawn(first_round(round_core, dispatcher, round_record, round_body));
                }
            })
            .await;
        if spooled.is_err() {
            core.release(&id);
        }
        spooled
    }
}

/// Hands a message spooled already claimed to delivery with the body it
/// came with.
async fn first_round(core: Arc<QueueCore>, dispatcher: Dispatcher, record: MessageRecord, body: Arc<Vec<u8>>) {
    let mut claimed = start_round(&core, record);
    claimed.body = Some(body);
    send::dispatch(claimed, dispatcher).await;
}
