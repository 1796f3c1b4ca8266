//! Webhooks: every event a `[[webhook]]` wants is copied into its outbox
//! (in the same store batch as the event), and one task per endpoint
//! POSTs the outbox in event order, signed per Standard Webhooks: at
//! least once, retried with exponential backoff and jitter for
//! `retry_for_hours`. A 2xx answer is done; `410 Gone` disables the
//! endpoint until the relay restarts; anything else is retried. Mail
//! never waits for a webhook: the tasks only read the store.

pub mod http;
pub mod sign;

use crate::clock::SharedClock;
use crate::config::{Config, WebhookUrl};
use crate::events::{Event, EventId, EventKind, TypeFilter};
use crate::store::Store;
use crate::store::events::Outbox;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::sync::watch;

/// One endpoint's state (`GET /api/webhooks`, `herald webhooks`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WebhookStatusV1 {
    pub name: String,
    pub url: String,
    /// Events waiting in its outbox.
    pub pending: usize,
    pub delivered: u64,
    /// Attempts answered with something other than 2xx (or not at all).
    pub failed_attempts: u64,
    /// Events given up after `retry_for_hours`.
    pub given_up: u64,
    pub last_success_ms: Option<i64>,
    pub last_error: Option<String>,
    pub last_error_ms: Option<i64>,
    /// Answered `410 Gone`: nothing more is sent until the relay restarts.
    pub disabled: bool,
}

/// What a test delivery (`POST /api/webhooks/{name}/test`) got back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookTestV1 {
    pub name: String,
    pub status: Option<u16>,
    pub error: Option<String>,
}

struct Hook {
    name: String,
    endpoint: http::Endpoint,
    key: Vec<u8>,
    retry_for_ms: i64,
    status: Mutex<WebhookStatusV1>,
}

impl Hook {
    fn status(&self) -> MutexGuard<'_, WebhookStatusV1> {
        self.status.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Signs and POSTs one event; the HTTP status, or why there is none.
    async fn send(&self, event: &Event, now_secs: i64) -> Result<u16, String> {
        let body = payload(event);
        let id = format!("evt_{}", event.id);
        let headers = [
            ("webhook-id", id.clone()),
            ("webhook-timestamp", now_secs.to_string()),
            ("webhook-signature", sign::signature(&self.key, &id, now_secs, &body)),
        ];
        self.endpoint.post(&headers, &body).await
    }
}

/// The body of a webhook: `{"type", "timestamp", "data": <the event>}`,
/// the Standard Webhooks payload shape.
pub fn payload(event: &Event) -> Vec<u8> {
    let timestamp = humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + Duration::from_millis(event.time_ms.max(0) as u64)).to_string();
    let kind = event.kind.map(EventKind::as_str).unwrap_or("unknown");
    serde_json::to_vec(&serde_json::json!({ "type": kind, "timestamp": timestamp, "data": event })).unwrap_or_default()
}

/// Delay before attempt `attempts + 1`: 5 s doubling up to an hour,
/// spread ±20 % by `jitter` in [0, 1).
pub fn backoff(attempts: u32, jitter: f64) -> Duration {
    let base = 5.0 * 2f64.powi(attempts.saturating_sub(1).min(20) as i32);
    Duration::from_secs_f64(base.min(3600.0) * (0.8 + 0.4 * jitter.clamp(0.0, 1.0)))
}

/// The running webhook tasks; cheap to clone.
#[derive(Clone, Default)]
pub struct Webhooks {
    hooks: Arc<Vec<Arc<Hook>>>,
    store: Option<Store>,
}

/// The outbox of every `[[webhook]]`: its name and the event types it
/// wants. The store is opened with them ([`Store::open_with`]).
pub fn outboxes(config: &Config) -> Result<Vec<Outbox>, String> {
    config
        .webhooks
        .iter()
        .enumerate()
        .map(|(i, w)| Ok(Outbox { name: w.name.clone(), filter: TypeFilter::new(&w.events).map_err(|e| format!("`webhook[{i}].events`: {e}"))? }))
        .collect()
}

impl Webhooks {
    /// Sets up every `[[webhook]]`, one task each. Their outboxes are the
    /// store's already: it was opened with [`outboxes`] (before the replay,
    /// so replayed events reach them too).
    pub fn start(config: &Config, store: &Store, clock: SharedClock, shutdown: watch::Receiver<bool>) -> Result<Webhooks, String> {
        let mut hooks = Vec::new();
        for (i, w) in config.webhooks.iter().enumerate() {
            let url = WebhookUrl::parse(&w.url).map_err(|e| format!("`webhook[{i}].url`: {e}"))?;
            let ca = (!w.ca_file.is_empty()).then(|| config.resolve(std::path::Path::new(&w.ca_file)));
            let endpoint = http::Endpoint::new(url, ca.as_deref(), Duration::from_secs(w.timeout_secs)).map_err(|e| format!("`webhook[{i}]`: {e}"))?;
            let secret = w.secret(&config.base_dir).map_err(|e| format!("`webhook[{i}].secret_file`: {e}"))?;
            let key = sign::decode_secret(&secret).ok_or_else(|| format!("`webhook[{i}].secret`: not a `whsec_` secret"))?;
            let status = WebhookStatusV1 { name: w.name.clone(), url: w.url.clone(), ..Default::default() };
            hooks.push(Arc::new(Hook { name: w.name.clone(), endpoint, key, retry_for_ms: w.retry_for_hours as i64 * 3_600_000, status: Mutex::new(status) }));
        }
        for hook in &hooks {
            tracing::info!(webhook = %hook.name, url = %hook.endpoint.url.host, "webhook endpoint");
            tokio::spawn(run(hook.clone(), store.clone(), clock.clone(), shutdown.clone()));
        }
        Ok(Webhooks { hooks: Arc::new(hooks), store: Some(store.clone()) })
    }

    pub fn statuses(&self) -> Vec<WebhookStatusV1> {
        self.hooks
            .iter()
            .map(|h| {
                let mut s = h.status().clone();
                s.pending = self.store.as_ref().map(|st| st.events().outbox_len(&h.name)).unwrap_or(0);
                s
            })
            .collect()
    }

    /// Sends a `webhook.test` event to `name` now (not stored, not retried).
    pub async fn test(&self, name: &str, now_ms: i64) -> Option<WebhookTestV1> {
        let hook = self.hooks.iter().find(|h| h.name == name)?;
        let mut event = Event::new(EventKind::Test, now_ms);
        event.id = EventId::at_ms(now_ms).to_string();
        event.reasons = vec!["a test event from herald".into()];
        let result = hook.send(&event, now_ms / 1000).await;
        Some(WebhookTestV1 { name: name.into(), status: result.as_ref().ok().copied(), error: result.err() })
    }
}

/// One endpoint's task: the outbox, oldest first, until shutdown.
async fn run(hook: Arc<Hook>, store: Store, clock: SharedClock, mut shutdown: watch::Receiver<bool>) {
    let mut durable = store.events().durable();
    loop {
        if hook.status().disabled {
            let _ = crate::smtpd::stopping(&mut shutdown).await;
            return;
        }
        let wait = match store.events().outbox_head(&hook.name) {
            Ok(Some((id, event, attempts))) => deliver(&hook, &store, &clock, id, &event, attempts).await,
            Ok(None) => None,
            Err(e) => {
                tracing::error!(webhook = %hook.name, error = %e, "cannot read the webhook outbox");
                Some(Duration::from_secs(5))
            }
        };
        tokio::select! {
            _ = crate::smtpd::stopping(&mut shutdown) => return,
            _ = durable.changed(), if wait.is_none() => {}
            _ = tokio::time::sleep(wait.unwrap_or(Duration::from_secs(1))) => {}
        }
    }
}

/// Tries one event; `Some(delay)` when it must wait before the next try,
/// `None` to go on at once (or when the outbox is empty).
async fn deliver(hook: &Hook, store: &Store, clock: &SharedClock, id: EventId, event: &Event, attempts: u32) -> Option<Duration> {
    let now = clock.now_ms();
    if now - event.time_ms > hook.retry_for_ms {
        tracing::error!(webhook = %hook.name, event = %id, kind = ?event.kind, attempts, "webhook event given up: no 2xx answer within `retry_for_hours`");
        hook.status().given_up += 1;
        let _ = store.events().outbox_remove(&hook.name, id);
        return Some(Duration::ZERO);
    }
    let result = hook.send(event, now / 1000).await;
    let mut status = hook.status();
    match result {
        Ok(code) if (200..300).contains(&code) => {
            status.delivered += 1;
            status.last_success_ms = Some(now);
            drop(status);
            if let Err(e) = store.events().outbox_remove(&hook.name, id) {
                tracing::error!(webhook = %hook.name, error = %e, "cannot update the webhook outbox");
                return Some(Duration::from_secs(5));
            }
            Some(Duration::ZERO)
        }
        Ok(410) => {
            status.disabled = true;
            status.last_error = Some("410 Gone: endpoint disabled until the relay restarts".into());
            status.last_error_ms = Some(now);
            tracing::error!(webhook = %hook.name, "webhook endpoint answered 410 Gone: disabled until the relay restarts");
            Some(Duration::ZERO)
        }
        other => {
            let error = match other {
                Ok(code) => format!("HTTP {code}"),
                Err(e) => e,
            };
            let delay = backoff(attempts + 1, rand::random::<f64>());
            tracing::warn!(webhook = %hook.name, event = %id, attempt = attempts + 1, error = %error, retry_in_s = delay.as_secs(), "webhook delivery failed");
            status.failed_attempts += 1;
            status.last_error = Some(error);
            status.last_error_ms = Some(now);
            drop(status);
            let _ = store.events().outbox_attempted(&hook.name, id, attempts + 1);
            Some(delay)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_an_hour() {
        let cases = [(1, 5.0), (2, 10.0), (3, 20.0), (8, 640.0), (12, 3600.0), (100, 3600.0)];
        for (attempts, secs) in cases {
            assert_eq!(backoff(attempts, 0.5).as_secs_f64(), secs, "{attempts}");
            assert!(backoff(attempts, 0.0).as_secs_f64() >= secs * 0.8 - 1e-9 && backoff(attempts, 0.999).as_secs_f64() <= secs * 1.2);
        }
    }

    #[test]
    fn payload_shape() {
        let mut e = Event::new(EventKind::Failed, 1_700_000_000_123);
        e.recipient = Some("a@b.example".into());
        let v: serde_json::Value = serde_json::from_slice(&payload(&e)).unwrap();
        assert_eq!(v["type"], "message.failed");
        assert_eq!(v["timestamp"], "2023-11-14T22:13:20.123Z");
        assert_eq!(v["data"]["recipient"], "a@b.example");
    }
}
