//! Time arithmetic that never panics.
//!
//! palisade's policy for configured durations: **a duration too large to add to the clock
//! saturates to "effectively never"** — about 30 years from now, the same horizon tokio uses
//! for a sleep that never fires. `Instant + Duration` panics ("overflow when adding duration to
//! instant") for values such as `Duration::MAX` or a serde config's `"200000000000000d"`; every
//! deadline palisade computes goes through [`deadline_after`] instead, so such a value is
//! accepted and behaves as "no limit in practice". Builders still refuse values that are
//! meaningless (a zero timeout, for example) with a [`ConfigError`](crate::ConfigError).
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use palisade_core::time::{deadline_after, FAR_FUTURE};
//! use tokio::time::Instant;
//!
//! let now = Instant::now();
//! assert_eq!(deadline_after(now, Duration::from_millis(5)), now + Duration::from_millis(5));
//! // Never panics: a huge duration saturates.
//! assert_eq!(deadline_after(now, Duration::MAX), now + FAR_FUTURE);
//! ```

use std::time::Duration;

use tokio::time::Instant;

/// The horizon a saturated deadline is set to: 30 years (in seconds: 30 × 365 × 86,400).
pub const FAR_FUTURE: Duration = Duration::from_secs(86_400 * 365 * 30);

/// `now + after`, saturated at `now + FAR_FUTURE`: never panics.
///
/// Durations longer than [`FAR_FUTURE`] are treated as [`FAR_FUTURE`], so a timer built from
/// the result fires, in practice, never.
#[inline]
pub fn deadline_after(now: Instant, after: Duration) -> Instant {
    let after = if after > FAR_FUTURE { FAR_FUTURE } else { after };
    now.checked_add(after).unwrap_or(now)
}

/// [`deadline_after`] from [`Instant::now`] (the tokio clock, so `pause()` controls it).
#[inline]
pub fn deadline_from_now(after: Duration) -> Instant {
    deadline_after(Instant::now(), after)
}

/// `a + b` for durations, saturating at [`Duration::MAX`]: never panics.
#[inline]
pub fn saturating_sum(a: Duration, b: Duration) -> Duration {
    a.saturating_add(b)
}

/// `d × factor` for a float factor, saturating: a NaN or negative factor gives zero, an
/// infinite or too large result gives [`Duration::MAX`]. Never panics (unlike
/// [`Duration::mul_f64`]).
#[inline]
pub fn mul_f64_saturating(d: Duration, factor: f64) -> Duration {
    if factor.is_nan() || factor <= 0.0 {
        return Duration::ZERO;
    }
    let secs = d.as_secs_f64() * factor;
    Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saturates() {
        let now = Instant::now();
        assert_eq!(deadline_after(now, Duration::MAX), now + FAR_FUTURE);
        assert_eq!(deadline_after(now, FAR_FUTURE), now + FAR_FUTURE);
        assert_eq!(deadline_after(now, Duration::ZERO), now);
        assert_eq!(mul_f64_saturating(Duration::MAX, 2.0), Duration::MAX);
        assert_eq!(mul_f64_saturating(Duration::from_secs(1), f64::NAN), Duration::ZERO);
        assert_eq!(mul_f64_saturating(Duration::from_secs(1), -1.0), Duration::ZERO);
        assert_eq!(mul_f64_saturating(Duration::from_secs(1), f64::INFINITY), Duration::MAX);
        assert_eq!(mul_f64_saturating(Duration::from_secs(2), 0.5), Duration::from_secs(1));
    }
}
