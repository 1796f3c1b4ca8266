//! Configuration of the outbound side: DNS, the relay's own identity,
//! the queue, delivery, static routes and the admin API.

use super::Unknown;
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct DnsConfig {
    /// Nameservers as `ip:port` (UDP and TCP); empty = the system's.
    pub nameservers: Vec<String>,
    pub timeout_secs: u64,
    pub attempts: usize,
    /// Cache answers (by their TTL).
    pub cache: bool,
    #[serde(flatten, skip_serializing)]
    pub unknown: Unknown,
}

impl Default for DnsConfig {
    fn default() -> Self {
        Self { nameservers: Vec::new(), timeout_secs: 5, attempts: 2, cache: true, unknown: Unknown::new() }
    }
}

/// The relay's own sending identity, used for domains that are not (or no
/// longer) verified.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct IdentityConfig {
    /// `d=` of the relay's DKIM signature; `noreply@<domain>` in a rewritten From.
    pub domain: String,
    /// Envelope senders become `bounces+<id>@<bounce_domain>`.
    pub bounce_domain: String,
    /// Selector of the relay's own DKIM key.
    pub dkim_selector: String,
    /// Display name suffix of a rewritten From: `"Acme via <relay_name>"`.
    pub relay_name: String,
    /// Rewrite From when the author domain's DMARC policy is quarantine/reject.
    pub rewrite_from: bool,
    #[serde(flatten, skip_serializing)]
    pub unknown: Unknown,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        Self {
            domain: "relay.localhost".into(),
            bounce_domain: "bounces.relay.localhost".into(),
            dkim_selector: "herald".into(),
            relay_name: "Herald Relay".into(),
            rewrite_from: true,
            unknown: Unknown::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct QueueConfig {
    /// Delays between attempts (`30s`, `5m`, `2h`, `1d`); the last repeats.
    pub retry_schedule: Vec<String>,
    /// Give up on a recipient this long after acceptance.
    pub lifetime: String,
    /// Keep finished messages this long for `herald queue show` / the API.
    pub retire_after: String,
    /// Delivery attempts in flight at once, across all destinations.
    pub workers: usize,
    /// Connections in flight at once to one destination domain.
    pub per_domain: usize,
    /// Send a delivery status notification to the envelope sender on failure.
    pub dsn: bool,
    #[serde(flatten, skip_serializing)]
    pub unknown: Unknown,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            retry_schedule: ["1m", "5m", "15m", "30m", "1h", "2h", "4h"].map(String::from).to_vec(),
            lifetime: "5d".into(),
            retire_after: "7d".into(),
            workers: 64,
            // Postfix's `default_destination_concurrency_limit`.
            per_domain: 20,
            dsn: true,
            unknown: Unknown::new(),
        }
    }
}

impl QueueConfig {
    /// Parsed schedule; only complete after validation passed.
    pub fn schedule(&self) -> Vec<Duration> {
        self.retry_schedule.iter().filter_map(|s| parse_duration(s).ok()).collect()
    }

    pub fn lifetime(&self) -> Duration {
        parse_duration(&self.lifetime).unwrap_or(Duration::from_secs(5 * 86400))
    }

    pub fn retire_after(&self) -> Duration {
        parse_duration(&self.retire_after).unwrap_or(Duration::from_secs(7 * 86400))
    }
}

/// TLS towards a receiving server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutboundTls {
    /// STARTTLS when offered; plain text otherwise. Certificates are not
    /// verified (RFC 7435 opportunistic security).
    Opportunistic,
    /// STARTTLS with a valid certificate for the host, or no delivery.
    Required,
    /// Never TLS.
    Disabled,
    /// TLS from the first byte (smarthosts on port 465).
    Implicit,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct DeliveryConfig {
    /// Port used for MX hosts (25; tests point it elsewhere).
    pub mx_port: u16,
    /// TLS policy for MX deliveries (routes have their own).
    pub tls: OutboundTls,
    pub connect_timeout_secs: u64,
    pub command_timeout_secs: u64,
    /// Messages sent over one connection before it is closed.
    pub max_messages_per_connection: usize,
    /// How long an idle connection is kept for the next message.
    pub idle_secs: u64,
    #[serde(flatten, skip_serializing)]
    pub unknown: Unknown,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            mx_port: 25,
            tls: OutboundTls::Opportunistic,
            connect_timeout_secs: 30,
            command_timeout_secs: 300,
            max_messages_per_connection: 100,
            idle_secs: 5,
            unknown: Unknown::new(),
        }
    }
}

/// A static route: mail for `domain` (or `*`) goes to `host:port`, not MX.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct RouteConfig {
    pub domain: String,
    pub host: String,
    pub port: u16,
    pub tls: OutboundTls,
    /// AUTH for a smarthost.
    pub username: Option<String>,
    pub password: Option<String>,
    #[serde(flatten, skip_serializing)]
    pub unknown: Unknown,
}

impl Default for RouteConfig {
    fn default() -> Self {
        Self { domain: "*".into(), host: String::new(), port: 25, tls: OutboundTls::Opportunistic, username: None, password: None, unknown: Unknown::new() }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct AdminConfig {
    /// HTTP API address; keep it on loopback or behind a proxy.
    pub address: String,
    /// Bearer token the billing app and the CLI present. Empty: API off.
    pub token: String,
    #[serde(flatten, skip_serializing)]
    pub unknown: Unknown,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self { address: "127.0.0.1:8025".into(), token: String::new(), unknown: Unknown::new() }
    }
}

/// Parses `90s`, `5m`, `2h`, `3d` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (num, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let n: u64 = num.parse().map_err(|_| format!("`{text}` is not a duration"))?;
    let secs = match unit.trim() {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86400,
        other => return Err(format!("`{text}`: unknown unit `{other}` (use s, m, h or d)")),
    };
    Ok(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let cases = [("30s", Ok(30)), ("5m", Ok(300)), ("2h", Ok(7200)), ("1d", Ok(86400)), ("45", Ok(45)), ("5 m", Ok(300)), ("m", Err(())), ("5w", Err(())), ("", Err(()))];
        for (text, want) in cases {
            assert_eq!(parse_duration(text).map(|d| d.as_secs()).map_err(|_| ()), want, "{text}");
        }
    }
}
