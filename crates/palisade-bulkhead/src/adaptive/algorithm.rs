//! Limit algorithms: how the concurrency limit moves with each measured call.
//!
//! The three algorithms follow Netflix's
//! [concurrency-limits](https://github.com/Netflix/concurrency-limits) (`AIMDLimit`,
//! `VegasLimit`, `Gradient2Limit`) with the same defaults, and fix three of its known
//! failure modes:
//!
//! - **Gradient2 ignored drops** (concurrency-limits issue 176): a dropped call — timeout,
//!   overload response — usually comes back fast, so its short RTT *raised* the limit. Here
//!   a drop never feeds the RTT averages; it cuts the limit by `drop_backoff` (0.9).
//! - **Gradient2 grew while timeouts were steady** (issue 137): with every call timing out
//!   at the same latency the gradient is 1 and the limit climbed by `queue_size` per call to
//!   the maximum. Timeouts are drops here (they cut the limit), and the `queue_size`
//!   allowance is only added when no queueing is seen (gradient ≥ 1), so a limit under
//!   steady moderate queueing shrinks instead of creeping up (discussion in PR 134).
//! - **AIMD halved when at its maximum** (issue 155, fixed upstream by PR 174): here a
//!   limit at `max_limit` stays there while calls succeed.
//!
//! Vegas likewise keeps drops out of its no-load RTT estimate.

use std::fmt;
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
}

/// Moves a concurrency limit from measured calls.
///
/// Implemented by [`Aimd`], [`Vegas`] and [`Gradient2`]; implement it for your own. Calls
/// are serialised by the layer (one `update` at a time).
pub trait LimitAlgorithm: fmt::Debug + Send + 'static {
    /// The current limit (before any sample: the initial limit).
    fn limit(&self) -> usize;

    /// Takes one sample and returns the new limit (the layer keeps it at least 1).
    fn update(&mut self, sample: &Sample) -> usize;

    /// Checks the settings (called when the layer is built).
    fn validate(&self) -> Result<(), ConfigError> {
        Ok(())
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
}

// === impl Aimd ===

/// Additive increase, multiplicative decrease: +1 per successful call while at least half the
/// limit is in use, × `backoff_ratio` per drop (or per call slower than `timeout`).
///
/// Defaults (concurrency-limits `AIMDLimit`): initial 20, min 20, max 200, backoff 0.9,
/// timeout 5 s.
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
        let limit = self.limit;
        let next = if s.dropped || s.rtt > self.timeout {
            ((limit as f64 * self.backoff_ratio) as usize).min(limit.saturating_sub(1))
        } else if s.in_flight * 2 >= limit {
            limit + 1
        } else {
            limit
        };
        // No halving at the maximum: a limit that reached it stays there while calls succeed.
        self.limit = next.clamp(self.min_limit, self.max_limit);
        self.limit
    }

    fn validate(&self) -> Result<(), ConfigError> {
        ensure(self.min_limit >= 1, "aimd.min_limit", "must be at least 1")?;
        ensure_ordered("aimd.min_limit", self.min_limit, "aimd.max_limit", self.max_limit)?;
        ensure(
            (self.min_limit..=self.max_limit).contains(&self.limit),
            "aimd.initial_limit",
            "must be within min_limit..=max_limit",
        )?;
        ensure((0.5..1.0).contains(&self.backoff_ratio), "aimd.backoff_ratio", "must be in [0.5, 1.0)")?;
        ensure(!self.timeout.is_zero(), "aimd.timeout", "must be greater than zero")
    }
}

// === impl Vegas ===

/// `max(1, floor(log10(n)))` below 1000, `floor(sqrt(n))` above (concurrency-limits'
/// `Log10RootFunction`).
fn log10_root(n: usize) -> usize {
    if n < 1000 {
        (n.max(1).ilog10() as usize).max(1)
    } else {
        n.isqrt()
    }
}

/// TCP Vegas: estimates the queue from the no-load RTT (the minimum seen, re-probed now and
/// then) and grows the limit while the queue is small, shrinks it when it is large.
///
/// Defaults (concurrency-limits `VegasLimit`): initial 20, max 1000, smoothing 1.0,
/// alpha = 3·log10(limit), beta = 6·log10(limit), probe every ~30×limit calls.
#[derive(Debug)]
pub struct Vegas {
    estimate: f64,
    min_limit: usize,
    max_limit: usize,
    smoothing: f64,
    probe_multiplier: usize,
    probe_count: usize,
    probe_jitter: f64,
    rtt_noload: Option<Duration>,
    rng: AtomicRng,
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
            probe_multiplier: 30,
            probe_count: 0,
            probe_jitter,
            rtt_noload: None,
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

    /// The limit never goes below this (default 1).
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

    /// How much of each new estimate is taken, in `(0, 1]`.
    #[must_use]
    pub fn smoothing(mut self, s: f64) -> Self {
        self.smoothing = s;
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
        self.probe_jitter = 0.5 + self.rng.next_f64() / 2.0;
        self
    }

    fn apply(&mut self, next: f64) -> usize {
        let next = next.clamp(self.min_limit as f64, self.max_limit as f64);
        self.estimate = (1.0 - self.smoothing) * self.estimate + self.smoothing * next;
        self.estimate as usize
    }
}

impl LimitAlgorithm for Vegas {
    fn limit(&self) -> usize {
        self.estimate as usize
    }

    fn update(&mut self, s: &Sample) -> usize {
        let limit = self.estimate as usize;
        let log = log10_root(limit) as f64;
        if s.dropped {
            // A drop says nothing about the no-load RTT (it may be fast); it only shrinks.
            return self.apply(self.estimate - log);
        }
        if s.rtt.is_zero() {
            return limit;
        }
        self.probe_count += 1;
        if self.probe_multiplier > 0
            && self.probe_jitter * self.probe_multiplier as f64 * self.estimate <= self.probe_count as f64
        {
            self.probe_jitter = 0.5 + self.rng.next_f64() / 2.0;
            self.probe_count = 0;
            self.rtt_noload = Some(s.rtt);
            return limit;
        }
        let noload = match self.rtt_noload {
            Some(n) if s.rtt >= n => n,
            _ => {
                self.rtt_noload = Some(s.rtt);
                return limit;
            }
        };
        if s.in_flight * 2 < limit {
            return limit;
        }
        let queue = (self.estimate * (1.0 - noload.as_secs_f64() / s.rtt.as_secs_f64())).ceil();
        let (alpha, beta, threshold) = (3.0 * log, 6.0 * log, log);
        let next = if queue <= threshold {
            self.estimate + beta
        } else if queue < alpha {
            self.estimate + log
        } else if queue > beta {
            self.estimate - log
        } else {
            return limit;
        };
        self.apply(next)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        ensure(self.min_limit >= 1, "vegas.min_limit", "must be at least 1")?;
        ensure_ordered("vegas.min_limit", self.min_limit, "vegas.max_limit", self.max_limit)?;
        ensure(
            (self.min_limit as f64..=self.max_limit as f64).contains(&self.estimate),
            "vegas.initial_limit",
            "must be within min_limit..=max_limit",
        )?;
        ensure(self.smoothing > 0.0 && self.smoothing <= 1.0, "vegas.smoothing", "must be in (0, 1]")
    }
}

// === impl Gradient2 ===

/// An exponential moving average with a plain-mean warm-up (concurrency-limits'
/// `ExpAvgMeasurement`).
#[derive(Clone, Debug)]
struct ExpAvg {
    value: f64,
    sum: f64,
    count: usize,
    window: usize,
    warmup: usize,
}

impl ExpAvg {
    fn new(window: usize, warmup: usize) -> Self {
        Self { value: 0.0, sum: 0.0, count: 0, window, warmup }
    }

    fn add(&mut self, sample: f64) -> f64 {
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
}

/// Compares a long-term average RTT with the latest one: the gradient
/// `clamp(long / short, 0.5, 1.0)` scales the limit, a small queue allowance lets it grow
/// when there is no queueing.
///
/// Defaults (concurrency-limits `Gradient2Limit`): initial 20, min 20, max 200,
/// smoothing 0.2, queue size 4, long window 600 samples; plus `drop_backoff` 0.9 (see the
/// [module docs](self) for how drops and steady timeouts are handled).
#[derive(Clone, Debug)]
pub struct Gradient2 {
    estimate: f64,
    min_limit: usize,
    max_limit: usize,
    smoothing: f64,
    queue_size: usize,
    drop_backoff: f64,
    long_rtt: ExpAvg,
}

impl Default for Gradient2 {
    fn default() -> Self {
        Self {
            estimate: 20.0,
            min_limit: 20,
            max_limit: 200,
            smoothing: 0.2,
            queue_size: 4,
            drop_backoff: 0.9,
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

    /// The limit never goes above this.
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

    /// How much the limit may grow per call while no queueing is seen.
    #[must_use]
    pub fn queue_size(mut self, n: usize) -> Self {
        self.queue_size = n;
        self
    }

    /// Samples in the long-term RTT average.
    #[must_use]
    pub fn long_window(mut self, n: usize) -> Self {
        self.long_rtt = ExpAvg::new(n, 10);
        self
    }

    /// Factor applied to the limit on each dropped call, in `[0.5, 1.0)`.
    #[must_use]
    pub fn drop_backoff(mut self, r: f64) -> Self {
        self.drop_backoff = r;
        self
    }
}

impl LimitAlgorithm for Gradient2 {
    fn limit(&self) -> usize {
        self.estimate as usize
    }

    fn update(&mut self, s: &Sample) -> usize {
        let (min, max) = (self.min_limit as f64, self.max_limit as f64);
        if s.dropped {
            // Drops never enter the RTT averages (a fast failure is no sign of spare room).
            self.estimate = (self.estimate * self.drop_backoff).clamp(min, max);
            return self.estimate as usize;
        }
        // In nanoseconds, as concurrency-limits: whole numbers keep the averages exact.
        let short = s.rtt.as_nanos() as f64;
        if short <= 0.0 {
            return self.estimate as usize;
        }
        let long = self.long_rtt.add(short);
        // Latency back to normal after a long overload: pull the long average down faster.
        if long / short > 2.0 {
            self.long_rtt.value *= 0.9;
        }
        // Don't grow when the application does not use the limit.
        if (s.in_flight as f64) < self.estimate / 2.0 {
            return self.estimate as usize;
        }
        let gradient = (long / short).clamp(0.5, 1.0);
        // The queue allowance only when nothing queues: under steady queueing at a small
        // limit, `limit × gradient + queue` would otherwise keep growing.
        let allowance = if gradient >= 1.0 { self.queue_size as f64 } else { 0.0 };
        let next = self.estimate * gradient + allowance;
        let next = self.estimate * (1.0 - self.smoothing) + next * self.smoothing;
        self.estimate = next.clamp(min, max);
        self.estimate as usize
    }

    fn validate(&self) -> Result<(), ConfigError> {
        ensure(self.min_limit >= 1, "gradient2.min_limit", "must be at least 1")?;
        ensure_ordered("gradient2.min_limit", self.min_limit, "gradient2.max_limit", self.max_limit)?;
        ensure(
            (self.min_limit as f64..=self.max_limit as f64).contains(&self.estimate),
            "gradient2.initial_limit",
            "must be within min_limit..=max_limit",
        )?;
        ensure(self.smoothing > 0.0 && self.smoothing <= 1.0, "gradient2.smoothing", "must be in (0, 1]")?;
        ensure((0.5..1.0).contains(&self.drop_backoff), "gradient2.drop_backoff", "must be in [0.5, 1.0)")?;
        ensure(self.long_rtt.window >= 1, "gradient2.long_window", "must be at least 1")
    }
}
