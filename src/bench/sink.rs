//! The receiving MX for tests and the end-to-end benchmark: a real SMTP
//! server on loopback that accepts, counts and (optionally) keeps mail.
//!
//! One sink serves many test cases: what happens to a recipient is chosen
//! by the local part of its address (see [`Behaviour`]): `tempfail-N…`,
//! `reject…`, `datafail…`, `drop…`, `slow-MS…`, `tempdata…`; anything else
//! is accepted. The DATA outcome of a transaction is the worst among its
//! accepted recipients (drop > datafail > tempdata > slow > accept).
//!
//! The server side mirrors `crate::submission::session`: smtp-proto's
//! `RequestReceiver` parses commands, the submission module's `DataReader`
//! finds the end of DATA, and replies to pipelined commands (RFC 2920) are
//! written when the input buffer is drained. Replies are canned byte
//! strings, and a connection reuses its buffers, so a message costs no
//! allocation beyond its own bytes (and none at all with
//! `keep_messages: false`).

use crate::submission::dot::DataReader;
use smtp_proto::request::receiver::RequestReceiver;
use smtp_proto::{Error as ParseError, Request};
use std::borrow::Cow;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

/// Advertised in EHLO; a MAIL declaring more is refused. The body itself
/// is not checked: the sink only ever talks to loopback peers.
const MAX_SIZE: usize = 100 * 1024 * 1024;
/// An idle connection is closed after this long without input.
const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// `tempfail` without a number fails this many times.
const DEFAULT_TEMPFAILS: u32 = 1;
/// `slow` without a number waits this many milliseconds.
const DEFAULT_SLOW_MS: u64 = 1000;

/// How to run a [`Sink`].
pub struct SinkConfig {
    /// Where to listen, usually `127.0.0.1:0`.
    pub addr: SocketAddr,
    /// Named in the greeting and the EHLO reply.
    pub hostname: String,
    /// `Some` offers STARTTLS in EHLO.
    pub tls: Option<TlsAcceptor>,
    /// Keep every accepted message for [`Sink::received`]; `false` (for
    /// benchmarks) only counts them.
    pub keep_messages: bool,
}

/// One accepted message as the sink received it.
#[derive(Clone, Debug)]
pub struct SinkMessage {
    pub mail_from: String,
    /// The recipients that were accepted, in RCPT order.
    pub rcpts: Vec<String>,
    /// The message, dot-unstuffed, without the final `.CRLF`.
    pub data: Vec<u8>,
    /// The transaction ran after STARTTLS.
    pub tls: bool,
    /// The name given in the last EHLO/HELO.
    pub helo: String,
}

/// A running sink; dropping it (or [`Sink::stop`]) closes the listener and
/// every open connection.
pub struct Sink {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Sink {
    /// Binds `config.addr` and starts accepting connections.
    pub async fn start(config: SinkConfig) -> std::io::Result<Sink> {
        let listener = TcpListener::bind(config.addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(config));
        let task = tokio::spawn(accept_loop(listener, shared.clone()));
        Ok(Sink { addr, shared, task })
    }

    /// The address actually listened on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Accepted messages so far, in order (empty with `keep_messages: false`).
    pub fn received(&self) -> Vec<SinkMessage> {
        lock(&self.shared.messages).clone()
    }

    /// Accepted messages so far, kept or not.
    pub fn count(&self) -> usize {
        *self.shared.count.borrow()
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::Relaxed)
    }

    /// Waits until [`Sink::count`] reaches `n`; `false` if `timeout` passed first.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> bool {
        let mut rx = self.shared.count.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|&count| count >= n)).await.is_ok_and(|r| r.is_ok())
    }

    /// Stops listening and closes every connection.
    pub fn stop(self) {}
}

impl Drop for Sink {
    fn drop(&mut self) {
        // Dropping the accept loop drops its JoinSet, which aborts the sessions.
        self.task.abort();
    }
}

/// What a recipient asks the sink to do, from its local part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// RCPT accepted; the end of DATA answered as the outcome says.
    Accept(DataOutcome),
    /// `tempfail-N`: the first N RCPTs of this exact address get 451.
    TempFail(u32),
    /// `reject`: RCPT gets 550.
    Reject,
}

/// The answer to the end of DATA, ordered from best to worst.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum DataOutcome {
    #[default]
    Accept,
    /// `slow-MS`: accept after MS milliseconds.
    Slow(u64),
    /// `tempdata`: 452.
    TempData,
    /// `datafail`: 554.
    DataFail,
    /// `drop`: close the connection in the middle of DATA.
    Drop,
}

/// Reads the behaviour from an address's local part (case-insensitive
/// prefixes; a missing number means 1 tempfail or 1000 ms).
pub fn behaviour(address: &str) -> Behaviour {
    let local = address.rsplit_once('@').map_or(address, |(local, _)| local);
    if let Some(rest) = strip_prefix_ci(local, "tempfail") {
        return Behaviour::TempFail(number(rest).and_then(|n| u32::try_from(n).ok()).unwrap_or(DEFAULT_TEMPFAILS));
    }
    if strip_prefix_ci(local, "reject").is_some() {
        return Behaviour::Reject;
    }
    let outcome = if strip_prefix_ci(local, "datafail").is_some() {
        DataOutcome::DataFail
    } else if strip_prefix_ci(local, "drop").is_some() {
        DataOutcome::Drop
    } else if strip_prefix_ci(local, "tempdata").is_some() {
        DataOutcome::TempData
    } else if let Some(rest) = strip_prefix_ci(local, "slow") {
        DataOutcome::Slow(number(rest).unwrap_or(DEFAULT_SLOW_MS))
    } else {
        DataOutcome::Accept
    };
    Behaviour::Accept(outcome)
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then(|| &s[prefix.len()..])
}

/// The digits after a leading `-`: `-25-abc` → 25.
fn number(s: &str) -> Option<u64> {
    let s = s.strip_prefix('-')?;
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    s[..digits].parse().ok()
}

/// Runs a counting sink until Ctrl-C, printing the figures every second
/// (`herald bench sink`). With `starttls`, STARTTLS is offered with a
/// throwaway self-signed certificate.
pub async fn run(addr: SocketAddr, starttls: bool) -> Result<(), String> {
    let tls = if starttls { Some(self_signed_acceptor("localhost")?) } else { None };
    let config = SinkConfig { addr, hostname: "sink.localhost".to_string(), tls, keep_messages: false };
    let sink = Sink::start(config).await.map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    eprintln!("sink: listening on {}{}", sink.addr(), if starttls { " (STARTTLS offered)" } else { "" });
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            // Polled first: `ctrl_c` only listens once it has been polled.
            biased;
            r = &mut ctrl_c => {
                r.map_err(|e| format!("cannot wait for Ctrl-C: {e}"))?;
                println!("sink: {} messages, {} connections", sink.count(), sink.connections());
                return Ok(());
            }
            _ = tick.tick() => println!("sink: {} messages, {} connections", sink.count(), sink.connections()),
        }
    }
}

/// A TLS acceptor with a fresh self-signed certificate for `hostname`
/// (and localhost), kept in memory only.
pub fn self_signed_acceptor(hostname: &str) -> Result<TlsAcceptor, String> {
    use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    let pair = rcgen::generate_simple_self_signed(vec![hostname.to_string(), "localhost".to_string()])
        .map_err(|e| format!("cannot generate a certificate: {e}"))?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pair.key_pair.serialize_der()));
    let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(vec![pair.cert.der().clone()], key)
        .map_err(|e| e.to_string())?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// What every connection shares.
struct Shared {
    greeting: Vec<u8>,
    /// EHLO replies before and after STARTTLS.
    ehlo_plain: Vec<u8>,
    ehlo_tls: Vec<u8>,
    helo: Vec<u8>,
    tls: Option<TlsAcceptor>,
    keep_messages: bool,
    connections: AtomicUsize,
    count: watch::Sender<usize>,
    messages: Mutex<Vec<SinkMessage>>,
    /// 451s given so far per `tempfail` address, across connections.
    tempfails: Mutex<HashMap<String, u32>>,
}

impl Shared {
    fn new(config: SinkConfig) -> Self {
        let host = &config.hostname;
        let ehlo = |starttls: bool| {
            let mut lines = vec![host.clone(), "PIPELINING".into(), "8BITMIME".into(), "SMTPUTF8".into(), "ENHANCEDSTATUSCODES".into(), format!("SIZE {MAX_SIZE}")];
            if starttls {
                lines.push("STARTTLS".into());
            }
            let last = lines.len() - 1;
            lines.iter().enumerate().map(|(i, l)| format!("250{}{l}\r\n", if i == last { ' ' } else { '-' })).collect::<String>().into_bytes()
        };
        Self {
            greeting: format!("220 {host} ESMTP herald sink\r\n").into_bytes(),
            ehlo_plain: ehlo(config.tls.is_some()),
            ehlo_tls: ehlo(false),
            helo: format!("250 {host}\r\n").into_bytes(),
            tls: config.tls,
            keep_messages: config.keep_messages,
            connections: AtomicUsize::new(0),
            count: watch::Sender::new(0),
            messages: Mutex::new(Vec::new()),
            tempfails: Mutex::new(HashMap::new()),
        }
    }

    /// `true` while `address` still has 451s to give out (and counts this one).
    fn tempfail(&self, address: &str, times: u32) -> bool {
        let mut map = lock(&self.tempfails);
        let given = match map.get_mut(address) {
            Some(given) => given,
            None => map.entry(address.to_string()).or_insert(0),
        };
        if *given < times {
            *given += 1;
            true
        } else {
            false
        }
    }
}

/// A poisoned lock only means a session panicked; the data is still usable.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut sessions = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => {
                    shared.connections.fetch_add(1, Ordering::Relaxed);
                    let _ = tcp.set_nodelay(true);
                    sessions.spawn(connection(shared.clone(), tcp));
                }
                Err(e) => {
                    // Out of descriptors and the like: back off, then go on.
                    tracing::warn!(error = %e, "sink: accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
        }
    }
}

/// One connection, upgraded on STARTTLS.
async fn connection(shared: Arc<Shared>, mut tcp: TcpStream) {
    let mut session = Session::new(shared);
    session.write(Reply::Greeting);
    match session.serve(&mut tcp).await {
        End::Closed => session.close(&mut tcp).await,
        End::Abort => {}
        End::StartTls => {
            let Some(acceptor) = session.shared.tls.clone() else { return };
            let Ok(Ok(mut tls)) = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await else { return };
            // RFC 3207 §4.2: forget everything learnt before TLS.
            session.tls = true;
            session.helo = None;
            session.envelope.reset();
            if let End::Closed = session.serve(&mut tls).await {
                session.close(&mut tls).await;
            }
        }
    }
}

/// A reply: canned bytes, or one of the texts made once per sink.
#[derive(Debug, Clone, Copy)]
enum Reply {
    Canned(&'static [u8]),
    Greeting,
    Ehlo,
    Helo,
}

const OK: Reply = Reply::Canned(b"250 2.0.0 Ok\r\n");
const SENDER_OK: Reply = Reply::Canned(b"250 2.1.0 Sender ok\r\n");
const RCPT_OK: Reply = Reply::Canned(b"250 2.1.5 Recipient ok\r\n");
const GO_AHEAD: Reply = Reply::Canned(b"354 End data with <CR><LF>.<CR><LF>\r\n");
const QUEUED: Reply = Reply::Canned(b"250 2.0.0 Message accepted\r\n");
const TEMPFAIL: Reply = Reply::Canned(b"451 4.3.0 try again later\r\n");
const NO_SUCH_USER: Reply = Reply::Canned(b"550 5.1.1 no such user\r\n");
const CONTENT_REJECTED: Reply = Reply::Canned(b"554 5.6.0 content rejected\r\n");
const NO_STORAGE: Reply = Reply::Canned(b"452 4.3.1 insufficient storage\r\n");
const BYE: Reply = Reply::Canned(b"221 2.0.0 Bye\r\n");
const TIMEOUT: Reply = Reply::Canned(b"421 4.4.2 Idle too long, closing connection\r\n");

/// What the loop does after a command.
enum Step {
    Reply(Reply),
    /// Reply 354 and read the message.
    Data,
    /// Reply 220 and start TLS.
    StartTls,
    /// Reply, then close.
    Close(Reply),
}

enum End {
    /// Flush and close politely.
    Closed,
    /// Close without another byte (`drop` recipients).
    Abort,
    StartTls,
}

/// A transaction between MAIL and the end of DATA. Its strings keep their
/// capacity from one transaction to the next.
#[derive(Default)]
struct Envelope {
    active: bool,
    mail_from: String,
    rcpts: Vec<String>,
    /// Recipients of this transaction: `rcpts[..len]`.
    len: usize,
    outcome: DataOutcome,
}

impl Envelope {
    fn begin(&mut self, from: &str) {
        self.reset();
        self.active = true;
        self.mail_from.clear();
        self.mail_from.push_str(from);
    }

    fn add(&mut self, rcpt: &str, outcome: DataOutcome) {
        match self.rcpts.get_mut(self.len) {
            Some(slot) => {
                slot.clear();
                slot.push_str(rcpt);
            }
            None => self.rcpts.push(rcpt.to_string()),
        }
        self.len += 1;
        self.outcome = self.outcome.max(outcome);
    }

    fn rcpts(&self) -> &[String] {
        &self.rcpts[..self.len]
    }

    fn reset(&mut self) {
        self.active = false;
        self.len = 0;
        self.outcome = DataOutcome::Accept;
    }
}

struct Session {
    shared: Arc<Shared>,
    tls: bool,
    helo: Option<String>,
    envelope: Envelope,
    /// Replies not yet written.
    out: Vec<u8>,
    /// The message being received; reused when messages are not kept.
    body: Vec<u8>,
}

impl Session {
    fn new(shared: Arc<Shared>) -> Self {
        Self { shared, tls: false, helo: None, envelope: Envelope::default(), out: Vec::with_capacity(1024), body: Vec::new() }
    }

    /// The one reply writer.
    fn write(&mut self, reply: Reply) {
        let bytes: &[u8] = match reply {
            Reply::Canned(bytes) => bytes,
            Reply::Greeting => &self.shared.greeting,
            Reply::Ehlo if self.tls => &self.shared.ehlo_tls,
            Reply::Ehlo => &self.shared.ehlo_plain,
            Reply::Helo => &self.shared.helo,
        };
        self.out.extend_from_slice(bytes);
    }

    async fn flush<S: AsyncWrite + Unpin>(&mut self, stream: &mut S) -> bool {
        if self.out.is_empty() {
            return true;
        }
        let ok = stream.write_all(&self.out).await.is_ok() && stream.flush().await.is_ok();
        self.out.clear();
        ok
    }

    async fn close<S: AsyncWrite + Unpin>(&mut self, stream: &mut S) {
        self.flush(stream).await;
        let _ = stream.shutdown().await;
    }

    async fn serve<S: AsyncRead + AsyncWrite + Unpin>(&mut self, stream: &mut S) -> End {
        let mut buf = vec![0u8; 16 * 1024];
        let mut requests = RequestReceiver::default();
        let mut data: Option<DataReader> = None;
        loop {
            // Everything read so far is answered: one write per pipelined group.
            if !self.flush(stream).await {
                return End::Closed;
            }
            let n = match tokio::time::timeout(IDLE_TIMEOUT, stream.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return End::Closed,
                Ok(Ok(n)) => n,
                Err(_) => {
                    self.write(TIMEOUT);
                    return End::Closed;
                }
            };
            let mut bytes = buf[..n].iter();
            while !bytes.as_slice().is_empty() {
                if let Some(reader) = &mut data {
                    if self.envelope.outcome == DataOutcome::Drop {
                        // Some of the message has arrived: hang up mid-DATA.
                        self.flush(stream).await;
                        return End::Abort;
                    }
                    if !reader.ingest(&mut bytes, &mut self.body) {
                        continue;
                    }
                    data = None;
                    let reply = self.end_of_data(stream).await;
                    self.write(reply);
                    continue;
                }
                let step = match requests.ingest(&mut bytes) {
                    Ok(request) => self.dispatch(request),
                    Err(ParseError::NeedsMoreData { .. }) => break,
                    Err(e) => parse_error(e),
                };
                match step {
                    Step::Reply(reply) => self.write(reply),
                    Step::Data => {
                        self.write(GO_AHEAD);
                        self.body.clear();
                        data = Some(DataReader::new());
                    }
                    Step::StartTls => {
                        self.write(Reply::Canned(b"220 2.0.0 Ready to start TLS\r\n"));
                        // Anything pipelined behind STARTTLS is dropped, not
                        // carried into the TLS session (CVE-2011-0411).
                        return if self.flush(stream).await { End::StartTls } else { End::Closed };
                    }
                    Step::Close(reply) => {
                        self.write(reply);
                        return End::Closed;
                    }
                }
            }
        }
    }

    /// The one place commands are dispatched (hello → TLS → transaction).
    fn dispatch(&mut self, request: Request<Cow<'_, str>>) -> Step {
        match request {
            Request::Ehlo { host } => self.hello(&host, Reply::Ehlo),
            Request::Helo { host } => self.hello(&host, Reply::Helo),
            Request::StartTls => self.starttls(),
            Request::Mail { from } => Step::Reply(self.mail(&from.address, from.size)),
            Request::Rcpt { to } => Step::Reply(self.rcpt(&to.address)),
            Request::Data => self.data(),
            Request::Rset => {
                self.envelope.reset();
                Step::Reply(OK)
            }
            Request::Noop { .. } => Step::Reply(OK),
            Request::Quit => Step::Close(BYE),
            // The chunk after BDAT would be read as commands.
            Request::Bdat { .. } => Step::Close(Reply::Canned(b"502 5.5.1 BDAT not offered, use DATA\r\n")),
            Request::Auth { .. }
            | Request::Vrfy { .. }
            | Request::Expn { .. }
            | Request::Help { .. }
            | Request::Lhlo { .. }
            | Request::Etrn { .. }
            | Request::Atrn { .. }
            | Request::Burl { .. } => Step::Reply(Reply::Canned(b"502 5.5.1 Command not implemented\r\n")),
        }
    }

    fn hello(&mut self, host: &str, reply: Reply) -> Step {
        match &mut self.helo {
            Some(helo) => {
                helo.clear();
                helo.push_str(host);
            }
            None => self.helo = Some(host.to_string()),
        }
        self.envelope.reset();
        Step::Reply(reply)
    }

    /// STARTTLS (RFC 3207).
    fn starttls(&mut self) -> Step {
        if self.tls {
            return Step::Reply(Reply::Canned(b"503 5.5.1 Already using TLS\r\n"));
        }
        if self.shared.tls.is_none() {
            return Step::Reply(Reply::Canned(b"502 5.5.1 STARTTLS not offered\r\n"));
        }
        Step::StartTls
    }

    fn mail(&mut self, from: &str, size: usize) -> Reply {
        if self.helo.is_none() {
            return Reply::Canned(b"503 5.5.1 Send EHLO first\r\n");
        }
        if self.envelope.active {
            return Reply::Canned(b"503 5.5.1 Nested MAIL command\r\n");
        }
        if size > MAX_SIZE {
            return Reply::Canned(b"552 5.3.4 Message too big\r\n");
        }
        self.envelope.begin(from);
        SENDER_OK
    }

    fn rcpt(&mut self, to: &str) -> Reply {
        if !self.envelope.active {
            return Reply::Canned(b"503 5.5.1 Need MAIL first\r\n");
        }
        let outcome = match behaviour(to) {
            Behaviour::Reject => return NO_SUCH_USER,
            Behaviour::TempFail(times) if self.shared.tempfail(to, times) => return TEMPFAIL,
            Behaviour::TempFail(_) => DataOutcome::Accept,
            Behaviour::Accept(outcome) => outcome,
        };
        self.envelope.add(to, outcome);
        RCPT_OK
    }

    fn data(&mut self) -> Step {
        if !self.envelope.active {
            return Step::Reply(Reply::Canned(b"503 5.5.1 Need MAIL first\r\n"));
        }
        if self.envelope.len == 0 {
            // RFC 2920 §3.1: DATA after every RCPT failed. The transaction
            // ends here, so a client need not RSET before the next MAIL.
            self.envelope.reset();
            return Step::Reply(Reply::Canned(b"554 5.5.1 No valid recipients\r\n"));
        }
        Step::Data
    }

    /// The message in `self.body` is complete: answer, and record it if accepted.
    async fn end_of_data<S: AsyncWrite + Unpin>(&mut self, stream: &mut S) -> Reply {
        let outcome = self.envelope.outcome;
        self.envelope.active = false;
        match outcome {
            DataOutcome::DataFail => return CONTENT_REJECTED,
            DataOutcome::TempData => return NO_STORAGE,
            // Caught at the first DATA bytes; an empty read cannot get here.
            DataOutcome::Drop => return CONTENT_REJECTED,
            DataOutcome::Slow(ms) => {
                self.flush(stream).await;
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            DataOutcome::Accept => {}
        }
        if self.shared.keep_messages {
            let message = SinkMessage {
                mail_from: self.envelope.mail_from.clone(),
                rcpts: self.envelope.rcpts().to_vec(),
                data: std::mem::take(&mut self.body),
                tls: self.tls,
                helo: self.helo.clone().unwrap_or_default(),
            };
            lock(&self.shared.messages).push(message);
        }
        self.shared.count.send_modify(|count| *count += 1);
        QUEUED
    }
}

fn parse_error(e: ParseError) -> Step {
    let text: &'static [u8] = match e {
        ParseError::UnknownCommand => b"500 5.5.1 Command unrecognized\r\n",
        ParseError::InvalidSenderAddress => b"501 5.1.7 Bad sender address syntax\r\n",
        ParseError::InvalidRecipientAddress => b"501 5.1.3 Bad recipient address syntax\r\n",
        ParseError::UnsupportedParameter { .. } => b"555 5.5.4 Unsupported parameter\r\n",
        ParseError::SyntaxError { .. } | ParseError::InvalidParameter { .. } | ParseError::NeedsMoreData { .. } | ParseError::InvalidResponse { .. } => {
            b"501 5.5.4 Syntax error\r\n"
        }
        // The rest of the line would be read as commands.
        ParseError::ResponseTooLong => return Step::Close(Reply::Canned(b"500 5.5.2 Line too long\r\n")),
    };
    Step::Reply(Reply::Canned(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaviour_from_local_part() {
        use DataOutcome as D;
        let cases = [
            ("payer@sink.example", Behaviour::Accept(D::Accept)),
            ("tempfail-2-abc@x", Behaviour::TempFail(2)),
            ("TempFail-10@x", Behaviour::TempFail(10)),
            ("tempfail@x", Behaviour::TempFail(1)),
            ("reject-me@x", Behaviour::Reject),
            ("datafail@x", Behaviour::Accept(D::DataFail)),
            ("drop-1@x", Behaviour::Accept(D::Drop)),
            ("slow-250-a@x", Behaviour::Accept(D::Slow(250))),
            ("slow@x", Behaviour::Accept(D::Slow(1000))),
            ("tempdata@x", Behaviour::Accept(D::TempData)),
            ("x@reject.example", Behaviour::Accept(D::Accept)),
            ("", Behaviour::Accept(D::Accept)),
            ("é@x", Behaviour::Accept(D::Accept)),
        ];
        for (address, want) in cases {
            assert_eq!(behaviour(address), want, "{address}");
        }
    }

    #[test]
    fn worst_outcome_wins() {
        use DataOutcome as D;
        let mut e = Envelope::default();
        e.begin("a@x");
        for o in [D::Slow(5), D::Accept, D::TempData, D::Slow(50)] {
            e.add("r@x", o);
        }
        assert_eq!(e.outcome, D::TempData);
        assert!(D::Drop > D::DataFail && D::DataFail > D::TempData && D::Slow(1) > D::Accept && D::Slow(9) > D::Slow(1));
        e.begin("b@x");
        assert_eq!((e.outcome, e.rcpts().len()), (D::Accept, 0));
    }
}
