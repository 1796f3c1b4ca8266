//! Durability: a message that got its 250 survives the relay process
//! being killed (SIGKILL, no clean stop) and restarted.

mod support;

use herald::bench::client::{Client, tls_trusting};
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::*;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn write_config(dir: &std::path::Path, port: u16) -> std::path::PathBuf {
    write_config_with(dir, port, "[dns]\nnameservers = [\"127.0.0.1:9\"]\ntimeout_secs = 1\n[[route]]\ndomain = \"*\"\nhost = \"127.0.0.1\"\nport = 9\n[queue]\nretry_schedule = [\"1h\"]\n")
}

fn write_config_with(dir: &std::path::Path, port: u16, extra: &str) -> std::path::PathBuf {
    let text = format!(
        "[server]\nhostname = \"relay.test\"\ndata_dir = \"data\"\n[tls]\ncert = \"cert.pem\"\nkey = \"key.pem\"\n\
         [[listener]]\naddress = \"127.0.0.1:{port}\"\ntls = \"starttls\"\n[[user]]\nname = \"{USER}\"\npassword_hash = \"{}\"\n[bounces]\naddress = \"127.0.0.1:0\"\n{extra}",
        password_hash()
    );
    let file = dir.join("relay.toml");
    std::fs::write(&file, text).unwrap();
    file
}

fn spawn(config: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["serve", "--config"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Connected, STARTTLS'd and authenticated against the relay process.
async fn authed_client(addr: SocketAddr, dir: &std::path::Path) -> Client {
    let tls = tls_trusting(&dir.join("cert.pem")).unwrap();
    let (mut c, _) = Client::connect(addr).await.unwrap();
    c.ehlo("client.test").await.unwrap();
    let mut c = c.starttls(&tls, "localhost").await.unwrap();
    c.ehlo("client.test").await.unwrap();
    assert_eq!(c.auth_plain(USER, PASSWORD).await.unwrap().code, 235);
    c
}

async fn wait_listening(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Client::connect(addr).await.is_err() {
        assert!(Instant::now() < deadline, "relay did not start listening on {addr}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn accepted_message_survives_kill_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let config = write_config(dir.path(), port);

    let mut relay = spawn(&config);
    wait_listening(addr).await;
    let mut c = authed_client(addr, dir.path()).await;
    let body = message("invoice@customer.example", "crash");
    let id = queued_id(&c.send_message("invoice@customer.example", &["payer@example.net"], &body).await.unwrap());

    // No clean stop: SIGKILL right after the 250.
    relay.kill().unwrap();
    relay.wait().unwrap();

    // Restart on the same data directory, then stop it cleanly.
    let mut relay = spawn(&config);
    wait_listening(addr).await;
    let status = Command::new("kill").args(["-TERM", &relay.id().to_string()]).status().unwrap();
    assert!(status.success());
    let exit = relay.wait().unwrap();
    assert!(exit.success(), "clean stop must exit 0, got {exit:?}");

    let store = herald::store::Store::open(&dir.path().join("data"), 8).unwrap();
    let record = store.message(&id).unwrap().expect("the accepted message is still queued");
    assert_eq!(record.recipients[0].address, "payer@example.net");
    assert_eq!(store.body(&id).unwrap().unwrap().as_slice(), body.as_slice());
}

/// The relay is killed after accepting a message and before it reached
/// the receiving server (DNS for the destination was failing, so nothing
/// was sent); after a restart the message is delivered exactly once.
#[tokio::test]
async fn killed_before_delivery_then_delivered_once_after_restart() {
    use herald::bench::sink::{Sink, SinkConfig};
    let dns = support::dns::TestDns::start().await;
    let sink = Sink::start(SinkConfig { addr: "127.0.0.1:0".parse().unwrap(), hostname: "sink.test".into(), tls: None, keep_messages: true }).await.unwrap();
    dns.set_zone("dest.test. MX 10 mx.dest.test.\nmx.dest.test. A 127.0.0.1\n");
    dns.servfail("dest.test");
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let extra = format!(
        "[dns]\nnameservers = [\"{}\"]\ntimeout_secs = 1\nattempts = 1\ncache = false\n[delivery]\nmx_port = {}\n[queue]\nretry_schedule = [\"1s\"]\n\
         [identity]\ndomain = \"relay.test\"\nbounce_domain = \"bounces.relay.test\"\n",
        dns.addr,
        sink.addr().port()
    );
    let config = write_config_with(dir.path(), port, &extra);

    let mut relay = spawn(&config);
    wait_listening(addr).await;
    let mut c = authed_client(addr, dir.path()).await;
    let id = queued_id(&c.send_message("app@customer.test", &["payer@dest.test"], &message("invoice@customer.test", "once")).await.unwrap());
    tokio::time::sleep(Duration::from_millis(300)).await;
    relay.kill().unwrap();
    relay.wait().unwrap();
    assert_eq!(sink.count(), 0, "nothing may have reached the sink before the crash");

    dns.clear_servfail();
    let mut relay = spawn(&config);
    assert!(sink.wait_for(1, Duration::from_secs(30)).await, "message {id} not delivered after restart");
    // Give a duplicate every chance to show up.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(sink.count(), 1, "exactly one copy");
    assert!(sink.received()[0].data.ends_with(b"Hello.\r\n.leading dot line\r\n"));
    relay.kill().unwrap();
    relay.wait().unwrap();
}

/// The data directory (spool and DKIM private keys) is closed to other users.
#[test]
fn data_directory_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let _store = herald::store::Store::open(&data, 8).unwrap();
    let mode = std::fs::metadata(&data).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "data directory mode {mode:o}");
}
