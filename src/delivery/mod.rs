//! Delivery, a send-only courier: take a group of recipients of one
//! message at one destination domain (a [`Job`]: envelope, the prepared
//! header block, the body) to the receiving server, and give back one
//! [`JobOutcome`] per recipient on the job's channel. It knows nothing of
//! the queue: preparation (identity, From rewrite, signature), records
//! and DSNs are the queue's.
//!
//! The [`Dispatcher`] keeps a queue per destination domain and at most
//! `queue.per_domain` connections per domain (`queue.workers` in all).
//! A connection task resolves the route once, connects, and then sends
//! job after job over the same SMTP session until its queue stays empty
//! for `delivery.idle_secs` or `max_messages_per_connection` is reached.

pub mod classify;
pub mod route;
pub mod transport;
mod utf8;

use crate::config::{Config, OutboundTls, RouteConfig};
use crate::dns::Dns;
use crate::id::MessageId;
use crate::store::{Outcome, Prepared};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, Semaphore, oneshot};
use transport::{Connection, Connectors, Target};

/// A message as it goes out: the prepared envelope sender and header
/// block, and the body as submitted. Shared by every destination.
pub struct Outgoing {
    pub prepared: Prepared,
    pub body: Arc<Vec<u8>>,
}

/// Some recipients of one message, all at one destination domain.
pub struct Job {
    /// For the log.
    pub id: MessageId,
    pub domain: String,
    /// The recipients: the caller's index for each (given back in the
    /// outcomes) and the address.
    pub rcpts: Vec<(usize, String)>,
    pub message: Arc<Outgoing>,
    /// Where the outcomes go; the courier carries nothing more over the
    /// connection until the receiver acknowledges them.
    pub done: oneshot::Sender<Report>,
}

/// One recipient's result from one attempt.
#[derive(Debug, Clone)]
pub struct JobOutcome {
    pub rcpt: usize,
    pub outcome: Outcome,
    pub host: String,
    pub reply: String,
    /// The connection used TLS.
    pub tls: bool,
}

/// A job's outcomes, and the acknowledgement the courier waits for
/// (sent once they are recorded).
pub struct Report {
    pub results: Vec<JobOutcome>,
    pub recorded: oneshot::Sender<()>,
}

/// Delivery settings, fixed at start.
pub struct Settings {
    pub helo: String,
    pub per_domain: usize,
    pub connect_timeout: Duration,
    pub timeout: Duration,
    pub max_per_connection: usize,
    pub idle: Duration,
    pub mx_port: u16,
    pub mx_tls: OutboundTls,
    pub routes: Vec<RouteConfig>,
}

impl Settings {
    pub fn from_config(config: &Config) -> Self {
        let d = &config.delivery;
        Self {
            helo: config.server.hostname.clone(),
            per_domain: config.queue.per_domain,
            connect_timeout: Duration::from_secs(d.connect_timeout_secs),
            timeout: Duration::from_secs(d.command_timeout_secs),
            max_per_connection: d.max_messages_per_connection,
            idle: Duration::from_secs(d.idle_secs),
            mx_port: d.mx_port,
            mx_tls: d.tls,
            routes: config.routes.clone(),
        }
    }
}

#[derive(Default)]
struct DomainQueue {
    jobs: VecDeque<Job>,
    conns: usize,
    idle: usize,
    notify: Arc<Notify>,
}

struct Inner {
    settings: Settings,
    dns: Dns,
    tls: Connectors,
    workers: Arc<Semaphore>,
    queues: Mutex<HashMap<String, DomainQueue>>,
}

/// Hands jobs to per-domain connection tasks.
#[derive(Clone)]
pub struct Dispatcher {
    inner: Arc<Inner>,
}

impl Dispatcher {
    pub fn new(settings: Settings, workers: usize, dns: Dns) -> Result<Self, String> {
        let inner = Inner { settings, dns, tls: Connectors::new()?, workers: Arc::new(Semaphore::new(workers)), queues: Mutex::new(HashMap::new()) };
        Ok(Self { inner: Arc::new(inner) })
    }

    /// Queues a job; wakes an idle connection to its domain or starts a
    /// new one if the domain's limit allows.
    pub fn submit(&self, job: Job) {
        let domain = job.domain.clone();
        let Ok(mut queues) = self.inner.queues.lock() else { return };
        let q = queues.entry(domain.clone()).or_default();
        q.jobs.push_back(job);
        if q.idle > 0 {
            q.notify.notify_one();
        } else if q.conns < self.inner.settings.per_domain {
            q.conns += 1;
            tokio::spawn(connection_task(self.inner.clone(), domain));
        }
    }
}

/// Takes the domain's next job, waiting up to the idle time when a
/// connection is open. `None`: this task should end (its slot is freed).
/// A wake-up that finds the job taken by a busy connection waits again
/// until the idle time is up: ending there would close a good connection
/// and make the next job open a new one.
async fn next_job(inner: &Inner, domain: &str, may_wait: bool) -> Option<Job> {
    let deadline = tokio::time::Instant::now() + inner.settings.idle;
    let mut waited = false;
    loop {
        let notify = {
            let mut queues = inner.queues.lock().ok()?;
            let q = queues.get_mut(domain)?;
            if waited {
                q.idle -= 1;
            }
            if let Some(job) = q.jobs.pop_front() {
                return Some(job);
            }
            if !may_wait || inner.settings.idle.is_zero() || tokio::time::Instant::now() >= deadline {
                q.conns -= 1;
                if q.conns == 0 && q.idle == 0 {
                    queues.remove(domain);
                }
                return None;
            }
            q.idle += 1;
            q.notify.clone()
        };
        let _ = tokio::time::timeout_at(deadline, notify.notified()).await;
        waited = true;
    }
}

async fn connection_task(inner: Arc<Inner>, domain: String) {
    let Ok(_permit) = inner.workers.clone().acquire_owned().await else { return };
    let mut conn: Option<Connection> = None;
    let mut targets: Option<Result<Vec<Target>, route::RouteError>> = None;
    while let Some(job) = next_job(&inner, &domain, conn.is_some()).await {
        let results = deliver(&inner, &domain, &job, &mut conn, &mut targets).await;
        let (recorded, written) = oneshot::channel();
        if job.done.send(Report { results, recorded }).is_ok() {
            let _ = written.await;
        }
        if conn.as_ref().is_some_and(|c| c.sent >= inner.settings.max_per_connection)
            && let Some(c) = conn.take()
        {
            c.quit().await;
        }
    }
    if let Some(c) = conn {
        c.quit().await;
    }
}

fn all(job: &Job, outcome: Outcome, host: &str, reply: &str) -> Vec<JobOutcome> {
    job.rcpts.iter().map(|&(rcpt, _)| JobOutcome { rcpt, outcome, host: host.to_string(), reply: reply.to_string(), tls: false }).collect()
}

/// One job over the task's connection (opened or reopened as needed).
async fn deliver(
    inner: &Inner,
    domain: &str,
    job: &Job,
    conn: &mut Option<Connection>,
    targets: &mut Option<Result<Vec<Target>, route::RouteError>>,
) -> Vec<JobOutcome> {
    let prepared = &job.message.prepared;
    let rcpts: Vec<&str> = job.rcpts.iter().map(|(_, a)| a.as_str()).collect();
    let chunks = prepared.chunks(&job.message.body);
    // A reused connection may have been closed by the server meanwhile:
    // one fresh connection is tried before the job is deferred, but only
    // when the failure came before any of the message was sent.
    for _ in 0..2 {
        let reused = conn.is_some();
        if conn.is_none() {
            match open(inner, domain, targets).await {
                Ok(c) => *conn = Some(c),
                Err((outcome, text)) => return all(job, outcome, "", &text),
            }
        }
        let Some(c) = conn.as_mut() else { break };
        match c.send(&prepared.envelope_from, &rcpts, &chunks, prepared.smtputf8).await {
            Ok(results) => {
                let (host, tls) = (c.label.clone(), c.tls);
                if !c.reusable() {
                    // Out of protocol order, or the transaction could not be
                    // reset: this connection carries nothing more.
                    tracing::info!(msg_id = %job.id, host, "closing a connection left in an unknown state");
                    *conn = None;
                }
                return job.rcpts.iter().zip(results).map(|(&(rcpt, _), (outcome, reply))| JobOutcome { rcpt, outcome, host: host.clone(), reply, tls }).collect();
            }
            Err(e) => {
                let host = c.label.clone();
                *conn = None;
                let retry_fresh = reused && !e.data_sent && matches!(e.error, mail_send::Error::Io(_) | mail_send::Error::UnparseableReply);
                if !retry_fresh {
                    let text = classify::error_text(&e.error);
                    let text = if e.data_sent { format!("{text} (after the message was sent; the receiver may have it)") } else { text };
                    return all(job, Outcome::Temporary, &host, &text);
                }
                tracing::debug!(msg_id = %job.id, host, "reused connection failed; reconnecting");
            }
        }
    }
    all(job, Outcome::Temporary, "", "connection failed")
}

/// Connects to the first target that answers, in preference order.
async fn open(inner: &Inner, domain: &str, targets: &mut Option<Result<Vec<Target>, route::RouteError>>) -> Result<Connection, (Outcome, String)> {
    let s = &inner.settings;
    if targets.is_none() {
        *targets = Some(route::targets(&inner.dns, &s.routes, domain, s.mx_port, s.mx_tls).await);
    }
    let list = match targets.as_ref() {
        Some(Ok(list)) => list.clone(),
        Some(Err(e)) => {
            let e = e.clone();
            *targets = None; // resolve again next time
            return Err((e.outcome, e.text));
        }
        None => return Err((Outcome::Temporary, "no route".into())),
    };
    let mut last = (Outcome::Temporary, format!("no server to try for {domain}"));
    for target in &list {
        let mut result = Connection::open(target, &s.helo, s.connect_timeout, s.timeout, &inner.tls).await;
        if let Err(e) = &result
            && e.tls_failed
            && target.tls == OutboundTls::Opportunistic
        {
            // Opportunistic TLS that fails is retried in plain text, as
            // Postfix does: the policy asked for TLS only where it works.
            tracing::info!(domain, host = %target.label(), error = %e.text, "STARTTLS failed; trying again without TLS");
            let plain = Target { tls: OutboundTls::Disabled, ..target.clone() };
            result = Connection::open(&plain, &s.helo, s.connect_timeout, s.timeout, &inner.tls).await;
        }
        match result {
            Ok(c) => return Ok(c),
            Err(e) => {
                tracing::info!(domain, host = %target.label(), error = %e.text, "cannot use server; trying the next");
                last = (e.outcome, e.text);
            }
        }
    }
    *targets = None;
    Err(last)
}
