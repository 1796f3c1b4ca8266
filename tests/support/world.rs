//! A relay in-process delivering to a real SMTP sink, with a real DNS
//! server holding the recipients' zones and the relay's DKIM key. All on
//! loopback.
#![allow(dead_code)]

use super::dns::TestDns;
use super::{TestRelay, queued_id, start_relay, test_config};
use herald::bench::sink::{Sink, SinkConfig};
use herald::clock::{SharedClock, SystemClock};
use herald::config::{Config, OutboundTls};
use herald::id::MessageId;
use herald::store::{MessageRecord, Store};
use std::sync::Arc;
use std::time::Duration;

/// How long a test waits for the relay to get somewhere.
pub const WAIT: Duration = Duration::from_secs(20);

/// An SMTP sink on a kernel-chosen loopback port, keeping what it receives.
pub async fn sink() -> Sink {
    Sink::start(SinkConfig { addr: "127.0.0.1:0".parse().unwrap(), hostname: "sink.test".into(), tls: None, keep_messages: true }).await.unwrap()
}

pub struct World {
    pub dns: TestDns,
    pub sink: Sink,
    pub relay: TestRelay,
}

impl World {
    /// [`World::start_with_clock`] on the system clock.
    pub async fn start(zone: &str, tweak: impl FnOnce(&mut Config)) -> Self {
        Self::start_with_clock(zone, tweak, Arc::new(SystemClock)).await
    }

    /// A relay that looks up MX in the test DNS server and delivers to the
    /// sink's port without TLS, retrying after a second; `tweak` adjusts the
    /// config last. The DNS holds `zone` and the relay's DKIM key.
    pub async fn start_with_clock(zone: &str, tweak: impl FnOnce(&mut Config), clock: SharedClock) -> Self {
        let dns = TestDns::start().await;
        let sink = sink().await;
        dns.set_zone(zone);
        let dir = tempfile::tempdir().unwrap();
        let mut config = test_config(dir.path());
        config.dns = dns.config();
        config.routes.clear();
        config.delivery.mx_port = sink.addr().port();
        config.delivery.tls = OutboundTls::Disabled;
        config.queue.retry_schedule = vec!["1s".into()];
        tweak(&mut config);
        let relay = start_relay(config, dir, clock).await;
        let world = World { dns, sink, relay };
        world.publish(zone);
        world
    }

    /// The TXT record of the relay's own DKIM key, as a zone line.
    pub fn dkim_record(&self) -> String {
        let key = self.relay.running().queue.preparer.keys.get("relay.test", "herald").unwrap().expect("relay key exists from the start");
        let public = herald::dkim::public_key_b64(&key.der().unwrap()).unwrap();
        let txt: String = herald::dkim::split_txt(&herald::dkim::txt_value(&public)).iter().map(|s| format!("\"{s}\" ")).collect();
        format!("herald._domainkey.relay.test. TXT {txt}")
    }

    /// Publishes `zone` and the relay's DKIM key, replacing what was there.
    pub fn publish(&self, zone: &str) {
        self.dns.set_zone(&format!("{zone}\n{}\n", self.dkim_record()));
    }

    pub fn store(&self) -> &Store {
        &self.relay.running().store
    }

    /// Submits an invoice from `from` (the header) with envelope
    /// `mail_from` to `rcpts`; the relay's id for it.
    pub async fn submit(&self, from: &str, mail_from: &str, rcpts: &[&str]) -> MessageId {
        let mut c = self.relay.authed().await;
        let body = format!("From: Acme Billing <{from}>\r\nTo: <{}>\r\nSubject: Invoice 42\r\nMessage-ID: <inv42@acme>\r\n\r\nPlease pay.\r\n", rcpts[0]);
        queued_id(&c.send_message(mail_from, rcpts, body.as_bytes()).await.unwrap())
    }

    /// Waits until `done` holds for the message's record; `what` names the
    /// condition in the failure.
    pub async fn record_where(&self, id: &MessageId, what: &str, done: impl Fn(&MessageRecord) -> bool) -> MessageRecord {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(r) = self.store().find(id).unwrap().filter(|r| done(r)) {
                return r;
            }
            assert!(tokio::time::Instant::now() < deadline, "message {id}: {what}: {:?}", self.store().find(id).unwrap());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the message is finished (retired) and returns its record.
    pub async fn finished(&self, id: &MessageId) -> MessageRecord {
        self.record_where(id, "did not finish", |r| r.finished_ms.is_some()).await
    }

    /// Waits until some recipient of the message has an attempt recorded.
    pub async fn attempted(&self, id: &MessageId) -> MessageRecord {
        self.record_where(id, "was never attempted", |r| r.recipients.iter().any(|x| !x.attempts.is_empty())).await
    }
}
