//! One inbound SMTP conversation: smtp-proto's `RequestReceiver` parses
//! commands, the submission module's `DataReader` finds the end of DATA
//! (`<CRLF>.<CRLF>` only), and replies to pipelined commands (RFC 2920)
//! are written once the input buffer is drained. No TLS, no AUTH: this is
//! an MX, and it accepts nothing but bounces.

use super::{Context, data, rcpt};
use crate::id::MessageId;
use crate::submission::Reply;
use crate::submission::dot::DataReader;
use crate::submission::command::{self, Command};
use crate::submission::reply::common;
use smtp_proto::request::receiver::RequestReceiver;
use smtp_proto::Request;
use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// What the handlers read and change.
pub struct State {
    pub peer: SocketAddr,
    /// The name given in EHLO/HELO; `None` until the client said hello.
    pub helo: Option<String>,
    pub tx: Option<Transaction>,
}

/// A mail transaction between MAIL and the end of DATA.
pub struct Transaction {
    pub mail_from: String,
    /// Accepted bounce addresses and the relay message each names.
    pub rcpts: Vec<(String, MessageId)>,
}

/// What the session loop does after a handler ran.
pub enum Step {
    Reply(Reply),
    /// Reply, then close the connection.
    Close(Reply),
    /// Reply 354 and read the message.
    Data(Reply),
}

enum Input {
    Command,
    Data {
        rx: DataReader,
        body: Vec<u8>,
    },
    /// Past the size limit: read to the end (keeping the last bytes, which
    /// the end check needs), then refuse.
    Discard {
        rx: DataReader,
        tail: Vec<u8>,
    },
}

/// Runs one session on `stream` until the client quits, a timeout or
/// shutdown.
pub async fn run<S: AsyncRead + AsyncWrite + Unpin>(ctx: Arc<Context>, mut stream: S, peer: SocketAddr) {
    tracing::debug!(%peer, "bounce connection");
    let mut session = Session {
        ctx,
        state: State {
            peer,
            helo: None,
            tx: None,
        },
        out: Vec::new(),
    };
    session.reply(Reply::plain(220, format!("{} ESMTP herald bounce intake", session.ctx.hostname)));
    session.serve(&mut stream).await;
    session.flush(&mut stream).await;
    let _ = stream.shutdown().await;
}

struct Session {
    ctx: Arc<Context>,
    state: State,
    /// Replies not yet written.
    out: Vec<u8>,
}

impl Session {
    /// The one reply writer.
    fn reply(&mut self, reply: Reply) {
        reply.write_to(&mut self.out);
    }

    async fn flush<S: AsyncWrite + Unpin>(&mut self, stream: &mut S) -> bool {
        if self.out.is_empty() {
            return true;
        }
        let ok = stream.write_all(&self.out).await.is_ok() && stream.flush().await.is_ok();
        self.out.clear();
        ok
    }

    async fn serve<S: AsyncRead + AsyncWrite + Unpin>(&mut self, stream: &mut S) {
        let limits = self.ctx.limits.clone();
        let mut shutdown = self.ctx.shutdown.clone();
        let mut buf = vec![0u8; 16 * 1024];
        let mut requests = RequestReceiver::default();
        let mut input = Input::Command;
        // Bytes of the command line being received, for max_line_length.
        let mut line_len = 0usize;
        loop {
            if !self.flush(stream).await {
                return;
            }
            let in_data = matches!(input, Input::Data { .. } | Input::Discard { .. });
            let wait = Duration::from_secs(if in_data {
                limits.data_timeout_secs
            } else {
                limits.command_timeout_secs
            });
            let read = tokio::time::timeout(wait, stream.read(&mut buf));
            let n = if in_data {
                read.await
            } else {
                tokio::select! {
                    r = read => r,
                    _ = crate::submission::stopping(&mut shutdown) => {
                        self.reply(Reply::new(421, [4, 3, 2], format!("{} shutting down, try again later", self.ctx.hostname)));
                        return;
                    }
                }
            };
            let n = match n {
                Ok(Ok(0)) | Ok(Err(_)) => return,
                Ok(Ok(n)) => n,
                Err(_) => {
                    tracing::info!(peer = %self.state.peer, "bounce session timed out");
                    self.reply(Reply::new(
                        421,
                        [4, 4, 2],
                        format!("{} timeout exceeded, closing connection", self.ctx.hostname),
                    ));
                    return;
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
                                return;
                            }
                            Command::Refuse(r) => Step::Reply(r),
                            Command::Request(request) => self.dispatch(request),
                        };
                        match step {
                            Step::Reply(r) => self.reply(r),
                            Step::Close(r) => {
                                self.reply(r);
                                return;
                            }
                            Step::Data(r) => {
                                self.reply(r);
                                input = Input::Data {
                                    rx: DataReader::new(),
                                    body: Vec::with_capacity(16 * 1024),
                                };
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
                            let tail = body.split_off(body.len().saturating_sub(2));
                            input = Input::Discard {
                                rx: std::mem::take(rx),
                                tail,
                            };
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
                }
            }
        }
    }

    /// The one place commands are dispatched (hello → transaction).
    fn dispatch(&mut self, request: Request<Cow<'_, str>>) -> Step {
        let (state, ctx) = (&mut self.state, &*self.ctx);
        match request {
            Request::Ehlo { host } => hello(state, ctx, &host, true),
            Request::Helo { host } => hello(state, ctx, &host, false),
            Request::Mail { from } => mail(state, ctx, &from.address, from.size),
            Request::Rcpt { to } => rcpt::rcpt(state, ctx, &to.address),
            Request::Data => data::data(state),
            Request::Rset => {
                state.tx = None;
                Step::Reply(Reply::new(250, [2, 0, 0], "Ok"))
            }
            Request::Noop { .. } => Step::Reply(Reply::new(250, [2, 0, 0], "Ok")),
            Request::Quit => Step::Close(Reply::new(221, [2, 0, 0], "Bye")),
            // CHUNKING is not offered: the chunk would be read as commands.
            Request::Bdat { .. } => Step::Close(Reply::new(502, [5, 5, 1], "BDAT is not offered here; use DATA")),
            Request::StartTls => Step::Reply(Reply::new(502, [5, 5, 1], "STARTTLS is not offered on this port")),
            Request::Auth { .. } => Step::Reply(Reply::new(502, [5, 5, 1], "AUTH is not offered here; send bounces without it")),
            Request::Vrfy { .. } => Step::Reply(Reply::new(252, [2, 5, 2], "Cannot VRFY user")),
            Request::Help { .. } => Step::Reply(Reply::new(
                214,
                [2, 0, 0],
                "herald bounce intake: EHLO, MAIL, RCPT, DATA, RSET, NOOP, QUIT",
            )),
            Request::Lhlo { .. } | Request::Expn { .. } | Request::Etrn { .. } | Request::Atrn { .. } | Request::Burl { .. } => {
                Step::Reply(Reply::new(502, [5, 5, 1], "Command not implemented"))
            }
        }
    }
}

/// EHLO and HELO (RFC 5321 §4.1.1.1).
fn hello(state: &mut State, ctx: &Context, host: &str, esmtp: bool) -> Step {
    if host.trim().is_empty() {
        return Step::Reply(Reply::new(501, [5, 5, 4], "Syntax: EHLO hostname"));
    }
    state.tx = None;
    state.helo = Some(host.to_string());
    Step::Reply(common::hello(&ctx.hostname, host, esmtp, ctx.limits.max_message_size))
}

/// MAIL FROM (RFC 5321 §4.1.1.2): any sender, usually the null one.
fn mail(state: &mut State, ctx: &Context, from: &str, size: usize) -> Step {
    if state.helo.is_none() {
        return Step::Reply(common::bad_sequence("Send EHLO first"));
    }
    if state.tx.is_some() {
        return Step::Reply(common::bad_sequence("Nested MAIL command"));
    }
    if size > ctx.limits.max_message_size {
        return Step::Reply(data::too_big(ctx.limits.max_message_size));
    }
    state.tx = Some(Transaction {
        mail_from: from.trim().to_string(),
        rcpts: Vec::new(),
    });
    Step::Reply(Reply::new(250, [2, 1, 0], "Sender ok"))
}
