//! The relay as a separate `herald serve` process, for tests that kill
//! it (SIGKILL) or need its supervisor: a config file in a temp dir, a
//! port chosen up front, and a client that speaks to it.
#![allow(dead_code)]

use super::{PASSWORD, USER, password_hash};
use herald::bench::client::{Client, tls_trusting};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Writes `relay.toml` in `dir`: a STARTTLS listener on `port`, the test
/// user, data in `dir/data`, then `extra` (more sections).
pub fn write_config_with(dir: &Path, port: u16, extra: &str) -> PathBuf {
    let text = format!(
        "[server]\nhostname = \"relay.test\"\ndata_dir = \"data\"\n[tls]\ncert = \"cert.pem\"\nkey = \"key.pem\"\n\
         [[listener]]\naddress = \"127.0.0.1:{port}\"\ntls = \"starttls\"\n[[user]]\nname = \"{USER}\"\npassword_hash = \"{}\"\n[bounces]\naddress = \"127.0.0.1:0\"\n{extra}",
        password_hash()
    );
    let file = dir.join("relay.toml");
    std::fs::write(&file, text).unwrap();
    file
}

/// The sections that make a relay process look up MX in the test DNS
/// server at `dns` and deliver to the sink's `sink_port`, retrying after a
/// second, with the relay identity of the tests.
pub fn delivering(dns: std::net::SocketAddr, sink_port: u16) -> String {
    format!(
        "[dns]\nnameservers = [\"{dns}\"]\ntimeout_secs = 1\nattempts = 1\ncache = false\n[delivery]\nmx_port = {sink_port}\n[queue]\nretry_schedule = [\"1s\"]\n\
         [identity]\ndomain = \"relay.test\"\nbounce_domain = \"bounces.relay.test\"\nrewrite_from = false\n"
    )
}

/// Starts `herald serve --config FILE`; its log goes to `relay.log` beside
/// the config (appended across restarts).
pub fn spawn(config: &Path) -> Child {
    spawn_logging_to(config, &config.with_file_name("relay.log"))
}

/// [`spawn`], with the log in `log` (for a relay whose own folder is on a
/// filesystem a test fills up).
pub fn spawn_logging_to(config: &Path, log: &Path) -> Child {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
    Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["serve", "--config"])
        .arg(config)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap()
}

/// Connected, STARTTLS'd and authenticated against the relay process.
pub async fn authed_client(addr: SocketAddr, dir: &Path) -> Client {
    try_authed_client(addr, dir).await.expect("relay answers")
}

/// Like [`authed_client`], `None` if the relay is not (fully) there.
pub async fn try_authed_client(addr: SocketAddr, dir: &Path) -> Option<Client> {
    let tls = tls_trusting(&dir.join("cert.pem")).ok()?;
    let (mut c, _) = Client::connect(addr).await.ok()?;
    c.ehlo("client.test").await.ok()?;
    let mut c = c.starttls(&tls, "localhost").await.ok()?;
    c.ehlo("client.test").await.ok()?;
    (c.auth_plain(USER, PASSWORD).await.ok()?.code == 235).then_some(c)
}

pub async fn wait_listening(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Client::connect(addr).await.is_err() {
        assert!(Instant::now() < deadline, "relay did not start listening on {addr}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
