//! End-to-end load: a sink on loopback stands in for the receiving MX; the
//! load tool submits to a running relay (whose route points at the sink)
//! and measures both acceptance and delivery.

use super::sink::{Sink, SinkConfig};
use super::{SubmitArgs, SubmitReport, submit};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

#[derive(clap::Args, Clone)]
pub struct E2eArgs {
    #[command(flatten)]
    pub submit: SubmitArgs,
    /// Where the sink listens; the relay must route mail there.
    #[arg(long, default_value = "127.0.0.1:2600")]
    pub sink: SocketAddr,
    /// Give up waiting for deliveries after this many seconds.
    #[arg(long, default_value_t = 300)]
    pub timeout_secs: u64,
}

/// Figures from one end-to-end run.
pub struct E2eReport {
    pub submit: SubmitReport,
    pub delivered: usize,
    /// First submission to last delivery.
    pub elapsed: Duration,
    pub sink_connections: usize,
}

impl E2eReport {
    pub fn rate(&self) -> f64 {
        self.delivered as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

pub async fn e2e(args: &E2eArgs) -> Result<E2eReport, String> {
    let sink = Sink::start(SinkConfig { addr: args.sink, hostname: "sink.bench".into(), tls: None, keep_messages: false })
        .await
        .map_err(|e| format!("cannot start the sink on {}: {e}", args.sink))?;
    let start = Instant::now();
    let report = submit(&args.submit).await?;
    sink.wait_for(report.accepted, Duration::from_secs(args.timeout_secs)).await;
    let elapsed = start.elapsed();
    Ok(E2eReport { delivered: sink.count(), elapsed, sink_connections: sink.connections(), submit: report })
}
