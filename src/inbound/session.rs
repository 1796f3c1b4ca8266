//! One inbound SMTP conversation: the bounce intake's verbs, driven by
//! the server kit's loop (`crate::smtpd`), which reads, writes, finds the
//! end of DATA (`<CRLF>.<CRLF>` only) and enforces the deadlines. No TLS,
//! no AUTH: this is an MX, and it accepts nothing but bounces.

use super::{Context, data, rcpt};
use crate::id::MessageId;
use crate::smtpd::reply::common;
use crate::smtpd::{End, Reply, Verbs, Wire, serve};
use smtp_proto::Request;
use std::borrow::Cow;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

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

/// What the session loop does after a handler ran (no challenges here).
pub type Step = crate::smtpd::Step<Infallible>;

/// Runs one session on `stream` until the client quits, a deadline or
/// shutdown.
pub async fn run<S: AsyncRead + AsyncWrite + Unpin>(ctx: Arc<Context>, stream: S, peer: SocketAddr) {
    tracing::debug!(%peer, "bounce connection");
    let rules = ctx.rules.clone();
    let mut shutdown = ctx.shutdown.clone();
    let mut wire = Wire::new(stream, Instant::now() + rules.lifetime, rules.command);
    wire.reply(&Reply::plain(220, format!("{} ESMTP herald bounce intake", ctx.hostname)));
    let mut session = Session { ctx, state: State { peer, helo: None, tx: None } };
    match serve(&mut wire, &mut session, &rules, &mut shutdown).await {
        End::Closed | End::StartTls => wire.close().await,
        End::Abort => {}
    }
}

struct Session {
    ctx: Arc<Context>,
    state: State,
}

impl Verbs for Session {
    type Pending = Infallible;

    async fn command(&mut self, request: Request<Cow<'_, str>>) -> Step {
        self.dispatch(request)
    }

    async fn respond(&mut self, pending: Infallible, _line: &[u8]) -> Step {
        match pending {}
    }

    async fn message(&mut self, body: &mut Vec<u8>) -> Step {
        Step::Reply(data::finish(&mut self.state, &self.ctx, std::mem::take(body)).await)
    }

    fn too_big(&mut self) -> Reply {
        self.state.tx = None;
        data::too_big(self.ctx.limits.max_message_size)
    }

    fn peer(&self) -> SocketAddr {
        self.state.peer
    }
}

impl Session {
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
