//! Applying a delivery status notification to the message its bounce
//! address names: each `Action: failed` group fails the matching
//! recipient, as a synchronous 5xx would (RFC 3464 §2.3.3: only `failed`
//! is final; `delayed`, `delivered`, `relayed` and `expanded` are logged
//! and ignored).
//!
//! Usually the message is retired (delivered, then bounced later): its
//! retired record is rewritten and the sender gets a DSN for the newly
//! failed recipients. A message still queued is updated through the store,
//! and finished through the queue when no recipient waits any more; while
//! a delivery attempt holds it (the attempt owns the record until its
//! outcome is written), the update waits and tries again. As in the admin
//! API, the in-flight check and the write are not one atomic step; the
//! record is re-read right before writing to narrow that window.

use super::Context;
use super::dsn::{Action, RcptReport};
use crate::id::MessageId;
use crate::store::{Attempt, MessageRecord, Outcome, RcptStatus, StoreError};
use std::time::Duration;

/// How long a bounce waits for a delivery attempt to let go of its message
/// before the bouncing server is asked to retry (451).
const IN_FLIGHT_WAIT: Duration = Duration::from_secs(60);
const RETRY_EVERY: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the message is being delivered right now")]
    Busy,
}

enum Done {
    /// Recipients newly failed.
    Failed(usize),
    /// A delivery attempt holds the message; try again shortly.
    InFlight,
}

/// Applies `report` to message `id`; returns how many recipients it newly
/// failed. Nothing is flushed here: the caller waits for durability.
pub async fn apply(ctx: &Context, id: MessageId, report: &[RcptReport]) -> Result<usize, ApplyError> {
    let mut failures = Vec::new();
    for r in report {
        match &r.action {
            Action::Failed => failures.push(r),
            Action::Delayed | Action::Delivered | Action::Relayed | Action::Expanded => {
                tracing::info!(msg_id = %id, rcpt = %r.final_recipient, action = ?r.action, status = %r.status, "delivery status report ignored: only `failed` counts")
            }
            Action::Other(action) => {
                tracing::info!(msg_id = %id, rcpt = %r.final_recipient, action, status = %r.status, "delivery status report with an unknown action ignored")
            }
        }
    }
    if failures.is_empty() {
        return Ok(0);
    }
    let deadline = tokio::time::Instant::now() + IN_FLIGHT_WAIT;
    loop {
        {
            // One bounce at a time, so two reports for one message cannot
            // overwrite each other's update.
            let _one = ctx.apply_lock.lock().await;
            if let Done::Failed(n) = update(ctx, id, &failures)? {
                return Ok(n);
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(ApplyError::Busy);
        }
        tokio::time::sleep(RETRY_EVERY).await;
    }
}

fn update(ctx: &Context, id: MessageId, failures: &[&RcptReport]) -> Result<Done, StoreError> {
    let Some(record) = ctx.store.find(&id)? else {
        tracing::info!(msg_id = %id, "bounce for a message no longer kept; ignored");
        return Ok(Done::Failed(0));
    };
    let retired = record.finished_ms.is_some();
    // Held out of the scheduler's reach while we read, mark and write.
    let hold = if retired { None } else { Some(ctx.queue.hold(&id)) };
    if matches!(hold, Some(None)) {
        return Ok(Done::InFlight);
    }
    let Some(mut record) = (if retired { Some(record) } else { ctx.store.message(&id)? }) else {
        return Ok(Done::InFlight);
    };
    let due = record.due_ms;
    let newly = mark(&mut record, failures, ctx.queue.clock.now_ms());
    if newly.is_empty() {
        return Ok(Done::Failed(0));
    }
    if retired {
        let mut events = bounced_events(&record, &newly, ctx.queue.clock.now_ms());
        events.extend(suppress(ctx, &record, &newly));
        if !ctx.store.update_retired(&record, events)? {
            tracing::info!(msg_id = %id, "bounce for a message forgotten meanwhile; ignored");
            return Ok(Done::Failed(0));
        }
        // Only the newly failed recipients: the others were reported before.
        let mut view = record.clone();
        view.recipients = newly.iter().filter_map(|&i| record.recipients.get(i).cloned()).collect();
        ctx.queue.notify_sender(&view, kept_headers(&record).as_bytes());
        return Ok(Done::Failed(newly.len()));
    }
    let mut events = bounced_events(&record, &newly, ctx.queue.clock.now_ms());
    events.extend(suppress(ctx, &record, &newly));
    if record.is_finished() {
        ctx.queue.finish(record, events)?;
    } else {
        ctx.store.update_with(&record, Some(due), events)?;
    }
    Ok(Done::Failed(newly.len()))
}

/// Files each newly bounced recipient with the suppression list; the
/// events of the suppressions it made.
fn suppress(ctx: &Context, record: &MessageRecord, newly: &[usize]) -> Vec<crate::events::Event> {
    let now = ctx.queue.clock.now_ms();
    newly
        .iter()
        .filter_map(|&i| record.recipients[i].attempts.last().and_then(|a| a.bounce.map(|b| (i, b, a.reply.clone()))))
        .flat_map(|(i, b, reply)| ctx.queue.note_failure(record, i, b, &reply, "bounce", now))
        .collect()
}

/// A `message.bounced` event for each newly failed recipient.
fn bounced_events(record: &MessageRecord, newly: &[usize], now_ms: i64) -> Vec<crate::events::Event> {
    newly
        .iter()
        .map(|&i| {
            let mut e = record.rcpt_event(i, crate::events::EventKind::Bounced, now_ms);
            if let Some(a) = record.recipients[i].attempts.last() {
                e.reply = Some(a.reply.clone());
                e.bounce = a.bounce.map(Into::into);
                e.host = (!a.host.is_empty()).then(|| a.host.clone());
            }
            e.reasons = vec!["asynchronous: a delivery status notification came back".into()];
            e
        })
        .collect()
}

/// Fails the recipients the report's `failed` groups name; returns the
/// indices of those newly failed (one already failed or expired stays so).
fn mark(record: &mut MessageRecord, failures: &[&RcptReport], now_ms: i64) -> Vec<usize> {
    let id = record.id;
    let mut newly = Vec::new();
    for f in failures {
        let Some(i) = record.recipients.iter().position(|r| f.names(&r.address)) else {
            tracing::info!(msg_id = %id, rcpt = %f.final_recipient, "bounce names no recipient of this message; ignored");
            continue;
        };
        let rcpt = &mut record.recipients[i];
        match rcpt.status {
            RcptStatus::Failed | RcptStatus::Expired => continue,
            RcptStatus::Queued | RcptStatus::Deferred | RcptStatus::Delivered => {}
        }
        let mut attempt = Attempt::new(now_ms, f.remote_mta.clone().unwrap_or_default(), Outcome::Permanent, f.reply());
        attempt.bounce = Some(f.bounce());
        tracing::warn!(msg_id = %id, rcpt = %rcpt.address, was = ?rcpt.status, host = %attempt.host, reply = %attempt.reply, "failed: bounced");
        rcpt.status = RcptStatus::Failed;
        rcpt.attempts.push(attempt);
        newly.push(i);
    }
    newly
}

/// The header section quoted in a DSN for a retired message, whose body is
/// gone: the trace and From fields the relay kept.
fn kept_headers(record: &MessageRecord) -> String {
    format!("{}From: <{}>\r\n", record.received_header, record.from_address)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Recipient;

    fn record(statuses: &[(&str, RcptStatus)]) -> MessageRecord {
        let text = r#"{"v":1,"id":"01jd5x3q8k2m7n4p","received_ms":0,"mail_from":"app@sender.test","from_address":"a@customer.test",
            "from_domain":"customer.test","auth_user":null,"client_addr":"127.0.0.1","client_helo":"x","tls":false,"size":1,
            "received_header":"","recipients":[],"due_ms":0}"#;
        let mut r = MessageRecord::decode(text.as_bytes()).unwrap();
        r.recipients = statuses
            .iter()
            .map(|(a, s)| Recipient { status: *s, ..Recipient::queued(a.to_string()) })
            .collect();
        r
    }

    fn failed(rcpt: &str) -> RcptReport {
        RcptReport {
            final_recipient: rcpt.into(),
            original_recipient: None,
            action: Action::Failed,
            status: "5.1.1".into(),
            remote_mta: Some("mx.dest.test".into()),
            diagnostic: Some("smtp; 550 5.1.1 user unknown".into()),
        }
    }

    #[test]
    fn marks_only_named_recipients_not_yet_failed() {
        use RcptStatus::*;
        let cases: &[(&[(&str, RcptStatus)], &[&str], &[usize], &[RcptStatus])] = &[
            (&[("a@dest.test", Delivered)], &["A@dest.test"], &[0], &[Failed]),
            (
                &[("a@dest.test", Delivered), ("b@dest.test", Delivered)],
                &["b@dest.test"],
                &[1],
                &[Delivered, Failed],
            ),
            (
                &[("a@dest.test", Deferred), ("b@dest.test", Queued)],
                &["a@dest.test", "b@dest.test"],
                &[0, 1],
                &[Failed, Failed],
            ),
            (
                &[("a@dest.test", Failed), ("b@dest.test", Expired)],
                &["a@dest.test", "b@dest.test"],
                &[],
                &[Failed, Expired],
            ),
            (&[("a@dest.test", Delivered)], &["z@dest.test"], &[], &[Delivered]),
        ];
        for (statuses, named, want_newly, want_statuses) in cases {
            let mut r = record(statuses);
            let reports: Vec<RcptReport> = named.iter().map(|n| failed(n)).collect();
            let refs: Vec<&RcptReport> = reports.iter().collect();
            assert_eq!(mark(&mut r, &refs, 7), *want_newly, "{statuses:?} {named:?}");
            assert_eq!(r.recipients.iter().map(|x| x.status).collect::<Vec<_>>(), *want_statuses);
            for &i in *want_newly {
                let last = r.recipients[i].attempts.last().unwrap();
                assert_eq!(
                    (last.at_ms, last.host.as_str(), last.outcome),
                    (7, "mx.dest.test", Outcome::Permanent)
                );
                assert_eq!(last.reply, "bounced: 5.1.1 smtp; 550 5.1.1 user unknown");
            }
        }
    }
}
