//! A real authoritative DNS server on loopback for tests, answering from an
//! in-memory zone text over UDP and TCP on the same kernel-chosen port.
//!
//! It behaves like one authoritative server holding every zone named in the
//! text: NXDOMAIN for a name with no records at or below it, NODATA for a
//! name that exists without the asked type, CNAMEs answered and chased
//! (RFC 1034 §4.3.2), SERVFAIL for names marked with [`TestDns::servfail`].
//! UDP answers larger than the client's EDNS payload size (512 bytes
//! without EDNS) go out truncated with TC set, so the client retries over
//! TCP (RFC 1035 §4.2.1, RFC 6891 §6.2.5).
//!
//! A zone can be handed to another server ([`TestDns::delegate`]): queries
//! at or below it, and CNAME chains that lead into it, are answered by
//! asking that server (as a recursive resolver would after following the
//! NS delegation), so customers' CNAMEs here can point into the relay's
//! embedded DNS server.

use hickory_resolver::proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_resolver::proto::rr::rdata::{A, AAAA, CNAME, MX, PTR, TXT};
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::{JoinHandle, JoinSet};

/// Longest CNAME chain the server follows within one answer.
const MAX_CHAIN: usize = 8;
/// TTL of records written without one.
const DEFAULT_TTL: u32 = 300;

/// A running test DNS server; stops when dropped.
pub struct TestDns {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    tasks: Vec<JoinHandle<()>>,
}

#[derive(Default)]
struct State {
    records: Vec<Record>,
    servfail: HashSet<String>,
    tcp_queries: usize,
    /// Zones answered by another server: (lowercase absolute zone, server).
    delegated: Vec<(String, SocketAddr)>,
}

impl TestDns {
    /// Starts an authoritative server on 127.0.0.1, random port, UDP and
    /// TCP on the same port, inside the current tokio runtime.
    pub async fn start() -> TestDns {
        let (udp, tcp) = bind_pair().await;
        let addr = udp.local_addr().expect("udp local addr");
        let state = Arc::new(Mutex::new(State::default()));
        let tasks = vec![
            tokio::spawn(serve_udp(udp, state.clone())),
            tokio::spawn(serve_tcp(tcp, state.clone())),
        ];
        TestDns { addr, state, tasks }
    }

    /// Replaces all records with those in `zone`: master-file-like lines,
    /// one record per line (`name [ttl] [IN] TYPE rdata`, `;` comments).
    /// Types: A, AAAA, MX, CNAME, TXT, PTR. All names are absolute, with or
    /// without the trailing dot; a line starting with blanks reuses the
    /// previous owner. A TXT string longer than 255 bytes is split into
    /// 255-byte character-strings. Panics on anything it cannot read.
    pub fn set_zone(&self, zone: &str) {
        let records = parse_zone(zone);
        self.lock().records = records;
    }

    /// Names answered with SERVFAIL for every type (exact name, case-insensitive).
    pub fn servfail(&self, name: &str) {
        self.lock().servfail.insert(key(&parse_name(name)));
    }

    /// Answers names at or below `zone` by asking the server at `server`
    /// (UDP, then TCP when truncated).
    pub fn delegate(&self, zone: &str, server: SocketAddr) {
        self.lock().delegated.push((key(&parse_name(zone)), server));
    }

    /// Forgets every [`TestDns::servfail`] name.
    pub fn clear_servfail(&self) {
        self.lock().servfail.clear();
    }

    /// A `DnsConfig` pointing at this server (timeout 2s, attempts 1, cache off).
    pub fn config(&self) -> herald::config::DnsConfig {
        herald::config::DnsConfig {
            nameservers: vec![self.addr.to_string()],
            timeout_secs: 2,
            attempts: 1,
            cache: false,
            ..Default::default()
        }
    }

    /// How many queries arrived over TCP so far.
    pub fn tcp_queries(&self) -> usize {
        self.lock().tcp_queries
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for TestDns {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// A UDP socket and a TCP listener on the same loopback port.
async fn bind_pair() -> (UdpSocket, TcpListener) {
    for _ in 0..50 {
        let udp = UdpSocket::bind("127.0.0.1:0").await.expect("bind udp on loopback");
        let addr = udp.local_addr().expect("udp local addr");
        if let Ok(tcp) = TcpListener::bind(addr).await {
            return (udp, tcp);
        }
    }
    panic!("no loopback port free for both UDP and TCP");
}

async fn serve_udp(socket: UdpSocket, state: Arc<Mutex<State>>) {
    let mut buf = vec![0u8; 65_535];
    loop {
        let Ok((len, peer)) = socket.recv_from(&mut buf).await else {
            continue;
        };
        if let Some(reply) = respond(&buf[..len], &state, true).await {
            let _ = socket.send_to(&reply, peer).await;
        }
    }
}

async fn serve_tcp(listener: TcpListener, state: Arc<Mutex<State>>) {
    // Connection tasks live in the set, so aborting this task ends them too.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                if let Ok((stream, _)) = accepted {
                    connections.spawn(serve_connection(stream, state.clone()));
                }
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// RFC 1035 §4.2.2: each message prefixed with its two-byte length; the
/// client may send several queries on one connection.
async fn serve_connection(mut stream: TcpStream, state: Arc<Mutex<State>>) {
    loop {
        let Ok(len) = stream.read_u16().await else { return };
        let mut query = vec![0u8; usize::from(len)];
        if stream.read_exact(&mut query).await.is_err() {
            return;
        }
        let Some(reply) = respond(&query, &state, false).await else { return };
        let Ok(reply_len) = u16::try_from(reply.len()) else { return };
        let mut framed = reply_len.to_be_bytes().to_vec();
        framed.extend_from_slice(&reply);
        if stream.write_all(&framed).await.is_err() {
            return;
        }
    }
}

/// The wire reply to one wire query, or `None` for garbage.
async fn respond(query: &[u8], state: &Mutex<State>, udp: bool) -> Option<Vec<u8>> {
    let request = Message::from_vec(query).ok()?;
    if request.metadata.message_type != MessageType::Query {
        return None;
    }
    let mut response = Message::response(request.metadata.id, request.metadata.op_code);
    response.metadata.recursion_desired = request.metadata.recursion_desired;
    response.metadata.recursion_available = true;
    response.add_queries(request.queries.iter().cloned());
    if request.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(4096);
        response.set_edns(edns);
    }
    match (request.metadata.op_code, request.queries.as_slice()) {
        (OpCode::Query, [q]) => {
            let (mut code, mut answers, forward) = {
                let mut state = state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                state.tcp_queries += usize::from(!udp);
                answer(&state, q.name(), q.query_type())
            };
            if let Some((name, server)) = forward {
                match ask(server, &name, q.query_type()).await {
                    Some(reply) => {
                        if answers.is_empty() {
                            code = reply.metadata.response_code;
                        }
                        answers.extend(reply.answers);
                    }
                    None => code = ResponseCode::ServFail,
                }
            }
            response.metadata.authoritative = code != ResponseCode::ServFail;
            response.metadata.response_code = code;
            response.add_answers(answers);
        }
        (OpCode::Query, _) => response.metadata.response_code = ResponseCode::FormErr,
        _ => response.metadata.response_code = ResponseCode::NotImp,
    }
    let bytes = response.to_vec().ok()?;
    // `max_payload` is the client's EDNS size, never below 512.
    if udp && bytes.len() > usize::from(request.max_payload()) {
        return response.truncate().to_vec().ok();
    }
    Some(bytes)
}

/// Asks `server` one question as a resolver would: UDP with EDNS, TCP
/// when the answer was truncated; bounded by timeouts.
async fn ask(server: SocketAddr, name: &Name, qtype: RecordType) -> Option<Message> {
    let wait = std::time::Duration::from_secs(2);
    let mut query = Message::query();
    query.metadata.id = rand_id();
    query.add_query(hickory_resolver::proto::op::Query::query(name.clone(), qtype));
    let mut edns = Edns::new();
    edns.set_max_payload(1232);
    query.set_edns(edns);
    let bytes = query.to_vec().ok()?;
    let udp = UdpSocket::bind("127.0.0.1:0").await.ok()?;
    udp.send_to(&bytes, server).await.ok()?;
    let mut buf = vec![0u8; 65_535];
    let len = tokio::time::timeout(wait, udp.recv(&mut buf)).await.ok()?.ok()?;
    let reply = Message::from_vec(&buf[..len]).ok()?;
    if !reply.metadata.truncation {
        return Some(reply);
    }
    let mut tcp = tokio::time::timeout(wait, TcpStream::connect(server)).await.ok()?.ok()?;
    let mut framed = u16::try_from(bytes.len()).ok()?.to_be_bytes().to_vec();
    framed.extend_from_slice(&bytes);
    tcp.write_all(&framed).await.ok()?;
    let len = tokio::time::timeout(wait, tcp.read_u16()).await.ok()?.ok()?;
    let mut body = vec![0u8; usize::from(len)];
    tokio::time::timeout(wait, tcp.read_exact(&mut body)).await.ok()?.ok()?;
    Message::from_vec(&body).ok()
}

fn rand_id() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u8(0);
    h.finish() as u16
}

/// The server a name at or below a delegated zone is asked at.
fn delegated_to(state: &State, name: &Name) -> Option<SocketAddr> {
    let k = key(name);
    state
        .delegated
        .iter()
        .find(|(zone, _)| k == *zone || k.ends_with(&format!(".{zone}")))
        .map(|(_, server)| *server)
}

/// Response code and answer records for one question, and the name (with
/// its server) still to be asked elsewhere when the chain leads into a
/// delegated zone.
fn answer(state: &State, qname: &Name, qtype: RecordType) -> (ResponseCode, Vec<Record>, Option<(Name, SocketAddr)>) {
    let (code, answers) = answer_here(state, qname, qtype);
    let last = answers.last().and_then(|r| match &r.data {
        RData::CNAME(CNAME(target)) if qtype != RecordType::CNAME => Some(target.clone()),
        _ => None,
    });
    let next = match (answers.is_empty(), last) {
        (true, _) => Some(qname.clone()),
        (false, Some(target)) => Some(target),
        (false, None) => None,
    };
    match next.and_then(|n| delegated_to(state, &n).map(|server| (n, server))) {
        Some(forward) => (ResponseCode::NoError, answers, Some(forward)),
        None => (code, answers, None),
    }
}

fn answer_here(state: &State, qname: &Name, qtype: RecordType) -> (ResponseCode, Vec<Record>) {
    if state.servfail.contains(&key(qname)) {
        return (ResponseCode::ServFail, Vec::new());
    }
    let mut answers = Vec::new();
    let mut name = qname.clone();
    for _ in 0..MAX_CHAIN {
        let here: Vec<&Record> = state.records.iter().filter(|r| r.name == name).collect();
        if here.is_empty() && !has_descendants(state, &name) {
            // A chased target the server knows nothing of is left for the
            // client to ask about, as for a target in someone else's zone.
            let code = if answers.is_empty() {
                ResponseCode::NXDomain
            } else {
                ResponseCode::NoError
            };
            return (code, answers);
        }
        let owned = |r: &Record| {
            let mut r = r.clone();
            r.name = name.clone();
            r
        };
        let wanted: Vec<Record> = here
            .iter()
            .filter(|r| qtype == RecordType::ANY || r.record_type() == qtype)
            .map(|r| owned(r))
            .collect();
        if !wanted.is_empty() || qtype == RecordType::CNAME {
            answers.extend(wanted);
            return (ResponseCode::NoError, answers);
        }
        let Some(cname) = here.iter().find(|r| r.record_type() == RecordType::CNAME) else {
            return (ResponseCode::NoError, answers);
        };
        answers.push(owned(cname));
        let RData::CNAME(CNAME(target)) = &cname.data else {
            return (ResponseCode::NoError, answers);
        };
        if state.servfail.contains(&key(target)) {
            return (ResponseCode::NoError, answers);
        }
        name = target.clone();
    }
    (ResponseCode::NoError, answers)
}

/// An empty non-terminal exists too (RFC 8020): some record lies below it.
fn has_descendants(state: &State, name: &Name) -> bool {
    let suffix = format!(".{}", key(name));
    state.records.iter().any(|r| key(&r.name).ends_with(&suffix))
}

/// Lowercase absolute text of a name, for comparisons.
fn key(name: &Name) -> String {
    let text = name.to_ascii().to_ascii_lowercase();
    if text.ends_with('.') { text } else { format!("{text}.") }
}

fn parse_name(text: &str) -> Name {
    let mut name = Name::from_ascii(text.to_ascii_lowercase()).unwrap_or_else(|e| panic!("bad name {text:?}: {e}"));
    name.set_fqdn(true);
    name
}

fn parse_zone(zone: &str) -> Vec<Record> {
    let mut records = Vec::new();
    let mut owner: Option<Name> = None;
    for (index, line) in zone.lines().enumerate() {
        let at = || format!("zone line {}: {line:?}", index + 1);
        let tokens = tokenize(line).unwrap_or_else(|e| panic!("{}: {e}", at()));
        let Some(first) = tokens.first() else { continue };
        let mut rest = &tokens[..];
        if !line.starts_with(char::is_whitespace) {
            owner = Some(parse_name(&first.text));
            rest = &tokens[1..];
        }
        let name = owner.clone().unwrap_or_else(|| panic!("{}: no owner name", at()));
        let mut ttl = DEFAULT_TTL;
        while let Some(t) = rest.first() {
            if let Ok(n) = t.text.parse::<u32>() {
                ttl = n;
            } else if t.text.eq_ignore_ascii_case("IN") {
            } else {
                break;
            }
            rest = &rest[1..];
        }
        let Some((rtype, rdata)) = rest.split_first() else {
            panic!("{}: no record type", at())
        };
        let data = parse_rdata(&rtype.text, rdata).unwrap_or_else(|e| panic!("{}: {e}", at()));
        records.push(Record::from_rdata(name, ttl, data));
    }
    records
}

fn parse_rdata(rtype: &str, tokens: &[Token]) -> Result<RData, String> {
    let texts: Vec<&str> = tokens.iter().map(|t| t.text.as_str()).collect();
    let bad = || format!("bad {rtype} data {texts:?}");
    Ok(match (rtype.to_ascii_uppercase().as_str(), texts.as_slice()) {
        ("A", [ip]) => RData::A(A(ip.parse().map_err(|_| bad())?)),
        ("AAAA", [ip]) => RData::AAAA(AAAA(ip.parse().map_err(|_| bad())?)),
        ("MX", [pref, host]) => RData::MX(MX::new(pref.parse().map_err(|_| bad())?, parse_name(host))),
        ("CNAME", [target]) => RData::CNAME(CNAME(parse_name(target))),
        ("PTR", [target]) => RData::PTR(PTR(parse_name(target))),
        ("TXT", [_, ..]) => {
            let strings: Vec<Vec<u8>> = tokens.iter().map(|t| t.bytes.clone()).collect();
            let chunks: Vec<&[u8]> = strings
                .iter()
                .flat_map(|s| if s.is_empty() { vec![&s[..]] } else { s.chunks(255).collect() })
                .collect();
            RData::TXT(TXT::from_bytes(chunks))
        }
        _ => return Err(bad()),
    })
}

/// One word of a zone line: its raw text and, decoded, its bytes.
struct Token {
    text: String,
    bytes: Vec<u8>,
}

/// Splits a line into words and `"quoted strings"` (with `\"`, `\\` and
/// `\DDD` escapes), dropping a `;` comment.
fn tokenize(line: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut chars = line.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == ';' {
            break;
        } else if c == '"' {
            chars.next();
            let mut bytes = Vec::new();
            loop {
                match chars.next() {
                    None => return Err("unterminated quoted string".into()),
                    Some('"') => break,
                    Some('\\') => {
                        let digits: String = std::iter::from_fn(|| chars.next_if(char::is_ascii_digit)).take(3).collect();
                        if digits.is_empty() {
                            let escaped = chars.next().ok_or("dangling backslash")?;
                            bytes.extend_from_slice(escaped.encode_utf8(&mut [0; 4]).as_bytes());
                        } else {
                            bytes.push(digits.parse::<u8>().map_err(|_| format!("bad escape \\{digits}"))?);
                        }
                    }
                    Some(other) => bytes.extend_from_slice(other.encode_utf8(&mut [0; 4]).as_bytes()),
                }
            }
            tokens.push(Token {
                text: String::from_utf8_lossy(&bytes).into_owned(),
                bytes,
            });
        } else {
            let word: String = std::iter::from_fn(|| chars.next_if(|c| !c.is_whitespace() && *c != ';')).collect();
            tokens.push(Token {
                bytes: word.clone().into_bytes(),
                text: word,
            });
        }
    }
    Ok(tokens)
}
