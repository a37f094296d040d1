//! Backoff strategies and jitter: how long to wait before the next attempt.
//!
//! The delay before retry `n` (`n = 1` before the second attempt) is computed in three
//! steps:
//!
//! 1. the [`Backoff`] strategy gives a raw delay for `n`;
//! 2. it is capped at the layer's `max_delay`;
//! 3. [`Jitter`] spreads it, following the definitions of the AWS Architecture Blog post
//!    "Exponential Backoff And Jitter" (Marc Brooker, 2015):
//!    - [`Jitter::None`]: the capped delay as is;
//!    - [`Jitter::Full`]: uniformly random in `[0, delay)`;
//!    - [`Jitter::Equal`]: `delay / 2` plus a random part in `[0, delay / 2)`;
//!    - [`Jitter::Decorrelated`]: `min(max_delay, random in [base, previous * 3))`, where
//!      `base` is the strategy's first delay and `previous` the last delay actually used
//!      (the strategy's growth is ignored, as in the blog post).
//!
//! A server-given hint (`Retry-After`, `grpc-retry-pushback-ms`) is applied afterwards as a
//! floor, and may exceed `max_delay` (see the layer docs).
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use palisade_retry::backoff::Backoff;
//!
//! let ms = Duration::from_millis;
//! let exp = Backoff::exponential(ms(100));
//! assert_eq!((1..=4).map(|n| exp.delay(n)).collect::<Vec<_>>(), [ms(100), ms(200), ms(400), ms(800)]);
//! let fib = Backoff::fibonacci(ms(10));
//! assert_eq!((1..=5).map(|n| fib.delay(n)).collect::<Vec<_>>(), [ms(10), ms(10), ms(20), ms(30), ms(50)]);
//! let lin = Backoff::linear(ms(100), ms(50));
//! assert_eq!(lin.delay(3), ms(200));
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use palisade_core::rng::AtomicRng;

/// How the raw delay grows with the retry number.
#[derive(Clone)]
#[non_exhaustive]
pub enum Backoff {
    /// The same delay every time.
    Fixed(Duration),
    /// `initial + step × (n − 1)`.
    Linear {
        /// Delay before the first retry.
        initial: Duration,
        /// Added for every further retry.
        step: Duration,
    },
    /// `base × multiplier^(n − 1)`.
    Exponential {
        /// Delay before the first retry.
        base: Duration,
        /// Growth factor (≥ 1).
        multiplier: f64,
    },
    /// `base × fib(n)` with `fib = 1, 1, 2, 3, 5, 8, …`.
    Fibonacci {
        /// Delay before the first and second retry.
        base: Duration,
    },
    /// A user function of the retry number (`1` before the second attempt).
    Custom(Arc<dyn Fn(u32) -> Duration + Send + Sync>),
}

impl fmt::Debug for Backoff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Fixed(d) => f.debug_tuple("Fixed").field(d).finish(),
            Self::Linear { initial, step } => {
                f.debug_struct("Linear").field("initial", initial).field("step", step).finish()
            }
            Self::Exponential { base, multiplier } => {
                f.debug_struct("Exponential").field("base", base).field("multiplier", multiplier).finish()
            }
            Self::Fibonacci { base } => f.debug_struct("Fibonacci").field("base", base).finish(),
            Self::Custom(_) => f.debug_tuple("Custom").finish_non_exhaustive(),
        }
    }
}

impl Default for Backoff {
    /// Exponential from 100 ms, doubling.
    fn default() -> Self {
        Self::exponential(Duration::from_millis(100))
    }
}

impl Backoff {
    /// The same delay before every retry.
    pub fn fixed(delay: Duration) -> Self {
        Self::Fixed(delay)
    }

    /// `initial`, then `step` more for every further retry.
    pub fn linear(initial: Duration, step: Duration) -> Self {
        Self::Linear { initial, step }
    }

    /// `base`, doubling for every further retry.
    pub fn exponential(base: Duration) -> Self {
        Self::Exponential { base, multiplier: 2.0 }
    }

    /// `base`, multiplied by `multiplier` for every further retry.
    pub fn exponential_with(base: Duration, multiplier: f64) -> Self {
        Self::Exponential { base, multiplier }
    }

    /// `base × fib(n)`: 1, 1, 2, 3, 5, 8, … times `base`.
    pub fn fibonacci(base: Duration) -> Self {
        Self::Fibonacci { base }
    }

    /// Any function of the retry number (`1` before the second attempt).
    pub fn custom<F>(f: F) -> Self
    where
        F: Fn(u32) -> Duration + Send + Sync + 'static,
    {
        Self::Custom(Arc::new(f))
    }

    /// The raw delay before retry `n` (`n = 1` before the second attempt), before the cap
    /// and jitter. Saturates at `Duration::MAX` instead of overflowing.
    pub fn delay(&self, n: u32) -> Duration {
        let n = n.max(1);
        match self {
            Self::Fixed(d) => *d,
            Self::Linear { initial, step } => initial.saturating_add(step.saturating_mul(n - 1)),
            Self::Exponential { base, multiplier } => {
                let secs = base.as_secs_f64() * multiplier.powi(i32::try_from(n - 1).unwrap_or(i32::MAX));
                Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX)
            }
            Self::Fibonacci { base } => {
                let (mut a, mut b) = (1u32, 1u32);
                for _ in 2..n {
                    let next = a.saturating_add(b);
                    a = b;
                    b = next;
                }
                base.saturating_mul(b)
            }
            Self::Custom(f) => f(n),
        }
    }

    pub(crate) fn validate(&self) -> Result<(), palisade_core::ConfigError> {
        use palisade_core::config::ensure;
        match self {
            Self::Exponential { multiplier, .. } => ensure(
                multiplier.is_finite() && *multiplier >= 1.0,
                "backoff",
                "exponential multiplier must be a finite number >= 1.0",
            ),
            _ => Ok(()),
        }
    }
}

/// How a delay is randomised; see the [module docs](self).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize), serde(rename_all = "snake_case"))]
#[non_exhaustive]
pub enum Jitter {
    /// No randomness.
    None,
    /// Uniform in `[0, delay)` (the default: it spreads retries the most).
    #[default]
    Full,
    /// `delay / 2 + uniform [0, delay / 2)`.
    Equal,
    /// `min(max_delay, uniform [base, previous × 3))`.
    Decorrelated,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Everything needed to compute the next delay.
#[derive(Clone, Debug)]
pub(crate) struct DelayPolicy {
    pub(crate) backoff: Backoff,
    pub(crate) jitter: Jitter,
    pub(crate) max_delay: Duration,
}

impl DelayPolicy {
    /// The delay before retry `n`, given the previous delay used (zero before the first).
    pub(crate) fn next(&self, n: u32, previous: Duration, rng: &AtomicRng) -> Duration {
        match self.jitter {
            Jitter::None => self.backoff.delay(n).min(self.max_delay),
            Jitter::Full => {
                let d = self.backoff.delay(n).min(self.max_delay);
                Duration::from_nanos(rng.below(nanos(d)))
            }
            Jitter::Equal => {
                let d = nanos(self.backoff.delay(n).min(self.max_delay));
                let half = d / 2;
                Duration::from_nanos(half + rng.below(d - half))
            }
            Jitter::Decorrelated => {
                let base = nanos(self.backoff.delay(1).min(self.max_delay));
                let prev = if previous.is_zero() { base } else { nanos(previous) };
                let hi = prev.saturating_mul(3);
                let d = if hi > base { base + rng.below(hi - base) } else { base };
                Duration::from_nanos(d).min(self.max_delay)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn strategies_give_their_sequences() {
        let seq = |b: Backoff| (1..=5).map(|n| b.delay(n)).collect::<Vec<_>>();
        assert_eq!(seq(Backoff::fixed(ms(7))), [ms(7); 5]);
        assert_eq!(seq(Backoff::linear(ms(100), ms(50))), [ms(100), ms(150), ms(200), ms(250), ms(300)]);
        assert_eq!(seq(Backoff::exponential_with(ms(10), 3.0)), [ms(10), ms(30), ms(90), ms(270), ms(810)]);
        assert_eq!(seq(Backoff::fibonacci(ms(1))), [ms(1), ms(1), ms(2), ms(3), ms(5)]);
        assert_eq!(seq(Backoff::custom(|n| ms(u64::from(n) * 11))), [ms(11), ms(22), ms(33), ms(44), ms(55)]);
    }

    #[test]
    fn huge_delays_saturate() {
        assert_eq!(Backoff::exponential(Duration::from_secs(1)).delay(u32::MAX), Duration::MAX);
        assert_eq!(
            Backoff::fibonacci(Duration::from_secs(1)).delay(200),
            Duration::from_secs(u64::from(u32::MAX))
        );
        let p =
            DelayPolicy { backoff: Backoff::exponential(ms(1)), jitter: Jitter::None, max_delay: ms(500) };
        assert_eq!(p.next(1000, Duration::ZERO, &AtomicRng::seeded(1)), ms(500));
    }

    #[test]
    fn jitter_stays_within_its_bounds() {
        let rng = AtomicRng::seeded(7);
        let policy = |jitter| DelayPolicy { backoff: Backoff::fixed(ms(100)), jitter, max_delay: ms(250) };
        for _ in 0..1000 {
            assert!(policy(Jitter::Full).next(1, Duration::ZERO, &rng) < ms(100));
            let e = policy(Jitter::Equal).next(1, Duration::ZERO, &rng);
            assert!(e >= ms(50) && e < ms(100));
            let d = policy(Jitter::Decorrelated).next(2, ms(200), &rng);
            assert!(d >= ms(100) && d <= ms(250));
        }
    }

    #[test]
    fn bad_multiplier_is_refused() {
        assert!(Backoff::exponential_with(ms(1), 0.5).validate().is_err());
        assert!(Backoff::exponential_with(ms(1), f64::NAN).validate().is_err());
        assert!(Backoff::exponential_with(ms(1), 1.0).validate().is_ok());
    }
}
