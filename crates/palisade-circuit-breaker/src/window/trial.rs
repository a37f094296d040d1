//! The half-open trial slots.

use crate::sync::{AtomicU64, Ordering};

/// The half-open trial slots of one half-open period, in one atomic word:
/// `tag:16 | in_flight:16 | successes:16 | failures:16`.
///
/// The tag is the period's generation, so a permit from an earlier period can neither take
/// nor free a slot of a later one. A trial takes a slot while
/// `in_flight + successes + failures < max`, so there are never more trials than `max`; a
/// trial that ends without a verdict (dropped, panicked, ignored) gives its slot back.
#[derive(Debug)]
pub(crate) struct TrialSlots {
    word: AtomicU64,
}

/// Successes and failures of the trials so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TrialTally {
    pub(crate) successes: u16,
    pub(crate) failures: u16,
    pub(crate) in_flight: u16,
}

fn fields(w: u64) -> (u16, u16, u16, u16) {
    ((w >> 48) as u16, (w >> 32) as u16, (w >> 16) as u16, w as u16)
}

fn word(tag: u16, in_flight: u16, successes: u16, failures: u16) -> u64 {
    (u64::from(tag) << 48) | (u64::from(in_flight) << 32) | (u64::from(successes) << 16) | u64::from(failures)
}

impl TrialSlots {
    pub(crate) fn new() -> Self {
        Self { word: AtomicU64::new(word(u16::MAX, 0, 0, 0)) }
    }

    /// Starts a new half-open period: all slots free.
    pub(crate) fn reset(&self, tag: u16) {
        self.word.store(word(tag, 0, 0, 0), Ordering::Release);
    }

    /// Takes a slot of period `tag` if one is free.
    pub(crate) fn try_acquire(&self, tag: u16, max: u16) -> bool {
        let mut cur = self.word.load(Ordering::Acquire);
        loop {
            let (t, in_flight, ok, failed) = fields(cur);
            if t != tag || u32::from(in_flight) + u32::from(ok) + u32::from(failed) >= u32::from(max) {
                return false;
            }
            let next = word(t, in_flight + 1, ok, failed);
            match self.word.compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return true,
                Err(actual) => cur = actual,
            }
        }
    }

    /// Ends a trial of period `tag`: `Some(failed)` counts it, `None` gives the slot back.
    /// Returns the tally after, or `None` if the period is over.
    pub(crate) fn complete(&self, tag: u16, verdict: Option<bool>) -> Option<TrialTally> {
        let mut cur = self.word.load(Ordering::Acquire);
        loop {
            let (t, in_flight, ok, failed) = fields(cur);
            if t != tag || in_flight == 0 {
                return None;
            }
            let (ok, failed) = match verdict {
                Some(true) => (ok, failed.saturating_add(1)),
                Some(false) => (ok.saturating_add(1), failed),
                None => (ok, failed),
            };
            let next = word(t, in_flight - 1, ok, failed);
            match self.word.compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    return Some(TrialTally { successes: ok, failures: failed, in_flight: in_flight - 1 })
                }
                Err(actual) => cur = actual,
            }
        }
    }

    /// The tally of period `tag` (zero if it is over).
    pub(crate) fn tally(&self, tag: u16) -> TrialTally {
        let (t, in_flight, ok, failed) = fields(self.word.load(Ordering::Acquire));
        if t == tag {
            TrialTally { successes: ok, failures: failed, in_flight }
        } else {
            TrialTally { successes: 0, failures: 0, in_flight: 0 }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn trial_slots_never_exceed_max() {
        let t = TrialSlots::new();
        t.reset(7);
        assert!(t.try_acquire(7, 2));
        assert!(t.try_acquire(7, 2));
        assert!(!t.try_acquire(7, 2));
        // A dropped trial frees its slot ...
        assert_eq!(t.complete(7, None), Some(TrialTally { successes: 0, failures: 0, in_flight: 1 }));
        assert!(t.try_acquire(7, 2));
        // ... a finished one keeps it.
        assert_eq!(t.complete(7, Some(false)), Some(TrialTally { successes: 1, failures: 0, in_flight: 1 }));
        assert!(!t.try_acquire(7, 2));
        // Another period's permits do nothing.
        assert_eq!(t.complete(8, Some(true)), None);
        assert!(!t.try_acquire(8, 2));
    }
}
