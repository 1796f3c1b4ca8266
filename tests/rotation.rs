//! DKIM key rotation end to end, with the operator zone served by the
//! relay's embedded DNS server: the test DNS server plays the Internet's
//! recursive resolver, holding the customer's zone (three CNAMEs, never
//! changed) and delegating the operator zone to the embedded server. Mail
//! before, during and after the switch is checked by mail-auth's DKIM
//! verifier through that resolver, as a receiver would.

mod support;

use herald::admin::client::AdminClient;
use herald::admin::{AddDomainV1, DomainStateV1, DomainV1, OverallV1, RotationV1};
use herald::bench::sink::SinkMessage;
use herald::clock::ManualClock;
use herald::dns::Dns;
use herald::id::MessageId;
use std::sync::Arc;
use std::time::Duration;
use support::world::{self, WAIT};

const TOKEN: &str = "rotation-admin-token-0123456789";
const BASE_ZONE: &str = "dest.test. MX 10 mx.dest.test.\nmx.dest.test. A 127.0.0.1\n";

struct World {
    w: world::World,
    clock: Arc<ManualClock>,
}

impl World {
    async fn start() -> World {
        let clock = ManualClock::new();
        let w = world::World::start_with_clock(
            BASE_ZONE,
            |c| {
                c.admin.token = TOKEN.into();
                c.admin.address = "127.0.0.1:0".into();
                c.domains.zone = "wl.relay.test".into();
                c.domains.inbound_host = "mx.relay.test".into();
                c.domains.revoke_withdrawn = true;
                c.dns_server.addresses = vec!["127.0.0.1:0".into()];
            },
            clock.clone(),
        )
        .await;
        // The parent zone's NS delegation, as the operator adds it once.
        w.dns.delegate("wl.relay.test", w.relay.running().dns_addrs[0]);
        World { w, clock }
    }

    fn base(&self) -> String {
        format!("http://{}", self.w.relay.running().admin_addr.unwrap())
    }

    async fn api<T: Send + 'static>(&self, f: impl FnOnce(&AdminClient) -> T + Send + 'static) -> T {
        let base = self.base();
        tokio::task::spawn_blocking(move || f(&AdminClient::new(&base, TOKEN))).await.unwrap()
    }

    async fn show(&self) -> DomainV1 {
        self.api(|c| c.domain("customer.test")).await.unwrap().value
    }

    async fn rotate(&self) -> RotationV1 {
        self.api(|c| c.rotate_domain("customer.test")).await.unwrap().value
    }

    /// A receiver's resolver: the test DNS server.
    fn resolver(&self) -> Dns {
        Dns::from_config(&self.w.dns.config()).unwrap()
    }

    async fn send(&self) -> SinkMessage {
        let id = self.w.submit("billing@customer.test", "app@sender.test", &["payer@dest.test"]).await;
        self.delivered(&id).await
    }

    async fn delivered(&self, id: &MessageId) -> SinkMessage {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(m) = self.w.sink.received().into_iter().find(|m| m.mail_from.contains(id.as_str())) {
                return m;
            }
            assert!(tokio::time::Instant::now() < deadline, "message {id} never reached the sink");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The DKIM result of the message's one signature, and its `s=`.
    async fn dkim(&self, m: &SinkMessage) -> (mail_auth::DkimResult, String, String) {
        let auth = self.resolver().authenticator();
        let parsed = mail_auth::AuthenticatedMessage::parse(&m.data).unwrap();
        let results = auth.verify_dkim(&parsed).await;
        assert_eq!(results.len(), 1, "one signature");
        let s = results[0].signature().unwrap();
        (results[0].result().clone(), s.d.clone(), s.s.clone())
    }

    async fn passes_as(&self, m: &SinkMessage, selector: &str) {
        let (result, d, s) = self.dkim(m).await;
        assert_eq!(result, mail_auth::DkimResult::Pass, "signature d={d} s={s}");
        assert_eq!((d.as_str(), s.as_str()), ("customer.test", selector));
    }

    /// The customer's three CNAMEs as the world resolves them.
    async fn customer_view(&self, d: &DomainV1) -> Vec<String> {
        let dns = self.resolver();
        let mut out = Vec::new();
        for r in &d.customer_records {
            out.push(format!("{} -> {}", r.host, dns.cname(&r.host).await.unwrap()));
        }
        out
    }
}

fn cnames(d: &DomainV1) -> String {
    d.customer_records.iter().map(|r| format!("{}. {} {}.\n", r.host, r.kind, r.value)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_moves_signing_to_a_fresh_key_with_mail_verifying_at_every_step() {
    let w = World::start().await;
    let request = AddDomainV1 {
        domain: "customer.test".into(),
        selector_prefix: None,
        return_path_label: Some("em4821".into()),
    };
    let added = w.api(move |c| c.add_domain(&request)).await.unwrap().value;
    // The customer's zone: three CNAMEs, added once, never touched again.
    let customer = cnames(&added);
    w.w.publish(&format!("{BASE_ZONE}{customer}"));
    let v = w.api(|c| c.verify_domain("customer.test")).await.unwrap().value;
    assert_eq!(v.overall, OverallV1::Verified, "{v:?}");
    let customer_before = w.customer_view(&added).await;

    // Before: signed with hr1.
    let before = w.send().await;
    w.passes_as(&before, "hr1").await;

    // A rotation whose new key the world cannot see yet: the recursive
    // resolver still holds the old hr2 record (a cache; not the customer's
    // zone). The key is the standby one from `domain add`.
    let old_hr2 = w.resolver().txt("hr2._domainkey.customer.test").await.unwrap().remove(0);
    let stale: String = herald::dkim::split_txt(&old_hr2).iter().map(|s| format!(" \"{s}\"")).collect();
    w.w.publish(&format!("{BASE_ZONE}{customer}hr2.domainkey.t1.wl.relay.test. TXT{stale}\n"));
    let (ok, out, err) = support::run_herald(
        ["domain", "rotate", "customer.test", "--api", &w.base(), "--token", TOKEN].map(String::from).to_vec(),
    )
    .await;
    assert!(ok, "{out}{err}");
    for words in ["published", "new key for hr2", "customer.test still signs with hr1", "not visible from the relay's resolver yet", "✗ hr2._domainkey.customer.test — DKIM key mismatch"] {
        assert!(out.contains(words), "want `{words}` in:\n{out}");
    }
    // A rotation in progress never makes the domain failing.
    let v = w.api(|c| c.verify_domain("customer.test")).await.unwrap().value;
    assert_eq!((v.overall, v.state), (OverallV1::Verified, DomainStateV1::Verified), "{v:?}");
    let during = w.send().await;
    w.passes_as(&during, "hr1").await;
    let shown = w.show().await;
    let phases: Vec<(&str, &str)> = shown.keys.iter().map(|k| (k.selector.as_str(), k.phase.as_str())).collect();
    assert_eq!(phases, [("hr1", "active"), ("hr2", "publishing")]);

    // The cache expires: the new key is visible, signing switches.
    w.w.publish(&format!("{BASE_ZONE}{customer}"));
    let r = w.rotate().await;
    assert!(r.switched, "{r:?}");
    assert_eq!((r.selector.as_str(), r.publishing.as_deref()), ("hr2", None));
    assert!(r.check.as_ref().is_some_and(|c| c.ok), "{r:?}");
    let after = w.send().await;
    w.passes_as(&after, "hr2").await;
    // Mail signed before the switch still verifies: hr1 is kept published.
    w.passes_as(&before, "hr1").await;
    w.passes_as(&during, "hr1").await;
    let shown = w.show().await;
    let phases: Vec<(&str, &str)> = shown.keys.iter().map(|k| (k.selector.as_str(), k.phase.as_str())).collect();
    assert_eq!(phases, [("hr1", "retiring"), ("hr2", "active")]);
    assert_eq!(shown.selector, "hr2");
    // A new rotation must wait for the retention to end.
    let busy = w.api(|c| c.rotate_domain("customer.test")).await.unwrap_err();
    assert!(busy.to_string().contains("kept published until"), "{busy}");

    // Retention (7 days) over: hr1 is revoked (`p=`), its private key gone.
    w.clock.advance(Duration::from_secs(7 * 86400 + 60));
    w.w.relay.running().domains.advance_rotations().await.unwrap();
    let hr1 = w.resolver().txt("hr1._domainkey.customer.test").await.unwrap();
    assert_eq!(hr1, ["v=DKIM1; k=rsa; p="]);
    let (result, _, _) = w.dkim(&before).await;
    assert_ne!(result, mail_auth::DkimResult::Pass, "a revoked key no longer verifies");
    assert!(w.w.relay.running().queue.preparer.keys.get("customer.test", "hr1").unwrap().is_none());

    // And back: hr1 gets a fresh key, visible at once, and signs.
    let r = w.rotate().await;
    assert!(r.switched && r.selector == "hr1", "{r:?}");
    let again = w.send().await;
    w.passes_as(&again, "hr1").await;
    w.passes_as(&after, "hr2").await;
    let shown = w.show().await;
    let steps: Vec<(&str, &str)> = shown.key_history.iter().map(|s| (s.selector.as_str(), s.step.as_str())).collect();
    assert_eq!(
        steps,
        [("hr2", "published"), ("hr2", "switched"), ("hr1", "revoked"), ("hr1", "published"), ("hr1", "switched")]
    );
    let (ok, text, err) = support::run_herald(["domain", "show", "customer.test", "--api", &w.base(), "--token", TOKEN].map(String::from).to_vec()).await;
    assert!(ok && text.contains("key rotation:") && text.contains("signing switched from hr2 to hr1"), "{text}{err}");
    // Every step is an event too, in order.
    let page = w.api(|c| c.events("type=domain.key_rotation&domain=customer.test")).await.unwrap().value;
    let steps: Vec<String> = page.events.iter().map(|e| e.reasons[0].split(':').next().unwrap().to_string()).collect();
    assert_eq!(steps, ["published hr2", "switched hr2", "revoked hr1", "published hr1", "switched hr1"], "{page:?}");

    // The customer's records never changed.
    assert_eq!(shown.customer_records, added.customer_records);
    assert_eq!(w.customer_view(&added).await, customer_before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schedule_rotates_on_its_own() {
    let clock = ManualClock::new();
    let w = world::World::start_with_clock(
        BASE_ZONE,
        |c| {
            c.domains.zone = "wl.relay.test".into();
            c.domains.rotate_every = "180d".into();
            c.dns_server.addresses = vec!["127.0.0.1:0".into()];
        },
        clock.clone(),
    )
    .await;
    w.dns.delegate("wl.relay.test", w.relay.running().dns_addrs[0]);
    let domains = &w.relay.running().domains;
    let rec = domains.registry().add("customer.test", None, Some("em4821")).unwrap();
    let customer: String = domains.customer_records(&rec).iter().map(|r| format!("{}. CNAME {}.\n", r.host, r.value)).collect();
    w.publish(&format!("{BASE_ZONE}{customer}"));
    domains.verify_now("customer.test").await.unwrap();
    // Not due yet.
    clock.advance(Duration::from_secs(179 * 86400));
    assert!(domains.advance_rotations().await.unwrap().is_empty());
    assert_eq!(domains.registry().get("customer.test").unwrap().unwrap().active_selector(), "hr1");
    clock.advance(Duration::from_secs(86400));
    let done = domains.advance_rotations().await.unwrap();
    assert!(done.len() == 1 && done[0].switched, "{done:?}");
    assert_eq!(domains.registry().get("customer.test").unwrap().unwrap().active_selector(), "hr2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relays_own_key_rotates_between_two_selectors() {
    // No embedded DNS here: the operator publishes `herald dns zone` by hand.
    let clock = ManualClock::new();
    let w = world::World::start_with_clock(
        BASE_ZONE,
        |c| {
            c.admin.token = TOKEN.into();
            c.admin.address = "127.0.0.1:0".into();
        },
        clock.clone(),
    )
    .await;
    let base = format!("http://{}", w.relay.running().admin_addr.unwrap());
    let api = |f: fn(&AdminClient) -> RotationV1| {
        let base = base.clone();
        async move { tokio::task::spawn_blocking(move || f(&AdminClient::new(&base, TOKEN))).await.unwrap() }
    };
    let zone = || {
        let base = base.clone();
        async move { tokio::task::spawn_blocking(move || AdminClient::new(&base, TOKEN).zone().unwrap()).await.unwrap() }
    };
    let auth = Dns::from_config(&w.dns.config()).unwrap().authenticator();
    let relay_signature = |m: SinkMessage| {
        let auth = auth.clone();
        async move {
            let parsed = mail_auth::AuthenticatedMessage::parse(&m.data).unwrap();
            let results = auth.verify_dkim(&parsed).await;
            let s = results[0].signature().unwrap();
            (results[0].result().clone(), s.d.clone(), s.s.clone())
        }
    };
    let send = || async {
        let id = w.submit("billing@plain.test", "app@sender.test", &["payer@dest.test"]).await;
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(m) = w.sink.received().into_iter().find(|m| m.mail_from.contains(id.as_str())) {
                return m;
            }
            assert!(tokio::time::Instant::now() < deadline, "message {id} never reached the sink");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let pass = |selector: &'static str| move |(result, d, s): (mail_auth::DkimResult, String, String)| {
        assert_eq!((result, d.as_str(), s.as_str()), (mail_auth::DkimResult::Pass, "relay.test", selector));
    };

    let before = send().await;
    pass("herald")(relay_signature(before.clone()).await);

    // Published nowhere yet: the relay keeps signing with the old key.
    let r = api(|c| c.rotate_relay().unwrap().value).await;
    assert!(!r.switched && !r.embedded_dns, "{r:?}");
    assert_eq!((r.selector.as_str(), r.publishing.as_deref()), ("herald", Some("herald2")));
    assert!(r.check.as_ref().is_some_and(|c| !c.ok && c.message.contains("herald dns zone")), "{r:?}");
    let during = send().await;
    pass("herald")(relay_signature(during.clone()).await);

    // The operator publishes `herald dns zone`: both keys are in it.
    let text = zone().await;
    assert!(text.contains("herald._domainkey.relay.test.") && text.contains("herald2._domainkey.relay.test."), "{text}");
    w.dns.set_zone(&format!("{BASE_ZONE}{text}"));
    let r = api(|c| c.rotate_relay().unwrap().value).await;
    assert!(r.switched && r.selector == "herald2", "{r:?}");
    let after = send().await;
    pass("herald2")(relay_signature(after).await);
    pass("herald")(relay_signature(before).await);
    pass("herald")(relay_signature(during).await);

    // Retention over: the old key is withdrawn from the zone and the store.
    clock.advance(Duration::from_secs(7 * 86400 + 60));
    w.relay.running().domains.advance_rotations().await.unwrap();
    let text = zone().await;
    assert!(!text.contains("herald._domainkey.relay.test.") && text.contains("herald2._domainkey.relay.test."), "{text}");
    assert!(w.relay.running().queue.preparer.keys.get("relay.test", "herald").unwrap().is_none());
}
