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
    let text = format!(
        "[server]\nhostname = \"relay.test\"\ndata_dir = \"data\"\n[tls]\ncert = \"cert.pem\"\nkey = \"key.pem\"\n\
         [[listener]]\naddress = \"127.0.0.1:{port}\"\ntls = \"starttls\"\n[[user]]\nname = \"{USER}\"\npassword_hash = \"{}\"\n\
         [dns]\nnameservers = [\"127.0.0.1:9\"]\ntimeout_secs = 1\n[[route]]\ndomain = \"*\"\nhost = \"127.0.0.1\"\nport = 9\n[queue]\nretry_schedule = [\"1h\"]\n",
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
    let tls = tls_trusting(&dir.path().join("cert.pem")).unwrap();
    let (mut c, _) = Client::connect(addr).await.unwrap();
    c.ehlo("client.test").await.unwrap();
    let mut c = c.starttls(&tls, "localhost").await.unwrap();
    c.ehlo("client.test").await.unwrap();
    assert_eq!(c.auth_plain(USER, PASSWORD).await.unwrap().code, 235);
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
    assert_eq!(store.body(&id).unwrap().unwrap().as_ref(), body.as_slice());
}
