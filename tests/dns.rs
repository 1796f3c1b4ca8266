//! `herald::dns::Dns` against a real DNS server on loopback: MX order, null
//! MX, NXDOMAIN vs NODATA vs temporary failure, CNAME handling, long TXT
//! over UDP and TCP, and mail-auth over the same resolver.

mod support;

use herald::config::DnsConfig;
use herald::dns::{Dns, DnsError, MxHost};
use hickory_resolver::proto::op::{Message, Query};
use hickory_resolver::proto::rr::{Name, RData, RecordType};
use std::net::IpAddr;
use support::dns::TestDns;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ZONE: &str = r#"
; customer zone
customer.nl.            300 IN MX 20 mx2.customer.nl.
customer.nl.            IN  MX 10 MX1.Customer.NL.
customer.nl.            MX  20 mx3.customer.nl.
customer.nl.            TXT "v=spf1 " "include:relay.test -all"
customer.nl.            TXT "second record"
mx1.customer.nl.        A   127.0.0.11
mx1.customer.nl.        AAAA ::1
mx2.customer.nl.        A   127.0.0.12
mx2.customer.nl.        A   127.0.0.13
em4821.customer.nl.     CNAME T1.WL.Relay.Test.
hr1._domainkey.customer.nl. CNAME hr1._domainkey.t1.wl.relay.test.
txtonly.customer.nl.    TXT "no addresses here"
deep.below.empty.customer.nl. A 127.0.0.14
dangling.customer.nl.   CNAME gone.customer.nl.
to-txtonly.customer.nl. CNAME txtonly.customer.nl.
chain1.customer.nl.     CNAME chain2.customer.nl.
chain2.customer.nl.     CNAME chain3.customer.nl.
chain3.customer.nl.     A 127.0.0.15
                        AAAA ::1

; operator zone, mixed in freely
t1.wl.relay.test.       A   127.0.0.1
hr1._domainkey.t1.wl.relay.test. TXT "v=DKIM1; k=rsa; " "p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"
nullmx.test.            MX  0 .
"#;

async fn setup() -> (TestDns, Dns) {
    let server = TestDns::start().await;
    server.set_zone(ZONE);
    let dns = Dns::from_config(&server.config()).expect("resolver for the test server");
    (server, dns)
}

/// Base64-looking text of `len` characters, like an RSA public key.
fn key_material(len: usize) -> String {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    (0..len).map(|i| char::from(alphabet[(i * 7 + i / 64) % 64])).collect()
}

fn ip(text: &str) -> IpAddr {
    text.parse().expect("test address")
}

#[tokio::test]
async fn mx_sorted_by_preference_ties_in_answer_order() {
    let (_server, dns) = setup().await;
    let hosts = dns.mx("customer.nl").await.unwrap();
    let got: Vec<(u16, &str)> = hosts.iter().map(|h| (h.preference, h.exchange.as_str())).collect();
    assert_eq!(got, [(10, "mx1.customer.nl"), (20, "mx2.customer.nl"), (20, "mx3.customer.nl")]);
    assert!(hosts.iter().all(|h| !h.is_null()));
    // A trailing dot and odd case in the query change nothing.
    assert_eq!(dns.mx("Customer.NL.").await.unwrap(), hosts);
}

#[tokio::test]
async fn null_mx_is_one_empty_exchange() {
    let (_server, dns) = setup().await;
    let hosts = dns.mx("nullmx.test").await.unwrap();
    assert_eq!(hosts, [MxHost { preference: 0, exchange: String::new() }]);
    assert!(hosts[0].is_null());
}

#[tokio::test]
async fn nxdomain_and_nodata_stay_apart() {
    let (_server, dns) = setup().await;
    type Case = (&'static str, &'static str, DnsError);
    let cases: &[Case] = &[
        ("mx", "missing.customer.nl", DnsError::NxDomain),
        ("mx", "mx1.customer.nl", DnsError::NoData),
        ("mx", "empty.customer.nl", DnsError::NoData), // empty non-terminal
        ("mx", "nosuchtld", DnsError::NxDomain),
        ("ips", "missing.customer.nl", DnsError::NxDomain),
        ("ips", "txtonly.customer.nl", DnsError::NoData),
        ("ips", "below.empty.customer.nl", DnsError::NoData),
        ("ips", "dangling.customer.nl", DnsError::NxDomain), // CNAME to nowhere
        ("ips", "to-txtonly.customer.nl", DnsError::NoData), // CNAME to a name without A
        ("txt", "missing.customer.nl", DnsError::NxDomain),
        ("txt", "mx1.customer.nl", DnsError::NoData),
        ("cname", "missing.customer.nl", DnsError::NxDomain),
        ("cname", "mx1.customer.nl", DnsError::NoData),
        ("mx", "", DnsError::NxDomain), // not a name at all
        ("txt", "bad..name", DnsError::NxDomain),
    ];
    for (kind, name, want) in cases {
        let got = match *kind {
            "mx" => dns.mx(name).await.map(|_| ()),
            "ips" => dns.ips(name).await.map(|_| ()),
            "txt" => dns.txt(name).await.map(|_| ()),
            "cname" => dns.cname(name).await.map(|_| ()),
            other => panic!("unknown kind {other}"),
        };
        assert_eq!(got, Err(want.clone()), "{kind} {name}");
    }
}

#[tokio::test]
async fn servfail_is_temporary_never_missing() {
    let (server, dns) = setup().await;
    for name in ["customer.nl", "Missing.Customer.NL"] {
        server.servfail(name);
    }
    let results = [
        dns.mx("customer.nl").await.map(|_| ()),
        dns.txt("customer.nl").await.map(|_| ()),
        dns.ips("customer.nl").await.map(|_| ()),
        dns.cname("customer.nl").await.map(|_| ()),
        dns.mx("missing.customer.nl").await.map(|_| ()),
    ];
    for (i, r) in results.into_iter().enumerate() {
        match r {
            Err(DnsError::Temporary(text)) => assert!(!text.is_empty()),
            other => panic!("lookup {i}: want Temporary, got {other:?}"),
        }
    }
    // Only the marked names fail; a CNAME into a failing name fails too.
    server.servfail("t1.wl.relay.test");
    assert_eq!(dns.ips("mx2.customer.nl").await.unwrap(), [ip("127.0.0.12"), ip("127.0.0.13")]);
    assert!(matches!(dns.ips("em4821.customer.nl").await, Err(DnsError::Temporary(_))));
    server.clear_servfail();
    assert_eq!(dns.mx("customer.nl").await.unwrap().len(), 3);
    assert_eq!(dns.mx("missing.customer.nl").await, Err(DnsError::NxDomain));
    assert_eq!(dns.ips("em4821.customer.nl").await.unwrap(), [ip("127.0.0.1")]);
}

#[tokio::test]
async fn silent_server_is_temporary() {
    // Bound but never answering: every query times out.
    let silent = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let cfg = DnsConfig {
        nameservers: vec![silent.local_addr().unwrap().to_string()],
        timeout_secs: 1,
        attempts: 1,
        cache: false,
        ..Default::default()
    };
    let dns = Dns::from_config(&cfg).unwrap();
    assert!(matches!(dns.mx("customer.nl").await, Err(DnsError::Temporary(_))));
}

#[tokio::test]
async fn cname_query_does_not_follow() {
    let (_server, dns) = setup().await;
    // The target has an A record; the CNAME itself is still what comes back.
    assert_eq!(dns.cname("em4821.customer.nl").await.unwrap(), "t1.wl.relay.test");
    assert_eq!(dns.cname("em4821.customer.nl.").await.unwrap(), "t1.wl.relay.test");
    assert_eq!(dns.cname("chain1.customer.nl").await.unwrap(), "chain2.customer.nl");
    assert_eq!(dns.cname("dangling.customer.nl").await.unwrap(), "gone.customer.nl");
}

#[tokio::test]
async fn cname_chains_are_followed_for_addresses_and_txt() {
    let (_server, dns) = setup().await;
    assert_eq!(dns.ips("chain1.customer.nl").await.unwrap(), [ip("127.0.0.15"), ip("::1")]);
    assert_eq!(dns.ips("em4821.customer.nl").await.unwrap(), [ip("127.0.0.1")]);
    assert_eq!(dns.ips("mx1.customer.nl").await.unwrap(), [ip("127.0.0.11"), ip("::1")]);
    assert_eq!(
        dns.txt("hr1._domainkey.customer.nl").await.unwrap(),
        ["v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"]
    );
}

#[tokio::test]
async fn txt_strings_are_joined_per_record() {
    let (_server, dns) = setup().await;
    let mut got = dns.txt("customer.nl").await.unwrap();
    got.sort();
    assert_eq!(got, ["second record", "v=spf1 include:relay.test -all"]);
}

#[tokio::test]
async fn long_txt_over_udp_and_tcp() {
    let (server, dns) = setup().await;
    // ~1000 bytes fits the resolver's EDNS UDP size; ~3000 forces TC and TCP.
    for (len, over_tcp) in [(1000, false), (3000, true)] {
        let tcp_before = server.tcp_queries();
        let key = key_material(len);
        let strings: Vec<String> =
            key.as_bytes().chunks(250).map(|c| format!("\"{}\"", String::from_utf8_lossy(c))).collect();
        server.set_zone(&format!("hr1._domainkey.t1.wl.relay.test. TXT \"v=DKIM1; k=rsa; p=\" {}", strings.join(" ")));
        let got = dns.txt("hr1._domainkey.t1.wl.relay.test").await.unwrap();
        assert_eq!(got, [format!("v=DKIM1; k=rsa; p={key}")], "len {len}");
        assert_eq!(server.tcp_queries() > tcp_before, over_tcp, "len {len}");
    }
    // One over-long quoted string is split into 255-byte character-strings.
    let key = key_material(600);
    server.set_zone(&format!("long.test. TXT \"{key}\""));
    assert_eq!(dns.txt("long.test").await.unwrap(), [key]);
}

/// The test server itself: without EDNS a >512-byte UDP answer is cut with
/// TC set, and the same question over TCP gets everything.
#[tokio::test]
async fn test_server_truncates_plain_udp() {
    let server = TestDns::start().await;
    let key = key_material(900);
    server.set_zone(&format!("big.test. TXT \"{key}\""));
    let mut query = Message::query();
    query.metadata.recursion_desired = true;
    query.add_query(Query::query(Name::from_ascii("big.test.").unwrap(), RecordType::TXT));
    let wire = query.to_vec().unwrap();

    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    udp.send_to(&wire, server.addr).await.unwrap();
    let mut buf = vec![0u8; 65_535];
    let len = udp.recv(&mut buf).await.unwrap();
    assert!(len <= 512, "{len} bytes over UDP without EDNS");
    let reply = Message::from_vec(&buf[..len]).unwrap();
    assert!(reply.metadata.truncation);
    assert!(reply.answers.is_empty());

    let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(&u16::try_from(wire.len()).unwrap().to_be_bytes()).await.unwrap();
    tcp.write_all(&wire).await.unwrap();
    let len = tcp.read_u16().await.unwrap();
    let mut body = vec![0u8; usize::from(len)];
    tcp.read_exact(&mut body).await.unwrap();
    let reply = Message::from_vec(&body).unwrap();
    assert!(!reply.metadata.truncation);
    let text: Vec<u8> = reply
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::TXT(t) => Some(t.txt_data.concat()),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(text, key.as_bytes());
}

#[tokio::test]
async fn authenticator_uses_the_same_resolver() {
    let (_server, dns) = setup().await;
    let auth = dns.authenticator();
    let raw = auth.txt_raw_lookup("hr1._domainkey.t1.wl.relay.test.").await.unwrap();
    assert_eq!(raw, b"v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA");
    // Through the customer's CNAME as well.
    let raw = auth.txt_raw_lookup("hr1._domainkey.customer.nl").await.unwrap();
    assert_eq!(raw, b"v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA");
}

#[test]
fn bad_nameserver_names_the_key() {
    let cfg = DnsConfig { nameservers: vec!["dns.example".into()], ..Default::default() };
    let err = Dns::from_config(&cfg).unwrap_err();
    assert!(err.contains("dns.nameservers"), "{err}");
}
