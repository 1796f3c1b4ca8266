//! Soak under faults (`herald bench soak`): a relay in-process with a
//! scratch data directory, delivering to a sink that misbehaves the way
//! real receivers do — greylisting, slow replies (slower than the retry
//! delay), hang-ups mid-DATA and before the final reply, busy greetings,
//! 5xx refusals — and a count of what became of every accepted message:
//! delivered, failed, duplicated, lost. Lost must be 0, and every failure
//! must be a 5xx the sink really gave.
//!
//! Everything stays on loopback; DNS is not used (one static route).

use super::client::Client;
use super::sink::{Action, Sink, SinkConfig, Stage};
use crate::clock::SystemClock;
use crate::config::Config;
use crate::id::MessageId;
use crate::store::RcptStatus;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(clap::Args, Clone)]
pub struct SoakArgs {
    /// Messages in all.
    #[arg(long, short = 'n', default_value_t = 5000)]
    pub count: usize,
    /// Concurrent submission sessions.
    #[arg(long, short = 'c', default_value_t = 10)]
    pub concurrency: usize,
    /// Give up waiting for the queue to drain after this many seconds.
    #[arg(long, default_value_t = 600)]
    pub timeout_secs: u64,
}

/// What one message asks of the sink, by its recipient's local part
/// (see [`super::sink::behaviour`]); `fails` when the sink will refuse it
/// with a 5xx.
struct Kind {
    local: &'static str,
    fails: bool,
}

/// One in twenty of each, so the mix is the same for any N.
const MIX: [Kind; 20] = [
    Kind { local: "payer", fails: false },
    Kind { local: "payer", fails: false },
    Kind { local: "payer", fails: false },
    Kind { local: "payer", fails: false },
    Kind { local: "payer", fails: false },
    Kind { local: "payer", fails: false },
    Kind { local: "payer", fails: false },
    Kind { local: "payer", fails: false },
    Kind { local: "payer", fails: false },
    Kind { local: "payer", fails: false },
    Kind { local: "tempfail-1", fails: false },
    Kind { local: "tempfail-1", fails: false },
    Kind { local: "tempfail-3", fails: false },
    Kind { local: "slow-1500", fails: false },
    Kind { local: "slow-200", fails: false },
    Kind { local: "flaky-1", fails: false },
    Kind { local: "flaky-2", fails: false },
    Kind { local: "tempfail-2", fails: false },
    Kind { local: "reject", fails: true },
    Kind { local: "datafail", fails: true },
];

/// The counts of one soak.
#[derive(Debug, Default)]
pub struct SoakReport {
    pub submitted: usize,
    pub accepted: usize,
    pub delivered: usize,
    pub failed: usize,
    /// Failures the sink did not give a 5xx for: wrongly bounced.
    pub wrongly_failed: usize,
    /// Delivered more than once.
    pub duplicated: usize,
    /// Accepted, meant to be delivered, and not at the sink.
    pub lost: usize,
    /// Still queued when the time ran out.
    pub unfinished: usize,
    pub dsns: usize,
    pub elapsed: Duration,
}

impl SoakReport {
    pub fn ok(&self) -> bool {
        self.lost == 0 && self.wrongly_failed == 0 && self.duplicated == 0 && self.unfinished == 0 && self.accepted == self.submitted
    }
}

impl std::fmt::Display for SoakReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "soak: submitted {} accepted {} delivered {} failed {} (of which without a 5xx from the sink: {}) duplicated {} lost {} unfinished {} dsns {} in {:.1}s",
            self.submitted, self.accepted, self.delivered, self.failed, self.wrongly_failed, self.duplicated, self.lost, self.unfinished, self.dsns,
            self.elapsed.as_secs_f64()
        )
    }
}

fn config(dir: &std::path::Path, sink_port: u16) -> Result<Config, String> {
    let text = format!(
        r#"
[server]
hostname = "relay.soak"
data_dir = "data"
shutdown_grace_secs = 2
[[listener]]
address = "127.0.0.1:0"
tls = "none"
[relay]
allow_networks = ["127.0.0.0/8"]
[limits]
max_connections = 1000
[store]
min_free_mb = 0
[dns]
nameservers = ["127.0.0.1:9"]
timeout_secs = 1
attempts = 1
[identity]
domain = "relay.soak"
bounce_domain = "bounces.relay.soak"
rewrite_from = false
[queue]
retry_schedule = ["1s"]
[delivery]
idle_secs = 2
command_timeout_secs = 10
[bounces]
address = ""
[[route]]
domain = "*"
host = "127.0.0.1"
port = {sink_port}
tls = "disabled"
"#
    );
    Config::parse(&text, "soak", dir).map_err(|e| e.to_string())
}

/// Runs one soak and reports; the caller judges [`SoakReport::ok`].
pub async fn soak(args: &SoakArgs) -> Result<SoakReport, String> {
    let dir = tempfile_dir()?;
    let sink = Sink::start(SinkConfig { addr: "127.0.0.1:0".parse().map_err(|_| "address")?, hostname: "sink.soak".into(), tls: None, keep_messages: true })
        .await
        .map_err(|e| format!("cannot start the sink: {e}"))?;
    // Faults that strike whatever connection comes next.
    let n = args.count as u32;
    sink.inject(Stage::Greeting, Action::Reply("421 4.3.2 too busy, come back later"), n / 100 + 1);
    sink.inject(Stage::Greeting, Action::Drop, n / 200 + 1);
    sink.inject(Stage::Mail, Action::Reply("451 4.3.0 temporarily unavailable"), n / 100 + 1);
    sink.inject(Stage::Data, Action::Reply("451 4.3.0 try again"), n / 200 + 1);
    sink.inject(Stage::EndOfData, Action::Drop, n / 200 + 1);
    let config = config(dir.path(), sink.addr().port())?;
    crate::config::validate(&config).map_err(|e| e.to_string())?;
    let running = crate::server::start(&config, Arc::new(SystemClock)).await?;
    let addr = running.addrs[0];
    let started = Instant::now();

    let kinds: Arc<Mutex<BTreeMap<MessageId, usize>>> = Arc::default();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut sessions = tokio::task::JoinSet::new();
    for _ in 0..args.concurrency.max(1) {
        let (kinds, next, count) = (kinds.clone(), next.clone(), args.count);
        sessions.spawn(async move {
            let mut client: Option<Client> = None;
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= count {
                    return;
                }
                let kind = i % MIX.len();
                let rcpt = format!("{}-{i}@dest.soak", MIX[kind].local);
                let body = super::invoice("billing@customer.soak", &rcpt, 4096, i);
                // A refused or broken session is replaced; a message is
                // tried until it is accepted.
                for _ in 0..20 {
                    if client.is_none() {
                        if let Ok((mut c, _)) = Client::connect(addr).await {
                            let hello = c.ehlo("load.soak").await;
                            if hello.is_ok() {
                                client = Some(c);
                            }
                        }
                    }
                    let Some(c) = client.as_mut() else { continue };
                    match c.send_message("app@sender.soak", &[&rcpt], &body).await {
                        Ok(r) if r.code == 250 => {
                            if let Some(id) = r.text().rsplit(' ').next().and_then(MessageId::parse) {
                                kinds.lock().unwrap_or_else(|e| e.into_inner()).insert(id, kind);
                            }
                            break;
                        }
                        _ => client = None,
                    }
                }
            }
        });
    }
    while sessions.join_next().await.is_some() {}

    let kinds = kinds.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let deadline = Instant::now() + Duration::from_secs(args.timeout_secs);
    let mut unfinished = kinds.len();
    while unfinished > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        unfinished = kinds.keys().filter(|id| running.store.find(id).ok().flatten().is_none_or(|r| r.finished_ms.is_none())).count();
    }
    let elapsed = started.elapsed();
    // DSNs for the failures go to the sink too; let them land.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let mut copies: BTreeMap<String, usize> = BTreeMap::new();
    let mut dsns = 0;
    for m in sink.received() {
        match m.mail_from.strip_prefix("bounces+").and_then(|r| r.split('@').next()) {
            Some(id) => *copies.entry(id.to_string()).or_default() += 1,
            None if m.mail_from.is_empty() => dsns += 1,
            None => {}
        }
    }
    let refused: std::collections::HashSet<String> = sink.refusals().into_iter().map(|(rcpt, _)| rcpt).collect();
    let mut report = SoakReport { submitted: args.count, accepted: kinds.len(), unfinished, dsns, elapsed, ..Default::default() };
    for (id, &kind) in &kinds {
        let n = copies.get(id.as_str()).copied().unwrap_or(0);
        report.duplicated += usize::from(n > 1);
        let Some(record) = running.store.find(id).ok().flatten() else { continue };
        match record.recipients[0].status {
            RcptStatus::Delivered => report.delivered += 1,
            RcptStatus::Failed | RcptStatus::Expired => {
                report.failed += 1;
                if !refused.contains(&record.recipients[0].address) {
                    report.wrongly_failed += 1;
                    tracing::error!(msg_id = %id, rcpt = %record.recipients[0].address, attempts = ?record.recipients[0].attempts, "failed without a 5xx from the sink");
                }
            }
            RcptStatus::Queued | RcptStatus::Deferred => {}
        }
        if !MIX[kind].fails && n == 0 {
            report.lost += 1;
            tracing::error!(msg_id = %id, status = ?record.recipients[0].status, "accepted, meant to arrive, never arrived");
        }
    }
    running.shutdown().await;
    Ok(report)
}

fn tempfile_dir() -> Result<TempDir, String> {
    let path = std::env::temp_dir().join(format!("herald-soak-{}", MessageId::generate(crate::clock::Clock::now_ms(&SystemClock))));
    std::fs::create_dir_all(&path).map_err(|e| format!("cannot make {}: {e}", path.display()))?;
    Ok(TempDir(path))
}

/// A scratch directory removed on drop.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
