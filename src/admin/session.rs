//! Sessions of the admin page: the admin token, typed once into the
//! sign-in form, is exchanged for a random session id in an `HttpOnly;
//! SameSite=Strict` cookie, so the page's JavaScript never holds the token
//! and a script injected into it could not steal a credential.
//!
//! CSRF: a cookie is sent by the browser on its own, so every request that
//! changes something (any method but GET/HEAD) must also carry the
//! session's CSRF token in the `X-Herald-CSRF` header, which another site
//! can neither read nor set (no CORS is offered). `SameSite=Strict` is the
//! second lock. Sign-in itself only takes a JSON body, which a cross-site
//! form cannot send.
//!
//! Sessions live in memory: a restart signs everyone out. The cookie gets
//! `Secure` when the request came through a TLS-terminating proxy
//! (`X-Forwarded-Proto: https`); the listener itself speaks plain HTTP
//! and belongs on loopback.

use super::types::{SessionV1, SignInV1};
use super::{AdminState, ApiError, same_token};
use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use rand::RngCore;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// The cookie's name.
pub const COOKIE: &str = "herald_session";
/// The header that carries the CSRF token.
pub const CSRF_HEADER: &str = "x-herald-csrf";
/// How long a session lasts from sign-in.
const LIFETIME_MS: i64 = 12 * 3600 * 1000;
/// Sessions kept at most; the oldest goes first.
const MAX_SESSIONS: usize = 256;

/// The signed-in sessions, by id.
#[derive(Default)]
pub struct Sessions {
    inner: Mutex<HashMap<String, Session>>,
}

#[derive(Clone)]
struct Session {
    csrf: String,
    expires_ms: i64,
}

/// What a cookie-authenticated request may do.
#[derive(Debug, PartialEq, Eq)]
pub enum Access {
    Allowed,
    /// No cookie, or not one of ours (expired, signed out, restarted).
    NoSession,
    /// A state-changing request without the session's CSRF token.
    NoCsrf,
}

impl Sessions {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Session>> {
        // A panic while holding the map leaves it usable: the data is plain.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new session; returns its id and view.
    fn open(&self, now_ms: i64) -> (String, SessionV1) {
        let id = random_token();
        let session = Session { csrf: random_token(), expires_ms: now_ms + LIFETIME_MS };
        let mut map = self.lock();
        map.retain(|_, s| s.expires_ms > now_ms);
        if map.len() >= MAX_SESSIONS
            && let Some(oldest) = map.iter().min_by_key(|(_, s)| s.expires_ms).map(|(k, _)| k.clone())
        {
            map.remove(&oldest);
        }
        map.insert(id.clone(), session.clone());
        (id, SessionV1 { csrf_token: session.csrf, expires_ms: session.expires_ms })
    }

    fn get(&self, id: &str, now_ms: i64) -> Option<Session> {
        self.lock().get(id).filter(|s| s.expires_ms > now_ms).cloned()
    }

    fn close(&self, id: &str) {
        self.lock().remove(id);
    }

    /// Whether a request with these headers and method may pass on its
    /// session cookie.
    pub fn check(&self, method: &Method, headers: &HeaderMap, now_ms: i64) -> Access {
        let Some(session) = cookie(headers).and_then(|id| self.get(id, now_ms)) else {
            return Access::NoSession;
        };
        if matches!(*method, Method::GET | Method::HEAD) {
            return Access::Allowed;
        }
        let given = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
        if same_token(given.as_bytes(), session.csrf.as_bytes()) { Access::Allowed } else { Access::NoCsrf }
    }
}

/// 32 random bytes, URL-safe base64.
fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Our session id from the `Cookie` header(s), if any.
fn cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim())
}

/// The `Set-Cookie` value for `id` (`None`: delete the cookie).
fn set_cookie(id: Option<&str>, headers: &HeaderMap) -> Option<HeaderValue> {
    let secure = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"));
    let (value, age) = match id {
        Some(id) => (id, LIFETIME_MS / 1000),
        None => ("", 0),
    };
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!("{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={age}{secure}")).ok()
}

type Shared = State<Arc<AdminState>>;

/// `POST /api/session`: `{"token": …}` → a session cookie and its CSRF token.
pub(super) async fn sign_in(State(s): Shared, headers: HeaderMap, body: Result<Json<SignInV1>, JsonRejection>) -> Result<Response, ApiError> {
    let Json(req) = body.map_err(|e| ApiError::new(e.status(), format!("send a JSON body like {{\"token\": \"…\"}}: {}", e.body_text())))?;
    if !same_token(req.token.trim().as_bytes(), s.token.as_bytes()) {
        tracing::warn!("admin page: sign-in with a wrong token");
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, "that is not the admin token (`admin.token` in relay.toml)"));
    }
    let (id, view) = s.sessions.open(s.queue.clock.now_ms());
    tracing::info!("admin page: signed in");
    let mut response = Json(view).into_response();
    if let Some(v) = set_cookie(Some(&id), &headers) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(response)
}

/// `GET /api/session`: the current session (the page asks on load).
pub(super) async fn current(State(s): Shared, headers: HeaderMap) -> Result<Json<SessionV1>, ApiError> {
    let session = cookie(&headers).and_then(|id| s.sessions.get(id, s.queue.clock.now_ms()));
    let session = session.ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "not signed in"))?;
    Ok(Json(SessionV1 { csrf_token: session.csrf, expires_ms: session.expires_ms }))
}

/// `DELETE /api/session`: sign out (needs the CSRF token like any change).
pub(super) async fn sign_out(State(s): Shared, headers: HeaderMap) -> Result<Response, ApiError> {
    match s.sessions.check(&Method::DELETE, &headers, s.queue.clock.now_ms()) {
        Access::Allowed => {}
        Access::NoSession => return Err(ApiError::new(StatusCode::UNAUTHORIZED, "not signed in")),
        Access::NoCsrf => return Err(csrf_missing()),
    }
    if let Some(id) = cookie(&headers) {
        s.sessions.close(id);
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    if let Some(v) = set_cookie(None, &headers) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(response)
}

/// The refusal of a change without the CSRF header.
pub(super) fn csrf_missing() -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "a signed-in change must carry the session's `X-Herald-CSRF` header")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(*name, HeaderValue::from_str(value).unwrap());
        }
        h
    }

    #[test]
    fn cookie_and_csrf_checks() {
        let sessions = Sessions::default();
        let (id, view) = sessions.open(1_000);
        let with_cookie = format!("a=b; {COOKIE}={id}");
        let cases = [
            (Method::GET, vec![("cookie", with_cookie.as_str())], 2_000, Access::Allowed),
            (Method::GET, vec![("cookie", "herald_session=nope")], 2_000, Access::NoSession),
            (Method::GET, vec![], 2_000, Access::NoSession),
            (Method::GET, vec![("cookie", with_cookie.as_str())], 1_000 + LIFETIME_MS, Access::NoSession),
            (Method::POST, vec![("cookie", with_cookie.as_str())], 2_000, Access::NoCsrf),
            (Method::DELETE, vec![("cookie", with_cookie.as_str()), (CSRF_HEADER, "wrong")], 2_000, Access::NoCsrf),
            (Method::POST, vec![("cookie", with_cookie.as_str()), (CSRF_HEADER, view.csrf_token.as_str())], 2_000, Access::Allowed),
        ];
        for (method, pairs, now, want) in cases {
            assert_eq!(sessions.check(&method, &headers(&pairs), now), want, "{method} {pairs:?} at {now}");
        }
        sessions.close(&id);
        assert_eq!(sessions.check(&Method::GET, &headers(&[("cookie", &with_cookie)]), 2_000), Access::NoSession);
    }

    #[test]
    fn cookie_attributes() {
        let plain = set_cookie(Some("abc"), &HeaderMap::new()).unwrap();
        assert_eq!(plain, "herald_session=abc; Path=/; HttpOnly; SameSite=Strict; Max-Age=43200");
        let proxied = set_cookie(Some("abc"), &headers(&[("x-forwarded-proto", "https")])).unwrap();
        assert!(proxied.to_str().unwrap().ends_with("; Secure"));
        assert!(set_cookie(None, &HeaderMap::new()).unwrap().to_str().unwrap().contains("Max-Age=0"));
    }

    #[test]
    fn sessions_are_bounded() {
        let sessions = Sessions::default();
        let first = sessions.open(0).0;
        for i in 1..=MAX_SESSIONS as i64 {
            sessions.open(i);
        }
        assert_eq!(sessions.lock().len(), MAX_SESSIONS);
        assert!(sessions.get(&first, 10).is_none(), "the oldest went first");
    }
}
