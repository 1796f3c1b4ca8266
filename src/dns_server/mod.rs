//! The embedded authoritative DNS server for the operator zone
//! (`domains.zone`), on when `dns_server.addresses` lists any.
//!
//! It answers straight from the live domain registry: a domain added or a
//! key rotated is served with the next query (the [`Zone`] snapshot is
//! rebuilt whenever the registry's change counter moved), with a SOA serial
//! that changes when — and only when — the records do. Configured
//! secondaries may transfer the zone and get a NOTIFY on every change, so
//! an operator can keep their usual DNS provider as a secondary.
//!
//! - [`snapshot`]: the zone as records and the answer to a question, pure.
//! - [`handler`]: hickory-server's request handler (guards, AXFR, EDNS).
//! - [`ratelimit`]: per-client response rate limiting.
//! - [`notify`]: NOTIFY to secondaries (RFC 1996).

pub mod handler;
pub mod notify;
pub mod ratelimit;
pub mod snapshot;

use crate::config::DnsServerConfig;
use crate::domains::Domains;
use hickory_server::server::Server;
use snapshot::{Apex, Snapshot};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// A TCP connection with no query for this long is closed.
const TCP_IDLE: Duration = Duration::from_secs(10);

/// The operator zone as the server sees it: the registry, and the last
/// snapshot built from it.
pub struct Zone {
    domains: Domains,
    apex: Apex,
    cache: Mutex<Option<(u64, Arc<Snapshot>)>>,
}

impl Zone {
    pub fn new(domains: Domains, apex: Apex) -> Self {
        Self {
            domains,
            apex,
            cache: Mutex::new(None),
        }
    }

    /// The apex of `config`: NS names default to `hostname`, the
    /// hostmaster to `hostmaster@<zone>`.
    pub fn apex(config: &DnsServerConfig, zone: &str, hostname: &str, negative_ttl: u32) -> Apex {
        let nameservers = if config.nameservers.is_empty() {
            vec![hostname.to_string()]
        } else {
            config.nameservers.clone()
        };
        let hostmaster = match config.hostmaster.trim() {
            "" => format!("hostmaster@{zone}"),
            h => h.to_string(),
        };
        Apex {
            zone: zone.to_string(),
            nameservers,
            hostmaster,
            negative_ttl,
        }
    }

    /// The zone now: the cached snapshot, or a new one when the registry
    /// changed since it was built.
    pub fn current(&self) -> Result<Arc<Snapshot>, String> {
        let registry = self.domains.registry();
        let generation = registry.generation();
        let mut cache = self.cache.lock().map_err(|_| "zone cache poisoned".to_string())?;
        if let Some((built, snapshot)) = cache.as_ref()
            && *built == generation
        {
            return Ok(snapshot.clone());
        }
        let content = self.domains.zone_content().map_err(|e| e.to_string())?;
        let digest = snapshot::digest(&content, &self.apex.zone);
        let now = registry.now_ms() / 1000;
        let serial = registry
            .zone_serial(digest, |old| snapshot::next_serial(old, now))
            .map_err(|e| e.to_string())?;
        let built = Arc::new(Snapshot::build(&content, &self.apex, serial)?);
        *cache = Some((generation, built.clone()));
        Ok(built)
    }
}

/// A running embedded DNS server.
pub struct DnsServer {
    /// The bound addresses (UDP and TCP each), in `dns_server.addresses` order.
    pub addrs: Vec<SocketAddr>,
    server: Server<handler::Handler>,
    notifier: tokio::task::JoinHandle<()>,
}

impl DnsServer {
    /// Binds every address of `config` over UDP and TCP and starts
    /// answering for the zone of `domains`. Errors name the config key.
    pub async fn start(config: &DnsServerConfig, domains: Domains, hostname: &str, shutdown: watch::Receiver<bool>) -> Result<DnsServer, String> {
        let zone_name = domains.registry().config().zone();
        let apex = Zone::apex(config, &zone_name, hostname, config.negative_ttl_secs());
        let zone = Arc::new(Zone::new(domains, apex));
        zone.current().map_err(|e| format!("`dns_server`: cannot build the zone {zone_name}: {e}"))?;
        let secondaries = config.secondary_addrs();
        let handler = handler::Handler {
            zone: zone.clone(),
            limiter: Mutex::new(ratelimit::RateLimiter::new(config.rate_limit)),
            secondaries: secondaries.iter().map(SocketAddr::ip).collect(),
        };
        let mut server = Server::new(handler);
        let mut addrs = Vec::new();
        for (i, addr) in config.socket_addrs().into_iter().enumerate() {
            let at = |e: std::io::Error| format!("`dns_server.addresses[{i}]`: cannot listen on {addr}: {e}");
            let (udp, tcp) = bind_pair(addr).await.map_err(at)?;
            let bound = udp.local_addr().map_err(at)?;
            server.register_socket(udp);
            server.register_listener(tcp, TCP_IDLE, 64);
            tracing::info!(address = %bound, zone = %zone_name, "embedded DNS server answering (UDP and TCP)");
            addrs.push(bound);
        }
        let notifier = tokio::spawn(notify::run(zone, secondaries, shutdown));
        Ok(DnsServer { addrs, server, notifier })
    }

    /// Stops answering.
    pub async fn shutdown(mut self) {
        if let Err(e) = self.server.shutdown_gracefully().await {
            tracing::debug!(error = %e, "embedded DNS server stopped with an error");
        }
        let _ = self.notifier.await;
    }
}

/// UDP and TCP sockets on the same address. With port 0 the kernel picks
/// the UDP port, and that port may already be taken for TCP by someone
/// else: then another port is tried (a few times).
async fn bind_pair(addr: SocketAddr) -> std::io::Result<(tokio::net::UdpSocket, tokio::net::TcpListener)> {
    let tries = if addr.port() == 0 { 20 } else { 1 };
    let mut last = None;
    for _ in 0..tries {
        let udp = tokio::net::UdpSocket::bind(addr).await?;
        match tokio::net::TcpListener::bind(udp.local_addr()?).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no free port")))
}
