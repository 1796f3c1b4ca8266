//! What the commands that talk to the running relay share: the options
//! that find its admin API (`--config`, `--api`, `--token`), the client
//! made from them, and the plain-text helpers their output uses.
//!
//! The CLI never opens the database itself: sled allows one process per
//! database, and the relay holds it. The API address and token come from
//! the configuration (`admin.address`, `admin.token`), unless `--api` and
//! `--token` say otherwise.

use crate::admin::client::{AdminClient, Answer};
use crate::config::Config;
use clap::Args;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Where the admin API is and how to authenticate to it.
#[derive(Args)]
pub struct ApiArgs {
    /// Configuration file to read `admin.address` and `admin.token` from
    /// (default: ./relay.toml, else the embedded default).
    #[arg(long, short, global = true)]
    config: Option<PathBuf>,
    /// Admin API base URL, e.g. http://127.0.0.1:8025 (default: from `admin.address`).
    #[arg(long, global = true)]
    api: Option<String>,
    /// Bearer token (default: `admin.token`). Visible to other local users
    /// in the process list: prefer the config file.
    #[arg(long, global = true)]
    token: Option<String>,
}

impl ApiArgs {
    /// The configuration `--config` names (or the default one).
    pub fn config(&self) -> Result<Config, String> {
        Config::load(self.config.as_deref()).map_err(|e| e.to_string())
    }

    /// The client for `--api`/`--token`, or for the configuration's `[admin]`.
    pub fn client(&self) -> Result<AdminClient, String> {
        let (api, token) = match (&self.api, &self.token) {
            (Some(api), Some(token)) => (api.clone(), token.clone()),
            (api, token) => {
                let config = Config::load(self.config.as_deref()).map_err(|e| e.to_string())?;
                let api = api.clone().unwrap_or_else(|| api_url(&config.admin.address));
                (api, token.clone().unwrap_or(config.admin.token))
            }
        };
        if token.is_empty() {
            return Err(
                "the admin API is disabled: `admin.token` is empty in the configuration. Set it (16 characters or more) \
                 and restart the relay, or pass --token"
                    .into(),
            );
        }
        Ok(AdminClient::new(&api, &token))
    }
}

/// `http://` + `admin.address`, with a wildcard address replaced by
/// loopback (a relay listening on all addresses is reachable there).
fn api_url(address: &str) -> String {
    match address.parse::<SocketAddr>() {
        Ok(mut addr) if addr.ip().is_unspecified() => {
            let loopback = if addr.is_ipv4() {
                std::net::Ipv4Addr::LOCALHOST.into()
            } else {
                std::net::Ipv6Addr::LOCALHOST.into()
            };
            addr.set_ip(loopback);
            format!("http://{addr}")
        }
        _ => format!("http://{address}"),
    }
}

/// Prints the answer's JSON exactly as the API sent it (fields this CLI
/// does not know included), or its text rendering.
pub fn print<T>(json: bool, answer: &Answer<T>, text: impl FnOnce(&T) -> String) {
    if json {
        println!("{}", answer.json.trim_end());
    } else {
        print!("{}", text(&answer.value));
    }
}

/// Left-aligned columns, two spaces apart.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// `2024-05-01T10:00:00Z`.
pub fn time(ms: i64) -> String {
    let at = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_seconds(at).to_string()
}

/// `in 59m 58s` or `3m 2s ago`, to the second.
pub fn relative(ms: i64, now_ms: i64) -> String {
    let secs = (ms - now_ms) / 1000;
    let span = humantime::format_duration(Duration::from_secs(secs.unsigned_abs()));
    match secs {
        0 => "now".into(),
        s if s > 0 => format!("in {span}"),
        _ => format!("{span} ago"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_urls() {
        let cases = [
            ("127.0.0.1:8025", "http://127.0.0.1:8025"),
            ("0.0.0.0:8025", "http://127.0.0.1:8025"),
            ("[::]:8025", "http://[::1]:8025"),
            ("[::1]:9", "http://[::1]:9"),
        ];
        for (address, want) in cases {
            assert_eq!(api_url(address), want, "{address}");
        }
    }

    #[test]
    fn relative_times() {
        let cases = [(61_000, "in 1m 1s"), (-3_500, "3s ago"), (400, "now")];
        for (offset, want) in cases {
            assert_eq!(relative(1_000_000 + offset, 1_000_000), want, "{offset}");
        }
    }

    #[test]
    fn tables_align() {
        let rows = vec![
            vec!["a".to_string(), "long cell".to_string()],
            vec!["bbb".to_string(), "x".to_string()],
        ];
        assert_eq!(table(&["H1", "H2"], &rows), "H1   H2\na    long cell\nbbb  x\n");
    }
}
