//! Whitelabel domains against a real DNS server on loopback: every
//! verification diagnosis with its message, the state machine over time
//! (ManualClock), `covering()`, add validation and tenant ids.

mod support;

use herald::clock::{Clock, ManualClock};
use herald::config::DomainsConfig;
use herald::dns::Dns;
use herald::domains::{AddError, CheckStatus, DomainRecord, DomainState, Domains, Overall, Verification, names};
use herald::store::Store;
use std::sync::Arc;
use std::time::Duration;
use support::dns::TestDns;

const ZONE: &str = "wl.relay.test";

struct Env {
    server: TestDns,
    domains: Domains,
    clock: Arc<ManualClock>,
    _store: Store,
    _dir: tempfile::TempDir,
}

impl Env {
    async fn new() -> Env {
        let server = TestDns::start().await;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 8).unwrap();
        let clock = ManualClock::new();
        let config = DomainsConfig {
            zone: ZONE.into(),
            inbound_host: "mx.relay.test".into(),
            ..Default::default()
        };
        let dns = Dns::from_config(&server.config()).unwrap();
        let domains = Domains::open(store.db(), dns, clock.clone(), &config).unwrap();
        Env {
            server,
            domains,
            clock,
            _store: store,
            _dir: dir,
        }
    }

    fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Adds `domain` with return-path label `em4821`.
    fn add(&self, domain: &str) -> DomainRecord {
        self.domains.registry().add(domain, None, Some("em4821")).unwrap()
    }

    /// The operator's zone for every registered domain, rendered by herald.
    fn operator_zone(&self) -> String {
        self.domains.zone_fragment().unwrap()
    }

    /// The customer's three CNAMEs as a zone, except those whose host is in `skip`.
    fn cnames(&self, record: &DomainRecord, skip: &[&str]) -> String {
        let mut out = String::new();
        for r in self.domains.customer_records(record) {
            if !skip.contains(&r.label.as_str()) {
                out.push_str(&format!("{}. CNAME {}.\n", r.host, r.value));
            }
        }
        out
    }

    /// Publishes the operator zone plus `customer`, and checks `domain`.
    async fn check(&self, domain: &str, customer: &str) -> (DomainRecord, Verification) {
        self.server.set_zone(&format!("{}\n{customer}", self.operator_zone()));
        self.domains.verify_now(domain).await.unwrap()
    }
}

/// The status of the record typed in as `label`.
fn status<'a>(v: &'a Verification, label: &str) -> &'a CheckStatus {
    &v.records
        .iter()
        .find(|r| r.label == label)
        .unwrap_or_else(|| panic!("no record {label} in {v:?}"))
        .status
}

fn message(v: &Verification, label: &str) -> String {
    v.records.iter().find(|r| r.label == label).unwrap().message()
}

fn assert_words(text: &str, words: &[&str]) {
    for w in words {
        assert!(text.contains(w), "want `{w}` in: {text}");
    }
}

#[tokio::test]
async fn all_three_right_is_verified() {
    let env = Env::new().await;
    let rec = env.add("customer.nl");
    assert_eq!((rec.tenant, rec.state), (1, DomainState::Pending));
    let (stored, v) = env.check("customer.nl", &env.cnames(&rec, &[])).await;
    assert_eq!(v.overall, Overall::Verified, "{v:#?}");
    assert!(v.records.iter().all(|r| r.status == CheckStatus::Ok));
    assert_eq!(
        v.records.iter().map(|r| r.host.as_str()).collect::<Vec<_>>(),
        ["em4821.customer.nl", "hr1._domainkey.customer.nl", "hr2._domainkey.customer.nl"]
    );
    assert_eq!(stored.state, DomainState::Verified);
    assert_eq!(stored.history.len(), 1);
    assert_eq!(
        (stored.history[0].from, stored.history[0].to),
        (DomainState::Pending, DomainState::Verified)
    );
    assert_eq!(env.domains.registry().get("customer.nl").unwrap().unwrap(), stored);

    // The operator zone herald rendered is what receivers see through the CNAMEs.
    let dns = Dns::from_config(&env.server.config()).unwrap();
    assert_eq!(dns.txt("em4821.customer.nl").await.unwrap(), ["v=spf1 ip4:127.0.0.1 -all"]);
    assert_eq!(dns.mx("t1.wl.relay.test").await.unwrap()[0].exchange, "mx.relay.test");
    let keys = env.domains.registry().public_keys(&stored).unwrap();
    assert_eq!(
        dns.txt("hr2._domainkey.customer.nl").await.unwrap(),
        [format!("v=DKIM1; k=rsa; p={}", keys[1].1)]
    );
}

#[tokio::test]
async fn missing_record() {
    let env = Env::new().await;
    let rec = env.add("customer.nl");
    // NXDOMAIN at the host.
    let (stored, v) = env.check("customer.nl", &env.cnames(&rec, &["em4821"])).await;
    assert_eq!(status(&v, "em4821"), &CheckStatus::Missing);
    assert_eq!(
        message(&v, "em4821"),
        "Missing: add a CNAME record with host `em4821` pointing to `t1.wl.relay.test`."
    );
    assert_eq!(status(&v, "hr1._domainkey"), &CheckStatus::Ok);
    assert_eq!(v.overall, Overall::NotVerified);
    assert_eq!(stored.state, DomainState::Pending);
    // NODATA at the host (the name has only an MX): still missing.
    let customer = format!("{}em4821.customer.nl. MX 10 mx.customer.nl.\n", env.cnames(&rec, &["em4821"]));
    let (_, v) = env.check("customer.nl", &customer).await;
    assert_eq!(status(&v, "em4821"), &CheckStatus::Missing);
}

#[tokio::test]
async fn points_elsewhere() {
    let env = Env::new().await;
    let rec = env.add("customer.nl");
    let customer = format!("{}em4821.customer.nl. CNAME t99.wl.relay.test.\n", env.cnames(&rec, &["em4821"]));
    let (_, v) = env.check("customer.nl", &customer).await;
    assert_eq!(
        status(&v, "em4821"),
        &CheckStatus::PointsElsewhere {
            found: "t99.wl.relay.test".into()
        }
    );
    assert_words(
        &message(&v, "em4821"),
        &["Points elsewhere", "points to `t99.wl.relay.test`, expected `t1.wl.relay.test`"],
    );
    assert_eq!(v.overall, Overall::NotVerified);

    // The provider appended the customer's zone to the value.
    let customer = format!(
        "{}hr2._domainkey.customer.nl. CNAME hr2.domainkey.t1.wl.relay.test.customer.nl.\n",
        env.cnames(&rec, &["hr2._domainkey"])
    );
    let (_, v) = env.check("customer.nl", &customer).await;
    assert_words(
        &message(&v, "hr2._domainkey"),
        &["appended `customer.nl` to the value", "`hr2.domainkey.t1.wl.relay.test.`"],
    );
}

#[tokio::test]
async fn zone_appended_twice() {
    let env = Env::new().await;
    let rec = env.add("customer.nl");
    let customer = format!(
        "{}em4821.customer.nl.customer.nl. CNAME t1.wl.relay.test.\nhr1._domainkey.customer.nl.customer.nl. CNAME hr1.domainkey.t1.wl.relay.test.\n",
        env.cnames(&rec, &["em4821", "hr1._domainkey"])
    );
    let (_, v) = env.check("customer.nl", &customer).await;
    assert_eq!(
        status(&v, "em4821"),
        &CheckStatus::ZoneAppendedTwice {
            found_at: "em4821.customer.nl.customer.nl".into()
        }
    );
    assert_words(
        &message(&v, "em4821"),
        &[
            "Zone appended twice",
            "`em4821.customer.nl.customer.nl`",
            "enter only `em4821` as the host name",
        ],
    );
    assert_words(&message(&v, "hr1._domainkey"), &["enter only `hr1._domainkey` as the host name"]);
    assert_eq!(status(&v, "hr2._domainkey"), &CheckStatus::Ok);
}

#[tokio::test]
async fn addresses_without_cname_are_flattened() {
    let env = Env::new().await;
    let rec = env.add("customer.nl");
    let customer = format!(
        "{}em4821.customer.nl. A 127.0.0.2\nem4821.customer.nl. AAAA ::1\n",
        env.cnames(&rec, &["em4821"])
    );
    let (_, v) = env.check("customer.nl", &customer).await;
    assert_eq!(
        status(&v, "em4821"),
        &CheckStatus::Flattened {
            addresses: vec!["127.0.0.2".parse().unwrap(), "::1".parse().unwrap()]
        }
    );
    assert_words(
        &message(&v, "em4821"),
        &[
            "Flattened or proxied",
            "(127.0.0.2, ::1)",
            "no CNAME",
            "plain CNAME to `t1.wl.relay.test`",
        ],
    );
}

#[tokio::test]
async fn txt_where_a_cname_belongs() {
    let env = Env::new().await;
    let rec = env.add("customer.nl");
    let customer = format!(
        "{}hr1._domainkey.customer.nl. TXT \"v=DKIM1; k=rsa; p=QUJD\"\n",
        env.cnames(&rec, &["hr1._domainkey"])
    );
    let (_, v) = env.check("customer.nl", &customer).await;
    assert_eq!(
        status(&v, "hr1._domainkey"),
        &CheckStatus::TxtInsteadOfCname {
            found: "v=DKIM1; k=rsa; p=QUJD".into()
        }
    );
    assert_words(
        &message(&v, "hr1._domainkey"),
        &[
            "TXT where a CNAME belongs",
            "has a TXT record",
            "add a CNAME record with host `hr1._domainkey` pointing to `hr1.domainkey.t1.wl.relay.test`",
        ],
    );
}

#[tokio::test]
async fn dkim_key_at_the_target_differs_or_is_missing() {
    let env = Env::new().await;
    let rec = env.add("customer.nl");
    let other = herald::dkim::public_key_b64(&herald::dkim::generate_rsa().unwrap()).unwrap();
    let held = env.domains.registry().public_keys(&rec).unwrap();
    // Operator zone with another key for hr1, and none for hr2.
    let records = names::operator_records(rec.tenant, ZONE, "ip4:127.0.0.1", "mx.relay.test", &[("hr1".into(), other.clone())]);
    env.server
        .set_zone(&format!("{}{}", names::zone_fragment(&records, 300), env.cnames(&rec, &[])));
    let (_, v) = env.domains.verify_now("customer.nl").await.unwrap();
    assert_eq!(status(&v, "em4821"), &CheckStatus::Ok);
    assert_eq!(
        status(&v, "hr1._domainkey"),
        &CheckStatus::KeyMismatch {
            found: Some(other.clone())
        }
    );
    assert_ne!(other, held[0].1);
    assert_words(
        &message(&v, "hr1._domainkey"),
        &[
            "DKIM key mismatch",
            "CNAME at `hr1._domainkey.customer.nl` is right",
            "differs from the key the relay holds",
        ],
    );
    assert_eq!(status(&v, "hr2._domainkey"), &CheckStatus::KeyMismatch { found: None });
    assert_words(
        &message(&v, "hr2._domainkey"),
        &["no DKIM key is published at `hr2.domainkey.t1.wl.relay.test`", "herald dns zone"],
    );
    assert_eq!(v.overall, Overall::NotVerified);
}

#[tokio::test]
async fn servfail_is_temporary() {
    let env = Env::new().await;
    let rec = env.add("customer.nl");
    env.server.servfail("em4821.customer.nl");
    let (stored, v) = env.check("customer.nl", &env.cnames(&rec, &[])).await;
    let CheckStatus::Temporary { reason } = status(&v, "em4821") else {
        panic!("want temporary: {v:?}")
    };
    assert!(reason.contains("Server Failure"), "{reason}");
    assert_words(&message(&v, "em4821"), &["Temporary DNS failure", "checked again"]);
    assert_eq!(v.overall, Overall::Temporary);
    assert_eq!(stored.state, DomainState::Pending);
    // A definite error elsewhere wins over the temporary one.
    let (_, v) = env.check("customer.nl", &env.cnames(&rec, &["hr2._domainkey"])).await;
    assert_eq!(v.overall, Overall::NotVerified);
}

#[tokio::test]
async fn servfail_leaves_a_verified_domain_verified() {
    let env = Env::new().await;
    let rec = env.add("customer.nl");
    let (stored, _) = env.check("customer.nl", &env.cnames(&rec, &[])).await;
    assert_eq!(stored.state, DomainState::Verified);
    for r in env.domains.customer_records(&rec) {
        env.server.servfail(&r.host);
    }
    env.clock.advance(Duration::from_secs(3600));
    let (stored, v) = env.domains.verify_now("customer.nl").await.unwrap();
    assert_eq!(v.overall, Overall::Temporary);
    assert!(v.records.iter().all(|r| matches!(r.status, CheckStatus::Temporary { .. })), "{v:?}");
    assert_eq!(stored.state, DomainState::Verified);
    assert_eq!(stored.history.len(), 1);
    // Retried soon rather than in a day.
    assert!(stored.next_check_ms <= env.now_ms() + 10 * 60_000);
}

#[tokio::test]
async fn removed_records_fail_then_fall_back_after_grace() {
    let env = Env::new().await;
    let rec = env.add("customer.nl");
    env.check("customer.nl", &env.cnames(&rec, &[])).await;

    let (stored, _) = env.check("customer.nl", "").await;
    assert_eq!(stored.state, DomainState::Failing);
    let last = stored.history.last().unwrap();
    assert_eq!((last.from, last.to), (DomainState::Verified, DomainState::Failing));
    assert!(last.reason.contains("em4821.customer.nl: missing"), "{}", last.reason);
    // Inside the grace period the customer still signs.
    env.clock.advance(Duration::from_secs(71 * 3600));
    assert_eq!(
        env.domains.registry().covering("customer.nl").unwrap().map(|(r, s)| (r.domain, s)),
        Some(("customer.nl".into(), "hr1".into()))
    );
    let (stored, _) = env.domains.verify_now("customer.nl").await.unwrap();
    assert_eq!(stored.state, DomainState::Failing);

    // Past it: no longer signing even before the next check, and the check records the fall.
    env.clock.advance(Duration::from_secs(2 * 3600));
    assert!(env.domains.registry().covering("customer.nl").unwrap().is_none());
    let (stored, _) = env.domains.verify_now("customer.nl").await.unwrap();
    assert_eq!(stored.state, DomainState::Unverified);
    let last = stored.history.last().unwrap();
    assert_eq!((last.from, last.to), (DomainState::Failing, DomainState::Unverified));
    assert!(last.reason.contains("grace period"), "{}", last.reason);
    assert_eq!(stored.history.len(), 3);

    // Fixed later: verified again.
    let (stored, _) = env.check("customer.nl", &env.cnames(&rec, &[])).await;
    assert_eq!(stored.state, DomainState::Verified);
}

#[tokio::test]
async fn failing_then_fixed_is_verified_again() {
    let env = Env::new().await;
    let rec = env.add("customer.nl");
    env.check("customer.nl", &env.cnames(&rec, &[])).await;
    let (stored, _) = env.check("customer.nl", &env.cnames(&rec, &["hr1._domainkey"])).await;
    assert_eq!(stored.state, DomainState::Failing);
    env.clock.advance(Duration::from_secs(3600));
    let (stored, v) = env.check("customer.nl", &env.cnames(&rec, &[])).await;
    assert_eq!(v.overall, Overall::Verified);
    assert_eq!(stored.state, DomainState::Verified);
    let tos: Vec<DomainState> = stored.history.iter().map(|t| t.to).collect();
    assert_eq!(tos, [DomainState::Verified, DomainState::Failing, DomainState::Verified]);
    assert!(stored.history[2].reason.contains("again"), "{}", stored.history[2].reason);
}

#[tokio::test]
async fn covering_picks_the_most_specific_signing_domain() {
    let env = Env::new().await;
    let parent = env.add("customer.nl");
    let child = env.domains.registry().add("billing.customer.nl", None, Some("em1111")).unwrap();
    env.add("other.nl");
    let registry = env.domains.registry();
    let covering = |from: &str| registry.covering(from).unwrap().map(|(r, s)| (r.domain, s));

    // Nothing verified yet.
    assert_eq!(covering("billing.customer.nl"), None);
    env.check("customer.nl", &env.cnames(&parent, &[])).await;
    assert_eq!(covering("billing.customer.nl"), Some(("customer.nl".into(), "hr1".into())));
    assert_eq!(covering("Deep.Billing.Customer.NL."), Some(("customer.nl".into(), "hr1".into())));

    let both = format!("{}{}", env.cnames(&parent, &[]), env.cnames(&child, &[]));
    env.check("billing.customer.nl", &both).await;
    assert_eq!(covering("billing.customer.nl"), Some(("billing.customer.nl".into(), "hr1".into())));
    assert_eq!(
        covering("x.billing.customer.nl"),
        Some(("billing.customer.nl".into(), "hr1".into()))
    );
    assert_eq!(covering("customer.nl"), Some(("customer.nl".into(), "hr1".into())));
    assert_eq!(covering("shop.customer.nl"), Some(("customer.nl".into(), "hr1".into())));
    // Registered but not verified; not registered; a look-alike.
    assert_eq!(covering("other.nl"), None);
    assert_eq!(covering("mail.other.nl"), None);
    assert_eq!(covering("unknown.nl"), None);
    assert_eq!(covering("notcustomer.nl"), None);
}

#[tokio::test]
async fn add_refuses_with_actionable_errors() {
    let env = Env::new().await;
    let registry = env.domains.registry();
    env.add("customer.nl");
    let cases: &[(&str, &[&str])] = &[
        ("not a domain", &["`not a domain` is not a domain name"]),
        ("billing@customer.nl", &["e-mail address", "part after the @"]),
        ("co.uk", &["`co.uk` is a public suffix", "yourcompany.co.uk"]),
        ("com", &["public suffix"]),
        ("wl.relay.test", &["relay's own zone"]),
        ("t5.wl.relay.test", &["relay's own zone"]),
        (
            "Customer.NL.",
            &["`customer.nl` is already registered (tenant t1)", "remove it first"],
        ),
    ];
    for (input, words) in cases {
        let err = registry.add(input, None, None).unwrap_err();
        assert_words(&err.to_string(), words);
    }
    assert!(matches!(registry.add("co.uk", None, None), Err(AddError::PublicSuffix { .. })));
    assert!(matches!(
        registry.add("customer.nl", None, None),
        Err(AddError::Duplicate { tenant: 1, .. })
    ));
    assert!(matches!(
        registry.add("x.nl", Some("1x"), None),
        Err(AddError::BadSelectorPrefix { .. })
    ));
    assert!(matches!(
        registry.add("x.nl", None, Some("em_1")),
        Err(AddError::BadReturnPathLabel { .. })
    ));
    assert_eq!(registry.list().unwrap().len(), 1);
}

#[tokio::test]
async fn tenant_ids_are_stable_and_never_reused() {
    let env = Env::new().await;
    let registry = env.domains.registry();
    let a = registry.add("a.example.nl", None, None).unwrap();
    let b = registry.add("b.example.nl", Some("hx"), None).unwrap();
    assert_eq!((a.tenant, b.tenant), (1, 2));
    // Random `em` + 4 digits label, chosen prefixes.
    assert!(
        a.return_path_label.len() == 6 && a.return_path_label.starts_with("em"),
        "{}",
        a.return_path_label
    );
    assert!(a.return_path_label[2..].bytes().all(|c| c.is_ascii_digit()));
    assert_eq!(b.selectors(), ["hx1", "hx2"]);
    assert!(registry.keys().get("b.example.nl", "hx1").unwrap().is_some());

    let removed = registry.remove("A.example.nl.").unwrap().unwrap();
    assert_eq!(removed.tenant, 1);
    assert!(
        registry.keys().get("a.example.nl", "hr1").unwrap().is_none(),
        "keys go with the domain"
    );
    assert!(registry.remove("a.example.nl").unwrap().is_none());
    let c = registry.add("c.example.nl", None, None).unwrap();
    let a2 = registry.add("a.example.nl", None, None).unwrap();
    assert_eq!((c.tenant, a2.tenant), (3, 4));
    assert_eq!(registry.get("b.example.nl").unwrap().unwrap().tenant, 2);
    assert_eq!(registry.by_tenant(4).unwrap().unwrap().domain, "a.example.nl");
    assert!(registry.by_tenant(1).unwrap().is_none());
    let listed: Vec<(String, u64)> = registry.list().unwrap().into_iter().map(|r| (r.domain, r.tenant)).collect();
    assert_eq!(
        listed,
        [("a.example.nl".into(), 4), ("b.example.nl".into(), 2), ("c.example.nl".into(), 3)]
    );
}

#[tokio::test]
async fn recheck_due_checks_only_due_domains() {
    let env = Env::new().await;
    let rec = env.add("customer.nl");
    env.server.set_zone(&format!("{}{}", env.operator_zone(), env.cnames(&rec, &[])));
    // Just added: first check after `recheck_pending`.
    assert!(env.domains.recheck_due().await.unwrap().is_empty());
    assert_eq!(env.domains.next_due_ms().unwrap(), Some(rec.next_check_ms));
    env.clock.advance(Duration::from_secs(11 * 60));
    let checked = env.domains.recheck_due().await.unwrap();
    assert_eq!(checked.len(), 1);
    assert_eq!(checked[0].0.state, DomainState::Verified);
    // Verified: next check a day later.
    assert!(env.domains.recheck_due().await.unwrap().is_empty());
    assert_eq!(env.domains.next_due_ms().unwrap(), Some(checked[0].0.next_check_ms));
    assert_eq!(checked[0].0.next_check_ms - checked[0].0.last_check_ms.unwrap(), 24 * 3600 * 1000);
}

#[tokio::test]
async fn verify_unknown_domain_is_not_found() {
    let env = Env::new().await;
    let err = env.domains.verify_now("nobody.nl").await.unwrap_err();
    assert!(err.to_string().contains("`nobody.nl` is not a registered domain"), "{err}");
}

/// The registry answers the message path from memory: every write made
/// through any clone shows in every clone at once, and what memory holds
/// is what the tree holds (a registry opened afresh loads it from sled),
/// even when writers race on one record.
#[tokio::test]
async fn reads_from_memory_follow_every_write() {
    let env = Env::new().await;
    let registry = env.domains.registry().clone();
    let other = env.domains.registry().clone();
    let reopened = || {
        let config = DomainsConfig { zone: ZONE.into(), inbound_host: "mx.relay.test".into(), ..Default::default() };
        let dns = Dns::from_config(&env.server.config()).unwrap();
        Domains::open(env._store.db(), dns, env.clock.clone(), &config).unwrap()
    };

    let added = registry.add("Shop.Example.nl", None, None).unwrap();
    assert_eq!(other.get("shop.example.nl.").unwrap(), Some(added.clone()), "added through one clone, read through another");
    assert!(other.covering("billing.shop.example.nl").unwrap().is_none(), "pending: not signing yet");

    // Four writers race on one record; memory ends as the tree is.
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let r = registry.clone();
            std::thread::spawn(move || {
                for i in 0..50 {
                    r.update("shop.example.nl", |rec| rec.next_check_ms = w * 1000 + i).unwrap();
                }
            })
        })
        .collect();
    writers.into_iter().for_each(|t| t.join().unwrap());
    let in_memory = other.get("shop.example.nl").unwrap().unwrap();
    assert_eq!(Some(in_memory.clone()), reopened().registry().get("shop.example.nl").unwrap());
    assert_eq!(in_memory.next_check_ms % 1000, 49, "some writer's last write: {}", in_memory.next_check_ms);

    // Verified: `covering` (the per-message lookup) sees it at once.
    let now = env.now_ms();
    registry
        .update("shop.example.nl", |rec| {
            rec.state = DomainState::Verified;
            rec.state_since_ms = now;
        })
        .unwrap();
    let (covering, selector) = other.covering("billing.shop.example.nl").unwrap().unwrap();
    assert_eq!((covering.domain.as_str(), selector), ("shop.example.nl", added.active_selector()));

    // The relay's key phases, the same way.
    let before = other.relay_keys().unwrap().active();
    registry.update_relay_keys(|k| k.phases = vec![herald::domains::KeyPhase::Retiring { until_ms: now }, herald::domains::KeyPhase::Active]).unwrap();
    assert_eq!((before, other.relay_keys().unwrap().active()), (0, 1));
    assert_eq!(reopened().registry().relay_keys().unwrap().active(), 1);

    // Removed: gone from memory, from the tree and from `covering`.
    registry.remove("shop.example.nl").unwrap().unwrap();
    assert!(other.get("shop.example.nl").unwrap().is_none());
    assert!(other.covering("billing.shop.example.nl").unwrap().is_none());
    assert!(reopened().registry().get("shop.example.nl").unwrap().is_none());
}
