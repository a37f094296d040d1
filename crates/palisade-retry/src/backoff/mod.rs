//! Backoff strategies and jitter: how long to wait before the next attempt.
//!
//! The delay before retry `n` (`n = 1` before the second attempt) is computed in three
//! steps:
//!
//! 1. the [`Backoff`] strategy gives a raw delay for `n`;
//! 2. it is capped at the layer's `max_delay` (default 10 s; `.no_max_delay()` turns the cap
//!    off) — **before** the jitter, as in the AWS formulas below, so that full, equal and
//!    decorrelated jitter never exceed the cap. `.cap_after_jitter(true)` caps the jittered
//!    delay instead, as Polly v8 does (`MaxDelay` applies to the delay after jitter); use it
//!    with [`Jitter::Proportional`] for a hard cap;
//! 3. [`Jitter`] spreads it:
//!    - [`Jitter::None`]: the capped delay as is;
//!    - [`Jitter::Full`]: uniformly random in `[0, delay)`;
//!    - [`Jitter::Equal`]: `delay / 2` plus a random part in `[0, delay / 2)`;
//!    - [`Jitter::Decorrelated`]: `min(max_delay, random in [base, previous * 3))`, where
//!      `base` is the strategy's first delay and `previous` the last delay actually used
//!      (the strategy's growth is ignored, as in the blog post);
//!    - [`Jitter::Proportional`]: uniformly random in `[delay × (1 − p), delay × (1 + p))`,
//!      Polly v8's jitter for its constant and linear backoffs with `p` = 25 %
//!      ([`Jitter::proportional`]); it keeps the shape of a fixed or linear backoff and
//!      spreads it by a share of its size.
//!
//!    The first four follow the AWS Architecture Blog post "Exponential Backoff And
//!    Jitter" (Marc Brooker, 2015).
//!
//! A server-given hint is applied afterwards: HTTP `Retry-After` as a floor, a gRPC pushback
//! as the exact delay (see the layer docs); either may exceed `max_delay`. Every step
//! saturates instead of overflowing: a delay too large for the clock means "effectively
//! never" (palisade's policy, see `palisade_core::time`), never a panic.
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

use palisade_core::time::mul_f64_saturating;

#[cfg(feature = "serde")]
mod config_form;
mod delay;

pub(crate) use self::delay::DelayPolicy;

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

impl PartialEq for Backoff {
    /// Equal settings; two custom backoffs are equal when they are the same function.
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Fixed(a), Self::Fixed(b)) | (Self::Fibonacci { base: a }, Self::Fibonacci { base: b }) => {
                a == b
            }
            (Self::Linear { initial: a, step: s }, Self::Linear { initial: b, step: t }) => a == b && s == t,
            (Self::Exponential { base: a, multiplier: m }, Self::Exponential { base: b, multiplier: n }) => {
                a == b && m == n
            }
            (Self::Custom(a), Self::Custom(b)) => Arc::ptr_eq(a, b),
            _ => false,
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
                let factor = multiplier.powi(i32::try_from(n - 1).unwrap_or(i32::MAX));
                if factor.is_nan() {
                    return Duration::MAX; // only an unvalidated multiplier gets here
                }
                mul_f64_saturating(*base, factor)
            }
            Self::Fibonacci { base } => {
                let (mut a, mut b) = (1u32, 1u32);
                for _ in 2..n {
                    if b == u32::MAX {
                        break; // saturated: at most ~47 rounds whatever `n` is
                    }
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
///
/// In a serde config: `"none"`, `"full"`, `"equal"`, `"decorrelated"` or
/// `{"proportional": {"percent": 25}}`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize), serde(rename_all = "snake_case"))]
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
    /// Uniform in `[delay × (1 − percent/100), delay × (1 + percent/100))`: Polly v8's
    /// jitter for constant and linear backoff (`percent` = 25, see [`Jitter::proportional`]).
    /// `percent` is at most 100 (checked when the layer is built).
    Proportional {
        /// The spread on each side, in percent of the delay (0 to 100).
        percent: u8,
    },
}

impl Jitter {
    /// [`Jitter::Proportional`] with Polly's ±25 %.
    pub const fn proportional() -> Self {
        Self::Proportional { percent: 25 }
    }

    pub(crate) fn validate(self) -> Result<(), palisade_core::ConfigError> {
        match self {
            Self::Proportional { percent } => {
                palisade_core::config::ensure(percent <= 100, "jitter.percent", "must be between 0 and 100")
            }
            _ => Ok(()),
        }
    }
}
