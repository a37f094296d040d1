//! How a ratio budget's deposits find their slot without reading the clock: the first
//! deposit of a slot reads the clock, publishes the slot and registers a tokio timer whose
//! waker withdraws it when the slot ends (see [`RetryBudget::deposit`]).

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Wake, Waker};

use tokio::time::{Instant, Sleep};

use super::{Kind, RatioBudget, RetryBudget};
use crate::sync::Ordering;

impl RetryBudget {
    #[cold]
    pub(super) fn deposit_slow(&self, r: &RatioBudget) {
        let now = Instant::now();
        let epoch = r.deposits.epoch(now);
        r.deposits.add_at(epoch, 1);
        if r.clock_only.load(Ordering::Relaxed) {
            return;
        }
        // One thread publishes; the others read the clock meanwhile.
        let Ok(mut timer) = r.slot_timer.try_lock() else { return };
        // Only a multi-thread runtime drives its timers for as long as it lives (and fires
        // them when it shuts down). A current-thread runtime drives them only inside its
        // `block_on`: one kept idle afterwards would leave its slot published for good, and
        // the deposits of every other runtime would go to a slot long ended (test
        // a_slot_published_by_an_idle_runtime_does_not_outlive_its_time). There, as outside
        // a runtime, every deposit reads the clock (as tower's `TpsBudget` always does).
        match tokio::runtime::Handle::try_current() {
            Ok(handle) if handle.runtime_flavor() != tokio::runtime::RuntimeFlavor::CurrentThread => {}
            Ok(_) => {
                r.clock_only.store(true, Ordering::Relaxed);
                return;
            }
            Err(_) => return,
        }
        let end = r.deposits.slot_end(now);
        let waker = timer
            .waker
            .get_or_insert_with(|| Waker::from(Arc::new(ClearSlot(Arc::downgrade(&self.kind)))))
            .clone();
        // Making a sleep panics in a runtime without timers, polling one in a runtime that is
        // shutting down: never publish there (deposits keep reading the clock), never let it
        // reach the caller.
        let registered = std::panic::catch_unwind(AssertUnwindSafe(|| {
            let mut sleep = Box::pin(tokio::time::sleep_until(end));
            let pending = sleep.as_mut().poll(&mut Context::from_waker(&waker)).is_pending();
            (sleep, pending)
        }));
        let Ok((sleep, pending)) = registered else {
            r.clock_only.store(true, Ordering::Relaxed);
            return;
        };
        let sleep = timer.sleep.insert(sleep);
        if !pending {
            return; // the slot already ended
        }
        r.current.store(epoch, Ordering::Release);
        // The timer may have fired between the poll and the store (another thread drives it).
        if sleep.is_elapsed() {
            r.current.store(0, Ordering::Release);
        }
    }
}

/// The timer of a ratio budget's published slot.
#[derive(Default)]
pub(super) struct SlotTimer {
    sleep: Option<Pin<Box<Sleep>>>,
    waker: Option<Waker>,
}

/// The timer's waker: the slot ended, deposits read the clock again.
struct ClearSlot(Weak<Kind>);

impl Wake for ClearSlot {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if let Some(kind) = self.0.upgrade() {
            if let Kind::Ratio(r) = &*kind {
                r.current.store(0, Ordering::Release);
            }
        }
    }
}
