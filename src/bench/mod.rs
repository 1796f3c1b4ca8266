//! The load tool (`herald bench …`): submits invoice-sized mail over many
//! concurrent authenticated sessions with pipelining and reports accepted
//! messages per second and the latency from end of DATA to the 250.

pub mod client;
pub mod e2e;
pub mod sink;
pub mod soak;

use client::Client;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

#[derive(clap::Subcommand)]
pub enum BenchCommand {
    /// Submit N messages over C sessions to a running relay.
    Submit(SubmitArgs),
    /// Run a receiving SMTP server that counts what it is sent.
    Sink(SinkArgs),
    /// Run a sink and submit N messages over C sessions to a relay routed
    /// to it; report acceptance and delivery rates.
    E2e(e2e::E2eArgs),
    /// Run a relay in-process against a sink that injects faults
    /// (greylisting, slow replies, hang-ups, 5xx) and count what became of
    /// every message; fails unless nothing was lost, duplicated or wrongly
    /// bounced.
    Soak(soak::SoakArgs),
}

#[derive(clap::Args, Clone)]
pub struct SinkArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:2600")]
    pub addr: SocketAddr,
    /// Offer STARTTLS (with a throwaway self-signed certificate).
    #[arg(long)]
    pub starttls: bool,
}

#[derive(clap::Args, Clone)]
pub struct SubmitArgs {
    /// Submission address of the relay.
    #[arg(long, default_value = "127.0.0.1:2525")]
    pub addr: SocketAddr,
    /// How to speak TLS: starttls, implicit or none.
    #[arg(long, default_value = "starttls")]
    pub tls: String,
    /// Certificate to trust (the relay's, e.g. certs/relay.crt).
    #[arg(long, default_value = "certs/relay.crt")]
    pub cert: PathBuf,
    /// Name to expect in the relay's certificate.
    #[arg(long, default_value = "localhost")]
    pub server_name: String,
    #[arg(long, default_value = "billing")]
    pub user: String,
    #[arg(long, default_value = "change-me")]
    pub password: String,
    /// Messages in all.
    #[arg(long, short = 'n', default_value_t = 5000)]
    pub count: usize,
    /// Size of each message in bytes.
    #[arg(long, default_value_t = 40 * 1024)]
    pub size: usize,
    /// Concurrent sessions.
    #[arg(long, short = 'c', default_value_t = 50)]
    pub concurrency: usize,
    /// Envelope and header sender.
    #[arg(long, default_value = "invoices@customer.example")]
    pub from: String,
    /// Recipient (use a domain routed to a sink).
    #[arg(long, default_value = "payer@sink.example")]
    pub to: String,
}

/// Figures from one run.
#[derive(Debug, Clone)]
pub struct SubmitReport {
    pub accepted: usize,
    pub refused: usize,
    pub elapsed: Duration,
    /// End of DATA → 250, sorted ascending.
    pub latencies: Vec<Duration>,
}

impl SubmitReport {
    pub fn rate(&self) -> f64 {
        self.accepted as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn percentile(&self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let idx = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies[idx.min(self.latencies.len() - 1)]
    }
}

impl std::fmt::Display for SubmitReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "accepted {} refused {} in {:.2}s: {:.0} msg/s; end-of-DATA→250 p50 {:.2} ms p99 {:.2} ms max {:.2} ms",
            self.accepted,
            self.refused,
            self.elapsed.as_secs_f64(),
            self.rate(),
            self.percentile(0.50).as_secs_f64() * 1e3,
            self.percentile(0.99).as_secs_f64() * 1e3,
            self.latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        )
    }
}

pub async fn run(command: BenchCommand) -> Result<(), String> {
    match command {
        BenchCommand::Submit(args) => {
            let report = submit(&args).await?;
            println!("submit n={} size={} c={}: {report}", args.count, args.size, args.concurrency);
            Ok(())
        }
        BenchCommand::Sink(args) => sink::run(args.addr, args.starttls).await,
        BenchCommand::Soak(args) => {
            let report = soak::soak(&args).await?;
            println!("{report}");
            if report.ok() { Ok(()) } else { Err("the soak lost, duplicated or wrongly bounced mail (see above)".into()) }
        }
        BenchCommand::E2e(args) => {
            let r = e2e::e2e(&args).await?;
            println!("submit n={} size={} c={}: {}", args.submit.count, args.submit.size, args.submit.concurrency, r.submit);
            println!(
                "end-to-end c={}: delivered {} of {} in {:.2}s: {:.0} msg/s over {} sink connection(s)",
                args.submit.concurrency,
                r.delivered,
                r.submit.accepted,
                r.elapsed.as_secs_f64(),
                r.rate(),
                r.sink_connections
            );
            if r.delivered < r.submit.accepted {
                return Err(format!("only {} of {} accepted messages reached the sink", r.delivered, r.submit.accepted));
            }
            Ok(())
        }
    }
}

/// An invoice-like message of about `size` bytes: headers, a text part
/// and a base64 "PDF" attachment in 76-column lines.
pub fn invoice(from: &str, to: &str, size: usize, seq: usize) -> Vec<u8> {
    let mut m = format!(
        "From: Customer Billing <{from}>\r\nTo: <{to}>\r\nSubject: Invoice {seq}\r\nDate: Fri, 27 Nov 2026 10:00:00 +0000\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
         Dear customer,\r\n\r\nplease find invoice {seq} attached.\r\n\r\n--b1\r\nContent-Type: application/pdf; name=\"invoice-{seq}.pdf\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n"
    )
    .into_bytes();
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut n = seq.wrapping_mul(2654435761);
    while m.len() + 80 < size {
        for _ in 0..76 {
            n = n.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            m.push(alphabet[(n >> 58) as usize]);
        }
        m.extend_from_slice(b"\r\n");
    }
    m.extend_from_slice(b"--b1--\r\n");
    m
}

async fn open_session(args: &SubmitArgs) -> std::io::Result<Client> {
    let tls = || client::tls_trusting(&args.cert);
    let mut c = match args.tls.as_str() {
        "implicit" => Client::connect_tls(args.addr, &tls()?, &args.server_name).await?.0,
        "starttls" => {
            let (mut c, _) = Client::connect(args.addr).await?;
            c.ehlo("bench.localhost").await?;
            c.starttls(&tls()?, &args.server_name).await?
        }
        _ => Client::connect(args.addr).await?.0,
    };
    c.ehlo("bench.localhost").await?;
    if !args.user.is_empty() {
        let r = c.auth_plain(&args.user, &args.password).await?;
        if r.code != 235 {
            return Err(std::io::Error::other(format!("AUTH refused: {} {}", r.code, r.text())));
        }
    }
    Ok(c)
}

/// Runs the submission load and measures it.
pub async fn submit(args: &SubmitArgs) -> Result<SubmitReport, String> {
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.concurrency.max(1) {
        let args = args.clone();
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut refused = 0usize;
            let mut c = open_session(&args).await.map_err(|e| format!("session: {e}"))?;
            loop {
                let seq = next.fetch_add(1, Ordering::Relaxed);
                if seq >= args.count {
                    break;
                }
                let body = invoice(&args.from, &args.to, args.size, seq);
                let stuffed = client::dot_stuff(&body);
                let head = format!("MAIL FROM:<{}>\r\nRCPT TO:<{}>\r\nDATA\r\n", args.from, args.to);
                c.send_raw(head.as_bytes()).await.map_err(|e| e.to_string())?;
                let replies = [c.read_reply().await, c.read_reply().await, c.read_reply().await];
                let data_ok = matches!(&replies[2], Ok(r) if r.code == 354);
                if !data_ok {
                    refused += 1;
                    continue;
                }
                let (body_part, end) = stuffed.split_at(stuffed.len() - 3);
                c.send_raw(body_part).await.map_err(|e| e.to_string())?;
                let t = Instant::now();
                c.send_raw(end).await.map_err(|e| e.to_string())?;
                let r = c.read_reply().await.map_err(|e| e.to_string())?;
                lat.push(t.elapsed());
                if r.code != 250 {
                    refused += 1;
                }
            }
            let _ = c.command("QUIT").await;
            Ok::<_, String>((lat, refused))
        }));
    }
    let mut latencies = Vec::new();
    let mut refused = 0;
    for t in tasks {
        let (lat, r) = t.await.map_err(|e| e.to_string())??;
        refused += r;
        latencies.extend(lat);
    }
    let elapsed = start.elapsed();
    latencies.sort();
    let accepted = latencies.len().saturating_sub(refused);
    Ok(SubmitReport { accepted, refused, elapsed, latencies })
}
