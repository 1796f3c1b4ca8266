//! AUTH failures per client address, across connections: a guesser who
//! opens a new connection after every few wrong passwords gets no fresh
//! budget.
//!
//! Within a sliding window of `limits.auth_window_secs`, each failure
//! makes the next check from that address wait longer (`auth_delay_ms`,
//! doubling, at most [`MAX_DELAY`]); `limits.auth_failures_per_ip`
//! failures lock the address out for `limits.auth_lockout_secs`, during
//! which AUTH is answered `454 4.7.0` without checking anything. IPv6
//! clients are counted per /64, the block one subscriber usually holds.
//!
//! Memory is bounded: at most [`MAX_ADDRESSES`] addresses are tracked,
//! each with at most `auth_failures_per_ip` timestamps; when full, stale
//! entries go first, then the least recently active.

use crate::clock::SharedClock;
use crate::smtpd::gate::client_key as key;
use crate::smtpd::{Counters, Refusal};
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The longest wait before a password check.
pub const MAX_DELAY: Duration = Duration::from_secs(8);
/// Addresses tracked at once.
pub const MAX_ADDRESSES: usize = 65_536;

#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub max_failures: u32,
    pub window_ms: i64,
    pub lockout_ms: i64,
    pub base_delay: Duration,
    pub max_addresses: usize,
}

#[derive(Debug, Default)]
struct Entry {
    /// When each failure in the window happened, oldest first.
    failures: VecDeque<i64>,
    locked_until: i64,
    /// Checks running now.
    pending: u32,
    last_ms: i64,
}

/// What a password check from an address may do.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Check, after waiting this long.
    Check(Duration),
    /// Locked out: answer 454 without checking; seconds left.
    Locked(u64),
}

/// The shared table.
#[derive(Clone)]
pub struct Throttle {
    table: Arc<Mutex<HashMap<IpAddr, Entry>>>,
    settings: Settings,
    clock: SharedClock,
    counters: Arc<Counters>,
}

/// A check in progress; report its outcome, or drop it (counts as neither).
pub struct Ticket {
    throttle: Throttle,
    key: IpAddr,
}

impl Throttle {
    pub fn new(settings: Settings, clock: SharedClock, counters: Arc<Counters>) -> Self {
        Self { table: Default::default(), settings, clock, counters }
    }

    pub fn from_limits(l: &crate::config::LimitsConfig, clock: SharedClock, counters: Arc<Counters>) -> Self {
        let settings = Settings {
            max_failures: l.auth_failures_per_ip,
            window_ms: l.auth_window_secs as i64 * 1000,
            lockout_ms: l.auth_lockout_secs as i64 * 1000,
            base_delay: Duration::from_millis(l.auth_delay_ms),
            max_addresses: MAX_ADDRESSES,
        };
        Self::new(settings, clock, counters)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Entry>> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `ip` is locked out now (seconds left), without starting a check.
    pub fn locked(&self, ip: IpAddr) -> Option<u64> {
        let now = self.clock.now_ms();
        let table = self.lock();
        let left = table.get(&key(ip)).map_or(0, |e| e.locked_until - now);
        (left > 0).then(|| (left as u64).div_ceil(1000))
    }

    /// Starts a password check from `ip`.
    pub fn begin(&self, ip: IpAddr) -> Result<(Duration, Ticket), u64> {
        let now = self.clock.now_ms();
        let key = key(ip);
        let mut table = self.lock();
        if !table.contains_key(&key) && table.len() >= self.settings.max_addresses {
            make_room(&mut table, now, &self.settings);
        }
        let entry = table.entry(key).or_default();
        match verdict(entry, now, &self.settings) {
            Verdict::Locked(secs) => {
                drop(table);
                self.counters.count(Refusal::AuthLockout);
                Err(secs)
            }
            Verdict::Check(delay) => {
                entry.pending += 1;
                entry.last_ms = now;
                drop(table);
                Ok((delay, Ticket { throttle: self.clone(), key }))
            }
        }
    }
}

impl Ticket {
    /// A wrong password: counts, and may lock the address out (the
    /// lockout's length in seconds is returned then).
    pub fn failed(self) -> Option<u64> {
        let t = &self.throttle;
        t.counters.count(Refusal::AuthFailure);
        let now = t.clock.now_ms();
        let mut table = t.lock();
        let entry = table.entry(self.key).or_default();
        entry.failures.push_back(now);
        while entry.failures.len() > t.settings.max_failures as usize {
            entry.failures.pop_front();
        }
        if entry.failures.len() >= t.settings.max_failures as usize {
            entry.locked_until = now + t.settings.lockout_ms;
            entry.failures.clear();
            return Some((t.settings.lockout_ms as u64).div_ceil(1000));
        }
        None
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        // `begin` and `failed` release the lock before a Ticket can drop.
        let mut table = self.throttle.lock();
        if let Some(e) = table.get_mut(&self.key) {
            e.pending = e.pending.saturating_sub(1);
        }
    }
}

/// What a check may do now, given the failures recorded. Expired
/// failures are dropped from `entry`. Checks already running count as
/// failures once the address has failed at all, so parallel connections
/// cannot overshoot the budget.
fn verdict(entry: &mut Entry, now: i64, s: &Settings) -> Verdict {
    if entry.locked_until > now {
        return Verdict::Locked(((entry.locked_until - now) as u64).div_ceil(1000));
    }
    while entry.failures.front().is_some_and(|&t| t <= now - s.window_ms) {
        entry.failures.pop_front();
    }
    let failures = entry.failures.len() as u32;
    if failures > 0 && failures + entry.pending >= s.max_failures {
        // Not a lockout yet: the running checks may still succeed.
        return Verdict::Locked(1);
    }
    Verdict::Check(delay(failures, s.base_delay))
}

/// The wait before the check after `failures` recent failures: none at
/// first, then `base`, doubling each time, at most [`MAX_DELAY`].
pub fn delay(failures: u32, base: Duration) -> Duration {
    match failures {
        0 => Duration::ZERO,
        n => base.saturating_mul(1 << (n - 1).min(16)).min(MAX_DELAY),
    }
}

/// Frees a place: stale entries first, else the least recently active.
fn make_room(table: &mut HashMap<IpAddr, Entry>, now: i64, s: &Settings) {
    table.retain(|_, e| e.pending > 0 || e.locked_until > now || e.last_ms > now - s.window_ms);
    if table.len() >= s.max_addresses
        && let Some(oldest) = table.iter().filter(|(_, e)| e.pending == 0).min_by_key(|(_, e)| e.last_ms).map(|(k, _)| *k)
    {
        table.remove(&oldest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    fn throttle(max_addresses: usize) -> (Throttle, Arc<ManualClock>) {
        let clock = ManualClock::new();
        let s = Settings { max_failures: 3, window_ms: 60_000, lockout_ms: 300_000, base_delay: Duration::from_millis(100), max_addresses };
        (Throttle::new(s, clock.clone(), Arc::default()), clock)
    }

    #[test]
    fn delays_grow_and_are_capped() {
        let base = Duration::from_millis(500);
        let cases = [(0, 0), (1, 500), (2, 1000), (3, 2000), (4, 4000), (5, 8000), (9, 8000), (40, 8000)];
        for (failures, ms) in cases {
            assert_eq!(delay(failures, base), Duration::from_millis(ms), "{failures}");
        }
    }

    #[test]
    fn failures_lock_out_then_expire() {
        let (t, clock) = throttle(100);
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let (d, ticket) = t.begin(ip).unwrap();
        assert_eq!((d, ticket.failed()), (Duration::ZERO, None));
        let (d, ticket) = t.begin(ip).unwrap();
        assert_eq!((d, ticket.failed()), (Duration::from_millis(100), None));
        // Another address is unaffected.
        assert_eq!(t.begin("192.0.2.8".parse().unwrap()).unwrap().0, Duration::ZERO);
        let (d, ticket) = t.begin(ip).unwrap();
        assert_eq!((d, ticket.failed()), (Duration::from_millis(200), Some(300)));
        assert_eq!(t.begin(ip).err(), Some(300));
        assert_eq!(t.locked(ip), Some(300));
        clock.advance(Duration::from_millis(300_001));
        assert_eq!(t.locked(ip), None);
        // A fresh budget after the lockout.
        assert_eq!(t.begin(ip).unwrap().0, Duration::ZERO);
    }

    #[test]
    fn window_slides() {
        let (t, clock) = throttle(100);
        let ip: IpAddr = "2001:db8::1".parse().unwrap();
        for _ in 0..2 {
            let (_, ticket) = t.begin(ip).unwrap();
            assert_eq!(ticket.failed(), None);
        }
        clock.advance(Duration::from_millis(60_001));
        // Both failures left the window: a third is not the third.
        let (d, ticket) = t.begin("2001:db8::2".parse().unwrap()).unwrap();
        assert_eq!(d, Duration::ZERO, "same /64, failures expired");
        assert_eq!(ticket.failed(), None);
    }

    #[test]
    fn parallel_checks_cannot_overshoot() {
        let (t, _) = throttle(100);
        let ip: IpAddr = "192.0.2.9".parse().unwrap();
        let (_, first) = t.begin(ip).unwrap();
        assert_eq!(first.failed(), None);
        let (_, a) = t.begin(ip).unwrap();
        let (_, _b) = t.begin(ip).unwrap();
        // One failure and two checks running: a fourth would exceed the budget.
        assert!(t.begin(ip).is_err());
        drop(a);
        assert!(t.begin(ip).is_ok());
    }

    #[test]
    fn table_is_bounded() {
        let (t, clock) = throttle(4);
        for i in 0..50u8 {
            let (_, ticket) = t.begin(IpAddr::from([198, 51, 100, i])).unwrap();
            let _ = ticket.failed();
            clock.advance(Duration::from_millis(10));
        }
        assert!(t.table.lock().unwrap().len() <= 4);
        // The most recent guesser is still remembered.
        assert_eq!(t.begin(IpAddr::from([198, 51, 100, 49])).unwrap().0, Duration::from_millis(100));
    }
}
