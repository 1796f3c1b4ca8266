//! The set of messages out of the scheduler's reach: claimed by a delivery
//! round, or held by an editor (admin retry/drop, a bounce). One mutex,
//! taken only for the instant of a set operation; a [`Hold`] guard is
//! built after that lock is gone, so its `Drop` (which takes the lock
//! again) can never run while the lock is held, and only when the insert
//! succeeded. A guard built eagerly inside the lock's scope once froze the
//! whole relay: when the insert failed, the guard-to-be was dropped with
//! the lock still held and deadlocked.

use crate::id::MessageId;
use std::collections::HashSet;
use std::sync::{Mutex, MutexGuard, PoisonError};

#[derive(Default)]
pub struct HoldSet {
    ids: Mutex<HashSet<MessageId>>,
    /// Poked whenever a message is released (the scheduler may be waiting
    /// for one that came due while it was held).
    pub released: tokio::sync::Notify,
}

impl HoldSet {
    fn ids(&self) -> MutexGuard<'_, HashSet<MessageId>> {
        // A poisoned lock only means a holder panicked; the set is intact.
        self.ids.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Holds `id`; `None` while someone else holds it.
    pub fn hold(&self, id: &MessageId) -> Option<Hold<'_>> {
        let inserted = self.ids().insert(*id);
        // The lock is released at the end of the statement above, and the
        // guard is built only when the insert succeeded: an eagerly built
        // guard (`then_some`) would be dropped on refusal and release the
        // other holder's message.
        inserted.then(|| Hold { set: self, id: *id, kept: false })
    }

    pub fn contains(&self, id: &MessageId) -> bool {
        self.ids().contains(id)
    }

    pub fn len(&self) -> usize {
        self.ids().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Releases a message held with [`Hold::keep`].
    pub fn release(&self, id: &MessageId) {
        let removed = self.ids().remove(id);
        if removed {
            self.released.notify_one();
        }
    }
}

/// A message held out of the scheduler's reach; released on drop unless
/// [`Hold::keep`] handed it to a delivery round.
pub struct Hold<'a> {
    set: &'a HoldSet,
    id: MessageId,
    kept: bool,
}

impl Hold<'_> {
    /// Keeps the message held after this guard is gone; the delivery round
    /// releases it ([`HoldSet::release`]) when it ends.
    pub fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for Hold<'_> {
    fn drop(&mut self) {
        if !self.kept {
            self.set.release(&self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    /// Runs `f` on a thread and fails (instead of hanging) if it does not
    /// return: a deadlock shows as a failed test.
    fn within(f: impl FnOnce() + Send + 'static) {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            f();
            let _ = tx.send(());
        });
        rx.recv_timeout(Duration::from_secs(5)).expect("deadlocked: the operation never returned");
    }

    #[test]
    fn a_held_message_cannot_be_held_twice_and_refusal_does_not_deadlock() {
        let set = Arc::new(HoldSet::default());
        let id = MessageId::generate(1_700_000_000_000);
        let s = set.clone();
        within(move || {
            let first = s.hold(&id).expect("free message is held");
            assert!(s.hold(&id).is_none(), "second hold must be refused");
            assert!(s.contains(&id));
            drop(first);
            assert!(!s.contains(&id));
            assert!(s.hold(&id).is_some(), "released message can be held again");
        });
    }

    #[test]
    fn kept_holds_stay_until_released() {
        let set = Arc::new(HoldSet::default());
        let id = MessageId::generate(1_700_000_000_000);
        let s = set.clone();
        within(move || {
            s.hold(&id).unwrap().keep();
            assert!(s.hold(&id).is_none());
            assert_eq!(s.len(), 1);
            s.release(&id);
            assert!(s.is_empty());
        });
    }
}
