//! Limit algorithms: how the concurrency limit moves with each measured call.
//!
//! [`Aimd`], [`Vegas`] and [`Gradient2`] are ports of Netflix's
//! [concurrency-limits](https://github.com/Netflix/concurrency-limits) `AIMDLimit`,
//! `VegasLimit` and `Gradient2Limit` (and [`Fixed`] of `FixedLimit`/`SettableLimit`), with
//! the same defaults and the same arithmetic: fed the same sample sequence, they produce the
//! same limits. `tests/reference.rs` ports the reference's own test cases with their
//! numbers and replays 2,600 scripted samples (steady, rising, noisy and recovering latency,
//! drops) whose limits were computed by concurrency-limits itself
//! (`tests/data/Trajectories.java`), expecting the same limit after every sample.
//! [`functions`] holds the reference's `Log10RootIntFunction` and `SquareRootFunction`.
//!
//! # Deliberate deviations from concurrency-limits
//!
//! - **Gradient2 drops** (concurrency-limits issue 176, open): the reference ignores
//!   `didDrop`, so a dropped call — a timeout, an overload answer — that comes back fast
//!   *raises* the limit through its short RTT. Palisade's classifiers turn timeouts and
//!   503/`UNAVAILABLE` into drops, so here a drop does not feed the RTT averages and cuts the
//!   limit by [`drop_backoff`](Gradient2::drop_backoff) (0.9). [`Gradient2::drops_as_samples`]
//!   restores the reference behaviour exactly.
//! - **A zero RTT** (possible on a paused or coarse clock) is no sample for Vegas and
//!   Gradient2: the reference throws for Vegas and divides by zero for Gradient2.
//! - **Vegas `probe_multiplier(0)`** never probes; in the reference it probes on every
//!   sample (so the limit never moves).
//! - **A NaN new limit** (a user `increase_fn`/`decrease_fn` returning NaN) is ignored: the
//!   limit stays where it was instead of becoming `NaN` (0) for good.
//! - **An initial limit outside `min_limit..=max_limit`** is a [`ConfigError`] at build;
//!   the reference logs a warning and starts there.
//! - **`min_limit`** also exists for Vegas (default 1, the reference's floor).
//! - **The layer admits at least one call**: an algorithm allowed down to 0 (`min_limit(0)`
//!   for AIMD or Gradient2) still leaves a limit of 1 in the layer, so it can recover.
//! - **Runtime changes** ([`LimitAlgorithm::set_limit`], [`LimitAlgorithm::set_bounds`],
//!   from the layer's handle) exist for every algorithm, not only `SettableLimit`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use palisade_core::config::{ensure, ensure_ordered, ConfigError};
use palisade_core::rng::AtomicRng;

/// One measured call, fed to a [`LimitAlgorithm`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Sample {
    /// How long the call took.
    pub rtt: Duration,
    /// Calls in flight when this one started (itself included).
    pub in_flight: usize,
    /// Whether the call was dropped: a timeout or an overload answer (a
    /// [`Failure`](palisade_core::Outcome::Failure) for the layer's classifier).
    pub dropped: bool,
}

impl Sample {
    /// A sample.
    pub const fn new(rtt: Duration, in_flight: usize, dropped: bool) -> Self {
        Self { rtt, in_flight, dropped }
    }

    /// The RTT in nanoseconds as a float, as concurrency-limits measures it (a `long` of
    /// nanoseconds): whole numbers keep the arithmetic identical.
    fn rtt_nanos(&self) -> f64 {
        self.rtt.as_nanos() as f64
    }
}

/// Moves a concurrency limit from measured calls.
///
/// Implemented by [`Aimd`], [`Vegas`], [`Gradient2`] and [`Fixed`]; implement it for your
/// own. Calls are serialised by the layer (one `update` at a time). A panic in `update`
/// (or in a function given to [`Vegas`]) is caught by the layer: the limit stays where it
/// was and the call that fed the sample is not affected.
pub trait LimitAlgorithm: fmt::Debug + Send + 'static {
    /// The current limit (before any sample: the initial limit).
    fn limit(&self) -> usize;

    /// Takes one sample and returns the new limit (the layer keeps it at least 1).
    fn update(&mut self, sample: &Sample) -> usize;

    /// Checks the settings (called when the layer is built).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first invalid setting.
    fn validate(&self) -> Result<(), ConfigError> {
        Ok(())
    }

    /// `(min_limit, max_limit)`, when the algorithm has bounds.
    fn bounds(&self) -> Option<(usize, usize)> {
        None
    }

    /// Sets the limit directly (from [`AdaptiveLimitHandle::set_limit`](crate::AdaptiveLimitHandle::set_limit),
    /// already checked against [`bounds`](Self::bounds)); later samples move it from there.
    /// The default ignores it: the algorithm's next update decides again.
    fn set_limit(&mut self, limit: usize) {
        let _ = limit;
    }

    /// Changes the bounds; the limit is moved into them.
    ///
    /// # Errors
    ///
    /// The default refuses: the algorithm has no bounds that can be changed.
    fn set_bounds(&mut self, min_limit: usize, max_limit: usize) -> Result<(), ConfigError> {
        let _ = (min_limit, max_limit);
        Err(ConfigError::new("max_limit", "this algorithm's bounds cannot be changed"))
    }
}

impl LimitAlgorithm for Box<dyn LimitAlgorithm> {
    fn limit(&self) -> usize {
        (**self).limit()
    }

    fn update(&mut self, sample: &Sample) -> usize {
        (**self).update(sample)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        (**self).validate()
    }

    fn bounds(&self) -> Option<(usize, usize)> {
        (**self).bounds()
    }

    fn set_limit(&mut self, limit: usize) {
        (**self).set_limit(limit);
    }

    fn set_bounds(&mut self, min_limit: usize, max_limit: usize) -> Result<(), ConfigError> {
        (**self).set_bounds(min_limit, max_limit)
    }
}

/// Checks new bounds for `set_bounds`.
fn check_bounds(min: usize, max: usize) -> Result<(), ConfigError> {
    ensure(max >= 1, "max_limit", "must be at least 1")?;
    ensure_ordered("min_limit", min, "max_limit", max)
}

/// `estimate` clamped into `[min, max]` (as a float limit).
fn clamp_f(estimate: f64, min: usize, max: usize) -> f64 {
    estimate.max(min as f64).min(max as f64)
}

/// The limit a float estimate stands for: truncated, as Java's `(int)` cast.
fn trunc(estimate: f64) -> usize {
    // `as` saturates and maps NaN to 0.
    estimate as usize
}

// === functions ===

/// The step functions concurrency-limits uses to scale Vegas' thresholds with the limit.
pub mod functions {
    /// `max(1, floor(log10(limit)))` — concurrency-limits' `Log10RootIntFunction.create(0)`,
    /// Vegas' default step (`log10(0)` counts as 1). Add a baseline yourself:
    /// `log10_root(n) + baseline` is `create(baseline)`.
    ///
    /// ```
    /// use palisade_bulkhead::adaptive::functions::log10_root;
    /// assert_eq!(log10_root(0), 1);
    /// assert_eq!(log10_root(100), 2);
    /// assert_eq!(log10_root(10_000), 4);
    /// ```
    pub fn log10_root(limit: usize) -> usize {
        if limit == 0 {
            1
        } else {
            (limit.ilog10() as usize).max(1)
        }
    }

    /// `max(1, floor(sqrt(limit)))` — concurrency-limits' `SquareRootFunction` (its
    /// `create(baseline)` is `square_root(n).max(baseline)`).
    ///
    /// ```
    /// use palisade_bulkhead::adaptive::functions::square_root;
    /// assert_eq!(square_root(0).max(4), 4);
    /// assert_eq!(square_root(999).max(4), 31);
    /// assert_eq!(square_root(2500).max(4), 50);
    /// ```
    pub fn square_root(limit: usize) -> usize {
        limit.isqrt().max(1)
    }
}

use self::functions::log10_root;

// === impl Aimd ===

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

// === impl Fixed ===

/// A limit that samples never move (concurrency-limits `FixedLimit`, and `SettableLimit`
/// through [`AdaptiveLimitHandle::set_limit`](crate::AdaptiveLimitHandle::set_limit)):
/// partitions, the LIFO backlog and run-time changes over a constant limit.
///
/// ```
/// use std::time::Duration;
/// use palisade_bulkhead::adaptive::{Fixed, LimitAlgorithm, Sample};
///
/// let mut fixed = Fixed::new(10);
/// assert_eq!(fixed.update(&Sample::new(Duration::from_secs(9), 10, true)), 10);
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Fixed {
    limit: usize,
}

impl Fixed {
    /// A limit of `limit` (at least 1).
    pub const fn new(limit: usize) -> Self {
        Self { limit }
    }
}

impl LimitAlgorithm for Fixed {
    fn limit(&self) -> usize {
        self.limit
    }

    fn update(&mut self, _: &Sample) -> usize {
        self.limit
    }

    fn validate(&self) -> Result<(), ConfigError> {
        ensure(self.limit >= 1, "fixed.limit", "must be at least 1")
    }

    fn bounds(&self) -> Option<(usize, usize)> {
        Some((1, usize::MAX))
    }

    fn set_limit(&mut self, limit: usize) {
        self.limit = limit;
    }
}

// === impl Vegas ===

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
/// alpha = 3·[`functions::log10_root`], beta = 6·log10_root,
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
    estimate: f64,
    min_limit: usize,
    max_limit: usize,
    smoothing: f64,
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
            .field("limit", &self.estimate)
            .field("min_limit", &self.min_limit)
            .field("max_limit", &self.max_limit)
            .field("smoothing", &self.smoothing)
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
            estimate: 20.0,
            min_limit: 1,
            max_limit: 1000,
            smoothing: 1.0,
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
    /// The starting limit.
    #[must_use]
    pub fn initial_limit(mut self, n: usize) -> Self {
        self.estimate = n as f64;
        self
    }

    /// The limit never goes below this (default 1, the reference's floor).
    #[must_use]
    pub fn min_limit(mut self, n: usize) -> Self {
        self.min_limit = n;
        self
    }

    /// The limit never goes above this (the reference's `maxConcurrency`).
    #[must_use]
    pub fn max_limit(mut self, n: usize) -> Self {
        self.max_limit = n;
        self
    }

    /// How much of each new estimate is taken, in `(0, 1]`.
    #[must_use]
    pub fn smoothing(mut self, s: f64) -> Self {
        self.smoothing = s;
        self
    }

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
            && self.probe_jitter * self.probe_multiplier as f64 * self.estimate <= self.probe_count as f64
    }

    fn update_estimate(&mut self, rtt: f64, noload: f64, s: &Sample) -> usize {
        let estimate = self.estimate;
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
        let next = clamp_f(next, self.min_limit.max(1), self.max_limit);
        self.estimate = (1.0 - self.smoothing) * estimate + self.smoothing * next;
        trunc(self.estimate)
    }
}

impl LimitAlgorithm for Vegas {
    fn limit(&self) -> usize {
        trunc(self.estimate)
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
        ensure(self.max_limit >= 1, "vegas.max_limit", "must be at least 1")?;
        ensure_ordered("vegas.min_limit", self.min_limit, "vegas.max_limit", self.max_limit)?;
        ensure(
            (self.min_limit as f64..=self.max_limit as f64).contains(&self.estimate),
            "vegas.initial_limit",
            "must be within min_limit..=max_limit",
        )?;
        ensure(self.smoothing > 0.0 && self.smoothing <= 1.0, "vegas.smoothing", "must be in (0, 1]")
    }

    fn bounds(&self) -> Option<(usize, usize)> {
        Some((self.min_limit, self.max_limit))
    }

    fn set_limit(&mut self, limit: usize) {
        self.estimate = limit as f64;
    }

    fn set_bounds(&mut self, min_limit: usize, max_limit: usize) -> Result<(), ConfigError> {
        check_bounds(min_limit, max_limit)?;
        self.min_limit = min_limit;
        self.max_limit = max_limit;
        self.estimate = clamp_f(self.estimate, min_limit, max_limit);
        Ok(())
    }
}

// === impl Gradient2 ===

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
/// [`drop_backoff`](Self::drop_backoff) and the [module docs](self).
#[derive(Clone)]
pub struct Gradient2 {
    estimate: f64,
    min_limit: usize,
    max_limit: usize,
    smoothing: f64,
    queue_size: IntFn,
    rtt_tolerance: f64,
    drop_backoff: Option<f64>,
    long_window: usize,
    long_rtt: ExpAvg,
}

impl fmt::Debug for Gradient2 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gradient2")
            .field("limit", &self.estimate)
            .field("min_limit", &self.min_limit)
            .field("max_limit", &self.max_limit)
            .field("smoothing", &self.smoothing)
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
            estimate: 20.0,
            min_limit: 20,
            max_limit: 200,
            smoothing: 0.2,
            queue_size: Arc::new(|_| 4),
            rtt_tolerance: 1.5,
            drop_backoff: Some(0.9),
            long_window: 600,
            long_rtt: ExpAvg::new(600, 10),
        }
    }
}

impl Gradient2 {
    /// The starting limit.
    #[must_use]
    pub fn initial_limit(mut self, n: usize) -> Self {
        self.estimate = n as f64;
        self
    }

    /// The limit never goes below this.
    #[must_use]
    pub fn min_limit(mut self, n: usize) -> Self {
        self.min_limit = n;
        self
    }

    /// The limit never goes above this (the reference's `maxConcurrency`).
    #[must_use]
    pub fn max_limit(mut self, n: usize) -> Self {
        self.max_limit = n;
        self
    }

    /// How much of each new estimate is taken, in `(0, 1]`.
    #[must_use]
    pub fn smoothing(mut self, s: f64) -> Self {
        self.smoothing = s;
        self
    }

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
        trunc(self.estimate)
    }

    fn update(&mut self, s: &Sample) -> usize {
        let (min, max) = (self.min_limit, self.max_limit);
        if let (true, Some(backoff)) = (s.dropped, self.drop_backoff) {
            self.estimate = clamp_f(self.estimate * backoff, min, max);
            return trunc(self.estimate);
        }
        let short = s.rtt_nanos();
        if short <= 0.0 {
            return trunc(self.estimate);
        }
        let estimate = self.estimate;
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
        let next = estimate * (1.0 - self.smoothing) + next * self.smoothing;
        self.estimate = clamp_f(next, min, max);
        trunc(self.estimate)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        ensure(self.max_limit >= 1, "gradient2.max_limit", "must be at least 1")?;
        ensure_ordered("gradient2.min_limit", self.min_limit, "gradient2.max_limit", self.max_limit)?;
        ensure(
            (self.min_limit as f64..=self.max_limit as f64).contains(&self.estimate),
            "gradient2.initial_limit",
            "must be within min_limit..=max_limit",
        )?;
        ensure(self.smoothing > 0.0 && self.smoothing <= 1.0, "gradient2.smoothing", "must be in (0, 1]")?;
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

    fn bounds(&self) -> Option<(usize, usize)> {
        Some((self.min_limit, self.max_limit))
    }

    fn set_limit(&mut self, limit: usize) {
        self.estimate = limit as f64;
    }

    fn set_bounds(&mut self, min_limit: usize, max_limit: usize) -> Result<(), ConfigError> {
        check_bounds(min_limit, max_limit)?;
        self.min_limit = min_limit;
        self.max_limit = max_limit;
        self.estimate = clamp_f(self.estimate, min_limit, max_limit);
        Ok(())
    }
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
