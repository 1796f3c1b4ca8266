//! EHLO and HELO (RFC 5321 §4.1.1.1): say hello, list what we offer.

use super::session::{State, Step};
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
    if !esmtp {
        return Step::Reply(Reply::plain(250, ctx.hostname.clone()));
    }
    let mut lines = vec![
        format!("{} greets {host}", ctx.hostname).into(),
        "PIPELINING".into(),
        format!("SIZE {}", ctx.limits.max_message_size).into(),
        "8BITMIME".into(),
        "ENHANCEDSTATUSCODES".into(),
        "SMTPUTF8".into(),
    ];
    if !state.tls && state.mode.tls == ListenerTls::Starttls && ctx.tls.is_some() {
        lines.push("STARTTLS".into());
    }
    // RFC 4954 §4: do not offer plain-text mechanisms on a clear channel.
    if state.auth_allowed() && !ctx.users.is_empty() && state.auth_user.is_none() {
        lines.push("AUTH PLAIN LOGIN".into());
    }
    Step::Reply(Reply { code: 250, status: None, lines })
}
