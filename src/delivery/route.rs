//! Where mail for a domain goes: a static route if one matches, else the
//! domain's MX hosts in preference order (RFC 5321 §5.1), else its own
//! address (the implicit MX). Null MX (RFC 7505) and a domain that does
//! not exist fail permanently; DNS trouble is temporary.

use super::transport::Target;
use crate::config::{OutboundTls, RouteConfig};
use crate::dns::{Dns, DnsError};
use crate::store::Outcome;
use std::net::{IpAddr, SocketAddr};

/// Why no target could be found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteError {
    pub outcome: Outcome,
    pub text: String,
}

impl RouteError {
    fn temporary(text: String) -> Self {
        Self { outcome: Outcome::Temporary, text }
    }

    fn permanent(text: String) -> Self {
        Self { outcome: Outcome::Permanent, text }
    }
}

/// The static route for `domain`: an exact match wins over `*`.
pub fn static_route<'a>(routes: &'a [RouteConfig], domain: &str) -> Option<&'a RouteConfig> {
    routes.iter().find(|r| r.domain.eq_ignore_ascii_case(domain)).or_else(|| routes.iter().find(|r| r.domain == "*"))
}

/// Every address to try for `domain`, best first.
pub async fn targets(dns: &Dns, routes: &[RouteConfig], domain: &str, mx_port: u16, mx_tls: OutboundTls) -> Result<Vec<Target>, RouteError> {
    if let Some(route) = static_route(routes, domain) {
        let credentials = route.username.clone().zip(route.password.clone());
        let ips = addresses(dns, &route.host).await?;
        return Ok(ips
            .into_iter()
            .map(|ip| Target { host: route.host.clone(), addr: SocketAddr::new(ip, route.port), tls: route.tls, credentials: credentials.clone() })
            .collect());
    }
    let hosts = match dns.mx(domain).await {
        Ok(mx) if mx.iter().any(|m| m.is_null()) => {
            return Err(RouteError::permanent(format!("{domain} accepts no mail (null MX, RFC 7505)")));
        }
        Ok(mx) if !mx.is_empty() => mx.into_iter().map(|m| m.exchange).collect(),
        // No MX: the domain itself is the implicit MX (RFC 5321 §5.1).
        Ok(_) | Err(DnsError::NoData) => vec![domain.to_ascii_lowercase()],
        Err(DnsError::NxDomain) => return Err(RouteError::permanent(format!("{domain} does not exist (NXDOMAIN)"))),
        Err(DnsError::Temporary(e)) => return Err(RouteError::temporary(format!("MX lookup for {domain}: {e}"))),
    };
    let mut out = Vec::new();
    let mut last_error = None;
    for host in hosts {
        match addresses(dns, &host).await {
            Ok(ips) => out.extend(ips.into_iter().map(|ip| Target { host: host.clone(), addr: SocketAddr::new(ip, mx_port), tls: mx_tls, credentials: None })),
            Err(e) => last_error = Some(e),
        }
    }
    if out.is_empty() {
        return Err(last_error.unwrap_or_else(|| RouteError::temporary(format!("no address for any mail server of {domain}"))));
    }
    Ok(out)
}

async fn addresses(dns: &Dns, host: &str) -> Result<Vec<IpAddr>, RouteError> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![ip]);
    }
    match dns.ips(host).await {
        Ok(ips) if !ips.is_empty() => Ok(ips),
        Ok(_) | Err(DnsError::NoData) => Err(RouteError::permanent(format!("{host} has no address (A/AAAA)"))),
        Err(DnsError::NxDomain) => Err(RouteError::permanent(format!("{host} does not exist (NXDOMAIN)"))),
        Err(DnsError::Temporary(e)) => Err(RouteError::temporary(format!("address lookup for {host}: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_route_beats_wildcard() {
        let route = |d: &str, h: &str| RouteConfig { domain: d.into(), host: h.into(), ..Default::default() };
        let routes = vec![route("*", "smart"), route("Example.NET", "direct")];
        let cases = [("example.net", Some("direct")), ("other.org", Some("smart"))];
        for (domain, want) in cases {
            assert_eq!(static_route(&routes, domain).map(|r| r.host.as_str()), want, "{domain}");
        }
        assert!(static_route(&routes[1..], "other.org").is_none());
    }
}
