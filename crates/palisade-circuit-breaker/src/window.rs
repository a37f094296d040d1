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

use crate::sync::{AtomicU64, AtomicU8, CachePadded, Ordering};

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

// === impl CountWindow ===

const EMPTY: u8 = 0;
const FILLED: u8 = 1;
const FAILED: u8 = 2;
const SLOW: u8 = 4;

const FIELD_BITS: u32 = 21;
const FIELD_MASK: u64 = (1 << FIELD_BITS) - 1;

/// The largest count-based window: each aggregate field holds up to 2^20 - 1.
pub(crate) const MAX_COUNT_WINDOW: u32 = (1 << (FIELD_BITS - 1)) - 1;

fn sign_extend(v: u64, bits: u32) -> i64 {
    let shift = 64 - bits;
    ((v << shift) as i64) >> shift
}

/// The delta a slot code adds to the packed aggregate (`calls | failures << 21 | slow << 42`).
fn code_value(code: u8) -> i64 {
    if code == EMPTY {
        return 0;
    }
    1 + (i64::from(code & FAILED != 0) << FIELD_BITS) + (i64::from(code & SLOW != 0) << (2 * FIELD_BITS))
}

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

// === impl TimeWindow ===

const NO_EPOCH: u64 = u64::MAX;

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
        self.record_in(now_nanos / self.bucket_nanos, sample)
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
        self.snapshot_in(now_nanos / self.bucket_nanos)
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
    /// Written once per period.
    last_period: AtomicU64,
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
        Self { stripes: all.into_boxed_slice(), bucket_nanos, last_period: AtomicU64::new(0) }
    }

    /// The bucket period of `now_nanos`: the latest period seen when the time is in it (a
    /// multiplication), else a division (once per period, or for a late call).
    #[inline]
    pub(crate) fn period(&self, now_nanos: u64) -> u64 {
        let last = self.last_period.load(Ordering::Relaxed);
        let start = last.wrapping_mul(self.bucket_nanos);
        if now_nanos.wrapping_sub(start) < self.bucket_nanos && now_nanos >= start {
            return last;
        }
        let period = now_nanos / self.bucket_nanos;
        if period > last {
            self.last_period.store(period, Ordering::Relaxed);
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
        let idx = self.period(now_nanos);
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
            WindowKind::Count(w) => w.head.load(Ordering::Relaxed).saturating_sub(count_failures),
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

// === impl TrialSlots ===

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

    const OK: Sample = Sample { failure: false, slow: false };
    const FAIL: Sample = Sample { failure: true, slow: false };
    const SLOW_OK: Sample = Sample { failure: false, slow: true };

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
            assert_eq!(w.period(now), now / 3, "at {now}");
        }
    }

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
