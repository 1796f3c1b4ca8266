//! Whitelabel end to end, the way a billing app and a customer use it: a
//! domain added over the admin API, the records it answers with published
//! in a real DNS server, "check my records", and mail that a receiver
//! verifies through the customer's CNAME chain. A relay in-process, a real
//! DNS server, a real SMTP sink and the real `herald` binary, all on loopback.

mod support;

use herald::admin::client::{AdminClient, ClientError};
use herald::admin::{AddDomainV1, CheckStatusV1, DomainListV1, DomainStateV1, DomainV1, ErrorV1, MessageV1, OverallV1, VerificationV1};
use herald::bench::sink::SinkMessage;
use herald::id::MessageId;
use herald::policy::Identity;
use std::ops::Deref;
use std::time::Duration;
use support::world::{self, WAIT};

const TOKEN: &str = "whitelabel-admin-token-0123456789";

struct World(world::World);

impl Deref for World {
    type Target = world::World;
    fn deref(&self) -> &world::World {
        &self.0
    }
}

impl World {
    /// A relay with its admin API on, operator zone `wl.relay.test`,
    /// delivering by MX to the sink; the DNS holds the recipients' MX and
    /// the operator zone as the API renders it.
    async fn start() -> World {
        let world = World(
            world::World::start("", |config| {
                config.admin.token = TOKEN.into();
                config.admin.address = "127.0.0.1:0".into();
                config.domains.zone = "wl.relay.test".into();
                config.domains.inbound_host = "mx.relay.test".into();
            })
            .await,
        );
        world.publish("").await;
        world
    }

    fn base(&self) -> String {
        format!("http://{}", self.relay.running().admin_addr.expect("the admin API is on"))
    }

    /// Runs `f` with an API client, off the runtime that serves the relay.
    async fn api<T: Send + 'static>(&self, f: impl FnOnce(&AdminClient) -> T + Send + 'static) -> T {
        let base = self.base();
        tokio::task::spawn_blocking(move || f(&AdminClient::new(&base, TOKEN)))
            .await
            .unwrap()
    }

    /// One raw request: status and body.
    async fn http(&self, method: &str, path: &str, body: Option<&str>, token: bool) -> (u16, String) {
        let url = format!("{}{path}", self.base());
        let (method, body) = (method.to_string(), body.map(str::to_string));
        tokio::task::spawn_blocking(move || {
            let mut request = ureq::request(&method, &url).timeout(Duration::from_secs(10));
            if token {
                request = request.set("Authorization", &format!("Bearer {TOKEN}"));
            }
            let result = match body {
                Some(b) => request.set("Content-Type", "application/json").send_string(&b),
                None => request.call(),
            };
            match result {
                Ok(r) => (r.status(), r.into_string().unwrap()),
                Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap()),
                Err(e) => panic!("{method} {url}: {e}"),
            }
        })
        .await
        .unwrap()
    }

    async fn add(&self, domain: &str, return_path_label: Option<&str>) -> DomainV1 {
        let request = AddDomainV1 {
            domain: domain.into(),
            selector_prefix: None,
            return_path_label: return_path_label.map(str::to_string),
        };
        self.api(move |c| c.add_domain(&request)).await.unwrap().value
    }

    async fn verify(&self, domain: &str) -> VerificationV1 {
        let domain = domain.to_string();
        self.api(move |c| c.verify_domain(&domain)).await.unwrap().value
    }

    /// Publishes the recipients' MX, the operator zone from `GET
    /// /api/dns/zone` as it is, and `customer` (the customers' zones).
    async fn publish(&self, customer: &str) -> String {
        let zone = self.api(|c| c.zone()).await.unwrap();
        self.dns.set_zone(&format!(
            "dest.test. MX 10 mx.dest.test.\nmx.dest.test. A 127.0.0.1\n{zone}\n{customer}"
        ));
        zone
    }

    async fn submit(&self, from: &str) -> MessageId {
        self.0.submit(from, "app@sender.test", &["payer@dest.test"]).await
    }

    /// The message as the sink received it, by its envelope sender's id.
    async fn delivered(&self, id: &MessageId) -> SinkMessage {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(m) = self.sink.received().into_iter().find(|m| m.mail_from.contains(id.as_str())) {
                return m;
            }
            assert!(tokio::time::Instant::now() < deadline, "message {id} never reached the sink");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `(d=, s=)` of the message's one DKIM signature, which must verify
    /// the way a receiver checks it, through the test DNS server.
    async fn dkim_pass(&self, m: &SinkMessage) -> (String, String) {
        let auth = herald::dns::Dns::from_config(&self.dns.config()).unwrap().authenticator();
        let parsed = mail_auth::AuthenticatedMessage::parse(&m.data).unwrap();
        let results = auth.verify_dkim(&parsed).await;
        assert_eq!(results.len(), 1, "one signature");
        assert_eq!(results[0].result(), &mail_auth::DkimResult::Pass, "{:?}", results[0].result());
        let signature = results[0].signature().unwrap();
        (signature.d.clone(), signature.s.clone())
    }
}

/// The customer's three CNAMEs as zone lines, from the API's answer;
/// `wrong` replaces the value of the record whose label it names.
fn cnames(d: &DomainV1, wrong: Option<(&str, &str)>) -> String {
    let mut out = String::new();
    for r in &d.customer_records {
        let value = match wrong {
            Some((label, value)) if label == r.label => value,
            _ => r.value.as_str(),
        };
        out.push_str(&format!("{}. {} {value}.\n", r.host, r.kind));
    }
    out
}

/// Runs the `herald` binary against the relay's API: (success, stdout, stderr).
async fn herald(w: &World, args: &[&str]) -> (bool, String, String) {
    let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    all.extend(["--api".into(), w.base(), "--token".into(), TOKEN.into()]);
    support::run_herald(all).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verified_domain_signs_as_the_customer_through_the_cname_chain() {
    let w = World::start().await;
    let added = w.add("customer.test", None).await;
    assert_eq!((added.domain.as_str(), added.tenant.as_str()), ("customer.test", "t1"));
    assert_eq!((added.state, added.signs_as_customer), (DomainStateV1::Pending, false));
    let rp = &added.customer_records[0].host;
    let label = rp.strip_suffix(".customer.test").unwrap();
    assert!(label.len() == 6 && label.starts_with("em"), "{label}");
    assert_eq!(&added.return_path, rp);
    // DESIGN "The three records", row by row.
    let rows: Vec<(&str, &str, &str)> = added
        .customer_records
        .iter()
        .map(|r| (r.host.as_str(), r.kind.as_str(), r.value.as_str()))
        .collect();
    assert_eq!(
        rows,
        [
            (rp.as_str(), "CNAME", "t1.wl.relay.test"),
            ("hr1._domainkey.customer.test", "CNAME", "hr1.domainkey.t1.wl.relay.test"),
            ("hr2._domainkey.customer.test", "CNAME", "hr2.domainkey.t1.wl.relay.test"),
        ]
    );
    assert!(added.customer_records[0].purpose.contains("return path"));
    let operator: Vec<(&str, &str)> = added.operator_records.iter().map(|r| (r.name.as_str(), r.kind.as_str())).collect();
    assert_eq!(
        operator,
        [
            ("t1.wl.relay.test", "TXT"),
            ("t1.wl.relay.test", "MX"),
            ("hr1.domainkey.t1.wl.relay.test", "TXT"),
            ("hr2.domainkey.t1.wl.relay.test", "TXT"),
        ]
    );
    assert_eq!(added.operator_records[0].value, "v=spf1 ip4:127.0.0.1 -all");
    assert_eq!(added.operator_records[1].value, "10 mx.relay.test");
    let key = &added.operator_records[2];
    assert!(key.value.starts_with("v=DKIM1; k=rsa; p=MII"), "{}", key.value);
    assert!(
        key.strings.len() == 2 && key.strings.iter().all(|s| s.len() <= 255),
        "{:?}",
        key.strings
    );

    // The customer creates the three CNAMEs; the operator publishes the zone.
    let zone = w.publish(&cnames(&added, None)).await;
    assert!(
        zone.contains("\nherald._domainkey.relay.test. 3600 IN TXT \"v=DKIM1; k=rsa; p="),
        "{zone}"
    );
    assert!(zone.contains("\nt1.wl.relay.test. 3600 IN MX 10 mx.relay.test.\n"), "{zone}");
    assert!(
        zone.contains("\nhr2.domainkey.t1.wl.relay.test. 3600 IN TXT \"v=DKIM1; k=rsa; p="),
        "{zone}"
    );
    for line in zone.lines().filter(|l| l.contains("IN TXT \"v=DKIM1")) {
        assert_eq!(
            line.matches('"').count(),
            4,
            "a 2048-bit key is two strings of at most 255 bytes: {line}"
        );
    }

    let v = w.verify("customer.test").await;
    assert_eq!((v.overall, v.state), (OverallV1::Verified, DomainStateV1::Verified), "{v:#?}");
    let hosts: Vec<&str> = v.records.iter().map(|r| r.host.as_str()).collect();
    assert_eq!(hosts, [rp.as_str(), "hr1._domainkey.customer.test", "hr2._domainkey.customer.test"]);
    assert!(
        v.records
            .iter()
            .all(|r| r.ok && r.status == CheckStatusV1::Ok && r.message.starts_with("Ok:")),
        "{v:#?}"
    );
    let shown = w.api(|c| c.domain("Customer.Test.")).await.unwrap().value;
    assert_eq!((shown.state, shown.signs_as_customer), (DomainStateV1::Verified, true));
    assert_eq!(shown.history.len(), 1);
    assert!(shown.last_check_ms.is_some());

    // A receiver finds the key through the customer's CNAME: there is no
    // TXT at the customer's name itself.
    let dns = herald::dns::Dns::from_config(&w.dns.config()).unwrap();
    assert_eq!(
        dns.cname("hr1._domainkey.customer.test").await.unwrap(),
        "hr1.domainkey.t1.wl.relay.test"
    );
    assert!(!zone.contains("hr1._domainkey.customer.test"));

    let cases = [
        (
            "invoice@customer.test",
            "customer.test is a verified domain, signing as the customer",
        ),
        (
            "x@billing.customer.test",
            "customer.test covers billing.customer.test as a verified domain, signing as the customer",
        ),
    ];
    for (from, reason) in cases {
        let id = w.submit(from).await;
        let m = w.delivered(&id).await;
        assert_eq!(m.mail_from, format!("bounces+{id}@{rp}"), "{from}");
        assert_eq!(w.dkim_pass(&m).await, ("customer.test".to_string(), "hr1".to_string()), "{from}");
        let record = w.finished(&id).await;
        let decision = record.decision.clone().unwrap();
        assert_eq!(
            decision.identity,
            Identity::Customer {
                domain: "customer.test".into(),
                selector: "hr1".into(),
                return_path: rp.clone()
            }
        );
        assert_eq!(decision.reason, reason);
        let prepared = record.prepared.unwrap();
        assert_eq!(
            (prepared.signed_domain.as_str(), prepared.reason.as_str()),
            ("customer.test", reason)
        );
        // The billing app sees the same over the API.
        let shown: MessageV1 = w.api(move |c| c.message(&id)).await.unwrap().value;
        assert_eq!(
            (shown.signed_domain.as_deref(), shown.selector.as_deref(), shown.reason.as_deref()),
            (Some("customer.test"), Some("hr1"), Some(reason))
        );
        assert_eq!(shown.envelope_from, Some(format!("bounces+{id}@{rp}")));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_domain_sends_as_the_relay() {
    let w = World::start().await;
    let added = w.add("pending.test", None).await;
    // The operator zone is published, the customer's CNAMEs are not.
    w.publish("").await;
    let v = w.verify("pending.test").await;
    assert_eq!((v.overall, v.state), (OverallV1::NotVerified, DomainStateV1::Pending));
    assert!(v.records.iter().all(|r| r.status == CheckStatusV1::Missing && !r.ok), "{v:#?}");

    let id = w.submit("invoice@pending.test").await;
    let m = w.delivered(&id).await;
    assert_eq!(m.mail_from, format!("bounces+{id}@bounces.relay.test"));
    assert_eq!(w.dkim_pass(&m).await, ("relay.test".to_string(), "herald".to_string()));
    let record = w.finished(&id).await;
    let decision = record.decision.unwrap();
    assert_eq!(decision.identity, Identity::Relay);
    assert!(decision.reason.contains("not covered by a verified domain"), "{}", decision.reason);
    assert_eq!(record.prepared.unwrap().signed_domain, "relay.test");
    let shown = w.api(|c| c.domain("pending.test")).await.unwrap().value;
    assert_eq!(
        (shown.state, shown.signs_as_customer, shown.history.len()),
        (DomainStateV1::Pending, false, 0)
    );
    assert_eq!(shown.customer_records, added.customer_records);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_names_the_wrong_record_and_bad_input_is_refused() {
    let w = World::start().await;
    let added = w.add("customer.test", Some("em4821")).await;
    w.publish(&cnames(&added, Some(("hr2._domainkey", "hr2.domainkey.t9.wl.relay.test"))))
        .await;
    let (status, body) = w.http("POST", "/api/domains/customer.test/verify", None, true).await;
    assert_eq!(status, 200, "{body}");
    let v: VerificationV1 = serde_json::from_str(&body).unwrap();
    assert_eq!((v.overall, v.state), (OverallV1::NotVerified, DomainStateV1::Pending));
    let oks: Vec<bool> = v.records.iter().map(|r| r.ok).collect();
    assert_eq!(oks, [true, true, false]);
    let bad = &v.records[2];
    assert_eq!(
        (bad.host.as_str(), bad.status),
        ("hr2._domainkey.customer.test", CheckStatusV1::PointsElsewhere)
    );
    assert!(
        bad.message
            .contains("points to `hr2.domainkey.t9.wl.relay.test`, expected `hr2.domainkey.t1.wl.relay.test`"),
        "{}",
        bad.message
    );
    assert!(
        body.contains("\"status\":\"points_elsewhere\""),
        "machine names on the wire: {body}"
    );

    // The CLI shows the same, and fails until the domain is verified.
    let (ok, out, err) = herald(&w, &["domain", "verify", "customer.test"]).await;
    assert!(!ok, "{out}");
    assert!(out.contains("✓ em4821.customer.test — Ok"), "{out}");
    assert!(out.contains("✗ hr2._domainkey.customer.test — Points elsewhere"), "{out}");
    assert!(err.contains("customer.test is not verified"), "{err}");

    // Fixed: verified, and the CLI prints three ✓ lines.
    w.publish(&cnames(&added, None)).await;
    let (ok, out, err) = herald(&w, &["domain", "verify", "customer.test"]).await;
    assert!(ok, "{out}{err}");
    for host in [
        "em4821.customer.test",
        "hr1._domainkey.customer.test",
        "hr2._domainkey.customer.test",
    ] {
        assert!(out.contains(&format!("✓ {host} — Ok: `{host}` is a CNAME to")), "{out}");
    }
    assert!(!out.contains('✗'), "{out}");
    assert!(out.contains("customer.test is verified"), "{out}");

    // Exit codes, as `--help` and the README state them: 0 verified, 1 a
    // record is wrong, 2 could not check (temporary DNS failure; the
    // domain stays verified).
    let code = |args: Vec<String>| async move {
        tokio::task::spawn_blocking(move || std::process::Command::new(env!("CARGO_BIN_EXE_herald")).args(&args).output().unwrap())
            .await
            .unwrap()
    };
    let args = |w: &World| ["domain", "verify", "customer.test", "--api", &w.base(), "--token", TOKEN].map(String::from).to_vec();
    assert_eq!(code(args(&w)).await.status.code(), Some(0));
    w.0.dns.servfail("hr1._domainkey.customer.test");
    let out = code(args(&w)).await;
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("stays `verified`"), "{}", String::from_utf8_lossy(&out.stderr));
    w.0.dns.clear_servfail();
    w.publish(&cnames(&added, Some(("hr2._domainkey", "hr2.domainkey.t9.wl.relay.test")))).await;
    assert_eq!(code(args(&w)).await.status.code(), Some(1));
    w.publish(&cnames(&added, None)).await;
    assert_eq!(code(args(&w)).await.status.code(), Some(0));

    // Bad adds: 4xx with the registry's words.
    let cases: &[(&str, u16, &str)] = &[
        ("co.uk", 400, "`co.uk` is a public suffix"),
        ("wl.relay.test", 400, "is the relay's own zone `wl.relay.test`"),
        ("t1.wl.relay.test", 400, "relay's own zone"),
        ("not a domain", 400, "`not a domain` is not a domain name"),
        ("billing@customer.test", 400, "e-mail address"),
        ("127.0.0.1", 400, "is an IP address"),
        ("[192.0.2.1]", 400, "is an IP address"),
        ("::1", 400, "is an IP address"),
        ("intranet", 400, "at least two labels"),
        ("Customer.TEST.", 409, "`customer.test` is already registered (tenant t1)"),
    ];
    for &(domain, want, words) in cases {
        let request = AddDomainV1 {
            domain: domain.into(),
            selector_prefix: None,
            return_path_label: None,
        };
        match w.api(move |c| c.add_domain(&request)).await {
            Err(ClientError::Api { status, message }) => {
                assert_eq!(status, want, "{domain}: {message}");
                assert!(message.contains(words), "{domain}: want `{words}` in {message}");
            }
            other => panic!("{domain}: {other:?}"),
        }
    }
    for (body, want) in [
        (r#"{"domain":"x.test","selector_prefix":"1x"}"#, 400),
        (r#"{"domian":"x.test"}"#, 422),
        ("not json", 400),
    ] {
        let (status, text) = w.http("POST", "/api/domains", Some(body), true).await;
        assert_eq!(status, want, "{body}: {text}");
        let error: ErrorV1 = serde_json::from_str(&text).unwrap();
        assert!(!error.error.is_empty());
    }
    for (method, path) in [
        ("GET", "/api/domains/nobody.test"),
        ("POST", "/api/domains/nobody.test/verify"),
        ("DELETE", "/api/domains/nobody.test"),
    ] {
        let (status, text) = w.http(method, path, None, true).await;
        assert_eq!(status, 404, "{method} {path}: {text}");
        assert!(text.contains("`nobody.test` is not a registered domain"), "{text}");
    }
    for (method, path) in [("GET", "/api/domains"), ("POST", "/api/domains"), ("GET", "/api/dns/zone")] {
        assert_eq!(w.http(method, path, None, false).await.0, 401, "{method} {path}");
    }
    let list: DomainListV1 = w.api(|c| c.domains()).await.unwrap().value;
    assert_eq!(
        list.domains.iter().map(|d| d.domain.as_str()).collect::<Vec<_>>(),
        ["customer.test"]
    );

    // `herald domain add` prints the three records to hand to the customer.
    let (ok, out, err) = herald(&w, &["domain", "add", "other.test", "--return-path-label", "em1234"]).await;
    assert!(ok, "{err}");
    assert!(out.contains("create these three DNS records"), "{out}");
    for row in [
        ["em1234.other.test", "CNAME", "t2.wl.relay.test"],
        ["hr1._domainkey.other.test", "CNAME", "hr1.domainkey.t2.wl.relay.test"],
        ["hr2._domainkey.other.test", "CNAME", "hr2.domainkey.t2.wl.relay.test"],
    ] {
        assert!(out.lines().any(|l| l.split_whitespace().eq(row)), "want {row:?} in {out}");
    }
    let (ok, out, err) = herald(&w, &["dns", "zone"]).await;
    assert!(ok, "{err}");
    assert!(
        out.contains("herald._domainkey.relay.test. 3600 IN TXT") && out.contains("; t2 (other.test, pending)"),
        "{out}"
    );

    // Removal answers with what was removed; then it is gone.
    let (status, body) = w.http("DELETE", "/api/domains/customer.test", None, true).await;
    assert_eq!(status, 200, "{body}");
    let removed: DomainV1 = serde_json::from_str(&body).unwrap();
    assert_eq!((removed.domain.as_str(), removed.operator_records.len()), ("customer.test", 4));
    assert_eq!(w.http("GET", "/api/domains/customer.test", None, true).await.0, 404);
    let zone = w.api(|c| c.zone()).await.unwrap();
    assert!(!zone.contains("t1.wl.relay.test") && zone.contains("t2.wl.relay.test"), "{zone}");
}
