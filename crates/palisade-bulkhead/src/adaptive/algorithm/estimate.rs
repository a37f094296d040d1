//! The float limit Vegas and Gradient2 both move: its bounds, its smoothing, their setters
//! and their checks, written once.

use palisade_core::config::{ensure, ensure_ordered, ConfigError};

use super::{check_bounds, clamp_f, trunc};

/// A float limit within `min_limit..=max_limit`, each new estimate taken at `smoothing`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Estimate {
    /// The limit as a float (the reference keeps a `double`); the limit is its truncation.
    pub(crate) value: f64,
    pub(crate) min_limit: usize,
    pub(crate) max_limit: usize,
    pub(crate) smoothing: f64,
}

impl Estimate {
    /// The limit: the estimate truncated, as Java's `(int)` cast.
    pub(crate) fn limit(&self) -> usize {
        trunc(self.value)
    }

    /// `value` clamped into the bounds.
    pub(crate) fn clamp(&self, value: f64) -> f64 {
        clamp_f(value, self.min_limit, self.max_limit)
    }

    /// The bounds, the initial limit within them, the smoothing in `(0, 1]` (field names
    /// without the algorithm's section: the caller adds it with `ConfigError::in_section`).
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        ensure(self.max_limit >= 1, "max_limit", "must be at least 1")?;
        ensure_ordered("min_limit", self.min_limit, "max_limit", self.max_limit)?;
        ensure(
            (self.min_limit as f64..=self.max_limit as f64).contains(&self.value),
            "initial_limit",
            "must be within min_limit..=max_limit",
        )?;
        ensure(self.smoothing > 0.0 && self.smoothing <= 1.0, "smoothing", "must be in (0, 1]")
    }

    /// New bounds; the limit moves into them.
    pub(crate) fn set_bounds(&mut self, min_limit: usize, max_limit: usize) -> Result<(), ConfigError> {
        check_bounds(min_limit, max_limit)?;
        self.min_limit = min_limit;
        self.max_limit = max_limit;
        self.value = self.clamp(self.value);
        Ok(())
    }
}

/// The four setters of an algorithm whose settings include an [`Estimate`] in the field
/// `limit` (`$min_doc`: the doc line of `min_limit`).
macro_rules! estimate_setters {
    ($min_doc:literal) => {
        /// The starting limit.
        #[must_use]
        pub fn initial_limit(mut self, n: usize) -> Self {
            self.limit.value = n as f64;
            self
        }

        #[doc = $min_doc]
        #[must_use]
        pub fn min_limit(mut self, n: usize) -> Self {
            self.limit.min_limit = n;
            self
        }

        /// The limit never goes above this (the reference's `maxConcurrency`).
        #[must_use]
        pub fn max_limit(mut self, n: usize) -> Self {
            self.limit.max_limit = n;
            self
        }

        /// How much of each new estimate is taken, in `(0, 1]`.
        #[must_use]
        pub fn smoothing(mut self, s: f64) -> Self {
            self.limit.smoothing = s;
            self
        }
    };
}

/// The run-time methods of [`LimitAlgorithm`](super::LimitAlgorithm) for an algorithm whose
/// limit is an [`Estimate`] in the field `limit`.
macro_rules! estimate_limit_methods {
    () => {
        fn bounds(&self) -> Option<(usize, usize)> {
            Some((self.limit.min_limit, self.limit.max_limit))
        }

        fn set_limit(&mut self, limit: usize) {
            self.limit.value = limit as f64;
        }

        fn set_bounds(&mut self, min_limit: usize, max_limit: usize) -> Result<(), ConfigError> {
            self.limit.set_bounds(min_limit, max_limit)
        }
    };
}

pub(crate) use {estimate_limit_methods, estimate_setters};
