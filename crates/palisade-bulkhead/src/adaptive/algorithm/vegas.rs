//! TCP Vegas (concurrency-limits `VegasLimit`).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use palisade_core::__private::AtomicRng;
use palisade_core::config::ConfigError;

use super::estimate::{estimate_limit_methods, estimate_setters, Estimate};
use super::functions::log10_root;
use super::{clamp_f, trunc, LimitAlgorithm, Sample};

/// A function of the (truncated) limit, for Vegas' alpha, beta and threshold.
pub type IntFn = Arc<dyn Fn(usize) -> usize + Send + Sync>;
/// A function of the (float) limit, for Vegas' increase and decrease.
pub type FloatFn = Arc<dyn Fn(f64) -> f64 + Send + Sync>;

/// TCP Vegas (concurrency-limits `VegasLimit`): estimates the queue from the no-load RTT
/// (the minimum seen, re-probed now and then) and grows the limit while the queue is small,
/// shrinks it when it is large or a call was dropped.
///
/// For each sample, as the reference: every `jitter × probe_multiplier × limit` samples
/// (jitter drawn from `[0.5, 1)`) the sample's RTT becomes the no-load RTT; a sample faster
/// than the no-load RTT replaces it; otherwise with `queue = ceil(limit × (1 − noload/rtt))`:
/// a drop → `decrease(limit)`; fewer than half the limit in flight → no change;
/// `queue ≤ threshold` → `limit + beta`; `queue < alpha` → `increase(limit)`;
/// `queue > beta` → `decrease(limit)`; else no change. The new limit is clamped into
/// `min_limit..=max_limit` and smoothed: `(1 − smoothing) × old + smoothing × new`.
///
/// Defaults (as the reference): initial 20, max 1000, smoothing 1.0, probe multiplier 30,
/// alpha = 3·[`functions::log10_root`](super::functions::log10_root), beta = 6·log10_root,
/// threshold = log10_root, increase = `limit + log10_root(limit)`,
/// decrease = `limit − log10_root(limit)`.
///
/// ```
/// use std::time::Duration;
/// use palisade_bulkhead::adaptive::{LimitAlgorithm, Sample, Vegas};
///
/// // concurrency-limits' VegasLimitTest.largeLimitIncrease.
/// let mut vegas = Vegas::default().initial_limit(10_000).max_limit(20_000);
/// assert_eq!(vegas.update(&Sample::new(Duration::from_secs(10), 5000, false)), 10_000);
/// assert_eq!(vegas.update(&Sample::new(Duration::from_secs(10), 6000, false)), 10_024);
/// ```
pub struct Vegas {
    limit: Estimate,
    alpha: IntFn,
    beta: IntFn,
    threshold: IntFn,
    increase: FloatFn,
    decrease: FloatFn,
    probe_multiplier: usize,
    probe_count: usize,
    probe_jitter: f64,
    /// In nanoseconds; 0 = none yet (as the reference).
    rtt_noload: f64,
    rng: AtomicRng,
}

impl fmt::Debug for Vegas {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vegas")
            .field("limit", &self.limit)
            .field("probe_multiplier", &self.probe_multiplier)
            .field("rtt_noload", &Duration::from_nanos(self.rtt_noload as u64))
            .finish_non_exhaustive()
    }
}

impl Default for Vegas {
    fn default() -> Self {
        let rng = AtomicRng::from_entropy();
        let probe_jitter = 0.5 + rng.next_f64() / 2.0;
        Self {
            limit: Estimate { value: 20.0, min_limit: 1, max_limit: 1000, smoothing: 1.0 },
            alpha: Arc::new(|limit| 3 * log10_root(limit)),
            beta: Arc::new(|limit| 6 * log10_root(limit)),
            threshold: Arc::new(log10_root),
            increase: Arc::new(|limit| limit + log10_root(trunc(limit)) as f64),
            decrease: Arc::new(|limit| limit - log10_root(trunc(limit)) as f64),
            probe_multiplier: 30,
            probe_count: 0,
            probe_jitter,
            rtt_noload: 0.0,
            rng,
        }
    }
}

impl Vegas {
    estimate_setters!("The limit never goes below this (default 1, the reference's floor).");

    /// A constant alpha (the reference's `alpha(int)`).
    #[must_use]
    pub fn alpha(self, alpha: usize) -> Self {
        self.alpha_fn(move |_| alpha)
    }

    /// Alpha as a function of the limit (the reference's `alphaFunction`): below it the
    /// queue is small enough to grow by `increase`.
    #[must_use]
    pub fn alpha_fn(mut self, f: impl Fn(usize) -> usize + Send + Sync + 'static) -> Self {
        self.alpha = Arc::new(f);
        self
    }

    /// A constant beta (the reference's `beta(int)`).
    #[must_use]
    pub fn beta(self, beta: usize) -> Self {
        self.beta_fn(move |_| beta)
    }

    /// Beta as a function of the limit (`betaFunction`): above it the queue is too long and
    /// the limit decreases; it is also the step of the aggressive increase.
    #[must_use]
    pub fn beta_fn(mut self, f: impl Fn(usize) -> usize + Send + Sync + 'static) -> Self {
        self.beta = Arc::new(f);
        self
    }

    /// The threshold as a function of the limit (`thresholdFunction`): at or below it there
    /// is no queue and the limit grows by beta.
    #[must_use]
    pub fn threshold_fn(mut self, f: impl Fn(usize) -> usize + Send + Sync + 'static) -> Self {
        self.threshold = Arc::new(f);
        self
    }

    /// The increased limit as a function of the limit (`increaseFunction`).
    #[must_use]
    pub fn increase_fn(mut self, f: impl Fn(f64) -> f64 + Send + Sync + 'static) -> Self {
        self.increase = Arc::new(f);
        self
    }

    /// The decreased limit as a function of the limit (`decreaseFunction`), also applied on
    /// every drop.
    #[must_use]
    pub fn decrease_fn(mut self, f: impl Fn(f64) -> f64 + Send + Sync + 'static) -> Self {
        self.decrease = Arc::new(f);
        self
    }

    /// Re-measure the no-load RTT every `jitter × multiplier × limit` calls (jitter drawn
    /// from `[0.5, 1)`); 0 never probes.
    #[must_use]
    pub fn probe_multiplier(mut self, m: usize) -> Self {
        self.probe_multiplier = m;
        self
    }

    /// Seeds the probe jitter, for reproducible runs.
    #[must_use]
    pub fn seed(mut self, seed: u64) -> Self {
        self.rng = AtomicRng::seeded(seed);
        self.reset_probe_jitter();
        self
    }

    fn reset_probe_jitter(&mut self) {
        self.probe_jitter = 0.5 + self.rng.next_f64() / 2.0;
    }

    fn should_probe(&self) -> bool {
        self.probe_multiplier > 0
            && self.probe_jitter * self.probe_multiplier as f64 * self.limit.value <= self.probe_count as f64
    }

    fn update_estimate(&mut self, rtt: f64, noload: f64, s: &Sample) -> usize {
        let estimate = self.limit.value;
        let current = trunc(estimate);
        let queue = (estimate * (1.0 - noload / rtt)).ceil();
        let next = if s.dropped {
            (self.decrease)(estimate)
        } else if (s.in_flight as f64) * 2.0 < estimate {
            // Prevent upward drift when not close to the limit.
            return current;
        } else {
            let alpha = (self.alpha)(current) as f64;
            let beta = (self.beta)(current) as f64;
            let threshold = (self.threshold)(current) as f64;
            if queue <= threshold {
                estimate + beta
            } else if queue < alpha {
                (self.increase)(estimate)
            } else if queue > beta {
                (self.decrease)(estimate)
            } else {
                return current;
            }
        };
        if next.is_nan() {
            // A user function gave no number: keep the limit rather than lose it for good.
            return current;
        }
        let next = clamp_f(next, self.limit.min_limit.max(1), self.limit.max_limit);
        let smoothing = self.limit.smoothing;
        self.limit.value = (1.0 - smoothing) * estimate + smoothing * next;
        self.limit.limit()
    }
}

impl LimitAlgorithm for Vegas {
    fn limit(&self) -> usize {
        self.limit.limit()
    }

    fn update(&mut self, s: &Sample) -> usize {
        let rtt = s.rtt_nanos();
        if rtt <= 0.0 {
            return self.limit();
        }
        self.probe_count += 1;
        if self.should_probe() {
            self.reset_probe_jitter();
            self.probe_count = 0;
            self.rtt_noload = rtt;
            return self.limit();
        }
        let noload = self.rtt_noload;
        if noload == 0.0 || rtt < noload {
            self.rtt_noload = rtt;
            return self.limit();
        }
        self.update_estimate(rtt, noload, s)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.limit.validate().map_err(|e| e.in_section("vegas"))
    }

    estimate_limit_methods!();
}
