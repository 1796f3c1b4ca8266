//! `relay.toml`: the whole configuration of a relay.
//!
//! Every section has defaults (functions below), so an empty file is a
//! valid loopback relay. Keys nobody knows are collected rather than
//! rejected on the spot, so that [`validate`] can report every mistake in
//! one go, each naming its key and the fix.

mod bounces;
mod dns_server;
mod domains;
mod events;
mod suppression;
mod lenient;
mod outbound;
mod validate;

pub use bounces::BouncesConfig;
pub use dns_server::DnsServerConfig;
pub use events::{EventsConfig, WebhookConfig, WebhookUrl, webhook_key};
pub use suppression::{AtRcpt, SuppressionConfig, SuppressionScope};
pub use domains::DomainsConfig;
pub use outbound::{AdminConfig, DeliveryConfig, DnsConfig, IdentityConfig, OutboundTls, QueueConfig, RouteConfig, parse_duration};

pub use validate::{ConfigError, ConfigErrors, is_domain, is_hostname, validate};

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The repo's `relay.toml`, compiled in: what `herald serve` runs when
/// there is no configuration file.
pub const EMBEDDED_DEFAULT: &str = include_str!("../../relay.toml");

/// Unknown keys of one table, kept for [`validate`] to report.
pub type Unknown = BTreeMap<String, toml::Value>;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    pub server: ServerConfig,
    pub tls: TlsConfig,
    #[serde(rename = "listener")]
    pub listeners: Vec<ListenerConfig>,
    #[serde(rename = "user")]
    pub users: Vec<UserConfig>,
    pub relay: RelayConfig,
    pub limits: LimitsConfig,
    pub store: StoreConfig,
    pub log: LogConfig,
    pub dns: DnsConfig,
    pub identity: IdentityConfig,
    pub queue: QueueConfig,
    pub delivery: DeliveryConfig,
    #[serde(rename = "route")]
    pub routes: Vec<RouteConfig>,
    pub admin: AdminConfig,
    pub domains: DomainsConfig,
    pub bounces: BouncesConfig,
    pub dns_server: DnsServerConfig,
    pub events: EventsConfig,
    pub suppression: SuppressionConfig,
    #[serde(rename = "webhook")]
    pub webhooks: Vec<WebhookConfig>,
    #[serde(flatten, skip_serializing)]
    pub unknown: Unknown,
    /// Directory relative paths are resolved against (the config file's).
    #[serde(skip)]
    pub base_dir: PathBuf,
    /// Values of the wrong type or range, set aside while reading; reported
    /// by [`validate`] with everything else.
    #[serde(skip)]
    pub read_errors: Vec<ConfigError>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerConfig {
    /// Our name: in the greeting, in EHLO replies and in Received headers.
    pub hostname: String,
    /// Where the sled database (spool, queue, domains, keys) lives.
    pub data_dir: PathBuf,
    /// How long sessions in the middle of DATA may take to finish on
    /// shutdown before they are cut off.
    pub shutdown_grace_secs: u64,
    #[serde(flatten, skip_serializing)]
    pub unknown: Unknown,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            hostname: "relay.localhost".into(),
            data_dir: "./data".into(),
            shutdown_grace_secs: 30,
            unknown: Unknown::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct TlsConfig {
    /// PEM certificate chain presented to submitting clients.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) for `cert`.
    pub key: PathBuf,
    /// Generate a self-signed pair at `cert`/`key` when both are absent.
    pub self_signed_if_missing: bool,
    #[serde(flatten, skip_serializing)]
    pub unknown: Unknown,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            cert: "certs/relay.crt".into(),
            key: "certs/relay.key".into(),
            self_signed_if_missing: true,
            unknown: Unknown::new(),
        }
    }
}

/// How a listener does TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ListenerTls {
    /// Plain text, STARTTLS offered (port 587 style).
    Starttls,
    /// TLS from the first byte (port 465 style, RFC 8314).
    Implicit,
    /// Plain text only; for trusted networks.
    None,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ListenerConfig {
    pub address: String,
    pub tls: ListenerTls,
    /// Offer AUTH on a connection that is not (yet) encrypted.
    pub allow_auth_without_tls: bool,
    #[serde(flatten, skip_serializing)]
    pub unknown: Unknown,
}

impl Default for ListenerConfig {
    fn default() -> Self {
        Self {
            address: "127.0.0.1:2525".into(),
            tls: ListenerTls::Starttls,
            allow_auth_without_tls: false,
            unknown: Unknown::new(),
        }
    }
}

impl ListenerConfig {
    /// The parsed address; only valid after [`validate`] passed.
    pub fn socket_addr(&self) -> SocketAddr {
        self.address.parse().unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct UserConfig {
    pub name: String,
    /// A PHC string from `herald passwd` (argon2id).
    pub password_hash: String,
    #[serde(flatten, skip_serializing)]
    pub unknown: Unknown,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RelayConfig {
    /// Networks (CIDR) whose clients may submit without AUTH.
    pub allow_networks: Vec<String>,
    #[serde(flatten, skip_serializing)]
    pub unknown: Unknown,
}

impl RelayConfig {
    /// The parsed networks; only complete after [`validate`] passed.
    pub fn networks(&self) -> Vec<ipnet::IpNet> {
        self.allow_networks.iter().filter_map(|n| parse_network(n).ok()).collect()
    }
}

/// Parses `10.0.0.0/8` or a bare address (a /32 or /128).
pub fn parse_network(text: &str) -> Result<ipnet::IpNet, String> {
    if let Ok(net) = text.parse::<ipnet::IpNet>() {
        return Ok(net.trunc());
    }
    text.parse::<std::net::IpAddr>()
        .map(ipnet::IpNet::from)
        .map_err(|_| format!("`{text}` is neither an address nor a network in CIDR form"))
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct LimitsConfig {
    /// Largest message accepted, in bytes (advertised with SIZE).
    pub max_message_size: usize,
    pub max_recipients: usize,
    /// Longest command line, in bytes, CRLF included (RFC 5321 §4.5.3.1.4
    /// sets 512 as the floor; smtp-proto caps it at 4096).
    pub max_line_length: usize,
    /// A whole command line must arrive within this many seconds.
    pub command_timeout_secs: u64,
    /// The longest pause in DATA, and the allowance a message gets before
    /// `data_min_bytes_per_sec` applies.
    pub data_timeout_secs: u64,
    /// A message must arrive within `data_timeout_secs` plus its size
    /// divided by this rate.
    pub data_min_bytes_per_sec: u64,
    /// A session ends (421 4.4.2) after this many seconds, whatever it does.
    pub max_session_secs: u64,
    pub max_connections: usize,
    /// Messages received at once on the submission listeners, from the
    /// `354` to the reply after the body; a session beyond waits for its
    /// `354`. 0: four per CPU core.
    pub max_concurrent_data: usize,
    /// Concurrent sessions from one client address (421 4.7.0 beyond).
    pub max_connections_per_ip: usize,
    /// Failed AUTH attempts before the connection is closed.
    pub max_auth_failures: u32,
    /// Failed AUTH attempts from one address (IPv6: one /64), across
    /// connections, within `auth_window_secs`, before it is locked out.
    pub auth_failures_per_ip: u32,
    pub auth_window_secs: u64,
    /// How long a locked-out address gets 454 4.7.0 to AUTH.
    pub auth_lockout_secs: u64,
    /// The wait before checking a password after one recent failure from
    /// the address; it doubles with each further failure (at most 8 s).
    pub auth_delay_ms: u64,
    /// What a bare LF in a message means (DESIGN "Submission").
    pub bare_newline: BareNewline,
    #[serde(flatten, skip_serializing)]
    pub unknown: Unknown,
}

/// `limits.bare_newline`: a LF not preceded by CR inside a message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BareNewline {
    /// Read as CRLF (Postfix ≥ 3.9's default); only `<CRLF>.<CRLF>` ends DATA.
    #[default]
    Normalize,
    /// Refuse the message with 550 5.5.2.
    Reject,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_message_size: 25 * 1024 * 1024,
            max_recipients: 100,
            max_line_length: 2048,
            command_timeout_secs: 300,
            data_timeout_secs: 600,
            data_min_bytes_per_sec: 1024,
            max_session_secs: 3600,
            max_connections: 500,
            max_concurrent_data: 0,
            max_connections_per_ip: 50,
            max_auth_failures: 3,
            auth_failures_per_ip: 10,
            auth_window_secs: 600,
            auth_lockout_secs: 900,
            auth_delay_ms: 500,
            bare_newline: BareNewline::Normalize,
            unknown: Unknown::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct StoreConfig {
    /// sled's page cache, in MiB (16 by default: with 10 000 messages of
    /// 40 KB queued the relay stays near 90 MiB resident; 32 took it past
    /// 100 MB). Queued messages beyond it stay on disk.
    pub cache_mb: u64,
    /// Below this much free space (MiB) on the data directory's
    /// filesystem, new mail is refused with 452 4.3.1; 0 turns it off.
    pub min_free_mb: u64,
    #[serde(flatten, skip_serializing)]
    pub unknown: Unknown,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self { cache_mb: 16, min_free_mb: 256, unknown: Unknown::new() }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct LogConfig {
    /// A tracing filter: `info`, `herald=debug`, …
    pub level: String,
    #[serde(flatten, skip_serializing)]
    pub unknown: Unknown,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { level: "info".into(), unknown: Unknown::new() }
    }
}

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    #[error("{path}: {errors}")]
    Invalid { path: String, errors: ConfigErrors },
}

impl Config {
    /// Parses TOML text; `origin` names it in errors, `base_dir` anchors
    /// relative paths.
    /// Only TOML syntax errors fail here; values of the wrong type are
    /// set aside for [`validate`] to report with every other mistake.
    pub fn parse(text: &str, origin: &str, base_dir: &Path) -> Result<Self, LoadError> {
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| LoadError::Parse { path: origin.to_string(), message: e.to_string() })?;
        let (mut config, read_errors) = lenient::read(table);
        config.read_errors = read_errors;
        if config.listeners.is_empty() && !text.contains("[[listener]]") {
            config.listeners = default_listeners();
        }
        config.base_dir = base_dir.to_path_buf();
        Ok(config)
    }

    /// Loads `path`, or — when `path` is `None` — `./relay.toml` if it
    /// exists, else the embedded default. The result is validated.
    pub fn load(path: Option<&Path>) -> Result<Self, LoadError> {
        let (text, origin, base) = match path {
            Some(p) => read(p)?,
            None if Path::new("relay.toml").exists() => read(Path::new("relay.toml"))?,
            None => (EMBEDDED_DEFAULT.to_string(), "embedded relay.toml".to_string(), PathBuf::from(".")),
        };
        let config = Self::parse(&text, &origin, &base)?;
        validate(&config).map_err(|errors| LoadError::Invalid { path: origin, errors })?;
        Ok(config)
    }

    /// A path from the config, resolved against the config file's folder.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() { p.to_path_buf() } else { self.base_dir.join(p) }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.resolve(&self.server.data_dir)
    }

    /// The effective configuration as TOML, secrets redacted, for the
    /// start-up log and `herald config check`.
    pub fn redacted(&self) -> String {
        let mut copy = self.clone();
        for user in &mut copy.users {
            user.password_hash = "<redacted>".into();
        }
        for route in &mut copy.routes {
            if route.password.is_some() {
                route.password = Some("<redacted>".into());
            }
        }
        if !copy.admin.token.is_empty() {
            copy.admin.token = "<redacted>".into();
        }
        for hook in &mut copy.webhooks {
            if !hook.secret.is_empty() {
                hook.secret = "<redacted>".into();
            }
        }
        toml::to_string(&copy).unwrap_or_else(|e| format!("<unprintable: {e}>"))
    }
}

fn read(path: &Path) -> Result<(String, String, PathBuf), LoadError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| LoadError::Read { path: path.display().to_string(), source })?;
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let base = if base.as_os_str().is_empty() { PathBuf::from(".") } else { base };
    Ok((text, path.display().to_string(), base))
}

fn default_listeners() -> Vec<ListenerConfig> {
    vec![
        ListenerConfig::default(),
        ListenerConfig { address: "127.0.0.1:4650".into(), tls: ListenerTls::Implicit, ..Default::default() },
    ]
}
