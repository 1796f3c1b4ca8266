//! Events and webhooks over HTTP: the event log with a resumable cursor,
//! each webhook endpoint's state, and a test delivery.

use super::query::percent_decode;
use super::{AdminState, ApiError};
use crate::events::{Event, EventId, EventPageV1, TypeFilter};
use crate::webhooks::{WebhookStatusV1, WebhookTestV1};
use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use std::sync::Arc;

/// Default and largest `limit` of a page.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

/// What a page asks for (`?after=&limit=&type=&domain=&message=&recipient=`).
#[derive(Debug, Default, PartialEq)]
pub struct EventQuery {
    pub after: EventId,
    pub limit: usize,
    pub types: TypeFilter,
    pub domain: Option<String>,
    pub message: Option<String>,
    pub recipient: Option<String>,
}

impl EventQuery {
    /// Parses the query string; errors say which parameter and why.
    pub fn parse(query: Option<&str>) -> Result<EventQuery, String> {
        let mut q = EventQuery { limit: DEFAULT_LIMIT, types: TypeFilter::all(), ..Default::default() };
        let mut types = Vec::new();
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = percent_decode(v);
            match k {
                "after" if v.is_empty() => {}
                "after" => q.after = EventId::parse(&v).ok_or_else(|| format!("`after`: `{v}` is not a cursor (32 hex digits from a previous page)"))?,
                "limit" => q.limit = v.parse().ok().filter(|n| (1..=MAX_LIMIT).contains(n)).ok_or_else(|| format!("`limit`: give a number from 1 to {MAX_LIMIT}"))?,
                "type" => types.extend(v.split(',').map(str::to_string)),
                "domain" => q.domain = Some(v.to_ascii_lowercase()),
                "message" => q.message = Some(v),
                "recipient" => q.recipient = Some(v.to_ascii_lowercase()),
                other => return Err(format!("unknown parameter `{other}` (after, limit, type, domain, message, recipient)")),
            }
        }
        if !types.is_empty() {
            q.types = TypeFilter::new(&types).map_err(|e| format!("`type`: {e}"))?;
        }
        Ok(q)
    }

    pub fn wants(&self, e: &Event) -> bool {
        let lower = |s: &Option<String>| s.as_deref().map(str::to_ascii_lowercase);
        e.kind.is_some_and(|k| self.types.wants(k))
            && self.domain.as_ref().is_none_or(|d| [lower(&e.domain), lower(&e.from_domain), lower(&e.identity)].iter().any(|x| x.as_deref() == Some(d.as_str())))
            && self.message.as_ref().is_none_or(|m| e.message.as_deref() == Some(m.as_str()) || e.message_id.as_deref() == Some(m.as_str()))
            && self.recipient.as_ref().is_none_or(|r| lower(&e.recipient).as_deref() == Some(r.as_str()) || e.recipients.iter().any(|x| x.eq_ignore_ascii_case(r)))
    }
}


/// `GET /api/events`: durable events after the cursor, oldest first.
pub(super) async fn list(State(s): State<Arc<AdminState>>, RawQuery(query): RawQuery) -> Result<Json<EventPageV1>, ApiError> {
    let q = EventQuery::parse(query.as_deref()).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e))?;
    let page = super::queue::scan(&s, move |s| {
        let (events, cursor) = s.store.events().after(q.after, q.limit, |e| q.wants(e))?;
        Ok(EventPageV1 { events, cursor: cursor.to_string() })
    })
    .await?;
    Ok(Json(page))
}

/// `GET /api/webhooks`.
pub(super) async fn webhooks(State(s): State<Arc<AdminState>>) -> Json<Vec<WebhookStatusV1>> {
    let hooks = s.webhooks.clone();
    Json(tokio::task::spawn_blocking(move || hooks.statuses()).await.unwrap_or_default())
}

/// `POST /api/webhooks/{name}/test`: one `webhook.test` event, now.
pub(super) async fn test(State(s): State<Arc<AdminState>>, Path(name): Path<String>) -> Result<Json<WebhookTestV1>, ApiError> {
    let now = s.queue.clock.now_ms();
    s.webhooks.test(&name, now).await.map(Json).ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no webhook named `{name}` in relay.toml")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::EventKind;

    #[test]
    fn queries() {
        let q = EventQuery::parse(Some("after=0000000000000000000000000000002a&limit=5&type=message.failed,message.bounced&recipient=A%40B.example")).unwrap();
        assert_eq!((q.after, q.limit, q.recipient.as_deref()), (EventId(42), 5, Some("a@b.example")));
        let mut e = Event::new(EventKind::Failed, 0);
        e.recipient = Some("a@b.example".into());
        assert!(q.wants(&e));
        e.kind = Some(EventKind::Delivered);
        assert!(!q.wants(&e));
        for (bad, says) in [("after=zz", "`after`"), ("limit=0", "`limit`"), ("limit=5000", "`limit`"), ("type=mail.*", "`type`"), ("colour=red", "unknown parameter `colour`")] {
            assert!(EventQuery::parse(Some(bad)).unwrap_err().contains(says), "{bad}");
        }
        assert_eq!(EventQuery::parse(None).unwrap().limit, DEFAULT_LIMIT);
        assert_eq!(percent_decode("%3Cabc%40x%3E+y"), "<abc@x> y");
        assert_eq!(percent_decode("100%"), "100%");
    }
}
