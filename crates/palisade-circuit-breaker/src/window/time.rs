//! The time-based window: the outcomes of the last period of time, in buckets, striped.

use super::count::sign_extend;
use super::{Aggregate, Sample};
use crate::sync::{AtomicU64, CachePadded, Ordering};

const NO_EPOCH: u64 = u64::MAX;

/// The bucket period of `now_nanos`, kept below [`NO_EPOCH`]: with 1 ns buckets the last
/// nanosecond of the clock would otherwise be the "empty" mark, and a call recorded then
/// would count in a bucket no window sums (it shares the period before it instead).
#[inline]
fn period_of(now_nanos: u64, bucket_nanos: u64) -> u64 {
    (now_nanos / bucket_nanos).min(NO_EPOCH - 1)
}

fn unpack32(calls_failures: u64, slow: u64) -> Aggregate {
    let v = calls_failures as i64;
    let calls = sign_extend(calls_failures & 0xFFFF_FFFF, 32);
    let failures = v.wrapping_sub(calls) >> 32;
    Aggregate {
        calls: calls.max(0) as u64,
        failures: failures.max(0) as u64,
        slow: (slow as i64).max(0) as u64,
    }
}

#[derive(Debug)]
struct Bucket {
    /// Absolute index (`now / bucket length`) of the period this bucket counts, or `NO_EPOCH`.
    epoch: AtomicU64,
    /// `calls | failures << 32`.
    counts: AtomicU64,
    slow: AtomicU64,
}

/// Outcomes of the last `length`, in `buckets` buckets of `length / buckets` each.
///
/// A call leaves the window between `length - length / buckets` and `length` after it was
/// recorded. Recording is one atomic addition (two for a slow call) into the bucket of the
/// current period; the first call of a new period rotates that bucket (empties it). Judging
/// sums the buckets still in the window: that happens only when a call may change a decision
/// (see [`Window`]), so the pass path keeps no running total to update. Calls recorded
/// concurrently with the rotation of their bucket may be dropped, or counted with the next
/// period of that bucket: a handful of calls at a bucket edge, under concurrency, which
/// rates over a window shrug off.
///
/// Besides the window, it keeps every call it ever recorded (the calls and failures of the
/// buckets it emptied, plus the buckets'), so that the breaker's success counter needs no
/// write of its own for a call the window took.
#[derive(Debug)]
pub(crate) struct TimeWindow {
    /// A power of two of slots, at least `buckets`: period `idx` lives in slot
    /// `idx & mask`, found without a division.
    slots: Box<[Bucket]>,
    mask: u64,
    /// The configured number of buckets: the window is the last `buckets` periods.
    buckets: u64,
    bucket_nanos: u64,
    /// Calls counted in buckets since emptied (by a rotation or a reset).
    retired_calls: AtomicU64,
    /// Failures counted in buckets since emptied.
    retired_failures: AtomicU64,
}

impl TimeWindow {
    pub(crate) fn new(length_nanos: u64, buckets: u32) -> Self {
        let n = u64::from(buckets.max(1));
        let slots = n.next_power_of_two();
        Self {
            slots: (0..slots)
                .map(|_| Bucket {
                    epoch: AtomicU64::new(NO_EPOCH),
                    counts: AtomicU64::new(0),
                    slow: AtomicU64::new(0),
                })
                .collect(),
            mask: slots - 1,
            buckets: n,
            bucket_nanos: (length_nanos / n).max(1),
            retired_calls: AtomicU64::new(0),
            retired_failures: AtomicU64::new(0),
        }
    }

    /// Empties `bucket`'s counts, keeping them in the retired totals (a call added between
    /// a rotation and this swap counts in the new period, and once in the totals).
    fn retire(&self, bucket: &Bucket) {
        let old = bucket.counts.swap(0, Ordering::AcqRel);
        if old != 0 {
            self.retired_calls.fetch_add(old & 0xFFFF_FFFF, Ordering::Relaxed);
            self.retired_failures.fetch_add(old >> 32, Ordering::Relaxed);
        }
        bucket.slow.store(0, Ordering::Release);
    }

    /// Calls and failures ever recorded (in the window or aged out of it).
    pub(crate) fn recorded(&self) -> (u64, u64) {
        let (mut calls, mut failures) =
            (self.retired_calls.load(Ordering::Relaxed), self.retired_failures.load(Ordering::Relaxed));
        for bucket in &*self.slots {
            let counts = bucket.counts.load(Ordering::Relaxed);
            calls = calls.wrapping_add(counts & 0xFFFF_FFFF);
            failures = failures.wrapping_add(counts >> 32);
        }
        (calls, failures)
    }

    /// Makes `bucket` count period `idx`; `false` if it already counts a later period.
    fn rotate(&self, bucket: &Bucket, idx: u64) -> bool {
        let mut epoch = bucket.epoch.load(Ordering::Acquire);
        while epoch != idx {
            if epoch != NO_EPOCH && epoch > idx {
                return false;
            }
            match bucket.epoch.compare_exchange(epoch, idx, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    self.retire(bucket);
                    return true;
                }
                Err(current) => epoch = current,
            }
        }
        true
    }

    /// Records `sample` at `now_nanos`.
    #[cfg(any(test, loom))]
    pub(crate) fn record(&self, now_nanos: u64, sample: Sample) -> bool {
        self.record_in(period_of(now_nanos, self.bucket_nanos), sample)
    }

    /// Records `sample` in period `idx`; `false` if it is too old to be recorded (its
    /// bucket already counts a later period).
    #[inline]
    pub(crate) fn record_in(&self, idx: u64, sample: Sample) -> bool {
        let bucket = &self.slots[(idx & self.mask) as usize];
        if !self.rotate(bucket, idx) {
            return false;
        }
        bucket.counts.fetch_add(1 | (u64::from(sample.failure) << 32), Ordering::AcqRel);
        if sample.slow {
            bucket.slow.fetch_add(1, Ordering::AcqRel);
        }
        true
    }

    /// The aggregate of the window ending at `now_nanos`.
    #[cfg(any(test, loom))]
    pub(crate) fn snapshot(&self, now_nanos: u64) -> Aggregate {
        self.snapshot_in(period_of(now_nanos, self.bucket_nanos))
    }

    /// The aggregate of the window ending in period `idx`: the buckets of the last
    /// `buckets` periods.
    pub(crate) fn snapshot_in(&self, idx: u64) -> Aggregate {
        let mut counts = 0u64;
        let mut slow = 0u64;
        for bucket in &*self.slots {
            let epoch = bucket.epoch.load(Ordering::Acquire);
            if epoch != NO_EPOCH && epoch.saturating_add(self.buckets) > idx {
                counts = counts.wrapping_add(bucket.counts.load(Ordering::Acquire));
                slow = slow.wrapping_add(bucket.slow.load(Ordering::Acquire));
            }
        }
        unpack32(counts, slow)
    }

    pub(crate) fn reset(&self) {
        for bucket in &*self.slots {
            bucket.epoch.store(NO_EPOCH, Ordering::Release);
            self.retire(bucket);
        }
    }
}

// === impl StripedTimeWindow ===

/// A time window split into stripes, one per group of threads, summed when judged.
///
/// All stripes cut time into the same bucket periods, so the sum of the stripes' windows is
/// exactly the window of every call: striping changes where a call is counted, never what
/// the window holds. Each thread records into its own stripe (its cache lines are not
/// written by other threads); only judging reads every stripe.
#[derive(Debug)]
pub(crate) struct StripedTimeWindow {
    /// A power of two of stripes.
    stripes: Box<[CachePadded<TimeWindow>]>,
    bucket_nanos: u64,
    /// The latest bucket period seen: a time inside it is placed without a division.
    /// Written once per period. A hint only: whatever value a racing reader sees, it checks
    /// it against the time and divides when it does not fit, so the loom models leave it
    /// out (a std atomic).
    last_period: std::sync::atomic::AtomicU64,
}

impl StripedTimeWindow {
    pub(crate) fn new(length_nanos: u64, buckets: u32, stripes: usize) -> Self {
        let window = TimeWindow::new(length_nanos, buckets);
        let bucket_nanos = window.bucket_nanos;
        let mut all = vec![CachePadded(window)];
        all.extend(
            (1..stripes.max(1).next_power_of_two())
                .map(|_| CachePadded(TimeWindow::new(length_nanos, buckets))),
        );
        Self {
            stripes: all.into_boxed_slice(),
            bucket_nanos,
            last_period: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// The bucket period of `now_nanos`: the latest period seen when the time is in it (a
    /// multiplication), else a division (once per period, or for a late call).
    #[inline]
    pub(crate) fn period(&self, now_nanos: u64) -> u64 {
        let last = self.last_period.load(std::sync::atomic::Ordering::Relaxed);
        let start = last.wrapping_mul(self.bucket_nanos);
        if now_nanos.wrapping_sub(start) < self.bucket_nanos && now_nanos >= start {
            return last;
        }
        let period = period_of(now_nanos, self.bucket_nanos);
        if period > last {
            self.last_period.store(period, std::sync::atomic::Ordering::Relaxed);
        }
        period
    }

    /// Records `sample` in period `idx` in `stripe` (any number: it is reduced); `false` if
    /// the sample was too old to be recorded.
    #[inline]
    pub(crate) fn record(&self, stripe: usize, idx: u64, sample: Sample) -> bool {
        self.stripes[stripe & (self.stripes.len() - 1)].record_in(idx, sample)
    }

    /// Calls and failures ever recorded, summed over the stripes.
    pub(crate) fn recorded(&self) -> (u64, u64) {
        self.stripes
            .iter()
            .map(|s| s.recorded())
            .fold((0, 0), |(c, f), (c2, f2)| (c.wrapping_add(c2), f.wrapping_add(f2)))
    }

    /// The aggregate of every stripe's window ending at `now_nanos`.
    pub(crate) fn snapshot(&self, now_nanos: u64) -> Aggregate {
        // Judging is off the pass path: divide, and leave the cached period to recorders.
        let idx = period_of(now_nanos, self.bucket_nanos);
        let mut total = Aggregate::default();
        for stripe in &*self.stripes {
            let a = stripe.snapshot_in(idx);
            total.calls += a.calls;
            total.failures += a.failures;
            total.slow += a.slow;
        }
        total
    }

    pub(crate) fn reset(&self) {
        for stripe in &*self.stripes {
            stripe.reset();
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::super::samples::{FAIL, OK, SLOW_OK};
    use super::*;

    #[test]
    fn time_window_expires_buckets() {
        // 10 s in 10 buckets of 1 s.
        let s = 1_000_000_000;
        let w = TimeWindow::new(10 * s, 10);
        let rec = |now, sample| {
            w.record(now, sample);
            w.snapshot(now)
        };
        rec(0, FAIL);
        rec(s / 2, OK);
        assert_eq!(rec(3 * s, FAIL), Aggregate { calls: 3, failures: 2, slow: 0 });
        // At 10 s the bucket [0 s, 1 s) leaves.
        assert_eq!(w.snapshot(10 * s), Aggregate { calls: 1, failures: 1, slow: 0 });
        assert_eq!(rec(10 * s, SLOW_OK), Aggregate { calls: 2, failures: 1, slow: 1 });
        // Long idle: everything expires.
        assert_eq!(w.snapshot(100 * s), Aggregate::default());
        assert_eq!(rec(100 * s, FAIL), Aggregate { calls: 1, failures: 1, slow: 0 });
        // A stale reading (a call that ended before another recorded) still counts, in its
        // own period's bucket while that bucket holds no later period.
        assert_eq!(rec(99 * s, OK), Aggregate { calls: 2, failures: 1, slow: 0 });
        w.reset();
        assert_eq!(w.snapshot(100 * s), Aggregate::default());
    }

    #[test]
    fn a_time_window_of_three_buckets_holds_three_periods_in_four_slots() {
        let s = 1_000_000_000;
        let w = TimeWindow::new(3 * s, 3);
        for t in 0..3 {
            w.record(t * s, FAIL);
        }
        assert_eq!(w.snapshot(2 * s).calls, 3);
        // Period 0 leaves at 3 s although its slot is not reused yet ...
        assert_eq!(w.snapshot(3 * s).calls, 2);
        // ... and period 3 takes the fourth slot.
        w.record(3 * s, OK);
        assert_eq!(w.snapshot(3 * s), Aggregate { calls: 3, failures: 2, slow: 0 });
        // Period 4 reuses period 0's slot.
        w.record(4 * s, OK);
        assert_eq!(w.snapshot(4 * s), Aggregate { calls: 3, failures: 1, slow: 0 });
    }

    #[test]
    fn striped_time_window_is_the_sum_of_its_stripes() {
        let s = 1_000_000_000;
        let w = StripedTimeWindow::new(10 * s, 10, 3);
        w.record(0, 0, FAIL);
        w.record(1, 1, OK);
        w.record(7, 2, SLOW_OK); // any stripe number: reduced
        assert_eq!(w.snapshot(2 * s), Aggregate { calls: 3, failures: 1, slow: 1 });
        assert_eq!(w.snapshot(10 * s), Aggregate { calls: 2, failures: 0, slow: 1 });
        w.reset();
        assert_eq!(w.snapshot(10 * s), Aggregate::default());
    }

    #[test]
    fn a_time_window_keeps_every_call_it_took_in_its_totals() {
        // The breaker counts a success the window took only there: the totals must keep
        // the calls of emptied buckets (rotated or reset) and leave out refused ones.
        let s = 1_000_000_000;
        let w = StripedTimeWindow::new(2 * s, 2, 2);
        assert!(w.record(0, w.period(0), FAIL));
        assert!(w.record(1, w.period(s / 2), OK));
        assert!(w.record(0, w.period(s), SLOW_OK));
        assert_eq!(w.recorded(), (3, 1));
        // Period 2 reuses period 0's slot in stripe 0: its calls retire, still counted.
        assert!(w.record(0, w.period(2 * s), OK));
        assert_eq!(w.snapshot(2 * s), Aggregate { calls: 2, failures: 0, slow: 1 });
        assert_eq!(w.recorded(), (4, 1));
        // A call of period 0 ended late: its slot counts a later period, it is refused.
        assert!(!w.record(0, 0, OK));
        assert_eq!(w.recorded(), (4, 1));
        w.reset();
        assert_eq!(w.snapshot(2 * s), Aggregate::default());
        assert_eq!(w.recorded(), (4, 1));
    }

    #[test]
    fn the_cached_period_is_the_divided_one() {
        // Bucket of 3 ns: every time, in any order, lands in `now / 3`.
        let w = StripedTimeWindow::new(30, 10, 1);
        for now in [0, 1, 2, 3, 5, 6, 4, 2, 0, 29, 30, 31, 33, 9, u64::MAX / 2, 7, u64::MAX, 1] {
            assert_eq!(w.period(now), (now / 3).min(u64::MAX - 1), "at {now}");
        }
    }

    mod hint {
        use super::super::super::samples::OK;
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// The cached period is a hint: whatever times come, in any order (jumps forward,
            /// backwards, to the clock's ends, at and around bucket edges), a call is placed
            /// in the period of its own time, and it lands in that period's bucket.
            #[test]
            fn a_stale_period_hint_never_places_a_call_in_another_bucket(
                bucket_nanos in prop_oneof![1u64..8, 8u64..1_000_000_000, Just(u64::MAX / 3)],
                buckets in 1u32..12,
                times in proptest::collection::vec(
                    prop_oneof![
                        any::<u64>(),
                        0u64..64,
                        (0u64..64, 0u64..3).prop_map(|(k, d)| k.saturating_mul(1_000_000_000).saturating_sub(d)),
                        Just(u64::MAX),
                    ],
                    1..40,
                ),
            ) {
                let length = bucket_nanos.saturating_mul(u64::from(buckets));
                let w = StripedTimeWindow::new(length, buckets, 1);
                let bucket_nanos = w.bucket_nanos;
                let mut latest = None::<u64>;
                for now in times {
                    let idx = (now / bucket_nanos).min(u64::MAX - 1);
                    prop_assert_eq!(w.period(now), idx, "at {}", now);
                    // Recorded in its own period: counted in the window ending then, unless a
                    // later period already took its slot.
                    let before = w.snapshot(now).calls;
                    let recorded = w.record(0, w.period(now), OK);
                    let fresh = latest.is_none_or(|l| idx >= l);
                    if fresh {
                        prop_assert!(recorded, "a call of the latest period is recorded");
                    }
                    if recorded {
                        prop_assert_eq!(w.snapshot(now).calls, before + 1, "at {}", now);
                    }
                    latest = Some(latest.map_or(idx, |l| l.max(idx)));
                }
            }
        }
    }
}
