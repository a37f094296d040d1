//! [`PoolConfig`]: every option of a [`Pool`](crate::Pool), its default and its
//! validation; and [`Strategy`], how a request picks its member.

use std::time::Duration;

use palisade_core::config::{ensure, ensure_nonzero_duration, ensure_ordered, ensure_ratio, ConfigError};
use palisade_core::when_full::WhenFull;
use tokio::sync::Semaphore;

use crate::builder::PoolBuilder;
use crate::sizing::Sizing;

/// How a request picks its member among those ready with room.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize), serde(rename_all = "snake_case"))]
#[non_exhaustive]
pub enum Strategy {
    /// Each member in turn.
    RoundRobin,
    /// The member with the fewest calls in flight (ties broken in turn).
    #[default]
    LeastInFlight,
    /// Two members drawn at random; the one with fewer calls in flight.
    PowerOfTwoChoices,
    /// Two members drawn at random; the one with the lower peak-EWMA latency × (in flight + 1)
    /// (as tower's and Finagle's `PeakEwma`).
    PeakEwma,
}

/// A [`Pool`](crate::Pool)'s settings: the storage of [`PoolBuilder`], and the form read
/// from a config file (feature `serde`; missing fields keep their defaults, durations are
/// strings like `"250ms"`). Code-only settings (priority, classifier, health-check request,
/// scaling policy, listeners) are set on the builder.
///
/// ```
/// # #[cfg(feature = "serde")] {
/// use palisade_pool::{Pool, PoolConfig};
///
/// let config: PoolConfig = serde_json::from_str(
///     r#"{ "name": "workers", "min_size": 2, "max_size": 8, "strategy": "peak_ewma",
///          "when_full": { "wait": "2s" }, "idle_timeout": "5m", "scale_down_after": "30s" }"#,
/// ).unwrap();
/// let builder = config.into_builder::<String>(); // `build` validates
/// # let _ = builder;
/// let bad: PoolConfig = serde_json::from_str(r#"{ "min_size": 3, "max_size": 2 }"#).unwrap();
/// assert_eq!(bad.validate().unwrap_err().field(), "min_size");
/// # }
/// ```
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
#[non_exhaustive]
pub struct PoolConfig {
    /// The pool's name in rejections, events and metrics. Default `"pool"`.
    pub name: String,
    /// Members kept at all times. Default 1, at most 4,096. A fixed pool has
    /// `min_size == max_size`.
    pub min_size: usize,
    /// Most members at once. Default 4, at least 1. Nothing is allocated up front for them:
    /// members are made as load asks, so any value up to `usize::MAX` is accepted.
    pub max_size: usize,
    /// Calls one member may have in flight. Default 1 (a worker does one job at a time). A
    /// member's own `poll_ready` can lower it further.
    pub member_concurrency: usize,
    /// Requests that may wait for a member. Default 64, at least 1, at most tokio's
    /// [`Semaphore::MAX_PERMITS`].
    pub max_queue: usize,
    /// What `poll_ready` does when the queue is full. Default [`WhenFull::Refuse`]:
    /// `poll_ready` is ready and `call` fails at once with
    /// [`Overloaded`](palisade_core::rejection::Overloaded) (load shedding, as tower's
    /// `LoadShed`). [`WhenFull::wait(d)`](WhenFull::wait): `poll_ready` is pending until a
    /// place frees up (backpressure, as tower's `Buffer`), for at most `d`; then it is ready
    /// and `call` fails with `Overloaded`. `WhenFull::wait(Duration::MAX)` waits without
    /// bound.
    pub when_full: WhenFull,
    /// How requests pick a member. Default [`Strategy::LeastInFlight`].
    pub strategy: Strategy,
    /// Makes a member when in-flight calls / (members × `member_concurrency`) reach this
    /// ratio. Default 0.8.
    pub scale_up_utilisation: f64,
    /// Makes a member when this many requests wait with no member free. Default 1; 0 turns
    /// queue-driven scaling off.
    pub scale_up_queue: usize,
    /// Retires a member once utilisation stayed below this ratio for `scale_down_after`.
    /// Default 0.2; at most `scale_up_utilisation`.
    pub scale_down_utilisation: f64,
    /// See `scale_down_utilisation`; one member is retired per this period, never below
    /// `min_size`. Default 30 s, not zero.
    #[cfg_attr(feature = "serde", serde(with = "palisade_core::duration::serde"))]
    pub scale_down_after: Duration,
    /// Retires members idle longer than this, down to `min_size`. Default `None`: never.
    #[cfg_attr(feature = "serde", serde(with = "palisade_core::duration::serde::option"))]
    pub idle_timeout: Option<Duration>,
    /// How often scaling down, idleness and health checks are looked at. Default 1 s, not
    /// zero.
    #[cfg_attr(feature = "serde", serde(with = "palisade_core::duration::serde"))]
    pub housekeeping_interval: Duration,
    /// The first wait after a failed attempt to make a member; it doubles up to
    /// `make_backoff_max`. Default 100 ms, not zero.
    #[cfg_attr(feature = "serde", serde(with = "palisade_core::duration::serde"))]
    pub make_backoff: Duration,
    /// The longest wait between attempts to make a member. Default 10 s, at least
    /// `make_backoff`.
    #[cfg_attr(feature = "serde", serde(with = "palisade_core::duration::serde"))]
    pub make_backoff_max: Duration,
    /// Gives up on making a member after this long (counted as a failure). Default `None`:
    /// no limit.
    #[cfg_attr(feature = "serde", serde(with = "palisade_core::duration::serde::option"))]
    pub make_timeout: Option<Duration>,
    /// Evicts a member after this many calls in a row judged failures. Default 5; 0 turns
    /// it off.
    pub evict_after_failures: u32,
    /// The peak-EWMA latency assumed for a new member. Default 30 ms.
    #[cfg_attr(feature = "serde", serde(with = "palisade_core::duration::serde"))]
    pub peak_ewma_default_rtt: Duration,
    /// The peak-EWMA decay time. Default 10 s, not zero.
    #[cfg_attr(feature = "serde", serde(with = "palisade_core::duration::serde"))]
    pub peak_ewma_decay: Duration,
    /// Seeds the random choices of the power-of-two strategies (for reproducible tests).
    /// Default `None`: from entropy.
    pub seed: Option<u64>,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            name: String::from("pool"),
            min_size: 1,
            max_size: 4,
            member_concurrency: 1,
            max_queue: 64,
            when_full: WhenFull::Refuse,
            strategy: Strategy::LeastInFlight,
            scale_up_utilisation: 0.8,
            scale_up_queue: 1,
            scale_down_utilisation: 0.2,
            scale_down_after: Duration::from_secs(30),
            idle_timeout: None,
            housekeeping_interval: Duration::from_secs(1),
            make_backoff: Duration::from_millis(100),
            make_backoff_max: Duration::from_secs(10),
            make_timeout: None,
            evict_after_failures: 5,
            peak_ewma_default_rtt: Duration::from_millis(30),
            peak_ewma_decay: Duration::from_secs(10),
            seed: None,
        }
    }
}

impl PoolConfig {
    /// Checks every setting.
    ///
    /// # Errors
    ///
    /// The first invalid setting, named by its field (both fields for two that conflict).
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.sizing().validate()?;
        ensure(self.member_concurrency >= 1, "member_concurrency", "must be at least 1")?;
        ensure(self.max_queue >= 1, "max_queue", "must be at least 1")?;
        ensure(
            self.max_queue <= Semaphore::MAX_PERMITS,
            "max_queue",
            "must not exceed tokio's semaphore limit",
        )?;
        ensure_ratio("scale_up_utilisation", self.scale_up_utilisation)?;
        ensure_ratio("scale_down_utilisation", self.scale_down_utilisation)?;
        ensure_ordered(
            "scale_down_utilisation",
            self.scale_down_utilisation,
            "scale_up_utilisation",
            self.scale_up_utilisation,
        )?;
        ensure_nonzero_duration("scale_down_after", self.scale_down_after)?;
        ensure_nonzero_duration("housekeeping_interval", self.housekeeping_interval)?;
        if let Some(t) = self.idle_timeout {
            ensure_nonzero_duration("idle_timeout", t)?;
        }
        if let Some(t) = self.make_timeout {
            ensure_nonzero_duration("make_timeout", t)?;
        }
        ensure_nonzero_duration("make_backoff", self.make_backoff)?;
        ensure_ordered("make_backoff", self.make_backoff, "make_backoff_max", self.make_backoff_max)?;
        ensure_nonzero_duration("peak_ewma_decay", self.peak_ewma_decay)?;
        Ok(())
    }

    pub(crate) fn sizing(&self) -> Sizing {
        Sizing { min: self.min_size, max: self.max_size }
    }

    /// A builder with these settings; [`PoolBuilder::build`] validates them (as every
    /// crate's `XConfig::into_builder`, CONTRIBUTING §5).
    pub fn into_builder<Req>(self) -> PoolBuilder<Req> {
        PoolBuilder::default().config(self)
    }
}
