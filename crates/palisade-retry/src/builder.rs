//! `RetryBuilder`: a [`RetryConfig`] plus what cannot be written in a config file, and the
//! part of it the hedge builder shares ([`Parts`]).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use palisade_core::classify::DefaultClassifier;
use palisade_core::config::ConfigError;
use palisade_core::event::Listener;
use palisade_core::rng::AtomicRng;

use crate::backoff::{Backoff, DelayPolicy, Jitter};
use crate::budget::RetryBudget;
use crate::config::RetryConfig;
use crate::engine::{AttemptCore, CoreParts, RetryStrategy};
use crate::event::RetryEvent;
use crate::replay::{replay_fn, CloneRequest, ReplayFn};
use crate::throttle::AdaptiveThrottle;
use crate::RetryLayer;

/// What retry and hedge builders hold besides their config: the classifier, the replay
/// hook, a shared budget, the listeners. Written once, moved whole when a type changes.
pub(crate) struct Parts<C, Replay> {
    pub(crate) classifier: C,
    pub(crate) replay: Replay,
    pub(crate) budget: Option<RetryBudget>,
    pub(crate) listeners: Vec<Listener<RetryEvent>>,
}

impl Default for Parts<DefaultClassifier, CloneRequest> {
    fn default() -> Self {
        Self { classifier: DefaultClassifier, replay: CloneRequest, budget: None, listeners: Vec::new() }
    }
}

impl<C, Replay> Parts<C, Replay> {
    pub(crate) fn with_classifier<C2>(self, classifier: C2) -> Parts<C2, Replay> {
        Parts { classifier, replay: self.replay, budget: self.budget, listeners: self.listeners }
    }

    pub(crate) fn with_replay<Replay2>(self, replay: Replay2) -> Parts<C, Replay2> {
        Parts { classifier: self.classifier, replay, budget: self.budget, listeners: self.listeners }
    }

    pub(crate) fn on_event<OnEvent: Fn(&RetryEvent) + Send + Sync + 'static>(&mut self, listener: OnEvent) {
        self.listeners.push(Arc::new(listener));
    }

    /// The shared options handed to the layer's state: the shared budget if one was given,
    /// else `own_budget`.
    pub(crate) fn core(
        &mut self,
        name: &str,
        max_attempts: u32,
        max_retry_after: Duration,
        own_budget: RetryBudget,
    ) -> CoreParts {
        let budget = self.budget.take().unwrap_or(own_budget);
        let listeners = std::mem::take(&mut self.listeners);
        CoreParts { name: name.into(), max_attempts, max_retry_after, budget, listeners }
    }
}

impl<C: fmt::Debug, Replay: fmt::Debug> fmt::Debug for Parts<C, Replay> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Parts")
            .field("classifier", &self.classifier)
            .field("replay", &self.replay)
            .field("shared_budget", &self.budget)
            .field("listeners", &self.listeners.len())
            .finish()
    }
}

/// Builds a [`RetryLayer`]; from [`RetryLayer::builder`]. Its storage is a
/// [`RetryConfig`] (the options and their defaults are documented there) plus the
/// classifier, the replay hook, listeners and shared budget or throttle.
#[must_use]
pub struct RetryBuilder<C = DefaultClassifier, Replay = CloneRequest> {
    config: RetryConfig,
    parts: Parts<C, Replay>,
    throttle: Option<AdaptiveThrottle>,
}

impl Default for RetryBuilder {
    fn default() -> Self {
        Self::from_config(RetryConfig::default())
    }
}

impl RetryBuilder {
    pub(crate) fn from_config(config: RetryConfig) -> Self {
        Self { config, parts: Parts::default(), throttle: None }
    }
}

impl<C: fmt::Debug, Replay: fmt::Debug> fmt::Debug for RetryBuilder<C, Replay> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryBuilder")
            .field("config", &self.config)
            .field("parts", &self.parts)
            .field("throttle", &self.throttle)
            .finish()
    }
}

impl<C, Replay> RetryBuilder<C, Replay> {
    /// The settings so far.
    pub fn config(&self) -> &RetryConfig {
        &self.config
    }

    /// Sets [`RetryConfig::name`].
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.config.name = name.into();
        self
    }

    /// Sets [`RetryConfig::max_attempts`].
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.config.max_attempts = n;
        self
    }

    /// Sets [`RetryConfig::backoff`].
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.config.backoff = backoff;
        self
    }

    /// Sets [`RetryConfig::jitter`].
    pub fn jitter(mut self, jitter: Jitter) -> Self {
        self.config.jitter = jitter;
        self
    }

    /// Sets [`RetryConfig::max_delay`].
    pub fn max_delay(mut self, max: Duration) -> Self {
        self.config.max_delay = max;
        self
    }

    /// No cap on the backoff delay ([`RetryConfig::max_delay`] = `Duration::MAX`): it grows
    /// as the strategy says, saturating; a total deadline is then the usual bound.
    pub fn no_max_delay(self) -> Self {
        self.max_delay(Duration::MAX)
    }

    /// Sets [`RetryConfig::cap_after_jitter`].
    pub fn cap_after_jitter(mut self, yes: bool) -> Self {
        self.config.cap_after_jitter = yes;
        self
    }

    /// Sets [`RetryConfig::max_retry_after`].
    pub fn max_retry_after(mut self, max: Duration) -> Self {
        self.config.max_retry_after = max;
        self
    }

    /// Sets [`RetryConfig::wait_for_half_open`] (opt-in; read its caveats).
    pub fn wait_for_half_open(mut self, max_wait: Duration) -> Self {
        self.config.wait_for_half_open = Some(max_wait);
        self
    }

    /// Sets [`RetryConfig::retries_exhausted_error`].
    pub fn retries_exhausted_error(mut self, yes: bool) -> Self {
        self.config.retries_exhausted_error = yes;
        self
    }

    /// Sets [`RetryConfig::attempt_timeout`].
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.config.attempt_timeout = Some(timeout);
        self
    }

    /// Sets [`RetryConfig::deadline`].
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.config.deadline = Some(deadline);
        self
    }

    /// Sets [`RetryConfig::seed`].
    pub fn seed(mut self, seed: u64) -> Self {
        self.config.seed = Some(seed);
        self
    }

    /// A budget shared with other layers (pass clones of one [`RetryBudget`]); it takes the
    /// place of [`RetryConfig::budget`], which makes one budget per layer.
    pub fn budget(mut self, budget: RetryBudget) -> Self {
        self.parts.budget = Some(budget);
        self
    }

    /// Adds adaptive client-side throttling (off by default); clones of one throttle share it.
    pub fn throttle(mut self, throttle: AdaptiveThrottle) -> Self {
        self.throttle = Some(throttle);
        self
    }

    /// Registers a listener for the layer's events.
    pub fn on_event<OnEvent: Fn(&RetryEvent) + Send + Sync + 'static>(mut self, listener: OnEvent) -> Self {
        self.parts.on_event(listener);
        self
    }

    /// The classifier that decides what is retried (any `palisade_core` classifier).
    pub fn classifier<C2>(self, classifier: C2) -> RetryBuilder<C2, Replay> {
        RetryBuilder {
            config: self.config,
            parts: self.parts.with_classifier(classifier),
            throttle: self.throttle,
        }
    }

    /// How requests are copied for further attempts (see [`replay`](crate::replay)).
    pub fn replay<Replay2>(self, replay: Replay2) -> RetryBuilder<C, Replay2> {
        RetryBuilder { config: self.config, parts: self.parts.with_replay(replay), throttle: self.throttle }
    }

    /// A "clone or give up" hook: `None` means the request is sent once.
    pub fn replay_fn<F>(self, f: F) -> RetryBuilder<C, ReplayFn<F>> {
        self.replay(replay_fn(f))
    }

    /// Validates the settings ([`RetryConfig::validate`]) and builds the layer.
    pub fn build(self) -> Result<RetryLayer<C, Replay>, ConfigError> {
        self.config.validate()?;
        let budget = self.config.budget.build()?;
        Ok(self.assemble(budget))
    }

    /// The layer from valid settings; `own_budget` serves unless a shared one was given.
    pub(crate) fn assemble(mut self, own_budget: RetryBudget) -> RetryLayer<C, Replay> {
        let c = self.config;
        let parts = self.parts.core(&c.name, c.max_attempts, c.max_retry_after, own_budget);
        let strategy = RetryStrategy {
            delay: DelayPolicy {
                backoff: c.backoff,
                jitter: c.jitter,
                max_delay: c.max_delay,
                cap_after_jitter: c.cap_after_jitter,
            },
            wait_for_half_open: c.wait_for_half_open,
            exhausted_error: c.retries_exhausted_error,
            attempt_timeout: c.attempt_timeout,
            deadline: c.deadline,
            throttle: self.throttle,
            rng: c.seed.map_or_else(AtomicRng::from_entropy, AtomicRng::seeded),
        };
        let core = Arc::new(AttemptCore::new(parts, strategy));
        RetryLayer::from_parts(core, self.parts.classifier, self.parts.replay)
    }
}
