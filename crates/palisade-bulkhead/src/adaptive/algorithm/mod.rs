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
use std::time::Duration;

use palisade_core::config::{ensure, ensure_ordered, ConfigError};

mod aimd;
mod estimate;
mod fixed;
pub mod functions;
mod gradient2;
mod vegas;

pub use self::aimd::Aimd;
pub use self::fixed::Fixed;
pub use self::gradient2::Gradient2;
pub use self::vegas::{FloatFn, IntFn, Vegas};

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
