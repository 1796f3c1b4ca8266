//! `herald inspect` against real mail: a relay in-process signs as a
//! verified customer and delivers to a real SMTP sink; the delivered bytes
//! (and changed copies of them) are inspected through a real DNS server,
//! in-process, over the admin API and with the `herald` binary. All on
//! loopback.

mod support;

use herald::admin::client::AdminClient;
use herald::admin::{AddDomainV1, DomainV1, InspectRequestV1, InspectV1, OverallV1};
use herald::bench::sink::SinkMessage;
use herald::id::MessageId;
use std::ops::Deref;
use std::time::Duration;
use support::world::{self, WAIT};

const TOKEN: &str = "inspect-admin-token-0123456789";
/// The receiving side's view of the relay's connection.
const RELAY_IP: &str = "127.0.0.1";

struct World {
    inner: world::World,
    /// The customer's CNAMEs, as zone lines.
    cnames: String,
    /// The return-path host of customer.test.
    return_path: String,
}

impl Deref for World {
    type Target = world::World;
    fn deref(&self) -> &world::World {
        &self.inner
    }
}

/// customer.test publishes DMARC p=reject; strict.test too, and is not a
/// customer; dest.test receives.
const ZONE: &str = "dest.test. MX 10 mx.dest.test.\nmx.dest.test. A 127.0.0.1\n\
    _dmarc.customer.test. TXT \"v=DMARC1; p=reject\"\n\
    _dmarc.strict.test. TXT \"v=DMARC1; p=reject\"\n";

impl World {
    /// A relay with its admin API on, customer.test added and verified.
    async fn start() -> World {
        let inner = world::World::start("", |config| {
            config.admin.token = TOKEN.into();
            config.admin.address = "127.0.0.1:0".into();
            config.domains.zone = "wl.relay.test".into();
            config.domains.inbound_host = "mx.relay.test".into();
        })
        .await;
        let mut w = World { inner, cnames: String::new(), return_path: String::new() };
        let request = AddDomainV1 { domain: "customer.test".into(), selector_prefix: None, return_path_label: None };
        let added: DomainV1 = w.api(move |c| c.add_domain(&request)).await.unwrap().value;
        w.cnames = added.customer_records.iter().map(|r| format!("{}. {} {}.\n", r.host, r.kind, r.value)).collect();
        w.return_path = added.return_path.clone();
        w.publish(true).await;
        let v = w.api(|c| c.verify_domain("customer.test")).await.unwrap().value;
        assert_eq!(v.overall, OverallV1::Verified, "{v:#?}");
        w
    }

    fn base(&self) -> String {
        format!("http://{}", self.relay.running().admin_addr.expect("the admin API is on"))
    }

    async fn api<T: Send + 'static>(&self, f: impl FnOnce(&AdminClient) -> T + Send + 'static) -> T {
        let base = self.base();
        tokio::task::spawn_blocking(move || f(&AdminClient::new(&base, TOKEN))).await.unwrap()
    }

    /// Publishes the operator zone, [`ZONE`], `extra` and, if `keys`,
    /// the customer's CNAMEs (return path and DKIM keys).
    async fn publish_with(&self, keys: bool, extra: &str) {
        let zone = self.api(|c| c.zone()).await.unwrap();
        let cnames = if keys { self.cnames.clone() } else { self.cnames.lines().filter(|l| !l.contains("_domainkey")).map(|l| format!("{l}\n")).collect() };
        self.dns.set_zone(&format!("{ZONE}{zone}\n{cnames}{extra}"));
    }

    async fn publish(&self, keys: bool) {
        self.publish_with(keys, "").await;
    }

    /// Submits `message` to `rcpts`; what the sink got.
    async fn deliver_to(&self, message: &str, rcpts: &[&str]) -> (MessageId, SinkMessage) {
        let mut c = self.relay.authed().await;
        let id = support::queued_id(&c.send_message("app@sender.test", rcpts, message.as_bytes()).await.unwrap());
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(m) = self.sink.received().into_iter().find(|m| m.mail_from.contains(id.as_str())) {
                return (id, m);
            }
            assert!(tokio::time::Instant::now() < deadline, "message {id} never reached the sink");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Submits `message` to payer@dest.test; what the sink got.
    async fn deliver(&self, message: &str) -> (MessageId, SinkMessage) {
        self.deliver_to(message, &["payer@dest.test"]).await
    }

    /// Inspects `raw` as the receiver saw it (from the relay's IP, with the
    /// envelope sender `mail_from`), through the test DNS server.
    async fn inspect(&self, raw: &[u8], mail_from: &str) -> InspectV1 {
        let dns = herald::dns::Dns::from_config(&self.dns.config()).unwrap();
        let request = InspectRequestV1 { mail_from: Some(mail_from.into()), ip: Some(RELAY_IP.into()), helo: Some("relay.test".into()) };
        herald::inspect::inspect(&dns, raw, &request, "receiver.test").await.unwrap()
    }
}

/// What Python's `email.message.EmailMessage` sends: no Date, no Message-ID.
const PYTHON_STYLE: &str = "From: Acme Billing <billing@customer.test>\r\nTo: <payer@dest.test>\r\nSubject: Invoice 42\r\n\
    Content-Type: text/plain; charset=\"utf-8\"\r\n\r\nPlease pay.\r\n";

fn header_count(raw: &[u8], name: &str) -> usize {
    herald::message::field_ranges(raw, name).len()
}

/// `raw` with `field` placed at the top of the header section.
fn with_top(raw: &[u8], field: &str) -> Vec<u8> {
    let mut out = field.as_bytes().to_vec();
    out.extend_from_slice(raw);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_herald_signed_passes_every_check() {
    let w = World::start().await;
    // The second recipient keeps the message queued, for `--id`.
    let (id, m) = w.deliver_to(PYTHON_STYLE, &["payer@dest.test", "tempfail-100@dest.test"]).await;
    // Herald added Date and Message-ID before signing (RFC 6409 §8).
    assert_eq!((header_count(&m.data, "Date"), header_count(&m.data, "Message-ID")), (1, 1));

    let r = w.inspect(&m.data, &m.mail_from).await;
    assert_eq!(r.from_domain.as_deref(), Some("customer.test"));
    assert_eq!(r.dkim.len(), 1, "{r:#?}");
    let d = &r.dkim[0];
    assert_eq!((d.result.as_str(), d.domain.as_str(), d.selector.as_str(), d.cause.as_deref()), ("pass", "customer.test", "hr1", None), "{d:#?}");
    assert_eq!((d.algorithm.as_str(), d.canonicalization.as_str(), d.key_bits), ("rsa-sha256", "relaxed/relaxed", Some(2048)));
    assert!(d.key.starts_with("v=DKIM1; k=rsa; p=MII"), "{}", d.key);
    for signed in ["From", "Date", "Message-ID", "Subject"] {
        assert!(d.headers.iter().any(|h| h.eq_ignore_ascii_case(signed)), "{signed} not in {:?}", d.headers);
    }
    let spf = r.spf.as_ref().unwrap();
    assert_eq!((spf.result.as_str(), spf.domain.as_str(), spf.mechanism.as_deref()), ("pass", w.return_path.as_str(), Some("ip4:127.0.0.1")), "{spf:#?}");
    assert_eq!(spf.record.as_deref(), Some("v=spf1 ip4:127.0.0.1 -all"));
    let dmarc = r.dmarc.as_ref().unwrap();
    assert_eq!((dmarc.result.as_str(), dmarc.policy.as_str(), dmarc.aligned.as_deref()), ("pass", "reject", Some("DKIM d=customer.test (exact match)")), "{dmarc:#?}");
    assert_eq!(dmarc.record.as_deref(), Some("v=DMARC1; p=reject"));
    assert!(dmarc.disposition.starts_with("deliver"), "{}", dmarc.disposition);

    // The same over the API, with herald's own view added.
    let raw = m.data.clone();
    let mail_from = m.mail_from.clone();
    let (status, body) = tokio::task::spawn_blocking({
        let url = format!("{}/api/inspect?ip={RELAY_IP}&helo=relay.test&mail_from={}", w.base(), mail_from.replace('+', "%2B").replace('@', "%40"));
        move || match ureq::post(&url).set("Authorization", &format!("Bearer {TOKEN}")).send_bytes(&raw) {
            Ok(r) => (r.status(), r.into_string().unwrap()),
            Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap()),
            Err(e) => panic!("{e}"),
        }
    })
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let api: InspectV1 = serde_json::from_str(&body).unwrap();
    assert_eq!((api.dkim[0].result.as_str(), api.spf.as_ref().unwrap().result.as_str(), api.dmarc.as_ref().unwrap().result.as_str()), ("pass", "pass", "pass"));
    let identity = api.identity.unwrap();
    assert_eq!((identity.kind.as_str(), identity.signing_domain.as_str(), identity.envelope_domain.as_str()), ("customer", "customer.test", w.return_path.as_str()));

    // The binary, on a file, through the test DNS server.
    let file = w.relay.dir.path().join("delivered.eml");
    std::fs::write(&file, &m.data).unwrap();
    let dns = w.dns.config().nameservers[0].clone();
    let args = ["inspect", file.to_str().unwrap(), "--dns", &dns, "--ip", RELAY_IP, "--helo", "relay.test", "--mail-from", &m.mail_from, "--api", &w.base(), "--token", TOKEN];
    let (ok, out, err) = support::run_herald(args.iter().map(|s| s.to_string()).collect()).await;
    assert!(ok, "{err}");
    for want in ["DKIM #1  PASS  d=customer.test s=hr1", "SPF    PASS", "`ip4:127.0.0.1` matched", "DMARC  PASS  customer.test policy=reject", "herald would send From customer.test as: customer"] {
        assert!(out.contains(want), "{want:?} missing in:\n{out}");
    }

    // The stored message, as herald sends it (`--id`, through the API).
    let args = ["inspect", "--id", id.as_str(), "--json", "--api", &w.base(), "--token", TOKEN];
    let (ok, out, err) = support::run_herald(args.iter().map(|s| s.to_string()).collect()).await;
    assert!(ok, "{err}");
    let stored: InspectV1 = serde_json::from_str(&out).unwrap();
    let s = stored.stored.unwrap();
    assert_eq!(s.envelope_from, m.mail_from);
    assert!(s.prepared_headers.starts_with("DKIM-Signature: "), "{}", s.prepared_headers);
    assert!(s.prepared_at_first_attempt);
    assert!(s.prepared_headers.contains("\r\nDate: ") && s.prepared_headers.contains(&format!("Message-ID: <{id}@relay.test>")), "{}", s.prepared_headers);
    assert_eq!(stored.dkim[0].result, "pass");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_added_header_and_a_changed_body_are_named() {
    let w = World::start().await;
    let (_, m) = w.deliver(PYTHON_STYLE).await;

    // Fields an MTA adds on the way (Received, Return-Path, even another
    // Date) do not break herald's signature: h= never lists an absent one.
    let h = w.inspect(&m.data, &m.mail_from).await.dkim[0].headers.clone();
    for absent in ["Received", "Return-Path", "Reply-To", "Cc", "In-Reply-To"] {
        assert!(!h.iter().any(|x| x.eq_ignore_ascii_case(absent)), "{absent} listed: {h:?}");
    }
    let mut relayed = with_top(&m.data, "Received: from relay.test by mx.dest.test; Mon, 30 Nov 2026 02:00:00 +0000\r\n");
    relayed = with_top(&relayed, &format!("Return-Path: <{}>\r\n", m.mail_from));
    relayed = with_top(&relayed, "Date: Mon, 30 Nov 2026 02:00:01 +0000\r\n");
    let r = w.inspect(&relayed, &m.mail_from).await;
    assert_eq!((r.dkim[0].result.as_str(), r.dmarc.unwrap().result.as_str()), ("pass", "pass"), "{:#?}", r.dkim);

    // A second From is caught by the over-signing, and named.
    let r = w.inspect(&with_top(&m.data, "From: Mallory <pay@evil.test>\r\n"), &m.mail_from).await;
    assert_eq!(r.dkim[0].result, "fail");
    assert_eq!(r.dkim[0].cause.as_deref(), Some("another `From` header was added after signing; the signature listed `From` 2 times while the message had 1"));

    // A signature that lists an absent Date (what herald did before, and
    // other signers still do), then a receiver adds Date.
    let key = w.relay.running().queue.preparer.keys.get("relay.test", "herald").unwrap().unwrap().der().unwrap();
    let rsa = mail_auth::common::crypto::RsaKey::<mail_auth::common::crypto::Sha256>::from_key_der(rustls_pki_types::PrivateKeyDer::Pkcs8(key.into())).unwrap();
    let unsigned = "From: Acme <billing@relay.test>\r\nTo: <payer@dest.test>\r\nSubject: Invoice 43\r\n\r\nPlease pay.\r\n";
    let signature = mail_auth::dkim::DkimSigner::from_key(rsa).domain("relay.test").selector("herald").headers(["From", "Subject", "Date"]).sign(unsigned.as_bytes()).unwrap();
    use mail_auth::common::headers::HeaderWriter;
    let signed = format!("{}{unsigned}", signature.to_header());
    assert_eq!(w.inspect(signed.as_bytes(), "").await.dkim[0].result, "pass");
    let dated = with_top(signed.as_bytes(), "Date: Mon, 30 Nov 2026 02:00:00 +0000\r\n");
    let r = w.inspect(&dated, "").await;
    assert_eq!((r.dkim[0].result.as_str(), r.dkim[0].domain.as_str()), ("fail", "relay.test"));
    assert_eq!(r.dkim[0].cause.as_deref(), Some("a `Date` header was added after signing; the signature listed `Date` while the message had none"));

    // A signed header changed in place: herald names the candidates.
    let subject = String::from_utf8_lossy(&m.data).replace("Subject: Invoice 42", "Subject: Invoice 43").into_bytes();
    let r = w.inspect(&subject, &m.mail_from).await;
    assert_eq!(r.dkim[0].result, "fail");
    let cause = r.dkim[0].cause.as_deref().unwrap();
    assert!(cause.starts_with("the signed headers do not match the signature: one of `") && cause.contains("`Subject`") && cause.contains("was changed after signing"), "{cause}");

    // One body byte changed.
    let mut changed = m.data.clone();
    let at = memchr::memmem::find(&changed, b"Please pay").unwrap();
    changed[at] = b'p';
    let r = w.inspect(&changed, &m.mail_from).await;
    assert_eq!(r.dkim[0].result, "neutral", "{r:#?}");
    assert!(r.dkim[0].cause.as_deref().unwrap().starts_with("the body was changed after signing"), "{r:#?}");
    // DMARC then has nothing aligned but SPF on the return path, which is
    // a subdomain: relaxed alignment passes.
    assert_eq!(r.dmarc.as_ref().unwrap().aligned.as_deref(), Some(format!("SPF {} (relaxed: same organizational domain)", w.return_path).as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_removed_from_dns_is_named() {
    let w = World::start().await;
    let (_, m) = w.deliver(PYTHON_STYLE).await;
    w.publish(false).await;
    let r = w.inspect(&m.data, &m.mail_from).await;
    let d = &r.dkim[0];
    assert_eq!(d.result, "permerror", "{d:#?}");
    let cause = d.cause.as_deref().unwrap();
    assert!(cause.starts_with("no key is published at hr1._domainkey.customer.test"), "{cause}");
    assert_eq!(d.key_bits, None);

    // The binary without a running relay: the checks still run, herald's
    // own view is missing and says why.
    let file = w.relay.dir.path().join("m.eml");
    std::fs::write(&file, &m.data).unwrap();
    let dns = w.dns.config().nameservers[0].clone();
    let args = ["inspect", file.to_str().unwrap(), "--dns", &dns, "--api", "http://127.0.0.1:9", "--token", TOKEN];
    let (ok, out, err) = support::run_herald(args.iter().map(|s| s.to_string()).collect()).await;
    assert!(ok, "{err}");
    assert!(out.contains("DKIM #1  PERMERROR") && out.contains("cause: no key is published at hr1._domainkey.customer.test"), "{out}");
    assert!(out.contains("SPF    not checked: give --ip"), "{out}");
    assert!(err.contains("herald's own view is not available") && err.contains("cannot reach the admin API"), "{err}");

    // Not a message at all: refused with the reason.
    let (status, body) = tokio::task::spawn_blocking({
        let url = format!("{}/api/inspect", w.base());
        move || match ureq::post(&url).set("Authorization", &format!("Bearer {TOKEN}")).send_bytes(b"hello") {
            Ok(r) => (r.status(), r.into_string().unwrap()),
            Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap()),
            Err(e) => panic!("{e}"),
        }
    })
    .await
    .unwrap();
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("not a message"), "{body}");

    // The key revoked: published with an empty p=.
    w.publish_with(false, "hr1._domainkey.customer.test. TXT \"v=DKIM1; k=rsa; p=\"\n").await;
    let r = w.inspect(&m.data, &m.mail_from).await;
    assert_eq!(r.dkim[0].cause.as_deref(), Some("the key at hr1._domainkey.customer.test is revoked (its p= is empty)"), "{:#?}", r.dkim);
    assert_ne!(r.dkim[0].result, "pass");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_signature_is_named() {
    let w = World::start().await;
    let key = w.relay.running().queue.preparer.keys.get("relay.test", "herald").unwrap().unwrap().der().unwrap();
    let rsa = mail_auth::common::crypto::RsaKey::<mail_auth::common::crypto::Sha256>::from_key_der(rustls_pki_types::PrivateKeyDer::Pkcs8(key.into())).unwrap();
    let unsigned = "From: Acme <billing@relay.test>\r\nSubject: soon stale\r\n\r\nbody\r\n";
    // x= one second after signing.
    let signature = mail_auth::dkim::DkimSigner::from_key(rsa).domain("relay.test").selector("herald").headers(["From", "Subject"]).expiration(1).sign(unsigned.as_bytes()).unwrap();
    use mail_auth::common::headers::HeaderWriter;
    let signed = format!("{}{unsigned}", signature.to_header());
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let r = w.inspect(signed.as_bytes(), "").await;
    let d = &r.dkim[0];
    assert_eq!((d.result.as_str(), d.expires), ("neutral", Some(signature.x)), "{d:#?}");
    let cause = d.cause.as_deref().unwrap();
    assert!(cause.starts_with("the signature expired at ") && cause.contains(&format!("(x={})", signature.x)), "{cause}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dmarc_reject_without_alignment_is_explained() {
    let w = World::start().await;
    // Signed by the relay's own domain for a From domain that publishes
    // p=reject: DKIM passes, but for a domain that does not align.
    let key = w.relay.running().queue.preparer.keys.get("relay.test", "herald").unwrap().unwrap().der().unwrap();
    let signer = herald::dkim::Signer::new("relay.test", "herald", &key).unwrap();
    let unsigned = "From: Strict <billing@strict.test>\r\nTo: <payer@dest.test>\r\nSubject: x\r\nDate: Mon, 30 Nov 2026 02:00:00 +0000\r\n\r\nbody\r\n";
    let signed = format!("{}{unsigned}", signer.sign(&[unsigned.as_bytes()]).unwrap());
    let r = w.inspect(signed.as_bytes(), "bounces+x@bounces.relay.test").await;
    assert_eq!((r.dkim[0].result.as_str(), r.dkim[0].domain.as_str()), ("pass", "relay.test"));
    assert_eq!(r.spf.as_ref().unwrap().result, "none");
    let d = r.dmarc.unwrap();
    assert_eq!((d.domain.as_str(), d.result.as_str(), d.policy.as_str(), d.aligned.as_deref()), ("strict.test", "fail", "reject", None), "{d:#?}");
    assert_eq!(d.record_name.as_deref(), Some("_dmarc.strict.test"));
    assert!(d.explanation.contains("nothing aligns with the From domain strict.test: DKIM passed only for d=relay.test (not aligned)"), "{}", d.explanation);
    assert_eq!(d.disposition, "reject: receivers following p=reject refuse the message");
    // Herald's own view: not a customer, so it sends as the relay and
    // rewrites From.
    let identity = w.api(|c| c.identity("strict.test")).await.unwrap().value;
    assert_eq!((identity.kind.as_str(), identity.signing_domain.as_str()), ("relay", "relay.test"));
    assert!(identity.reason.contains("strict.test publishes DMARC p=reject, so From becomes noreply@relay.test"), "{}", identity.reason);
}
