//! Shared test scaffolding: a relay started in-process on loopback ports
//! chosen by the kernel, with its own data directory and certificate.
#![allow(dead_code)]

pub mod dns;
pub mod process;
pub mod webdriver;
pub mod world;

use herald::bench::client::{Client, ClientReply, tls_trusting};
use herald::clock::SystemClock;
use herald::config::Config;
use herald::server::Running;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio_rustls::TlsConnector;

pub const USER: &str = "billing";
pub const PASSWORD: &str = "correct horse";

/// A hash of [`PASSWORD`], made once per test binary.
pub fn password_hash() -> String {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| herald::submission::hash_password(PASSWORD).unwrap()).clone()
}

/// A config for tests: listeners on loopback port 0, files under `dir`.
pub fn test_config(dir: &Path) -> Config {
    let text = format!(
        r#"
[server]
hostname = "relay.test"
data_dir = "{data}"
shutdown_grace_secs = 5

[tls]
cert = "{dir}/cert.pem"
key = "{dir}/key.pem"

[[listener]]
address = "127.0.0.1:0"
tls = "starttls"

[[listener]]
address = "127.0.0.1:0"
tls = "implicit"

[[user]]
name = "{USER}"
password_hash = "{hash}"

[limits]
max_message_size = 200000
max_recipients = 5
max_auth_failures = 2

# Submission tests do not deliver: every lookup and every route goes to a
# closed loopback port, so nothing leaves the machine.
[dns]
nameservers = ["127.0.0.1:9"]
timeout_secs = 1
attempts = 1

[[route]]
domain = "*"
host = "127.0.0.1"
port = 9

[queue]
retry_schedule = ["1h"]

[identity]
domain = "relay.test"
bounce_domain = "bounces.relay.test"

# Bounce intake on a kernel-chosen port, like the listeners.
[bounces]
address = "127.0.0.1:0"
"#,
        data = dir.join("data").display(),
        dir = dir.display(),
        hash = password_hash(),
    );
    Config::parse(&text, "test", dir).unwrap()
}

/// Starts a relay on `config` (already adjusted by the caller).
pub async fn start_relay(config: Config, dir: tempfile::TempDir, clock: herald::clock::SharedClock) -> TestRelay {
    herald::config::validate(&config).unwrap();
    let running = herald::server::start(&config, clock).await.unwrap();
    let tls = tls_trusting(&dir.path().join("cert.pem")).unwrap();
    TestRelay {
        running: Some(running),
        dir,
        tls,
    }
}

pub struct TestRelay {
    pub running: Option<Running>,
    pub dir: tempfile::TempDir,
    pub tls: TlsConnector,
}

impl TestRelay {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = test_config(dir.path());
        tweak(&mut config);
        start_relay(config, dir, Arc::new(SystemClock)).await
    }

    pub fn running(&self) -> &Running {
        self.running.as_ref().unwrap()
    }

    pub fn starttls_addr(&self) -> SocketAddr {
        self.running().addrs[0]
    }

    pub fn implicit_addr(&self) -> SocketAddr {
        self.running().addrs[1]
    }

    pub fn cert_path(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    /// Connected, EHLO'd, TLS'd, EHLO'd again and authenticated.
    pub async fn authed(&self) -> Client {
        let mut c = self.tls_client().await;
        let r = c.auth_plain(USER, PASSWORD).await.unwrap();
        assert_eq!(r.code, 235, "{r:?}");
        c
    }

    /// Connected with STARTTLS, EHLO'd, not authenticated.
    pub async fn tls_client(&self) -> Client {
        let (mut c, greeting) = Client::connect(self.starttls_addr()).await.unwrap();
        assert_eq!(greeting.code, 220);
        c.ehlo("client.test").await.unwrap();
        let mut c = c.starttls(&self.tls, "localhost").await.unwrap();
        let r = c.ehlo("client.test").await.unwrap();
        assert_eq!(r.code, 250);
        c
    }

    pub async fn stop(&mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
    }
}

/// A small valid message.
pub fn message(from: &str, subject: &str) -> Vec<u8> {
    format!("From: Billing <{from}>\r\nTo: <payer@example.net>\r\nSubject: {subject}\r\nMessage-ID: <{subject}@test>\r\n\r\nHello.\r\n.leading dot line\r\n").into_bytes()
}

/// The relay id in a `250 2.0.0 Ok: queued as <id>` reply.
pub fn queued_id(reply: &ClientReply) -> herald::id::MessageId {
    assert_eq!(reply.code, 250, "{reply:?}");
    let id = reply.text().rsplit(' ').next().unwrap().to_string();
    herald::id::MessageId::parse(&id).unwrap_or_else(|| panic!("no id in {reply:?}"))
}

/// Runs the `herald` binary; returns (success, stdout, stderr). Blocking,
/// so off the runtime that serves the relay.
pub async fn run_herald(args: Vec<String>) -> (bool, String, String) {
    tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_herald")).args(&args).output().unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
    })
    .await
    .unwrap()
}

/// The wall clock, in seconds since the epoch.
pub fn now_secs() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}
