//! A full disk, for real: the data directory on a small tmpfs mounted by
//! the test (root only, as CI runs), filled with a real file. Below
//! `store.min_free_mb` new mail is refused with 452 4.3.1 before any body
//! is read, queued mail is still delivered, health and metrics say so,
//! and everything clears by itself once space is freed.

mod support;

use herald::admin::client::AdminClient;
use herald::store::RcptStatus;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use support::world::{WAIT, World};

const TOKEN: &str = "disk-test-admin-token-012345";
const ZONE: &str = "dest.test. MX 10 mx.dest.test.\nmx.dest.test. A 127.0.0.1\n";

/// A tmpfs of `mb` MiB mounted on a fresh directory; unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// `None` when not root (mounting needs it): the test then says so.
    fn mount(mb: u64) -> Option<Tmpfs> {
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("SKIPPED: mounting a tmpfs needs root (CI runs as root)");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mb}m,mode=0700"), "tmpfs"])
            .arg(dir.path())
            .status()
            .unwrap()
            .success();
        assert!(ok, "cannot mount a tmpfs on {}", dir.path().display());
        Some(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

fn free_mb(path: &Path) -> u64 {
    let watch = herald::store::disk::DiskWatch::new(path.to_path_buf());
    watch.free_bytes().unwrap() / (1024 * 1024)
}

/// Writes zeros into `file` until at most `leave_mb` MiB stay free.
fn fill(path: &Path, file: &Path, leave_mb: u64) {
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(file).unwrap();
    let chunk = vec![0u8; 1024 * 1024];
    while free_mb(path) > leave_mb {
        f.write_all(&chunk).unwrap();
    }
    f.sync_all().unwrap();
}

async fn health(w: &World) -> herald::admin::HealthV1 {
    let client = AdminClient::new(&format!("http://{}", w.relay.running().admin_addr.unwrap()), TOKEN);
    let started = Instant::now();
    let h = tokio::task::spawn_blocking(move || client.health()).await.unwrap().unwrap().value;
    assert!(started.elapsed() < Duration::from_secs(2), "health took {:?}", started.elapsed());
    h
}

async fn metrics(w: &World) -> String {
    let url = format!("http://{}/metrics", w.relay.running().admin_addr.unwrap());
    tokio::task::spawn_blocking(move || ureq::get(&url).set("Authorization", &format!("Bearer {TOKEN}")).call().unwrap().into_string().unwrap()).await.unwrap()
}

#[tokio::test]
async fn below_the_floor_new_mail_waits_queued_mail_flows_and_it_clears_by_itself() {
    let Some(fs) = Tmpfs::mount(64) else { return };
    let data: PathBuf = fs.path().join("data");
    let w = World::start(ZONE, |c| {
        c.server.data_dir = data.clone();
        c.store.min_free_mb = 24;
        c.store.cache_mb = 4;
        c.admin.token = TOKEN.into();
        c.admin.address = "127.0.0.1:0".into();
    })
    .await;
    // Queued mail that still waits when the disk fills: greylisted once.
    let mut queued = Vec::new();
    for n in 0..3 {
        queued.push(w.submit("invoice@customer.test", "app@dest.test", &[&format!("tempfail-1-q{n}@dest.test")]).await);
    }
    for id in &queued {
        w.record_where(id, "deferred", |r| r.recipients[0].status == RcptStatus::Deferred).await;
    }
    assert!(!health(&w).await.disk_pressure);

    fill(fs.path(), &fs.path().join("filler"), 12);

    // New mail: refused at MAIL, before any byte of a body is read.
    let mut c = w.relay.authed().await;
    let r = c.command("MAIL FROM:<app@dest.test>").await.unwrap();
    assert_eq!((r.code, r.text().starts_with("4.3.1")), (452, true), "{r:?}");
    let h = health(&w).await;
    assert!(h.disk_pressure && h.status == "disk_full", "{h:?}");
    assert!(metrics(&w).await.contains("herald_disk_pressure 1"));

    // Queued mail is still delivered (and its retirement frees space).
    for id in &queued {
        let r = w.finished(id).await;
        assert_eq!(r.recipients[0].status, RcptStatus::Delivered, "{r:?}");
    }
    assert_eq!(w.sink.received().len(), 3);

    // Space back: accepted again without a restart.
    std::fs::remove_file(fs.path().join("filler")).unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        let r = c.command("MAIL FROM:<app@dest.test>").await.unwrap();
        if r.code == 250 {
            break;
        }
        assert!(Instant::now() < deadline, "still refused after space was freed: {r:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(c);
    let id = w.submit("invoice@customer.test", "app@dest.test", &["payer@dest.test"]).await;
    assert_eq!(w.finished(&id).await.recipients[0].status, RcptStatus::Delivered);
    let h = health(&w).await;
    assert!(!h.disk_pressure && h.status == "ok", "{h:?}");
    assert!(metrics(&w).await.contains("herald_disk_pressure 0"));
    let mut relay = w.relay;
    relay.stop().await;
}


/// The disk fills to the last byte (no floor): sled fails a write and
/// would refuse every later one. `herald serve` reopens the database by
/// itself; once space is back, mail is accepted and delivered without
/// anyone restarting it, and mail accepted before is not lost.
#[tokio::test]
async fn a_database_that_failed_to_write_is_reopened_by_serve() {
    use support::process::*;
    let Some(fs) = Tmpfs::mount(48) else { return };
    let dns = support::dns::TestDns::start().await;
    let sink = support::world::sink().await;
    dns.set_zone(ZONE);
    let port = free_port();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let extra = format!(
        "[store]\nmin_free_mb = 0\ncache_mb = 4\n[dns]\nnameservers = [\"{}\"]\ntimeout_secs = 1\nattempts = 1\n[delivery]\nmx_port = {}\n\
         [queue]\nretry_schedule = [\"1s\"]\n[identity]\ndomain = \"relay.test\"\nbounce_domain = \"bounces.relay.test\"\nrewrite_from = false\n",
        dns.addr,
        sink.addr().port()
    );
    let config = write_config_with(fs.path(), port, &extra);
    // The log stays off the disk that fills, so every line of it is kept.
    let logs = tempfile::tempdir().unwrap();
    let log_path = logs.path().join("relay.log");
    let mut relay = spawn_logging_to(&config, &log_path);
    wait_listening(addr).await;
    let before = {
        let mut c = authed_client(addr, fs.path()).await;
        support::queued_id(&c.send_message("app@dest.test", &["payer@dest.test"], &support::message("invoice@customer.test", "before")).await.unwrap())
    };
    assert!(sink.wait_for(1, WAIT).await);

    // Fill every last byte, then submit: refused (4xx), never a 250.
    fill(fs.path(), &fs.path().join("filler"), 0);
    let mut f = std::fs::OpenOptions::new().append(true).open(fs.path().join("filler")).unwrap();
    while f.write_all(&[0u8; 4096]).is_ok() {}
    drop(f);
    // sled may still have room in pages it holds: send until it needs
    // more. Whatever got a 250 is on disk and must arrive later.
    let mut accepted_on_full = Vec::new();
    let mut refused = None;
    let big = format!("From: <invoice@customer.test>\r\nSubject: full\r\n\r\n{}", "y\r\n".repeat(27_000));
    for _ in 0..40 {
        let Some(mut c) = try_authed_client(addr, fs.path()).await else {
            refused = Some("connection refused or cut".to_string());
            break;
        };
        match c.send_message("app@dest.test", &["payer@dest.test"], big.as_bytes()).await {
            Ok(r) if r.code == 250 => accepted_on_full.push(support::queued_id(&r)),
            Ok(r) => {
                assert_eq!(r.code / 100, 4, "a full disk is a temporary failure: {r:?}");
                refused = Some(format!("{r:?}"));
                break;
            }
            Err(e) => {
                refused = Some(e.to_string());
                break;
            }
        }
    }
    assert!(refused.is_some(), "40 messages of 80 KB accepted on a full 48 MB disk");

    std::fs::remove_file(fs.path().join("filler")).unwrap();
    // Accepted again by the same process, without a restart from outside.
    let deadline = Instant::now() + Duration::from_secs(60);
    let after = loop {
        if let Some(mut c) = try_authed_client(addr, fs.path()).await
            && let Ok(r) = c.send_message("app@dest.test", &["payer@dest.test"], &support::message("invoice@customer.test", "after")).await
            && r.code == 250
        {
            break support::queued_id(&r);
        }
        assert!(Instant::now() < deadline, "never accepted again; log:\n{}", std::fs::read_to_string(&log_path).unwrap_or_default());
        assert!(relay.try_wait().unwrap().is_none(), "the relay exited");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(sink.wait_for(2 + accepted_on_full.len(), WAIT).await, "mail accepted after the reopen (and on the full disk) is delivered");
    let ids: Vec<String> = sink.received().iter().map(|m| m.mail_from.clone()).collect();
    assert!(ids.iter().any(|m| m.contains(before.as_str())) && ids.iter().any(|m| m.contains(after.as_str())), "{ids:?}");
    let log = std::fs::read_to_string(&log_path).unwrap();
    // Whenever the database failed a write, serve reopened it (the full
    // disk may also show first as a refused connection, before any write).
    if log.contains("the database failed to write") {
        assert!(log.contains("relay restarted"), "{log}");
    } else {
        assert!(refused.as_deref().is_some_and(|r| !r.starts_with("ClientReply")), "a 4xx reply without a database restart: {refused:?}\n{log}");
    }
    relay.kill().unwrap();
    relay.wait().unwrap();
}
