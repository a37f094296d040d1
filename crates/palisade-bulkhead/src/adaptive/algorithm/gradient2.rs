//! Gradient2 (concurrency-limits `Gradient2Limit`).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use palisade_core::config::{ensure, ConfigError};

use super::estimate::{estimate_limit_methods, estimate_setters, Estimate};
use super::{trunc, IntFn, LimitAlgorithm, Sample};

/// An exponential moving average with a plain-mean warm-up (concurrency-limits'
/// `ExpAvgMeasurement`).
#[derive(Clone, Debug)]
pub(crate) struct ExpAvg {
    value: f64,
    sum: f64,
    count: usize,
    window: usize,
    warmup: usize,
}

impl ExpAvg {
    pub(crate) fn new(window: usize, warmup: usize) -> Self {
        Self { value: 0.0, sum: 0.0, count: 0, window, warmup }
    }

    pub(crate) fn add(&mut self, sample: f64) -> f64 {
        if self.count < self.warmup {
            self.count += 1;
            self.sum += sample;
            self.value = self.sum / self.count as f64;
        } else {
            let factor = 2.0 / (self.window as f64 + 1.0);
            self.value = self.value * (1.0 - factor) + sample * factor;
        }
        self.value
    }

    pub(crate) fn get(&self) -> f64 {
        self.value
    }
}

/// Compares a long-term average RTT with the latest one (concurrency-limits
/// `Gradient2Limit`).
///
/// For each sample, as the reference: the RTT (in nanoseconds) feeds the long average (an
/// exponential average over `long_window` samples after a 10-sample plain-mean warm-up);
/// when the long average is more than twice the sample it is pulled down by 5 %; with fewer
/// than half the limit in flight nothing changes; otherwise
/// `gradient = clamp(rtt_tolerance × long / rtt, 0.5, 1.0)`,
/// `new = limit × gradient + queue_size(limit)`, smoothed
/// `limit × (1 − smoothing) + new × smoothing` and clamped into `min_limit..=max_limit`.
///
/// Defaults (as the reference): initial 20, min 20, max 200, smoothing 0.2, queue size 4,
/// RTT tolerance 1.5, long window 600; plus `drop_backoff` 0.9 — a deliberate deviation, see
/// [`drop_backoff`](Self::drop_backoff) and the [module docs](super).
#[derive(Clone)]
pub struct Gradient2 {
    limit: Estimate,
    queue_size: IntFn,
    rtt_tolerance: f64,
    drop_backoff: Option<f64>,
    long_window: usize,
    long_rtt: ExpAvg,
}

impl fmt::Debug for Gradient2 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gradient2")
            .field("limit", &self.limit)
            .field("rtt_tolerance", &self.rtt_tolerance)
            .field("drop_backoff", &self.drop_backoff)
            .field("long_window", &self.long_window)
            .field("long_rtt", &Duration::from_nanos(self.long_rtt.get() as u64))
            .finish_non_exhaustive()
    }
}

impl Default for Gradient2 {
    fn default() -> Self {
        Self {
            limit: Estimate { value: 20.0, min_limit: 20, max_limit: 200, smoothing: 0.2 },
            queue_size: Arc::new(|_| 4),
            rtt_tolerance: 1.5,
            drop_backoff: Some(0.9),
            long_window: 600,
            long_rtt: ExpAvg::new(600, 10),
        }
    }
}

impl Gradient2 {
    estimate_setters!("The limit never goes below this.");

    /// A constant queue allowance added to `limit × gradient` (default 4).
    #[must_use]
    pub fn queue_size(self, n: usize) -> Self {
        self.queue_size_fn(move |_| n)
    }

    /// The queue allowance as a function of the limit (the reference's
    /// `queueSizeFunction`).
    #[must_use]
    pub fn queue_size_fn(mut self, f: impl Fn(usize) -> usize + Send + Sync + 'static) -> Self {
        self.queue_size = Arc::new(f);
        self
    }

    /// How much slower than the long-term average a call may be before the limit shrinks,
    /// at least 1.0 (default 1.5: up to 1.5 × the average counts as no queueing).
    #[must_use]
    pub fn rtt_tolerance(mut self, t: f64) -> Self {
        self.rtt_tolerance = t;
        self
    }

    /// Samples in the long-term RTT average (default 600).
    #[must_use]
    pub fn long_window(mut self, n: usize) -> Self {
        self.long_window = n;
        self.long_rtt = ExpAvg::new(n, 10);
        self
    }

    /// Factor applied to the limit on each dropped call, in `[0.5, 1.0)` (default 0.9); a
    /// drop then does not feed the RTT averages.
    ///
    /// **Deviation from concurrency-limits**, which ignores drops (its issue 176): a dropped
    /// call usually returns fast, and its short RTT would *raise* the limit while the service
    /// is failing. [`drops_as_samples`](Self::drops_as_samples) restores the reference.
    #[must_use]
    pub fn drop_backoff(mut self, r: f64) -> Self {
        self.drop_backoff = Some(r);
        self
    }

    /// Treats a drop like any other sample, exactly as concurrency-limits does.
    #[must_use]
    pub fn drops_as_samples(mut self) -> Self {
        self.drop_backoff = None;
        self
    }
}

impl LimitAlgorithm for Gradient2 {
    fn limit(&self) -> usize {
        self.limit.limit()
    }

    fn update(&mut self, s: &Sample) -> usize {
        if let (true, Some(backoff)) = (s.dropped, self.drop_backoff) {
            self.limit.value = self.limit.clamp(self.limit.value * backoff);
            return self.limit.limit();
        }
        let short = s.rtt_nanos();
        if short <= 0.0 {
            return self.limit.limit();
        }
        let estimate = self.limit.value;
        let queue_size = (self.queue_size)(trunc(estimate)) as f64;
        let long = self.long_rtt.add(short);
        // Latency back to normal after a long overload: pull the long average down faster.
        if long / short > 2.0 {
            self.long_rtt.value *= 0.95;
        }
        // Don't grow the limit when the application does not use it.
        if (s.in_flight as f64) < estimate / 2.0 {
            return trunc(estimate);
        }
        let gradient = (self.rtt_tolerance * long / short).clamp(0.5, 1.0);
        let next = estimate * gradient + queue_size;
        let next = estimate * (1.0 - self.limit.smoothing) + next * self.limit.smoothing;
        self.limit.value = self.limit.clamp(next);
        self.limit.limit()
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.limit.validate().map_err(|e| e.in_section("gradient2"))?;
        ensure(
            self.rtt_tolerance.is_finite() && self.rtt_tolerance >= 1.0,
            "gradient2.rtt_tolerance",
            "must be a finite number of at least 1.0",
        )?;
        if let Some(r) = self.drop_backoff {
            ensure((0.5..1.0).contains(&r), "gradient2.drop_backoff", "must be in [0.5, 1.0)")?;
        }
        ensure(self.long_window >= 1, "gradient2.long_window", "must be at least 1")
    }

    estimate_limit_methods!();
}

#[cfg(test)]
mod tests {
    use super::ExpAvg;

    /// concurrency-limits' `ExpAvgMeasurementTest.testWarmup`.
    #[test]
    fn exp_avg_warmup() {
        let mut avg = ExpAvg::new(100, 10);
        let expected = [10.0, 10.5, 11.0, 11.5, 12.0, 12.5, 13.0, 13.5, 14.0, 14.5];
        for (i, e) in expected.iter().enumerate() {
            avg.add(i as f64 + 10.0);
            assert!((avg.get() - e).abs() < 0.01, "{i}: {}", avg.get());
        }
        avg.add(100.0);
        assert!((avg.get() - 16.2).abs() < 0.1, "{}", avg.get());
    }
}
