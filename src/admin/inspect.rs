//! `herald inspect` over the API: a posted message, or a stored one as
//! herald will send it, checked through the relay's resolver, with the
//! identity herald would choose for its From domain now.
//!
//! | route | answer |
//! |---|---|
//! | `POST /api/inspect?mail_from=&ip=&helo=` (body: the raw message) | [`InspectV1`] |
//! | `GET /api/inspect/{id}?ip=&helo=` | [`InspectV1`] with `stored` |
//! | `GET /api/identity/{domain}` | [`IdentityV1`] |

use super::query::percent_decode;
use super::queue::{parse_id, unknown};
use super::types::{IdentityV1, InspectRequestV1, InspectV1, StoredV1};
use super::{AdminState, ApiError};
use crate::inspect::{self, InspectError};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use std::sync::Arc;

type Shared = State<Arc<AdminState>>;

/// Largest message `POST /api/inspect` takes (axum's default is 2 MiB).
pub(super) const MAX_BODY: usize = 64 * 1024 * 1024;

/// `POST /api/inspect`.
pub(super) async fn posted(State(s): Shared, RawQuery(query): RawQuery, body: Bytes) -> Result<Json<InspectV1>, ApiError> {
    let request = request(query.as_deref())?;
    let mut report = run(&s, &body, &request).await?;
    if let Some(domain) = report.from_domain.clone() {
        report.identity = Some(identity(&s, &domain).await?);
    }
    Ok(Json(report))
}

/// `GET /api/inspect/{id}`: the stored message with the header block
/// herald adds, its envelope sender, and the checks on those bytes.
pub(super) async fn stored(State(s): Shared, Path(id): Path<String>, RawQuery(query): RawQuery) -> Result<Json<InspectV1>, ApiError> {
    let id = parse_id(&id)?;
    let mut request = request(query.as_deref())?;
    let record = s.store.find(&id)?.ok_or_else(|| unknown(&id))?;
    let body = s.store.body(&id)?.ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("message {id}: its body is no longer stored")))?;
    let (prepared, at_first_attempt) = match &record.prepared {
        Some(p) => (p.clone(), true),
        None => {
            let p = s.queue.preparer.prepare(&record, Arc::new(body.clone())).await.map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, format!("cannot prepare {id} now: {e}")))?;
            (p, false)
        }
    };
    let raw = prepared.chunks(&body).concat();
    request.mail_from = request.mail_from.or_else(|| Some(prepared.envelope_from.clone()));
    let mut report = run(&s, &raw, &request).await?;
    report.stored = Some(StoredV1 {
        id: id.to_string(),
        envelope_from: prepared.envelope_from.clone(),
        prepared_headers: prepared.prefix.clone(),
        signed_domain: prepared.signed_domain.clone(),
        selector: prepared.selector.clone(),
        reason: prepared.reason.clone(),
        prepared_at_first_attempt: at_first_attempt,
    });
    report.identity = Some(identity(&s, &record.from_domain).await?);
    let dkim: Vec<&str> = report.dkim.iter().map(|d| d.result.as_str()).collect();
    tracing::info!(msg_id = %id, dkim = ?dkim, dmarc = report.dmarc.as_ref().map(|d| d.result.as_str()).unwrap_or("-"), "inspected");
    Ok(Json(report))
}

/// `GET /api/identity/{domain}`.
pub(super) async fn show_identity(State(s): Shared, Path(domain): Path<String>) -> Result<Json<IdentityV1>, ApiError> {
    Ok(Json(identity(&s, &domain.to_ascii_lowercase()).await?))
}

async fn run(s: &AdminState, raw: &[u8], request: &InspectRequestV1) -> Result<InspectV1, ApiError> {
    let preparer = &s.queue.preparer;
    inspect::inspect(&preparer.dns, raw, request, &preparer.hostname).await.map_err(|e| match e {
        InspectError::NotAMessage | InspectError::BadIp(_) => ApiError::new(StatusCode::BAD_REQUEST, e.to_string()),
    })
}

async fn identity(s: &AdminState, from_domain: &str) -> Result<IdentityV1, ApiError> {
    let decision = s.domains.registry().decide(from_domain)?;
    let preparer = &s.queue.preparer;
    let dmarc = preparer.dmarc(from_domain).await;
    // The relay's selector changes with key rotation.
    let relay = crate::config::IdentityConfig { dkim_selector: preparer.relay_selector(), ..preparer.identity.clone() };
    Ok(inspect::identity::describe(from_domain, &decision, &relay, dmarc))
}

/// The query: `mail_from`, `ip`, `helo`, percent-encoded.
fn request(query: Option<&str>) -> Result<InspectRequestV1, ApiError> {
    let mut r = InspectRequestV1::default();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = Some(percent_decode(value));
        match key {
            "mail_from" => r.mail_from = value,
            "ip" => r.ip = value,
            "helo" => r.helo = value,
            other => {
                let shown: String = other.chars().take(40).collect();
                return Err(ApiError::new(StatusCode::BAD_REQUEST, format!("unknown query parameter `{shown}`; accepted: mail_from, ip, helo")));
            }
        }
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding() {
        let cases = [("a%40b.c", "a@b.c"), ("x+y", "x y"), ("100%", "100%"), ("%4", "%4"), ("%zz", "%zz"), ("", "")];
        for (input, want) in cases {
            assert_eq!(percent_decode(input), want, "{input}");
        }
    }

    #[test]
    fn queries() {
        let r = request(Some("mail_from=bounces%2B1%40em1.customer.nl&ip=127.0.0.1&helo=relay.test")).unwrap();
        assert_eq!(r.mail_from.as_deref(), Some("bounces+1@em1.customer.nl"));
        assert_eq!(r.ip.as_deref(), Some("127.0.0.1"));
        assert!(request(Some("limit=5")).is_err());
    }
}
