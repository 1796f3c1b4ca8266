//! A data directory written by an older herald is migrated when it is
//! opened: format 1 kept bodies inside sled (`b/<id><n>` chunks of 4 KiB),
//! formats 1 and 2 kept retired records in a `retired` tree. Its queued
//! mail is delivered intact, and its retired mail stays readable. One
//! marked by a newer herald is refused with a message that says so.

mod support;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;
use support::process::*;
use support::*;

fn stop(relay: &mut std::process::Child) {
    assert!(Command::new("kill").args(["-TERM", &relay.id().to_string()]).status().unwrap().success());
    assert!(relay.wait().unwrap().success());
}

/// Rewrites the spool of a stopped relay as `format` (1 or 2) wrote it:
/// retired records in a tree of their own; for format 1 also every body
/// back in the tree as chunks, no segment files, no format mark. Returns
/// how many queued bodies it rewrote.
fn downgrade(data: &std::path::Path, format: u32) -> usize {
    let db = sled::open(data.join("herald.sled")).unwrap();
    let spool = db.open_tree("spool").unwrap();
    let retired = db.open_tree("retired").unwrap();
    for prefix in [&b"r/"[..], b"x/"] {
        for item in spool.scan_prefix(prefix) {
            let (k, v) = item.unwrap();
            let mut old = k.to_vec();
            if prefix == b"r/" {
                old[0] = b'm';
            }
            retired.insert(old, v).unwrap();
            spool.remove(k).unwrap();
        }
    }
    if format == 2 {
        db.insert(b"herald/spool-format", &2u32.to_be_bytes()).unwrap();
        db.flush().unwrap();
        return spool.scan_prefix(b"l/").count();
    }
    let mut n = 0;
    for item in spool.scan_prefix(b"l/") {
        let (k, v) = item.unwrap();
        let r = herald::store::segments::BodyRef::decode(&v).unwrap();
        let file = std::fs::read(data.join("bodies").join(format!("{:08}.seg", r.segment))).unwrap();
        let start = r.offset as usize + herald::store::segments::HEADER;
        let body = &file[start..start + r.len as usize];
        let mut batch = sled::Batch::default();
        batch.remove(k.clone());
        for (i, chunk) in body.chunks(4096).enumerate() {
            let mut key = b"b/".to_vec();
            key.extend_from_slice(&k[2..]);
            key.extend_from_slice(&(i as u32).to_be_bytes());
            batch.insert(key, chunk);
        }
        spool.apply_batch(batch).unwrap();
        n += 1;
    }
    db.remove(b"herald/spool-format").unwrap();
    db.flush().unwrap();
    drop(spool);
    drop(db);
    std::fs::remove_dir_all(data.join("bodies")).unwrap();
    n
}

#[tokio::test]
async fn a_format_1_directory_is_migrated_and_its_queued_mail_delivered() {
    migrated_and_delivered(1).await;
}

#[tokio::test]
async fn a_format_2_directory_is_migrated_and_its_queued_mail_delivered() {
    migrated_and_delivered(2).await;
}

async fn migrated_and_delivered(format: u32) {
    use herald::bench::sink::{Sink, SinkConfig};
    let dns = support::dns::TestDns::start().await;
    let sink = Sink::start(SinkConfig { addr: "127.0.0.1:0".parse().unwrap(), hostname: "sink.test".into(), tls: None, keep_messages: true }).await.unwrap();
    dns.set_zone("dest.test. MX 10 mx.dest.test.\nmx.dest.test. A 127.0.0.1\ndone.test. MX 10 mx.dest.test.\n");
    // Nothing leaves before the downgrade: the destination's DNS fails.
    dns.servfail("dest.test");
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let extra = delivering(dns.addr, sink.addr().port());
    let config = write_config_with(dir.path(), port, &extra);

    let mut relay = spawn(&config);
    wait_listening(addr).await;
    let mut c = authed_client(addr, dir.path()).await;
    // One small body (one chunk) and one of many chunks, not a multiple of 4 KiB.
    let small = message("invoice@customer.test", "small");
    let mut big = message("invoice@customer.test", "big");
    for i in 0..700 {
        big.extend_from_slice(format!("line {i:04} of the invoice, {}\r\n", "x".repeat(i % 37)).as_bytes());
    }
    let mut ids = Vec::new();
    for body in [&small, &big] {
        ids.push(queued_id(&c.send_message("app@customer.test", &["payer@dest.test"], body).await.unwrap()));
    }
    // One delivered, and so retired, before the downgrade.
    let done = message("invoice@customer.test", "done");
    let done_id = queued_id(&c.send_message("app@customer.test", &["payer@done.test"], &done).await.unwrap());
    drop(c);
    assert!(sink.wait_for(1, Duration::from_secs(30)).await, "the message to done.test was not delivered");
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop(&mut relay);
    assert_eq!(sink.count(), 1);

    assert_eq!(downgrade(&dir.path().join("data"), format), 2);

    dns.clear_servfail();
    let mut relay = spawn(&config);
    assert!(sink.wait_for(3, Duration::from_secs(30)).await, "the migrated messages were not delivered");
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop(&mut relay);
    let received = sink.received();
    assert_eq!(received.len(), 3, "each message exactly once");
    for (id, body) in ids.iter().zip([&small, &big]) {
        let m = received.iter().find(|m| m.mail_from.contains(id.as_str())).unwrap_or_else(|| panic!("{id} not delivered"));
        assert!(m.data.ends_with(body), "{id}: the delivered message ends with the body as submitted");
    }
    let log = std::fs::read_to_string(dir.path().join("relay.log")).unwrap();
    assert_eq!(log.contains("moved queued message bodies out of the database"), format == 1, "{log}");
    assert!(log.contains("moved retired message records into the spool tree"), "{log}");

    // Migrated once: no chunks left, no retired tree, the mark written.
    {
        let db = sled::open(dir.path().join("data/herald.sled")).unwrap();
        assert_eq!(db.open_tree("spool").unwrap().scan_prefix(b"b/").count(), 0);
        assert!(!db.tree_names().iter().any(|n| n.as_ref() == b"retired"), "the old retired tree is gone");
        assert_eq!(db.get(b"herald/spool-format").unwrap().as_deref(), Some(&5u32.to_be_bytes()[..]));
    }
    // Every message is readable, as retired, the one retired before the
    // migration too.
    let store = herald::store::Store::open(&dir.path().join("data"), 8).unwrap();
    for id in ids.iter().chain([&done_id]) {
        let record = store.find(id).unwrap().unwrap_or_else(|| panic!("{id} is not found after the migration"));
        assert!(record.finished_ms.is_some() && store.message(id).unwrap().is_none(), "{id} is retired");
    }
    assert_eq!(store.retired().count(), 3);
}

#[test]
fn a_directory_from_a_newer_herald_is_refused_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    {
        std::fs::create_dir_all(&data).unwrap();
        let db = sled::open(data.join("herald.sled")).unwrap();
        db.insert(b"herald/spool-format", &6u32.to_be_bytes()).unwrap();
        db.flush().unwrap();
    }
    let error = herald::store::Store::open(&data, 8).err().expect("a newer format is refused").to_string();
    assert!(error.contains("newer herald") && error.contains("format 6"), "{error}");
}
