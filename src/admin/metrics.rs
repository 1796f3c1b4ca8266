//! `GET /api/health` and `GET /metrics` (Prometheus text exposition
//! format 0.0.4).
//!
//! Queue figures are gauges computed from the queue at scrape time, so
//! nothing is counted twice across restarts and there is no global
//! registry to keep in step; the SMTP refusals are counters kept since
//! start by the listeners (`crate::smtpd::Counters`). Retired messages are not scanned: that tree
//! holds days of history and would make every scrape slow.

use super::queue::{scan, summarize};
use super::types::{HealthV1, RcptStatusV1};
use super::{AdminState, ApiError};
use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use std::fmt::Write;
use std::sync::Arc;

/// Every status, so each series exists even at zero (alerts on a missing
/// series are easy to get wrong).
const STATUSES: [RcptStatusV1; 5] = [
    RcptStatusV1::Queued,
    RcptStatusV1::Deferred,
    RcptStatusV1::Delivered,
    RcptStatusV1::Failed,
    RcptStatusV1::Expired,
];

/// `GET /api/health`: open to anyone, so it reveals counts only. Reads
/// the due index (keys only), not the records.
pub(super) async fn health(State(s): State<Arc<AdminState>>) -> Result<Json<HealthV1>, ApiError> {
    let (queued, in_flight) = scan(&s, |s| {
        let due = s.store.due(i64::MAX, usize::MAX)?;
        // Plus those sent on at once and not in the due index (yet).
        let held = s.store.held();
        Ok((due.len() + held.len(), due.iter().map(|(_, id)| id).chain(&held).filter(|id| s.queue.in_flight(id)).count()))
    })
    .await?;
    let disk_pressure = s.store.disk().under_pressure();
    Ok(Json(HealthV1 {
        status: if disk_pressure { "disk_full" } else { "ok" }.into(),
        version: env!("CARGO_PKG_VERSION").into(),
        queued,
        in_flight,
        disk_pressure,
        disk_free_bytes: s.store.disk().free_bytes(),
    }))
}

/// `GET /metrics`.
pub(super) async fn metrics(State(s): State<Arc<AdminState>>) -> Result<impl IntoResponse, ApiError> {
    let now_ms = s.queue.clock.now_ms();
    let summary = scan(&s, summarize).await?;
    let mut out = String::new();
    gauge(
        &mut out,
        "herald_build_info",
        "The running herald's version.",
        &[(format!("version=\"{}\"", env!("CARGO_PKG_VERSION")), 1)],
    );
    gauge(
        &mut out,
        "herald_queue_messages",
        "Messages in the queue (not yet finished).",
        &[(String::new(), summary.messages as i64)],
    );
    let disk = s.store.disk();
    gauge(
        &mut out,
        "herald_disk_pressure",
        "1 while free space on the data directory is below store.min_free_mb (new mail refused).",
        &[(String::new(), i64::from(disk.under_pressure()))],
    );
    gauge(
        &mut out,
        "herald_disk_free_bytes",
        "Free bytes on the data directory's filesystem.",
        &[(String::new(), disk.free_bytes().unwrap_or(0) as i64)],
    );
    gauge(
        &mut out,
        "herald_disk_min_free_bytes",
        "The floor store.min_free_mb, in bytes.",
        &[(String::new(), disk.floor_bytes() as i64)],
    );
    gauge(
        &mut out,
        "herald_queue_in_flight",
        "Queued messages in a delivery attempt right now.",
        &[(String::new(), summary.in_flight as i64)],
    );
    let by_status: Vec<(String, i64)> = STATUSES
        .iter()
        .map(|st| {
            (
                format!("status=\"{}\"", st.as_str()),
                summary.recipients_by_status.get(st.as_str()).copied().unwrap_or(0) as i64,
            )
        })
        .collect();
    gauge(
        &mut out,
        "herald_queue_recipients",
        "Recipients of queued messages, by status.",
        &by_status,
    );
    let overdue = summary.oldest_due_ms.map_or(0, |due| (now_ms - due).max(0) / 1000);
    gauge(
        &mut out,
        "herald_queue_overdue_seconds",
        "How long the earliest due message has waited past its due time (0 when none is late); grows when delivery is stuck.",
        &[(String::new(), overdue)],
    );
    events_and_webhooks(&s, &mut out).await;
    let refusals: Vec<(String, i64)> = crate::smtpd::Refusal::ALL
        .iter()
        .map(|&why| (format!("reason=\"{}\"", why.label()), s.refusals.get(why) as i64))
        .collect();
    family(
        &mut out,
        "herald_smtp_refusals_total",
        "counter",
        "Clients refused or cut off by the SMTP listeners since start, by reason.",
        &refusals,
    );
    let (waits, lapsed) = s.refusals.data_slots();
    counter(
        &mut out,
        "herald_smtp_data_waits_total",
        "Sessions that waited for a receiving slot (`limits.max_concurrent_data`) before their 354, since start.",
        &[(String::new(), waits as i64)],
    );
    counter(
        &mut out,
        "herald_smtp_data_leases_lapsed_total",
        "Messages that took longer than the 1 s lease to arrive and gave their receiving slot to the next session, since start.",
        &[(String::new(), lapsed as i64)],
    );
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], out))
}

/// Appends one gauge family: `(labels, value)` per series.
async fn events_and_webhooks(s: &Arc<AdminState>, out: &mut String) {
    let events: Vec<(String, i64)> = s.store.events().counts().into_iter().map(|(k, n)| (format!("type=\"{}\"", k.as_str()), n as i64)).collect();
    counter(out, "herald_events_total", "Events appended since the relay started, by type.", &events);
    let bounces: Vec<(String, i64)> = s.queue.bounces.snapshot().into_iter().map(|(c, hard, n)| (format!("class=\"{}\",hard=\"{hard}\"", c.as_str()), n as i64)).collect();
    counter(out, "herald_bounces_total", "Delivery failures (deferrals, failures, bounces) since start, by class.", &bounces);
    let list = s.suppressions.clone();
    let suppressed = tokio::task::spawn_blocking(move || list.count()).await.unwrap_or(0);
    gauge(out, "herald_suppressions", "Addresses on the suppression list (every scope).", &[(String::new(), suppressed as i64)]);
    let hooks = s.webhooks.clone();
    let statuses = tokio::task::spawn_blocking(move || hooks.statuses()).await.unwrap_or_default();
    let mut deliveries = Vec::new();
    for w in &statuses {
        for (outcome, n) in [("delivered", w.delivered), ("failed", w.failed_attempts), ("given_up", w.given_up)] {
            deliveries.push((format!("webhook=\"{}\",outcome=\"{outcome}\"", w.name), n as i64));
        }
    }
    counter(out, "herald_webhook_deliveries_total", "Webhook delivery attempts since start, by endpoint and outcome.", &deliveries);
    let depth: Vec<(String, i64)> = statuses.iter().map(|w| (format!("webhook=\"{}\"", w.name), w.pending as i64)).collect();
    gauge(out, "herald_webhook_outbox", "Events waiting in each webhook's outbox.", &depth);
    let disabled: Vec<(String, i64)> = statuses.iter().map(|w| (format!("webhook=\"{}\"", w.name), i64::from(w.disabled))).collect();
    gauge(out, "herald_webhook_disabled", "1 when the endpoint answered 410 Gone.", &disabled);
}

fn counter(out: &mut String, name: &str, help: &str, series: &[(String, i64)]) {
    family(out, name, "counter", help, series);
}

fn gauge(out: &mut String, name: &str, help: &str, series: &[(String, i64)]) {
    family(out, name, "gauge", help, series);
}

fn family(out: &mut String, name: &str, kind: &str, help: &str, series: &[(String, i64)]) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (labels, value) in series {
        let _ = if labels.is_empty() {
            writeln!(out, "{name} {value}")
        } else {
            writeln!(out, "{name}{{{labels}}} {value}")
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_format() {
        let mut out = String::new();
        gauge(&mut out, "x_total", "Things.", &[(String::new(), 3), ("status=\"a\"".into(), 0)]);
        assert_eq!(
            out,
            "# HELP x_total Things.\n# TYPE x_total gauge\nx_total 3\nx_total{status=\"a\"} 0\n"
        );
    }
}
