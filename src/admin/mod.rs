//! The admin HTTP API (HTTP/1, JSON): message status per recipient, queue
//! inspection and operator actions, customer domains, the operator zone,
//! health and Prometheus metrics.
//!
//! | route                          | auth   | answer |
//! |--------------------------------|--------|--------|
//! | `GET /api/health`              | open   | [`HealthV1`] (for load balancers) |
//! | `GET /`, `/assets/*`           | open   | the admin page ([`page`]); it signs in below |
//! | `POST /api/session`            | open   | [`SignInV1`] → [`SessionV1`] and a session cookie ([`session`]) |
//! | `GET /api/session`             | cookie | [`SessionV1`] |
//! | `DELETE /api/session`          | cookie | 204: signed out |
//! | `GET /api/messages?q=TEXT`     | bearer | [`MessageSearchV1`]: by relay id, Message-ID, recipient or reference |
//! | `GET /api/messages/{id}`       | bearer | [`MessageV1`], queued or retired |
//! | `GET /api/queue`               | bearer | [`QueueSummaryV1`] |
//! | `GET /api/queue/messages?limit=N` | bearer | [`QueueListV1`], newest first, N ≤ 1000 (default 100) |
//! | `POST /api/queue/{id}/retry`   | bearer | [`MessageV1`]: due now |
//! | `DELETE /api/queue/{id}`       | bearer | [`MessageV1`]: retired, pending recipients failed, no DSN |
//! | `POST /api/domains`            | bearer | [`AddDomainV1`] → 201 [`DomainV1`], pending, with its records |
//! | `GET /api/domains`             | bearer | [`DomainListV1`] |
//! | `GET /api/domains/{domain}`    | bearer | [`DomainV1`] |
//! | `POST /api/domains/{domain}/verify` | bearer | [`VerificationV1`]: checked now, state updated |
//! | `POST /api/domains/{domain}/rotate` | bearer | [`RotationV1`]: DKIM key rotation started, or checked again while one waits |
//! | `POST /api/relay/rotate` | bearer | [`RotationV1`]: the same for the relay's own key |
//! | `DELETE /api/domains/{domain}` | bearer | [`DomainV1`]: removed, with its DKIM keys |
//! | `GET /api/dns/zone`            | bearer | text/plain zone-file fragment (`herald dns zone`) |
//! | `POST /api/inspect?mail_from=&ip=&helo=` | bearer | raw message → [`InspectV1`] (`herald inspect`) |
//! | `GET /api/inspect/{id}`        | bearer | [`InspectV1`] of a stored message as it will be sent |
//! | `GET /api/identity/{domain}`   | bearer | [`IdentityV1`]: who herald would send as now |
//! | `GET /api/events?after=&limit=&type=&domain=&message=&recipient=` | bearer | [`EventPageV1`](crate::events::EventPageV1): durable events after the cursor, oldest first |
//! | `GET /api/suppressions?scope=&limit=` | bearer | [`SuppressionListV1`](suppressions::SuppressionListV1) |
//! | `GET /api/suppressions/{address}` | bearer | the address in every scope, or 404 |
//! | `POST /api/suppressions`       | bearer | [`AddSuppressionV1`](suppressions::AddSuppressionV1) → 201, suppressed by hand |
//! | `DELETE /api/suppressions/{address}?scope=` | bearer | the removed entries; mail to it is accepted again |
//! | `GET /api/webhooks`            | bearer | each endpoint's [`WebhookStatusV1`](crate::webhooks::WebhookStatusV1) |
//! | `POST /api/webhooks/{name}/test` | bearer | [`WebhookTestV1`](crate::webhooks::WebhookTestV1): a test event sent now |
//! | `GET /metrics`                 | bearer | Prometheus text format |
//!
//! "bearer" means `Authorization: Bearer <admin.token>`, compared in
//! constant time, or the admin page's session cookie (with the CSRF header
//! on anything but GET; see [`session`]). `/metrics` is behind the token too, because queue sizes
//! and timings are operational data; Prometheus sends it with
//! `authorization: { credentials: ... }` in the scrape config.
//! Every error is an [`ErrorV1`] with a 4xx or 5xx status.
//!
//! The API is off when `admin.token` is empty. It only reads the store and
//! asks the queue through [`QueueCore`]; it never opens the database itself,
//! which is why the CLI goes through it (sled allows one process per
//! database).

pub mod client;
mod domains;
pub mod events;
pub mod suppressions;
mod inspect;
mod metrics;
mod page;
mod query;
mod queue;
mod search;
pub mod session;
pub mod types;

pub use types::{
    AddDomainV1, AttemptV1, CheckStatusV1, CustomerRecordV1, DkimCheckV1, DmarcCheckV1, DomainListV1, DomainStateV1, DomainV1, ErrorV1,
    HealthV1, IdentityV1, InspectRequestV1, InspectV1, MessageSearchV1, MessageStateV1, SessionV1, SignInV1, SpfCheckV1, StoredV1,
    MessageV1, OperatorRecordV1, OutcomeV1, OverallV1, QueueListV1, QueueSummaryV1, RcptStatusV1, RecipientV1, RecordCheckV1,
    TransitionV1, VerificationV1, KeyStepV1, KeyV1, RotationV1,
};

use crate::config::AdminConfig;
use crate::domains::Domains;
use crate::queue::QueueCore;
use crate::store::{Store, StoreError};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// What the API handlers share.
pub struct AdminState {
    pub store: Store,
    pub queue: Arc<QueueCore>,
    /// The customer domain registry; the relay's own identity and key are
    /// the queue's ([`QueueCore::preparer`]).
    pub domains: Domains,
    /// The bearer token every protected route requires; never empty here.
    pub token: String,
    /// The admin page's signed-in sessions.
    pub sessions: session::Sessions,
    pub webhooks: crate::webhooks::Webhooks,
    pub suppressions: crate::suppression::SuppressionList,
    /// What the SMTP listeners refused, by reason.
    pub refusals: Arc<crate::smtpd::Counters>,
}

/// Binds `admin.address` when the API is enabled (`admin.token` set);
/// `None` when it is off. Errors name the config key.
pub async fn bind(config: &AdminConfig) -> Result<Option<TcpListener>, String> {
    if config.token.is_empty() {
        tracing::info!("admin API disabled (`admin.token` is empty)");
        return Ok(None);
    }
    let listener = TcpListener::bind(&config.address)
        .await
        .map_err(|e| format!("`admin.address`: cannot listen on {}: {e}", config.address))?;
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(address = %addr, "admin API listening");
    }
    Ok(Some(listener))
}

/// Serves the API on `listener` until `shutdown` flips; requests already
/// running are allowed to finish.
pub async fn serve(listener: TcpListener, state: AdminState, mut shutdown: watch::Receiver<bool>) {
    let app = router(state);
    let stopping = async move { crate::smtpd::stopping(&mut shutdown).await };
    if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stopping).await {
        tracing::error!(error = %e, "admin API stopped");
    }
}

/// The routes, for [`serve`] (and for tests that drive it without a socket).
pub fn router(state: AdminState) -> Router {
    let state = Arc::new(state);
    let protected = Router::new()
        .route("/api/messages", get(search::search))
        .route("/api/messages/{id}", get(queue::show))
        .route("/api/queue", get(queue::summary))
        .route("/api/queue/messages", get(queue::list))
        .route("/api/queue/{id}/retry", post(queue::retry))
        .route("/api/queue/{id}", delete(queue::drop_message))
        .route("/api/domains", get(domains::list).post(domains::add))
        .route("/api/domains/{domain}", get(domains::show).delete(domains::remove))
        .route("/api/domains/{domain}/verify", post(domains::verify))
        .route("/api/domains/{domain}/rotate", post(domains::rotate))
        .route("/api/relay/rotate", post(domains::rotate_relay))
        .route("/api/dns/zone", get(domains::zone))
        .route("/api/inspect", post(inspect::posted).layer(axum::extract::DefaultBodyLimit::max(inspect::MAX_BODY)))
        .route("/api/inspect/{id}", get(inspect::stored))
        .route("/api/identity/{domain}", get(inspect::show_identity))
        .route("/api/suppressions", get(suppressions::list).post(suppressions::add))
        .route("/api/suppressions/{address}", get(suppressions::show).delete(suppressions::remove))
        .route("/api/events", get(events::list))
        .route("/api/webhooks", get(events::webhooks))
        .route("/api/webhooks/{name}/test", post(events::test))
        .route("/metrics", get(metrics::metrics))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route("/api/health", get(metrics::health))
        .route("/api/session", get(session::current).post(session::sign_in).delete(session::sign_out))
        .merge(page::routes())
        .merge(protected)
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such endpoint; see `herald::admin` for the routes") })
        .method_not_allowed_fallback(|| async { ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "this endpoint does not take that method") })
        .with_state(state)
}

/// Lets a request through only with `Authorization: Bearer <admin.token>`
/// or, without that header, an admin page session (see [`session`]).
async fn require_token(State(state): State<Arc<AdminState>>, req: Request, next: Next) -> Response {
    if !req.headers().contains_key(header::AUTHORIZATION) {
        match state.sessions.check(req.method(), req.headers(), state.queue.clock.now_ms()) {
            session::Access::Allowed => return next.run(req).await,
            session::Access::NoCsrf => return session::csrf_missing().into_response(),
            session::Access::NoSession => {}
        }
    }
    let header = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    match header.and_then(bearer) {
        Some(token) if same_token(token.as_bytes(), state.token.as_bytes()) => next.run(req).await,
        Some(_) => ApiError::unauthorized("the bearer token does not match `admin.token`").into_response(),
        None => ApiError::unauthorized("send `Authorization: Bearer <admin.token>`").into_response(),
    }
}

/// The credentials of a `Bearer` authorization (the scheme is
/// case-insensitive, RFC 9110 §11.1).
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Compares without stopping at the first difference, so the time taken
/// does not tell an attacker how much of a guess was right. Only the
/// length can leak, which the token's entropy makes worthless.
fn same_token(given: &[u8], expected: &[u8]) -> bool {
    if expected.is_empty() {
        return false;
    }
    let mut diff = given.len() ^ expected.len();
    for (i, &e) in expected.iter().enumerate() {
        let g = given.get(i).copied().unwrap_or(!e);
        diff |= usize::from(g ^ e);
    }
    diff == 0
}

/// An error answer: a status and an [`ErrorV1`] body.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    fn unauthorized(message: &str) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "admin API: store error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, format!("store: {e}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(ErrorV1 { error: self.message })).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"herald\""));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens() {
        let cases = [
            ("Bearer abc", Some("abc")),
            ("bearer  abc ", Some("abc")),
            ("BEARER abc", Some("abc")),
            ("Basic abc", None),
            ("Bearer", None),
            ("", None),
        ];
        for (header, want) in cases {
            assert_eq!(bearer(header), want, "{header:?}");
        }
    }

    #[test]
    fn token_comparison() {
        let cases: [(&[u8], &[u8], bool); 6] = [
            (b"change-me-admin-token", b"change-me-admin-token", true),
            (b"change-me-admin-tokeN", b"change-me-admin-token", false),
            (b"change-me-admin-toke", b"change-me-admin-token", false),
            (b"change-me-admin-token!", b"change-me-admin-token", false),
            (b"", b"change-me-admin-token", false),
            (b"", b"", false),
        ];
        for (given, expected, want) in cases {
            assert_eq!(same_token(given, expected), want, "{given:?}");
        }
    }
}
