//! Delivery end to end: a relay in-process, a real DNS server and real
//! SMTP sinks, all on loopback.

mod support;

use herald::bench::sink::SinkMessage;
use herald::clock::{ManualClock, SharedClock, SystemClock};
use herald::config::{Config, OutboundTls, RouteConfig};
use herald::store::{Outcome, RcptStatus};
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;
use support::world::{self, WAIT, sink};

/// The shared world, delivering with opportunistic TLS and short idle
/// connections, its DNS holding [`zone`].
struct World(world::World);

impl Deref for World {
    type Target = world::World;
    fn deref(&self) -> &world::World {
        &self.0
    }
}

fn zone(sink_ip: &str, extra: &str) -> String {
    format!(
        "dest.test. MX 10 mx1.dest.test.\n\
         dest.test. MX 20 mx2.dest.test.\n\
         mx1.dest.test. A 127.0.0.2\n\
         mx2.dest.test. A {sink_ip}\n\
         implicit.test. A {sink_ip}\n\
         nullmx.test. MX 0 .\n\
         sender.test. MX 10 mx2.dest.test.\n\
         {extra}\n"
    )
}

impl World {
    async fn start(tweak: impl FnOnce(&mut Config)) -> Self {
        Self::start_with_clock(tweak, Arc::new(SystemClock)).await
    }

    async fn start_with_clock(tweak: impl FnOnce(&mut Config), clock: SharedClock) -> Self {
        let tweak = |c: &mut Config| {
            c.delivery.tls = OutboundTls::Opportunistic;
            c.delivery.idle_secs = 2;
            tweak(c);
        };
        World(world::World::start_with_clock(&zone("127.0.0.1", ""), tweak, clock).await)
    }

    /// Publishes the zone, with the relay's DKIM key and `extra` lines.
    fn publish(&self, extra: &str) {
        self.0.publish(&zone("127.0.0.1", extra));
    }
}

fn header<'a>(m: &'a SinkMessage, name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(&m.data).to_string();
    let head = text.split("\r\n\r\n").next().unwrap_or("").replace("\r\n\t", " ").replace("\r\n ", " ");
    head.lines().find(|l| l.to_ascii_lowercase().starts_with(&format!("{}:", name.to_ascii_lowercase()))).map(|l| l[name.len() + 1..].trim().to_string())
}

#[tokio::test]
async fn mx_in_preference_order_falls_back_to_the_second() {
    let w = World::start(|_| {}).await;
    let id = w.submit("invoice@customer.test", "app@sender.test", &["payer@dest.test"]).await;
    let record = w.finished(&id).await;
    let rcpt = &record.recipients[0];
    assert_eq!(rcpt.status, RcptStatus::Delivered);
    assert!(rcpt.attempts.last().unwrap().host.starts_with("mx2.dest.test [127.0.0.1]"), "{:?}", rcpt.attempts);
    assert_eq!(w.sink.received().len(), 1);
}

#[tokio::test]
async fn implicit_mx_is_the_domain_itself() {
    let w = World::start(|_| {}).await;
    let id = w.submit("invoice@customer.test", "app@sender.test", &["payer@implicit.test"]).await;
    assert_eq!(w.finished(&id).await.recipients[0].status, RcptStatus::Delivered);
    assert_eq!(w.sink.received()[0].rcpts, ["payer@implicit.test"]);
}

#[tokio::test]
async fn null_mx_fails_permanently_and_the_sender_gets_a_dsn() {
    let w = World::start(|_| {}).await;
    let id = w.submit("invoice@customer.test", "app@sender.test", &["payer@nullmx.test"]).await;
    let record = w.finished(&id).await;
    assert_eq!(record.recipients[0].status, RcptStatus::Failed);
    assert!(record.recipients[0].attempts[0].reply.contains("null MX"), "{:?}", record.recipients[0].attempts);
    assert!(w.sink.wait_for(1, WAIT).await, "DSN expected");
    let dsn = &w.sink.received()[0];
    assert_eq!(dsn.mail_from, "", "a DSN goes out with the null sender");
    assert_eq!(dsn.rcpts, ["app@sender.test"]);
}

#[tokio::test]
async fn static_route_wins_over_mx() {
    let other = sink().await;
    let port = other.addr().port();
    let w = World::start(|c| c.routes.push(RouteConfig { domain: "dest.test".into(), host: "127.0.0.1".into(), port, tls: OutboundTls::Disabled, ..Default::default() })).await;
    let id = w.submit("invoice@customer.test", "app@sender.test", &["payer@dest.test"]).await;
    assert_eq!(w.finished(&id).await.recipients[0].status, RcptStatus::Delivered);
    assert_eq!(other.received().len(), 1);
    assert_eq!(w.sink.received().len(), 0);
}

#[tokio::test]
async fn temporary_failure_is_retried_and_the_history_kept() {
    let w = World::start(|_| {}).await;
    let id = w.submit("invoice@customer.test", "app@sender.test", &["tempfail-1-a@dest.test"]).await;
    let record = w.finished(&id).await;
    let rcpt = &record.recipients[0];
    assert_eq!(rcpt.status, RcptStatus::Delivered);
    let outcomes: Vec<Outcome> = rcpt.attempts.iter().map(|a| a.outcome).collect();
    assert_eq!(outcomes, [Outcome::Temporary, Outcome::Delivered]);
    assert!(rcpt.attempts[0].reply.starts_with("451"), "{:?}", rcpt.attempts);
    assert_eq!(record.attempts, 2);
}

#[tokio::test]
async fn permanent_failure_fails_the_recipient_and_sends_a_dsn() {
    let w = World::start(|_| {}).await;
    let id = w.submit("invoice@customer.test", "app@sender.test", &["reject-me@dest.test", "payer@dest.test"]).await;
    let record = w.finished(&id).await;
    let by_addr: Vec<(&str, RcptStatus)> = record.recipients.iter().map(|r| (r.address.as_str(), r.status)).collect();
    assert_eq!(by_addr, [("reject-me@dest.test", RcptStatus::Failed), ("payer@dest.test", RcptStatus::Delivered)]);
    assert!(w.sink.wait_for(2, WAIT).await);
    let dsn = w.sink.received().into_iter().find(|m| m.mail_from.is_empty()).expect("a DSN");
    let text = String::from_utf8_lossy(&dsn.data);
    assert!(text.contains("report-type=delivery-status"), "{text}");
    assert!(text.contains("Final-Recipient: rfc822; reject-me@dest.test"), "{text}");
    assert!(text.contains("Status: 5.1.1"), "{text}");
    assert!(!text.contains("Final-Recipient: rfc822; payer@dest.test"), "{text}");
    // The DSN itself is never answered with another DSN.
    let dsn_record = w.relay.running().store.retired().map(|r| r.unwrap()).find(|r| r.is_dsn).unwrap();
    assert_eq!(dsn_record.mail_from, "");
}

#[tokio::test]
async fn expiry_fails_the_recipient() {
    let clock = ManualClock::new();
    let w = World::start_with_clock(|c| c.queue.lifetime = "1d".into(), clock.clone()).await;
    let id = w.submit("invoice@customer.test", "app@sender.test", &["tempfail-99-x@dest.test"]).await;
    let record = w.attempted(&id).await;
    assert_eq!(record.recipients[0].status, RcptStatus::Deferred);
    clock.advance(Duration::from_secs(2 * 86400));
    let record = w.finished(&id).await;
    assert_eq!(record.recipients[0].status, RcptStatus::Expired);
    assert!(w.sink.wait_for(1, WAIT).await, "DSN for the expired recipient");
    let text = String::from_utf8_lossy(&w.sink.received()[0].data).to_string();
    assert!(text.contains("Status: 4.4.7"), "{text}");
}

#[tokio::test]
async fn relay_signature_verifies_and_envelope_uses_the_bounce_domain() {
    let w = World::start(|_| {}).await;
    let id = w.submit("invoice@customer.test", "app@sender.test", &["payer@dest.test"]).await;
    assert!(w.sink.wait_for(1, WAIT).await);
    let m = &w.sink.received()[0];
    assert_eq!(m.mail_from, format!("bounces+{id}@bounces.relay.test"));
    assert!(m.data.starts_with(b"DKIM-Signature: "), "signature first");
    assert!(header(m, "Received").unwrap().contains(&format!("id {id}")));
    assert_eq!(header(m, "From").unwrap(), "Acme Billing <invoice@customer.test>", "From unchanged without a strict DMARC policy");
    // Verified the way a receiver would, through the same DNS server.
    let auth = herald::dns::Dns::from_config(&w.dns.config()).unwrap().authenticator();
    let parsed = mail_auth::AuthenticatedMessage::parse(&m.data).unwrap();
    let results = auth.verify_dkim(&parsed).await;
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].result(), &mail_auth::DkimResult::Pass, "{:?}", results[0].result());
    assert_eq!(results[0].signature().unwrap().d, "relay.test");
    // Everything after the relay's headers is the submitted message, unchanged.
    let text = String::from_utf8_lossy(&m.data);
    assert!(text.ends_with("Message-ID: <inv42@acme>\r\n\r\nPlease pay.\r\n"), "{text}");
}

#[tokio::test]
async fn strict_dmarc_rewrites_from() {
    let w = World::start(|_| {}).await;
    w.publish("_dmarc.strict.test. TXT \"v=DMARC1; p=reject\"");
    let id = w.submit("invoice@strict.test", "app@sender.test", &["payer@dest.test"]).await;
    assert!(w.sink.wait_for(1, WAIT).await);
    let m = &w.sink.received()[0];
    assert_eq!(header(m, "From").unwrap(), "\"Acme Billing via Herald Relay\" <noreply@relay.test>");
    assert_eq!(header(m, "Reply-To").unwrap(), "\"Acme Billing\" <invoice@strict.test>");
    assert_eq!(String::from_utf8_lossy(&m.data).matches("\nFrom:").count() + usize::from(m.data.starts_with(b"From:")), 1, "exactly one From");
    let auth = herald::dns::Dns::from_config(&w.dns.config()).unwrap().authenticator();
    let parsed = mail_auth::AuthenticatedMessage::parse(&m.data).unwrap();
    let results = auth.verify_dkim(&parsed).await;
    assert_eq!(results[0].result(), &mail_auth::DkimResult::Pass);
    let record = w.finished(&id).await;
    let reason = record.prepared.unwrap().reason;
    // Words for people: the policy's own word, never a debug form.
    assert!(reason.contains("DMARC p=reject for strict.test, From rewritten") && !reason.contains("some("), "{reason}");
}

#[tokio::test]
async fn required_tls_to_a_server_without_starttls_is_deferred_not_sent_in_clear() {
    let w = World::start(|c| c.delivery.tls = OutboundTls::Required).await;
    let id = w.submit("invoice@customer.test", "app@sender.test", &["payer@dest.test"]).await;
    let record = w.attempted(&id).await;
    let rcpt = &record.recipients[0];
    assert_eq!(rcpt.status, RcptStatus::Deferred);
    assert!(rcpt.attempts[0].reply.contains("TLS is required"), "{:?}", rcpt.attempts);
    assert_eq!(w.sink.received().len(), 0);
}

#[tokio::test]
async fn connection_dropped_mid_data_is_a_temporary_failure() {
    let w = World::start(|_| {}).await;
    let id = w.submit("invoice@customer.test", "app@sender.test", &["drop-me@dest.test"]).await;
    let record = w.attempted(&id).await;
    let rcpt = &record.recipients[0];
    assert_eq!(rcpt.status, RcptStatus::Deferred, "{:?}", rcpt.attempts);
    assert_eq!(rcpt.attempts[0].outcome, Outcome::Temporary);
    assert!(w.sink.received().is_empty());
}

#[tokio::test]
async fn dns_servfail_defers_instead_of_failing() {
    let w = World::start(|_| {}).await;
    w.dns.servfail("dest.test");
    let id = w.submit("invoice@customer.test", "app@sender.test", &["payer@dest.test"]).await;
    let record = w.attempted(&id).await;
    assert_eq!(record.recipients[0].status, RcptStatus::Deferred, "{:?}", record.recipients[0].attempts);
    w.dns.clear_servfail();
    assert_eq!(w.finished(&id).await.recipients[0].status, RcptStatus::Delivered);
}

#[tokio::test]
async fn connections_are_reused_across_messages() {
    let w = World::start(|c| c.queue.per_domain = 1).await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(w.submit("invoice@customer.test", "app@sender.test", &["payer@implicit.test"]).await);
    }
    for id in &ids {
        assert_eq!(w.finished(id).await.recipients[0].status, RcptStatus::Delivered);
    }
    assert_eq!(w.sink.received().len(), 5);
    assert!(w.sink.connections() < 5, "expected reuse, saw {} connections for 5 messages", w.sink.connections());
}

/// Many messages at once through few connections: a connection woken for
/// a job that a busy connection took keeps waiting for the next one. It
/// used to close instead, so the next job opened a new connection (262
/// connections for 2000 messages in `scripts/bench.sh` at 10 sessions).
#[tokio::test]
async fn a_connection_outbid_for_a_job_stays_open() {
    let w = World::start(|c| c.queue.per_domain = 3).await;
    let mut submits = tokio::task::JoinSet::new();
    let w = Arc::new(w);
    for _ in 0..8 {
        let w = w.clone();
        submits.spawn(async move {
            let mut ids = Vec::new();
            for _ in 0..10 {
                ids.push(w.submit("invoice@customer.test", "app@sender.test", &["payer@implicit.test"]).await);
            }
            ids
        });
    }
    let ids: Vec<_> = submits.join_all().await.into_iter().flatten().collect();
    for id in &ids {
        assert_eq!(w.finished(id).await.recipients[0].status, RcptStatus::Delivered);
    }
    assert_eq!(w.sink.received().len(), 80);
    assert!(w.sink.connections() <= 3, "per_domain = 3, but {} connections for 80 messages", w.sink.connections());
}

/// With every delivery slot taken (`queue.workers` × 4 messages in
/// flight), a new message is not sent from memory: it waits in the due
/// index, and the scheduler sends it once a slot frees.
#[tokio::test]
async fn a_message_accepted_while_the_queue_is_full_waits_its_turn() {
    use herald::bench::sink::{Action, Stage};
    let w = Arc::new(World::start(|c| c.queue.workers = 1).await);
    // Slow receivers keep the first messages in flight.
    w.sink.inject(Stage::EndOfData, Action::Delay(300), 6);
    let mut submits = tokio::task::JoinSet::new();
    for _ in 0..12 {
        let w = w.clone();
        submits.spawn(async move { w.submit("invoice@customer.test", "app@sender.test", &["payer@implicit.test"]).await });
    }
    let ids = submits.join_all().await;
    for id in &ids {
        let record = w.finished(id).await;
        assert_eq!(record.recipients[0].status, RcptStatus::Delivered);
        assert_eq!(record.attempts, 1, "{record:?}");
    }
    assert_eq!(w.sink.received().len(), 12);
}
