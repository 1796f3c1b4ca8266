//! The one SMTP session loop: read, hand each command to the listener's
//! verbs, write the replies, and enforce the deadlines.
//!
//! Replies to pipelined commands (RFC 2920) are collected and written
//! when the input buffer is exhausted, so a pipelined group costs one
//! write. Deadlines are not just idle timeouts (a client dripping one byte
//! every few seconds must not stay forever):
//! - a whole command line must arrive within `command` of the server
//!   starting to wait for it;
//! - a message must arrive within `data_idle` plus its size divided by
//!   `data_min_rate`, and no read in DATA may wait longer than `data_idle`;
//! - the session ends at `Wire::ends_at` whatever it is doing.
//!
//! Each answers `421 4.4.2` and closes. Shutdown answers `421 4.3.2`
//! between commands; a message being received is let finish.

use super::command::{self, Command, Line};
use super::dot::DataReader;
use super::{Counters, Refusal, Reply};
use smtp_proto::Request;
use smtp_proto::request::receiver::{LineReceiver, RequestReceiver};
use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::Instant;

/// What the loop does after a verb ran. `P` is the listener's state of a
/// multi-line exchange (SASL).
pub enum Step<P> {
    Reply(Reply),
    /// Reply, then close the connection.
    Close(Reply),
    /// Answer with the first reply, then say the second and close.
    Farewell(Reply, Reply),
    /// Reply 354 and read the message.
    Data(Reply),
    /// Reply 220 and hand the stream back for the TLS handshake.
    StartTls(Reply),
    /// Send a challenge; the next line is the client's response.
    Challenge(Reply, P),
    /// Write the replies already due, then close without another (a
    /// test sink's fault).
    Abort,
}

/// A listener's own commands. The loop owns the reading, the writing and
/// every limit; the verbs only decide.
pub trait Verbs {
    /// A multi-line exchange in progress (`Infallible` when there is none).
    type Pending: Send;

    /// One parsed command.
    fn command(&mut self, request: Request<Cow<'_, str>>) -> impl Future<Output = Step<Self::Pending>> + Send;

    /// A line answering a challenge.
    fn respond(&mut self, pending: Self::Pending, line: &[u8]) -> impl Future<Output = Step<Self::Pending>> + Send;

    /// The first bytes of a message arrived: `false` aborts the session.
    fn data_started(&mut self) -> bool {
        true
    }

    /// Called before [`Verbs::command`]: a pause to make first (the test
    /// sink's scripted delays). Replies already due are written before it.
    fn pause(&mut self, _request: &Request<Cow<'_, str>>) -> Option<Duration> {
        None
    }

    /// The message, dot-unstuffed, after `<CRLF>.<CRLF>`. The verb may take
    /// `body`; what it leaves is cleared and reused.
    fn message(&mut self, body: &mut Vec<u8>) -> impl Future<Output = Step<Self::Pending>> + Send;

    /// The message grew past `max_message_size` and was read to its end
    /// and thrown away; the transaction is over.
    fn too_big(&mut self) -> Reply;

    /// For logs.
    fn peer(&self) -> std::net::SocketAddr;
}

/// The limits one listener's sessions run under.
#[derive(Clone)]
pub struct Rules {
    pub hostname: String,
    pub max_line_length: usize,
    pub max_message_size: usize,
    pub command: Duration,
    pub data_idle: Duration,
    /// Bytes per second a message must at least arrive at (after the
    /// `data_idle` allowance).
    pub data_min_rate: u64,
    pub lifetime: Duration,
    pub counters: Arc<Counters>,
}

impl Rules {
    pub fn from_limits(hostname: &str, l: &crate::config::LimitsConfig, counters: Arc<Counters>) -> Self {
        Self {
            hostname: hostname.to_string(),
            max_line_length: l.max_line_length,
            max_message_size: l.max_message_size,
            command: Duration::from_secs(l.command_timeout_secs),
            data_idle: Duration::from_secs(l.data_timeout_secs),
            data_min_rate: l.data_min_bytes_per_sec,
            lifetime: Duration::from_secs(l.max_session_secs),
            counters,
        }
    }

    /// When a message that started at `started` and has `received` bytes
    /// so far must be complete.
    pub fn data_deadline(&self, started: Instant, received: usize) -> Instant {
        let allowance = Duration::from_secs_f64(received as f64 / self.data_min_rate.max(1) as f64);
        started + self.data_idle + allowance
    }
}

/// A connection's stream, the replies not yet written, and when the
/// session must end. Survives STARTTLS through [`Wire::into_parts`].
pub struct Wire<S> {
    pub stream: S,
    out: Vec<u8>,
    pub ends_at: Instant,
    /// A client that stops reading cannot hold a session either: each
    /// write must finish within this (and before `ends_at`).
    write_timeout: Duration,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Wire<S> {
    pub fn new(stream: S, ends_at: Instant, write_timeout: Duration) -> Self {
        Self { stream, out: Vec::with_capacity(1024), ends_at, write_timeout }
    }

    /// The one reply writer.
    pub fn reply(&mut self, reply: &Reply) {
        reply.write_to(&mut self.out);
    }

    pub async fn flush(&mut self) -> bool {
        if self.out.is_empty() {
            return true;
        }
        let deadline = self.ends_at.min(Instant::now() + self.write_timeout);
        let write = async { self.stream.write_all(&self.out).await.is_ok() && self.stream.flush().await.is_ok() };
        let ok = tokio::time::timeout_at(deadline, write).await.unwrap_or(false);
        self.out.clear();
        ok
    }

    /// Writes what is pending (a last reply may pass the session's end by
    /// a few seconds), then closes.
    pub async fn close(&mut self) {
        self.ends_at = self.ends_at.max(Instant::now() + Duration::from_secs(5));
        self.write_timeout = self.write_timeout.min(Duration::from_secs(5));
        self.flush().await;
        let _ = tokio::time::timeout(Duration::from_secs(5), self.stream.shutdown()).await;
    }

    /// The stream, for the TLS handshake, the session's end and the write
    /// timeout.
    pub fn into_parts(self) -> (S, Instant, Duration) {
        (self.stream, self.ends_at, self.write_timeout)
    }
}

/// How a session ended.
pub enum End {
    /// Close politely (pending replies are written by [`Wire::close`]).
    Closed,
    /// Drop the connection without another byte.
    Abort,
    /// The 220 to STARTTLS is written; do the handshake.
    StartTls,
}

enum Input<P> {
    Command,
    Data { rx: DataReader, started: Instant, received: usize },
    /// The message grew past the size limit: read to its end (keeping only
    /// the last bytes, which the end check needs), then refuse.
    Discard { rx: DataReader, started: Instant, received: usize },
    Challenge { rx: LineReceiver<()>, pending: P },
}

/// Why the loop stopped waiting.
#[derive(Clone, Copy)]
enum Cut {
    Command,
    Data,
    Lifetime,
}

impl Cut {
    fn reply(self, rules: &Rules) -> Reply {
        let host = &rules.hostname;
        let text = match self {
            Cut::Command => format!("{host} timeout exceeded: a command must arrive within {} s; closing connection", rules.command.as_secs()),
            Cut::Data => format!(
                "{host} timeout exceeded: the message arrived slower than {} bytes/s (or paused {} s); closing connection",
                rules.data_min_rate,
                rules.data_idle.as_secs()
            ),
            Cut::Lifetime => format!("{host} session lasted its maximum of {} s; closing connection, please reconnect", rules.lifetime.as_secs()),
        };
        Reply::new(421, [4, 4, 2], text)
    }

    fn refusal(self) -> Refusal {
        match self {
            Cut::Command => Refusal::CommandTimeout,
            Cut::Data => Refusal::DataTimeout,
            Cut::Lifetime => Refusal::SessionLifetime,
        }
    }
}

/// Runs the conversation on `wire` until the client quits, a deadline,
/// shutdown, or STARTTLS.
pub async fn serve<S, V>(wire: &mut Wire<S>, verbs: &mut V, rules: &Rules, shutdown: &mut watch::Receiver<bool>) -> End
where
    S: AsyncRead + AsyncWrite + Unpin,
    V: Verbs,
{
    let mut buf = vec![0u8; 16 * 1024];
    let mut body: Vec<u8> = Vec::new();
    let mut requests = RequestReceiver::default();
    let mut line = Line::default();
    let mut input: Input<V::Pending> = Input::Command;
    let mut line_deadline = Instant::now() + rules.command;
    loop {
        if !wire.flush().await {
            return End::Closed;
        }
        let now = Instant::now();
        let (deadline, cut) = match &input {
            Input::Command | Input::Challenge { .. } => {
                let partial = match &input {
                    Input::Challenge { rx, .. } => !rx.buf.is_empty(),
                    _ => line.is_partial(),
                };
                if !partial {
                    line_deadline = now + rules.command;
                }
                (line_deadline, Cut::Command)
            }
            Input::Data { started, received, .. } | Input::Discard { started, received, .. } => {
                ((now + rules.data_idle).min(rules.data_deadline(*started, *received)), Cut::Data)
            }
        };
        let (deadline, cut) = if wire.ends_at <= deadline { (wire.ends_at, Cut::Lifetime) } else { (deadline, cut) };
        let in_data = matches!(input, Input::Data { .. } | Input::Discard { .. });
        let read = tokio::time::timeout_at(deadline, wire.stream.read(&mut buf));
        let n = if in_data {
            read.await
        } else {
            tokio::select! {
                r = read => r,
                _ = super::stopping(shutdown) => {
                    wire.reply(&Reply::new(421, [4, 3, 2], format!("{} shutting down, try again later", rules.hostname)));
                    return End::Closed;
                }
            }
        };
        let n = match n {
            Ok(Ok(0)) | Ok(Err(_)) => return End::Closed,
            Ok(Ok(n)) => n,
            Err(_) => {
                tracing::info!(peer = %verbs.peer(), reason = cut.refusal().label(), "deadline passed; closing");
                rules.counters.count(cut.refusal());
                wire.reply(&cut.reply(rules));
                return End::Closed;
            }
        };
        let mut bytes = buf[..n].iter();
        while !bytes.as_slice().is_empty() {
            let step = match &mut input {
                Input::Command => match command::read(&mut requests, &mut bytes, &mut line, rules.max_line_length) {
                    Command::Incomplete => break,
                    Command::Overlong(r) => Step::Close(r),
                    Command::Refuse(r) => Step::Reply(r),
                    Command::Control => {
                        tracing::info!(peer = %verbs.peer(), "command with control bytes refused");
                        rules.counters.count(Refusal::ControlBytes);
                        Step::Reply(command::control_refused())
                    }
                    Command::Request(request) => run_verb(wire, verbs, request).await,
                    Command::Path { line, path } => match Request::parse(&mut line.iter()) {
                        Ok(Request::Mail { mut from }) => {
                            from.address = Cow::Owned(path);
                            run_verb(wire, verbs, Request::Mail { from }).await
                        }
                        Ok(Request::Rcpt { mut to }) => {
                            to.address = Cow::Owned(path);
                            run_verb(wire, verbs, Request::Rcpt { to }).await
                        }
                        Ok(other) => run_verb(wire, verbs, other).await,
                        Err(e) => Step::Reply(super::reply::common::parse_error(e)),
                    },
                },
                Input::Data { rx, started, received } => {
                    if *received == 0 && !verbs.data_started() {
                        wire.flush().await;
                        return End::Abort;
                    }
                    let before = bytes.len();
                    let ended = rx.ingest(&mut bytes, &mut body);
                    *received += before - bytes.len();
                    if ended {
                        input = Input::Command;
                        let step = verbs.message(&mut body).await;
                        body.clear();
                        step
                    } else {
                        if body.len() > rules.max_message_size {
                            body = body.split_off(body.len().saturating_sub(2));
                            input = Input::Discard { rx: std::mem::take(rx), started: *started, received: *received };
                        }
                        continue;
                    }
                }
                Input::Discard { rx, received, .. } => {
                    let before = bytes.len();
                    let ended = rx.ingest(&mut bytes, &mut body);
                    *received += before - bytes.len();
                    body.drain(..body.len().saturating_sub(2));
                    if !ended {
                        continue;
                    }
                    input = Input::Command;
                    body = Vec::new();
                    Step::Reply(verbs.too_big())
                }
                Input::Challenge { rx, .. } => {
                    if !rx.ingest(&mut bytes) {
                        if rx.buf.len() > rules.max_line_length {
                            wire.reply(&Reply::new(500, [5, 5, 2], "Line too long"));
                            return End::Closed;
                        }
                        continue;
                    }
                    let text = std::mem::take(&mut rx.buf);
                    let Input::Challenge { pending, .. } = std::mem::replace(&mut input, Input::Command) else { continue };
                    if text.iter().copied().any(command::is_control) {
                        rules.counters.count(Refusal::ControlBytes);
                        Step::Reply(command::control_refused())
                    } else {
                        verbs.respond(pending, &text).await
                    }
                }
            };
            // The one place a verb's decision is carried out.
            match step {
                Step::Reply(r) => wire.reply(&r),
                Step::Close(r) => {
                    wire.reply(&r);
                    return End::Closed;
                }
                Step::Farewell(r, bye) => {
                    wire.reply(&r);
                    wire.reply(&bye);
                    return End::Closed;
                }
                Step::Abort => {
                    // Replies already due go out; then hang up mid-conversation.
                    wire.flush().await;
                    return End::Abort;
                }
                Step::Data(r) => {
                    wire.reply(&r);
                    body.clear();
                    input = Input::Data { rx: DataReader::new(), started: Instant::now(), received: 0 };
                    // The 354 goes out before the message is read.
                    if !wire.flush().await {
                        return End::Closed;
                    }
                }
                Step::StartTls(r) => {
                    wire.reply(&r);
                    if !bytes.as_slice().is_empty() {
                        // Commands pipelined behind STARTTLS would be
                        // injected into the TLS session (CVE-2011-0411).
                        tracing::warn!(peer = %verbs.peer(), "discarding data pipelined after STARTTLS");
                    }
                    return if wire.flush().await { End::StartTls } else { End::Closed };
                }
                Step::Challenge(r, pending) => {
                    wire.reply(&r);
                    input = Input::Challenge { rx: LineReceiver::new(()), pending };
                }
            }
        }
    }
}

/// Hands one command to the verbs, after the pause they ask for (replies
/// already due are written first, so the pause is seen where it belongs).
async fn run_verb<S, V>(wire: &mut Wire<S>, verbs: &mut V, request: Request<Cow<'_, str>>) -> Step<V::Pending>
where
    S: AsyncRead + AsyncWrite + Unpin,
    V: Verbs,
{
    if let Some(pause) = verbs.pause(&request) {
        wire.flush().await;
        tokio::time::sleep(pause).await;
    }
    verbs.command(request).await
}
