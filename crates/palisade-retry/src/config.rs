//! The retry layer's builder and (feature `serde`) its deserializable config.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use palisade_core::classify::DefaultClassifier;
use palisade_core::config::{ensure, ensure_nonzero_duration, ConfigError};
use palisade_core::event::{EventBus, Listener};
use palisade_core::rng::AtomicRng;

use crate::backoff::{Backoff, DelayPolicy, Jitter};
use crate::budget::RetryBudget;
use crate::event::RetryEvent;
use crate::handle::{Core, Counters};
use crate::replay::{replay_fn, CloneRequest, ReplayFn};
use crate::throttle::AdaptiveThrottle;
use crate::RetryLayer;

/// Builds a [`RetryLayer`]; from [`RetryLayer::builder`].
///
/// | setting | default |
/// |---|---|
/// | `name` | `"retry"` |
/// | `max_attempts` | 3 (two retries) |
/// | `backoff` | exponential from 100 ms, doubling |
/// | `jitter` | full |
/// | `max_delay` | 10 s, applied before the jitter (`no_max_delay`, `cap_after_jitter`) |
/// | `max_retry_after` | 30 s |
/// | `wait_for_half_open` | off: a call refused by an open circuit breaker is returned at once |
/// | `retries_exhausted_error` | off: the last attempt's result is returned as is |
/// | `attempt_timeout`, `deadline` | none |
/// | `budget` | Finagle's: 20 % of requests over 10 s plus 10 retries/s, one per layer |
/// | `throttle` | none |
/// | `classifier` | [`DefaultClassifier`] (`Err` is a retryable failure) |
/// | `replay` | [`CloneRequest`] (`Req: Clone`) |
#[must_use]
pub struct RetryLayerBuilder<C = DefaultClassifier, P = CloneRequest> {
    name: Arc<str>,
    max_attempts: u32,
    backoff: Backoff,
    jitter: Jitter,
    max_delay: Duration,
    cap_after_jitter: bool,
    max_retry_after: Duration,
    wait_for_half_open: Option<Duration>,
    exhausted_error: bool,
    attempt_timeout: Option<Duration>,
    deadline: Option<Duration>,
    budget: Option<RetryBudget>,
    throttle: Option<AdaptiveThrottle>,
    seed: Option<u64>,
    listeners: Vec<Listener<RetryEvent>>,
    classifier: C,
    replay: P,
}

impl<C: fmt::Debug, P: fmt::Debug> fmt::Debug for RetryLayerBuilder<C, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryLayerBuilder")
            .field("name", &self.name)
            .field("max_attempts", &self.max_attempts)
            .field("backoff", &self.backoff)
            .field("jitter", &self.jitter)
            .field("max_delay", &self.max_delay)
            .field("cap_after_jitter", &self.cap_after_jitter)
            .field("max_retry_after", &self.max_retry_after)
            .field("wait_for_half_open", &self.wait_for_half_open)
            .field("retries_exhausted_error", &self.exhausted_error)
            .field("attempt_timeout", &self.attempt_timeout)
            .field("deadline", &self.deadline)
            .field("budget", &self.budget)
            .field("throttle", &self.throttle)
            .field("classifier", &self.classifier)
            .field("replay", &self.replay)
            .finish_non_exhaustive()
    }
}

impl Default for RetryLayerBuilder {
    fn default() -> Self {
        Self {
            name: "retry".into(),
            max_attempts: 3,
            backoff: Backoff::default(),
            jitter: Jitter::Full,
            max_delay: Duration::from_secs(10),
            cap_after_jitter: false,
            max_retry_after: Duration::from_secs(30),
            wait_for_half_open: None,
            exhausted_error: false,
            attempt_timeout: None,
            deadline: None,
            budget: None,
            throttle: None,
            seed: None,
            listeners: Vec::new(),
            classifier: DefaultClassifier,
            replay: CloneRequest,
        }
    }
}

impl<C, P> RetryLayerBuilder<C, P> {
    /// The name in events, rejections and metric labels (default `"retry"`).
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = name.into();
        self
    }

    /// Attempts in all, the first included (≥ 1; 1 means no retry; default 3).
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n;
        self
    }

    /// The backoff strategy (default exponential from 100 ms).
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// The jitter (default [`Jitter::Full`]).
    pub fn jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }

    /// The largest backoff delay (default 10 s; must not be zero). A server hint may exceed
    /// it, up to [`max_retry_after`](Self::max_retry_after). It caps the delay before the
    /// jitter unless [`cap_after_jitter`](Self::cap_after_jitter) is set. A huge value is
    /// no cap: delays saturate to "effectively never" instead of overflowing.
    pub fn max_delay(mut self, max: Duration) -> Self {
        self.max_delay = max;
        self
    }

    /// No cap on the backoff delay: it grows as the strategy says (saturating, never
    /// overflowing). A total [`deadline`](Self::deadline) is then the usual bound.
    pub fn no_max_delay(mut self) -> Self {
        self.max_delay = Duration::MAX;
        self
    }

    /// Caps the delay **after** the jitter (Polly v8's `MaxDelay`) instead of before it (the
    /// AWS formulas, the default). With the cap after, no delay ever exceeds `max_delay`,
    /// whatever the jitter; with the cap before, full, equal and decorrelated jitter stay
    /// below it anyway, and [`Jitter::Proportional`] may pass it by its percentage.
    pub fn cap_after_jitter(mut self, yes: bool) -> Self {
        self.cap_after_jitter = yes;
        self
    }

    /// The longest server hint (`Retry-After`, `grpc-retry-pushback-ms`) the layer waits
    /// for; a longer one makes it give up at once (default 30 s).
    pub fn max_retry_after(mut self, max: Duration) -> Self {
        self.max_retry_after = max;
        self
    }

    /// Opt-in: retry a call refused by an open circuit breaker
    /// ([`CircuitOpen`](palisade_core::rejection::CircuitOpen)) once the breaker's
    /// `retry_after` (its remaining open time) has passed, when that wait is at most
    /// `max_wait`; a longer one is returned at once.
    ///
    /// Off by default, on purpose: a breaker that refuses a call answers at once so that the
    /// caller answers at once (503 with `Retry-After`). A retry outside the breaker that
    /// sleeps on the open time holds the request — and any permit, connection or timeout
    /// budget above it — for that long, and turns fast refusals into slow timeouts. Use it
    /// for background work that would rather wait than fail; keep `max_wait` below any
    /// timeout outside the retry. The wait is paid from the budget like any retry and
    /// counts against the total [`deadline`](Self::deadline).
    pub fn wait_for_half_open(mut self, max_wait: Duration) -> Self {
        self.wait_for_half_open = Some(max_wait);
        self
    }

    /// Opt-in: when the layer gives up on a retryable failure because the attempts, the
    /// budget, the throttle, a too long server hint or a request that cannot be copied
    /// stopped it, return [`RetriesExhausted`](crate::error::RetriesExhausted) — carrying
    /// the attempt count, the reason and the last error as its `source` — instead of the
    /// last error as is (tower's `Policy` can rewrite the final result the same way).
    ///
    /// Off by default so that the inner error type stays what the caller matches on. A
    /// last attempt that answered with a response classified as a failure (an HTTP 503) is
    /// returned as that response either way; a passed total deadline is
    /// [`TimedOut`](crate::error::TimedOut) either way; a failure that is not retryable is
    /// returned as is.
    pub fn retries_exhausted_error(mut self, yes: bool) -> Self {
        self.exhausted_error = yes;
        self
    }

    /// A timeout for each attempt; an attempt that runs past it is dropped and counts as a
    /// retryable failure (the last one returns [`TimedOut`](crate::error::TimedOut)).
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.attempt_timeout = Some(timeout);
        self
    }

    /// A deadline for the whole call, attempts and waits included; when it passes the
    /// caller gets [`TimedOut`](crate::error::TimedOut), and a wait that would end after it
    /// is not started (the last failure is returned instead).
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// The retry budget (default: a Finagle budget of its own). Pass a clone of one budget
    /// to several layers to share it.
    pub fn budget(mut self, budget: RetryBudget) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Adds adaptive client-side throttling (off by default).
    pub fn throttle(mut self, throttle: AdaptiveThrottle) -> Self {
        self.throttle = Some(throttle);
        self
    }

    /// Seeds the jitter, so that delays are reproducible (tests).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Registers a listener for the layer's events.
    pub fn on_event<F>(mut self, listener: F) -> Self
    where
        F: Fn(&RetryEvent) + Send + Sync + 'static,
    {
        self.listeners.push(Arc::new(listener));
        self
    }

    /// The classifier that decides what is retried (any `palisade_core` classifier).
    pub fn classifier<C2>(self, classifier: C2) -> RetryLayerBuilder<C2, P> {
        RetryLayerBuilder {
            name: self.name,
            max_attempts: self.max_attempts,
            backoff: self.backoff,
            jitter: self.jitter,
            max_delay: self.max_delay,
            cap_after_jitter: self.cap_after_jitter,
            max_retry_after: self.max_retry_after,
            wait_for_half_open: self.wait_for_half_open,
            exhausted_error: self.exhausted_error,
            attempt_timeout: self.attempt_timeout,
            deadline: self.deadline,
            budget: self.budget,
            throttle: self.throttle,
            seed: self.seed,
            listeners: self.listeners,
            classifier,
            replay: self.replay,
        }
    }

    /// How requests are copied for further attempts (see [`replay`](crate::replay)).
    pub fn replay<P2>(self, replay: P2) -> RetryLayerBuilder<C, P2> {
        RetryLayerBuilder {
            name: self.name,
            max_attempts: self.max_attempts,
            backoff: self.backoff,
            jitter: self.jitter,
            max_delay: self.max_delay,
            cap_after_jitter: self.cap_after_jitter,
            max_retry_after: self.max_retry_after,
            wait_for_half_open: self.wait_for_half_open,
            exhausted_error: self.exhausted_error,
            attempt_timeout: self.attempt_timeout,
            deadline: self.deadline,
            budget: self.budget,
            throttle: self.throttle,
            seed: self.seed,
            listeners: self.listeners,
            classifier: self.classifier,
            replay,
        }
    }

    /// A "clone or give up" hook: `None` means the request is sent once.
    pub fn replay_fn<F>(self, f: F) -> RetryLayerBuilder<C, ReplayFn<F>> {
        self.replay(replay_fn(f))
    }

    /// Validates the settings and builds the layer.
    pub fn build(self) -> Result<RetryLayer<C, P>, ConfigError> {
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
        let core = Core {
            max_attempts: self.max_attempts,
            delay: DelayPolicy {
                backoff: self.backoff,
                jitter: self.jitter,
                max_delay: self.max_delay,
                cap_after_jitter: self.cap_after_jitter,
            },
            max_retry_after: self.max_retry_after,
            wait_for_half_open: self.wait_for_half_open,
            exhausted_error: self.exhausted_error,
            attempt_timeout: self.attempt_timeout,
            deadline: self.deadline,
            budget: self.budget.unwrap_or_default(),
            throttle: self.throttle,
            rng: self.seed.map_or_else(AtomicRng::from_entropy, AtomicRng::seeded),
            events: EventBus::with_listeners("retry", self.name.clone(), self.listeners),
            counters: Counters::new("retry", &self.name),
            name: self.name,
        };
        Ok(RetryLayer::from_parts(Arc::new(core), self.classifier, self.replay))
    }
}

#[cfg(feature = "serde")]
pub use self::serde_config::{BackoffConfig, BudgetConfig, RetryConfig};

#[cfg(feature = "serde")]
mod serde_config {
    use std::time::Duration;

    use palisade_core::ConfigError;
    use serde::Deserialize;

    use super::RetryLayerBuilder;
    use crate::backoff::{Backoff, Jitter};
    use crate::budget::RetryBudget;
    use crate::RetryLayer;

    /// A deserializable retry config (feature `serde`); durations are strings like
    /// `"250ms"`. Every field is optional and defaults as in [`RetryLayerBuilder`].
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
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
    /// }"#)?;
    /// let layer = config.build()?;
    /// assert_eq!(layer.handle().name(), "payments");
    /// # Ok(()) }
    /// ```
    #[derive(Clone, Debug, Default, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    #[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
    pub struct RetryConfig {
        /// Layer name.
        pub name: Option<String>,
        /// Attempts in all.
        pub max_attempts: Option<u32>,
        /// Backoff strategy.
        pub backoff: Option<BackoffConfig>,
        /// Jitter: `"none"`, `"full"`, `"equal"`, `"decorrelated"`, or
        /// `{"proportional": {"percent": 25}}`.
        pub jitter: Option<Jitter>,
        /// Largest backoff delay (a huge value such as `"100000d"` is no cap).
        #[serde(with = "palisade_core::duration::serde::option")]
        pub max_delay: Option<Duration>,
        /// Cap the delay after the jitter instead of before.
        pub cap_after_jitter: Option<bool>,
        /// Longest server hint honoured.
        #[serde(with = "palisade_core::duration::serde::option")]
        pub max_retry_after: Option<Duration>,
        /// Opt-in wait for an open circuit breaker to half-open, up to this long.
        #[serde(with = "palisade_core::duration::serde::option")]
        pub wait_for_half_open: Option<Duration>,
        /// Opt-in `RetriesExhausted` error when retries run out.
        pub retries_exhausted_error: Option<bool>,
        /// Per-attempt timeout.
        #[serde(with = "palisade_core::duration::serde::option")]
        pub attempt_timeout: Option<Duration>,
        /// Total deadline.
        #[serde(with = "palisade_core::duration::serde::option")]
        pub deadline: Option<Duration>,
        /// Retry budget.
        pub budget: Option<BudgetConfig>,
        /// Jitter seed.
        pub seed: Option<u64>,
    }

    /// A backoff strategy in a [`RetryConfig`].
    #[derive(Clone, Debug, Deserialize)]
    #[serde(rename_all = "snake_case", deny_unknown_fields)]
    #[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
    #[non_exhaustive]
    pub enum BackoffConfig {
        /// [`Backoff::Fixed`].
        Fixed {
            /// The delay.
            #[serde(with = "palisade_core::duration::serde")]
            delay: Duration,
        },
        /// [`Backoff::Linear`].
        Linear {
            /// First delay.
            #[serde(with = "palisade_core::duration::serde")]
            initial: Duration,
            /// Added per retry.
            #[serde(with = "palisade_core::duration::serde")]
            step: Duration,
        },
        /// [`Backoff::Exponential`].
        Exponential {
            /// First delay.
            #[serde(with = "palisade_core::duration::serde")]
            base: Duration,
            /// Growth factor (default 2).
            #[serde(default = "two")]
            multiplier: f64,
        },
        /// [`Backoff::Fibonacci`].
        Fibonacci {
            /// First delay.
            #[serde(with = "palisade_core::duration::serde")]
            base: Duration,
        },
    }

    fn two() -> f64 {
        2.0
    }

    /// A retry budget in a [`RetryConfig`].
    #[derive(Clone, Debug, Deserialize)]
    #[serde(rename_all = "snake_case", deny_unknown_fields)]
    #[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
    #[non_exhaustive]
    pub enum BudgetConfig {
        /// No budget.
        Unlimited,
        /// [`RetryBudget::ratio`].
        Ratio {
            /// Window.
            #[serde(with = "palisade_core::duration::serde")]
            ttl: Duration,
            /// Floor of retries per second.
            min_per_sec: u32,
            /// Retries per request.
            ratio: f64,
        },
        /// [`RetryBudget::token_bucket`].
        TokenBucket {
            /// Bucket size.
            max_tokens: u32,
            /// Tokens given back per success.
            token_ratio: f64,
        },
    }

    impl RetryConfig {
        /// A builder with these settings (classifier and replay can still be changed).
        pub fn into_builder(self) -> Result<RetryLayerBuilder, ConfigError> {
            let mut b = RetryLayerBuilder::default();
            if let Some(name) = self.name {
                b = b.name(name);
            }
            if let Some(n) = self.max_attempts {
                b = b.max_attempts(n);
            }
            if let Some(backoff) = self.backoff {
                b = b.backoff(match backoff {
                    BackoffConfig::Fixed { delay } => Backoff::fixed(delay),
                    BackoffConfig::Linear { initial, step } => Backoff::linear(initial, step),
                    BackoffConfig::Exponential { base, multiplier } => {
                        Backoff::exponential_with(base, multiplier)
                    }
                    BackoffConfig::Fibonacci { base } => Backoff::fibonacci(base),
                });
            }
            if let Some(j) = self.jitter {
                b = b.jitter(j);
            }
            if let Some(d) = self.max_delay {
                b = b.max_delay(d);
            }
            if let Some(yes) = self.cap_after_jitter {
                b = b.cap_after_jitter(yes);
            }
            if let Some(d) = self.max_retry_after {
                b = b.max_retry_after(d);
            }
            if let Some(d) = self.wait_for_half_open {
                b = b.wait_for_half_open(d);
            }
            if let Some(yes) = self.retries_exhausted_error {
                b = b.retries_exhausted_error(yes);
            }
            if let Some(d) = self.attempt_timeout {
                b = b.attempt_timeout(d);
            }
            if let Some(d) = self.deadline {
                b = b.deadline(d);
            }
            if let Some(budget) = self.budget {
                b = b.budget(match budget {
                    BudgetConfig::Unlimited => RetryBudget::unlimited(),
                    BudgetConfig::Ratio { ttl, min_per_sec, ratio } => {
                        RetryBudget::ratio(ttl, min_per_sec, ratio)?
                    }
                    BudgetConfig::TokenBucket { max_tokens, token_ratio } => {
                        RetryBudget::token_bucket(max_tokens, token_ratio)?
                    }
                });
            }
            if let Some(seed) = self.seed {
                b = b.seed(seed);
            }
            Ok(b)
        }

        /// Validates and builds the layer (default classifier, `Req: Clone`).
        pub fn build(self) -> Result<RetryLayer, ConfigError> {
            self.into_builder()?.build()
        }
    }
}
