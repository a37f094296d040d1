//! A constant limit (concurrency-limits `FixedLimit` and `SettableLimit`).

use palisade_core::config::{ensure, ConfigError};

use super::{LimitAlgorithm, Sample};

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
