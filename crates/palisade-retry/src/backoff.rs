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

use palisade_core::rng::AtomicRng;
use palisade_core::time::mul_f64_saturating;

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

/// In a config file (feature `serde`): `{"fixed": {"delay": "100ms"}}`,
/// `{"linear": {"initial": "100ms", "step": "50ms"}}`,
/// `{"exponential": {"base": "100ms", "multiplier": 2.0}}` (multiplier optional, default 2)
/// or `{"fibonacci": {"base": "10ms"}}`. A [`Backoff::Custom`] is code and has no config
/// form: writing one out is an error.
#[cfg(feature = "serde")]
mod config_form {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::Backoff;

    #[derive(Deserialize, Serialize)]
    #[serde(rename_all = "snake_case", deny_unknown_fields)]
    enum Form {
        Fixed {
            #[serde(with = "palisade_core::duration::serde")]
            delay: Duration,
        },
        Linear {
            #[serde(with = "palisade_core::duration::serde")]
            initial: Duration,
            #[serde(with = "palisade_core::duration::serde")]
            step: Duration,
        },
        Exponential {
            #[serde(with = "palisade_core::duration::serde")]
            base: Duration,
            #[serde(default = "two")]
            multiplier: f64,
        },
        Fibonacci {
            #[serde(with = "palisade_core::duration::serde")]
            base: Duration,
        },
    }

    fn two() -> f64 {
        2.0
    }

    impl Serialize for Backoff {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let form = match *self {
                Backoff::Fixed(delay) => Form::Fixed { delay },
                Backoff::Linear { initial, step } => Form::Linear { initial, step },
                Backoff::Exponential { base, multiplier } => Form::Exponential { base, multiplier },
                Backoff::Fibonacci { base } => Form::Fibonacci { base },
                Backoff::Custom(_) => {
                    return Err(serde::ser::Error::custom("a custom backoff is code and has no config form"))
                }
            };
            form.serialize(s)
        }
    }

    impl<'de> Deserialize<'de> for Backoff {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            Ok(match Form::deserialize(d)? {
                Form::Fixed { delay } => Backoff::Fixed(delay),
                Form::Linear { initial, step } => Backoff::Linear { initial, step },
                Form::Exponential { base, multiplier } => Backoff::Exponential { base, multiplier },
                Form::Fibonacci { base } => Backoff::Fibonacci { base },
            })
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

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Everything needed to compute the next delay.
#[derive(Clone, Debug)]
pub(crate) struct DelayPolicy {
    pub(crate) backoff: Backoff,
    pub(crate) jitter: Jitter,
    /// `Duration::MAX` when there is no cap.
    pub(crate) max_delay: Duration,
    /// Cap the jittered delay (Polly) instead of the raw one (AWS, the default).
    pub(crate) cap_after_jitter: bool,
}

impl DelayPolicy {
    /// The delay before retry `n`, given the previous delay used (zero before the first).
    pub(crate) fn next(&self, n: u32, previous: Duration, rng: &AtomicRng) -> Duration {
        if self.cap_after_jitter {
            let raw = self.backoff.delay(n);
            let prev = previous.min(self.max_delay);
            self.spread(raw, self.backoff.delay(1), prev, rng).min(self.max_delay)
        } else {
            let raw = self.backoff.delay(n).min(self.max_delay);
            let base = self.backoff.delay(1).min(self.max_delay);
            self.spread(raw, base, previous, rng)
        }
    }

    /// Applies the jitter to `d` (`base` and `previous` are for the decorrelated form).
    fn spread(&self, d: Duration, base: Duration, previous: Duration, rng: &AtomicRng) -> Duration {
        match self.jitter {
            Jitter::None => d,
            Jitter::Full => Duration::from_nanos(rng.below(nanos(d))),
            Jitter::Equal => {
                let d = nanos(d);
                let half = d / 2;
                Duration::from_nanos(half + rng.below(d - half))
            }
            Jitter::Decorrelated => {
                let base = nanos(base);
                let prev = if previous.is_zero() { base } else { nanos(previous) };
                let hi = prev.saturating_mul(3);
                let d = if hi > base { base + rng.below(hi - base) } else { base };
                Duration::from_nanos(d).min(self.max_delay)
            }
            Jitter::Proportional { percent } => proportional(d, percent, |width| rng.below(width)),
        }
    }
}

/// `d × (1 − p) + pick(width)` with `width = 2 × d × p`: Polly v8's `ApplyJitter` with
/// `p = percent / 100`; `pick` draws from `[0, width)`.
fn proportional(d: Duration, percent: u8, pick: impl FnOnce(u64) -> u64) -> Duration {
    let d = u128::from(nanos(d));
    let spread = d * u128::from(percent.min(100)) / 100;
    let width = u64::try_from(spread * 2).unwrap_or(u64::MAX);
    let v = d - spread + u128::from(pick(width));
    Duration::from_nanos(u64::try_from(v).unwrap_or(u64::MAX))
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
        let p = DelayPolicy {
            backoff: Backoff::exponential(ms(1)),
            jitter: Jitter::None,
            max_delay: ms(500),
            cap_after_jitter: false,
        };
        assert_eq!(p.next(1000, Duration::ZERO, &AtomicRng::seeded(1)), ms(500));
    }

    #[test]
    fn jitter_stays_within_its_bounds() {
        let rng = AtomicRng::seeded(7);
        let policy = |jitter| DelayPolicy {
            backoff: Backoff::fixed(ms(100)),
            jitter,
            max_delay: ms(250),
            cap_after_jitter: false,
        };
        for _ in 0..1000 {
            assert!(policy(Jitter::Full).next(1, Duration::ZERO, &rng) < ms(100));
            let e = policy(Jitter::Equal).next(1, Duration::ZERO, &rng);
            assert!(e >= ms(50) && e < ms(100));
            let d = policy(Jitter::Decorrelated).next(2, ms(200), &rng);
            assert!(d >= ms(100) && d <= ms(250));
            let p = policy(Jitter::proportional()).next(1, Duration::ZERO, &rng);
            assert!(p >= ms(75) && p < ms(125), "{p:?}");
        }
    }

    #[test]
    fn proportional_jitter_spreads_evenly_around_the_delay() {
        // Polly v8: a constant 100 ms backoff with jitter lands in [75, 125) ms.
        let rng = AtomicRng::seeded(3);
        let p = DelayPolicy {
            backoff: Backoff::linear(ms(100), ms(100)),
            jitter: Jitter::proportional(),
            max_delay: Duration::MAX,
            cap_after_jitter: false,
        };
        let (mut below, mut above) = (0, 0);
        for _ in 0..2000 {
            let d = p.next(3, Duration::ZERO, &rng); // linear: 300 ms
            assert!(d >= ms(225) && d < ms(375), "{d:?}");
            if d < ms(300) {
                below += 1;
            } else {
                above += 1;
            }
        }
        assert!(below > 800 && above > 800, "{below} / {above}");
        // 0 % is no jitter, 100 % is [0, 2 × delay).
        let exact = DelayPolicy { jitter: Jitter::Proportional { percent: 0 }, ..p.clone() };
        assert_eq!(exact.next(1, Duration::ZERO, &rng), ms(100));
        let wide = DelayPolicy { jitter: Jitter::Proportional { percent: 100 }, ..p };
        assert!(wide.next(1, Duration::ZERO, &rng) < ms(200));
        assert!(Jitter::Proportional { percent: 101 }.validate().is_err());
    }

    /// Polly v8 `RetryHelperTests.Constant_Jitter_Ok` and `Linear_Jitter_Ok`, with their
    /// randomizer values and numbers (Polly's randomizer is a fraction of the spread).
    #[test]
    fn polly_constant_and_linear_jitter_numbers() {
        let secs = Duration::from_secs_f64;
        let at = |d: Duration, r: f64| proportional(d, 25, |w| (w as f64 * r) as u64);
        let constant = Backoff::fixed(secs(1.0));
        assert_eq!(at(constant.delay(1), 0.0), secs(0.75));
        assert_eq!(at(constant.delay(1), 0.4), secs(0.95));
        assert_eq!(at(constant.delay(2), 0.6), secs(1.05));
        assert_eq!(at(constant.delay(1), 1.0), secs(1.25));
        // Polly's linear delay for attempt 2 (0-based) is 3 × base: palisade's third retry.
        let linear = Backoff::linear(secs(1.0), secs(1.0));
        for (r, expected) in [(0.0, 2.25), (0.4, 2.85), (0.5, 3.0), (0.6, 3.15), (1.0, 3.75)] {
            assert_eq!(at(linear.delay(3), r), secs(expected), "r = {r}");
        }
        // A zero delay stays zero.
        assert_eq!(at(Duration::ZERO, 0.7), Duration::ZERO);
    }

    /// Polly v8 `MaxDelay_Ok` (the cap after the jitter: base 10 s, max 1 s → 1 s for every
    /// backoff type, jitter or not) and the overflow cases (`GetRetryDelay_Overflow_*`:
    /// exponential, attempt 1000, base 1 day → the maximum, or the cap).
    #[test]
    fn polly_max_delay_and_overflow_numbers() {
        let rng = AtomicRng::seeded(0);
        let ten = Duration::from_secs(10);
        for backoff in [Backoff::linear(ten, ten), Backoff::exponential(ten), Backoff::fixed(ten)] {
            for jitter in [Jitter::None, Jitter::proportional()] {
                let p = DelayPolicy {
                    backoff: backoff.clone(),
                    jitter,
                    max_delay: Duration::from_secs(1),
                    cap_after_jitter: true,
                };
                assert_eq!(p.next(3, Duration::ZERO, &rng), Duration::from_secs(1), "{backoff:?} {jitter:?}");
            }
        }
        let day = Duration::from_secs(86_400);
        let exp = DelayPolicy {
            backoff: Backoff::exponential(day),
            jitter: Jitter::None,
            max_delay: Duration::MAX,
            cap_after_jitter: true,
        };
        assert_eq!(exp.next(1001, Duration::ZERO, &rng), Duration::MAX);
        let capped = DelayPolicy { max_delay: day * 2, ..exp };
        assert_eq!(capped.next(1001, Duration::ZERO, &rng), day * 2);
    }

    #[test]
    fn the_cap_applies_before_or_after_the_jitter() {
        let rng = AtomicRng::seeded(9);
        let before = DelayPolicy {
            backoff: Backoff::fixed(ms(100)),
            jitter: Jitter::proportional(),
            max_delay: ms(100),
            cap_after_jitter: false,
        };
        let after = DelayPolicy { cap_after_jitter: true, ..before.clone() };
        let (mut over, mut capped) = (false, 0);
        for _ in 0..500 {
            over |= before.next(1, Duration::ZERO, &rng) > ms(100);
            let d = after.next(1, Duration::ZERO, &rng);
            assert!(d <= ms(100) && d >= ms(75));
            capped += usize::from(d == ms(100));
        }
        assert!(over, "capped before the jitter, the spread may pass the cap");
        assert!(capped > 100, "capped after the jitter, the upper half lands on the cap");
    }

    #[test]
    fn no_cap_and_huge_values_never_panic() {
        let rng = AtomicRng::seeded(1);
        for jitter in [
            Jitter::None,
            Jitter::Full,
            Jitter::Equal,
            Jitter::Decorrelated,
            Jitter::proportional(),
            Jitter::Proportional { percent: 100 },
        ] {
            for cap_after_jitter in [false, true] {
                for backoff in [
                    Backoff::exponential_with(Duration::MAX, 1000.0),
                    Backoff::fixed(Duration::MAX),
                    Backoff::linear(Duration::MAX, Duration::MAX),
                    Backoff::fibonacci(Duration::MAX),
                ] {
                    let p = DelayPolicy { backoff, jitter, max_delay: Duration::MAX, cap_after_jitter };
                    for n in [1, 2, 70, u32::MAX] {
                        let _ = p.next(n, Duration::MAX, &rng);
                    }
                }
            }
        }
    }

    #[test]
    fn bad_multiplier_is_refused() {
        assert!(Backoff::exponential_with(ms(1), 0.5).validate().is_err());
        assert!(Backoff::exponential_with(ms(1), f64::NAN).validate().is_err());
        assert!(Backoff::exponential_with(ms(1), 1.0).validate().is_ok());
    }
}
