//! A lock-free sliding-window counter (the time base of budgets and throttles).

use crate::sync::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// Number of slots a window is cut into.
pub(crate) const SLOTS: usize = 10;

/// A sum over the last `window` of time, kept in [`SLOTS`] slots.
///
/// Each slot is one `AtomicU64` packing the slot's epoch (high 32 bits) and a signed 32-bit
/// value (low 32 bits; the counters count events, one at a time), so a slot that belongs to an expired epoch is reset by the same
/// compare-and-swap that adds to it: no lock, no background task. Values saturate instead of
/// wrapping; epochs wrap after 2^32 − 1 slots and only short distances are compared.
#[derive(Debug)]
pub(crate) struct SlidingCounter {
    slots: [AtomicU64; SLOTS],
    slot_nanos: u64,
    start: Instant,
}

const VALUE_BITS: u32 = 32;
const VALUE_MASK: u64 = (1 << VALUE_BITS) - 1;
const VALUE_MAX: i64 = (1 << (VALUE_BITS - 1)) - 1;
/// Epochs run over `1..=EPOCH_MOD`; 0 marks a slot never written. 32 bits: the range wraps
/// after ~13.6 years of 100 ms slots (24 bits wrapped after 19.4 days, and a slot idle for
/// exactly that long was read as current).
const EPOCH_MOD: u32 = u32::MAX;

fn pack(epoch: u32, value: i64) -> u64 {
    (u64::from(epoch) << VALUE_BITS) | (value.clamp(-VALUE_MAX, VALUE_MAX) as u64 & VALUE_MASK)
}

fn unpack(word: u64) -> (u32, i64) {
    ((word >> VALUE_BITS) as u32, ((word << (64 - VALUE_BITS)) as i64) >> (64 - VALUE_BITS))
}

/// How far epoch `a` is after epoch `b`, modulo the epoch range.
fn distance(a: u32, b: u32) -> u32 {
    ((u64::from(a) + u64::from(EPOCH_MOD) - u64::from(b)) % u64::from(EPOCH_MOD)) as u32
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

    /// The epoch (slot number since start, wrapped into `1..=EPOCH_MOD`) of `now`.
    pub(crate) fn epoch(&self, now: Instant) -> u32 {
        let elapsed = u64::try_from(now.saturating_duration_since(self.start).as_nanos()).unwrap_or(u64::MAX);
        ((elapsed / self.slot_nanos) % u64::from(EPOCH_MOD)) as u32 + 1
    }

    /// When the slot holding `now` ends (saturating).
    pub(crate) fn slot_end(&self, now: Instant) -> Instant {
        let elapsed = u64::try_from(now.saturating_duration_since(self.start).as_nanos()).unwrap_or(u64::MAX);
        let end = (elapsed / self.slot_nanos).saturating_add(1).saturating_mul(self.slot_nanos);
        palisade_core::time::deadline_after(self.start, Duration::from_nanos(end))
    }

    /// Adds `delta` to the current slot.
    pub(crate) fn add(&self, now: Instant, delta: i64) {
        self.add_at(self.epoch(now), delta);
    }

    /// Adds `delta` to the slot of `epoch`, which may be a little stale (a clock reading
    /// taken before another thread's later one): when the slot already belongs to an epoch
    /// at most one window later, the value joins that later epoch instead of wiping it. Any
    /// other epoch in the slot is an expired one, however the modular distance looks: the
    /// slot is reset. (Joining any epoch "less than half the range ahead" kept slots last
    /// written more than half the epoch range ago — ~9.7 days with 100 ms slots — and
    /// credited fresh values to them, where `sum` never looks.) Returns the slot's new value.
    pub(crate) fn add_at(&self, epoch: u32, delta: i64) -> i64 {
        let slot = &self.slots[epoch as usize % SLOTS];
        let mut current = slot.load(Ordering::Relaxed);
        loop {
            let (e, v) = unpack(current);
            let keep = e == epoch || (e != 0 && distance(e, epoch) <= SLOTS as u32);
            let value = if keep { v.saturating_add(delta).clamp(-VALUE_MAX, VALUE_MAX) } else { delta };
            let next = pack(if keep { e } else { epoch }, value);
            match slot.compare_exchange_weak(current, next, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return value,
                Err(actual) => current = actual,
            }
        }
    }

    /// The sum of the slots within the window ending at `now`.
    pub(crate) fn sum(&self, now: Instant) -> i64 {
        self.sum_at(self.epoch(now))
    }

    /// The sum of the slots within the window ending at `epoch`.
    pub(crate) fn sum_at(&self, epoch: u32) -> i64 {
        self.slots
            .iter()
            .map(|slot| unpack(slot.load(Ordering::Acquire)))
            .filter(|(e, _)| *e != 0 && distance(epoch, *e) < SLOTS as u32)
            .map(|(_, v)| v)
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
        c.add(now, VALUE_MAX);
        c.add(now, 10);
        assert_eq!(c.sum(now), VALUE_MAX);
        c.add(now, -3 * VALUE_MAX);
        assert_eq!(c.sum(now), -VALUE_MAX);
    }

    #[test]
    fn a_stale_epoch_joins_the_later_one() {
        let c = SlidingCounter::new(Duration::from_secs(10));
        assert_eq!(c.add_at(12, 5), 5);
        // Epoch 2 shares slot 2 with epoch 12, which is later: add to it.
        assert_eq!(c.add_at(2, 1), 6);
        // Epoch 22 is later than 12: reset.
        assert_eq!(c.add_at(22, 1), 1);
        // A slot written about half the epoch range before the current epoch (same slot
        // index) looks "ahead" modulo the range, but it is an expired one: reset.
        let later = c.add_at(2 + (EPOCH_MOD / 2 / 10) * 10, 4);
        assert_eq!(later, 4);
        let far = 2 + (EPOCH_MOD / 2 / 10) * 10 + (EPOCH_MOD / 2 / 10) * 10 + 10;
        assert_eq!(c.add_at(far % EPOCH_MOD, 3), 3, "a slot written half the range ago is expired");
        assert_eq!(distance(1, EPOCH_MOD), 1);
    }
}

#[cfg(test)]
mod model {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The counter against a list of `(slot, delta)` entries summed over the window.
        #[test]
        fn matches_a_list_of_entries(ops in prop::collection::vec((0u64..2500, -50i32..50), 1..60)) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
            rt.block_on(async {
                let counter = SlidingCounter::new(Duration::from_secs(1)); // 100 ms slots
                let start = Instant::now();
                let mut entries: Vec<(u64, i64)> = Vec::new();
                for (advance_ms, delta) in ops {
                    tokio::time::advance(Duration::from_millis(advance_ms)).await;
                    let now = Instant::now();
                    let slot = now.duration_since(start).as_millis() as u64 / 100;
                    counter.add(now, i64::from(delta));
                    entries.push((slot, i64::from(delta)));
                    let expected: i64 = entries.iter().filter(|(s, _)| slot - s < SLOTS as u64).map(|(_, d)| d).sum();
                    prop_assert_eq!(counter.sum(now), expected);
                }
                Ok(())
            })?;
        }
    }
}
