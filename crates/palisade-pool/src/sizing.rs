//! Sizing rules and the backoff between attempts to make a member.

use std::time::Duration;

use palisade_core::config::{ensure, ensure_ordered, ConfigError};

/// The largest `min_size` a pool accepts. A minimum is kept whatever the load (made at
/// start and after every loss), so it is bounded: a floor from a config typo (or
/// `usize::MAX`) would otherwise make members or resources until memory runs out. 4,096 is
/// far beyond any set of processes or connections one host keeps warm.
pub(crate) const MAX_MIN_SIZE: usize = 4096;

/// How many things (resources or members) a pool keeps: at least `min`, at most `max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Sizing {
    pub(crate) min: usize,
    pub(crate) max: usize,
}

impl Sizing {
    pub(crate) fn validate(self) -> Result<Self, ConfigError> {
        ensure(self.max >= 1, "max_size", "must be at least 1")?;
        ensure(self.min <= MAX_MIN_SIZE, "min_size", "must be at most 4096")?;
        ensure_ordered("min_size", self.min, "max_size", self.max)?;
        Ok(self)
    }

    /// Whether one more can be added when `current` exist.
    pub(crate) fn can_grow(self, current: usize) -> bool {
        current < self.max
    }

    /// Whether one can be removed when `current` exist.
    pub(crate) fn can_shrink(self, current: usize) -> bool {
        current > self.min
    }
}

/// Exponential backoff between failed attempts to make something: `base`, `2 * base`, …,
/// capped at `max`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Backoff {
    base: Duration,
    max: Duration,
    failures: u32,
}

impl Backoff {
    /// `base` and `max` as [`PoolConfig::validate`](crate::PoolConfig::validate) checked
    /// them: `base` not zero, `max` at least `base`.
    pub(crate) fn new(base: Duration, max: Duration) -> Self {
        Self { base, max, failures: 0 }
    }

    /// Records a failure and returns how long to wait before the next attempt.
    pub(crate) fn fail(&mut self) -> Duration {
        let shift = self.failures.min(20);
        self.failures = self.failures.saturating_add(1);
        self.base.saturating_mul(1u32 << shift).min(self.max)
    }

    /// Failures since the last success.
    pub(crate) fn failures(&self) -> u32 {
        self.failures
    }

    pub(crate) fn succeed(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(500));
        assert_eq!(b.fail(), Duration::from_millis(100));
        assert_eq!(b.fail(), Duration::from_millis(200));
        assert_eq!(b.fail(), Duration::from_millis(400));
        assert_eq!(b.fail(), Duration::from_millis(500));
        assert_eq!(b.failures(), 4);
        b.succeed();
        assert_eq!(b.fail(), Duration::from_millis(100));
        for _ in 0..100 {
            assert!(b.fail() <= Duration::from_millis(500));
        }
    }

    #[test]
    fn sizing_rules() {
        assert!(Sizing { min: 0, max: 0 }.validate().is_err());
        assert_eq!(Sizing { min: 4097, max: usize::MAX }.validate().unwrap_err().field(), "min_size");
        assert!(Sizing { min: 4096, max: usize::MAX }.validate().is_ok());
        assert_eq!(Sizing { min: 3, max: 2 }.validate().unwrap_err().field(), "min_size");
        let s = Sizing { min: 1, max: 2 }.validate().unwrap();
        assert!(s.can_grow(1) && !s.can_grow(2));
        assert!(s.can_shrink(2) && !s.can_shrink(1));
    }
}
