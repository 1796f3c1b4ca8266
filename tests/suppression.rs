//! Bounce classes and the suppression list end to end: a relay
//! in-process, a real SMTP sink that refuses or defers on cue, the admin
//! API and the `herald suppressions` command.

mod support;

use herald::admin::client::AdminClient;
use herald::bounce::BounceClass;
use herald::clock::ManualClock;
use herald::config::{AtRcpt, Config};
use herald::events::EventKind;
use herald::store::RcptStatus;
use std::time::Duration;
use support::world::World;

const TOKEN: &str = "suppression-test-admin-token";
const ZONE: &str = "dest.test. MX 10 mx.dest.test.\nmx.dest.test. A 127.0.0.1\n";

fn with_api(c: &mut Config) {
    c.admin.token = TOKEN.into();
    c.admin.address = "127.0.0.1:0".into();
}

fn api(w: &World) -> AdminClient {
    AdminClient::new(&format!("http://{}", w.relay.running().admin_addr.unwrap()), TOKEN)
}

/// The reply to RCPT TO for `rcpt` in a fresh transaction.
async fn rcpt_reply(w: &World, rcpt: &str) -> herald::bench::client::ClientReply {
    let mut c = w.relay.authed().await;
    assert_eq!(c.command("MAIL FROM:<app@dest.test>").await.unwrap().code, 250);
    c.command(&format!("RCPT TO:<{rcpt}>")).await.unwrap()
}

#[tokio::test]
async fn a_5_1_1_suppresses_the_next_submission_until_removed() {
    let w = World::start(ZONE, with_api).await;
    let id = w.submit("invoice@customer.test", "app@dest.test", &["reject-me@dest.test", "payer@dest.test"]).await;
    let r = w.finished(&id).await;
    assert_eq!(r.recipients[0].status, RcptStatus::Failed);
    let b = r.recipients[0].attempts[0].bounce.unwrap();
    assert_eq!((b.class, b.hard), (BounceClass::InvalidRecipient, true));
    assert!(r.recipients[1].attempts[0].bounce.is_none(), "deliveries carry no class");

    // Refused at RCPT, naming the suppression and when it began.
    let refused = rcpt_reply(&w, "Reject-Me@dest.test").await;
    assert_eq!(refused.code, 550, "{refused:?}");
    let text = refused.text();
    assert!(text.starts_with("5.1.1") && text.contains("<reject-me@dest.test> is suppressed since") && text.contains("the address does not exist"), "{text}");
    assert_eq!(rcpt_reply(&w, "payer@dest.test").await.code, 250, "others are not affected");

    // Visible over the API and the CLI, with its cause.
    let client = api(&w);
    let list = tokio::task::spawn_blocking(move || client.suppressions("").unwrap().value).await.unwrap();
    assert_eq!(list.suppressions.len(), 1);
    let s = &list.suppressions[0];
    assert_eq!((s.address.as_str(), s.scope.as_str(), s.class, s.source.as_str()), ("reject-me@dest.test", "relay", BounceClass::InvalidRecipient, "delivery"));
    assert_eq!(s.message.as_deref(), Some(id.as_str()));
    assert!(s.reply.as_deref().unwrap().starts_with("550 5.1.1"));
    let base = format!("http://{}", w.relay.running().admin_addr.unwrap());
    let (ok, out, err) = support::run_herald(vec!["suppressions".into(), "list".into(), "--api".into(), base.clone(), "--token".into(), TOKEN.into()]).await;
    assert!(ok && out.contains("reject-me@dest.test") && out.contains("invalid_recipient"), "{out}{err}");

    // The failure and the suppression are events, with the class in words.
    let client = api(&w);
    let page = tokio::task::spawn_blocking(move || client.events("recipient=reject-me%40dest.test").unwrap().value).await.unwrap();
    let failed = page.events.iter().find(|e| e.kind == Some(EventKind::Failed)).expect("message.failed");
    let bounce = failed.bounce.as_ref().unwrap();
    assert_eq!((bounce.class, bounce.hard, bounce.description.as_str()), (BounceClass::InvalidRecipient, true, "the address does not exist"));
    assert!(page.events.iter().any(|e| e.kind == Some(EventKind::SuppressionAdded)), "{page:?}");

    // Removed over the CLI: accepted again.
    let (ok, out, err) = support::run_herald(vec!["suppressions".into(), "remove".into(), "reject-me@dest.test".into(), "--api".into(), base, "--token".into(), TOKEN.into()]).await;
    assert!(ok && out.contains("accepted again"), "{out}{err}");
    assert_eq!(rcpt_reply(&w, "reject-me@dest.test").await.code, 250);
}

#[tokio::test]
async fn a_full_mailbox_is_deferred_and_not_suppressed() {
    let w = World::start(ZONE, |c| {
        with_api(c);
        c.queue.retry_schedule = vec!["1h".into()];
    })
    .await;
    let id = w.submit("invoice@customer.test", "app@dest.test", &["tempdata@dest.test"]).await;
    let r = w.attempted(&id).await;
    assert_eq!(r.recipients[0].status, RcptStatus::Deferred);
    let b = r.recipients[0].attempts[0].bounce.unwrap();
    assert_eq!((b.class, b.hard), (BounceClass::OtherTemporary, false), "452 4.3.1 is the system, not the mailbox");
    assert_eq!(rcpt_reply(&w, "tempdata@dest.test").await.code, 250);
    // A receiver that says 452 4.2.2 mailbox full: mailbox_full, soft.
    w.sink.inject(herald::bench::sink::Stage::Rcpt, herald::bench::sink::Action::Reply("452 4.2.2 Mailbox full"), 1);
    let id = w.submit("invoice@customer.test", "app@dest.test", &["full@dest.test"]).await;
    let r = w.attempted(&id).await;
    assert_eq!(r.recipients[0].status, RcptStatus::Deferred);
    let b = r.recipients[0].attempts[0].bounce.unwrap();
    assert_eq!((b.class, b.hard), (BounceClass::MailboxFull, false));
    assert_eq!(rcpt_reply(&w, "full@dest.test").await.code, 250, "one full mailbox does not suppress");
}

#[tokio::test]
async fn suppressions_expire_and_can_be_added_by_hand() {
    let clock = ManualClock::new();
    let w = World::start_with_clock(ZONE, with_api, clock.clone()).await;
    let client = api(&w);
    let request = herald::admin::suppressions::AddSuppressionV1 { address: "Old@dest.test".into(), scope: None, reason: Some("asked to stop".into()), days: Some(2) };
    let added = tokio::task::spawn_blocking(move || client.add_suppression(&request).unwrap().value).await.unwrap();
    assert_eq!((added.address.as_str(), added.class), ("old@dest.test", BounceClass::Suppressed));
    assert_eq!(rcpt_reply(&w, "old@dest.test").await.code, 550);
    clock.advance(Duration::from_secs(3 * 86_400));
    assert_eq!(rcpt_reply(&w, "old@dest.test").await.code, 250, "expired after its days");
    // Bad input is refused with the field named.
    let client = api(&w);
    let bad = herald::admin::suppressions::AddSuppressionV1 { address: "not an address".into(), scope: None, reason: None, days: None };
    let err = tokio::task::spawn_blocking(move || client.add_suppression(&bad).unwrap_err()).await.unwrap();
    assert!(err.to_string().contains("`address`"), "{err}");
}

#[tokio::test]
async fn accept_and_fail_takes_the_message_and_fails_the_suppressed_recipient_at_once() {
    let w = World::start(ZONE, |c| {
        with_api(c);
        c.suppression.at_rcpt = AtRcpt::AcceptAndFail;
    })
    .await;
    let first = w.submit("invoice@customer.test", "app@dest.test", &["reject-x@dest.test"]).await;
    w.finished(&first).await;
    let id = w.submit("invoice@customer.test", "app@dest.test", &["reject-x@dest.test", "payer@dest.test"]).await;
    let r = w.finished(&id).await;
    assert_eq!(r.recipients[0].status, RcptStatus::Failed);
    let a = &r.recipients[0].attempts;
    assert_eq!(a.len(), 1, "never sent: {a:?}");
    assert_eq!(a[0].bounce.unwrap().class, BounceClass::Suppressed);
    assert_eq!(r.recipients[1].status, RcptStatus::Delivered);
    // The sink saw reject-x once only (the first time).
    let rcpt_seen = w.sink.refusals().iter().filter(|(r, _)| r == "reject-x@dest.test").count();
    assert_eq!(rcpt_seen, 1);
}
