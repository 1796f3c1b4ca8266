//! EHLO and HELO (RFC 5321 §4.1.1.1): say hello, list what we offer.

use super::session::{State, Step};
use crate::smtpd::reply::common;
use super::{Reply, SharedContext};
use crate::config::ListenerTls;

pub fn ehlo(state: &mut State, ctx: &SharedContext, host: &str, esmtp: bool) -> Step {
    if host.trim().is_empty() {
        return Step::Reply(Reply::new(501, [5, 5, 4], "Syntax: EHLO hostname"));
    }
    // A new hello resets any transaction (RFC 5321 §4.1.4).
    state.tx = None;
    state.helo = Some(host.to_string());
    state.esmtp = esmtp;
    let mut reply = common::hello(&ctx.hostname, host, esmtp, ctx.limits.max_message_size);
    if !esmtp {
        return Step::Reply(reply);
    }
    if !state.tls && state.mode.tls == ListenerTls::Starttls && ctx.tls.is_some() {
        reply.lines.push("STARTTLS".into());
    }
    // RFC 4954 §4: do not offer plain-text mechanisms on a clear channel.
    if state.auth_allowed() && !ctx.users.is_empty() && state.auth_user.is_none() {
        reply.lines.push("AUTH PLAIN LOGIN".into());
    }
    Step::Reply(reply)
}
