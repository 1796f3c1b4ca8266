//! `GET /api/messages?q=TEXT`: find messages the way a support desk is
//! asked about them: by the relay id from a `250 … queued as` reply, the
//! `Message-ID`, a recipient's address, or the billing app's reference.
//!
//! Queued and finished (retired) records are both searched by a scan,
//! which is fine for an operator's question and too slow for a hot path.

use super::queue::scan;
use super::types::{MessageSearchV1, MessageV1};
use super::{AdminState, ApiError};
use crate::store::MessageRecord;
use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use std::sync::Arc;

/// Most messages one answer holds (the newest).
const MAX_RESULTS: usize = 50;
/// Longest query accepted.
const MAX_QUERY: usize = 1000;

/// `GET /api/messages?q=TEXT`.
pub(super) async fn search(State(s): State<Arc<AdminState>>, RawQuery(raw): RawQuery) -> Result<Json<MessageSearchV1>, ApiError> {
    let query = query(raw.as_deref())?;
    let q = query.clone();
    let (mut found, truncated) = scan(&s, move |s| {
        let needle = Needle::new(&q);
        let mut found: Vec<MessageRecord> = Vec::new();
        // A message retired while the scan runs can be seen twice.
        for record in s.store.messages().chain(s.store.retired()) {
            let record = record?;
            if needle.matches(&record) && !found.iter().any(|f| f.id == record.id) {
                found.push(record);
            }
        }
        found.sort_by_key(|r| std::cmp::Reverse(r.id));
        let truncated = found.len() > MAX_RESULTS;
        found.truncate(MAX_RESULTS);
        Ok((found, truncated))
    })
    .await?;
    let messages = found.drain(..).map(|r| MessageV1::from_record(&r, s.queue.in_flight(&r.id))).collect();
    Ok(Json(MessageSearchV1 { query, messages, truncated }))
}

/// What a record is compared with, prepared once.
struct Needle {
    lower: String,
    message_id: String,
}

impl Needle {
    fn new(q: &str) -> Self {
        Self { lower: q.to_lowercase(), message_id: normalize_message_id(q) }
    }

    /// Whole-value, case-insensitive matches only: a search for `a@b.nl`
    /// must not list `ana@b.nl`'s invoices.
    fn matches(&self, r: &MessageRecord) -> bool {
        r.id.as_str().eq_ignore_ascii_case(&self.lower)
            || r.message_id_header.as_deref().is_some_and(|m| !self.message_id.is_empty() && normalize_message_id(m) == self.message_id)
            || r.reference.as_deref().is_some_and(|x| x.to_lowercase() == self.lower)
            || r.recipients.iter().any(|x| x.address.to_lowercase() == self.lower)
    }
}

/// A Message-ID as typed by a person, for comparison: without angle
/// brackets and surrounding blanks, lowercase.
fn normalize_message_id(text: &str) -> String {
    text.trim().trim_start_matches('<').trim_end_matches('>').trim().to_ascii_lowercase()
}

/// `q=TEXT`, percent-decoded and trimmed; anything else is refused, so a
/// misspelt parameter is noticed.
fn query(raw: Option<&str>) -> Result<String, ApiError> {
    let mut q = None;
    for pair in raw.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key != "q" {
            let shown: String = key.chars().take(40).collect();
            return Err(ApiError::new(StatusCode::BAD_REQUEST, format!("unknown query parameter `{shown}`; only `q` is accepted")));
        }
        q = Some(super::query::percent_decode_strict(value).ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "`q` is not valid percent-encoded UTF-8"))?);
    }
    let q = q.map(|q| q.trim().to_string()).unwrap_or_default();
    if q.is_empty() || q.len() > MAX_QUERY {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("send `q=` with a relay id, Message-ID, recipient address or reference (1 to {MAX_QUERY} bytes)"),
        ));
    }
    Ok(q)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries() {
        let cases = [
            (Some("q=inv-42"), Ok("inv-42")),
            (Some("q=%3Cinv42%40acme%3E"), Ok("<inv42@acme>")),
            (Some("q=+a%2Bb%40c.nl+"), Ok("a+b@c.nl")),
            (Some("q="), Err(())),
            (None, Err(())),
            (Some("q=%zz"), Err(())),
            (Some("q=%ff"), Err(())),
            (Some("query=x"), Err(())),
        ];
        for (raw, want) in cases {
            assert_eq!(query(raw).map_err(|_| ()), want.map(str::to_string), "{raw:?}");
        }
    }

    #[test]
    fn typed_message_ids_compare_loosely() {
        for typed in ["<Inv42@Acme>", " inv42@acme ", "<inv42@acme"] {
            assert_eq!(normalize_message_id(typed), "inv42@acme", "{typed}");
        }
    }

    #[test]
    fn whole_values_match() {
        let text = r#"{"v":1,"id":"01jd5x3q8k2m7n4p","received_ms":0,"mail_from":"app@sender.test","from_address":"a@customer.test",
            "from_domain":"customer.test","auth_user":null,"client_addr":"127.0.0.1","client_helo":"x","tls":false,"size":1,
            "received_header":"","recipients":[{"address":"Payer@Dest.test","status":"queued"}],"due_ms":0,
            "message_id_header":"<Inv42@acme>","reference":"INV-42"}"#;
        let r = MessageRecord::decode(text.as_bytes()).unwrap();
        for (q, want) in [
            ("01JD5X3Q8K2M7N4P", true),
            ("inv42@acme", true),
            ("<inv42@acme>", true),
            ("inv-42", true),
            ("payer@dest.test", true),
            ("ayer@dest.test", false),
            ("inv-4", false),
            ("acme", false),
        ] {
            assert_eq!(Needle::new(q).matches(&r), want, "{q}");
        }
    }
}
