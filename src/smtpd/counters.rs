//! Counts of what the SMTP servers refused, by reason, and of the waits
//! for a receiving slot, for `/metrics`.
//! Plain atomics behind an `Arc`, handed to each listener by the
//! composition root: no global registry.

use std::sync::atomic::{AtomicU64, Ordering};

/// Why a client was refused or cut off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `limits.max_connections` reached.
    Connections,
    /// `limits.max_connections_per_ip` reached.
    ConnectionsPerIp,
    /// A command line did not arrive within `limits.command_timeout_secs`.
    CommandTimeout,
    /// DATA slower than `limits.data_min_bytes_per_sec` or idle too long.
    DataTimeout,
    /// `limits.max_session_secs` reached.
    SessionLifetime,
    /// A NUL or another control byte in a command.
    ControlBytes,
    /// A wrong user name or password.
    AuthFailure,
    /// AUTH refused without checking: the address is locked out.
    AuthLockout,
}

impl Refusal {
    pub const ALL: [Refusal; 8] = [
        Refusal::Connections,
        Refusal::ConnectionsPerIp,
        Refusal::CommandTimeout,
        Refusal::DataTimeout,
        Refusal::SessionLifetime,
        Refusal::ControlBytes,
        Refusal::AuthFailure,
        Refusal::AuthLockout,
    ];

    /// The `reason` label in `/metrics`.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::Connections => "max_connections",
            Refusal::ConnectionsPerIp => "max_connections_per_ip",
            Refusal::CommandTimeout => "command_timeout",
            Refusal::DataTimeout => "data_timeout",
            Refusal::SessionLifetime => "session_lifetime",
            Refusal::ControlBytes => "control_bytes",
            Refusal::AuthFailure => "auth_failure",
            Refusal::AuthLockout => "auth_lockout",
        }
    }
}

/// One counter per [`Refusal`], and the waits for a receiving slot
/// (`limits.max_concurrent_data`): the kit counts them, the listener
/// that lends the slots reports to it.
#[derive(Debug, Default)]
pub struct Counters {
    counts: [AtomicU64; 8],
    /// Sessions that waited for a slot before their `354`.
    data_waits: AtomicU64,
    /// Messages that kept their slot past its lease and gave it up.
    data_leases_lapsed: AtomicU64,
}

impl Counters {
    pub fn count(&self, why: Refusal) {
        self.counts[why as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(&self, why: Refusal) -> u64 {
        self.counts[why as usize].load(Ordering::Relaxed)
    }

    pub fn data_waited(&self) {
        self.data_waits.fetch_add(1, Ordering::Relaxed);
    }

    pub fn data_lease_lapsed(&self) {
        self.data_leases_lapsed.fetch_add(1, Ordering::Relaxed);
    }

    /// `(waits, lapsed leases)` since start.
    pub fn data_slots(&self) -> (u64, u64) {
        (self.data_waits.load(Ordering::Relaxed), self.data_leases_lapsed.load(Ordering::Relaxed))
    }
}
