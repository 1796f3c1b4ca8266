//! DATA (RFC 5321 §4.1.1.4): take the message, check it, spool it, and
//! say 250 only once it is on disk.
//!
//! smtp-proto's receiver ends DATA only at `<CRLF>.<CRLF>`. A bare LF is
//! then read as CRLF (`limits.bare_newline = "normalize"`, the default) or
//! refused (`"reject"`); a bare CR or NUL is always refused, and so is a
//! line over 998 bytes (RFC 5322 §2.1.1). What a smuggler hides behind
//! `\n.\n` is at most content of the same message, never a second one.

use super::session::{State, Step};
use super::{Reply, SharedContext};
use crate::smtpd::reply::common;
use crate::id::MessageId;
use crate::config::BareNewline;
use crate::message::{MAX_LINE, check_from, find_forbidden, long_line, normalize_bare_lf, received_header};
use crate::store::{MessageRecord, Recipient, records::RECORD_VERSION};

/// `DATA`: check the transaction, then invite the message.
pub fn data(state: &mut State, ctx: &SharedContext) -> Step {
    match &state.tx {
        None => Step::Reply(common::bad_sequence("Need MAIL before DATA")),
        Some(tx) if tx.rcpts.is_empty() => {
            // RFC 2920 §3.1: every RCPT failed; the transaction ends here.
            state.tx = None;
            Step::Reply(Reply::new(554, [5, 5, 1], "No valid recipients"))
        }
        // Refused before the body is read, so a full disk costs no bytes.
        Some(_) if ctx.store.disk().under_pressure() => Step::Reply(common::disk_full()),
        Some(_) => Step::Data(Reply::plain(354, "End data with <CR><LF>.<CR><LF>")),
    }
}

/// Recipients suppressed under the message's scope (a per-domain list,
/// or `at_rcpt = "accept_and_fail"`) fail at once and are never sent;
/// their `message.failed` events. No DSN: the app learns it from the event.
fn fail_suppressed(record: &mut MessageRecord, list: &crate::suppression::SuppressionList, now: i64) -> Vec<crate::events::Event> {
    let scope = list.scope_of(record);
    let mut events = Vec::new();
    for i in 0..record.recipients.len() {
        let Some(s) = list.active(&scope, &record.recipients[i].address, now) else { continue };
        let reply = format!("550 5.1.1 {}", crate::suppression::refusal_text(&s));
        let mut attempt = crate::store::Attempt::new(now, String::new(), crate::store::Outcome::Permanent, reply.clone());
        attempt.bounce = Some(crate::bounce::Bounce::new(crate::bounce::BounceClass::Suppressed, true));
        let rcpt = &mut record.recipients[i];
        rcpt.status = crate::store::RcptStatus::Failed;
        rcpt.reported = true;
        rcpt.attempts.push(attempt.clone());
        tracing::info!(msg_id = %record.id, rcpt = %rcpt.address, scope = %scope, "recipient failed at acceptance: suppressed");
        let mut e = record.rcpt_event(i, crate::events::EventKind::Failed, now);
        e.reply = Some(reply);
        e.bounce = attempt.bounce.map(Into::into);
        e.reasons = vec!["suppressed: on the suppression list after an earlier hard bounce".into()];
        events.push(e);
    }
    events
}

pub fn too_big(limit: usize) -> Reply {
    Reply::new(552, [5, 3, 4], format!("Message size exceeds the limit of {limit} bytes"))
}

/// RFC 5322 §2.1.1's limit, named with the line, so the app learns it
/// now and not from a bounce days later.
pub fn line_too_long(line: usize, len: usize) -> Reply {
    Reply::new(550, [5, 6, 0], format!("Message refused: line {line} is {len} bytes long; the limit is {MAX_LINE} bytes plus CRLF (RFC 5322 2.1.1)"))
}

/// The end of DATA: `body` is the whole message, dot-unstuffed.
pub async fn finish(state: &mut State, ctx: &SharedContext, body: Vec<u8>) -> Reply {
    let Some(tx) = state.tx.take() else {
        return common::bad_sequence("Need MAIL before DATA");
    };
    if body.len() > ctx.limits.max_message_size {
        return too_big(ctx.limits.max_message_size);
    }
    let body = match ctx.limits.bare_newline {
        BareNewline::Normalize => normalize_bare_lf(body),
        BareNewline::Reject => body,
    };
    if let Some(kind) = find_forbidden(&body) {
        let what = kind.describe();
        tracing::warn!(peer = %state.peer, what, "message refused: forbidden bytes (possible SMTP smuggling)");
        return Reply::new(550, [5, 5, 2], format!("Message refused: it contains {what}; every line must end with CRLF"));
    }
    if let Some((line, len)) = long_line(&body) {
        tracing::info!(peer = %state.peer, line, len, "message refused: line too long");
        return line_too_long(line, len);
    }
    let from = match check_from(&body) {
        Ok(from) => from,
        Err(e) => {
            tracing::info!(peer = %state.peer, error = %e, "message refused: From header");
            return Reply::new(550, [5, 6, 0], format!("Message refused: {e}"));
        }
    };
    let now = ctx.clock.now_ms();
    let id = MessageId::generate(now);
    // The app's reference stays with the relay: recorded, never sent.
    let (body, reference) = crate::message::take_field(body, &ctx.reference_header);
    let message_id_header = Some(crate::message::field_value(&body, "Message-ID").unwrap_or_else(|| format!("<{id}@{}>", ctx.hostname)));
    let decision = ctx.decide(&from.domain);
    let helo = state.helo.clone().unwrap_or_default();
    let client_ip = state.peer.ip().to_canonical().to_string();
    let single_rcpt = (tx.rcpts.len() == 1).then(|| tx.rcpts[0].as_str());
    let received = received_header(&helo, &client_ip, &ctx.hostname, state.tls, state.auth_user.is_some(), id.as_str(), single_rcpt, now / 1000);
    let mut record = MessageRecord {
        v: RECORD_VERSION,
        id,
        received_ms: now,
        mail_from: tx.mail_from,
        from_address: from.address,
        from_domain: from.domain,
        auth_user: state.auth_user.clone(),
        client_addr: client_ip,
        client_helo: helo,
        tls: state.tls,
        size: body.len(),
        received_header: received,
        recipients: tx.rcpts.into_iter().map(Recipient::queued).collect(),
        due_ms: now,
        decision: Some(decision),
        attempts: 0,
        prepared: None,
        finished_ms: None,
        is_dsn: false,
        smtputf8: tx.smtputf8,
        message_id_header,
        reference,
    };
    let mut accepted = record.event(crate::events::EventKind::Accepted, now);
    accepted.recipients = record.recipients.iter().map(|r| r.address.clone()).collect();
    let mut events = vec![accepted];
    if let Some(list) = ctx.suppressions.as_ref().filter(|l| l.checked_at_acceptance()) {
        events.extend(fail_suppressed(&mut record, list, now));
    }
    match ctx.intake.accept(&record, std::sync::Arc::new(body), events).await {
        Ok(()) => {
            tracing::info!(
                msg_id = %id,
                from = %record.from_address,
                mail_from = %record.mail_from,
                rcpts = record.recipients.len(),
                size = record.size,
                user = record.auth_user.as_deref().unwrap_or("-"),
                identity = record.decision.as_ref().map(|d| d.reason.as_str()).unwrap_or("-"),
                "queued"
            );
            Reply::new(250, [2, 0, 0], format!("Ok: queued as {id}"))
        }
        Err(e) => {
            tracing::error!(msg_id = %id, error = %e, "could not spool message");
            common::local_error()
        }
    }
}
