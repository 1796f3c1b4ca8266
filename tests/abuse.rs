//! The front door under abuse, over real sockets: slow clients, one
//! address hogging connections, password guessing across connections,
//! control bytes. Deadlines are configured short (1–2 s) so the suite
//! stays fast; assertions bound timings generously from above and never
//! measure speed.

mod support;

use herald::bench::client::Client;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A client's other address on loopback.
const OTHER: [u8; 4] = [127, 0, 0, 2];

/// Connects raw, sends `prefix` at once, then drips `drip` one byte every
/// 200 ms (forever, cycling) until the server closes. Returns everything
/// the server said and how long after the drip began it closed.
async fn drip(addr: SocketAddr, prefix: &[u8], drip: &'static [u8]) -> (String, Duration) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut rd, mut wr) = tcp.into_split();
    wr.write_all(prefix).await.unwrap();
    let started = Instant::now();
    let writer = tokio::spawn(async move {
        for &b in drip.iter().cycle() {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if wr.write_all(&[b]).await.is_err() {
                return;
            }
        }
    });
    let mut said = Vec::new();
    let read_all = async {
        let mut chunk = [0u8; 1024];
        loop {
            match rd.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => said.extend_from_slice(&chunk[..n]),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), read_all).await.expect("the server never closed a dripping client");
    let elapsed = started.elapsed();
    writer.abort();
    (String::from_utf8_lossy(&said).into_owned(), elapsed)
}

#[tokio::test]
async fn slow_drip_command_line_is_cut_at_its_deadline() {
    let relay = TestRelay::start_with(|c| c.limits.command_timeout_secs = 2).await;
    // One byte every 200 ms: the connection is never idle for 2 s, but the
    // line never completes within 2 s either.
    let (said, took) = drip(relay.starttls_addr(), b"", b"NOOP and more and more and more").await;
    assert!(said.contains("\r\n421 4.4.2 "), "{said}");
    assert!(took >= Duration::from_millis(1500), "cut before its deadline: {took:?}");
    assert!(took < Duration::from_secs(12), "not cut near its 2 s deadline: {took:?}");
}

#[tokio::test]
async fn slow_drip_data_is_cut_by_the_minimum_rate() {
    let relay = TestRelay::start_with(|c| {
        c.limits.data_timeout_secs = 1;
        c.limits.data_min_bytes_per_sec = 1000;
        c.relay.allow_networks = vec!["127.0.0.0/8".into()];
    })
    .await;
    let prefix = b"EHLO c.test\r\nMAIL FROM:<a@customer.example>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n";
    let (said, took) = drip(relay.starttls_addr(), prefix, b"From: a@customer.example\r\n\r\nxxxxxxxxxxxxxxxx").await;
    assert!(said.contains("354 "), "{said}");
    assert!(said.contains("\r\n421 4.4.2 ") && said.contains("bytes/s"), "{said}");
    assert!(took < Duration::from_secs(10), "not cut near its deadline: {took:?}");
    assert_eq!(relay.running().store.messages().count(), 0);
}

#[tokio::test]
async fn session_lifetime_ends_a_busy_session() {
    let relay = TestRelay::start_with(|c| c.limits.max_session_secs = 2).await;
    let (mut c, _) = Client::connect(relay.starttls_addr()).await.unwrap();
    let started = Instant::now();
    let last = loop {
        let r = c.command("NOOP").await.unwrap();
        if r.code != 250 {
            break r;
        }
        assert!(started.elapsed() < Duration::from_secs(15), "session outlived its lifetime");
        tokio::time::sleep(Duration::from_millis(150)).await;
    };
    assert_eq!((last.code, last.status()), (421, Some("4.4.2")), "{last:?}");
    assert!(last.text().contains("maximum of 2 s"), "{last:?}");
    assert!(c.is_closed().await);
}

#[tokio::test]
async fn one_address_cannot_hold_every_connection() {
    let relay = TestRelay::start_with(|c| c.limits.max_connections_per_ip = 2).await;
    let addr = relay.starttls_addr();
    let (_a, g) = Client::connect(addr).await.unwrap();
    assert_eq!(g.code, 220);
    let (_b, g) = Client::connect(addr).await.unwrap();
    assert_eq!(g.code, 220);
    let (_, g) = Client::connect(addr).await.unwrap();
    assert_eq!((g.code, g.status()), (421, Some("4.7.0")), "{g:?}");
    assert!(g.text().contains("from your address"), "{g:?}");
    // Another address is unaffected.
    let (_c, g) = Client::connect_from(IpAddr::from(OTHER), addr).await.unwrap();
    assert_eq!(g.code, 220, "{g:?}");
    // A closed session gives its place back.
    drop(_a);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_d, g) = Client::connect(addr).await.unwrap();
        if g.code == 220 {
            break;
        }
        assert!(Instant::now() < deadline, "place never given back: {g:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn guessing(c: &mut herald::config::Config) {
    c.listeners[0].allow_auth_without_tls = true;
    c.limits.max_auth_failures = 2;
    c.limits.auth_failures_per_ip = 3;
    c.limits.auth_window_secs = 600;
    c.limits.auth_lockout_secs = 2;
    c.limits.auth_delay_ms = 300;
}

async fn plain_client(addr: SocketAddr, from: [u8; 4]) -> Client {
    let (mut c, g) = Client::connect_from(IpAddr::from(from), addr).await.unwrap();
    assert_eq!(g.code, 220, "{g:?}");
    c.ehlo("guesser.test").await.unwrap();
    c
}

/// A guesser reconnecting after every failure gets no fresh budget: the
/// address is locked out, and then even the right password is not
/// checked; other addresses log in; after the lockout the right password
/// works again.
#[tokio::test]
async fn auth_throttle_holds_across_connections() {
    let relay = TestRelay::start_with(guessing).await;
    let addr = relay.starttls_addr();
    let me = [127, 0, 0, 1];
    let mut c = plain_client(addr, me).await;
    let r = c.auth_plain(USER, "guess1").await.unwrap();
    assert_eq!((r.code, r.status()), (535, Some("5.7.8")), "{r:?}");
    // The second failure waited the growing delay before being checked.
    let t = Instant::now();
    let r = c.auth_plain(USER, "guess2").await.unwrap();
    assert!(t.elapsed() >= Duration::from_millis(250), "no delay after a failure: {:?}", t.elapsed());
    assert_eq!(r.code, 535, "{r:?}");
    assert_eq!(c.read_reply().await.unwrap().code, 421, "per-connection limit");

    // A new connection: the third failure of the address locks it out.
    let mut c = plain_client(addr, me).await;
    let r = c.auth_plain(USER, "guess3").await.unwrap();
    assert_eq!(r.code, 535, "{r:?}");
    let r = c.read_reply().await.unwrap();
    assert_eq!((r.code, r.status()), (421, Some("4.7.0")), "{r:?}");

    // Locked out: the right password is answered 454 without a check.
    let mut c = plain_client(addr, me).await;
    let r = c.auth_plain(USER, PASSWORD).await.unwrap();
    assert_eq!((r.code, r.status()), (454, Some("4.7.0")), "{r:?}");
    assert!(c.is_closed().await);

    // Another address is not locked out.
    let mut other = plain_client(addr, OTHER).await;
    assert_eq!(other.auth_plain(USER, PASSWORD).await.unwrap().code, 235);

    // After the lockout, the right password from the same address works.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let mut c = plain_client(addr, me).await;
        let r = c.auth_plain(USER, PASSWORD).await.unwrap();
        if r.code == 235 {
            break;
        }
        assert_eq!(r.code, 454, "{r:?}");
        assert!(Instant::now() < deadline, "lockout never ended");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test]
async fn control_bytes_in_commands_are_refused_never_echoed() {
    let relay = TestRelay::start().await;
    let bounce = relay.running().bounce_addr.unwrap();
    for addr in [relay.starttls_addr(), bounce] {
        let (mut c, _) = Client::connect(addr).await.unwrap();
        for line in ["EHLO a\0b", "HELO x\x01y", "NOOP \x1b[31m", "MAIL FROM:<a\0@b.example>"] {
            let r = c.command(line).await.unwrap();
            assert_eq!((r.code, r.status()), (501, Some("5.5.2")), "{line:?} on {addr}: {r:?}");
            assert!(!r.text().contains(|ch: char| ch.is_control()), "{line:?} echoed: {r:?}");
        }
        // The session is in sync and usable afterwards.
        let r = c.command("EHLO a.test").await.unwrap();
        assert_eq!(r.code, 250, "{r:?}");
    }
}

/// The bounce intake runs on the same kit: its deadlines hold too.
#[tokio::test]
async fn bounce_intake_cuts_slow_clients_too() {
    let relay = TestRelay::start_with(|c| c.limits.command_timeout_secs = 1).await;
    let (said, took) = drip(relay.running().bounce_addr.unwrap(), b"", b"EHLO slow.example.and.slower").await;
    assert!(said.starts_with("220 ") && said.contains("\r\n421 4.4.2 "), "{said}");
    assert!(took < Duration::from_secs(10), "{took:?}");
}

/// A client that sends and never reads cannot park a session on a
/// blocked write: replies must be taken within the command deadline.
#[tokio::test]
async fn a_client_that_never_reads_is_cut() {
    let relay = TestRelay::start_with(|c| c.limits.command_timeout_secs = 1).await;
    let mut tcp = tokio::net::TcpStream::connect(relay.starttls_addr()).await.unwrap();
    let noops = b"NOOP\r\n".repeat(10_000);
    let started = Instant::now();
    loop {
        // Once the relay has given up, writes fail (the peer is gone).
        match tokio::time::timeout(Duration::from_secs(30), tcp.write_all(&noops)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => break,
            Err(_) => panic!("a write blocked for 30 s: the relay still holds the session"),
        }
        assert!(started.elapsed() < Duration::from_secs(30), "the relay still reads after {:?}", started.elapsed());
    }
}
