//! `[events]` (the event log) and `[[webhook]]` (where events are pushed).

use super::{ConfigError, Unknown};
use crate::events::TypeFilter;
use serde::{Deserialize, Serialize};

pub(super) const EVENT_KEYS: &[&str] = &["retention_days", "reference_header"];
pub(super) const WEBHOOK_KEYS: &[&str] = &["name", "url", "secret", "secret_file", "events", "allow_http", "ca_file", "timeout_secs", "retry_for_hours"];

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct EventsConfig {
    /// Events older than this are forgotten (days).
    pub retention_days: u64,
    /// The header the billing app puts its own reference in; recorded with
    /// the message, carried by its events, removed before signing.
    pub reference_header: String,
    #[serde(flatten, skip_serializing)]
    pub unknown: Unknown,
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self { retention_days: 30, reference_header: "X-Herald-Ref".into(), unknown: Unknown::new() }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct WebhookConfig {
    /// Names the endpoint in the API, CLI, metrics and logs
    /// (letters, digits, `-`, `_`).
    pub name: String,
    pub url: String,
    /// `whsec_<base64>` (Standard Webhooks); or `secret_file`.
    pub secret: String,
    pub secret_file: String,
    /// Types to send (`message.*`, `domain.verified`…); empty: all.
    pub events: Vec<String>,
    /// Allow `http://` to a host that is not loopback.
    pub allow_http: bool,
    /// Extra CA certificates (PEM) to trust for this endpoint.
    pub ca_file: String,
    pub timeout_secs: u64,
    /// Give an event up after this long without a 2xx (hours).
    pub retry_for_hours: u64,
    #[serde(flatten, skip_serializing)]
    pub unknown: Unknown,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            name: String::new(),
            url: String::new(),
            secret: String::new(),
            secret_file: String::new(),
            events: Vec::new(),
            allow_http: false,
            ca_file: String::new(),
            timeout_secs: 10,
            retry_for_hours: 72,
            unknown: Unknown::new(),
        }
    }
}

/// A webhook URL taken apart: `http(s)://host[:port]/path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookUrl {
    pub https: bool,
    pub host: String,
    pub port: u16,
    /// Path and query, at least `/`.
    pub path: String,
}

impl WebhookUrl {
    pub fn parse(url: &str) -> Result<WebhookUrl, String> {
        let (https, rest) = if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(format!("`{url}` is not an http:// or https:// URL"));
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].to_string()),
            None => (rest, "/".to_string()),
        };
        if authority.contains('@') {
            return Err("credentials in the URL are not supported; use the signature".into());
        }
        let default_port = if https { 443 } else { 80 };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or_else(|| format!("`{authority}`: unclosed `[`"))?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| format!("`{p}` is not a port"))?,
                None if after.is_empty() => default_port,
                None => return Err(format!("`{authority}` is not host:port")),
            };
            (h.to_string(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), p.parse().map_err(|_| format!("`{p}` is not a port"))?),
                None => (authority.to_string(), default_port),
            }
        };
        if host.is_empty() {
            return Err(format!("`{url}` has no host"));
        }
        Ok(WebhookUrl { https, host, port, path })
    }

    pub fn is_loopback(&self) -> bool {
        self.host.eq_ignore_ascii_case("localhost") || self.host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }
}

/// The key bytes of a Standard Webhooks `whsec_<base64>` secret; `None`
/// if it is not one (or shorter than 24 bytes: the spec asks 24 to 64).
pub fn webhook_key(secret: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    let key = base64::engine::general_purpose::STANDARD.decode(secret.trim().strip_prefix("whsec_")?).ok()?;
    (key.len() >= 24).then_some(key)
}

impl WebhookConfig {
    /// The signing secret: `secret`, or the first line of `secret_file`.
    pub fn secret(&self, base: &std::path::Path) -> Result<String, String> {
        if !self.secret_file.is_empty() {
            let path = base.join(&self.secret_file);
            return std::fs::read_to_string(&path).map(|s| s.trim().to_string()).map_err(|e| format!("cannot read {}: {e}", path.display()));
        }
        Ok(self.secret.clone())
    }
}

pub(super) fn problems(events: &EventsConfig, hooks: &[WebhookConfig], base: &std::path::Path) -> Vec<ConfigError> {
    let mut out = Vec::new();
    let mut push = |key: String, problem: String, fix: &str| out.push(ConfigError { key, problem, fix: fix.into() });
    if !(1..=3650).contains(&events.retention_days) {
        push("events.retention_days".into(), format!("{} is out of range", events.retention_days), "set it between 1 and 3650 days");
    }
    let h = events.reference_header.trim();
    if h.is_empty() || !h.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
        push("events.reference_header".into(), format!("`{h}` is not a header name"), "use a name like `X-Herald-Ref`");
    }
    let mut names = std::collections::HashSet::new();
    for (i, w) in hooks.iter().enumerate() {
        let key = |k: &str| format!("webhook[{i}].{k}");
        if w.name.is_empty() || !w.name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            push(key("name"), format!("`{}` is not a webhook name", w.name), "use letters, digits, `-` and `_`, e.g. `billing`");
        } else if !names.insert(w.name.clone()) {
            push(key("name"), format!("`{}` is used by another webhook", w.name), "give each webhook its own name");
        }
        match WebhookUrl::parse(&w.url) {
            Err(e) => push(key("url"), e, "write it as `https://billing.example/herald-events`"),
            Ok(u) if !u.https && !u.is_loopback() && !w.allow_http => {
                push(key("url"), format!("`{}` is plain http to a host that is not loopback", w.url), "use https://, or set `allow_http = true` if the network between is trusted")
            }
            Ok(_) => {}
        }
        match w.secret(base) {
            Err(e) => push(key("secret_file"), e, "point it at a file holding the `whsec_…` secret"),
            Ok(s) if webhook_key(&s).is_none() => push(
                if w.secret_file.is_empty() { key("secret") } else { key("secret_file") },
                "the secret is not `whsec_` followed by base64 (at least 24 bytes)".into(),
                "generate one with `echo whsec_$(head -c 32 /dev/urandom | base64)`",
            ),
            Ok(_) => {}
        }
        if let Err(e) = TypeFilter::new(&w.events) {
            push(key("events"), e, "use event types such as `message.*` or `message.failed`");
        }
        if !(1..=120).contains(&w.timeout_secs) {
            push(key("timeout_secs"), format!("{} is out of range", w.timeout_secs), "set it between 1 and 120 seconds");
        }
        if !(1..=24 * 30).contains(&w.retry_for_hours) {
            push(key("retry_for_hours"), format!("{} is out of range", w.retry_for_hours), "set it between 1 and 720 hours");
        }
        if !w.ca_file.is_empty() && !base.join(&w.ca_file).exists() {
            push(key("ca_file"), format!("{} does not exist", base.join(&w.ca_file).display()), "point it at a PEM file of CA certificates, or leave it empty");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let ok = |u: &str, https, host: &str, port, path: &str| assert_eq!(WebhookUrl::parse(u).unwrap(), WebhookUrl { https, host: host.into(), port, path: path.into() }, "{u}");
        ok("https://billing.example/hooks?x=1", true, "billing.example", 443, "/hooks?x=1");
        ok("http://127.0.0.1:8080", false, "127.0.0.1", 8080, "/");
        ok("http://[::1]:9/h", false, "::1", 9, "/h");
        for bad in ["ftp://x", "https://", "http://a:b/", "https://u:p@x/", "http://[::1/"] {
            assert!(WebhookUrl::parse(bad).is_err(), "{bad}");
        }
        assert!(WebhookUrl::parse("http://localhost:1/").unwrap().is_loopback());
        assert!(!WebhookUrl::parse("http://10.0.0.1/").unwrap().is_loopback());
    }
}
