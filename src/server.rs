//! The composition root: builds every part from the configuration, hands
//! each its dependencies, and runs until told to stop.

use crate::clock::SharedClock;
use crate::config::{Config, ListenerTls};
use crate::delivery::{Dispatcher, Settings};
use crate::queue::Preparer;
use crate::dns::Dns;
use crate::domains::{Domains, RelayIdentity, ZoneSettings};
use crate::queue::QueueCore;
use crate::store::Store;
use crate::submission::{self, Acceptors, Context, Listener};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// A started relay.
pub struct Running {
    /// The bound submission addresses, in `[[listener]]` order.
    pub addrs: Vec<SocketAddr>,
    pub store: Store,
    pub queue: Arc<QueueCore>,
    pub domains: Domains,
    /// The bound admin API address; `None` when `admin.token` is empty.
    pub admin_addr: Option<SocketAddr>,
    admin: Option<tokio::task::JoinHandle<()>>,
    /// The bound bounce intake address; `None` when `bounces.address` is empty.
    pub bounce_addr: Option<SocketAddr>,
    bounces: Option<tokio::task::JoinHandle<()>>,
    /// The embedded DNS server's addresses (UDP and TCP each); empty when off.
    pub dns_addrs: Vec<SocketAddr>,
    dns_server: Option<crate::dns_server::DnsServer>,
    shutdown: watch::Sender<bool>,
    acceptors: Acceptors,
    scheduler: tokio::task::JoinHandle<()>,
    rechecks: tokio::task::JoinHandle<()>,
    grace: Duration,
}

/// Starts every listener of `config`. Errors name the config key at fault.
pub async fn start(config: &Config, clock: SharedClock) -> Result<Running, String> {
    let data_dir = config.data_dir();
    let store = Store::open_with(&data_dir, config.store.cache_mb, crate::webhooks::outboxes(config)?)
        .map_err(|e| format!("`server.data_dir`: cannot open the database in {}: {e} (is another herald running on it?)", data_dir.display()))?;
    store.disk().set_floor_mb(config.store.min_free_mb);
    let tls = if config.listeners.iter().any(|l| l.tls != ListenerTls::None) { Some(tls_acceptor(config, clock.now_ms() / 1000)?) } else { None };
    let mut listeners = Vec::new();
    for (i, l) in config.listeners.iter().enumerate() {
        let bound = Listener::bind(l).await.map_err(|e| format!("`listener[{i}].address`: cannot listen on {}: {e}", l.address))?;
        tracing::info!(address = %bound.local_addr(), tls = ?l.tls, "listening for submissions");
        listeners.push(bound);
    }
    let addrs = listeners.iter().map(Listener::local_addr).collect();
    let admin_listener = crate::admin::bind(&config.admin).await?;
    let admin_addr = admin_listener.as_ref().and_then(|l| l.local_addr().ok());
    let bounce_listener = match config.bounces.address.trim() {
        "" => None,
        text => {
            let addr = config.bounces.socket_addr().ok_or_else(|| format!("`bounces.address`: `{text}` is not an IP address with a port"))?;
            let l = tokio::net::TcpListener::bind(addr).await.map_err(|e| format!("`bounces.address`: cannot listen on {addr}: {e}"))?;
            tracing::info!(address = %l.local_addr().unwrap_or(addr), "listening for bounces");
            Some(l)
        }
    };
    let bounce_addr = bounce_listener.as_ref().and_then(|l| l.local_addr().ok());
    let (shutdown, shutdown_rx) = watch::channel(false);

    let dns = Dns::from_config(&config.dns)?;
    let domains = Domains::open(store.db(), dns.clone(), clock.clone(), &config.domains)
        .map_err(|e| format!("`server.data_dir`: {e}"))?
        .with_events(store.clone())
        .with_zone_settings(ZoneSettings {
            ttl: config.dns_server.ttl_secs(),
            relay: Some(RelayIdentity {
                domain: config.identity.domain.clone(),
                selector: config.identity.dkim_selector.clone(),
                bounce_domain: config.identity.bounce_domain.clone(),
            }),
            embedded: config.dns_server.enabled(),
        });
    // The registry's key store: one per database (it keeps keys in memory).
    let keys = domains.registry().keys().clone();
    let selector_source = domains.clone();
    let preparer = Preparer::new(config.server.hostname.clone(), config.identity.clone(), dns.clone(), keys, clock.clone())
        .with_relay_selector(Box::new(move || selector_source.relay_selector()));
    // The relay's own key exists from the first start, so its DNS record
    // can be published before any mail goes out.
    let relay_signer = preparer.signer(&config.identity.domain, &preparer.relay_selector());
    relay_signer.map_err(|e| format!("`identity.dkim_selector`: {e}"))?;
    let dns_server = if config.dns_server.enabled() {
        Some(crate::dns_server::DnsServer::start(&config.dns_server, domains.clone(), &config.server.hostname, shutdown_rx.clone()).await?)
    } else {
        None
    };
    let dns_addrs = dns_server.as_ref().map(|d| d.addrs.clone()).unwrap_or_default();
    let rechecks = tokio::spawn(crate::domains::recheck::run(domains.clone(), shutdown_rx.clone()));
    let dispatcher = Dispatcher::new(Settings::from_config(config), config.queue.workers, dns)?;
    let suppressions = crate::suppression::SuppressionList::open(&store, &config.suppression).map_err(|e| format!("`server.data_dir`: {e}"))?;
    let queue = Arc::new(QueueCore::new(config, store.clone(), clock.clone(), preparer).with_suppressions(suppressions.clone()));
    let intake = crate::queue::Intake::new(queue.clone(), dispatcher.clone());
    let scheduler = tokio::spawn(crate::queue::run(queue.clone(), dispatcher, shutdown_rx.clone()));
    let webhooks = crate::webhooks::Webhooks::start(config, &store, clock.clone(), shutdown_rx.clone())?;
    tokio::spawn(crate::memory::run(Duration::from_secs(5), shutdown_rx.clone()));
    // What the SMTP listeners refuse, counted for /metrics.
    let counters = Arc::new(crate::smtpd::Counters::default());
    let admin = admin_listener.map(|l| {
        let state = crate::admin::AdminState {
            store: store.clone(),
            queue: queue.clone(),
            domains: domains.clone(),
            token: config.admin.token.clone(),
            refusals: counters.clone(),
            webhooks: webhooks.clone(),
            suppressions: suppressions.clone(),
            sessions: Default::default(),
        };
        tokio::spawn(crate::admin::serve(l, state, shutdown_rx.clone()))
    });
    let bounces = bounce_listener.map(|l| {
        let ctx = crate::inbound::Context::new(config, store.clone(), queue.clone(), domains.registry().clone(), shutdown_rx.clone(), counters.clone());
        tokio::spawn(crate::inbound::serve(l, Arc::new(ctx)))
    });

    let ctx = Arc::new(Context::new(config, store.clone(), intake, clock, tls, Some(domains.registry().clone()), shutdown_rx, counters).with_suppressions(suppressions.clone()));
    let acceptors = submission::spawn_listeners(ctx, listeners);
    let grace = Duration::from_secs(config.server.shutdown_grace_secs);
    Ok(Running { addrs, store, queue, domains, admin_addr, admin, bounce_addr, bounces, dns_addrs, dns_server, shutdown, acceptors, scheduler, rechecks, grace })
}

impl Running {
    /// Stops accepting, lets sessions in DATA finish (bounded by
    /// `server.shutdown_grace_secs`), and flushes the spool.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        if tokio::time::timeout(self.grace, self.acceptors.drained()).await.is_err() {
            tracing::warn!(grace_secs = self.grace.as_secs(), "sessions still open after the grace period; closing them");
        }
        if let Some(bounces) = self.bounces
            && tokio::time::timeout(self.grace, bounces).await.is_err()
        {
            tracing::warn!(grace_secs = self.grace.as_secs(), "bounce sessions still open after the grace period; closing them");
        }
        if let Some(admin) = self.admin {
            // Admin requests may still write to the store; let them finish first.
            let _ = tokio::time::timeout(self.grace, admin).await;
        }
        let _ = self.scheduler.await;
        let _ = self.rechecks.await;
        if let Some(dns) = self.dns_server {
            dns.shutdown().await;
        }
        if let Err(e) = self.store.durable().await {
            tracing::error!(error = %e, "final flush failed");
        }
        tracing::info!(fsyncs = self.store.flushes(), "stopped");
    }
}

/// `herald serve`: start, then stop cleanly on SIGTERM or SIGINT.
///
/// When the database fails to write (a disk that filled up to the last
/// byte, an I/O error), sled refuses every later write until it is
/// reopened; the relay then stops everything cleanly (mail already
/// acknowledged is on disk) and starts again on the same data directory,
/// as soon as the old database handles are gone, backing off while it
/// cannot. A signal stops it at any point.
pub async fn serve(config: Config, clock: SharedClock) -> Result<(), String> {
    tracing::info!(config = %config.redacted(), "effective configuration");
    let signal = wait_for_signal();
    tokio::pin!(signal);
    let mut running = start(&config, clock.clone()).await?;
    // A database that fails again soon after a restart (the disk is
    // still full) waits longer each time before the next one.
    let mut pause = Duration::from_millis(200);
    let mut started = tokio::time::Instant::now();
    loop {
        let store = running.store.clone();
        tokio::select! {
            _ = &mut signal => {
                tracing::info!("shutting down");
                running.shutdown().await;
                return Ok(());
            }
            _ = store.failed() => {}
        }
        drop(store);
        tracing::error!("the database failed to write (disk full or I/O error); restarting the relay on the same data directory");
        running.shutdown().await;
        pause = if started.elapsed() < Duration::from_secs(60) { (pause * 2).min(Duration::from_secs(30)) } else { Duration::from_millis(200) };
        let mut delay = pause;
        running = loop {
            tokio::select! {
                _ = &mut signal => return Ok(()),
                _ = tokio::time::sleep(delay) => {}
            }
            match start(&config, clock.clone()).await {
                Ok(r) => break r,
                Err(e) => {
                    tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "cannot restart yet");
                    delay = (delay * 2).min(Duration::from_secs(10));
                }
            }
        };
        started = tokio::time::Instant::now();
        tracing::info!("relay restarted");
    }
}

/// Resolves at SIGTERM or SIGINT. The handlers are installed here, at the
/// call, not at the first poll: a signal that comes while the relay is
/// still starting (its ports already open) stops it cleanly too, instead
/// of killing it.
fn wait_for_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let handlers = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()));
    async move {
        match handlers {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}

fn tls_acceptor(config: &Config, now_secs: i64) -> Result<tokio_rustls::TlsAcceptor, String> {
    let (cert, key) = (config.resolve(&config.tls.cert), config.resolve(&config.tls.key));
    if !cert.exists() && !key.exists() && config.tls.self_signed_if_missing {
        tracing::warn!(cert = %cert.display(), "no TLS certificate; generating a self-signed one for one year (set `tls.cert` and `tls.key` for a real one)");
        crate::tls::generate_self_signed(&config.server.hostname, &cert, &key, now_secs).map_err(|e| format!("`tls.cert`: {e}"))?;
    } else if config.tls.self_signed_if_missing && crate::tls::own_certificate_expired(&cert, now_secs) {
        tracing::warn!(cert = %cert.display(), "herald's self-signed certificate has expired; generating a new one for one year");
        crate::tls::generate_self_signed(&config.server.hostname, &cert, &key, now_secs).map_err(|e| format!("`tls.cert`: {e}"))?;
    }
    crate::tls::acceptor(&cert, &key).map_err(|e| format!("`tls.cert`/`tls.key`: {e}"))
}
