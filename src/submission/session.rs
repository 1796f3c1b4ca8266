//! One submission conversation: the submission verbs, driven by the
//! server kit's loop (`crate::smtpd`), which owns reading, writing, the
//! deadlines and shutdown. The same code runs over plain TCP, after
//! STARTTLS, and on implicit TLS.

use super::{ListenerMode, Reply, SharedContext, auth, data, ehlo, mail, rcpt};
use crate::config::ListenerTls;
use crate::smtpd::reply::common;
use crate::smtpd::{End, Verbs, Wire, serve};
use smtp_proto::Request;
use std::borrow::Cow;
use std::net::SocketAddr;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

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
pub type Step = crate::smtpd::Step<auth::Pending>;

/// The submission verbs the kit's loop drives.
pub struct Session {
    ctx: SharedContext,
    pub state: State,
    /// Held from the `354` to the reply after the body ([`super::slots`]).
    slot: Option<super::slots::Slot>,
}

/// Runs a session on a plain connection, upgrading it on STARTTLS.
pub async fn run_plain(ctx: SharedContext, stream: tokio::net::TcpStream, peer: SocketAddr, mode: ListenerMode) {
    let rules = ctx.rules.clone();
    let mut shutdown = ctx.shutdown.clone();
    let mut wire = Wire::new(stream, Instant::now() + rules.lifetime, rules.command);
    let mut session = Session { state: State::new(&ctx, peer, mode, false), ctx: ctx.clone(), slot: None };
    session.greet(&mut wire);
    match serve(&mut wire, &mut session, &rules, &mut shutdown).await {
        End::StartTls => {
            let Some(acceptor) = ctx.tls.clone() else { return };
            let (stream, ends_at, write_timeout) = wire.into_parts();
            let handshake = tokio::time::timeout_at(ends_at.min(Instant::now() + rules.command), acceptor.accept(stream));
            match handshake.await {
                // RFC 3207 §4.2: after TLS the client starts over with EHLO.
                Ok(Ok(tls)) => {
                    let mut wire = Wire::new(tls, ends_at, write_timeout);
                    let mut session = Session { state: State::new(&ctx, peer, mode, true), ctx, slot: None };
                    if let End::Closed = serve(&mut wire, &mut session, &rules, &mut shutdown).await {
                        wire.close().await;
                    }
                }
                Ok(Err(e)) => tracing::info!(%peer, error = %e, "STARTTLS handshake failed"),
                Err(_) => tracing::info!(%peer, "STARTTLS handshake timed out"),
            }
        }
        End::Closed => wire.close().await,
        End::Abort => {}
    }
}

/// Runs a session on a connection that is TLS from the first byte.
pub async fn run_tls<S: AsyncRead + AsyncWrite + Unpin>(ctx: SharedContext, stream: S, peer: SocketAddr, mode: ListenerMode, ends_at: Instant) {
    let rules = ctx.rules.clone();
    let mut shutdown = ctx.shutdown.clone();
    let mut wire = Wire::new(stream, ends_at, rules.command);
    let mut session = Session { state: State::new(&ctx, peer, mode, true), ctx, slot: None };
    session.greet(&mut wire);
    if let End::Closed = serve(&mut wire, &mut session, &rules, &mut shutdown).await {
        wire.close().await;
    }
}

impl Verbs for Session {
    type Pending = auth::Pending;

    async fn command(&mut self, request: Request<Cow<'_, str>>) -> Step {
        // Whatever became of the last message, its slot is free now.
        self.slot = None;
        let step = self.dispatch(request).await;
        if let Step::Data(_) = &step {
            self.slot = Some(self.ctx.slots.take().await);
        }
        step
    }

    async fn respond(&mut self, pending: auth::Pending, line: &[u8]) -> Step {
        auth::respond(&mut self.state, &self.ctx, pending, line).await
    }

    async fn message(&mut self, body: &mut Vec<u8>) -> Step {
        let reply = data::finish(&mut self.state, &self.ctx, std::mem::take(body)).await;
        self.slot = None;
        Step::Reply(reply)
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
    fn greet<S: AsyncRead + AsyncWrite + Unpin>(&self, wire: &mut Wire<S>) {
        tracing::debug!(peer = %self.state.peer, tls = self.state.tls, "connection");
        wire.reply(&Reply::plain(220, format!("{} ESMTP herald", self.ctx.hostname)));
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
