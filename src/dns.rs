//! The relay's one DNS resolver: MX, address, CNAME and TXT lookups with
//! answers sorted into "exists", "does not exist" and "try again later".
//!
//! Every lookup keeps three outcomes apart, because they lead to different
//! decisions: NXDOMAIN (the name does not exist), NODATA (the name exists but
//! has no record of the asked type) and a temporary failure (SERVFAIL,
//! REFUSED, timeout, network trouble). A temporary failure is never reported
//! as a missing record: a deferral must not turn into a bounce or a
//! "domain not verified" just because a nameserver was slow.
//!
//! Names are always queried as fully qualified (a trailing dot is added), so
//! no search domain from `/etc/resolv.conf` is ever appended.

use crate::config::DnsConfig;
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError as HickoryDnsError, NetError, NoRecords};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::{Name, RData, RecordType};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// A cheap-to-clone handle on the shared resolver.
#[derive(Clone, Debug)]
pub struct Dns {
    resolver: TokioResolver,
}

/// One mail exchanger of a domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MxHost {
    /// Lower is tried first.
    pub preference: u16,
    /// Host name, lowercased, without trailing dot; `""` for a null MX.
    pub exchange: String,
}

impl MxHost {
    /// A null MX (`0 .`, RFC 7505): the domain accepts no mail.
    pub fn is_null(&self) -> bool {
        self.exchange.is_empty()
    }
}

/// Why a lookup gave no records.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    /// NXDOMAIN: the name does not exist (also used for a string that cannot
    /// be a domain name at all).
    #[error("the name does not exist (NXDOMAIN)")]
    NxDomain,
    /// NODATA: the name exists but has no record of the asked type.
    #[error("the name has no record of this type (NODATA)")]
    NoData,
    /// SERVFAIL, REFUSED, timeout, network error…: ask again later.
    #[error("temporary DNS failure: {0}")]
    Temporary(String),
}

impl Dns {
    /// System config (`/etc/resolv.conf`) when `nameservers` is empty, else
    /// exactly those servers over UDP and TCP (and no `/etc/hosts`).
    /// `attempts` counts tries per query; `cache = false` disables caching.
    pub fn from_config(cfg: &DnsConfig) -> Result<Dns, String> {
        let mut builder = if cfg.nameservers.is_empty() {
            TokioResolver::builder_tokio().map_err(|e| {
                format!("dns.nameservers is empty and the system resolver configuration cannot be read ({e}); list nameservers in dns.nameservers")
            })?
        } else {
            let servers = cfg.nameservers.iter().map(|s| nameserver(s)).collect::<Result<Vec<_>, _>>()?;
            let mut b = TokioResolver::builder_with_config(
                ResolverConfig::from_name_servers(servers),
                TokioRuntimeProvider::default(),
            );
            b.options_mut().use_hosts_file = ResolveHosts::Never;
            b
        };
        let opts = builder.options_mut();
        opts.timeout = Duration::from_secs(cfg.timeout_secs.max(1));
        // hickory counts retries after the first try; the config counts tries.
        opts.attempts = cfg.attempts.saturating_sub(1);
        if !cfg.cache {
            opts.cache_size = 0;
        }
        let resolver = builder.build().map_err(|e| format!("dns.nameservers: cannot build the resolver: {e}"))?;
        Ok(Dns { resolver })
    }

    /// The underlying hickory resolver.
    pub fn resolver(&self) -> &TokioResolver {
        &self.resolver
    }

    /// For DKIM/DMARC work with mail-auth over the same resolver.
    pub fn authenticator(&self) -> mail_auth::MessageAuthenticator {
        mail_auth::MessageAuthenticator(self.resolver.clone())
    }

    /// MX hosts sorted by preference (ties keep answer order). A null MX
    /// comes back as an entry with an empty `exchange` ([`MxHost::is_null`]).
    pub async fn mx(&self, domain: &str) -> Result<Vec<MxHost>, DnsError> {
        let lookup = self.lookup(domain, RecordType::MX).await?;
        let mut hosts: Vec<MxHost> = lookup
            .answers()
            .iter()
            .filter_map(|r| match &r.data {
                RData::MX(mx) => Some(MxHost { preference: mx.preference, exchange: display_name(&mx.exchange) }),
                _ => None,
            })
            .collect();
        if hosts.is_empty() {
            return Err(DnsError::NoData);
        }
        hosts.sort_by_key(|h| h.preference);
        Ok(hosts)
    }

    /// A then AAAA addresses of a host (IPv4 first). When one family has
    /// addresses, a failure of the other is not an error (as Postfix does);
    /// otherwise a temporary failure of either wins, then NODATA, and
    /// NXDOMAIN only when both say so.
    pub async fn ips(&self, host: &str) -> Result<Vec<IpAddr>, DnsError> {
        let (v4, v6) = tokio::join!(self.lookup(host, RecordType::A), self.lookup(host, RecordType::AAAA));
        let addrs = |r: &Result<hickory_resolver::lookup::Lookup, DnsError>| -> Vec<IpAddr> {
            r.as_ref()
                .map(|l| {
                    l.answers()
                        .iter()
                        .filter_map(|r| match &r.data {
                            RData::A(a) => Some(IpAddr::V4(a.0)),
                            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                            _ => None,
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        let mut all = addrs(&v4);
        all.extend(addrs(&v6));
        if !all.is_empty() {
            for failed in [&v4, &v6].into_iter().filter_map(|r| r.as_ref().err()) {
                tracing::debug!(host, error = %failed, "address lookup failed for one family");
            }
            return Ok(all);
        }
        Err(combine_empty(v4.err(), v6.err()))
    }

    /// Queries the CNAME type itself at `name` and does not follow it:
    /// the target, lowercased, without trailing dot.
    pub async fn cname(&self, name: &str) -> Result<String, DnsError> {
        let lookup = self.lookup(name, RecordType::CNAME).await?;
        lookup
            .answers()
            .iter()
            .find_map(|r| match &r.data {
                RData::CNAME(c) => Some(display_name(&c.0)),
                _ => None,
            })
            .ok_or(DnsError::NoData)
    }

    /// TXT strings at `name`, each record's character-strings concatenated
    /// (RFC 7208 §3.3, RFC 6376 §3.6.2.2). CNAMEs are followed.
    pub async fn txt(&self, name: &str) -> Result<Vec<String>, DnsError> {
        let lookup = self.lookup(name, RecordType::TXT).await?;
        let texts: Vec<String> = lookup
            .answers()
            .iter()
            .filter_map(|r| match &r.data {
                RData::TXT(txt) => Some(String::from_utf8_lossy(&txt.txt_data.concat()).into_owned()),
                _ => None,
            })
            .collect();
        if texts.is_empty() { Err(DnsError::NoData) } else { Ok(texts) }
    }

    async fn lookup(&self, name: &str, rtype: RecordType) -> Result<hickory_resolver::lookup::Lookup, DnsError> {
        let name = fqdn(name)?;
        self.resolver.lookup(name, rtype).await.map_err(|e| classify(&e))
    }
}

/// One `dns.nameservers` entry: `ip:port`, `[v6]:port` or a bare `ip` (port 53).
fn nameserver(text: &str) -> Result<NameServerConfig, String> {
    let addr = match (text.parse::<SocketAddr>(), text.parse::<IpAddr>()) {
        (Ok(sa), _) => sa,
        (_, Ok(ip)) => SocketAddr::new(ip, 53),
        _ => {
            return Err(format!("dns.nameservers: `{text}` is not an address; write `192.0.2.53` or `127.0.0.1:5353`"));
        }
    };
    let mut ns = NameServerConfig::udp_and_tcp(addr.ip());
    for conn in &mut ns.connections {
        conn.port = addr.port();
    }
    Ok(ns)
}

/// `name` as a fully qualified DNS name (a trailing dot is optional in
/// the input). A string that cannot be a domain name cannot exist in DNS:
/// [`DnsError::NxDomain`].
fn fqdn(name: &str) -> Result<Name, DnsError> {
    let trimmed = name.trim();
    let bare = trimmed.strip_suffix('.').unwrap_or(trimmed);
    if bare.is_empty() || bare.starts_with('.') || bare.contains("..") {
        return Err(DnsError::NxDomain);
    }
    let mut n = Name::from_str_relaxed(bare).map_err(|_| DnsError::NxDomain)?;
    n.set_fqdn(true);
    Ok(n)
}

/// A name as callers compare it: ASCII (punycode), lowercased, no trailing dot.
fn display_name(name: &Name) -> String {
    let text = name.to_ascii().to_ascii_lowercase();
    match text.strip_suffix('.') {
        Some(bare) => bare.to_string(),
        None => text,
    }
}

/// Sorts a hickory error into the three outcomes.
fn classify(err: &NetError) -> DnsError {
    match err {
        NetError::Dns(HickoryDnsError::NoRecordsFound(no)) => classify_no_records(no),
        NetError::Dns(HickoryDnsError::ResponseCode(code)) => DnsError::Temporary(format!("server answered {code}")),
        other => DnsError::Temporary(other.to_string()),
    }
}

fn classify_no_records(no: &NoRecords) -> DnsError {
    match no.response_code {
        ResponseCode::NXDomain => DnsError::NxDomain,
        // RFC 2308 §2.2: NS records without an SOA in the authority section
        // make a referral, not NODATA — the server did not answer at all
        // (e.g. dns.nameservers points at an authoritative-only server).
        ResponseCode::NoError if no.ns.is_some() && no.soa.is_none() => {
            DnsError::Temporary("got a referral instead of an answer; is the nameserver recursive?".into())
        }
        ResponseCode::NoError => DnsError::NoData,
        code => DnsError::Temporary(format!("server answered {code}")),
    }
}

/// The outcome of an address lookup when neither family gave an address.
fn combine_empty(v4: Option<DnsError>, v6: Option<DnsError>) -> DnsError {
    match (v4, v6) {
        (Some(t @ DnsError::Temporary(_)), _) | (_, Some(t @ DnsError::Temporary(_))) => t,
        (Some(DnsError::NxDomain), Some(DnsError::NxDomain)) => DnsError::NxDomain,
        _ => DnsError::NoData,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_resolver::proto::op::Query;
    use std::sync::Arc;

    #[test]
    fn fqdn_table() {
        let cases: &[(&str, Option<&str>)] = &[
            ("customer.nl", Some("customer.nl.")),
            ("customer.nl.", Some("customer.nl.")),
            ("  Customer.NL ", Some("customer.nl.")),
            ("_dmarc.customer.nl", Some("_dmarc.customer.nl.")),
            ("hr1._domainkey.t1.wl.relay.test", Some("hr1._domainkey.t1.wl.relay.test.")),
            ("bücher.de", Some("xn--bcher-kva.de.")),
            ("localhost", Some("localhost.")),
            ("", None),
            (".", None),
            ("a..b", None),
            (".leading.dot", None),
            (&"x".repeat(64), None),
        ];
        for (input, want) in cases {
            let got = fqdn(input).map(|n| n.to_ascii().to_ascii_lowercase());
            match want {
                Some(w) => assert_eq!(got.as_deref(), Ok(*w), "input {input:?}"),
                None => assert_eq!(got, Err(DnsError::NxDomain), "input {input:?}"),
            }
            if let Ok(n) = fqdn(input) {
                assert!(n.is_fqdn(), "{input:?} must be fully qualified");
            }
        }
    }

    #[test]
    fn display_name_table() {
        let cases = [("MX1.Customer.NL.", "mx1.customer.nl"), ("mx1.customer.nl", "mx1.customer.nl"), (".", "")];
        for (input, want) in cases {
            assert_eq!(display_name(&Name::from_ascii(input).unwrap()), want, "input {input:?}");
        }
    }

    #[test]
    fn nameserver_table() {
        let cases: &[(&str, Option<(&str, u16)>)] = &[
            ("192.0.2.53", Some(("192.0.2.53", 53))),
            ("127.0.0.1:5353", Some(("127.0.0.1", 5353))),
            ("[::1]:5353", Some(("::1", 5353))),
            ("::1", Some(("::1", 53))),
            ("dns.example", None),
            ("127.0.0.1:x", None),
        ];
        for (input, want) in cases {
            match (nameserver(input), want) {
                (Ok(ns), Some((ip, port))) => {
                    assert_eq!(ns.ip, ip.parse::<IpAddr>().unwrap(), "input {input:?}");
                    assert_eq!(ns.connections.len(), 2, "udp and tcp for {input:?}");
                    assert!(ns.connections.iter().all(|c| c.port == *port), "input {input:?}");
                }
                (Err(e), None) => assert!(e.contains("dns.nameservers"), "{e}"),
                (got, want) => panic!("{input:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    fn no_records(code: ResponseCode) -> NoRecords {
        NoRecords::new(Query::query(Name::from_ascii("x.test.").unwrap(), RecordType::MX), code)
    }

    #[test]
    fn classify_table() {
        let mut referral = no_records(ResponseCode::NoError);
        referral.ns = Some(Arc::from([]));
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let cases: Vec<(NetError, DnsError)> = vec![
            (no_records(ResponseCode::NXDomain).into(), DnsError::NxDomain),
            (no_records(ResponseCode::NoError).into(), DnsError::NoData),
            (referral.into(), DnsError::Temporary(String::new())),
            (no_records(ResponseCode::ServFail).into(), DnsError::Temporary(String::new())),
            (NetError::Dns(HickoryDnsError::ResponseCode(ResponseCode::ServFail)), DnsError::Temporary(String::new())),
            (NetError::Dns(HickoryDnsError::ResponseCode(ResponseCode::Refused)), DnsError::Temporary(String::new())),
            (NetError::Timeout, DnsError::Temporary(String::new())),
            (NetError::Io(Arc::new(io)), DnsError::Temporary(String::new())),
            (NetError::NoConnections, DnsError::Temporary(String::new())),
            (NetError::Truncated, DnsError::Temporary(String::new())),
        ];
        for (err, want) in cases {
            let got = classify(&err);
            match (&got, &want) {
                (DnsError::Temporary(text), DnsError::Temporary(_)) => assert!(!text.is_empty(), "{err:?}"),
                _ => assert_eq!(got, want, "{err:?}"),
            }
        }
    }

    #[test]
    fn combine_empty_table() {
        let t = || DnsError::Temporary("timeout".into());
        let cases = [
            (Some(DnsError::NxDomain), Some(DnsError::NxDomain), DnsError::NxDomain),
            (Some(DnsError::NoData), Some(DnsError::NxDomain), DnsError::NoData),
            (Some(DnsError::NoData), Some(DnsError::NoData), DnsError::NoData),
            (None, Some(DnsError::NoData), DnsError::NoData),
            (Some(t()), Some(DnsError::NxDomain), t()),
            (Some(DnsError::NxDomain), Some(t()), t()),
            (Some(DnsError::NoData), Some(t()), t()),
        ];
        for (v4, v6, want) in cases {
            assert_eq!(combine_empty(v4.clone(), v6.clone()), want, "{v4:?} {v6:?}");
        }
    }
}
