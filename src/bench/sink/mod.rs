//! The receiving MX for tests and the end-to-end benchmark: a real SMTP
//! server on loopback that accepts, counts and (optionally) keeps mail.
//!
//! One sink serves many test cases: what happens to a recipient is chosen
//! by the local part of its address (see [`Behaviour`]): `tempfail-N…`,
//! `reject…`, `datafail…`, `drop…`, `dropend…`, `flaky-N…`, `slow-MS…`,
//! `tempdata…`; anything else is accepted. The DATA outcome of a
//! transaction is the worst among its accepted recipients (drop > dropend
//! > datafail > tempdata > slow > accept).
//!
//! Faults that come before any recipient is named (the greeting, EHLO,
//! STARTTLS, MAIL, the DATA command) or that should hit whatever is sent
//! are scripted on the sink itself: [`Sink::inject`] makes the next N
//! times a [`Stage`] is reached answer with a given reply, or hang up.
//!
//! This file holds the sink itself (start, count, stop) and the listener;
//! `behaviour` reads what a recipient asks for ([`behaviour()`]), and
//! `session` is the SMTP conversation on one connection.

mod behaviour;
mod session;

pub use behaviour::{Behaviour, DataOutcome, behaviour};

/// A point of the conversation where a scripted fault can strike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Greeting,
    Ehlo,
    /// The reply to STARTTLS; [`Action::Drop`] here says 220 and then
    /// hangs up, so the TLS handshake fails.
    StartTls,
    Mail,
    Rcpt,
    /// The reply to the DATA command.
    Data,
    /// The reply to the end of the message (nothing is kept when a fault
    /// strikes here).
    EndOfData,
}

/// What a scripted fault does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Answer with this reply line (no CRLF), whatever it is.
    Reply(&'static str),
    /// Close the connection without a reply.
    Drop,
    /// Wait this many milliseconds, then carry on normally.
    Delay(u64),
}

#[derive(Debug, Clone, Copy)]
struct Fault {
    stage: Stage,
    action: Action,
    times: u32,
}

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

/// Advertised in EHLO; a MAIL declaring more is refused. The body itself
/// is not checked: the sink only ever talks to loopback peers.
const MAX_SIZE: usize = 100 * 1024 * 1024;

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
        tokio::time::timeout(timeout, rx.wait_for(|&count| count >= n))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// The next `times` times `stage` is reached (on any connection), do
    /// `action` instead of the normal reply. Faults for one stage are used
    /// in the order they were injected.
    pub fn inject(&self, stage: Stage, action: Action, times: u32) {
        lock(&self.shared.faults).push(Fault { stage, action, times });
    }

    /// Forgets every scripted fault not used yet.
    pub fn clear_faults(&self) {
        lock(&self.shared.faults).clear();
    }

    /// Offer PIPELINING in EHLO (the default) or not, from the next EHLO on.
    pub fn set_pipelining(&self, on: bool) {
        self.shared.pipelining.store(on, Ordering::Relaxed);
    }

    /// The permanent (5xx) replies given to recipients so far, as
    /// (recipient, reply) pairs: what a relay may rightly fail.
    pub fn refusals(&self) -> Vec<(String, String)> {
        lock(&self.shared.refusals).clone()
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

/// Runs a counting sink until Ctrl-C, printing the figures every second
/// (`herald bench sink`). With `starttls`, STARTTLS is offered with a
/// throwaway self-signed certificate.
pub async fn run(addr: SocketAddr, starttls: bool) -> Result<(), String> {
    let tls = if starttls { Some(self_signed_acceptor("localhost")?) } else { None };
    let config = SinkConfig {
        addr,
        hostname: "sink.localhost".to_string(),
        tls,
        keep_messages: false,
    };
    let sink = Sink::start(config).await.map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    eprintln!(
        "sink: listening on {}{}",
        sink.addr(),
        if starttls { " (STARTTLS offered)" } else { "" }
    );
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
    /// EHLO replies before and after STARTTLS, with and without PIPELINING.
    ehlo_plain: Vec<u8>,
    ehlo_tls: Vec<u8>,
    ehlo_plain_serial: Vec<u8>,
    ehlo_tls_serial: Vec<u8>,
    pipelining: std::sync::atomic::AtomicBool,
    faults: Mutex<Vec<Fault>>,
    refusals: Mutex<Vec<(String, String)>>,
    helo: Vec<u8>,
    tls: Option<TlsAcceptor>,
    keep_messages: bool,
    connections: AtomicUsize,
    count: watch::Sender<usize>,
    messages: Mutex<Vec<SinkMessage>>,
    /// 451s given so far per `tempfail` address, across connections.
    tempfails: Mutex<HashMap<String, u32>>,
    /// The server kit's limits for the sink's sessions.
    rules: crate::smtpd::Rules,
}

impl Shared {
    fn new(config: SinkConfig) -> Self {
        let host = &config.hostname;
        let ehlo = |starttls: bool, pipelining: bool| {
            let mut lines = vec![host.clone()];
            if pipelining {
                lines.push("PIPELINING".into());
            }
            lines.extend([
                "8BITMIME".into(),
                "SMTPUTF8".into(),
                "ENHANCEDSTATUSCODES".into(),
                format!("SIZE {MAX_SIZE}"),
            ]);
            if starttls {
                lines.push("STARTTLS".into());
            }
            let last = lines.len() - 1;
            lines
                .iter()
                .enumerate()
                .map(|(i, l)| format!("250{}{l}\r\n", if i == last { ' ' } else { '-' }))
                .collect::<String>()
                .into_bytes()
        };
        Self {
            greeting: format!("220 {host} ESMTP herald sink\r\n").into_bytes(),
            ehlo_plain: ehlo(config.tls.is_some(), true),
            ehlo_tls: ehlo(false, true),
            ehlo_plain_serial: ehlo(config.tls.is_some(), false),
            ehlo_tls_serial: ehlo(false, false),
            pipelining: std::sync::atomic::AtomicBool::new(true),
            faults: Mutex::new(Vec::new()),
            refusals: Mutex::new(Vec::new()),
            helo: format!("250 {host}\r\n").into_bytes(),
            tls: config.tls,
            keep_messages: config.keep_messages,
            connections: AtomicUsize::new(0),
            count: watch::Sender::new(0),
            messages: Mutex::new(Vec::new()),
            tempfails: Mutex::new(HashMap::new()),
            rules: session::rules(host),
        }
    }

    /// The scripted fault for this arrival at `stage`, if one is left.
    fn fault(&self, stage: Stage) -> Option<Action> {
        let mut faults = lock(&self.faults);
        let fault = faults.iter_mut().find(|f| f.stage == stage && f.times > 0)?;
        fault.times -= 1;
        Some(fault.action)
    }

    fn refused(&self, rcpt: &str, reply: &[u8]) {
        let text = String::from_utf8_lossy(reply).trim_end().to_string();
        lock(&self.refusals).push((rcpt.to_string(), text));
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
                    sessions.spawn(session::connection(shared.clone(), tcp));
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
