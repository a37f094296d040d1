//! `RetryConfig`: every option of a retry layer, its default and its validation.

use std::time::Duration;

use palisade_core::config::{ensure, ensure_nonzero_duration, ConfigError};

use crate::backoff::{Backoff, Jitter};
use crate::budget::BudgetConfig;
use crate::builder::RetryBuilder;
use crate::RetryLayer;

/// Every option of a retry layer, its default and its check: the storage of
/// [`RetryBuilder`], and (feature `serde`) the form it takes in a config file (durations as
/// strings like `"250ms"`; every field optional). What is code or shared state — the
/// classifier, the replay hook, listeners, a budget or throttle shared with other layers —
/// is added on the builder.
///
/// | field | default |
/// |---|---|
/// | [`name`](Self::name) | `"retry"` |
/// | [`max_attempts`](Self::max_attempts) | 3 (two retries) |
/// | [`backoff`](Self::backoff) | exponential from 100 ms, doubling |
/// | [`jitter`](Self::jitter) | full |
/// | [`max_delay`](Self::max_delay) | 10 s, applied before the jitter |
/// | [`cap_after_jitter`](Self::cap_after_jitter) | `false` |
/// | [`max_retry_after`](Self::max_retry_after) | 30 s |
/// | [`wait_for_half_open`](Self::wait_for_half_open) | `None`: a call refused by an open circuit breaker is returned at once |
/// | [`retries_exhausted_error`](Self::retries_exhausted_error) | `false`: the last attempt's result is returned as is |
/// | [`attempt_timeout`](Self::attempt_timeout), [`deadline`](Self::deadline) | none |
/// | [`budget`](Self::budget) | Finagle's: 20 % of requests over 10 s plus 10 retries/s, one per layer |
/// | [`seed`](Self::seed) | `None`: jitter from entropy |
///
/// On the builder: the classifier ([`DefaultClassifier`](palisade_core::DefaultClassifier):
/// `Err` is a retryable failure), the replay ([`CloneRequest`](crate::replay::CloneRequest):
/// `Req: Clone`), no throttle, no listener.
///
/// ```
/// # #[cfg(feature = "serde")] {
/// use palisade_retry::RetryConfig;
///
/// let config: RetryConfig = serde_json::from_str(r#"{
///     "name": "payments",
///     "max_attempts": 4,
///     "backoff": { "exponential": { "base": "50ms", "multiplier": 3.0 } },
///     "jitter": "equal",
///     "max_delay": "2s",
///     "deadline": "5s",
///     "budget": { "token_bucket": { "max_tokens": 10, "token_ratio": 0.1 } }
/// }"#).unwrap();
/// let layer = config.build().unwrap();
/// assert_eq!(layer.handle().name(), "payments");
/// # }
/// ```
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct RetryConfig {
    /// The name in events, rejections and metric labels. Default `"retry"`.
    pub name: String,
    /// Attempts in all, the first included: at least 1 (1 means no retry). Default 3.
    pub max_attempts: u32,
    /// How the delay grows with the retry number (see [`backoff`](crate::backoff)).
    /// Default exponential from 100 ms, doubling.
    pub backoff: Backoff,
    /// How the delay is randomised: `"none"`, `"full"`, `"equal"`, `"decorrelated"` or
    /// `{"proportional": {"percent": 25}}`. Default [`Jitter::Full`].
    pub jitter: Jitter,
    /// The largest backoff delay, not zero. Default 10 s. A server hint may exceed it, up
    /// to `max_retry_after`. It caps the delay before the jitter unless `cap_after_jitter`
    /// is set. A huge value (`Duration::MAX`, `"100000d"`) is no cap: delays saturate to
    /// "effectively never" instead of overflowing.
    #[cfg_attr(feature = "serde", serde(with = "palisade_core::duration::serde"))]
    pub max_delay: Duration,
    /// Cap the delay after the jitter (Polly v8) instead of before it (AWS). Default `false`.
    pub cap_after_jitter: bool,
    /// The longest server hint (`Retry-After`, `grpc-retry-pushback-ms`) the layer waits
    /// for; a longer one makes it give up at once. Default 30 s.
    #[cfg_attr(feature = "serde", serde(with = "palisade_core::duration::serde"))]
    pub max_retry_after: Duration,
    /// Opt-in: retry a call refused by an open circuit breaker
    /// ([`CircuitOpen`](palisade_core::rejection::CircuitOpen)) once the breaker's
    /// `retry_after` (its remaining open time) has passed, when that wait is at most this
    /// long; a longer one is returned at once. Default `None`, on purpose: a breaker that
    /// refuses a call answers at once so that the caller answers at once (503 with
    /// `Retry-After`); a retry outside the breaker that sleeps on the open time holds the
    /// request — and any permit, connection or timeout above it — for that long. Use it for
    /// background work that would rather wait than fail; keep it below any timeout outside
    /// the retry. The wait is paid from the budget and counts against the `deadline`.
    #[cfg_attr(feature = "serde", serde(with = "palisade_core::duration::serde::option"))]
    pub wait_for_half_open: Option<Duration>,
    /// Opt-in: when the layer gives up on a retryable failure because the attempts, the
    /// budget, the throttle, a too long server hint or a request that cannot be copied
    /// stopped it, return [`RetriesExhausted`](crate::error::RetriesExhausted) — carrying
    /// the attempt count, the reason and the last error as its `source` — instead of the
    /// last error as is (tower's `Policy` can rewrite the final result the same way).
    /// Default `false`, so that the inner error type stays what the caller matches on. A
    /// last attempt that answered with a response classified as a failure (an HTTP 503) is
    /// returned as that response either way; a passed `deadline` is
    /// [`TimedOut`](crate::error::TimedOut) either way; a failure that is not retryable is
    /// returned as is.
    pub retries_exhausted_error: bool,
    /// A timeout for each attempt, not zero; an attempt that runs past it is dropped and
    /// counts as a retryable failure (the last one returns
    /// [`TimedOut`](crate::error::TimedOut)). Default none.
    #[cfg_attr(feature = "serde", serde(with = "palisade_core::duration::serde::option"))]
    pub attempt_timeout: Option<Duration>,
    /// A deadline for the whole call, attempts and waits included, not zero; when it passes
    /// the caller gets [`TimedOut`](crate::error::TimedOut), and a wait that would end after
    /// it is not started (the last failure is returned instead). Default none.
    #[cfg_attr(feature = "serde", serde(with = "palisade_core::duration::serde::option"))]
    pub deadline: Option<Duration>,
    /// The retry budget's settings; each layer built gets a budget of its own
    /// ([`RetryBuilder::budget`] shares one instead). Default Finagle's.
    pub budget: BudgetConfig,
    /// Seeds the jitter, so that delays are reproducible (tests). Default `None`.
    pub seed: Option<u64>,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            name: "retry".to_owned(),
            max_attempts: 3,
            backoff: Backoff::default(),
            jitter: Jitter::Full,
            max_delay: Duration::from_secs(10),
            cap_after_jitter: false,
            max_retry_after: Duration::from_secs(30),
            wait_for_half_open: None,
            retries_exhausted_error: false,
            attempt_timeout: None,
            deadline: None,
            budget: BudgetConfig::default(),
            seed: None,
        }
    }
}

impl RetryConfig {
    /// Checks every option; the error names the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        ensure(self.max_attempts >= 1, "max_attempts", "must be at least 1")?;
        ensure_nonzero_duration("max_delay", self.max_delay)?;
        self.backoff.validate()?;
        self.jitter.validate()?;
        if let Some(t) = self.attempt_timeout {
            ensure_nonzero_duration("attempt_timeout", t)?;
        }
        if let Some(d) = self.deadline {
            ensure_nonzero_duration("deadline", d)?;
        }
        self.budget.build().map(drop)
    }

    /// A builder holding these settings (add a classifier, replay, listeners…).
    pub fn into_builder(self) -> RetryBuilder {
        RetryBuilder::from_config(self)
    }

    /// Validates and builds the layer (default classifier, `Req: Clone`).
    pub fn build(self) -> Result<RetryLayer, ConfigError> {
        self.into_builder().build()
    }
}
