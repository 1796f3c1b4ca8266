//! Accepting connections: one task per listener, the kit's [`Gate`]
//! (sessions in total and per client address) shared by all of them, TLS
//! first on implicit-TLS listeners.

use super::{ListenerMode, SharedContext, session};
use crate::config::{ListenerConfig, ListenerTls};
use crate::smtpd::Gate;
use crate::smtpd::gate::refuse;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::time::Instant;

/// A bound listener, before it accepts.
pub struct Listener {
    pub socket: TcpListener,
    pub mode: ListenerMode,
}

impl Listener {
    pub async fn bind(config: &ListenerConfig) -> std::io::Result<Self> {
        let socket = TcpListener::bind(config.socket_addr()).await?;
        Ok(Self { socket, mode: ListenerMode { tls: config.tls, allow_auth_without_tls: config.allow_auth_without_tls } })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.socket.local_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }
}

/// The running accept loops and the bound on live sessions.
pub struct Acceptors {
    gate: Arc<Gate>,
    loops: Vec<tokio::task::JoinHandle<()>>,
}

impl Acceptors {
    /// Resolves once the accept loops have stopped (after the shutdown
    /// flag flipped) and every session has ended.
    pub async fn drained(self) {
        for l in self.loops {
            let _ = l.await;
        }
        self.gate.drained().await;
    }
}

/// Starts accepting on every listener. The accept loops stop when the
/// context's shutdown flag flips; sessions finish on their own.
pub fn spawn_listeners(ctx: SharedContext, listeners: Vec<Listener>) -> Acceptors {
    let gate = Arc::new(Gate::new(ctx.limits.max_connections, ctx.limits.max_connections_per_ip, ctx.rules.counters.clone()));
    let loops = listeners.into_iter().map(|l| tokio::spawn(accept_loop(ctx.clone(), l, gate.clone()))).collect();
    Acceptors { gate, loops }
}

async fn accept_loop(ctx: SharedContext, listener: Listener, gate: Arc<Gate>) {
    let mut shutdown = ctx.shutdown.clone();
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.socket.accept() => match r {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = super::stopping(&mut shutdown) => break,
        };
        let _ = stream.set_nodelay(true);
        let pass = match gate.admit(peer.ip()) {
            Ok(pass) => pass,
            Err(reply) => {
                tracing::warn!(%peer, reply = %reply.lines.join(" "), "connection refused");
                tokio::spawn(refuse(stream, reply));
                continue;
            }
        };
        let ctx = ctx.clone();
        let mode = listener.mode;
        tokio::spawn(async move {
            match mode.tls {
                ListenerTls::Implicit => {
                    let Some(acceptor) = ctx.tls.clone() else { return };
                    let ends_at = Instant::now() + ctx.rules.lifetime;
                    let handshake = tokio::time::timeout_at(ends_at.min(Instant::now() + ctx.rules.command), acceptor.accept(stream));
                    match handshake.await {
                        Ok(Ok(tls)) => session::run_tls(ctx, tls, peer, mode, ends_at).await,
                        Ok(Err(e)) => tracing::info!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::info!(%peer, "TLS handshake timed out"),
                    }
                }
                ListenerTls::Starttls | ListenerTls::None => session::run_plain(ctx, stream, peer, mode).await,
            }
            drop(pass);
        });
    }
}
