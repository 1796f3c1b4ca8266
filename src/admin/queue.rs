//! Handlers for messages and the queue: show, summary, list, and the two
//! operator actions, retry (due now) and drop (fail what is pending).
//!
//! Retry and drop refuse a message while a delivery attempt holds it
//! (409): the attempt owns the record until its outcome is written, and
//! editing it underneath would lose that outcome or resurrect a dropped
//! message. Both take a [`crate::queue::Hold`] on the message first, the
//! same guard the scheduler claims through, so the check and the write
//! cannot race an attempt.

use super::types::{MessageV1, QueueListV1, QueueSummaryV1, RcptStatusV1};
use super::{AdminState, ApiError};
use crate::id::MessageId;
use crate::store::StoreError;
use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;


use crate::queue::EditError;

/// Default and largest `limit` of a queue listing.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

type Shared = State<Arc<AdminState>>;

/// `GET /api/messages/{id}`: a queued or retired message.
pub(super) async fn show(State(s): Shared, Path(id): Path<String>) -> Result<Json<MessageV1>, ApiError> {
    let id = parse_id(&id)?;
    let record = s.store.find(&id)?.ok_or_else(|| unknown(&id))?;
    Ok(Json(MessageV1::from_record(&record, s.queue.in_flight(&id))))
}

/// `GET /api/queue`.
pub(super) async fn summary(State(s): Shared) -> Result<Json<QueueSummaryV1>, ApiError> {
    Ok(Json(scan(&s, summarize).await?))
}

/// `GET /api/queue/messages?limit=N`: the newest N queued messages.
pub(super) async fn list(State(s): Shared, RawQuery(query): RawQuery) -> Result<Json<QueueListV1>, ApiError> {
    let limit = limit(query.as_deref())?;
    let listing = scan(&s, move |s| {
        // Ids sort by acceptance time, so the newest are the last scanned.
        let mut newest = VecDeque::with_capacity(limit);
        let mut total = 0;
        for record in s.store.messages() {
            total += 1;
            if newest.len() == limit {
                newest.pop_front();
            }
            newest.push_back(record?);
        }
        let messages = newest
            .iter()
            .rev()
            .map(|r| MessageV1::from_record(r, s.queue.in_flight(&r.id)))
            .collect();
        Ok(QueueListV1 { total, messages })
    })
    .await?;
    Ok(Json(listing))
}

/// `POST /api/queue/{id}/retry`: makes a waiting message due now.
pub(super) async fn retry(State(s): Shared, Path(id): Path<String>) -> Result<Json<MessageV1>, ApiError> {
    let id = parse_id(&id)?;
    let record = s.queue.retry_now(&id).await.map_err(|e| edit_error(e, "retry"))?;
    Ok(Json(MessageV1::from_record(&record, false)))
}

/// `DELETE /api/queue/{id}`: fails every pending recipient with
/// [`crate::queue::DROPPED_REPLY`] and retires the message. No DSN is sent: the operator
/// decided, and the sender can read the outcome over the API.
pub(super) async fn drop_message(State(s): Shared, Path(id): Path<String>) -> Result<Json<MessageV1>, ApiError> {
    let id = parse_id(&id)?;
    let record = s.queue.drop_message(&id).await.map_err(|e| edit_error(e, "drop"))?;
    Ok(Json(MessageV1::from_record(&record, false)))
}

/// The HTTP answer for an edit the queue did not make.
fn edit_error(e: EditError, action: &str) -> ApiError {
    match e {
        EditError::Busy(id) => ApiError::new(StatusCode::CONFLICT, format!("message {id} is being delivered right now; {action} it once this attempt has ended")),
        EditError::Finished(id) => ApiError::new(StatusCode::CONFLICT, format!("message {id} has already finished; there is nothing to {action}")),
        EditError::Unknown(id) => unknown(&id),
        EditError::Store(e) => e.into(),
    }
}

/// Counts over the queued messages (shared with `/metrics`).
pub(super) fn summarize(s: &AdminState) -> Result<QueueSummaryV1, StoreError> {
    let mut summary = QueueSummaryV1 {
        messages: 0,
        in_flight: 0,
        recipients_by_status: BTreeMap::new(),
        oldest_due_ms: s.store.next_due()?,
    };
    for record in s.store.messages() {
        let record = record?;
        summary.messages += 1;
        summary.in_flight += usize::from(s.queue.in_flight(&record.id));
        for r in &record.recipients {
            *summary
                .recipients_by_status
                .entry(RcptStatusV1::from(r.status).as_str().to_string())
                .or_default() += 1;
        }
    }
    Ok(summary)
}

/// Runs a scan of the store off the async workers: a large queue takes a
/// while to read, and sled's reads block.
pub(super) async fn scan<T: Send + 'static>(
    s: &Arc<AdminState>,
    f: impl FnOnce(&AdminState) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    let s = s.clone();
    match tokio::task::spawn_blocking(move || f(&s)).await {
        Ok(result) => Ok(result?),
        Err(e) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("reading the queue failed: {e}"),
        )),
    }
}

/// A queued message (the caller holds it); 404 or 409 otherwise.
pub(super) fn unknown(id: &MessageId) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("no message {id}: unknown, or finished longer ago than `queue.retire_after`"),
    )
}

pub(super) fn parse_id(text: &str) -> Result<MessageId, ApiError> {
    MessageId::parse(text).ok_or_else(|| {
        let shown: String = text.chars().take(40).collect();
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("`{shown}` is not a relay message id (16 characters of Crockford base32, e.g. 01jd5x3q8k2m7n4p)"),
        )
    })
}

/// `limit=N` from the query string; anything else in it is refused, so a
/// misspelt parameter is noticed.
fn limit(query: Option<&str>) -> Result<usize, ApiError> {
    let mut limit = DEFAULT_LIMIT;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key != "limit" {
            let shown: String = key.chars().take(40).collect();
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("unknown query parameter `{shown}`; only `limit` is accepted"),
            ));
        }
        limit = value
            .parse()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, format!("`limit` must be a number from 1 to {MAX_LIMIT}")))?;
    }
    Ok(limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits() {
        let cases = [
            (None, Ok(DEFAULT_LIMIT)),
            (Some(""), Ok(DEFAULT_LIMIT)),
            (Some("limit=5"), Ok(5)),
            (Some("limit=1000"), Ok(1000)),
            (Some("limit=0"), Err(())),
            (Some("limit=1001"), Err(())),
            (Some("limit=x"), Err(())),
            (Some("limit"), Err(())),
            (Some("limt=5"), Err(())),
        ];
        for (query, want) in cases {
            assert_eq!(limit(query).map_err(|_| ()), want, "{query:?}");
        }
    }

    #[test]
    fn malformed_ids_are_bad_requests() {
        for bad in ["", "nope", "01jd5x3q8k2m7n4!", "01jd5x3q8k2m7n4pp"] {
            assert_eq!(parse_id(bad).map_err(|e| e.status).err(), Some(StatusCode::BAD_REQUEST), "{bad}");
        }
        assert!(parse_id("01JD5X3Q8K2M7N4P").is_ok());
    }
}
