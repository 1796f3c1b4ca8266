//! AUTH (RFC 4954) with the PLAIN (RFC 4616) and LOGIN mechanisms,
//! checked against argon2 hashes from `relay.toml`.

use super::session::{State, Step};
use super::{Reply, SharedContext, reply::common};
use crate::config::UserConfig;
use argon2::{Argon2, PasswordHash, PasswordVerifier};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use std::collections::HashMap;
use std::sync::Arc;

/// The users that may authenticate, by name, with their PHC hashes.
#[derive(Clone)]
pub struct Users {
    hashes: Arc<HashMap<String, String>>,
    /// Credentials already proven this run, as keyed SHA-256 digests: the
    /// billing app reconnects all day, and argon2 costs tens of
    /// milliseconds of CPU per check by design. Only a password that
    /// passed argon2 ever gets here.
    proven: Arc<std::sync::Mutex<HashMap<String, [u8; 32]>>>,
    /// Random per process, so the digests are useless outside it.
    key: Arc<[u8; 32]>,
    /// Argon2 checks running at once. Each takes 19 MiB and a core for
    /// tens of milliseconds: fifty clients authenticating together must
    /// not cost a gigabyte.
    argon2_slots: Arc<tokio::sync::Semaphore>,
}

impl Users {
    pub fn from_config(users: &[UserConfig]) -> Self {
        Self {
            hashes: Arc::new(users.iter().map(|u| (u.name.clone(), u.password_hash.clone())).collect()),
            proven: Default::default(),
            key: Arc::new(rand::random()),
            argon2_slots: Arc::new(tokio::sync::Semaphore::new(2)),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    fn digest(&self, user: &str, password: &[u8]) -> [u8; 32] {
        let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        ctx.update(&self.key[..]);
        ctx.update(user.as_bytes());
        ctx.update(&[0]);
        ctx.update(password);
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.finish().as_ref());
        out
    }

    fn is_proven(&self, user: &str, digest: &[u8; 32]) -> bool {
        let cached = self.proven.lock().ok().and_then(|m| m.get(user).copied());
        cached.is_some_and(|c| aws_lc_rs::constant_time::verify_slices_are_equal(&c, digest).is_ok())
    }

    /// Checks a password. Argon2 is slow on purpose, so it runs off the
    /// I/O threads; an unknown user costs the same as a wrong password.
    pub async fn verify(&self, user: &str, password: &[u8]) -> bool {
        const DUMMY: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$kzYgEI0dAbE0vcd9W9H1B6cCQdLAZh5zSSh6qdnfvZg";
        let digest = self.digest(user, password);
        if self.is_proven(user, &digest) {
            return true;
        }
        let Ok(_slot) = self.argon2_slots.acquire().await else { return false };
        // Another session may have proven the same credentials meanwhile.
        if self.is_proven(user, &digest) {
            return true;
        }
        let known = self.hashes.get(user).cloned();
        let found = known.is_some();
        let hash = known.unwrap_or_else(|| DUMMY.to_string());
        let password = password.to_vec();
        let ok = tokio::task::spawn_blocking(move || {
            PasswordHash::new(&hash).map(|h| Argon2::default().verify_password(&password, &h).is_ok()).unwrap_or(false)
        })
        .await
        .unwrap_or(false);
        if ok && found {
            if let Ok(mut m) = self.proven.lock() {
                m.insert(user.to_string(), digest);
            }
        }
        ok && found
    }
}

/// Hashes a password for `relay.toml` (`herald passwd`).
pub fn hash_password(password: &str) -> Result<String, String> {
    use argon2::password_hash::{PasswordHasher, SaltString, rand_core::OsRng};
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default().hash_password(password.as_bytes(), &salt).map(|h| h.to_string()).map_err(|e| e.to_string())
}

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
    if ctx.users.verify(user, password).await {
        tracing::info!(peer = %state.peer, user, "authenticated");
        state.auth_user = Some(user.to_string());
        return Step::Reply(Reply::new(235, [2, 7, 0], "Authentication successful"));
    }
    fail(state, ctx, "bad user name or password")
}

fn fail(state: &mut State, ctx: &SharedContext, why: &str) -> Step {
    state.auth_failures += 1;
    tracing::warn!(peer = %state.peer, failures = state.auth_failures, why, "authentication failed");
    if state.auth_failures >= ctx.limits.max_auth_failures {
        return Step::Close(Reply::new(421, [4, 7, 0], "Too many failed authentication attempts; closing connection"));
    }
    Step::Reply(Reply::new(535, [5, 7, 8], "Authentication credentials invalid"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn proven_credentials_do_not_open_the_door_to_others() {
        let hash = hash_password("right").unwrap();
        let users = Users::from_config(&[UserConfig { name: "app".into(), password_hash: hash, ..Default::default() }]);
        let cases = [("app", "wrong", false), ("app", "right", true), ("app", "right", true), ("app", "wrong", false), ("other", "right", false), ("app", "right\0", false)];
        for (user, password, want) in cases {
            assert_eq!(users.verify(user, password.as_bytes()).await, want, "{user}/{password:?}");
        }
    }
}
