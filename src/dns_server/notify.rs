//! NOTIFY (RFC 1996): when the zone's serial moves, each secondary is told
//! so it transfers the zone now rather than at its next refresh.
//!
//! Sent over UDP from an ephemeral port, retried a few times until the
//! secondary answers (§3.6); a secondary that never answers only delays
//! its own copy, never the relay.

use super::Zone;
use hickory_server::proto::op::{Message, MessageType, OpCode, Query};
use hickory_server::proto::rr::RecordType;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::sync::watch;

const TRIES: usize = 3;
const WAIT: Duration = Duration::from_secs(2);
/// Changes that come in a burst (a rotation writes a few times) make one NOTIFY.
const SETTLE: Duration = Duration::from_millis(100);

/// Runs until `shutdown` flips: on each registry change that moved the
/// serial, notifies every secondary.
pub async fn run(zone: Arc<Zone>, secondaries: Vec<SocketAddr>, mut shutdown: watch::Receiver<bool>) {
    let mut changes = zone.domains.registry().subscribe();
    let mut last = zone.current().map(|s| s.serial).ok();
    loop {
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return },
            _ = crate::smtpd::stopping(&mut shutdown) => return,
        }
        tokio::time::sleep(SETTLE).await;
        changes.borrow_and_update();
        let snapshot = match zone.current() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "embedded DNS: cannot build the zone");
                continue;
            }
        };
        if last == Some(snapshot.serial) {
            continue;
        }
        last = Some(snapshot.serial);
        tracing::info!(serial = snapshot.serial, secondaries = secondaries.len(), "operator zone changed");
        for &secondary in &secondaries {
            let name = snapshot.zone.clone();
            let serial = snapshot.serial;
            tokio::spawn(async move {
                match send(secondary, &name, serial).await {
                    Ok(()) => tracing::info!(%secondary, serial, "NOTIFY acknowledged"),
                    Err(e) => tracing::warn!(%secondary, serial, error = %e, "NOTIFY not acknowledged"),
                }
            });
        }
    }
}

/// One NOTIFY for `zone` to `to`, until acknowledged or out of tries.
pub async fn send(to: SocketAddr, zone: &hickory_server::proto::rr::Name, serial: u32) -> Result<(), String> {
    let local: SocketAddr = if to.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { (std::net::Ipv6Addr::UNSPECIFIED, 0).into() };
    let socket = UdpSocket::bind(local).await.map_err(|e| e.to_string())?;
    let id: u16 = rand::random();
    let mut message = Message::new(id, MessageType::Query, OpCode::Notify);
    message.metadata.authoritative = true;
    message.add_query(Query::query(zone.clone(), RecordType::SOA));
    let bytes = message.to_vec().map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 4096];
    for _ in 0..TRIES {
        socket.send_to(&bytes, to).await.map_err(|e| e.to_string())?;
        if let Ok(Ok((len, from))) = tokio::time::timeout(WAIT, socket.recv_from(&mut buf)).await
            && from == to
            && Message::from_vec(&buf[..len]).is_ok_and(|m| m.metadata.id == id && m.metadata.message_type == MessageType::Response)
        {
            return Ok(());
        }
    }
    Err(format!("no answer after {TRIES} tries (serial {serial})"))
}
