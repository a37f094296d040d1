//! AIMD (concurrency-limits `AIMDLimit`).

use std::time::Duration;

use palisade_core::config::{ensure, ensure_ordered, ConfigError};

use super::{check_bounds, trunc, LimitAlgorithm, Sample};

/// Additive increase, multiplicative decrease (concurrency-limits `AIMDLimit`): +1 per
/// successful call while at least half the limit is in use, × `backoff_ratio` (truncated)
/// per drop or per call slower than `timeout`, then clamped into `min_limit..=max_limit`.
///
/// Defaults (as the reference): initial 20, min 20, max 200, backoff 0.9, timeout 5 s.
///
/// ```
/// use std::time::Duration;
/// use palisade_bulkhead::adaptive::{Aimd, LimitAlgorithm, Sample};
///
/// let mut aimd = Aimd::default().initial_limit(10).min_limit(1).max_limit(100);
/// assert_eq!(aimd.update(&Sample::new(Duration::from_millis(5), 10, false)), 11);
/// assert_eq!(aimd.update(&Sample::new(Duration::from_millis(5), 11, true)), 9);
/// ```
#[derive(Clone, Debug)]
pub struct Aimd {
    limit: usize,
    min_limit: usize,
    max_limit: usize,
    backoff_ratio: f64,
    timeout: Duration,
}

impl Default for Aimd {
    fn default() -> Self {
        Self { limit: 20, min_limit: 20, max_limit: 200, backoff_ratio: 0.9, timeout: Duration::from_secs(5) }
    }
}

impl Aimd {
    /// The starting limit.
    #[must_use]
    pub fn initial_limit(mut self, n: usize) -> Self {
        self.limit = n;
        self
    }

    /// The limit never goes below this.
    #[must_use]
    pub fn min_limit(mut self, n: usize) -> Self {
        self.min_limit = n;
        self
    }

    /// The limit never goes above this.
    #[must_use]
    pub fn max_limit(mut self, n: usize) -> Self {
        self.max_limit = n;
        self
    }

    /// Factor applied on a drop, in `[0.5, 1.0)`.
    #[must_use]
    pub fn backoff_ratio(mut self, r: f64) -> Self {
        self.backoff_ratio = r;
        self
    }

    /// Calls slower than this count as drops.
    #[must_use]
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = d;
        self
    }
}

impl LimitAlgorithm for Aimd {
    fn limit(&self) -> usize {
        self.limit
    }

    fn update(&mut self, s: &Sample) -> usize {
        let mut limit = self.limit;
        if s.dropped || s.rtt > self.timeout {
            limit = trunc(limit as f64 * self.backoff_ratio);
        } else if s.in_flight.saturating_mul(2) >= limit {
            limit = limit.saturating_add(1);
        }
        self.limit = limit.max(self.min_limit).min(self.max_limit);
        self.limit
    }

    fn validate(&self) -> Result<(), ConfigError> {
        ensure(self.max_limit >= 1, "aimd.max_limit", "must be at least 1")?;
        ensure_ordered("aimd.min_limit", self.min_limit, "aimd.max_limit", self.max_limit)?;
        ensure(
            (self.min_limit..=self.max_limit).contains(&self.limit),
            "aimd.initial_limit",
            "must be within min_limit..=max_limit",
        )?;
        ensure((0.5..1.0).contains(&self.backoff_ratio), "aimd.backoff_ratio", "must be in [0.5, 1.0)")?;
        ensure(!self.timeout.is_zero(), "aimd.timeout", "must be greater than zero")
    }

    fn bounds(&self) -> Option<(usize, usize)> {
        Some((self.min_limit, self.max_limit))
    }

    fn set_limit(&mut self, limit: usize) {
        self.limit = limit;
    }

    fn set_bounds(&mut self, min_limit: usize, max_limit: usize) -> Result<(), ConfigError> {
        check_bounds(min_limit, max_limit)?;
        self.min_limit = min_limit;
        self.max_limit = max_limit;
        self.limit = self.limit.clamp(min_limit, max_limit);
        Ok(())
    }
}
