//! SMTP submission: where the billing app hands mail to the relay.
//!
//! `listener` accepts connections (plain, STARTTLS-capable or implicit
//! TLS) and bounds their number; `session` runs one SMTP conversation and
//! dispatches each command to its verb's module (`ehlo`, `auth`, `mail`,
//! `rcpt`, `data`) for the server kit's loop (`crate::smtpd`); handlers
//! return [`Reply`] values. `throttle` limits AUTH failures per address.

mod auth;
mod data;
mod ehlo;
mod listener;
mod mail;
mod passwords;
mod rcpt;
mod session;
pub mod slots;
pub mod throttle;

// The kit's parts, where other modules found them before the kit.
pub use crate::smtpd::{Reply, reply, stopping};
pub use passwords::{Users, hash_password};
pub use listener::{Acceptors, Listener, spawn_listeners};
pub use session::Session;
pub use throttle::Throttle;

use crate::clock::SharedClock;
use crate::config::{Config, ListenerTls, LimitsConfig};
use crate::store::Store;
use std::sync::Arc;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

/// What every session shares: configuration, the spool, TLS, the clock.
pub struct Context {
    pub hostname: String,
    pub limits: LimitsConfig,
    pub users: Users,
    pub allow_networks: Vec<ipnet::IpNet>,
    pub store: Store,
    /// Where accepted messages go: spooled, and sent on from memory.
    pub intake: crate::queue::Intake,
    pub clock: SharedClock,
    pub tls: Option<TlsAcceptor>,
    /// Customer domains, for the identity decision at acceptance.
    pub domains: Option<crate::domains::Registry>,
    /// Flips to `true` when the relay is shutting down.
    pub shutdown: watch::Receiver<bool>,
    /// `events.reference_header`: recorded, then taken out of the message.
    pub reference_header: String,
    /// Hard-bounced recipients, refused at RCPT or failed at acceptance.
    pub suppressions: Option<crate::suppression::SuppressionList>,
    /// The kit's limits for these sessions.
    pub rules: crate::smtpd::Rules,
    /// AUTH failures per client address, across connections.
    pub throttle: Throttle,
    /// Messages received at once (`limits.max_concurrent_data`).
    pub slots: slots::Slots,
}

impl Context {
    pub fn new(
        config: &Config,
        store: Store,
        intake: crate::queue::Intake,
        clock: SharedClock,
        tls: Option<TlsAcceptor>,
        domains: Option<crate::domains::Registry>,
        shutdown: watch::Receiver<bool>,
        counters: Arc<crate::smtpd::Counters>,
    ) -> Self {
        Self {
            rules: crate::smtpd::Rules::from_limits(&config.server.hostname, &config.limits, counters.clone()),
            throttle: Throttle::from_limits(&config.limits, clock.clone(), counters.clone()),
            slots: slots::Slots::new(
                slots::Slots::count(config.limits.max_concurrent_data, std::thread::available_parallelism().map_or(1, |n| n.get())),
                slots::LEASE,
                counters,
            ),
            hostname: config.server.hostname.clone(),
            limits: config.limits.clone(),
            users: Users::from_config(&config.users),
            allow_networks: config.relay.networks(),
            store,
            intake,
            clock,
            tls,
            domains,
            shutdown,
            reference_header: config.events.reference_header.clone(),
            suppressions: None,
        }
    }

    /// Checks recipients against `list` from now on.
    pub fn with_suppressions(mut self, list: crate::suppression::SuppressionList) -> Self {
        self.suppressions = Some(list);
        self
    }
}

impl Context {
    /// The identity decision for mail From `from_domain`. A registry read
    /// error falls back to the relay identity (mail still flows) and is logged.
    pub fn decide(&self, from_domain: &str) -> crate::policy::Decision {
        let covering = match &self.domains {
            Some(registry) => match registry.covering(from_domain) {
                Ok(found) => found.map(|(record, selector)| crate::policy::Covering {
                    return_path: record.return_path_host(),
                    state: record.state.to_string(),
                    domain: record.domain,
                    selector,
                }),
                Err(e) => {
                    tracing::error!(error = %e, from_domain, "cannot read the domain registry; sending as the relay");
                    None
                }
            },
            None => None,
        };
        crate::policy::decide(from_domain, covering)
    }
}

/// Per-listener facts a session needs.
#[derive(Debug, Clone, Copy)]
pub struct ListenerMode {
    pub tls: ListenerTls,
    pub allow_auth_without_tls: bool,
}

pub type SharedContext = Arc<Context>;
