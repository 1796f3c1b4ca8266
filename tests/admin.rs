//! The admin HTTP API and `herald queue` end to end: a relay in-process,
//! its API on a kernel-chosen loopback port, real HTTP requests, and the
//! real binary for the CLI.

mod support;

use herald::admin::{ErrorV1, HealthV1, MessageSearchV1, MessageStateV1, MessageV1, OutcomeV1, QueueListV1, QueueSummaryV1, RcptStatusV1};
use herald::clock::{Clock, SystemClock};
use herald::config::Config;
use herald::id::MessageId;
use herald::store::MessageRecord;
use serde::de::DeserializeOwned;
use std::net::SocketAddr;
use std::time::Duration;
use support::world::World;
use support::*;

const TOKEN: &str = "test-admin-token-0123456789";
const WAIT: Duration = Duration::from_secs(20);

fn with_api(config: &mut Config) {
    config.admin.token = TOKEN.into();
    config.admin.address = "127.0.0.1:0".into();
}

/// A relay whose deliveries all go to a closed loopback port: messages
/// are attempted once, deferred, and stay queued for an hour.
async fn stuck_relay() -> TestRelay {
    TestRelay::start_with(with_api).await
}

/// A relay that delivers everything to a sink (the implicit MX of
/// `dest.test`), retrying after a second.
async fn delivering_relay() -> World {
    World::start("dest.test. A 127.0.0.1\n", with_api).await
}

fn api(relay: &TestRelay) -> SocketAddr {
    relay.running().admin_addr.expect("the admin API is on")
}

/// One HTTP request; returns the status and the body. Blocking ureq runs
/// off the runtime that serves the relay.
async fn http(relay: &TestRelay, method: &str, path: &str, auth: Option<&str>) -> (u16, String) {
    let url = format!("http://{}{path}", api(relay));
    let (method, auth) = (method.to_string(), auth.map(str::to_string));
    tokio::task::spawn_blocking(move || {
        let mut request = ureq::request(&method, &url).timeout(Duration::from_secs(10));
        if let Some(auth) = auth {
            request = request.set("Authorization", &auth);
        }
        match request.call() {
            Ok(r) => (r.status(), r.into_string().unwrap()),
            Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap()),
            Err(e) => panic!("{method} {url}: {e}"),
        }
    })
    .await
    .unwrap()
}

/// An authorized request that must answer `want`, decoded.
async fn call<T: DeserializeOwned>(relay: &TestRelay, method: &str, path: &str, want: u16) -> T {
    let (status, body) = http(relay, method, path, Some(&format!("Bearer {TOKEN}"))).await;
    assert_eq!(status, want, "{method} {path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{method} {path}: {e}: {body}"))
}

async fn submit(relay: &TestRelay, rcpts: &[&str]) -> MessageId {
    let mut c = relay.authed().await;
    queued_id(
        &c.send_message("app@sender.test", rcpts, &message("invoice@customer.test", "admin"))
            .await
            .unwrap(),
    )
}

/// Waits until the stored record satisfies `done`.
async fn wait_for(relay: &TestRelay, id: &MessageId, what: &str, done: impl Fn(&MessageRecord) -> bool) -> MessageRecord {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(r) = relay.running().store.find(id).unwrap().filter(|r| done(r)) {
            return r;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "message {id}: {what}: {:?}",
            relay.running().store.find(id).unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn cli_args(relay: &TestRelay, args: &[&str]) -> Vec<String> {
    let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    all.extend([
        "--api".to_string(),
        format!("http://{}", api(relay)),
        "--token".into(),
        TOKEN.into(),
    ]);
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_open_and_everything_else_needs_the_token() {
    let relay = stuck_relay().await;
    let (status, body) = http(&relay, "GET", "/api/health", None).await;
    assert_eq!(status, 200, "{body}");
    let health: HealthV1 = serde_json::from_str(&body).unwrap();
    assert_eq!((health.status.as_str(), health.queued, health.in_flight), ("ok", 0, 0));
    assert_eq!(health.version, env!("CARGO_PKG_VERSION"));

    let wrong = [
        None,
        Some("Bearer not-the-admin-token-at-all".to_string()),
        Some(format!("Basic {TOKEN}")),
        Some(format!("Bearer {TOKEN}x")),
    ];
    for path in ["/api/queue", "/api/queue/messages", "/metrics", "/api/messages/01jd5x3q8k2m7n4p"] {
        for auth in &wrong {
            let (status, body) = http(&relay, "GET", path, auth.as_deref()).await;
            assert_eq!(status, 401, "{path} with {auth:?}: {body}");
            let error: ErrorV1 = serde_json::from_str(&body).unwrap();
            assert!(error.error.contains("admin.token"), "{}", error.error);
        }
    }
    for (method, path) in [
        ("POST", "/api/queue/01jd5x3q8k2m7n4p/retry"),
        ("DELETE", "/api/queue/01jd5x3q8k2m7n4p"),
    ] {
        assert_eq!(http(&relay, method, path, None).await.0, 401, "{method} {path}");
    }
    let summary: QueueSummaryV1 = call(&relay, "GET", "/api/queue", 200).await;
    assert_eq!(summary.messages, 0);
    // The scheme is case-insensitive.
    assert_eq!(http(&relay, "GET", "/api/queue", Some(&format!("bearer {TOKEN}"))).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_message_summary_retry_and_drop() {
    let relay = stuck_relay().await;
    let id = submit(&relay, &["payer@dest.test", "clerk@dest.test"]).await;
    let record = wait_for(&relay, &id, "deferred", |r| {
        r.recipients.iter().all(|x| !x.attempts.is_empty()) && !relay.running().queue.in_flight(&id)
    })
    .await;
    let first_due = record.due_ms;

    let m: MessageV1 = call(&relay, "GET", &format!("/api/messages/{id}"), 200).await;
    assert_eq!(
        (m.id.as_str(), m.state, m.in_flight, m.attempts),
        (id.as_str(), MessageStateV1::Queued, false, 1)
    );
    assert_eq!(m.due_ms, Some(first_due));
    assert_eq!(
        (m.mail_from.as_str(), m.from_address.as_str(), m.auth_user.as_deref()),
        ("app@sender.test", "invoice@customer.test", Some(USER))
    );
    let addresses: Vec<&str> = m.recipients.iter().map(|r| r.address.as_str()).collect();
    assert_eq!(addresses, ["payer@dest.test", "clerk@dest.test"]);
    for r in &m.recipients {
        assert_eq!(r.status, RcptStatusV1::Deferred, "{r:?}");
        assert_eq!(r.attempts.len(), 1);
        assert_eq!(r.attempts[0].outcome, OutcomeV1::Temporary);
        assert!(!r.attempts[0].reply.is_empty());
    }

    let summary: QueueSummaryV1 = call(&relay, "GET", "/api/queue", 200).await;
    assert_eq!(
        (summary.messages, summary.in_flight, summary.oldest_due_ms),
        (1, 0, Some(first_due))
    );
    assert_eq!(summary.recipients_by_status.get("deferred"), Some(&2));
    let list: QueueListV1 = call(&relay, "GET", "/api/queue/messages?limit=5", 200).await;
    assert_eq!(list.total, 1);
    assert_eq!(list.messages[0].id, id.as_str());
    let health: HealthV1 = call(&relay, "GET", "/api/health", 200).await;
    assert_eq!(health.queued, 1);
    // Refusals are counted: one wrong password, one command with a NUL.
    let mut guesser = relay.tls_client().await;
    assert_eq!(guesser.auth_plain(USER, "wrong").await.unwrap().code, 535);
    assert_eq!(guesser.command("NOOP \0").await.unwrap().code, 501);
    let (status, metrics) = http(&relay, "GET", "/metrics", Some(&format!("Bearer {TOKEN}"))).await;
    assert_eq!(status, 200);
    assert!(metrics.contains("# TYPE herald_smtp_refusals_total counter\n"), "{metrics}");
    for (reason, n) in [("auth_failure", 1), ("control_bytes", 1), ("auth_lockout", 0), ("max_connections_per_ip", 0), ("command_timeout", 0)] {
        assert!(metrics.contains(&format!("herald_smtp_refusals_total{{reason=\"{reason}\"}} {n}\n")), "{reason}: {metrics}");
    }
    // Nobody waited for a receiving slot (`limits.max_concurrent_data`).
    for series in ["herald_smtp_data_waits_total 0\n", "herald_smtp_data_leases_lapsed_total 0\n"] {
        assert!(metrics.contains(series), "{series}: {metrics}");
    }
    assert!(metrics.contains("\nherald_queue_messages 1\n"), "{metrics}");
    assert!(metrics.contains("herald_queue_recipients{status=\"deferred\"} 2\n"), "{metrics}");

    // Retry: due now, so the scheduler starts a second round at once.
    assert!(first_due > SystemClock.now_ms() + 60_000, "deferred for the hour");
    let m: MessageV1 = call(&relay, "POST", &format!("/api/queue/{id}/retry"), 200).await;
    assert!(m.due_ms.unwrap() < first_due, "{m:?}");
    let record = wait_for(&relay, &id, "second round", |r| r.recipients.iter().all(|x| x.attempts.len() == 2)).await;
    assert_eq!(record.attempts, 2);
    wait_for(&relay, &id, "round over", |_| !relay.running().queue.in_flight(&id)).await;

    // Drop: pending recipients fail, the message retires, no DSN is queued.
    let m: MessageV1 = call(&relay, "DELETE", &format!("/api/queue/{id}"), 200).await;
    assert_eq!(m.state, MessageStateV1::Finished);
    for r in &m.recipients {
        assert_eq!(r.status, RcptStatusV1::Failed);
        let last = r.attempts.last().unwrap();
        assert_eq!(
            (last.outcome, last.reply.as_str()),
            (OutcomeV1::Permanent, "dropped by the operator")
        );
    }
    let stored = relay.running().store.find(&id).unwrap().unwrap();
    assert!(stored.finished_ms.is_some());
    assert!(relay.running().store.message(&id).unwrap().is_none(), "retired, not queued");
    let shown: MessageV1 = call(&relay, "GET", &format!("/api/messages/{id}"), 200).await;
    assert_eq!((shown.state, shown.due_ms), (MessageStateV1::Finished, None));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(relay.running().store.messages().count(), 0, "no DSN for a dropped message");

    // A finished message can be neither retried nor dropped.
    let e: ErrorV1 = call(&relay, "POST", &format!("/api/queue/{id}/retry"), 409).await;
    assert!(e.error.contains("already finished"), "{}", e.error);
    let _: ErrorV1 = call(&relay, "DELETE", &format!("/api/queue/{id}"), 409).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_and_malformed_requests() {
    let relay = stuck_relay().await;
    let unknown = MessageId::generate(1_700_000_000_000);
    for (method, path) in [
        ("GET", format!("/api/messages/{unknown}")),
        ("POST", format!("/api/queue/{unknown}/retry")),
        ("DELETE", format!("/api/queue/{unknown}")),
    ] {
        let e: ErrorV1 = call(&relay, method, &path, 404).await;
        assert!(e.error.contains(unknown.as_str()), "{}", e.error);
    }
    for (method, path) in [
        ("GET", "/api/messages/not-an-id"),
        ("POST", "/api/queue/01jd5x3q8k2m7n4!/retry"),
        ("DELETE", "/api/queue/short"),
    ] {
        let e: ErrorV1 = call(&relay, method, path, 400).await;
        assert!(e.error.contains("not a relay message id"), "{}", e.error);
    }
    for query in ["limit=0", "limit=many", "limt=5"] {
        let e: ErrorV1 = call(&relay, "GET", &format!("/api/queue/messages?{query}"), 400).await;
        assert!(e.error.contains("limit"), "{query}: {}", e.error);
    }
    let _: ErrorV1 = call(&relay, "GET", "/api/nothing-here", 404).await;
    let _: ErrorV1 = call(&relay, "PUT", "/api/queue", 405).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivered_message_keeps_its_attempt_history_and_the_cli_shows_it() {
    let World { dns: _dns, sink, relay } = delivering_relay().await;
    let id = submit(&relay, &["tempfail-1-a@dest.test"]).await;
    wait_for(&relay, &id, "finished", |r| r.finished_ms.is_some()).await;
    assert_eq!(sink.count(), 1);

    let m: MessageV1 = call(&relay, "GET", &format!("/api/messages/{id}"), 200).await;
    assert_eq!(m.state, MessageStateV1::Finished);
    assert!(m.finished_ms.is_some());
    assert_eq!(
        (m.signed_domain.as_deref(), m.selector.as_deref()),
        (Some("relay.test"), Some("herald"))
    );
    assert_eq!(m.envelope_from, Some(format!("bounces+{id}@bounces.relay.test")));
    let r = &m.recipients[0];
    assert_eq!(r.status, RcptStatusV1::Delivered);
    let outcomes: Vec<OutcomeV1> = r.attempts.iter().map(|a| a.outcome).collect();
    assert_eq!(outcomes, [OutcomeV1::Temporary, OutcomeV1::Delivered]);
    assert!(r.attempts[0].reply.starts_with("451"), "{:?}", r.attempts);
    assert!(r.attempts[1].reply.starts_with("250"), "{:?}", r.attempts);
    assert!(r.attempts[1].host.contains("127.0.0.1"), "{:?}", r.attempts);

    let (ok, out, err) = run_herald(cli_args(&relay, &["queue", "show", id.as_str()])).await;
    assert!(ok, "{err}");
    assert!(out.contains(id.as_str()) && out.contains("finished"), "{out}");
    assert!(out.contains("tempfail-1-a@dest.test  delivered"), "{out}");
    assert!(out.contains("451 4.3.0 try again later"), "remote replies shown: {out}");

    let (ok, out, err) = run_herald(cli_args(&relay, &["queue", "list", "--json"])).await;
    assert!(ok, "{err}");
    let list: QueueListV1 = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(list.total, 0, "the delivered message left the queue");

    let (ok, out, err) = run_herald(cli_args(&relay, &["queue", "summary"])).await;
    assert!(ok, "{err}");
    assert!(out.contains("queued messages  0"), "{out}");

    // Found after it finished, by recipient (any case) and by Message-ID.
    let (ok, out, err) = run_herald(cli_args(&relay, &["queue", "find", "TEMPFAIL-1-a@dest.test"])).await;
    assert!(ok, "{err}");
    assert!(out.contains(id.as_str()) && out.contains("message-id <admin@test>"), "{out}");
    for query in ["%3Cadmin%40test%3E", "admin%40test", id.as_str()] {
        let found: MessageSearchV1 = call(&relay, "GET", &format!("/api/messages?q={query}"), 200).await;
        let ids: Vec<&str> = found.messages.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, [id.as_str()], "{query}");
        assert_eq!(found.messages[0].message_id.as_deref(), Some("<admin@test>"));
    }
    for query in ["a%40dest.test", "admin"] {
        let found: MessageSearchV1 = call(&relay, "GET", &format!("/api/messages?q={query}"), 200).await;
        assert!(found.messages.is_empty(), "{query}: only whole values match");
    }
    let _: ErrorV1 = call(&relay, "GET", "/api/messages?q=", 400).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_explains_a_missing_relay_and_a_wrong_token() {
    // A loopback port that nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let args = ["queue", "summary", "--api", &format!("http://127.0.0.1:{port}"), "--token", TOKEN]
        .map(String::from)
        .to_vec();
    let (ok, _, err) = run_herald(args).await;
    assert!(!ok);
    assert!(
        err.contains("not running") && err.contains("`admin.token`") && err.contains("`admin.address`"),
        "{err}"
    );

    let relay = stuck_relay().await;
    let args = [
        "queue",
        "list",
        "--api",
        &format!("http://{}", api(&relay)),
        "--token",
        "wrong-token-wrong-token",
    ]
    .map(String::from)
    .to_vec();
    let (ok, _, err) = run_herald(args).await;
    assert!(!ok);
    assert!(err.contains("refused the token"), "{err}");

    let (ok, _, err) = run_herald(cli_args(&relay, &["queue", "show", "nope"])).await;
    assert!(!ok);
    assert!(err.contains("not a relay message id"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_is_off_without_a_token() {
    let relay = TestRelay::start().await;
    assert_eq!(relay.running().admin_addr, None);
}
