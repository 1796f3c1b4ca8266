//! The admin page's sign-in: the admin token exchanged for a session
//! cookie (`POST /api/session`), and what the page learns about its
//! session (`GET /api/session`).

use serde::{Deserialize, Serialize};

/// `POST /api/session`: sign in with `admin.token`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignInV1 {
    pub token: String,
}

/// The signed-in session. The session id itself travels only in the
/// `HttpOnly` cookie; the page sends `csrf_token` back in the
/// `X-Herald-CSRF` header of every request that changes something.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionV1 {
    pub csrf_token: String,
    /// When the session ends (ms since the epoch); sign in again then.
    pub expires_ms: i64,
}
