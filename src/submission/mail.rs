//! MAIL FROM (RFC 5321 §4.1.1.2): start a transaction. This is where the
//! relay decides who may send at all: an authenticated user, or a client
//! from `relay.allow_networks`. Nobody else relays.

use super::session::{State, Step, Transaction};
use super::{Reply, SharedContext};
use crate::smtpd::reply::common;
use crate::message::parse_mailbox;
use smtp_proto::MailFrom;
use std::borrow::Cow;

pub fn mail(state: &mut State, ctx: &SharedContext, from: MailFrom<Cow<'_, str>>) -> Step {
    if state.helo.is_none() {
        return Step::Reply(common::bad_sequence("Send EHLO first"));
    }
    if state.auth_user.is_none() && !state.trusted_network {
        return Step::Reply(if state.auth_allowed() || state.mode.tls == crate::config::ListenerTls::None {
            Reply::new(530, [5, 7, 0], "Authentication required")
        } else {
            Reply::new(530, [5, 7, 0], "Must issue a STARTTLS command first, then authenticate")
        });
    }
    if state.tx.is_some() {
        return Step::Reply(common::bad_sequence("Nested MAIL command"));
    }
    if ctx.store.disk().under_pressure() {
        return Step::Reply(common::disk_full());
    }
    if from.size > ctx.limits.max_message_size {
        return Step::Reply(Reply::new(552, [5, 3, 4], format!("Message size exceeds the limit of {} bytes", ctx.limits.max_message_size)));
    }
    let address = from.address.trim();
    if !address.is_empty()
        && let Err(why) = parse_mailbox(address)
    {
        return Step::Reply(Reply::new(501, [5, 1, 7], format!("Bad sender address syntax: {why}")));
    }
    let smtputf8 = from.flags & smtp_proto::MAIL_SMTPUTF8 != 0;
    state.tx = Some(Transaction { mail_from: address.to_string(), rcpts: Vec::new(), smtputf8 });
    Step::Reply(Reply::new(250, [2, 1, 0], "Sender ok"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What MAIL FROM accepts is the RFC 5321 Mailbox grammar (table in
    /// `message::address`); the null sender is accepted too.
    #[test]
    fn senders() {
        for (a, ok) in [("a@b.example", true), ("\"john doe\"@example.net", true), ("a@[127.0.0.1]", true), ("a@[IPv6:::1]", true), ("@b.example", false), ("a b@c", false), ("a@b..c", false)] {
            assert_eq!(parse_mailbox(a).is_ok(), ok, "{a}");
        }
    }
}
