//! `[bounces]`: the inbound SMTP listener that takes delivery status
//! notifications for `bounces+<id>@…` addresses (the MX target of the
//! relay's bounce domain and of every customer's return-path host).

use super::{ConfigError, Unknown};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// Every key of `[bounces]`, for the unknown-key check.
pub(super) const KEYS: &[&str] = &["address"];

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct BouncesConfig {
    /// Where bounces are received, e.g. `0.0.0.0:25`; empty turns the
    /// listener off.
    pub address: String,
    #[serde(flatten, skip_serializing)]
    pub unknown: Unknown,
}

impl Default for BouncesConfig {
    fn default() -> Self {
        Self {
            address: "127.0.0.1:2526".into(),
            unknown: Unknown::new(),
        }
    }
}

impl BouncesConfig {
    /// The parsed address; `None` when the listener is off (or the address
    /// is invalid, which [`super::validate`] reports).
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        self.address.trim().parse().ok()
    }
}

/// Every problem in `[bounces]` (unknown keys aside), each naming its key.
/// `listeners` are the submission addresses, which must not be reused.
pub(super) fn problems(b: &BouncesConfig, listeners: &[SocketAddr]) -> Vec<ConfigError> {
    let address = b.address.trim();
    if address.is_empty() {
        return Vec::new();
    }
    let problem = match address.parse::<SocketAddr>() {
        Err(_) => (
            format!("`{address}` is not an IP address with a port"),
            "write it as `0.0.0.0:25` or `127.0.0.1:2526`, or `\"\"` to turn bounce intake off",
        ),
        Ok(addr) if addr.port() != 0 && listeners.contains(&addr) => (
            format!("{addr} is also a submission listener"),
            "give bounce intake its own address or port",
        ),
        Ok(_) => return Vec::new(),
    };
    vec![ConfigError {
        key: "bounces.address".into(),
        problem: problem.0,
        fix: problem.1.into(),
    }]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        let listener: SocketAddr = "127.0.0.1:2525".parse().unwrap();
        let cases = [
            ("127.0.0.1:2526", None),
            ("", None),
            ("[::1]:25", None),
            ("127.0.0.1:0", None),
            ("localhost:25", Some("not an IP address")),
            ("127.0.0.1", Some("not an IP address")),
            ("127.0.0.1:2525", Some("submission listener")),
        ];
        for (address, want) in cases {
            let b = BouncesConfig {
                address: address.into(),
                ..Default::default()
            };
            let errs = problems(&b, &[listener]);
            match want {
                None => assert!(errs.is_empty(), "{address}: {errs:?}"),
                Some(words) => {
                    assert_eq!(errs.len(), 1, "{address}");
                    assert_eq!(errs[0].key, "bounces.address");
                    assert!(errs[0].to_string().contains(words), "{address}: {}", errs[0]);
                }
            }
        }
        assert_eq!(
            BouncesConfig::default().socket_addr(),
            Some(SocketAddr::from(([127, 0, 0, 1], 2526)))
        );
        assert_eq!(
            BouncesConfig {
                address: String::new(),
                ..Default::default()
            }
            .socket_addr(),
            None
        );
    }
}
