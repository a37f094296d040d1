//! `BulkheadConfig`: every option of a bulkhead, its default and its validation.

use std::time::Duration;

use palisade_core::config::{ensure, ConfigError};
use palisade_core::keyed::Unkeyed;
use palisade_core::WhenFull;
use tokio::sync::Semaphore;

/// Every option of a bulkhead (plain or keyed), its default and its check: the storage of
/// [`BulkheadBuilder`](crate::BulkheadBuilder), and (feature `serde`) the form it takes in a
/// config file. What is code — listeners, the key function — is added on the builder.
///
/// The defaults are Resilience4j's `BulkheadConfig.ofDefaults()`: 25 calls at once
/// (`maxConcurrentCalls`) and no wait (`maxWaitDuration` 0): a call that finds every permit
/// taken is refused at once with [`BulkheadFull`](crate::error::BulkheadFull) (`NoPermit`).
///
/// | field | default |
/// |---|---|
/// | [`name`](Self::name) | `"bulkhead"` |
/// | [`max_concurrent`](Self::max_concurrent) | 25 (Resilience4j `maxConcurrentCalls`) |
/// | [`when_full`](Self::when_full) | [`WhenFull::Refuse`] (Resilience4j `maxWaitDuration` 0) |
/// | [`max_queue`](Self::max_queue) | `None`: no bound but the callers (only with `WhenFull::Wait`) |
/// | [`retry_after`](Self::retry_after) | `None`: a 503 without `Retry-After` |
/// | [`shed_when_inner_not_ready`](Self::shed_when_inner_not_ready) | `false`: wait for the inner service |
/// | [`max_keys`](Self::max_keys) | 100,000 (keyed only) |
/// | [`when_unkeyed`](Self::when_unkeyed) | [`Unkeyed::Reject`] (keyed only) |
///
/// ```
/// # #[cfg(feature = "serde")] {
/// use palisade_bulkhead::BulkheadConfig;
///
/// let config: BulkheadConfig = serde_json::from_str(
///     r#"{ "name": "db", "max_concurrent": 8, "max_queue": 32, "when_full": { "wait": "250ms" } }"#,
/// ).unwrap();
/// let layer = config.into_builder().build().unwrap();
/// assert_eq!(layer.handle().max_concurrent(), 8);
/// # }
/// ```
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct BulkheadConfig {
    /// The name in rejections, events and metric labels. Default `"bulkhead"`.
    pub name: String,
    /// How many calls may run at once (per key for a keyed bulkhead), at least 1 and at most
    /// `tokio::sync::Semaphore::MAX_PERMITS`. Default 25, Resilience4j's
    /// `maxConcurrentCalls`.
    pub max_concurrent: usize,
    /// What a caller does when every permit is taken: refuse at once with
    /// [`BulkheadFull`](crate::error::BulkheadFull) (`NoPermit`), or wait in FIFO order up to
    /// a bound, then be refused (`WaitTimedOut`). Default [`WhenFull::Refuse`], as
    /// Resilience4j's `maxWaitDuration` 0. A bounded wait uses tokio's timer: calls that have
    /// to wait run inside a tokio runtime with time enabled.
    pub when_full: WhenFull,
    /// How many callers may wait at once (per key); the next one is refused with
    /// `QueueFull`. `None` (the default): no bound but the number of callers, as tower's
    /// `ConcurrencyLimit`. `Some(0)` lets nobody wait. Only used when `when_full` waits.
    pub max_queue: Option<usize>,
    /// The `Retry-After` every refusal suggests ([`BulkheadFull`](crate::error::BulkheadFull),
    /// and [`Overloaded`](crate::error::Overloaded) when shedding; see
    /// [`Rejection::retry_after`](palisade_core::Rejection::retry_after)):
    /// palisade's HTTP answer is then 503 with `Retry-After` (whole seconds, rounded up) and
    /// gRPC's `UNAVAILABLE` carries it as pushback. Default `None`: no suggestion.
    #[cfg_attr(feature = "serde", serde(with = "palisade_core::duration::serde::option"))]
    pub retry_after: Option<Duration>,
    /// Refuse with [`Overloaded`](crate::error::Overloaded) while the *inner* service is not
    /// ready, as tower's `LoadShed` (the permit goes back). Default `false`: a caller holding
    /// a permit waits for the inner service, as tower's `ConcurrencyLimit`. Not supported by
    /// the keyed bulkhead (it readies the inner service before it knows the key).
    pub shed_when_inner_not_ready: bool,
    /// Keyed bulkhead: the most keys held at once, at least 1. Default 100,000.
    pub max_keys: usize,
    /// Keyed bulkhead: what a request whose key function answers `None` gets. Default
    /// [`Unkeyed::Reject`] ([`KeyMissing`](crate::error::KeyMissing)).
    pub when_unkeyed: Unkeyed,
}

/// Permits a bulkhead has when not told otherwise (Resilience4j's
/// `DEFAULT_MAX_CONCURRENT_CALLS`).
pub const DEFAULT_MAX_CONCURRENT: usize = 25;

/// Keys a keyed bulkhead holds when not told otherwise.
pub const DEFAULT_MAX_KEYS: usize = 100_000;

impl Default for BulkheadConfig {
    fn default() -> Self {
        Self {
            name: "bulkhead".to_owned(),
            max_concurrent: DEFAULT_MAX_CONCURRENT,
            when_full: WhenFull::Refuse,
            max_queue: None,
            retry_after: None,
            shed_when_inner_not_ready: false,
            max_keys: DEFAULT_MAX_KEYS,
            when_unkeyed: Unkeyed::Reject,
        }
    }
}

impl BulkheadConfig {
    /// Checks every field.
    ///
    /// # Errors
    ///
    /// `max_concurrent` zero or above `tokio::sync::Semaphore::MAX_PERMITS`
    /// (`usize::MAX >> 3`); `max_keys` zero. Every other value is accepted: `max_queue` is
    /// a counter (no allocation), and a wait too long for the clock means "effectively
    /// never" (see [`palisade_core::time`]).
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_max_concurrent(self.max_concurrent)?;
        ensure(self.max_keys > 0, "max_keys", "must be at least 1")
    }

    /// A builder holding these settings (add listeners or a key function, then `build`).
    pub fn into_builder(self) -> crate::BulkheadBuilder {
        crate::BulkheadBuilder::from_config(self)
    }
}

/// Checks a number of permits: at least 1, at most what tokio's semaphore holds.
pub(crate) fn check_max_concurrent(n: usize) -> Result<(), ConfigError> {
    ensure(n > 0, "max_concurrent", "must be at least 1")?;
    check_runtime_max(n)
}

/// The bound on permits at run time, where 0 is allowed: what the semaphore can hold.
pub(crate) fn check_runtime_max(n: usize) -> Result<(), ConfigError> {
    ensure(
        n <= Semaphore::MAX_PERMITS,
        "max_concurrent",
        format!("must not exceed {}", Semaphore::MAX_PERMITS),
    )
}
