//! RCPT TO: only `bounces+<id>@<host>` for a message the relay knows,
//! where host is the relay's bounce domain or the return-path host of a
//! registered customer domain (`em4821.customer.nl`). Everything else is
//! refused with 550 5.7.1: this listener never relays.

use super::Context;
use super::session::{State, Step};
use crate::id::MessageId;
use crate::smtpd::Reply;
use crate::smtpd::reply::common;

/// What a recipient address is to the bounce intake.
#[derive(Debug, PartialEq, Eq)]
pub enum Target<'a> {
    /// `bounces+<id>@<relay bounce domain>`.
    Relay(MessageId),
    /// `bounces+<id>@<host>` on another host: ours only when it is a
    /// registered domain's return-path host.
    Host(MessageId, &'a str),
    /// Not a bounce address at all.
    Other,
}

/// Sorts a recipient address; `bounce_domain` is `identity.bounce_domain`.
pub fn target<'a>(address: &'a str, bounce_domain: &str) -> Target<'a> {
    let Some(id) = crate::policy::bounce_id(address) else {
        return Target::Other;
    };
    let host = address.rsplit_once('@').map_or("", |(_, host)| host).trim_end_matches('.');
    if host.eq_ignore_ascii_case(bounce_domain.trim_end_matches('.')) {
        Target::Relay(id)
    } else {
        Target::Host(id, host)
    }
}

pub fn rcpt(state: &mut State, ctx: &Context, address: &str) -> Step {
    let peer = state.peer;
    let Some(tx) = state.tx.as_mut() else {
        return Step::Reply(common::bad_sequence("Need MAIL before RCPT"));
    };
    if tx.rcpts.len() >= ctx.limits.max_recipients {
        return Step::Reply(Reply::new(
            452,
            [4, 5, 3],
            format!("Too many recipients; at most {} per message", ctx.limits.max_recipients),
        ));
    }
    let address = address.trim();
    let id = match target(address, &ctx.bounce_domain) {
        Target::Relay(id) => id,
        Target::Host(id, host) => match ctx.is_return_path(host) {
            Ok(true) => id,
            Ok(false) => return refuse(peer, address),
            Err(e) => {
                tracing::error!(msg_id = %id, error = %e, "cannot read the domain registry");
                return Step::Reply(common::local_error());
            }
        },
        Target::Other => return refuse(peer, address),
    };
    match ctx.store.find(&id) {
        Ok(Some(_)) => {
            if !tx.rcpts.iter().any(|(_, known)| *known == id) {
                tx.rcpts.push((address.to_string(), id));
            }
            Step::Reply(Reply::new(250, [2, 1, 5], "Bounce recipient ok"))
        }
        Ok(None) => {
            tracing::info!(msg_id = %id, %peer, rcpt = address, "bounce for an unknown message refused");
            Step::Reply(Reply::new(
                550,
                [5, 1, 1],
                "No such message here; it was never sent or is long forgotten",
            ))
        }
        Err(e) => {
            tracing::error!(msg_id = %id, error = %e, "cannot read the spool");
            Step::Reply(common::local_error())
        }
    }
}

fn refuse(peer: std::net::SocketAddr, address: &str) -> Step {
    tracing::info!(%peer, rcpt = address, "recipient refused: not a bounce address of this relay");
    Step::Reply(Reply::new(
        550,
        [5, 7, 1],
        "Relaying denied: this server only accepts bounces for mail the relay sent",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let id = MessageId::parse("01jd5x3q8k2m7n4p").unwrap();
        let cases = [
            ("bounces+01jd5x3q8k2m7n4p@bounces.relay.test", Target::Relay(id)),
            ("BOUNCES+01JD5X3Q8K2M7N4P@Bounces.Relay.Test.", Target::Relay(id)),
            (
                "bounces+01jd5x3q8k2m7n4p@em1234.customer.test",
                Target::Host(id, "em1234.customer.test"),
            ),
            ("bounces+01jd5x3q8k2m7n4p@elsewhere.example", Target::Host(id, "elsewhere.example")),
            ("postmaster@bounces.relay.test", Target::Other),
            ("bounces@bounces.relay.test", Target::Other),
            ("bounces+nope@bounces.relay.test", Target::Other),
            ("payer@dest.test", Target::Other),
            ("", Target::Other),
        ];
        for (address, want) in cases {
            assert_eq!(target(address, "bounces.relay.test"), want, "{address}");
        }
    }
}
