//! The embedded authoritative DNS server, asked the way the world asks
//! it: raw DNS messages over real UDP and TCP on loopback (as `dig` would)
//! and the resolver crate, against a relay in-process whose registry
//! changes while it serves.

mod support;

use herald::admin::client::AdminClient;
use herald::dns::{Dns, DnsError};
use herald::domains::DomainRecord;
use hickory_resolver::proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;
use support::TestRelay;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

const TOKEN: &str = "dns-server-admin-token-0123456789";
const ZONE: &str = "wl.relay.test";
const TIMEOUT: Duration = Duration::from_secs(5);

struct Env {
    relay: TestRelay,
    /// Stands in for a secondary: receives NOTIFY.
    secondary: UdpSocket,
}

impl Env {
    async fn start(tweak: impl FnOnce(&mut herald::config::Config)) -> Env {
        let secondary = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let secondary_addr = secondary.local_addr().unwrap();
        let relay = TestRelay::start_with(|c| {
            c.admin.token = TOKEN.into();
            c.admin.address = "127.0.0.1:0".into();
            c.domains.zone = ZONE.into();
            c.domains.inbound_host = "mx.relay.test".into();
            c.identity.domain = format!("relay.{ZONE}");
            c.identity.bounce_domain = format!("bounces.{ZONE}");
            c.dns_server.addresses = vec!["127.0.0.1:0".into()];
            c.dns_server.nameservers = vec!["ns1.relay.test".into(), "ns2.relay.test".into()];
            c.dns_server.ttl = "10m".into();
            c.dns_server.negative_ttl = "1m".into();
            c.dns_server.secondaries = vec![secondary_addr.to_string()];
            tweak(c);
        })
        .await;
        Env { relay, secondary }
    }

    fn addr(&self) -> SocketAddr {
        self.relay.running().dns_addrs[0]
    }

    fn add(&self, domain: &str) -> DomainRecord {
        self.relay.running().domains.registry().add(domain, None, Some("em4821")).unwrap()
    }

    /// The resolver crate pointed at the embedded server only.
    fn resolver(&self) -> Dns {
        Dns::from_config(&herald::config::DnsConfig {
            nameservers: vec![self.addr().to_string()],
            timeout_secs: 2,
            attempts: 1,
            cache: false,
            ..Default::default()
        })
        .unwrap()
    }

    /// `herald dns zone`, as the API serves it to the CLI.
    async fn zone_text(&self) -> String {
        let base = format!("http://{}", self.relay.running().admin_addr.unwrap());
        tokio::task::spawn_blocking(move || AdminClient::new(&base, TOKEN).zone().unwrap())
            .await
            .unwrap()
    }
}

fn name(text: &str) -> Name {
    Name::from_ascii(text).unwrap()
}

fn query(qname: &str, qtype: RecordType, edns: Option<u16>) -> Vec<u8> {
    let mut m = Message::new(rand::random(), MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(name(qname), qtype));
    if let Some(size) = edns {
        let mut e = Edns::new();
        e.set_max_payload(size);
        m.set_edns(e);
    }
    m.to_vec().unwrap()
}

/// One question over UDP from `from`, as `dig +notcp` would ask it.
async fn udp_from(from: &str, server: SocketAddr, qname: &str, qtype: RecordType, edns: Option<u16>) -> Message {
    let socket = UdpSocket::bind(from).await.unwrap();
    socket.send_to(&query(qname, qtype, edns), server).await.unwrap();
    let mut buf = vec![0u8; 65_535];
    let len = tokio::time::timeout(TIMEOUT, socket.recv(&mut buf)).await.expect("UDP answer in time").unwrap();
    Message::from_vec(&buf[..len]).unwrap()
}

async fn udp(server: SocketAddr, qname: &str, qtype: RecordType) -> Message {
    udp_from("127.0.0.1:0", server, qname, qtype, Some(1232)).await
}

/// Every message of one TCP exchange (several for a zone transfer, until
/// the closing SOA), from `from`.
async fn tcp_from(from: &str, server: SocketAddr, qname: &str, qtype: RecordType) -> Vec<Message> {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(from.parse().unwrap()).unwrap();
    let mut stream: TcpStream = tokio::time::timeout(TIMEOUT, socket.connect(server)).await.unwrap().unwrap();
    let q = query(qname, qtype, None);
    let mut framed = (q.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&q);
    stream.write_all(&framed).await.unwrap();
    let mut out = Vec::new();
    let mut soas = 0;
    for _ in 0..100 {
        let Ok(Ok(len)) = tokio::time::timeout(TIMEOUT, stream.read_u16()).await else { break };
        let mut body = vec![0u8; usize::from(len)];
        stream.read_exact(&mut body).await.unwrap();
        let m = Message::from_vec(&body).unwrap();
        soas += m.answers.iter().filter(|r| r.record_type() == RecordType::SOA).count();
        let done = qtype != RecordType::AXFR || m.metadata.response_code != ResponseCode::NoError || soas >= 2;
        out.push(m);
        if done {
            break;
        }
    }
    out
}

async fn tcp(server: SocketAddr, qname: &str, qtype: RecordType) -> Message {
    tcp_from("127.0.0.1:0", server, qname, qtype).await.remove(0)
}

fn txt(r: &Record) -> Vec<String> {
    match &r.data {
        RData::TXT(t) => t.txt_data.iter().map(|s| String::from_utf8_lossy(s).into_owned()).collect(),
        other => panic!("TXT expected, got {other:?}"),
    }
}

fn serial(m: &Message) -> u32 {
    let soa = m.answers.iter().chain(m.authorities.iter()).find_map(|r| match &r.data {
        RData::SOA(s) => Some(s.serial),
        _ => None,
    });
    soa.expect("a SOA in the answer")
}

#[tokio::test]
async fn serves_every_record_kind_from_the_live_registry() {
    let env = Env::start(|_| {}).await;
    let server = env.addr();
    // Not registered yet: the tenant does not exist.
    assert_eq!(udp(server, "t1.wl.relay.test.", RecordType::TXT).await.metadata.response_code, ResponseCode::NXDomain);
    let rec = env.add("customer.test");
    // Served with the very next query, no reload.
    let m = udp(server, "t1.wl.relay.test.", RecordType::TXT).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.metadata.authoritative, "AA");
    assert!(!m.metadata.recursion_available, "RA=0: authoritative only");
    assert_eq!(txt(&m.answers[0]), ["v=spf1 ip4:127.0.0.1 -all"]);
    assert_eq!(m.answers[0].ttl, 600, "dns_server.ttl");

    let m = udp(server, "t1.wl.relay.test.", RecordType::MX).await;
    let RData::MX(mx) = &m.answers[0].data else { panic!("MX") };
    assert_eq!((mx.preference, mx.exchange.to_ascii()), (10, "mx.relay.test.".to_string()));

    let m = udp(server, "wl.relay.test.", RecordType::NS).await;
    let ns: BTreeSet<String> = m
        .answers
        .iter()
        .map(|r| match &r.data {
            RData::NS(n) => n.0.to_ascii(),
            other => panic!("NS expected: {other:?}"),
        })
        .collect();
    assert_eq!(ns, BTreeSet::from(["ns1.relay.test.".to_string(), "ns2.relay.test.".to_string()]));
    let m = udp(server, "wl.relay.test.", RecordType::SOA).await;
    let RData::SOA(soa) = &m.answers[0].data else { panic!("SOA") };
    assert_eq!(soa.mname.to_ascii(), "ns1.relay.test.");
    assert_eq!(soa.rname.to_ascii(), "hostmaster.wl.relay.test.");
    assert_eq!(soa.minimum, 60, "dns_server.negative_ttl");

    // Both DKIM keys, as the registry holds them, in ≤255-byte strings.
    let keys = env.relay.running().domains.registry().public_keys(&rec).unwrap();
    for (selector, public) in &keys {
        let m = tcp(server, &format!("{selector}.domainkey.t1.wl.relay.test."), RecordType::TXT).await;
        let strings = txt(&m.answers[0]);
        assert!(strings.len() >= 2 && strings.iter().all(|s| s.len() <= 255), "{strings:?}");
        assert_eq!(strings.concat(), format!("v=DKIM1; k=rsa; p={public}"));
    }
    // The relay's own key and bounce domain, inside the served zone here.
    let relay = env.resolver().txt("herald._domainkey.relay.wl.relay.test").await.unwrap();
    assert!(relay[0].starts_with("v=DKIM1; k=rsa; p=MII"), "{relay:?}");
    let bounce = env.resolver().mx("bounces.wl.relay.test").await.unwrap();
    assert_eq!(bounce[0].exchange, "mx.relay.test");

    // The resolver crate sees the same through its own code path.
    let dns = env.resolver();
    let got = dns.txt("hr2.domainkey.t1.wl.relay.test").await.unwrap();
    assert_eq!(got, [format!("v=DKIM1; k=rsa; p={}", keys[1].1)]);
    assert_eq!(dns.mx("t1.wl.relay.test").await.unwrap()[0].exchange, "mx.relay.test");

    // Removed: gone at once.
    env.relay.running().domains.registry().remove("customer.test").unwrap();
    assert_eq!(dns.txt("t1.wl.relay.test").await, Err(DnsError::NxDomain));
}

#[tokio::test]
async fn nxdomain_and_nodata_are_told_apart_with_the_soa() {
    let env = Env::start(|_| {}).await;
    env.add("customer.test");
    let server = env.addr();
    // (name, type) → (code, answers)
    let cases = [
        ("t1.wl.relay.test.", RecordType::A, ResponseCode::NoError),
        ("domainkey.t1.wl.relay.test.", RecordType::TXT, ResponseCode::NoError),
        ("hr3.domainkey.t1.wl.relay.test.", RecordType::TXT, ResponseCode::NXDomain),
        ("t2.wl.relay.test.", RecordType::TXT, ResponseCode::NXDomain),
    ];
    for (qname, qtype, code) in cases {
        let m = udp(server, qname, qtype).await;
        assert_eq!(m.metadata.response_code, code, "{qname} {qtype}");
        assert!(m.answers.is_empty(), "{qname} {qtype}");
        assert!(m.metadata.authoritative);
        let soa = &m.authorities[0];
        assert_eq!((soa.record_type(), soa.ttl), (RecordType::SOA, 60), "negative caching TTL for {qname}");
    }
    let dns = env.resolver();
    assert_eq!(dns.ips("t1.wl.relay.test").await, Err(DnsError::NoData));
    assert_eq!(dns.txt("t2.wl.relay.test").await, Err(DnsError::NxDomain));
}

#[tokio::test]
async fn refuses_names_outside_its_zone_and_answers_any_minimally() {
    let env = Env::start(|_| {}).await;
    env.add("customer.test");
    let server = env.addr();
    for qname in ["example.com.", "relay.test.", "customer.test."] {
        let m = udp(server, qname, RecordType::A).await;
        assert_eq!(m.metadata.response_code, ResponseCode::Refused, "{qname}");
        assert!(m.answers.is_empty() && !m.metadata.recursion_available, "{qname}");
    }
    // RFC 8482: one RRset for ANY, though the name holds TXT and MX.
    let m = udp(server, "t1.wl.relay.test.", RecordType::ANY).await;
    assert_eq!(m.answers.len(), 1, "{:?}", m.answers);
    // Dynamic updates are not taken.
    let mut update = Message::new(7, MessageType::Query, OpCode::Update);
    update.add_query(Query::query(name("wl.relay.test."), RecordType::SOA));
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.send_to(&update.to_vec().unwrap(), server).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let len = tokio::time::timeout(TIMEOUT, socket.recv(&mut buf)).await.unwrap().unwrap();
    assert_eq!(Message::from_vec(&buf[..len]).unwrap().metadata.response_code, ResponseCode::Refused);
}

#[tokio::test]
async fn large_answers_are_truncated_over_udp_and_whole_over_tcp() {
    // An operator with many outgoing addresses: an SPF record of ~700 bytes.
    let spf: Vec<String> = (1..=40).map(|i| format!("ip4:192.0.2.{i}")).collect();
    let env = Env::start(|c| c.domains.spf_mechanisms = spf.join(" ")).await;
    env.add("customer.test");
    let server = env.addr();
    let qname = "t1.wl.relay.test.";
    // Without EDNS a UDP answer is at most 512 bytes (RFC 1035 §4.2.1).
    let m = udp_from("127.0.0.1:0", server, qname, RecordType::TXT, None).await;
    assert!(m.metadata.truncation, "TC set");
    assert!(m.answers.is_empty());
    // With EDNS it fits; over TCP it always does.
    let m = udp_from("127.0.0.1:0", server, qname, RecordType::TXT, Some(4096)).await;
    assert!(!m.metadata.truncation && m.answers.len() == 1);
    assert_eq!(m.edns.as_ref().map(|e| e.max_payload()), Some(1232), "our payload size caps the client's");
    let m = tcp(server, qname, RecordType::TXT).await;
    assert!(!m.metadata.truncation && m.answers.len() == 1);
    let whole = txt(&m.answers[0]).concat();
    assert!(whole.len() > 600 && whole.ends_with("ip4:192.0.2.40 -all"), "{whole}");
    // The resolver crate gets it whole (EDNS, or TCP after TC).
    assert_eq!(env.resolver().txt("t1.wl.relay.test").await.unwrap(), [whole]);
}

#[tokio::test]
async fn responses_are_rate_limited_per_client_and_tcp_still_answers() {
    let env = Env::start(|c| c.dns_server.rate_limit = 5).await;
    env.add("customer.test");
    let server = env.addr();
    let mut full = 0;
    let mut slipped = 0;
    for _ in 0..20 {
        let m = udp_from("127.0.0.1:0", server, "t1.wl.relay.test.", RecordType::TXT, Some(1232)).await;
        if m.metadata.truncation {
            assert!(m.answers.is_empty(), "a slipped answer carries nothing to amplify");
            slipped += 1;
        } else {
            full += 1;
        }
    }
    assert!((5..=7).contains(&full), "about the burst of 5 answered in full, got {full}");
    assert_eq!(full + slipped, 20);
    // Another client has its own budget; TCP is not limited.
    let m = udp_from("127.0.0.2:0", server, "t1.wl.relay.test.", RecordType::TXT, Some(1232)).await;
    assert!(!m.metadata.truncation);
    let m = tcp(server, "t1.wl.relay.test.", RecordType::TXT).await;
    assert_eq!(m.answers.len(), 1);
}

/// A record as comparable text: `name type rdata`.
fn line(r: &Record) -> String {
    let data = match &r.data {
        RData::TXT(_) => format!("\"{}\"", txt(r).join("\" \"")),
        RData::MX(mx) => format!("{} {}", mx.preference, mx.exchange.to_ascii()),
        other => other.to_string(),
    };
    format!("{} {} {}", r.name.to_ascii().to_ascii_lowercase(), r.record_type(), data)
}

#[tokio::test]
async fn axfr_holds_what_herald_dns_zone_prints_and_only_for_secondaries() {
    let env = Env::start(|_| {}).await;
    env.add("customer.test");
    env.add("other.test");
    let server = env.addr();
    let messages = tcp_from("127.0.0.1:0", server, "wl.relay.test.", RecordType::AXFR).await;
    let records: Vec<&Record> = messages.iter().flat_map(|m| m.answers.iter()).collect();
    assert_eq!(records.first().map(|r| r.record_type()), Some(RecordType::SOA));
    assert_eq!(records.last().map(|r| r.record_type()), Some(RecordType::SOA));
    let transferred: BTreeSet<String> = records
        .iter()
        .filter(|r| !matches!(r.record_type(), RecordType::SOA | RecordType::NS))
        .map(|r| line(r))
        .collect();
    // `herald dns zone` lines: `name ttl IN type data`.
    let printed: BTreeSet<String> = env
        .zone_text()
        .await
        .lines()
        .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
        .map(|l| {
            let mut parts = l.splitn(5, ' ');
            let (owner, ttl, _in, kind, data) = (parts.next().unwrap(), parts.next().unwrap(), parts.next(), parts.next().unwrap(), parts.next().unwrap());
            assert_eq!(ttl, "600", "{l}");
            format!("{owner} {kind} {data}")
        })
        .collect();
    assert_eq!(transferred.len(), 2 * 4 + 3, "two tenants, the relay's key, the bounce domain's SPF and MX");
    assert_eq!(transferred, printed);

    // Not a secondary: refused. Over UDP: refused.
    let m = tcp_from("127.0.0.2:0", server, "wl.relay.test.", RecordType::AXFR).await;
    assert_eq!(m[0].metadata.response_code, ResponseCode::Refused);
    assert!(m[0].answers.is_empty());
    let m = udp(server, "wl.relay.test.", RecordType::AXFR).await;
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
}

#[tokio::test]
async fn the_serial_moves_with_the_records_and_secondaries_are_notified() {
    let env = Env::start(|_| {}).await;
    let server = env.addr();
    let before = serial(&udp(server, "wl.relay.test.", RecordType::SOA).await);
    env.add("customer.test");
    // NOTIFY for the zone arrives at the secondary; it acknowledges.
    let mut buf = vec![0u8; 4096];
    let (len, from) = tokio::time::timeout(TIMEOUT, env.secondary.recv_from(&mut buf)).await.expect("NOTIFY in time").unwrap();
    let notify = Message::from_vec(&buf[..len]).unwrap();
    assert_eq!(notify.metadata.op_code, OpCode::Notify);
    assert_eq!(notify.queries[0].name().to_ascii(), "wl.relay.test.");
    let mut ack = Message::response(notify.metadata.id, OpCode::Notify);
    ack.add_query(notify.queries[0].clone());
    env.secondary.send_to(&ack.to_vec().unwrap(), from).await.unwrap();

    let after = serial(&udp(server, "wl.relay.test.", RecordType::SOA).await);
    assert!(after > before, "{after} > {before}");
    // A check that changes the domain's state, not its records: same serial.
    let _ = env.relay.running().domains.verify_now("customer.test").await.unwrap();
    assert_eq!(serial(&udp(server, "wl.relay.test.", RecordType::SOA).await), after);
    // The SOA in a negative answer carries it too.
    assert_eq!(serial(&udp(server, "t9.wl.relay.test.", RecordType::TXT).await), after);
}
