//! Bounce intake end to end: a relay in-process delivers to a real SMTP
//! sink (MX found through a real DNS server), then receives RFC 3464
//! reports over SMTP on its bounce listener. Loopback only.

mod support;

use herald::bench::client::{Client, ClientReply, dot_stuff};
use herald::config::Config;
use herald::id::MessageId;
use herald::store::{MessageRecord, Outcome, RcptStatus};
use std::ops::Deref;
use std::time::Duration;
use support::world::{self, WAIT};
const SENDER: &str = "app@sender.test";
const PAYER: &str = "payer@dest.test";

struct World(world::World);

impl Deref for World {
    type Target = world::World;
    fn deref(&self) -> &world::World {
        &self.0
    }
}

impl World {
    async fn start(tweak: impl FnOnce(&mut Config)) -> Self {
        // Recipients and the original sender's domain both have the sink as MX.
        let zone = "dest.test. MX 10 mx.dest.test.\nmx.dest.test. A 127.0.0.1\nsender.test. MX 10 mx.dest.test.\n";
        let tweak = |c: &mut Config| {
            c.bounces.address = "127.0.0.1:0".into();
            tweak(c);
        };
        World(world::World::start(zone, tweak).await)
    }

    async fn submit(&self, rcpt: &str) -> MessageId {
        self.0.submit("invoice@customer.test", SENDER, &[rcpt]).await
    }

    /// Waits until `done` holds for the message's record.
    async fn record_where(&self, id: &MessageId, done: impl Fn(&MessageRecord) -> bool) -> MessageRecord {
        self.0.record_where(id, "condition not reached", done).await
    }

    /// A message delivered to the sink (and retired), and the envelope
    /// sender it went out with.
    async fn delivered(&self) -> (MessageId, String) {
        let id = self.submit(PAYER).await;
        let record = self.record_where(&id, |r| r.finished_ms.is_some()).await;
        assert_eq!(record.recipients[0].status, RcptStatus::Delivered);
        let sent = self.sink.received().into_iter().find(|m| m.rcpts == [PAYER]).expect("delivered to the sink");
        (id, sent.mail_from)
    }

    async fn bounce_client(&self) -> Client {
        let addr = self.relay.running().bounce_addr.expect("the bounce listener is on");
        let (mut c, greeting) = Client::connect(addr).await.unwrap();
        assert_eq!(greeting.code, 220, "{greeting:?}");
        assert_eq!(c.ehlo("mx.dest.test").await.unwrap().code, 250);
        c
    }

    /// Sends `body` from the null sender to `rcpt`; the reply to the end of
    /// DATA, or the first refusal before it.
    async fn send_bounce(&self, rcpt: &str, body: &[u8]) -> ClientReply {
        let mut c = self.bounce_client().await;
        c.send_message("", &[rcpt], body).await.unwrap()
    }
}

/// An RFC 3464 report the way Postfix writes one.
fn report(to: &str, rcpt: &str, action: &str, status: &str, diagnostic: &str) -> Vec<u8> {
    format!(
        "Return-Path: <>\r\n\
         From: MAILER-DAEMON@mx.dest.test (Mail Delivery System)\r\n\
         To: {to}\r\n\
         Subject: Undelivered Mail Returned to Sender\r\n\
         Date: Mon, 2 Dec 2024 10:00:00 +0100\r\n\
         Auto-Submitted: auto-replied\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status;\r\n\
         \tboundary=\"4Y2abc.1733130000/mx.dest.test\"\r\n\
         \r\n\
         This is a MIME-encapsulated message.\r\n\
         \r\n\
         --4Y2abc.1733130000/mx.dest.test\r\n\
         Content-Description: Notification\r\n\
         Content-Type: text/plain; charset=us-ascii\r\n\
         \r\n\
         This is the mail system at host mx.dest.test.\r\n\
         \r\n\
         I'm sorry to have to inform you that your message could not\r\n\
         be delivered to one or more recipients.\r\n\
         \r\n\
         <{rcpt}>: host mx.dest.test said: {diagnostic}\r\n\
         \r\n\
         --4Y2abc.1733130000/mx.dest.test\r\n\
         Content-Description: Delivery report\r\n\
         Content-Type: message/delivery-status\r\n\
         \r\n\
         Reporting-MTA: dns; mx.dest.test\r\n\
         X-Postfix-Queue-ID: 4Y2abc\r\n\
         Arrival-Date: Mon,  2 Dec 2024 09:59:58 +0100 (CET)\r\n\
         \r\n\
         Final-Recipient: rfc822; {rcpt}\r\n\
         Original-Recipient: rfc822;{rcpt}\r\n\
         Action: {action}\r\n\
         Status: {status}\r\n\
         Remote-MTA: dns; mx.dest.test\r\n\
         Diagnostic-Code: smtp; {diagnostic}\r\n\
         \r\n\
         --4Y2abc.1733130000/mx.dest.test\r\n\
         Content-Description: Undelivered Message Headers\r\n\
         Content-Type: text/rfc822-headers\r\n\
         \r\n\
         From: Acme Billing <invoice@customer.test>\r\n\
         Subject: Invoice 42\r\n\
         \r\n\
         --4Y2abc.1733130000/mx.dest.test--\r\n"
    )
    .into_bytes()
}

fn failed_report(to: &str) -> Vec<u8> {
    report(to, PAYER, "failed", "5.1.1", "550 5.1.1 user unknown")
}

/// Asserts the recipient failed through a bounce, and the sender got a DSN.
async fn assert_bounced(w: &World, id: &MessageId) {
    let record = w.store().find(id).unwrap().unwrap();
    let rcpt = &record.recipients[0];
    assert_eq!(rcpt.status, RcptStatus::Failed, "{record:?}");
    let last = rcpt.attempts.last().unwrap();
    assert_eq!(last.outcome, Outcome::Permanent);
    assert_eq!(last.host, "mx.dest.test");
    assert_eq!(last.reply, "bounced: 5.1.1 smtp; 550 5.1.1 user unknown");
    assert!(w.sink.wait_for(2, WAIT).await, "a DSN to the original sender");
    let dsn = w.sink.received().into_iter().find(|m| m.mail_from.is_empty()).expect("a DSN with the null sender");
    assert_eq!(dsn.rcpts, [SENDER]);
    let text = String::from_utf8_lossy(&dsn.data);
    assert!(text.contains("report-type=delivery-status"), "{text}");
    assert!(text.contains(&format!("Final-Recipient: rfc822; {PAYER}")), "{text}");
    assert!(text.contains("Status: 5.1.1"), "{text}");
    assert!(text.contains("550 5.1.1 user unknown"), "{text}");
}

#[tokio::test]
async fn bounce_after_delivery_fails_the_recipient_and_tells_the_sender() {
    let w = World::start(|_| {}).await;
    let (id, envelope_from) = w.delivered().await;
    let address = format!("bounces+{id}@bounces.relay.test");
    assert_eq!(envelope_from, address, "unverified mail goes out with the relay's bounce address");
    let reply = w.send_bounce(&address, &failed_report(&address)).await;
    assert_eq!((reply.code, reply.status()), (250, Some("2.0.0")), "{reply:?}");
    assert_bounced(&w, &id).await;
    // The same report again changes nothing and sends no second DSN.
    let before = w.store().find(&id).unwrap();
    assert_eq!(w.send_bounce(&address, &failed_report(&address)).await.code, 250);
    assert_eq!(w.store().find(&id).unwrap(), before);
}

#[tokio::test]
async fn bounce_through_a_customer_return_path_host() {
    let w = World::start(|_| {}).await;
    let domain = w.relay.running().domains.registry().add("customer.test", None, None).unwrap();
    let host = domain.return_path_host();
    assert!(host.starts_with("em") && host.ends_with(".customer.test"), "{host}");
    let (id, _) = w.delivered().await;
    let address = format!("bounces+{id}@{}", host.to_ascii_uppercase());
    let reply = w.send_bounce(&address, &failed_report(&address)).await;
    assert_eq!(reply.code, 250, "{reply:?}");
    assert_bounced(&w, &id).await;
}

#[tokio::test]
async fn bounce_for_a_queued_message_finishes_it() {
    // The first attempt is deferred; the next is an hour away.
    let w = World::start(|c| c.queue.retry_schedule = vec!["1h".into()]).await;
    let rcpt = "tempfail-99-q@dest.test";
    let id = w.submit(rcpt).await;
    w.record_where(&id, |r| r.recipients[0].status == RcptStatus::Deferred).await;
    let address = format!("bounces+{id}@bounces.relay.test");
    let reply = w.send_bounce(&address, &report(&address, rcpt, "failed", "5.2.2", "552 5.2.2 mailbox full")).await;
    assert_eq!(reply.code, 250, "{reply:?}");
    let record = w.record_where(&id, |r| r.finished_ms.is_some()).await;
    assert_eq!(record.recipients[0].status, RcptStatus::Failed);
    assert_eq!(record.recipients[0].attempts.last().unwrap().reply, "bounced: 5.2.2 smtp; 552 5.2.2 mailbox full");
    assert!(w.store().message(&id).unwrap().is_none(), "retired, no longer queued");
    assert!(w.sink.wait_for(1, WAIT).await, "a DSN to the original sender");
    let dsn = &w.sink.received()[0];
    assert_eq!((dsn.mail_from.as_str(), dsn.rcpts.as_slice()), ("", [SENDER.to_string()].as_slice()));
}

#[tokio::test]
async fn only_bounce_addresses_of_known_messages_are_accepted() {
    let w = World::start(|_| {}).await;
    w.relay.running().domains.registry().add("customer.test", None, Some("em1234")).unwrap();
    let (id, _) = w.delivered().await;
    let unknown = MessageId::parse("01jd5x3q8k2m7n4p").unwrap();
    assert!(w.store().find(&unknown).unwrap().is_none());
    let cases = [
        ("postmaster@bounces.relay.test".to_string(), 550, "5.7.1"),
        (format!("bounces+{id}@elsewhere.example"), 550, "5.7.1"),
        (format!("bounces+{id}@em9999.customer.test"), 550, "5.7.1"),
        (format!("bounces+{id}@customer.test"), 550, "5.7.1"),
        ("bounces+garbage@bounces.relay.test".to_string(), 550, "5.7.1"),
        (PAYER.to_string(), 550, "5.7.1"),
        (format!("bounces+{unknown}@bounces.relay.test"), 550, "5.1.1"),
        (format!("bounces+{unknown}@em1234.customer.test"), 550, "5.1.1"),
        (format!("bounces+{id}@em1234.customer.test"), 250, "2.1.5"),
        (format!("bounces+{id}@bounces.relay.test"), 250, "2.1.5"),
    ];
    let mut c = w.bounce_client().await;
    for (rcpt, code, status) in cases {
        assert_eq!(c.command("MAIL FROM:<>").await.unwrap().code, 250);
        let r = c.command(&format!("RCPT TO:<{rcpt}>")).await.unwrap();
        assert_eq!((r.code, r.status()), (code, Some(status)), "{rcpt}: {r:?}");
        assert_eq!(c.command("RSET").await.unwrap().code, 250);
    }
    // Nothing accepted, nothing to send: DATA is refused.
    assert_eq!(c.command("MAIL FROM:<>").await.unwrap().code, 250);
    assert_eq!(c.command("RCPT TO:<payer@dest.test>").await.unwrap().code, 550);
    assert_eq!(c.command("DATA").await.unwrap().code, 554);
    assert_eq!(w.store().find(&id).unwrap().unwrap().recipients[0].status, RcptStatus::Delivered);
}

#[tokio::test]
async fn delayed_reports_and_other_mail_change_nothing() {
    let w = World::start(|_| {}).await;
    let (id, _) = w.delivered().await;
    let before = w.store().find(&id).unwrap();
    let address = format!("bounces+{id}@bounces.relay.test");
    let delayed = report(&address, PAYER, "delayed", "4.4.1", "451 4.4.1 try later");
    let auto_reply = format!("From: Payer <{PAYER}>\r\nTo: <{address}>\r\nSubject: Out of office\r\nAuto-Submitted: auto-replied\r\n\r\nI am away until Monday.\r\n");
    for body in [delayed, auto_reply.into_bytes()] {
        let reply = w.send_bounce(&address, &body).await;
        assert_eq!(reply.code, 250, "{reply:?}");
        assert_eq!(w.store().find(&id).unwrap(), before);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(w.sink.count(), 1, "no DSN");
}

#[tokio::test]
async fn smuggled_commands_in_a_bounce_are_refused() {
    let w = World::start(|_| {}).await;
    let (id, _) = w.delivered().await;
    let address = format!("bounces+{id}@bounces.relay.test");
    let mut c = w.bounce_client().await;
    assert_eq!(c.command("MAIL FROM:<>").await.unwrap().code, 250);
    assert_eq!(c.command(&format!("RCPT TO:<{address}>")).await.unwrap().code, 250);
    assert_eq!(c.command("DATA").await.unwrap().code, 354);
    // `\n.\n` is no end of DATA: what follows stays message text, and the
    // message, holding bare LFs, is refused as a whole.
    let mut smuggled = format!("Subject: hi\r\n\r\nx\n.\nMAIL FROM:<>\r\nRCPT TO:<{address}>\r\nDATA\r\n").into_bytes();
    smuggled.extend_from_slice(&dot_stuff(&failed_report(&address)));
    c.send_raw(&smuggled).await.unwrap();
    let r = c.read_reply().await.unwrap();
    assert_eq!((r.code, r.status()), (550, Some("5.5.2")), "{r:?}");
    assert_eq!(c.command("QUIT").await.unwrap().code, 221, "no reply to a smuggled command came first");
    assert_eq!(w.store().find(&id).unwrap().unwrap().recipients[0].status, RcptStatus::Delivered);
}

/// A DSN that comes back later with 5.1.1 suppresses the recipient: the
/// next submission to it is refused at RCPT, naming the suppression.
#[tokio::test]
async fn an_asynchronous_5_1_1_bounce_suppresses_the_recipient() {
    let w = World::start(|_| {}).await;
    let (id, envelope) = w.delivered().await;
    let r = w.send_bounce(&envelope, &failed_report(&envelope)).await;
    assert_eq!(r.code, 250, "{r:?}");
    let record = w.record_where(&id, |r| r.recipients[0].status == RcptStatus::Failed).await;
    let bounce = record.recipients[0].attempts.last().unwrap().bounce.expect("classified");
    assert_eq!((bounce.class, bounce.hard), (herald::bounce::BounceClass::InvalidRecipient, true));
    let mut c = w.relay.authed().await;
    assert_eq!(c.command(&format!("MAIL FROM:<{SENDER}>")).await.unwrap().code, 250);
    let refused = c.command(&format!("RCPT TO:<{PAYER}>")).await.unwrap();
    assert_eq!(refused.code, 550, "{refused:?}");
    assert!(refused.text().starts_with("5.1.1") && refused.text().contains("suppressed since") && refused.text().contains(PAYER), "{refused:?}");
}
