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
///
/// This is the one check both `herald config check` and `herald serve`
/// run (through [`Config::load`]): whatever `serve` would refuse at
/// start-up short of a busy port or a locked database is found here.
pub fn validate(config: &Config) -> Result<(), ConfigErrors> {
    let mut c = Collector::default();
    c.0.extend(config.read_errors.iter().cloned());
    c.unknown("", &config.unknown, &["server", "tls", "listener", "user", "relay", "limits", "store", "log", "dns", "identity", "queue", "delivery", "route", "admin", "domains", "bounces", "events", "webhook", "suppression", "dns_server"]);
    server(config, &mut c);
    listeners(config, &mut c);
    tls(config, &mut c);
    users(config, &mut c);
    relay(config, &mut c);
    limits(config, &mut c);
    c.unknown("store", &config.store.unknown, &["cache_mb", "min_free_mb"]);
    c.range("store.min_free_mb", config.store.min_free_mb, 0, 1 << 30, "MiB of free disk space to keep");
    c.range("store.cache_mb", config.store.cache_mb, 1, 65_536, "MiB of page cache");
    c.unknown("log", &config.log.unknown, &["level"]);
    if tracing_subscriber::EnvFilter::try_new(&config.log.level).is_err() {
        c.push("log.level", format!("`{}` is not a log filter", config.log.level), "use error, warn, info, debug or trace (or `herald=debug`)");
    }
    dns(config, &mut c);
    identity(config, &mut c);
    queue(config, &mut c);
    delivery(config, &mut c);
    routes(config, &mut c);
    admin(config, &mut c);
    c.unknown("domains", &config.domains.unknown, super::domains::KEYS);
    c.0.extend(super::domains::problems(&config.domains));
    c.unknown("bounces", &config.bounces.unknown, super::bounces::KEYS);
    c.unknown("dns_server", &config.dns_server.unknown, super::dns_server::KEYS);
    c.0.extend(super::dns_server::problems(&config.dns_server));
    let listeners: Vec<SocketAddr> = config.listeners.iter().filter_map(|l| l.address.parse().ok()).collect();
    c.0.extend(super::bounces::problems(&config.bounces, &listeners));
    c.unknown("events", &config.events.unknown, super::events::EVENT_KEYS);
    for (i, w) in config.webhooks.iter().enumerate() {
        c.unknown(&format!("webhook[{i}]"), &w.unknown, super::events::WEBHOOK_KEYS);
    }
    c.0.extend(super::events::problems(&config.events, &config.webhooks, &config.base_dir));
    c.unknown("suppression", &config.suppression.unknown, super::suppression::KEYS);
    c.0.extend(super::suppression::problems(&config.suppression));
    clashes(config, &mut c);
    if let Err(e) = crate::dns::Dns::from_config(&config.dns) {
        c.push("dns.nameservers", e, "list reachable nameservers, e.g. [\"192.0.2.53\"]");
    }
    if c.0.is_empty() { Ok(()) } else { Err(ConfigErrors(c.0)) }
}

fn dns(config: &Config, c: &mut Collector) {
    let d = &config.dns;
    c.unknown("dns", &d.unknown, &["nameservers", "timeout_secs", "attempts", "cache"]);
    for (i, ns) in d.nameservers.iter().enumerate() {
        if ns.parse::<SocketAddr>().is_err() && ns.parse::<std::net::IpAddr>().is_err() {
            c.push(format!("dns.nameservers[{i}]"), format!("`{ns}` is not an address"), "write `192.0.2.53` or `127.0.0.1:5353`");
        }
    }
    c.range("dns.timeout_secs", d.timeout_secs, 1, 60, "seconds per query");
    c.range("dns.attempts", d.attempts, 1, 10, "tries per query");
}

fn identity(config: &Config, c: &mut Collector) {
    let i = &config.identity;
    c.unknown("identity", &i.unknown, &["domain", "bounce_domain", "dkim_selector", "relay_name", "rewrite_from"]);
    for (key, value) in [("identity.domain", &i.domain), ("identity.bounce_domain", &i.bounce_domain)] {
        if !is_hostname(value) {
            c.push(key, format!("`{value}` is not a domain name"), "use a domain you control, e.g. `relay.example.net`");
        }
    }
    if !is_hostname(&i.dkim_selector) || i.dkim_selector.contains('.') {
        c.push("identity.dkim_selector", format!("`{}` is not a DKIM selector", i.dkim_selector), "use one label of letters, digits and hyphens");
    }
    if i.relay_name.trim().is_empty() || i.relay_name.contains(['"', '\\', '\r', '\n']) {
        c.push("identity.relay_name", "empty or holds quotes, backslashes or line breaks", "use a plain name such as `Acme Billing`");
    }
}

fn queue(config: &Config, c: &mut Collector) {
    let q = &config.queue;
    c.unknown("queue", &q.unknown, &["retry_schedule", "lifetime", "retire_after", "workers", "per_domain", "dsn"]);
    if q.retry_schedule.is_empty() {
        c.push("queue.retry_schedule", "empty", "list the delays between attempts, e.g. [\"1m\", \"5m\", \"1h\"]");
    }
    for (i, d) in q.retry_schedule.iter().enumerate() {
        match super::parse_duration(d) {
            Ok(d) if d.is_zero() => c.push(format!("queue.retry_schedule[{i}]"), "a zero delay would retry in a hot loop", "use at least `1s`"),
            Ok(_) => {}
            Err(e) => c.push(format!("queue.retry_schedule[{i}]"), e, "write durations like `30s`, `5m`, `2h` or `1d`"),
        }
    }
    for (key, value) in [("queue.lifetime", &q.lifetime), ("queue.retire_after", &q.retire_after)] {
        if let Err(e) = super::parse_duration(value) {
            c.push(key, e, "write a duration like `5d` or `12h`");
        }
    }
    c.range("queue.workers", q.workers, 1, 10_000, "attempts in flight");
    c.range("queue.per_domain", q.per_domain, 1, 1_000, "connections per destination domain");
}

fn delivery(config: &Config, c: &mut Collector) {
    let d = &config.delivery;
    c.unknown("delivery", &d.unknown, &["mx_port", "tls", "connect_timeout_secs", "command_timeout_secs", "max_messages_per_connection", "idle_secs"]);
    c.range("delivery.mx_port", d.mx_port, 1, 65535, "TCP port");
    c.range("delivery.connect_timeout_secs", d.connect_timeout_secs, 1, 600, "seconds");
    c.range("delivery.command_timeout_secs", d.command_timeout_secs, 1, 3600, "seconds");
    c.range("delivery.max_messages_per_connection", d.max_messages_per_connection, 1, 100_000, "messages");
    c.range("delivery.idle_secs", d.idle_secs, 0, 3600, "seconds");
}

fn routes(config: &Config, c: &mut Collector) {
    let mut seen = BTreeSet::new();
    for (i, r) in config.routes.iter().enumerate() {
        let key = format!("route[{i}]");
        c.unknown(&key, &r.unknown, &["domain", "host", "port", "tls", "username", "password"]);
        if r.domain != "*" && !is_hostname(&r.domain) {
            c.push(format!("{key}.domain"), format!("`{}` is not a domain", r.domain), "use a domain such as `example.net`, or `*` for everything");
        } else if !seen.insert(r.domain.to_ascii_lowercase()) {
            c.push(format!("{key}.domain"), format!("a route for `{}` already exists", r.domain), "keep one route per domain");
        }
        if r.host.parse::<std::net::IpAddr>().is_err() && !is_hostname(&r.host) {
            c.push(format!("{key}.host"), format!("`{}` is not a host name or address", r.host), "set the smarthost, e.g. `smtp.example.net` or `127.0.0.1`");
        }
        c.range(&format!("{key}.port"), r.port, 1, 65535, "TCP port");
        if r.username.is_some() != r.password.is_some() {
            c.push(format!("{key}.password"), "username and password go together", "set both or neither");
        }
    }
}

fn admin(config: &Config, c: &mut Collector) {
    let a = &config.admin;
    c.unknown("admin", &a.unknown, &["address", "token"]);
    if a.address.parse::<SocketAddr>().is_err() {
        c.push("admin.address", format!("`{}` is not an IP address with a port", a.address), "write it as `127.0.0.1:8025`");
    }
    if !a.token.is_empty() && a.token.len() < 16 {
        c.push("admin.token", "shorter than 16 characters", "use a long random token, e.g. `openssl rand -hex 24`");
    }
}

fn server(config: &Config, c: &mut Collector) {
    let s = &config.server;
    c.unknown("server", &s.unknown, &["hostname", "data_dir", "shutdown_grace_secs"]);
    if !is_hostname(&s.hostname) {
        c.push("server.hostname", format!("`{}` is not a host name", s.hostname), "use a fully qualified name such as `relay.example.net`");
    }
    let dir = config.data_dir();
    if s.data_dir.as_os_str().is_empty() {
        c.push("server.data_dir", "empty", "name the directory for the database, e.g. `./data` (it is created if absent)");
    } else if dir.exists() && !dir.is_dir() {
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
    let mut empty = false;
    for (name, path) in [("tls.cert", &t.cert), ("tls.key", &t.key)] {
        if path.as_os_str().is_empty() {
            empty = true;
            c.push(name, "empty", "name a PEM file, e.g. `certs/relay.crt` and `certs/relay.key`");
        }
    }
    if empty {
        return;
    }
    let (cert, key) = (config.resolve(&t.cert), config.resolve(&t.key));
    match (cert.is_file(), key.is_file()) {
        (false, false) if t.self_signed_if_missing => {}
        (false, false) => c.push(
            "tls.cert",
            format!("{} does not exist", cert.display()),
            "point `tls.cert` and `tls.key` at your PEM files, or set `tls.self_signed_if_missing = true`",
        ),
        (true, false) => c.push("tls.key", format!("{} does not exist", key.display()), "point `tls.key` at the private key of `tls.cert`"),
        (false, true) => c.push("tls.cert", format!("{} does not exist", cert.display()), "point `tls.cert` at the certificate for `tls.key`"),
        (true, true) => {
            let certs = crate::tls::load_certs(&cert).map_err(|e| c.push("tls.cert", e, "use a PEM file holding the certificate chain"));
            let keys = crate::tls::load_key(&key).map_err(|e| c.push("tls.key", e, "use a PEM file holding one private key"));
            // The same check serve's TLS set-up makes: the pair must match.
            if certs.is_ok()
                && keys.is_ok()
                && let Err(e) = crate::tls::acceptor(&cert, &key)
            {
                c.push(
                    "tls.key",
                    format!("{} does not belong to the certificate in {}: {e}", key.display(), cert.display()),
                    "use the key the certificate was issued for (or remove both files to get a self-signed pair)",
                );
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
        &[
            "max_message_size",
            "max_recipients",
            "max_line_length",
            "command_timeout_secs",
            "data_timeout_secs",
            "data_min_bytes_per_sec",
            "max_session_secs",
            "max_connections",
            "max_concurrent_data",
            "max_connections_per_ip",
            "max_auth_failures",
            "auth_failures_per_ip",
            "auth_window_secs",
            "auth_lockout_secs",
            "auth_delay_ms",
            "bare_newline",
        ],
    );
    c.range("limits.max_message_size", l.max_message_size, 1024, 1 << 30, "bytes");
    c.range("limits.max_recipients", l.max_recipients, 1, 100_000, "RFC 5321 requires at least 100 to be accepted; fewer is allowed but unusual");
    c.range("limits.max_line_length", l.max_line_length, 512, 4096, "RFC 5321 §4.5.3.1.4 needs 512; the parser caps lines at 4096");
    c.range("limits.command_timeout_secs", l.command_timeout_secs, 1, 3600, "seconds; RFC 5321 suggests 300");
    c.range("limits.data_timeout_secs", l.data_timeout_secs, 1, 3600, "seconds; RFC 5321 suggests 600");
    c.range("limits.max_connections", l.max_connections, 1, 100_000, "concurrent sessions");
    c.range("limits.data_min_bytes_per_sec", l.data_min_bytes_per_sec, 1, 1 << 30, "bytes per second a message must at least arrive at");
    c.range("limits.max_session_secs", l.max_session_secs, 1, 7 * 86_400, "seconds a session may last");
    c.range("limits.max_concurrent_data", l.max_concurrent_data, 0, 100_000, "messages received at once; 0 for four per CPU core");
    c.range("limits.max_connections_per_ip", l.max_connections_per_ip, 1, 100_000, "concurrent sessions from one address");
    c.range("limits.max_auth_failures", l.max_auth_failures, 1, 100, "failed AUTH attempts per connection");
    c.range("limits.auth_failures_per_ip", l.auth_failures_per_ip, 1, 10_000, "failed AUTH attempts per address within `auth_window_secs`");
    c.range("limits.auth_window_secs", l.auth_window_secs, 1, 86_400, "seconds");
    c.range("limits.auth_lockout_secs", l.auth_lockout_secs, 1, 86_400, "seconds");
    c.range("limits.auth_delay_ms", l.auth_delay_ms, 0, 8_000, "milliseconds");
}

/// Every address the relay binds, so no two collide: the listeners, the
/// admin API (when enabled) and the bounce intake (when enabled). Port 0
/// (any free port) never clashes; a wildcard address clashes with every
/// address on its port.
fn clashes(config: &Config, c: &mut Collector) {
    let mut bound: Vec<(String, SocketAddr)> = Vec::new();
    for (i, l) in config.listeners.iter().enumerate() {
        if let Ok(a) = l.address.parse() {
            bound.push((format!("listener[{i}].address"), a));
        }
    }
    if !config.admin.token.is_empty()
        && let Ok(a) = config.admin.address.parse()
    {
        bound.push(("admin.address".into(), a));
    }
    if let Some(a) = config.bounces.socket_addr() {
        bound.push(("bounces.address".into(), a));
    }
    for (j, (key, a)) in bound.iter().enumerate() {
        let earlier = bound[..j].iter().find(|(k, b)| {
            let same_listeners = k.starts_with("listener") && key.starts_with("listener");
            // Two listeners on one address are reported by `listeners`;
            // bounces against a listener by `bounces::problems`.
            let reported = (same_listeners && a == b) || (key == "bounces.address" && k.starts_with("listener") && a == b);
            !reported && a.port() != 0 && a.port() == b.port() && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
        });
        if let Some((other, b)) = earlier {
            c.push(key.clone(), format!("{a} collides with `{other}` ({b}): both cannot listen"), "give each listener, the admin API and the bounce intake its own port");
        }
    }
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
