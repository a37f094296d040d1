//! The lock-free parts, exposed for the loom model tests (`--cfg loom` only).
#![allow(missing_docs, missing_debug_implementations)]

use crate::window::{self, Sample};

/// (calls, failures, slow).
pub type Totals = (u64, u64, u64);

fn totals(a: window::Aggregate) -> Totals {
    (a.calls, a.failures, a.slow)
}

pub struct CountWindow(window::CountWindow);

impl CountWindow {
    pub fn new(size: u32) -> Self {
        Self(window::CountWindow::new(size))
    }
    /// Records, then reads the totals (the window's record returns nothing).
    pub fn record(&self, failure: bool, slow: bool) -> Totals {
        let _ = self.0.record(Sample { failure, slow });
        totals(self.0.snapshot())
    }
    pub fn snapshot(&self) -> Totals {
        totals(self.0.snapshot())
    }
    pub fn reset(&self) {
        self.0.reset();
    }
}

pub struct TimeWindow(window::TimeWindow);

impl TimeWindow {
    pub fn new(length_nanos: u64, buckets: u32) -> Self {
        Self(window::TimeWindow::new(length_nanos, buckets))
    }
    /// Records, then reads the window at the same time.
    pub fn record(&self, now_nanos: u64, failure: bool, slow: bool) -> Totals {
        self.0.record(now_nanos, Sample { failure, slow });
        totals(self.0.snapshot(now_nanos))
    }
    /// Records; `false` if the call was too old to be taken.
    pub fn take(&self, now_nanos: u64, failure: bool, slow: bool) -> bool {
        self.0.record(now_nanos, Sample { failure, slow })
    }
    /// (calls, failures) ever taken, aged out or not.
    pub fn recorded(&self) -> (u64, u64) {
        self.0.recorded()
    }
    pub fn snapshot(&self, now_nanos: u64) -> Totals {
        totals(self.0.snapshot(now_nanos))
    }
}

pub struct TrialSlots(window::TrialSlots);

impl TrialSlots {
    pub fn new(tag: u16) -> Self {
        let slots = window::TrialSlots::new();
        slots.reset(tag);
        Self(slots)
    }
    pub fn try_acquire(&self, tag: u16, max: u16) -> bool {
        self.0.try_acquire(tag, max)
    }
    /// `Some((in_flight, successes, failures))` after the completion.
    pub fn complete(&self, tag: u16, verdict: Option<bool>) -> Option<(u16, u16, u16)> {
        self.0.complete(tag, verdict).map(|t| (t.in_flight, t.successes, t.failures))
    }
    pub fn tally(&self, tag: u16) -> (u16, u16, u16) {
        let t = self.0.tally(tag);
        (t.in_flight, t.successes, t.failures)
    }
}

pub struct StripedTimeWindow(window::StripedTimeWindow);

impl StripedTimeWindow {
    pub fn new(length_nanos: u64, buckets: u32, stripes: usize) -> Self {
        Self(window::StripedTimeWindow::new(length_nanos, buckets, stripes))
    }
    pub fn record(&self, stripe: usize, now_nanos: u64, failure: bool, slow: bool) {
        self.0.record(stripe, self.0.period(now_nanos), Sample { failure, slow });
    }
    pub fn snapshot(&self, now_nanos: u64) -> Totals {
        totals(self.0.snapshot(now_nanos))
    }
}
