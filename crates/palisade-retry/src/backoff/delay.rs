//! The delay before the next attempt: the strategy's raw delay, the cap and the jitter.

use std::time::Duration;

use palisade_core::rng::AtomicRng;

use super::{Backoff, Jitter};

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
