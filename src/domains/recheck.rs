//! The background task that re-checks domains when their next check is
//! due: pending ones on a short backoff, verified ones periodically; and
//! moves DKIM key rotations on (visibility checks, end of retention, the
//! `domains.rotate_every` schedule).

use super::Domains;
use std::time::Duration;
use tokio::sync::watch;

/// Runs until `shutdown` flips.
pub async fn run(domains: Domains, mut shutdown: watch::Receiver<bool>) {
    loop {
        match domains.recheck_due().await {
            Ok(checked) => {
                for (record, verification) in checked {
                    tracing::info!(domain = %record.domain, state = %record.state, result = %verification.summary(), "domain re-checked");
                }
            }
            Err(e) => tracing::warn!(error = %e, "domain re-check failed"),
        }
        if let Err(e) = domains.advance_rotations().await {
            tracing::warn!(error = %e, "DKIM key rotation pass failed");
        }
        let now = domains.registry().now_ms();
        let wait_ms = domains.next_due_ms().ok().flatten().map(|due| (due - now).clamp(1_000, 60_000)).unwrap_or(60_000);
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(wait_ms as u64)) => {}
            _ = crate::smtpd::stopping(&mut shutdown) => return,
        }
    }
}
