//! Lock-free sliding windows with O(1) snapshots, and the half-open trial slots.
//!
//! Both windows keep a running aggregate (calls, failures, slow calls) next to their slots, so
//! reading the window's rates is one atomic load, never a scan. Every change to a slot is
//! made by an atomic read-modify-write whose exact delta is then added to the aggregate, so
//! the aggregate always equals the sum of the slots once the writers in flight are done.
//!
//! Aggregates pack several counters into one `u64`; a writer may briefly drive one field below
//! zero (it removes an old outcome before another writer has added it), so the fields are
//! decoded as signed numbers with carries, then clamped at zero.

mod count;
mod time;
mod trial;

use crate::sync::{AtomicU64, Ordering};

pub(crate) use count::{CountWindow, MAX_COUNT_WINDOW};
pub(crate) use time::StripedTimeWindow;
#[cfg(loom)]
pub(crate) use time::TimeWindow;
pub(crate) use trial::{TrialSlots, TrialTally};

/// Calls, failures and slow calls currently in a window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Aggregate {
    pub(crate) calls: u64,
    pub(crate) failures: u64,
    pub(crate) slow: u64,
}

/// One recorded outcome: a success or failure, slow or not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Sample {
    pub(crate) failure: bool,
    pub(crate) slow: bool,
}

#[cfg(all(test, not(loom)))]
pub(super) mod samples {
    use super::Sample;

    pub(crate) const OK: Sample = Sample { failure: false, slow: false };
    pub(crate) const FAIL: Sample = Sample { failure: true, slow: false };
    pub(crate) const SLOW_OK: Sample = Sample { failure: false, slow: true };
}

// === impl Window ===

/// `warm` when no full check has found the minimum number of calls yet (in this period).
const COLD: u64 = u64::MAX;

/// A count- or time-based window, and what it knows about the minimum number of calls.
///
/// A success that is not slow can only lower the rates, so it changes a decision only when
/// it brings the window up to the minimum number of calls. The window remembers when a
/// judgement found the minimum reached: a count window never loses calls (until a reset), and
/// a time window loses calls only when a new bucket period starts. While that holds, a plain
/// success is recorded without judging, which would read every stripe.
#[derive(Debug)]
pub(crate) struct Window {
    kind: WindowKind,
    /// The count window: 0 once it held the minimum; the time window: the bucket period in
    /// which it last held it; else [`COLD`].
    warm: AtomicU64,
}

#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // one per breaker, never moved
enum WindowKind {
    Count(CountWindow),
    Time(StripedTimeWindow),
}

impl Window {
    pub(crate) fn count(size: u32) -> Self {
        Self { kind: WindowKind::Count(CountWindow::new(size)), warm: AtomicU64::new(COLD) }
    }

    pub(crate) fn time(length_nanos: u64, buckets: u32, stripes: usize) -> Self {
        Self {
            kind: WindowKind::Time(StripedTimeWindow::new(length_nanos, buckets, stripes)),
            warm: AtomicU64::new(COLD),
        }
    }

    pub(crate) fn is_time(&self) -> bool {
        matches!(self.kind, WindowKind::Time(_))
    }

    /// `true` for a count window, whose position counter counts every recorded call.
    #[inline]
    pub(crate) fn counts_calls(&self) -> bool {
        matches!(self.kind, WindowKind::Count(_))
    }

    /// Successes ever recorded by the window itself (the calls for which [`record`](Self::record)
    /// said it took the call): a count window's position counter minus its failures (the
    /// breaker counts them, `count_failures`), a time window's totals.
    pub(crate) fn successes_recorded(&self, count_failures: u64) -> u64 {
        match &self.kind {
            WindowKind::Count(w) => w.calls_recorded().saturating_sub(count_failures),
            WindowKind::Time(w) => {
                let (calls, failures) = w.recorded();
                calls.saturating_sub(failures)
            }
        }
    }

    /// Records `sample`; returns whether the window took the call (a count window's
    /// position counter, a time window's totals then count it: see
    /// [`successes_recorded`](Self::successes_recorded)), and the window's aggregate when it has to be
    /// judged, `None` when the sample cannot change a decision (see the type's docs).
    #[inline]
    pub(crate) fn record(
        &self,
        stripe: usize,
        now_nanos: u64,
        sample: Sample,
        minimum_calls: u64,
    ) -> (bool, Option<Aggregate>) {
        let (claimed, period) = match &self.kind {
            WindowKind::Count(w) => (w.record(sample), 0),
            WindowKind::Time(w) => {
                let period = w.period(now_nanos);
                (w.record(stripe, period, sample), period)
            }
        };
        if !sample.failure && !sample.slow && self.warm.load(Ordering::Relaxed) == period {
            return (claimed, None);
        }
        let a = self.snapshot(now_nanos);
        if a.calls >= minimum_calls && self.warm.load(Ordering::Relaxed) != period {
            self.warm.store(period, Ordering::Relaxed);
        }
        (claimed, Some(a))
    }

    pub(crate) fn snapshot(&self, now_nanos: u64) -> Aggregate {
        match &self.kind {
            WindowKind::Count(w) => w.snapshot(),
            WindowKind::Time(w) => w.snapshot(now_nanos),
        }
    }

    pub(crate) fn reset(&self) {
        self.warm.store(COLD, Ordering::Relaxed);
        match &self.kind {
            WindowKind::Count(w) => w.reset(),
            WindowKind::Time(w) => w.reset(),
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::samples::{FAIL, OK, SLOW_OK};
    use super::*;

    #[test]
    fn a_plain_success_in_a_warm_window_is_not_judged() {
        let w = Window::count(4);
        let judged = |w: &Window, now, s, min| w.record(0, now, s, min).1.is_some();
        // Cold: every call is judged until the minimum (2) is reached.
        assert!(judged(&w, 0, OK, 2));
        assert!(judged(&w, 0, OK, 2));
        // Warm: successes cannot change a decision; failures and slow calls still can.
        assert!(!judged(&w, 0, OK, 2));
        assert!(judged(&w, 0, FAIL, 2));
        assert!(judged(&w, 0, SLOW_OK, 2));
        w.reset();
        assert!(judged(&w, 0, OK, 2), "cold again after a reset");
        // A time window is warm per bucket period: a new period is judged again.
        let s = 1_000_000_000;
        let t = Window::time(10 * s, 10, 2);
        let _ = t.record(0, 0, OK, 1);
        assert!(!judged(&t, s / 2, OK, 1));
        assert!(judged(&t, s, OK, 1));
    }
}
