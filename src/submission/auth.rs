//! AUTH (RFC 4954) with the PLAIN (RFC 4616) and LOGIN mechanisms,
//! checked against argon2 hashes from `relay.toml` (`passwords`), under
//! the per-address throttle (`throttle`) and the per-connection limit.
//!
//! Order of the guards for each password: address locked out → `454`
//! and close, nothing checked; else wait the throttle's delay, check, and
//! answer `235` or `535`. A failure that exhausts the connection's
//! `limits.max_auth_failures`, or locks the address out, is answered
//! `535` and then `421`, so every checked password gets its own verdict
//! and no password is checked only to be answered with a hang-up.

use super::session::{State, Step};
use super::{Reply, SharedContext};
use crate::smtpd::reply::common;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

/// Where a multi-step exchange stands.
pub enum Pending {
    /// `AUTH PLAIN` sent without an initial response.
    Plain,
    /// `AUTH LOGIN`: waiting for the user name.
    LoginUser,
    /// `AUTH LOGIN`: waiting for the password of this user.
    LoginPassword(String),
}

/// `AUTH <mechanism> [initial-response]`.
pub async fn start(state: &mut State, ctx: &SharedContext, mechanism: u64, initial: &str) -> Step {
    if state.helo.is_none() {
        return Step::Reply(common::bad_sequence("Send EHLO first"));
    }
    if state.auth_user.is_some() {
        return Step::Reply(common::bad_sequence("Already authenticated"));
    }
    if state.tx.is_some() {
        return Step::Reply(common::bad_sequence("AUTH is not allowed during a mail transaction"));
    }
    if !state.auth_allowed() {
        return Step::Reply(Reply::new(538, [5, 7, 11], "Encryption required for requested authentication mechanism; use STARTTLS first"));
    }
    if ctx.users.is_empty() {
        return Step::Reply(Reply::new(503, [5, 5, 1], "Authentication is not enabled"));
    }
    if let Some(secs) = ctx.throttle.locked(state.peer.ip()) {
        return locked_out(state, secs);
    }
    let initial = initial.trim();
    match mechanism {
        smtp_proto::AUTH_PLAIN if initial.is_empty() => Step::Challenge(Reply::plain(334, ""), Pending::Plain),
        smtp_proto::AUTH_PLAIN => respond(state, ctx, Pending::Plain, initial.as_bytes()).await,
        smtp_proto::AUTH_LOGIN if initial.is_empty() => Step::Challenge(Reply::plain(334, "VXNlcm5hbWU6"), Pending::LoginUser),
        smtp_proto::AUTH_LOGIN => respond(state, ctx, Pending::LoginUser, initial.as_bytes()).await,
        _ => Step::Reply(Reply::new(504, [5, 5, 4], "Unrecognized authentication type; use PLAIN or LOGIN")),
    }
}

/// A client's response line to a challenge (or its initial response).
pub async fn respond(state: &mut State, ctx: &SharedContext, pending: Pending, line: &[u8]) -> Step {
    let line = line.trim_ascii();
    if line == b"*" {
        return Step::Reply(Reply::new(501, [5, 7, 0], "Authentication cancelled"));
    }
    // "=" is an empty initial response (RFC 4954 §4).
    let decoded = if line == b"=" { Ok(Vec::new()) } else { B64.decode(line) };
    let Ok(decoded) = decoded else {
        return Step::Reply(Reply::new(501, [5, 5, 2], "Cannot decode the response (not base64)"));
    };
    match pending {
        Pending::LoginUser => match String::from_utf8(decoded) {
            Ok(user) => Step::Challenge(Reply::plain(334, "UGFzc3dvcmQ6"), Pending::LoginPassword(user)),
            Err(_) => Step::Reply(Reply::new(501, [5, 5, 2], "User name is not UTF-8")),
        },
        Pending::LoginPassword(user) => check(state, ctx, &user, &decoded).await,
        Pending::Plain => {
            // authzid NUL authcid NUL passwd
            let mut parts = decoded.splitn(3, |&b| b == 0);
            let (Some(authz), Some(user), Some(pass)) = (parts.next(), parts.next(), parts.next()) else {
                return Step::Reply(Reply::new(501, [5, 5, 2], "Malformed PLAIN response"));
            };
            if !authz.is_empty() && authz != user {
                return fail(state, ctx, "authorization identity differs from the user");
            }
            match std::str::from_utf8(user) {
                Ok(user) => check(state, ctx, user, pass).await,
                Err(_) => Step::Reply(Reply::new(501, [5, 5, 2], "User name is not UTF-8")),
            }
        }
    }
}

async fn check(state: &mut State, ctx: &SharedContext, user: &str, password: &[u8]) -> Step {
    let (delay, ticket) = match ctx.throttle.begin(state.peer.ip()) {
        Ok(go) => go,
        Err(secs) => return locked_out(state, secs),
    };
    // Growing with the address's recent failures: guessing gets slow.
    tokio::time::sleep(delay).await;
    if ctx.users.verify(user, password).await {
        tracing::info!(peer = %state.peer, user, "authenticated");
        state.auth_user = Some(user.to_string());
        return Step::Reply(Reply::new(235, [2, 7, 0], "Authentication successful"));
    }
    let lockout = ticket.failed();
    let step = fail(state, ctx, "bad user name or password");
    match (lockout, step) {
        (Some(secs), Step::Reply(r) | Step::Farewell(r, _)) => {
            tracing::warn!(peer = %state.peer, lockout_secs = secs, "too many failed authentications from this address; locked out");
            Step::Farewell(r, Reply::new(421, [4, 7, 0], format!("Too many failed authentication attempts from your address; try again in {secs} seconds")))
        }
        (_, step) => step,
    }
}

fn fail(state: &mut State, ctx: &SharedContext, why: &str) -> Step {
    state.auth_failures += 1;
    tracing::warn!(peer = %state.peer, failures = state.auth_failures, why, "authentication failed");
    let invalid = Reply::new(535, [5, 7, 8], "Authentication credentials invalid");
    if state.auth_failures >= ctx.limits.max_auth_failures {
        return Step::Farewell(invalid, Reply::new(421, [4, 7, 0], "Too many failed authentication attempts; closing connection"));
    }
    Step::Reply(invalid)
}

/// The address is locked out: nothing is checked.
fn locked_out(state: &State, secs: u64) -> Step {
    tracing::info!(peer = %state.peer, retry_secs = secs, "AUTH refused: address locked out");
    Step::Close(Reply::new(454, [4, 7, 0], format!("Too many failed authentication attempts from your address; try again in {secs} seconds")))
}

