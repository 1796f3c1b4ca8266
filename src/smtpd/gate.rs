//! Who may open a session: at most `limits.max_connections` at once, and
//! at most `limits.max_connections_per_ip` from one client address (an
//! IPv6 client: its /64, the block one subscriber usually holds), so one
//! client cannot hold every slot. The per-address table holds only
//! addresses with a live session, so it never outgrows the total limit.

use super::{Counters, Refusal, Reply};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The limits of one kind of listener (submission, bounce intake).
pub struct Gate {
    total: Arc<Semaphore>,
    max_total: usize,
    max_per_ip: usize,
    per_ip: Arc<Mutex<HashMap<IpAddr, usize>>>,
    counters: Arc<Counters>,
}

/// A live session's place; gives it back when dropped.
pub struct Pass {
    _total: OwnedSemaphorePermit,
    ip: IpAddr,
    per_ip: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl Drop for Pass {
    fn drop(&mut self) {
        // `admit` released this lock before returning, so taking it here
        // cannot deadlock with the constructor.
        let mut map = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

impl Gate {
    pub fn new(max_total: usize, max_per_ip: usize, counters: Arc<Counters>) -> Self {
        Self { total: Arc::new(Semaphore::new(max_total)), max_total, max_per_ip, per_ip: Default::default(), counters }
    }

    /// Admits a session from `ip`, or says which limit refuses it (the
    /// reply to send before closing).
    pub fn admit(&self, ip: IpAddr) -> Result<Pass, Reply> {
        let ip = client_key(ip);
        let Ok(total) = self.total.clone().try_acquire_owned() else {
            self.counters.count(Refusal::Connections);
            return Err(Reply::new(421, [4, 7, 0], "Too many connections, try again later"));
        };
        let mut map = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(ip).or_insert(0);
        if *n >= self.max_per_ip {
            drop(map);
            self.counters.count(Refusal::ConnectionsPerIp);
            return Err(Reply::new(421, [4, 7, 0], format!("Too many connections from your address (at most {}), try again later", self.max_per_ip)));
        }
        *n += 1;
        drop(map);
        Ok(Pass { _total: total, ip, per_ip: self.per_ip.clone() })
    }

    /// Resolves once every admitted session has ended.
    pub async fn drained(&self) {
        let _ = self.total.acquire_many(self.max_total as u32).await;
    }
}

/// The client a limit counts: an IPv4 address (IPv4-mapped IPv6 too), or
/// an IPv6 /64.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        v4 => v4,
    }
}

/// Sends `reply` to a refused client and closes, without waiting long.
pub async fn refuse(mut stream: tokio::net::TcpStream, reply: Reply) {
    use tokio::io::AsyncWriteExt;
    let mut out = Vec::new();
    reply.write_to(&mut out);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), stream.write_all(&out)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_address_and_total_limits() {
        let counters = Arc::new(Counters::default());
        let gate = Gate::new(3, 2, counters.clone());
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "::ffff:192.0.2.2".parse().unwrap());
        let a1 = gate.admit(a).unwrap();
        let _a2 = gate.admit(a).unwrap();
        assert_eq!(gate.admit(a).err().map(|r| r.code), Some(421));
        assert_eq!(counters.get(Refusal::ConnectionsPerIp), 1);
        let _b1 = gate.admit(b).unwrap();
        // Total reached: even a new address waits.
        assert!(gate.admit("192.0.2.3".parse().unwrap()).is_err());
        assert_eq!(counters.get(Refusal::Connections), 1);
        drop(a1);
        assert!(gate.admit(a).is_ok());
        // Mapped and plain IPv4 are one address.
        assert!(gate.per_ip.lock().unwrap().contains_key(&"192.0.2.2".parse::<IpAddr>().unwrap()));
    }

    #[test]
    fn clients() {
        let cases = [
            ("192.0.2.1", "192.0.2.1"),
            ("::ffff:192.0.2.1", "192.0.2.1"),
            ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::"),
            ("2001:db8:1:2::ffff", "2001:db8:1:2::"),
            ("::1", "::"),
        ];
        for (ip, want) in cases {
            assert_eq!(client_key(ip.parse().unwrap()), want.parse::<IpAddr>().unwrap(), "{ip}");
        }
    }

    #[test]
    fn table_forgets_addresses_without_sessions() {
        let gate = Gate::new(10, 10, Arc::default());
        let passes: Vec<_> = (0..5u8).map(|i| gate.admit(IpAddr::from([10, 0, 0, i])).unwrap()).collect();
        assert_eq!(gate.per_ip.lock().unwrap().len(), 5);
        drop(passes);
        assert!(gate.per_ip.lock().unwrap().is_empty());
    }
}
