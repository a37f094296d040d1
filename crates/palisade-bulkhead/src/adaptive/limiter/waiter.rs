//! A caller waiting in the backlog: the grant/register handshake, the one lock-free protocol
//! of the adaptive limit; loom checks it (`tests/loom.rs`).

#[cfg(loom)]
use loom::sync::{atomic::AtomicBool as WaiterFlag, Mutex as WaiterMutex};
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
#[cfg(not(loom))]
use std::sync::{atomic::AtomicBool as WaiterFlag, Mutex as WaiterMutex};
use std::task::Waker;

/// One caller waiting in the backlog; shared between the backlog and the caller's future.
///
/// The caller registers its waker, then looks at `granted`; the granter sets `granted`, then
/// takes the waker. Either the caller sees the grant or the granter sees the waker.
#[derive(Default)]
pub(crate) struct Waiter {
    granted: WaiterFlag,
    /// Calls in flight when capacity was handed over (the sample's `in_flight`, as the
    /// reference's LIFO limiter acquires for the waiter when it unblocks it).
    pub(super) in_flight: AtomicUsize,
    waker: WaiterMutex<Option<Waker>>,
}

impl fmt::Debug for Waiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Waiter")
            .field("granted", &self.granted.load(Ordering::Acquire))
            .finish_non_exhaustive()
    }
}

impl Waiter {
    /// Whether capacity was handed to this waiter.
    pub(crate) fn is_granted(&self) -> bool {
        self.granted.load(Ordering::Acquire)
    }

    /// Registers the waker to wake on a grant (before looking at [`is_granted`](Self::is_granted)).
    pub(crate) fn register(&self, waker: &Waker) {
        #[cfg(not(loom))]
        let mut slot = palisade_core::sync::lock(&self.waker);
        #[cfg(loom)]
        let mut slot = self.waker.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match &*slot {
            Some(w) if w.will_wake(waker) => {}
            _ => *slot = Some(waker.clone()),
        }
    }

    /// Hands capacity to this waiter and wakes it.
    pub(crate) fn grant(&self) {
        self.granted.store(true, Ordering::Release);
        #[cfg(not(loom))]
        let waker = palisade_core::sync::lock(&self.waker).take();
        #[cfg(loom)]
        let waker = self.waker.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        if let Some(w) = waker {
            w.wake();
        }
    }
}
