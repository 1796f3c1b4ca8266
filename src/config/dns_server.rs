//! `[dns_server]`: the embedded authoritative DNS server for the operator
//! zone (`domains.zone`). Off by default: with no `addresses` the operator
//! publishes `herald dns zone` by hand.

use super::{ConfigError, Unknown, is_hostname, parse_duration};
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// Every key of `[dns_server]`, for the unknown-key check.
pub(super) const KEYS: &[&str] = &[
    "addresses",
    "nameservers",
    "hostmaster",
    "ttl",
    "negative_ttl",
    "secondaries",
    "rate_limit",
];

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct DnsServerConfig {
    /// `ip:port` to answer on, over UDP and TCP each; empty = off.
    /// Production: `["0.0.0.0:53", "[::]:53"]` on the inbound host.
    pub addresses: Vec<String>,
    /// NS names at the zone apex (the names the parent delegates to);
    /// the first is the SOA's primary. Empty: `server.hostname`.
    pub nameservers: Vec<String>,
    /// SOA RNAME as a mail address; empty: `hostmaster@<zone>`.
    pub hostmaster: String,
    /// TTL of every record served (and printed by `herald dns zone`).
    pub ttl: String,
    /// How long resolvers may cache "no such name / no such record"
    /// (SOA minimum, RFC 2308).
    pub negative_ttl: String,
    /// Addresses of secondary servers: they may transfer the zone (AXFR)
    /// and are sent a NOTIFY when it changes. `ip` or `ip:port`.
    pub secondaries: Vec<String>,
    /// Responses per second to one client address; 0 = unlimited.
    pub rate_limit: u32,
    #[serde(flatten, skip_serializing)]
    pub unknown: Unknown,
}

impl Default for DnsServerConfig {
    fn default() -> Self {
        Self {
            addresses: Vec::new(),
            nameservers: Vec::new(),
            hostmaster: String::new(),
            ttl: "1h".into(),
            negative_ttl: "5m".into(),
            secondaries: Vec::new(),
            rate_limit: 100,
            unknown: Unknown::new(),
        }
    }
}

impl DnsServerConfig {
    pub fn enabled(&self) -> bool {
        !self.addresses.is_empty()
    }

    /// Parsed `ttl` in seconds; the default when invalid (validation reports it).
    pub fn ttl_secs(&self) -> u32 {
        secs(&self.ttl, 3600)
    }

    pub fn negative_ttl_secs(&self) -> u32 {
        secs(&self.negative_ttl, 300)
    }

    /// The parsed listen addresses (invalid ones are left out; validation reports them).
    pub fn socket_addrs(&self) -> Vec<SocketAddr> {
        self.addresses.iter().filter_map(|a| a.trim().parse().ok()).collect()
    }

    /// The parsed secondaries (port 53 when none is given).
    pub fn secondary_addrs(&self) -> Vec<SocketAddr> {
        self.secondaries.iter().filter_map(|s| secondary(s)).collect()
    }
}

fn secs(text: &str, default: u32) -> u32 {
    parse_duration(text).ok().and_then(|d| u32::try_from(d.as_secs()).ok()).unwrap_or(default)
}

fn secondary(text: &str) -> Option<SocketAddr> {
    let text = text.trim();
    text.parse::<SocketAddr>()
        .ok()
        .or_else(|| text.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 53)))
}

/// Every problem in `[dns_server]` (unknown keys aside), each naming its key.
pub(super) fn problems(d: &DnsServerConfig) -> Vec<ConfigError> {
    let mut out = Vec::new();
    let mut push = |key: &str, problem: String, fix: &str| {
        out.push(ConfigError {
            key: format!("dns_server.{key}"),
            problem,
            fix: fix.to_string(),
        })
    };
    for a in &d.addresses {
        if a.trim().parse::<SocketAddr>().is_err() {
            push(
                "addresses",
                format!("`{a}` is not an IP address with a port"),
                "write `0.0.0.0:53` in production or `127.0.0.1:5353` on loopback; `[]` turns the server off",
            );
        }
    }
    for n in &d.nameservers {
        if !is_hostname(n.trim().trim_end_matches('.')) {
            push(
                "nameservers",
                format!("`{n}` is not a host name"),
                "list the NS names your parent zone delegates to, e.g. `ns1.relay.example.net`",
            );
        }
    }
    if !d.hostmaster.is_empty() && !d.hostmaster.contains('@') {
        push(
            "hostmaster",
            format!("`{}` is not a mail address", d.hostmaster),
            "write `hostmaster@relay.example.net`, or leave it empty",
        );
    }
    for s in &d.secondaries {
        if secondary(s).is_none() {
            push(
                "secondaries",
                format!("`{s}` is not an IP address"),
                "write the secondary's address, `192.0.2.53` or `192.0.2.53:5353`",
            );
        }
    }
    for (key, text, min) in [("ttl", &d.ttl, 1u64), ("negative_ttl", &d.negative_ttl, 1)] {
        match parse_duration(text) {
            Ok(v) if v < Duration::from_secs(min) || v.as_secs() > u64::from(u32::MAX) => push(
                key,
                format!("`{text}` is out of range"),
                "use a duration between `1s` and a few days, e.g. `1h`",
            ),
            Ok(_) => {}
            Err(e) => push(key, e, "write a duration like `5m` or `1h`"),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_off() {
        let d = DnsServerConfig::default();
        assert_eq!(problems(&d), Vec::new());
        assert!(!d.enabled());
        assert_eq!((d.ttl_secs(), d.negative_ttl_secs()), (3600, 300));
    }

    #[test]
    fn each_problem_names_its_key() {
        type Tweak = fn(&mut DnsServerConfig);
        let cases: &[(Tweak, &str, &str)] = &[
            (|d| d.addresses = vec!["localhost:53".into()], "dns_server.addresses", "not an IP address"),
            (|d| d.nameservers = vec!["ns 1".into()], "dns_server.nameservers", "not a host name"),
            (|d| d.hostmaster = "hostmaster".into(), "dns_server.hostmaster", "not a mail address"),
            (|d| d.secondaries = vec!["ns2.example".into()], "dns_server.secondaries", "not an IP address"),
            (|d| d.ttl = "0s".into(), "dns_server.ttl", "out of range"),
            (|d| d.negative_ttl = "soon".into(), "dns_server.negative_ttl", "not a duration"),
        ];
        for (tweak, key, words) in cases {
            let mut d = DnsServerConfig::default();
            tweak(&mut d);
            let errs = problems(&d);
            let hit = errs.iter().find(|e| e.key == *key).unwrap_or_else(|| panic!("no error for {key} in {errs:?}"));
            assert!(hit.to_string().contains(words), "{key}: want `{words}` in {hit}");
        }
    }

    #[test]
    fn secondaries_default_to_port_53() {
        let d = DnsServerConfig {
            secondaries: vec!["192.0.2.53".into(), "127.0.0.1:5300".into()],
            ..Default::default()
        };
        assert_eq!(d.secondary_addrs(), ["192.0.2.53:53".parse().unwrap(), "127.0.0.1:5300".parse().unwrap()]);
    }
}
