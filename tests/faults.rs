//! The fault matrix: a real relay delivering over real sockets to a real
//! SMTP sink that misbehaves on cue (its fault script and its recipient
//! behaviours), with a real DNS server on loopback. For each fault: the
//! final state of every recipient, the copies at the sink (exactly one,
//! or none where the sink said 5xx), the DSNs sent, and a relay that
//! still answers.

mod support;

use herald::admin::client::AdminClient;
use herald::bench::sink::{Action, SinkMessage, Stage};
use herald::config::{Config, OutboundTls};
use herald::store::{MessageRecord, Outcome, RcptStatus};
use std::time::{Duration, Instant};
use support::world::{WAIT, World};

const TOKEN: &str = "fault-matrix-admin-token-0123";
const ZONE: &str = "dest.test. MX 10 mx.dest.test.\nmx.dest.test. A 127.0.0.1\n";

/// A relay with the admin API on, retrying after a second; `idle_secs`
/// 0 opens a fresh connection for every delivery (so connection-level
/// faults strike every message), more reuses connections.
async fn world(idle_secs: u64, tweak: impl FnOnce(&mut Config)) -> World {
    World::start(ZONE, |c| {
        c.admin.token = TOKEN.into();
        c.admin.address = "127.0.0.1:0".into();
        c.delivery.idle_secs = idle_secs;
        c.delivery.command_timeout_secs = 10;
        tweak(c);
    })
    .await
}

fn admin(w: &World) -> AdminClient {
    AdminClient::new(&format!("http://{}", w.relay.running().admin_addr.unwrap()), TOKEN)
}

/// Messages at the sink for `rcpt`, DSNs excluded.
fn copies(w: &World, rcpt: &str) -> usize {
    w.sink.received().iter().filter(|m| !m.mail_from.is_empty() && m.rcpts.iter().any(|r| r == rcpt)).count()
}

fn dsns(w: &World) -> Vec<SinkMessage> {
    w.sink.received().into_iter().filter(|m| m.mail_from.is_empty()).collect()
}

fn statuses(r: &MessageRecord) -> Vec<RcptStatus> {
    r.recipients.iter().map(|r| r.status).collect()
}

fn outcomes(r: &MessageRecord, i: usize) -> Vec<Outcome> {
    r.recipients[i].attempts.iter().map(|a| a.outcome).collect()
}

/// The relay's health answers within 2 s, and a new SMTP session gets
/// its banner.
async fn answering(w: &World) {
    let client = admin(w);
    let started = Instant::now();
    let health = tokio::task::spawn_blocking(move || client.health()).await.unwrap();
    assert!(health.is_ok() && started.elapsed() < Duration::from_secs(2), "health: {health:?} after {:?}", started.elapsed());
    let banner = tokio::time::timeout(Duration::from_secs(2), herald::bench::client::Client::connect(w.relay.starttls_addr())).await;
    assert!(matches!(&banner, Ok(Ok((_, r))) if r.code == 220), "no SMTP banner within 2 s");
}

/// Greylisting: the receiver answers 4xx to the only RCPT of a
/// transaction. The greylisted recipient is retried and delivered, and an
/// unrelated message to the same domain sent right behind it over the same
/// connection is delivered too: the open transaction is reset, never
/// answered with `503 nested MAIL` and bounced.
#[tokio::test]
async fn greylisting_on_a_reused_connection_delays_but_never_bounces() {
    for pipelining in [false, true] {
        let w = world(5, |_| {}).await;
        w.sink.set_pipelining(pipelining);
        let grey = w.submit("invoice@customer.test", "app@dest.test", &["tempfail-1-grey@dest.test"]).await;
        let other = w.submit("invoice@customer.test", "app@dest.test", &["payer@dest.test"]).await;
        let (a, b) = (w.finished(&grey).await, w.finished(&other).await);
        assert_eq!(statuses(&a), [RcptStatus::Delivered], "pipelining {pipelining}: {a:?}");
        assert_eq!(outcomes(&a, 0), [Outcome::Temporary, Outcome::Delivered], "pipelining {pipelining}");
        assert_eq!(statuses(&b), [RcptStatus::Delivered], "pipelining {pipelining}: {b:?}");
        assert!(b.recipients[0].attempts.iter().all(|a| !a.reply.contains("503")), "{b:?}");
        assert_eq!((copies(&w, "tempfail-1-grey@dest.test"), copies(&w, "payer@dest.test")), (1, 1));
        assert!(dsns(&w).is_empty(), "no DSN for a greylisted recipient");
        // The second message really rode on the first one's connection.
        assert!(w.sink.connections() <= 2, "connections: {}", w.sink.connections());
    }
}

/// Faults scripted at one stage of the conversation, struck once; the
/// relay's answer is judged by where the recipient ends up.
struct Case {
    stage: Stage,
    action: Action,
    /// Whether the fault is final for the recipient (a true 5xx).
    permanent: bool,
}

const fn case(stage: Stage, action: Action, permanent: bool) -> Case {
    Case { stage, action, permanent }
}

/// Runs each case on a fresh connection: a temporary fault ends with the
/// message delivered exactly once after a retry; a permanent one with the
/// recipient failed, nothing at the sink, and one DSN to the sender.
async fn run_cases(w: &World, cases: &[Case]) {
    for (n, c) in cases.iter().enumerate() {
        let rcpt = format!("payer{n}@dest.test");
        let dsns_before = dsns(w).len();
        w.sink.inject(c.stage, c.action, 1);
        let id = w.submit("invoice@customer.test", "app@dest.test", &[&rcpt]).await;
        let r = w.finished(&id).await;
        let what = format!("{:?} {:?}: {:?}", c.stage, c.action, r.recipients[0]);
        if c.permanent {
            assert_eq!(statuses(&r), [RcptStatus::Failed], "{what}");
            assert_eq!(outcomes(&r, 0), [Outcome::Permanent], "{what}");
            assert_eq!(copies(w, &rcpt), 0, "{what}");
            let deadline = Instant::now() + WAIT;
            while dsns(w).len() == dsns_before {
                assert!(Instant::now() < deadline, "no DSN: {what}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let dsn = dsns(w).pop().unwrap();
            assert_eq!(dsn.rcpts, ["app@dest.test"], "{what}");
            assert!(String::from_utf8_lossy(&dsn.data).contains(&rcpt), "{what}");
        } else {
            assert_eq!(statuses(&r), [RcptStatus::Delivered], "{what}");
            assert_eq!(outcomes(&r, 0), [Outcome::Temporary, Outcome::Delivered], "{what}");
            assert_eq!(copies(w, &rcpt), 1, "{what}");
        }
        answering(w).await;
    }
    // Let stray DSN deliveries settle, then count: one per permanent case.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(dsns(w).len(), cases.iter().filter(|c| c.permanent).count(), "one DSN per failed recipient");
}

/// 2xx/3xx where another code belongs, at every stage: never recorded as
/// delivered (a hostile receiver once got 38 recipients recorded
/// delivered that it never received), always retried.
#[tokio::test]
async fn replies_out_of_protocol_order_are_temporary_at_every_stage() {
    let w = world(0, |_| {}).await;
    use Action::Reply as R;
    run_cases(
        &w,
        &[
            case(Stage::Greeting, R("250 hello"), false),
            case(Stage::Ehlo, R("251 PIPELINING"), false),
            case(Stage::Mail, R("354 go ahead"), false),
            case(Stage::Rcpt, R("354 go ahead"), false),
            case(Stage::Rcpt, R("252 cannot verify"), false),
            case(Stage::Data, R("250 2.0.0 Ok"), false),
            case(Stage::EndOfData, R("251 2.1.5 forwarded"), false),
            case(Stage::EndOfData, R("354 more please"), false),
        ],
    )
    .await;
}

#[tokio::test]
async fn temporary_failures_at_every_stage_are_retried() {
    let w = world(0, |_| {}).await;
    use Action::Reply as R;
    run_cases(
        &w,
        &[
            case(Stage::Greeting, R("421 4.3.2 busy"), false),
            case(Stage::Ehlo, R("451 4.3.0 try later"), false),
            case(Stage::Mail, R("451 4.3.0 try later"), false),
            case(Stage::Rcpt, R("450 4.2.0 greylisted"), false),
            case(Stage::Data, R("451 4.3.0 try later"), false),
            case(Stage::EndOfData, R("451 4.3.0 try later"), false),
            case(Stage::Mail, R("503 5.5.1 nested MAIL command"), false),
            // Hang-ups: at the greeting, at DATA, and after the whole
            // message was sent but before the final reply.
            case(Stage::Greeting, Action::Drop, false),
            case(Stage::Data, Action::Drop, false),
            case(Stage::EndOfData, Action::Drop, false),
        ],
    )
    .await;
}

#[tokio::test]
async fn permanent_failures_at_every_stage_fail_the_recipient_with_one_dsn() {
    let w = world(0, |_| {}).await;
    use Action::Reply as R;
    run_cases(
        &w,
        &[
            case(Stage::Greeting, R("554 5.3.2 no service here"), true),
            case(Stage::Ehlo, R("550 5.7.1 go away"), true),
            case(Stage::Mail, R("550 5.7.1 sender refused"), true),
            case(Stage::Rcpt, R("550 5.1.1 no such user"), true),
            case(Stage::Data, R("554 5.5.1 no thanks"), true),
            case(Stage::EndOfData, R("554 5.6.0 content refused"), true),
        ],
    )
    .await;
}

/// The same faults on a reused connection: the fault strikes the second
/// message on a connection the first one opened.
#[tokio::test]
async fn faults_on_a_reused_connection_leave_the_next_message_unharmed() {
    let w = world(5, |_| {}).await;
    for pipelining in [true, false] {
        w.sink.set_pipelining(pipelining);
        for (stage, reply) in [(Stage::Mail, "451 4.3.0 later"), (Stage::Rcpt, "451 4.7.1 greylisted"), (Stage::Data, "250 2.0.0 Ok"), (Stage::EndOfData, "452 4.3.1 full")] {
            let first = format!("first-{pipelining}-{stage:?}@dest.test");
            let second = format!("second-{pipelining}-{stage:?}@dest.test");
            let a = w.submit("invoice@customer.test", "app@dest.test", &[&first]).await;
            w.finished(&a).await;
            w.sink.inject(stage, Action::Reply(reply), 1);
            let b = w.submit("invoice@customer.test", "app@dest.test", &[&second]).await;
            let c = w.submit("invoice@customer.test", "app@dest.test", &[&first]).await;
            for id in [b, c] {
                let r = w.finished(&id).await;
                assert_eq!(statuses(&r), [RcptStatus::Delivered], "{stage:?} {reply}: {r:?}");
            }
            assert_eq!((copies(&w, &first), copies(&w, &second)), (2, 1), "{stage:?} {reply} pipelining {pipelining}");
        }
    }
    assert!(dsns(&w).is_empty());
}

/// One message, three recipients: one refused with 5xx, one greylisted,
/// one accepted. The refused one is reported at once, in a DSN of its
/// own, while the greylisted one is still waiting.
#[tokio::test]
async fn a_dsn_goes_out_per_round_not_when_the_whole_message_is_done() {
    let w = world(5, |c| c.queue.retry_schedule = vec!["30s".into()]).await;
    let id = w.submit("invoice@customer.test", "app@dest.test", &["reject-me@dest.test", "tempfail-1-wait@dest.test", "payer@dest.test"]).await;
    let r = w.record_where(&id, "first round recorded", |r| r.recipients.iter().all(|x| !x.attempts.is_empty())).await;
    assert_eq!(statuses(&r), [RcptStatus::Failed, RcptStatus::Deferred, RcptStatus::Delivered]);
    assert!(r.finished_ms.is_none(), "the deferred recipient keeps the message queued");
    let deadline = Instant::now() + WAIT;
    while dsns(&w).is_empty() {
        assert!(Instant::now() < deadline, "the DSN waited for the deferred recipient");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let dsn = String::from_utf8_lossy(&dsns(&w)[0].data).to_string();
    assert!(dsn.contains("reject-me@dest.test") && !dsn.contains("Final-Recipient: rfc822; tempfail"), "{dsn}");
    assert!(w.store().find(&id).unwrap().unwrap().recipients[0].reported);
    // Retry the waiting one now: delivered; no second DSN for the first.
    let client = admin(&w);
    tokio::task::spawn_blocking(move || client.retry(&id)).await.unwrap().unwrap();
    let r = w.finished(&id).await;
    assert_eq!(statuses(&r), [RcptStatus::Failed, RcptStatus::Delivered, RcptStatus::Delivered]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(dsns(&w).len(), 1);
}

/// A receiver slower than the retry delay: the relay keeps answering,
/// the admin API refuses to retry or drop the message while the attempt
/// holds it (409, no deadlock), no second attempt starts meanwhile, and
/// exactly one copy arrives.
#[tokio::test]
async fn a_reply_slower_than_the_retry_delay_freezes_nothing_and_delivers_once() {
    let w = world(5, |c| c.queue.retry_schedule = vec!["1s".into()]).await;
    w.sink.inject(Stage::EndOfData, Action::Delay(4000), 1);
    let id = w.submit("invoice@customer.test", "app@dest.test", &["payer@dest.test"]).await;
    let deadline = Instant::now() + WAIT;
    while !w.relay.running().queue.in_flight(&id) {
        assert!(Instant::now() < deadline, "never attempted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Past the retry delay, with the attempt still waiting for its reply.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    answering(&w).await;
    for verb in ["retry", "drop"] {
        let client = admin(&w);
        let started = Instant::now();
        let result = tokio::task::spawn_blocking(move || if verb == "retry" { client.retry(&id) } else { client.drop_message(&id) }).await.unwrap();
        let err = result.expect_err("refused while in flight");
        assert!(err.to_string().contains("409"), "{verb}: {err}");
        assert!(started.elapsed() < Duration::from_secs(2), "{verb} took {:?}", started.elapsed());
    }
    let r = w.finished(&id).await;
    assert_eq!(statuses(&r), [RcptStatus::Delivered]);
    assert_eq!(r.recipients[0].attempts.len(), 1, "one attempt only: {r:?}");
    assert_eq!(copies(&w, "payer@dest.test"), 1);
    answering(&w).await;
    // Shutdown is not blocked either.
    let mut relay = w.relay;
    tokio::time::timeout(Duration::from_secs(10), relay.stop()).await.expect("shutdown hangs");
}

/// A TLS handshake that fails after STARTTLS: with `opportunistic` the
/// relay tries again in plain text and delivers; with `required` the
/// message waits (temporary), nothing is delivered in the clear.
#[tokio::test]
async fn tls_handshake_failure_required_waits_opportunistic_falls_back() {
    for tls in [OutboundTls::Opportunistic, OutboundTls::Required] {
        let tls_sink = herald::bench::sink::Sink::start(herald::bench::sink::SinkConfig {
            addr: "127.0.0.1:0".parse().unwrap(),
            hostname: "mx.dest.test".into(),
            tls: Some(herald::bench::sink::self_signed_acceptor("mx.dest.test").unwrap()),
            keep_messages: true,
        })
        .await
        .unwrap();
        let port = tls_sink.addr().port();
        let w = world(0, |c| {
            c.delivery.mx_port = port;
            c.delivery.tls = tls;
        })
        .await;
        tls_sink.inject(Stage::StartTls, Action::Drop, 100);
        let id = w.submit("invoice@customer.test", "app@dest.test", &["payer@dest.test"]).await;
        if tls == OutboundTls::Opportunistic {
            let r = w.finished(&id).await;
            assert_eq!(statuses(&r), [RcptStatus::Delivered], "{r:?}");
            let got = tls_sink.received();
            assert_eq!(got.len(), 1);
            assert!(!got[0].tls);
        } else {
            let r = w.record_where(&id, "attempted twice", |r| r.recipients[0].attempts.len() >= 2).await;
            assert_eq!(statuses(&r), [RcptStatus::Deferred], "{r:?}");
            assert!(r.recipients[0].attempts.iter().all(|a| a.outcome == Outcome::Temporary), "{r:?}");
            assert_eq!(tls_sink.received().len(), 0);
        }
        answering(&w).await;
    }
}

/// DNS trouble for the MX: SERVFAIL and a server that never answers are
/// temporary (retried, then delivered once DNS works); NXDOMAIN is final.
#[tokio::test]
async fn dns_failures_for_the_mx() {
    let w = world(0, |_| {}).await;
    w.dns.servfail("dest.test");
    let id = w.submit("invoice@customer.test", "app@dest.test", &["payer@dest.test"]).await;
    let r = w.record_where(&id, "attempted", |r| !r.recipients[0].attempts.is_empty()).await;
    assert_eq!(statuses(&r), [RcptStatus::Deferred], "{r:?}");
    w.dns.clear_servfail();
    let r = w.finished(&id).await;
    assert_eq!(statuses(&r), [RcptStatus::Delivered], "{r:?}");
    assert_eq!(copies(&w, "payer@dest.test"), 1);

    let id = w.submit("invoice@customer.test", "app@dest.test", &["payer@nowhere.test"]).await;
    let r = w.finished(&id).await;
    assert_eq!(statuses(&r), [RcptStatus::Failed], "{r:?}");

    // A nameserver that never answers: a bound UDP socket nobody reads.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap().to_string();
    let w2 = world(0, |c| c.dns.nameservers = vec![silent_addr]).await;
    let id = w2.submit("invoice@customer.test", "app@dest.test", &["payer@dest.test"]).await;
    let r = w2.record_where(&id, "attempted", |r| !r.recipients[0].attempts.is_empty()).await;
    assert_eq!(statuses(&r), [RcptStatus::Deferred], "{r:?}");
    assert_eq!(r.recipients[0].attempts[0].outcome, Outcome::Temporary);
    answering(&w2).await;
    drop(silent);
}
