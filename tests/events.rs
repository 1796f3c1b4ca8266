//! Events and webhooks end to end: a real relay, a real SMTP sink, the
//! in-process DNS server, and a webhook receiver that verifies every
//! signature with the `standardwebhooks` package from PyPI (Python, not
//! herald's code; `.ci/run` installs it).

mod support;

use herald::admin::client::AdminClient;
use herald::config::{Config, WebhookConfig};
use herald::events::{Event, EventKind};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::process::{free_port, spawn, try_authed_client, wait_listening, write_config_with};
use support::world::{WAIT, World};

const TOKEN: &str = "events-test-admin-token-0123";
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const ZONE: &str = "dest.test. MX 10 mx.dest.test.\nmx.dest.test. A 127.0.0.1\n";

/// The Python receiver on `port`, appending verified webhooks to `out`.
struct Receiver {
    child: Child,
    out: PathBuf,
}

impl Receiver {
    fn start(port: u16, out: &Path) -> Receiver {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/webhook_receiver.py");
        let mut child = Command::new("python3").args([script, SECRET, &port.to_string()]).arg(out).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().expect("python3 runs");
        // Wait for "ready" (the socket is bound).
        use std::io::BufRead;
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready", "the webhook receiver did not start (is `standardwebhooks` installed? `.ci/run` installs it with pip)");
        Receiver { child, out: out.to_path_buf() }
    }

    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Every verified delivery so far: (webhook-id, payload).
    fn received(&self) -> Vec<(String, serde_json::Value)> {
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        text.lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .map(|v| {
                assert!(v.get("bad").is_none(), "a webhook did not verify: {v}");
                (v["id"].as_str().unwrap().to_string(), v["payload"].clone())
            })
            .collect()
    }

    /// Events by event id, de-duplicated (at least once allows repeats).
    fn events(&self) -> BTreeMap<String, Event> {
        self.received().into_iter().map(|(_, p)| serde_json::from_value::<Event>(p["data"].clone()).unwrap()).map(|e| (e.id.clone(), e)).collect()
    }

    async fn wait_for(&self, what: &str, done: impl Fn(&BTreeMap<String, Event>) -> bool) -> BTreeMap<String, Event> {
        let deadline = Instant::now() + WAIT;
        loop {
            let events = self.events();
            if done(&events) {
                return events;
            }
            assert!(Instant::now() < deadline, "{what}: {events:#?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn webhook(port: u16) -> WebhookConfig {
    WebhookConfig { name: "billing".into(), url: format!("http://127.0.0.1:{port}/hooks"), secret: SECRET.into(), events: vec!["message.*".into(), "domain.*".into()], ..Default::default() }
}

fn with_api(c: &mut Config) {
    c.admin.token = TOKEN.into();
    c.admin.address = "127.0.0.1:0".into();
}

fn of(events: &BTreeMap<String, Event>, kind: EventKind) -> Vec<&Event> {
    events.values().filter(|e| e.kind == Some(kind)).collect()
}

/// Submits an invoice with the app's reference header.
async fn submit_with_ref(w: &World, rcpts: &[&str], reference: &str) -> herald::id::MessageId {
    let mut c = w.relay.authed().await;
    let body = format!("From: Acme <invoice@customer.test>\r\nTo: <{}>\r\nSubject: Invoice\r\nX-Herald-Ref: {reference}\r\nMessage-ID: <{reference}@acme>\r\n\r\nPlease pay.\r\n", rcpts[0]);
    support::queued_id(&c.send_message("app@dest.test", rcpts, body.as_bytes()).await.unwrap())
}

#[tokio::test]
async fn delivered_and_failed_events_reach_a_verifying_receiver_with_the_reference() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let receiver = Receiver::start(port, &dir.path().join("hooks.jsonl"));
    let w = World::start(ZONE, |c| {
        with_api(c);
        c.webhooks.push(webhook(port));
    })
    .await;
    let started = Instant::now();
    let id = submit_with_ref(&w, &["payer@dest.test", "reject-me@dest.test"], "inv-2026-0042").await;
    let events = receiver
        .wait_for("accepted, delivered and failed", |e| !of(e, EventKind::Accepted).is_empty() && !of(e, EventKind::Delivered).is_empty() && !of(e, EventKind::Failed).is_empty())
        .await;
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    let delivered = of(&events, EventKind::Delivered)[0];
    let failed = of(&events, EventKind::Failed)[0];
    for e in [of(&events, EventKind::Accepted)[0], delivered, failed] {
        assert_eq!(e.message.as_deref(), Some(id.as_str()));
        assert_eq!(e.reference.as_deref(), Some("inv-2026-0042"), "{e:?}");
        assert_eq!(e.message_id.as_deref(), Some("<inv-2026-0042@acme>"));
        assert_eq!(e.from_domain.as_deref(), Some("customer.test"));
        assert_eq!(e.identity.as_deref(), Some("relay"));
        assert_eq!(e.user.as_deref(), Some("billing"));
    }
    assert_eq!(delivered.recipient.as_deref(), Some("payer@dest.test"));
    assert!(delivered.reply.as_deref().unwrap().starts_with("250"), "{delivered:?}");
    assert!(delivered.host.as_deref().unwrap().contains("127.0.0.1"));
    assert_eq!(delivered.tls, Some(false));
    assert_eq!(failed.recipient.as_deref(), Some("reject-me@dest.test"));
    assert!(failed.reply.as_deref().unwrap().starts_with("550 5.1.1"), "{failed:?}");
    // The reference never leaves the relay.
    let at_sink = w.sink.received().into_iter().find(|m| m.mail_from.contains(id.as_str())).unwrap();
    let text = String::from_utf8_lossy(&at_sink.data).to_ascii_lowercase();
    assert!(!text.contains("x-herald-ref") && !text.contains("inv-2026-0042@acme>\r\nx"), "{text}");
    // The same events over the API, and the endpoint's state.
    let client = AdminClient::new(&format!("http://{}", w.relay.running().admin_addr.unwrap()), TOKEN);
    let (page, hooks) = tokio::task::spawn_blocking(move || (client.events(&format!("message={}", id)).unwrap().value, client.webhooks().unwrap().value)).await.unwrap();
    let kinds: Vec<EventKind> = page.events.iter().filter_map(|e| e.kind).collect();
    assert!(kinds.contains(&EventKind::Accepted) && kinds.contains(&EventKind::Delivered) && kinds.contains(&EventKind::Failed), "{kinds:?}");
    assert_eq!(hooks[0].name, "billing");
    assert!(hooks[0].delivered >= 3 && hooks[0].last_error.is_none(), "{hooks:?}");
    receiver.stop();
}

#[tokio::test]
async fn a_receiver_down_for_a_while_gets_everything_in_order_per_message() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let w = World::start(ZONE, |c| {
        with_api(c);
        c.webhooks.push(webhook(port));
    })
    .await;
    // Nobody listens: every event waits in the outbox.
    let mut ids = Vec::new();
    for n in 0..3 {
        ids.push(submit_with_ref(&w, &["payer@dest.test", &format!("tempfail-1-x{n}@dest.test")], &format!("inv-{n}")).await);
    }
    for id in &ids {
        w.finished(id).await;
    }
    let client = AdminClient::new(&format!("http://{}", w.relay.running().admin_addr.unwrap()), TOKEN);
    let hooks = tokio::task::spawn_blocking(move || client.webhooks().unwrap().value).await.unwrap();
    assert!(hooks[0].pending >= 3 * 4 && hooks[0].failed_attempts >= 1 && hooks[0].last_error.is_some(), "{hooks:?}");

    let receiver = Receiver::start(port, &dir.path().join("hooks.jsonl"));
    // accepted + delivered + deferred + delivered per message.
    let events = receiver.wait_for("every event after the receiver came back", |e| e.len() >= 3 * 4).await;
    for id in &ids {
        let mine: Vec<&Event> = events.values().filter(|e| e.message.as_deref() == Some(id.as_str())).collect();
        let kinds: Vec<EventKind> = mine.iter().filter_map(|e| e.kind).collect();
        assert_eq!(kinds[0], EventKind::Accepted, "{kinds:?}");
        assert_eq!(kinds.iter().filter(|k| **k == EventKind::Delivered).count(), 2, "{kinds:?}");
        assert!(kinds.contains(&EventKind::Deferred), "{kinds:?}");
        let deferred = mine.iter().find(|e| e.kind == Some(EventKind::Deferred)).unwrap();
        assert!(deferred.next_attempt_ms.is_some_and(|t| t > deferred.time_ms), "{deferred:?}");
    }
    // Delivered in event order: the receiver saw ids ascending.
    let order: Vec<String> = receiver.received().into_iter().map(|(id, _)| id).collect();
    let mut sorted = order.clone();
    sorted.sort();
    sorted.dedup();
    let mut seen = order.clone();
    seen.dedup();
    assert_eq!(seen, sorted, "webhooks arrived out of event order");
    receiver.stop();
}

#[tokio::test]
async fn domain_verified_then_broken_gives_verified_then_failing_events() {
    let w = World::start(ZONE, with_api).await;
    let client = AdminClient::new(&format!("http://{}", w.relay.running().admin_addr.unwrap()), TOKEN);
    let request = herald::admin::AddDomainV1 { domain: "customer.test".into(), selector_prefix: None, return_path_label: Some("em1234".into()) };
    let c = AdminClient::new(client.base(), TOKEN);
    let (added, zone) = tokio::task::spawn_blocking(move || (c.add_domain(&request).unwrap().value, c.zone().unwrap())).await.unwrap();
    // The three CNAMEs exactly as the relay asks for them.
    let cnames: String = added.customer_records.iter().map(|r| format!("{}. CNAME {}.\n", r.host, r.value)).collect();
    w.publish(&format!("{ZONE}{zone}\n{cnames}"));
    let c = AdminClient::new(client.base(), TOKEN);
    let v = tokio::task::spawn_blocking(move || c.verify_domain("customer.test").unwrap().value).await.unwrap();
    assert_eq!(v.state, herald::admin::DomainStateV1::Verified, "{v:?}");
    w.publish(&format!("{ZONE}{zone}\n"));
    let c = AdminClient::new(client.base(), TOKEN);
    tokio::task::spawn_blocking(move || c.verify_domain("customer.test").unwrap()).await.unwrap();
    let page = tokio::task::spawn_blocking(move || client.events("type=domain.*&domain=customer.test").unwrap().value).await.unwrap();
    let kinds: Vec<EventKind> = page.events.iter().filter_map(|e| e.kind).collect();
    assert_eq!(kinds, [EventKind::DomainPending, EventKind::DomainVerified, EventKind::DomainFailing], "{page:?}");
    let failing = &page.events[2];
    assert!(failing.reasons.iter().any(|r| r.contains("em1234.customer.test")), "the per-record reason names the record: {failing:?}");
}

/// The relay is killed with events waiting in the outbox and the event
/// API half read; after a restart the receiver gets them, and a reader
/// that kept its cursor sees every event exactly once.
#[tokio::test]
async fn outbox_and_cursor_survive_kill_and_restart() {
    let dns = support::dns::TestDns::start().await;
    let sink = support::world::sink().await;
    dns.set_zone(ZONE);
    let dir = tempfile::tempdir().unwrap();
    let (smtp, api, hook_port) = (free_port(), free_port(), free_port());
    let addr: std::net::SocketAddr = format!("127.0.0.1:{smtp}").parse().unwrap();
    let extra = format!(
        "[dns]\nnameservers = [\"{}\"]\ntimeout_secs = 1\nattempts = 1\n[delivery]\nmx_port = {}\n[queue]\nretry_schedule = [\"1s\"]\n\
         [identity]\ndomain = \"relay.test\"\nbounce_domain = \"bounces.relay.test\"\nrewrite_from = false\n\
         [admin]\naddress = \"127.0.0.1:{api}\"\ntoken = \"{TOKEN}\"\n\
         [[webhook]]\nname = \"billing\"\nurl = \"http://127.0.0.1:{hook_port}/hooks\"\nsecret = \"{SECRET}\"\n",
        dns.addr,
        sink.addr().port()
    );
    let config = write_config_with(dir.path(), smtp, &extra);
    let client = move || AdminClient::new(&format!("http://127.0.0.1:{api}"), TOKEN);
    let mut seen: Vec<String> = Vec::new();
    let mut cursor = String::new();
    let read_some = move |cursor: String, limit: usize| async move {
        tokio::task::spawn_blocking(move || client().events(&format!("after={cursor}&limit={limit}")).map(|a| a.value)).await.unwrap()
    };

    let mut relay = spawn(&config);
    wait_listening(addr).await;
    for n in 0..4 {
        let mut c = try_authed_client(addr, dir.path()).await.unwrap();
        let r = c.send_message("app@dest.test", &["payer@dest.test"], &support::message("invoice@customer.test", &format!("k{n}"))).await.unwrap();
        assert_eq!(r.code, 250);
    }
    assert!(sink.wait_for(4, WAIT).await);
    // Read part of the log, two at a time. A message sent on at once has
    // its events written with its outcome, in the committer's next batch
    // of finished messages: they may come a few milliseconds after the
    // sink has the message.
    let deadline = Instant::now() + WAIT;
    while seen.len() < 4 && Instant::now() < deadline {
        let page = read_some(cursor.clone(), 2.min(4 - seen.len())).await.unwrap();
        seen.extend(page.events.iter().map(|e| e.id.clone()));
        cursor = page.cursor;
        if page.events.is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    assert_eq!(seen.len(), 4);
    relay.kill().unwrap();
    relay.wait().unwrap();

    let receiver = Receiver::start(hook_port, &dir.path().join("hooks.jsonl"));
    let mut relay = spawn(&config);
    wait_listening(addr).await;
    let mut c = try_authed_client(addr, dir.path()).await.unwrap();
    assert_eq!(c.send_message("app@dest.test", &["payer@dest.test"], &support::message("invoice@customer.test", "after")).await.unwrap().code, 250);
    assert!(sink.wait_for(5, WAIT).await);
    // Every event of all five messages reaches the receiver.
    let events = receiver.wait_for("all ten events after the restart", |e| e.len() >= 10).await;
    assert_eq!(of(&events, EventKind::Delivered).len(), 5);
    // The reader goes on from its cursor and ends with every event once.
    let deadline = Instant::now() + WAIT;
    loop {
        let page = read_some(cursor.clone(), 3).await.unwrap();
        seen.extend(page.events.iter().map(|e| e.id.clone()));
        cursor = page.cursor;
        if seen.len() >= 10 || Instant::now() > deadline {
            break;
        }
        if page.events.is_empty() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let unique: BTreeSet<&String> = seen.iter().collect();
    assert_eq!((seen.len(), unique.len()), (10, 10), "{seen:?}");
    let all = read_some(String::new(), 1000).await.unwrap();
    let all: BTreeSet<String> = all.events.into_iter().map(|e| e.id).collect();
    assert_eq!(all, seen.iter().cloned().collect::<BTreeSet<_>>());
    relay.kill().unwrap();
    relay.wait().unwrap();
    receiver.stop();
}
