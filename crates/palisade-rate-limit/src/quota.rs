//! [`Quota`]: how many requests a limit admits, over which period, with which burst.

use std::time::Duration;

use palisade_core::config::{ensure, ensure_nonzero_duration, ConfigError};

/// How much a limit admits: `limit` requests per `period`, with bursts of up to `burst`.
///
/// - For the token bucket (GCRA) a request costs one token, tokens come back at
///   `limit / period`, and the bucket holds `burst` tokens (by default `limit`).
/// - For the leaky bucket requests leave one every `period / limit`.
/// - For the windows, `limit` requests (weights summed) are admitted per window of `period`.
///
/// ```
/// use std::time::Duration;
/// use palisade_rate_limit::Quota;
///
/// let q = Quota::per_second(100).burst(10);
/// assert_eq!(q.limit(), 100);
/// assert_eq!(q.burst_size(), 10);
/// assert_eq!(q.interval(), Duration::from_millis(10));
/// ```
///
/// In a `serde` config: `{ "limit": 100, "period": "1s", "burst": 20 }` (`burst` optional).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
pub struct Quota {
    limit: u32,
    #[cfg_attr(feature = "serde", serde(with = "palisade_core::duration::serde"))]
    period: Duration,
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
    burst: Option<u32>,
}

impl Quota {
    /// `limit` requests per `period`. A zero limit or period is refused by the builders
    /// ([`Quota::validate`]); a quota chosen per key at run time with a zero limit blocks
    /// that key.
    pub const fn new(limit: u32, period: Duration) -> Self {
        Self { limit, period, burst: None }
    }

    /// `limit` requests per second.
    pub const fn per_second(limit: u32) -> Self {
        Self::new(limit, Duration::from_secs(1))
    }

    /// `limit` requests per minute.
    pub const fn per_minute(limit: u32) -> Self {
        Self::new(limit, Duration::from_secs(60))
    }

    /// `limit` requests per hour.
    pub const fn per_hour(limit: u32) -> Self {
        Self::new(limit, Duration::from_secs(3600))
    }

    /// The most tokens the bucket holds (token bucket only; default `limit`).
    #[must_use]
    pub const fn burst(mut self, burst: u32) -> Self {
        self.burst = Some(burst);
        self
    }

    /// Requests admitted per period.
    pub const fn limit(&self) -> u32 {
        self.limit
    }

    /// The period.
    pub const fn period(&self) -> Duration {
        self.period
    }

    /// The burst size (token bucket): `burst` if set, else `limit`.
    pub const fn burst_size(&self) -> u32 {
        match self.burst {
            Some(b) => b,
            None => self.limit,
        }
    }

    /// Time between two tokens: `period / limit` (never below one nanosecond).
    pub fn interval(&self) -> Duration {
        Duration::from_nanos(self.interval_nanos())
    }

    pub(crate) fn interval_nanos(&self) -> u64 {
        let period = u64::try_from(self.period.as_nanos()).unwrap_or(u64::MAX);
        (period / u64::from(self.limit.max(1))).max(1)
    }

    pub(crate) fn period_nanos(&self) -> u64 {
        u64::try_from(self.period.as_nanos()).unwrap_or(u64::MAX).max(1)
    }

    /// Checks the quota: limit, period and burst must be non-zero, the period at most
    /// [`MAX_PERIOD`](Self::MAX_PERIOD) and a full burst (`burst * period / limit`) at most
    /// ten times that.
    pub fn validate(&self, field: &'static str) -> Result<(), ConfigError> {
        ensure(self.limit > 0, field, "limit must be at least 1")?;
        ensure_nonzero_duration(field, self.period)?;
        ensure(self.period <= Self::MAX_PERIOD, field, "period must be at most 366 days")?;
        ensure(self.burst_size() > 0, field, "burst must be at least 1")?;
        let full = u128::from(self.interval_nanos()) * u128::from(self.burst_size());
        ensure(
            full <= Self::MAX_PERIOD.as_nanos() * 10,
            field,
            "burst * period / limit must be at most 3660 days",
        )
    }

    /// [`validate`](Self::validate), and for a sliding window log (which keeps one entry
    /// per admitted request) a limit of at most [`MAX_LOG_LIMIT`](Self::MAX_LOG_LIMIT), so
    /// that memory never grows with a configured number.
    pub(crate) fn validate_for(
        &self,
        algorithm: crate::Algorithm,
        field: &'static str,
    ) -> Result<(), ConfigError> {
        self.validate(field)?;
        if matches!(algorithm, crate::Algorithm::SlidingWindowLog) {
            ensure(
                self.limit <= Self::MAX_LOG_LIMIT,
                field,
                "a sliding window log keeps one entry per request: limit at most 65536 (use the sliding window counter above)",
            )?;
        }
        Ok(())
    }

    /// The nearest quota that [`validate`](Self::validate) accepts: a zero limit, period or
    /// burst becomes 1 (one nanosecond for the period), a period above
    /// [`MAX_PERIOD`](Self::MAX_PERIOD) becomes it, and a burst is capped so that a full
    /// burst spans at most ten `MAX_PERIOD`s. A valid quota is returned unchanged.
    #[must_use]
    pub fn nearest_valid(self) -> Self {
        let limit = self.limit.max(1);
        let period = self.period.clamp(Duration::from_nanos(1), Self::MAX_PERIOD);
        let mut quota = Self { limit, period, burst: self.burst.map(|b| b.max(1)) };
        let most = Self::MAX_PERIOD.as_nanos() * 10 / u128::from(quota.interval_nanos());
        if u128::from(quota.burst_size()) > most {
            quota.burst = Some(u32::try_from(most).unwrap_or(u32::MAX).max(1));
        }
        quota
    }

    /// The largest limit of a sliding window log.
    pub const MAX_LOG_LIMIT: u32 = 65_536;

    /// The longest period a quota may have (366 days).
    pub const MAX_PERIOD: Duration = Duration::from_secs(366 * 86_400);
}
