//! One SMTP conversation: read, hand each command to its verb's handler,
//! write the replies. The session is generic over its stream, so the same
//! code runs over plain TCP, after STARTTLS, and on implicit TLS.
//!
//! Replies to pipelined commands (RFC 2920) are collected and written when
//! the input buffer is exhausted, so a pipelined group costs one write.

use super::reply::common;
use super::{ListenerMode, Reply, SharedContext, auth, data, ehlo, mail, rcpt};
use crate::config::ListenerTls;
use super::command::{self, Command};
use super::dot::DataReader;
use smtp_proto::request::receiver::{LineReceiver, RequestReceiver};
use smtp_proto::Request;
use std::borrow::Cow;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Session state that survives STARTTLS (only `peer` and `mode`) plus
/// everything the handlers read and change.
pub struct State {
    pub peer: SocketAddr,
    pub mode: ListenerMode,
    pub tls: bool,
    /// The name given in EHLO/HELO; `None` until the client said hello.
    pub helo: Option<String>,
    pub esmtp: bool,
    pub auth_user: Option<String>,
    pub auth_failures: u32,
    pub tx: Option<Transaction>,
    /// The client's address is in `relay.allow_networks`.
    pub trusted_network: bool,
}

/// A mail transaction between MAIL and the end of DATA.
pub struct Transaction {
    pub mail_from: String,
    pub rcpts: Vec<String>,
    /// MAIL FROM carried `SMTPUTF8` (RFC 6531).
    pub smtputf8: bool,
}

impl State {
    fn new(ctx: &SharedContext, peer: SocketAddr, mode: ListenerMode, tls: bool) -> Self {
        let ip = peer.ip().to_canonical();
        Self {
            peer,
            mode,
            tls,
            helo: None,
            esmtp: false,
            auth_user: None,
            auth_failures: 0,
            tx: None,
            trusted_network: ctx.allow_networks.iter().any(|n| n.contains(&ip)),
        }
    }

    /// AUTH may be offered and used on this connection now.
    pub fn auth_allowed(&self) -> bool {
        self.tls || self.mode.allow_auth_without_tls
    }
}

/// What the session loop does after a handler ran.
pub enum Step {
    Reply(Reply),
    /// Reply, then close the connection.
    Close(Reply),
    /// Reply 354 and read the message.
    Data(Reply),
    /// Reply 220 and start the TLS handshake.
    StartTls(Reply),
    /// Send a SASL challenge; the next line is the client's response.
    Challenge(Reply, auth::Pending),
}

enum Input {
    Command,
    Data { rx: DataReader, body: Vec<u8> },
    /// The message grew past the size limit: read to its end (keeping only
    /// the last bytes, which the end check needs), then refuse.
    Discard { rx: DataReader, tail: Vec<u8> },
    Sasl { rx: LineReceiver<()>, pending: auth::Pending },
}

enum End {
    Closed,
    StartTls,
}

pub struct Session<S> {
    stream: S,
    ctx: SharedContext,
    pub state: State,
    out: Vec<u8>,
}

/// Runs a session on a plain connection, upgrading it on STARTTLS.
pub async fn run_plain(ctx: SharedContext, stream: tokio::net::TcpStream, peer: SocketAddr, mode: ListenerMode) {
    let mut session = Session { stream, state: State::new(&ctx, peer, mode, false), ctx: ctx.clone(), out: Vec::new() };
    session.greet();
    if let End::StartTls = session.serve().await {
        let Some(acceptor) = ctx.tls.clone() else { return };
        let handshake = tokio::time::timeout(Duration::from_secs(ctx.limits.command_timeout_secs), acceptor.accept(session.stream));
        match handshake.await {
            // RFC 3207 §4.2: after TLS the client starts over with EHLO.
            Ok(Ok(tls)) => {
                let mut session = Session { stream: tls, state: State::new(&ctx, peer, mode, true), ctx, out: Vec::new() };
                session.serve().await;
                session.close().await;
            }
            Ok(Err(e)) => tracing::info!(%peer, error = %e, "STARTTLS handshake failed"),
            Err(_) => tracing::info!(%peer, "STARTTLS handshake timed out"),
        }
    } else {
        session.close().await;
    }
}

/// Runs a session on a connection that is TLS from the first byte.
pub async fn run_tls<S: AsyncRead + AsyncWrite + Unpin>(ctx: SharedContext, stream: S, peer: SocketAddr, mode: ListenerMode) {
    let mut session = Session { stream, state: State::new(&ctx, peer, mode, true), ctx, out: Vec::new() };
    session.greet();
    session.serve().await;
    session.close().await;
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    fn greet(&mut self) {
        tracing::debug!(peer = %self.state.peer, tls = self.state.tls, "connection");
        self.reply(Reply::plain(220, format!("{} ESMTP herald", self.ctx.hostname)));
    }

    fn reply(&mut self, reply: Reply) {
        reply.write_to(&mut self.out);
    }

    async fn flush(&mut self) -> bool {
        if self.out.is_empty() {
            return true;
        }
        let ok = self.stream.write_all(&self.out).await.is_ok() && self.stream.flush().await.is_ok();
        self.out.clear();
        ok
    }

    async fn close(&mut self) {
        self.flush().await;
        let _ = self.stream.shutdown().await;
    }

    async fn serve(&mut self) -> End {
        let limits = self.ctx.limits.clone();
        let mut shutdown = self.ctx.shutdown.clone();
        let mut buf = vec![0u8; 16 * 1024];
        let mut requests = RequestReceiver::default();
        let mut input = Input::Command;
        // Bytes of the command line being received, to enforce max_line_length.
        let mut line_len = 0usize;
        loop {
            if !self.flush().await {
                return End::Closed;
            }
            let in_data = matches!(input, Input::Data { .. } | Input::Discard { .. });
            let wait = Duration::from_secs(if in_data { limits.data_timeout_secs } else { limits.command_timeout_secs });
            let read = tokio::time::timeout(wait, self.stream.read(&mut buf));
            let n = if in_data {
                read.await
            } else {
                tokio::select! {
                    r = read => r,
                    _ = super::stopping(&mut shutdown) => {
                        self.reply(Reply::new(421, [4, 3, 2], format!("{} shutting down, try again later", self.ctx.hostname)));
                        return End::Closed;
                    }
                }
            };
            let n = match n {
                Ok(Ok(0)) | Ok(Err(_)) => return End::Closed,
                Ok(Ok(n)) => n,
                Err(_) => {
                    tracing::info!(peer = %self.state.peer, "timeout; closing");
                    self.reply(Reply::new(421, [4, 4, 2], format!("{} timeout exceeded, closing connection", self.ctx.hostname)));
                    return End::Closed;
                }
            };
            let mut bytes = buf[..n].iter();
            while !bytes.as_slice().is_empty() {
                match &mut input {
                    Input::Command => {
                        let step = match command::read(&mut requests, &mut bytes, &mut line_len, limits.max_line_length) {
                            Command::Incomplete => break,
                            Command::Overlong(r) => {
                                self.reply(r);
                                return End::Closed;
                            }
                            Command::Refuse(r) => Step::Reply(r),
                            Command::Request(request) => self.dispatch(request).await,
                        };
                        match step {
                            Step::Reply(r) => self.reply(r),
                            Step::Close(r) => {
                                self.reply(r);
                                return End::Closed;
                            }
                            Step::Data(r) => {
                                self.reply(r);
                                input = Input::Data { rx: DataReader::new(), body: Vec::with_capacity(64 * 1024) };
                            }
                            Step::StartTls(r) => {
                                self.reply(r);
                                if !bytes.as_slice().is_empty() {
                                    // Commands pipelined behind STARTTLS would be
                                    // injected into the TLS session (CVE-2011-0411).
                                    tracing::warn!(peer = %self.state.peer, "discarding data pipelined after STARTTLS");
                                }
                                return if self.flush().await { End::StartTls } else { End::Closed };
                            }
                            Step::Challenge(r, pending) => {
                                self.reply(r);
                                input = Input::Sasl { rx: LineReceiver::new(()), pending };
                            }
                        }
                    }
                    Input::Data { rx, body } => {
                        if rx.ingest(&mut bytes, body) {
                            let body = std::mem::take(body);
                            input = Input::Command;
                            let reply = data::finish(&mut self.state, &self.ctx, body).await;
                            self.reply(reply);
                        } else if body.len() > limits.max_message_size {
                            let tail = body.split_off(body.len() - 2);
                            input = Input::Discard { rx: std::mem::take(rx), tail };
                        }
                    }
                    Input::Discard { rx, tail } => {
                        let ended = rx.ingest(&mut bytes, tail);
                        tail.drain(..tail.len().saturating_sub(2));
                        if ended {
                            input = Input::Command;
                            self.state.tx = None;
                            self.reply(data::too_big(limits.max_message_size));
                        }
                    }
                    Input::Sasl { rx, pending } => {
                        if rx.ingest(&mut bytes) {
                            let line = std::mem::take(&mut rx.buf);
                            let pending = std::mem::replace(pending, auth::Pending::Plain);
                            input = Input::Command;
                            match auth::respond(&mut self.state, &self.ctx, pending, &line).await {
                                Step::Challenge(r, next) => {
                                    self.reply(r);
                                    input = Input::Sasl { rx: LineReceiver::new(()), pending: next };
                                }
                                Step::Close(r) => {
                                    self.reply(r);
                                    return End::Closed;
                                }
                                Step::Reply(r) | Step::Data(r) | Step::StartTls(r) => self.reply(r),
                            }
                        }
                    }
                }
            }
        }
    }

    /// The one place commands are dispatched to their handlers.
    async fn dispatch(&mut self, request: Request<Cow<'_, str>>) -> Step {
        let (state, ctx) = (&mut self.state, &self.ctx);
        match request {
            Request::Ehlo { host } => ehlo::ehlo(state, ctx, &host, true),
            Request::Helo { host } => ehlo::ehlo(state, ctx, &host, false),
            Request::StartTls => starttls(state, ctx),
            Request::Auth { mechanism, initial_response } => auth::start(state, ctx, mechanism, &initial_response).await,
            Request::Mail { from } => mail::mail(state, ctx, from),
            Request::Rcpt { to } => rcpt::rcpt(state, ctx, to),
            Request::Data => data::data(state, ctx),
            // CHUNKING is not offered: the chunk that follows would be read
            // as commands, so end the conversation instead.
            Request::Bdat { .. } => Step::Close(Reply::new(502, [5, 5, 1], "BDAT is not offered here; use DATA")),
            Request::Rset => {
                state.tx = None;
                Step::Reply(Reply::new(250, [2, 0, 0], "Ok"))
            }
            Request::Noop { .. } => Step::Reply(Reply::new(250, [2, 0, 0], "Ok")),
            Request::Quit => Step::Close(Reply::new(221, [2, 0, 0], "Bye")),
            Request::Vrfy { .. } => Step::Reply(Reply::new(252, [2, 5, 2], "Cannot VRFY user, but will accept message and attempt delivery")),
            Request::Help { .. } => Step::Reply(Reply::new(214, [2, 0, 0], "herald: EHLO, STARTTLS, AUTH, MAIL, RCPT, DATA, RSET, NOOP, QUIT")),
            Request::Lhlo { .. } | Request::Expn { .. } | Request::Etrn { .. } | Request::Atrn { .. } | Request::Burl { .. } => {
                Step::Reply(Reply::new(502, [5, 5, 1], "Command not implemented"))
            }
        }
    }
}

/// STARTTLS (RFC 3207).
fn starttls(state: &mut State, ctx: &SharedContext) -> Step {
    if state.tls {
        return Step::Reply(common::bad_sequence("Already using TLS"));
    }
    if state.mode.tls != ListenerTls::Starttls || ctx.tls.is_none() {
        return Step::Reply(Reply::new(502, [5, 5, 1], "STARTTLS is not offered on this port"));
    }
    if state.helo.is_none() {
        return Step::Reply(common::bad_sequence("Send EHLO first"));
    }
    Step::StartTls(Reply::new(220, [2, 0, 0], "Ready to start TLS"))
}
