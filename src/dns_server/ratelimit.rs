//! Per-client response rate limiting: a token bucket per source address.
//!
//! An authoritative server on the Internet is a tool for reflection
//! attacks (spoofed UDP source, answers sent to the victim). Over its
//! budget a client still gets an answer, but a minimal truncated one
//! (TC=1, no records: "slip" in BIND's RRL), so a real resolver retries
//! over TCP, which cannot be spoofed and is not limited, while a reflected
//! flood gains nothing.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Most clients tracked; beyond it, idle buckets are forgotten.
const MAX_CLIENTS: usize = 10_000;

#[derive(Debug)]
pub struct RateLimiter {
    /// Responses per second (and burst size); 0 = unlimited.
    rate: u32,
    buckets: HashMap<IpAddr, (f64, Instant)>,
}

impl RateLimiter {
    pub fn new(rate: u32) -> Self {
        Self {
            rate,
            buckets: HashMap::new(),
        }
    }

    /// Whether `client` may have a full response at `now`; takes a token.
    pub fn allow(&mut self, client: IpAddr, now: Instant) -> bool {
        if self.rate == 0 {
            return true;
        }
        let rate = f64::from(self.rate);
        if self.buckets.len() >= MAX_CLIENTS {
            self.buckets.retain(|_, (_, at)| now.saturating_duration_since(*at) < Duration::from_secs(1));
        }
        let (tokens, at) = self.buckets.entry(client).or_insert((rate, now));
        let refill = now.saturating_duration_since(*at).as_secs_f64() * rate;
        *tokens = (*tokens + refill).min(rate);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refill_per_client() {
        let t0 = Instant::now();
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let mut l = RateLimiter::new(3);
        let got: Vec<bool> = (0..5).map(|_| l.allow(a, t0)).collect();
        assert_eq!(got, [true, true, true, false, false]);
        assert!(l.allow(b, t0), "another client has its own budget");
        assert!(!l.allow(a, t0 + Duration::from_millis(100)));
        assert!(l.allow(a, t0 + Duration::from_millis(400)), "one token back after 1/3 s");
        let mut off = RateLimiter::new(0);
        assert!((0..1000).all(|_| off.allow(a, t0)));
    }
}
