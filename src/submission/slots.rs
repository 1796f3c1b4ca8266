//! Receiving slots: at most `limits.max_concurrent_data` messages are
//! received at once, from the `354` to the reply after the body. A
//! session beyond them waits for its `354`, in turn.
//!
//! Under more load than the machine can take, every session in DATA
//! shares the CPU and the disk with every other, so all of them wait
//! longer for their `250`: at 50 sessions on two cores, p99 from the end
//! of DATA to the `250` was 27-33 ms. That wait is the window in which a
//! client that gives up sends the message again. With the slots, the
//! sessions beyond them wait before the body instead, where nothing is at
//! stake: with 8 slots p99 was 15 ms, and as many messages went through.
//!
//! A slot is lent for [`LEASE`]: a message that takes longer to arrive (a
//! slow or stalled client, a very large message) gives its slot to the
//! next session and goes on without one, so slow clients cannot hold the
//! door shut for the others.

use crate::smtpd::Counters;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How long a message keeps its slot. 40 KB over loopback takes well
/// under a millisecond, over a slow link some tens.
pub const LEASE: Duration = Duration::from_secs(1);

/// The slots of all submission listeners; cheap to clone.
#[derive(Clone)]
pub struct Slots {
    free: Arc<Semaphore>,
    lease: Duration,
    /// Waits and lapsed leases, for `/metrics`.
    counters: Arc<Counters>,
}

/// A slot held; given back when dropped, or when its lease ends.
pub struct Slot {
    permit: Arc<Mutex<Option<OwnedSemaphorePermit>>>,
    lease: tokio::task::AbortHandle,
}

impl Slots {
    pub fn new(count: usize, lease: Duration, counters: Arc<Counters>) -> Self {
        Self { free: Arc::new(Semaphore::new(count.max(1))), lease, counters }
    }

    /// `limits.max_concurrent_data`, with 0 meaning four per CPU core.
    pub fn count(configured: usize, cores: usize) -> usize {
        if configured > 0 { configured } else { 4 * cores.max(1) }
    }

    /// Waits for a free slot (first come, first served).
    pub async fn take(&self) -> Slot {
        let permit = match self.free.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                self.counters.data_waited();
                self.free.clone().acquire_owned().await.expect("the semaphore is never closed")
            }
        };
        let permit = Arc::new(Mutex::new(Some(permit)));
        let lapsed = permit.clone();
        let (lease, counters) = (self.lease, self.counters.clone());
        let lease = tokio::spawn(async move {
            tokio::time::sleep(lease).await;
            if lapsed.lock().unwrap_or_else(PoisonError::into_inner).take().is_some() {
                counters.data_lease_lapsed();
                tracing::debug!(lease_ms = lease.as_millis() as u64, "a message took longer than its lease to arrive; its slot goes to the next session");
            }
        })
        .abort_handle();
        Slot { permit, lease }
    }

    #[cfg(test)]
    fn free(&self) -> usize {
        self.free.available_permits()
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.lease.abort();
        self.permit.lock().unwrap_or_else(PoisonError::into_inner).take();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_means_four_per_core() {
        for (configured, cores, want) in [(0, 2, 8), (0, 16, 64), (0, 0, 4), (3, 2, 3), (1, 64, 1)] {
            assert_eq!(Slots::count(configured, cores), want, "{configured} on {cores} cores");
        }
    }

    /// A slot is given back when dropped, or when its lease ends, and the
    /// next waiter gets it; a lapsed slot dropped later gives nothing back
    /// twice.
    #[tokio::test]
    async fn slots_come_back_when_dropped_or_lapsed() {
        let lease = Duration::from_millis(300);
        let counters = Arc::new(Counters::default());
        let slots = Slots::new(1, lease, counters.clone());
        let first = slots.take().await;
        let taken = std::time::Instant::now();
        assert_eq!(slots.free(), 0);
        let waiting = tokio::spawn({
            let slots = slots.clone();
            async move { slots.take().await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "the slot is held within its lease");
        let second = tokio::time::timeout(Duration::from_secs(5), waiting).await.expect("the lease ends").unwrap();
        assert!(taken.elapsed() >= lease, "{:?}", taken.elapsed());
        drop(first);
        assert_eq!(slots.free(), 0, "the lapsed slot went to the second, and is not given back twice");
        drop(second);
        assert_eq!(slots.free(), 1);
        let third = slots.take().await;
        drop(third);
        assert_eq!(slots.free(), 1, "given back when dropped within its lease");
        assert_eq!(counters.data_slots(), (1, 1), "one wait, one lapsed lease");
    }
}
