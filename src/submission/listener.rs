//! Accepting connections: one task per listener, a shared bound on
//! concurrent sessions, TLS first on implicit-TLS listeners.

use super::{ListenerMode, SharedContext, session};
use crate::config::{ListenerConfig, ListenerTls};
use crate::submission::Reply;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

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
    limit: Arc<Semaphore>,
    max: usize,
    loops: Vec<tokio::task::JoinHandle<()>>,
}

impl Acceptors {
    /// Resolves once the accept loops have stopped (after the shutdown
    /// flag flipped) and every session has ended.
    pub async fn drained(self) {
        for l in self.loops {
            let _ = l.await;
        }
        let _ = self.limit.acquire_many(self.max as u32).await;
    }
}

/// Starts accepting on every listener. The accept loops stop when the
/// context's shutdown flag flips; sessions finish on their own.
pub fn spawn_listeners(ctx: SharedContext, listeners: Vec<Listener>) -> Acceptors {
    let max = ctx.limits.max_connections;
    let limit = Arc::new(Semaphore::new(max));
    let loops = listeners.into_iter().map(|l| tokio::spawn(accept_loop(ctx.clone(), l, limit.clone()))).collect();
    Acceptors { limit, max, loops }
}

async fn accept_loop(ctx: SharedContext, listener: Listener, limit: Arc<Semaphore>) {
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
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "too many connections; refusing");
            tokio::spawn(refuse(stream));
            continue;
        };
        let ctx = ctx.clone();
        let mode = listener.mode;
        tokio::spawn(async move {
            match mode.tls {
                ListenerTls::Implicit => {
                    let Some(acceptor) = ctx.tls.clone() else { return };
                    let handshake = tokio::time::timeout(Duration::from_secs(ctx.limits.command_timeout_secs), acceptor.accept(stream));
                    match handshake.await {
                        Ok(Ok(tls)) => session::run_tls(ctx, tls, peer, mode).await,
                        Ok(Err(e)) => tracing::info!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::info!(%peer, "TLS handshake timed out"),
                    }
                }
                ListenerTls::Starttls | ListenerTls::None => session::run_plain(ctx, stream, peer, mode).await,
            }
            drop(permit);
        });
    }
}

async fn refuse(mut stream: tokio::net::TcpStream) {
    let mut out = Vec::new();
    Reply::new(421, [4, 7, 0], "Too many connections, try again later").write_to(&mut out);
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.write_all(&out)).await;
}
