//! The count-based window: the last N outcomes in a ring of one-byte slots.

use super::{Aggregate, Sample};
use crate::sync::{AtomicU64, AtomicU8, CachePadded, Ordering};

const EMPTY: u8 = 0;
const FILLED: u8 = 1;
const FAILED: u8 = 2;
const SLOW: u8 = 4;

const FIELD_BITS: u32 = 21;
const FIELD_MASK: u64 = (1 << FIELD_BITS) - 1;

/// The largest count-based window: each aggregate field holds up to 2^20 - 1.
pub(crate) const MAX_COUNT_WINDOW: u32 = (1 << (FIELD_BITS - 1)) - 1;

#[inline]
pub(super) fn sign_extend(v: u64, bits: u32) -> i64 {
    let shift = 64 - bits;
    ((v << shift) as i64) >> shift
}

/// The delta a slot code adds to the packed aggregate (`calls | failures << 21 | slow << 42`).
#[inline]
fn code_value(code: u8) -> i64 {
    if code == EMPTY {
        return 0;
    }
    1 + (i64::from(code & FAILED != 0) << FIELD_BITS) + (i64::from(code & SLOW != 0) << (2 * FIELD_BITS))
}

#[inline]
fn unpack21(v: u64) -> Aggregate {
    let v = v as i64;
    let calls = sign_extend(v as u64 & FIELD_MASK, FIELD_BITS);
    let rest = v.wrapping_sub(calls) >> FIELD_BITS;
    let failures = sign_extend(rest as u64 & FIELD_MASK, FIELD_BITS);
    let rest = rest.wrapping_sub(failures) >> FIELD_BITS;
    let slow = sign_extend(rest as u64 & FIELD_MASK, FIELD_BITS);
    Aggregate { calls: calls.max(0) as u64, failures: failures.max(0) as u64, slow: slow.max(0) as u64 }
}

/// The last `size` outcomes, in a ring of one-byte atomic slots.
///
/// Recording is at most three atomic operations: claim a position, swap the slot's outcome,
/// add the difference to the aggregate; when the outcome replaces an equal one (a success
/// replacing a success, the common case) only the first.
#[derive(Debug)]
pub(crate) struct CountWindow {
    slots: Box<[AtomicU8]>,
    head: CachePadded<AtomicU64>,
    totals: CachePadded<AtomicU64>,
}

impl CountWindow {
    pub(crate) fn new(size: u32) -> Self {
        let size = size.clamp(1, MAX_COUNT_WINDOW);
        Self {
            head: CachePadded(AtomicU64::new(0)),
            slots: (0..size).map(|_| AtomicU8::new(EMPTY)).collect(),
            totals: CachePadded(AtomicU64::new(0)),
        }
    }

    /// Records `sample` in place of the oldest outcome; returns whether it took a position
    /// (`false`: a success in a window full of successes, see below).
    #[inline]
    pub(crate) fn record(&self, sample: Sample) -> bool {
        let code = FILLED | if sample.failure { FAILED } else { 0 } | if sample.slow { SLOW } else { 0 };
        // A window full of plain successes stays the same whichever success a new plain
        // success replaces, and whichever success a later failure replaces: so such a
        // success takes no position at all, and a healthy breaker writes no line that other
        // threads write (the position counter is the one line every call would write).
        // Racing a failure changes nothing either: ordered before it, the success replaced a
        // success; after it, the oldest outcome, a success.
        if code == FILLED {
            let a = unpack21(self.totals.load(Ordering::Acquire));
            if a.failures == 0 && a.slow == 0 && a.calls == self.slots.len() as u64 {
                return false;
            }
        }
        // A 32-bit remainder is several times cheaper than a 64-bit one; when the position
        // wraps at 2^32 the ring skips a few slots once, which a sliding window does not mind.
        let pos = (self.head.fetch_add(1, Ordering::Relaxed) as u32) % (self.slots.len() as u32);
        let slot = &self.slots[pos as usize];
        // A healthy breaker replaces successes with successes: then neither the slot nor the
        // totals change, and neither cache line is written (the line stays shared between
        // the threads instead of bouncing). A writer racing on the same slot can only be
        // a lap ahead, which the unconditional swap would not order either.
        if slot.load(Ordering::Acquire) == code {
            return true;
        }
        let old = slot.swap(code, Ordering::AcqRel);
        if old != code {
            let delta = code_value(code).wrapping_sub(code_value(old)) as u64;
            self.totals.fetch_add(delta, Ordering::AcqRel);
        }
        true
    }

    /// Positions ever taken (never reset): every call the window took.
    pub(crate) fn calls_recorded(&self) -> u64 {
        self.head.load(Ordering::Relaxed)
    }

    pub(crate) fn snapshot(&self) -> Aggregate {
        unpack21(self.totals.load(Ordering::Acquire))
    }

    /// Empties every slot.
    pub(crate) fn reset(&self) {
        for slot in &*self.slots {
            let old = slot.swap(EMPTY, Ordering::AcqRel);
            if old != EMPTY {
                self.totals.fetch_sub(code_value(old) as u64, Ordering::AcqRel);
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::super::samples::{FAIL, OK, SLOW_OK};
    use super::*;

    #[test]
    fn count_window_keeps_the_last_n() {
        let w = CountWindow::new(3);
        let rec = |s| {
            let _ = w.record(s);
            w.snapshot()
        };
        assert_eq!(rec(FAIL), Aggregate { calls: 1, failures: 1, slow: 0 });
        rec(SLOW_OK);
        assert_eq!(rec(FAIL), Aggregate { calls: 3, failures: 2, slow: 1 });
        // The first failure leaves the window.
        assert_eq!(rec(OK), Aggregate { calls: 3, failures: 1, slow: 1 });
        assert_eq!(rec(OK), Aggregate { calls: 3, failures: 1, slow: 0 });
        // A success replacing a success changes nothing; in a window full of successes it
        // takes no position at all.
        assert_eq!(rec(OK), Aggregate { calls: 3, failures: 0, slow: 0 });
        assert!(!w.record(OK));
        assert!(w.record(FAIL));
        assert!(w.record(OK));
        assert_eq!(w.snapshot(), Aggregate { calls: 3, failures: 1, slow: 0 });
        // The failure ages out after three calls, as in any ring.
        let _ = w.record(OK);
        assert_eq!(w.snapshot(), Aggregate { calls: 3, failures: 1, slow: 0 });
        let _ = w.record(OK);
        assert_eq!(w.snapshot(), Aggregate { calls: 3, failures: 0, slow: 0 });
        w.reset();
        assert_eq!(w.snapshot(), Aggregate::default());
        assert_eq!(rec(FAIL), Aggregate { calls: 1, failures: 1, slow: 0 });
    }

    #[test]
    fn packed_fields_survive_transient_negatives() {
        // calls = -1 borrows from failures; decoding undoes the borrow.
        let v = (code_value(FILLED | FAILED) - 2) as u64;
        assert_eq!(unpack21(v), Aggregate { calls: 0, failures: 1, slow: 0 });
        let v = (-(1i64 << FIELD_BITS) + 3) as u64;
        assert_eq!(unpack21(v), Aggregate { calls: 3, failures: 0, slow: 0 });
    }

    #[test]
    fn largest_count_window_does_not_overflow() {
        let w = CountWindow::new(MAX_COUNT_WINDOW);
        for _ in 0..MAX_COUNT_WINDOW {
            let _ = w.record(Sample { failure: true, slow: true });
        }
        let a = w.snapshot();
        let n = u64::from(MAX_COUNT_WINDOW);
        assert_eq!((a.calls, a.failures, a.slow), (n, n, n));
    }
}
