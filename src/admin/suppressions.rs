//! The suppression list over HTTP: list, show, add by hand, remove.

use super::{AdminState, ApiError};
use crate::store::suppressions::SuppressionV1;
use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

type Shared = State<Arc<AdminState>>;

/// `GET /api/suppressions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SuppressionListV1 {
    pub suppressions: Vec<SuppressionV1>,
}

/// `POST /api/suppressions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddSuppressionV1 {
    pub address: String,
    /// `relay` (default) or a customer domain.
    #[serde(default)]
    pub scope: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
    /// How long; default `suppression.days`, 0 = until removed.
    #[serde(default)]
    pub days: Option<u64>,
}

fn param<'a>(query: &'a Option<String>, name: &str) -> Option<&'a str> {
    query.as_deref()?.split('&').find_map(|p| p.strip_prefix(name)?.strip_prefix('='))
}

fn bad(e: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, e)
}

/// `GET /api/suppressions?scope=&limit=`.
pub(super) async fn list(State(s): Shared, RawQuery(q): RawQuery) -> Result<Json<SuppressionListV1>, ApiError> {
    let limit = match param(&q, "limit") {
        Some(l) => l.parse().ok().filter(|n| (1..=10_000).contains(n)).ok_or_else(|| bad("`limit`: give a number from 1 to 10000"))?,
        None => 1000,
    };
    let scope = param(&q, "scope").map(str::to_string);
    let now = s.queue.clock.now_ms();
    let list = s.suppressions.clone();
    let suppressions = tokio::task::spawn_blocking(move || list.list(scope.as_deref(), limit, now)).await.map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    Ok(Json(SuppressionListV1 { suppressions }))
}

/// `GET /api/suppressions/{address}`: the address in every scope.
pub(super) async fn show(State(s): Shared, Path(address): Path<String>) -> Result<Json<SuppressionListV1>, ApiError> {
    let now = s.queue.clock.now_ms();
    let found: Vec<SuppressionV1> = s.suppressions.list(None, usize::MAX, now)?.into_iter().filter(|x| x.address.eq_ignore_ascii_case(&address)).collect();
    if found.is_empty() {
        return Err(ApiError::new(StatusCode::NOT_FOUND, format!("{address} is not suppressed")));
    }
    Ok(Json(SuppressionListV1 { suppressions: found }))
}

/// `DELETE /api/suppressions/{address}?scope=`: mail to it is accepted again.
pub(super) async fn remove(State(s): Shared, Path(address): Path<String>, RawQuery(q): RawQuery) -> Result<Json<SuppressionListV1>, ApiError> {
    let now = s.queue.clock.now_ms();
    let removed = s.suppressions.remove(&address, param(&q, "scope"), now)?;
    if removed.is_empty() {
        return Err(ApiError::new(StatusCode::NOT_FOUND, format!("{address} is not suppressed")));
    }
    s.suppressions.durable().await?;
    Ok(Json(SuppressionListV1 { suppressions: removed }))
}

/// `POST /api/suppressions`: suppress an address by hand.
pub(super) async fn add(State(s): Shared, body: Result<Json<AddSuppressionV1>, axum::extract::rejection::JsonRejection>) -> Result<(StatusCode, Json<SuppressionV1>), ApiError> {
    let Json(req) = body.map_err(|e| bad(format!("send a JSON body like {{\"address\": \"payer@example.net\"}}: {}", e.body_text())))?;
    crate::message::parse_mailbox(req.address.trim()).map_err(|why| bad(format!("`address`: {why}")))?;
    if let Some(scope) = &req.scope
        && scope != crate::suppression::RELAY
        && !crate::config::is_domain(scope)
    {
        return Err(bad(format!("`scope`: `{scope}` is neither `relay` nor a domain")));
    }
    let now = s.queue.clock.now_ms();
    let added = s.suppressions.add(&req.address, req.scope.as_deref(), req.reason.as_deref(), req.days, now)?;
    s.suppressions.durable().await?;
    Ok((StatusCode::CREATED, Json(added)))
}
