//! Password guessing cannot grow the relay's memory: many clients from
//! many addresses guess in parallel against a `herald serve` process, and
//! its peak RSS (VmHWM) stays under 150 MB. Argon2 needs 19 MiB per check;
//! the checks run on two workers with reused memory, however many wait.

mod support;

use herald::bench::client::Client;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};
use support::process::{free_port, spawn, wait_listening};
use support::{USER, password_hash};

const CLIENTS: u8 = 40;
const ROUNDS: usize = 2;
const LIMIT_KB: u64 = 150 * 1024;

fn vm_hwm_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// One client: `ROUNDS` connections, each guessing until the relay closes it.
async fn guess(addr: SocketAddr, from: IpAddr) -> usize {
    let mut answered = 0;
    for round in 0..ROUNDS {
        let (mut c, g) = Client::connect_from(from, addr).await.unwrap();
        assert_eq!(g.code, 220, "{g:?}");
        c.ehlo("guesser.test").await.unwrap();
        for n in 0..3 {
            let r = c.auth_plain(USER, &format!("guess-{round}-{n}")).await.unwrap();
            assert_eq!(r.code, 535, "{r:?}");
            answered += 1;
        }
        // `max_auth_failures = 3`: the goodbye follows the third verdict.
        assert_eq!(c.read_reply().await.unwrap().code, 421);
    }
    answered
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessing_clients_cannot_grow_memory() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = format!(
        "[server]\nhostname = \"relay.test\"\ndata_dir = \"data\"\n[tls]\ncert = \"cert.pem\"\nkey = \"key.pem\"\n\
         [[listener]]\naddress = \"127.0.0.1:{port}\"\ntls = \"starttls\"\nallow_auth_without_tls = true\n\
         [[user]]\nname = \"{USER}\"\npassword_hash = \"{}\"\n[bounces]\naddress = \"\"\n\
         [limits]\nmax_auth_failures = 3\nauth_failures_per_ip = 10000\nauth_delay_ms = 0\n",
        password_hash()
    );
    let file = dir.path().join("relay.toml");
    std::fs::write(&file, config).unwrap();
    let mut relay = spawn(&file);
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    wait_listening(addr).await;
    let started = Instant::now();
    let guessers: Vec<_> = (0..CLIENTS).map(|i| tokio::spawn(guess(addr, IpAddr::from([127, 0, 1, i + 1])))).collect();
    let mut answered = 0;
    for g in guessers {
        answered += tokio::time::timeout(Duration::from_secs(300), g).await.expect("guessers finish").unwrap();
    }
    let peak = vm_hwm_kb(relay.id());
    let _ = relay.kill();
    let _ = relay.wait();
    eprintln!("{answered} wrong passwords from {CLIENTS} clients in {:?}: peak RSS {} MiB", started.elapsed(), peak / 1024);
    assert_eq!(answered, CLIENTS as usize * ROUNDS * 3, "every guess was checked and answered");
    assert!(peak < LIMIT_KB, "peak RSS {} MiB while guessing", peak / 1024);
}
