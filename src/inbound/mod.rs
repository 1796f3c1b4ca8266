//! Bounce intake: the relay's own MX for `bounces+<id>@<host>`, where host
//! is the relay's bounce domain or a customer's return-path host (DESIGN
//! "The operator's zone": the MX of `t<id>.<zone>`). Bounces that arrive
//! after a message was delivered fail its recipient just as a synchronous
//! 5xx would, and the original sender hears about it.
//!
//! - `session`: the bounce verbs (EHLO, MAIL, RSET … inline), driven by
//!   the server kit's loop (`crate::smtpd`);
//! - `rcpt`: which addresses are accepted (only bounce addresses of
//!   messages the relay knows; nothing is ever relayed);
//! - `data`: the end of DATA, smuggling-safe, 250 once durable;
//! - `dsn`: reading RFC 3464 reports, pure;
//! - `apply`: updating the queued or retired record.

mod apply;
mod data;
mod dsn;
mod rcpt;
mod session;

pub use dsn::{Action, RcptReport, parse_report};

use crate::config::{Config, LimitsConfig};
use crate::domains::Registry;
use crate::queue::QueueCore;
use crate::store::{Store, StoreError};
use crate::smtpd::gate::refuse;
use crate::smtpd::{Counters, Gate, Rules};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// What every bounce session shares.
pub struct Context {
    pub hostname: String,
    /// `identity.bounce_domain`: bounce addresses on it are always ours.
    pub bounce_domain: String,
    pub limits: LimitsConfig,
    pub store: Store,
    pub queue: Arc<QueueCore>,
    /// Customer domains, whose return-path hosts also take bounces.
    pub registry: Registry,
    /// Flips to `true` when the relay is shutting down.
    pub shutdown: watch::Receiver<bool>,
    /// Held while a bounce updates a record (see `apply`).
    apply_lock: tokio::sync::Mutex<()>,
    /// The kit's limits for these sessions.
    pub rules: Rules,
}

impl Context {
    pub fn new(
        config: &Config,
        store: Store,
        queue: Arc<QueueCore>,
        registry: Registry,
        shutdown: watch::Receiver<bool>,
        counters: Arc<Counters>,
    ) -> Self {
        Self {
            rules: Rules::from_limits(&config.server.hostname, &config.limits, counters),
            hostname: config.server.hostname.clone(),
            bounce_domain: config.identity.bounce_domain.clone(),
            limits: config.limits.clone(),
            store,
            queue,
            registry,
            shutdown,
            apply_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// Whether `host` is the return-path host of a registered domain
    /// (`em4821.customer.nl` of `customer.nl`).
    pub fn is_return_path(&self, host: &str) -> Result<bool, StoreError> {
        let Some((_, domain)) = host.split_once('.') else {
            return Ok(false);
        };
        Ok(self
            .registry
            .get(domain)?
            .is_some_and(|r| r.return_path_host().eq_ignore_ascii_case(host)))
    }
}

/// Accepts bounce connections on `listener` until the shutdown flag
/// flips, then waits for the open sessions (which say 421 when idle).
pub async fn serve(listener: TcpListener, ctx: Arc<Context>) {
    let gate = Gate::new(ctx.limits.max_connections, ctx.limits.max_connections_per_ip, ctx.rules.counters.clone());
    let mut shutdown = ctx.shutdown.clone();
    let mut sessions = JoinSet::new();
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(error = %e, "bounce intake: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            Some(_) = sessions.join_next(), if !sessions.is_empty() => continue,
            _ = crate::smtpd::stopping(&mut shutdown) => break,
        };
        let _ = stream.set_nodelay(true);
        let pass = match gate.admit(peer.ip()) {
            Ok(pass) => pass,
            Err(reply) => {
                tracing::warn!(%peer, reply = %reply.lines.join(" "), "bounce intake: connection refused");
                sessions.spawn(refuse(stream, reply));
                continue;
            }
        };
        let ctx = ctx.clone();
        sessions.spawn(async move {
            session::run(ctx, stream, peer).await;
            drop(pass);
        });
    }
    while sessions.join_next().await.is_some() {}
}
