//! The certificate herald makes for itself: named after
//! `server.hostname`, valid one year, made again at start once expired —
//! and an operator's own certificate is never touched.

mod support;

use herald::tls::selfsigned::{VALID_DAYS, facts};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use support::{TestRelay, now_secs};

fn read_facts(relay: &TestRelay) -> (herald::tls::selfsigned::Facts, Vec<u8>) {
    let pem = std::fs::read(relay.cert_path()).unwrap();
    let der = CertificateDer::from_pem_slice(&pem).unwrap();
    (facts(&der).unwrap(), der.as_ref().to_vec())
}

#[tokio::test]
async fn made_for_the_hostname_for_one_year() {
    let mut relay = TestRelay::start().await;
    let (f, der) = read_facts(&relay);
    assert!(f.herald_made);
    let days_left = (f.not_after - now_secs()) / 86_400;
    assert!((VALID_DAYS - 1..=VALID_DAYS).contains(&days_left), "{days_left} days");
    assert!(der.windows(10).any(|w| w == b"relay.test"), "CN/SAN from server.hostname");
    // A TLS client that trusts it can connect (authed() does STARTTLS).
    relay.authed().await;
    relay.stop().await;
}

#[tokio::test]
async fn an_expired_own_certificate_is_made_again_an_operators_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    // Herald's own, made two years ago.
    herald::tls::generate_self_signed("relay.test", &cert, &key, now_secs() - 2 * 365 * 86_400).unwrap();
    let config = support::test_config(dir.path());
    let mut relay = support::start_relay(config, dir, std::sync::Arc::new(herald::clock::SystemClock)).await;
    let (f, _) = read_facts(&relay);
    assert!(f.not_after > now_secs() + 300 * 86_400, "renewed: {f:?}");
    relay.authed().await;
    relay.stop().await;

    // The operator's expired certificate stays as it is.
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params.not_before = rcgen::date_time_ymd(2000, 1, 1);
    params.not_after = rcgen::date_time_ymd(2001, 1, 1);
    let pair = rcgen::KeyPair::generate().unwrap();
    let operators = params.self_signed(&pair).unwrap().pem();
    std::fs::write(&cert, &operators).unwrap();
    std::fs::write(&key, pair.serialize_pem()).unwrap();
    let config = support::test_config(dir.path());
    let mut relay = support::start_relay(config, dir, std::sync::Arc::new(herald::clock::SystemClock)).await;
    assert_eq!(std::fs::read_to_string(relay.cert_path()).unwrap(), operators);
    relay.stop().await;
}
