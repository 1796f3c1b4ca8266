//! RCPT TO (RFC 5321 §4.1.1.3): add a recipient to the transaction.

use super::session::{State, Step};
use super::{Reply, SharedContext};
use crate::message::{Domain, Mailbox, parse_mailbox};
use crate::smtpd::reply::common;
use smtp_proto::RcptTo;
use std::borrow::Cow;

pub fn rcpt(state: &mut State, ctx: &SharedContext, to: RcptTo<Cow<'_, str>>) -> Step {
    let Some(tx) = state.tx.as_mut() else {
        return Step::Reply(common::bad_sequence("Need MAIL before RCPT"));
    };
    let address = to.address.trim();
    match parse_mailbox(address) {
        Err(why) => return Step::Reply(Reply::new(501, [5, 1, 3], format!("Bad recipient address syntax: {why}"))),
        // Valid syntax, but delivery finds hosts through MX records only.
        Ok(Mailbox { domain: Domain::Literal(_), .. }) => {
            return Step::Reply(Reply::new(550, [5, 1, 2], "This relay does not deliver to address literals; use a domain name"));
        }
        Ok(_) => {}
    }
    if tx.rcpts.len() >= ctx.limits.max_recipients {
        // RFC 5321 §4.5.3.1.10: 452 makes the client send the rest later.
        return Step::Reply(Reply::new(452, [4, 5, 3], format!("Too many recipients; at most {} per message", ctx.limits.max_recipients)));
    }
    if let Some(s) = ctx.suppressions.as_ref().and_then(|l| l.refuses_at_rcpt(address, ctx.clock.now_ms())) {
        tracing::info!(peer = %state.peer, rcpt = %address, class = s.class.as_str(), "recipient refused: suppressed");
        return Step::Reply(Reply::new(550, [5, 1, 1], format!("{}; remove it from the suppression list to send again", crate::suppression::refusal_text(&s))));
    }
    if !tx.rcpts.iter().any(|r| r.eq_ignore_ascii_case(address)) {
        tx.rcpts.push(address.to_string());
    }
    Step::Reply(Reply::new(250, [2, 1, 5], "Recipient ok"))
}
