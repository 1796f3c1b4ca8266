//! Checks a parsed [`Config`] and collects every problem, each naming the
//! key and how to fix it, so an admin fixes the file in one pass.

use super::{Config, ListenerTls, Unknown, parse_network};
use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;

/// One problem with one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted path of the key, e.g. `limits.max_line_length` or `listener[1].address`.
    pub key: String,
    pub problem: String,
    pub fix: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`: {} (fix: {})", self.key, self.problem, self.fix)
    }
}

/// Every problem found, in file order.
#[derive(Debug, Clone, Default)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} problem(s) in the configuration:", self.0.len())?;
        for e in &self.0 {
            writeln!(f, "  - {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

#[derive(Default)]
struct Collector(Vec<ConfigError>);

impl Collector {
    fn push(&mut self, key: impl Into<String>, problem: impl Into<String>, fix: impl Into<String>) {
        self.0.push(ConfigError { key: key.into(), problem: problem.into(), fix: fix.into() });
    }

    fn unknown(&mut self, table: &str, unknown: &Unknown, known: &[&str]) {
        for name in unknown.keys() {
            let key = if table.is_empty() { name.clone() } else { format!("{table}.{name}") };
            let fix = match closest(name, known) {
                Some(k) => format!("did you mean `{k}`? otherwise remove it"),
                None => format!("remove it; known keys here: {}", known.join(", ")),
            };
            self.push(key, "unknown key", fix);
        }
    }

    fn range<T: PartialOrd + fmt::Display + Copy>(&mut self, key: &str, value: T, lo: T, hi: T, why: &str) {
        if value < lo || value > hi {
            self.push(key, format!("{value} is out of range ({why})"), format!("set it between {lo} and {hi}"));
        }
    }
}

/// Validates everything; `Ok` only when nothing is wrong.
pub fn validate(config: &Config) -> Result<(), ConfigErrors> {
    let mut c = Collector::default();
    c.unknown("", &config.unknown, &["server", "tls", "listener", "user", "relay", "limits", "store", "log"]);
    server(config, &mut c);
    listeners(config, &mut c);
    tls(config, &mut c);
    users(config, &mut c);
    relay(config, &mut c);
    limits(config, &mut c);
    c.unknown("store", &config.store.unknown, &["cache_mb"]);
    c.range("store.cache_mb", config.store.cache_mb, 1, 65_536, "MiB of page cache");
    c.unknown("log", &config.log.unknown, &["level"]);
    if tracing_subscriber::EnvFilter::try_new(&config.log.level).is_err() {
        c.push("log.level", format!("`{}` is not a log filter", config.log.level), "use error, warn, info, debug or trace (or `herald=debug`)");
    }
    if c.0.is_empty() { Ok(()) } else { Err(ConfigErrors(c.0)) }
}

fn server(config: &Config, c: &mut Collector) {
    let s = &config.server;
    c.unknown("server", &s.unknown, &["hostname", "data_dir", "shutdown_grace_secs"]);
    if !is_hostname(&s.hostname) {
        c.push("server.hostname", format!("`{}` is not a host name", s.hostname), "use a fully qualified name such as `relay.example.net`");
    }
    let dir = config.data_dir();
    if dir.exists() && !dir.is_dir() {
        c.push("server.data_dir", format!("{} exists and is not a directory", dir.display()), "point it at a directory (it is created if absent)");
    }
    c.range("server.shutdown_grace_secs", s.shutdown_grace_secs, 0, 3600, "seconds");
}

fn listeners(config: &Config, c: &mut Collector) {
    if config.listeners.is_empty() {
        c.push("listener", "no listener is configured", "add a [[listener]] with an `address`");
    }
    let mut seen = BTreeSet::new();
    for (i, l) in config.listeners.iter().enumerate() {
        let key = format!("listener[{i}]");
        c.unknown(&key, &l.unknown, &["address", "tls", "allow_auth_without_tls"]);
        match l.address.parse::<SocketAddr>() {
            Ok(addr) if addr.port() != 0 && !seen.insert(addr) => {
                c.push(format!("{key}.address"), format!("{addr} is used by two listeners"), "give each listener its own address or port")
            }
            Ok(_) => {}
            Err(_) => c.push(
                format!("{key}.address"),
                format!("`{}` is not an IP address with a port", l.address),
                "write it as `127.0.0.1:2525` or `[::1]:2525`",
            ),
        }
    }
}

fn tls(config: &Config, c: &mut Collector) {
    let t = &config.tls;
    c.unknown("tls", &t.unknown, &["cert", "key", "self_signed_if_missing"]);
    if !config.listeners.iter().any(|l| l.tls != ListenerTls::None) {
        return;
    }
    let (cert, key) = (config.resolve(&t.cert), config.resolve(&t.key));
    match (cert.exists(), key.exists()) {
        (false, false) if t.self_signed_if_missing => {}
        (false, false) => c.push(
            "tls.cert",
            format!("{} does not exist", cert.display()),
            "point `tls.cert` and `tls.key` at your PEM files, or set `tls.self_signed_if_missing = true`",
        ),
        (true, false) => c.push("tls.key", format!("{} does not exist", key.display()), "point `tls.key` at the private key of `tls.cert`"),
        (false, true) => c.push("tls.cert", format!("{} does not exist", cert.display()), "point `tls.cert` at the certificate for `tls.key`"),
        (true, true) => {
            if let Err(e) = crate::tls::load_certs(&cert) {
                c.push("tls.cert", e, "use a PEM file holding the certificate chain");
            }
            if let Err(e) = crate::tls::load_key(&key) {
                c.push("tls.key", e, "use a PEM file holding one private key");
            }
        }
    }
}

fn users(config: &Config, c: &mut Collector) {
    let mut names = BTreeSet::new();
    for (i, u) in config.users.iter().enumerate() {
        let key = format!("user[{i}]");
        c.unknown(&key, &u.unknown, &["name", "password_hash"]);
        if u.name.is_empty() {
            c.push(format!("{key}.name"), "empty user name", "give the user a name");
        } else if !names.insert(u.name.as_str()) {
            c.push(format!("{key}.name"), format!("user `{}` is defined twice", u.name), "remove one of them");
        }
        if argon2::PasswordHash::new(&u.password_hash).is_err() {
            c.push(format!("{key}.password_hash"), "not a password hash", "paste the output of `herald passwd`, never the password itself");
        }
    }
}

fn relay(config: &Config, c: &mut Collector) {
    c.unknown("relay", &config.relay.unknown, &["allow_networks"]);
    for (i, n) in config.relay.allow_networks.iter().enumerate() {
        if let Err(e) = parse_network(n) {
            c.push(format!("relay.allow_networks[{i}]"), e, "write a network as `192.0.2.0/24` or an address as `127.0.0.1`");
        }
    }
}

fn limits(config: &Config, c: &mut Collector) {
    let l = &config.limits;
    c.unknown(
        "limits",
        &l.unknown,
        &["max_message_size", "max_recipients", "max_line_length", "command_timeout_secs", "data_timeout_secs", "max_connections", "max_auth_failures"],
    );
    c.range("limits.max_message_size", l.max_message_size, 1024, 1 << 30, "bytes");
    c.range("limits.max_recipients", l.max_recipients, 1, 100_000, "RFC 5321 requires at least 100 to be accepted; fewer is allowed but unusual");
    c.range("limits.max_line_length", l.max_line_length, 512, 4096, "RFC 5321 §4.5.3.1.4 needs 512; the parser caps lines at 4096");
    c.range("limits.command_timeout_secs", l.command_timeout_secs, 1, 3600, "seconds; RFC 5321 suggests 300");
    c.range("limits.data_timeout_secs", l.data_timeout_secs, 1, 3600, "seconds; RFC 5321 suggests 600");
    c.range("limits.max_connections", l.max_connections, 1, 100_000, "concurrent sessions");
    c.range("limits.max_auth_failures", l.max_auth_failures, 1, 100, "failed AUTH attempts per connection");
}

/// A loose host-name check: labels of letters, digits and hyphens.
pub fn is_hostname(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// A domain name for mail: a host name, or an
/// internationalised one (non-ASCII labels are accepted as they are).
pub fn is_domain(name: &str) -> bool {
    let ascii: String = name.chars().map(|c| if c.is_ascii() { c } else { 'x' }).collect();
    is_hostname(&ascii) && !ascii.starts_with('[')
}

/// The known key closest to a misspelt one, if any is close.
fn closest<'a>(name: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (edit_distance(name, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min()
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names() {
        for (name, ok) in [("relay.example.net", true), ("localhost", true), ("a-b.c.", true), ("", false), ("-a.b", false), ("a..b", false), ("a b", false)] {
            assert_eq!(is_hostname(name), ok, "{name}");
        }
    }

    #[test]
    fn closest_key_hint() {
        let known = ["max_message_size", "max_recipients", "max_line_length"];
        assert_eq!(closest("max_mesage_size", &known), Some("max_message_size"));
        assert_eq!(closest("colour", &known), None);
    }
}
