//! DATA: take the message, refuse smuggling, apply a delivery status
//! notification to the messages its bounce addresses name, and say 250
//! only once that is on disk. Anything else sent to a bounce address (an
//! auto-reply, say) is accepted, logged and dropped.

use super::session::{State, Step};
use super::{Context, apply, dsn};
use crate::id::MessageId;
use crate::message::find_forbidden;
use crate::smtpd::Reply;
use crate::smtpd::reply::common;

/// `DATA`: check the transaction, then invite the message.
pub fn data(state: &mut State) -> Step {
    match &state.tx {
        None => Step::Reply(common::bad_sequence("Need MAIL before DATA")),
        Some(tx) if tx.rcpts.is_empty() => {
            // RFC 2920 §3.1: every RCPT failed; the transaction ends here.
            state.tx = None;
            Step::Reply(Reply::new(554, [5, 5, 1], "No valid recipients"))
        }
        Some(_) => Step::Data(Reply::plain(354, "End data with <CR><LF>.<CR><LF>")),
    }
}

pub fn too_big(limit: usize) -> Reply {
    Reply::new(552, [5, 3, 4], format!("Message size exceeds the limit of {limit} bytes"))
}

/// The end of DATA: `body` is the whole message, dot-unstuffed.
pub async fn finish(state: &mut State, ctx: &Context, body: Vec<u8>) -> Reply {
    let Some(tx) = state.tx.take() else {
        return common::bad_sequence("Need MAIL before DATA");
    };
    let peer = state.peer;
    if body.len() > ctx.limits.max_message_size {
        return too_big(ctx.limits.max_message_size);
    }
    let ids: Vec<MessageId> = tx.rcpts.iter().map(|(_, id)| *id).collect();
    if let Some(kind) = find_forbidden(&body) {
        let what = kind.describe();
        for id in &ids {
            tracing::warn!(msg_id = %id, %peer, what, "bounce refused: forbidden bytes (possible SMTP smuggling)");
        }
        return Reply::new(
            550,
            [5, 5, 2],
            format!("Message refused: it contains {what}; every line must end with CRLF"),
        );
    }
    let Some(report) = dsn::parse_report(&body) else {
        for id in &ids {
            tracing::info!(msg_id = %id, %peer, mail_from = %tx.mail_from, size = body.len(), "mail to a bounce address that is no delivery status notification (an auto-reply?); accepted and dropped");
        }
        return Reply::new(250, [2, 0, 0], "Ok: not a delivery status notification; nothing recorded");
    };
    for id in &ids {
        match apply::apply(ctx, *id, &report).await {
            Ok(failed) => tracing::info!(msg_id = %id, %peer, groups = report.len(), failed, "delivery status notification received"),
            Err(e) => {
                tracing::warn!(msg_id = %id, %peer, error = %e, "delivery status notification not recorded; asked the sender to retry");
                return Reply::new(
                    451,
                    [4, 3, 0],
                    format!("Cannot record the report now ({e}); please try again later"),
                );
            }
        }
    }
    if let Err(e) = ctx.store.durable().await {
        tracing::error!(%peer, error = %e, "flushing bounce updates failed");
        return common::local_error();
    }
    Reply::new(250, [2, 0, 0], "Ok: delivery status recorded")
}
