//! Handing a claimed message to the courier: read its body, prepare it
//! once (stored, so a retry sends the same bytes), give delivery one job
//! of plain data per destination domain, and record each job's outcomes
//! as they come back on its channel.

use super::InFlight;
use crate::delivery::{Dispatcher, Job, JobOutcome, Outgoing};
use crate::store::Outcome;
use std::sync::Arc;

/// A message claimed for a round: its recipients by destination domain.
pub struct Claimed {
    pub msg: Arc<InFlight>,
    pub groups: Vec<(String, Vec<usize>)>,
    /// The body, when the message comes straight from its submission;
    /// otherwise it is read from the spool.
    pub body: Option<Arc<Vec<u8>>>,
}

/// Every recipient of `rcpts` with the same result.
fn all(rcpts: &[usize], outcome: Outcome, reply: &str) -> Vec<JobOutcome> {
    rcpts.iter().map(|&rcpt| JobOutcome { rcpt, outcome, host: String::new(), reply: reply.to_string(), tls: false }).collect()
}

/// Prepares `claimed` and submits its jobs; their outcomes are recorded
/// by one task per job as they arrive.
pub async fn dispatch(claimed: Claimed, dispatcher: Dispatcher) {
    let Claimed { msg, groups, body } = claimed;
    let outgoing = match body.map_or_else(|| msg.body(), Ok) {
        Ok(body) => msg.prepared(&body).await.map(|prepared| Arc::new(Outgoing { prepared, body })),
        Err(e) => Err(e),
    };
    let outgoing = match outgoing {
        Ok(o) => o,
        Err(e) => {
            // Nothing was sent: every destination is tried again later.
            let text = format!("not sent: {e}");
            for (_, rcpts) in groups {
                msg.complete(all(&rcpts, Outcome::Temporary, &text), || {}).await;
            }
            return;
        }
    };
    for (domain, rcpts) in groups {
        let addresses = msg.addresses(&rcpts).await;
        let (done, report) = tokio::sync::oneshot::channel();
        dispatcher.submit(Job { id: msg.id, domain, rcpts: rcpts.into_iter().zip(addresses).collect(), message: outgoing.clone(), done });
        let msg = msg.clone();
        tokio::spawn(async move {
            // A courier that stops (shutdown) drops the job unanswered:
            // the message stays held until the process ends, and its
            // attempt is due again after a restart.
            if let Ok(report) = report.await {
                let recorded = report.recorded;
                msg.complete(report.results, move || {
                    let _ = recorded.send(());
                })
                .await;
            }
        });
    }
}
