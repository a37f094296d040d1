//! A lock-free sliding-window counter (the time base of budgets and throttles).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// Number of slots a window is cut into.
pub(crate) const SLOTS: usize = 10;

/// A sum over the last `window` of time, kept in [`SLOTS`] slots.
///
/// Each slot is one `AtomicU64` packing the slot's epoch (high 32 bits) and a signed 32-bit
/// value (low 32 bits), so a slot that belongs to an expired epoch is reset by the same
/// compare-and-swap that adds to it: no lock, no background task. Values saturate instead of
/// wrapping.
#[derive(Debug)]
pub(crate) struct SlidingCounter {
    slots: [AtomicU64; SLOTS],
    slot_nanos: u64,
    start: Instant,
}

fn pack(epoch: u32, value: i32) -> u64 {
    (u64::from(epoch) << 32) | u64::from(value as u32)
}

fn unpack(word: u64) -> (u32, i32) {
    ((word >> 32) as u32, word as u32 as i32)
}

impl SlidingCounter {
    /// A counter over `window` (at least `SLOTS` nanoseconds).
    pub(crate) fn new(window: Duration) -> Self {
        let nanos = u64::try_from(window.as_nanos()).unwrap_or(u64::MAX).max(SLOTS as u64);
        Self {
            slots: std::array::from_fn(|_| AtomicU64::new(0)),
            slot_nanos: nanos / SLOTS as u64,
            start: Instant::now(),
        }
    }

    /// The epoch (slot number since start) of `now`; starts at 1 so that zeroed slots are
    /// never mistaken for live ones.
    fn epoch(&self, now: Instant) -> u32 {
        let elapsed = u64::try_from(now.saturating_duration_since(self.start).as_nanos()).unwrap_or(u64::MAX);
        // Wraps after 2^32 slots; only equality and short distances are compared.
        ((elapsed / self.slot_nanos) as u32).wrapping_add(1)
    }

    /// Adds `delta` to the current slot.
    pub(crate) fn add(&self, now: Instant, delta: i32) {
        let epoch = self.epoch(now);
        let slot = &self.slots[epoch as usize % SLOTS];
        let mut current = slot.load(Ordering::Relaxed);
        loop {
            let (e, v) = unpack(current);
            let next = if e == epoch { pack(e, v.saturating_add(delta)) } else { pack(epoch, delta) };
            match slot.compare_exchange_weak(current, next, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return,
                Err(actual) => current = actual,
            }
        }
    }

    /// The sum of the slots within the window ending at `now`.
    pub(crate) fn sum(&self, now: Instant) -> i64 {
        let epoch = self.epoch(now);
        self.slots
            .iter()
            .map(|slot| unpack(slot.load(Ordering::Acquire)))
            .filter(|(e, _)| *e != 0 && epoch.wrapping_sub(*e) < SLOTS as u32)
            .map(|(_, v)| i64::from(v))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn values_expire_after_the_window() {
        let c = SlidingCounter::new(Duration::from_secs(10));
        c.add(Instant::now(), 5);
        tokio::time::advance(Duration::from_secs(5)).await;
        c.add(Instant::now(), -2);
        assert_eq!(c.sum(Instant::now()), 3);
        tokio::time::advance(Duration::from_millis(5500)).await;
        // The first slot (t = 0..1 s) has left the window.
        assert_eq!(c.sum(Instant::now()), -2);
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(c.sum(Instant::now()), 0);
        c.add(Instant::now(), 7);
        assert_eq!(c.sum(Instant::now()), 7);
    }

    #[test]
    fn saturates_instead_of_wrapping() {
        let c = SlidingCounter::new(Duration::from_secs(10));
        let now = Instant::now();
        c.add(now, i32::MAX);
        c.add(now, 10);
        assert_eq!(c.sum(now), i64::from(i32::MAX));
    }
}
