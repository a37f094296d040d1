//! `HedgeBuilder`: a [`HedgeConfig`] plus what cannot be written in a config file.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use palisade_core::classify::DefaultClassifier;
use palisade_core::config::ConfigError;

use super::{HedgeConfig, HedgeLayer, HedgeMode, LatencyTracker};
use crate::budget::RetryBudget;
use crate::builder::Parts;
use crate::engine::{AttemptCore, HedgeStrategy};
use crate::event::RetryEvent;
use crate::replay::{replay_fn, CloneRequest, ReplayFn};

/// Builds a [`HedgeLayer`]; from [`HedgeLayer::builder`](crate::layer::AttemptLayer). Its
/// storage is a [`HedgeConfig`] (the options and their defaults are documented there) plus
/// the classifier, the replay hook, listeners and a shared budget.
#[must_use]
pub struct HedgeBuilder<C = DefaultClassifier, Replay = CloneRequest> {
    config: HedgeConfig,
    parts: Parts<C, Replay>,
}

impl Default for HedgeBuilder {
    fn default() -> Self {
        Self::from_config(HedgeConfig::default())
    }
}

impl HedgeBuilder {
    pub(crate) fn from_config(config: HedgeConfig) -> Self {
        Self { config, parts: Parts::default() }
    }
}

impl<C: fmt::Debug, Replay: fmt::Debug> fmt::Debug for HedgeBuilder<C, Replay> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HedgeBuilder").field("config", &self.config).field("parts", &self.parts).finish()
    }
}

impl<C, Replay> HedgeBuilder<C, Replay> {
    /// The settings so far.
    pub fn config(&self) -> &HedgeConfig {
        &self.config
    }

    /// Sets [`HedgeConfig::name`].
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.config.name = name.into();
        self
    }

    /// Sets [`HedgeConfig::max_attempts`].
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.config.max_attempts = n;
        self
    }

    /// Sets [`HedgeConfig::mode`].
    pub fn mode(mut self, mode: HedgeMode) -> Self {
        self.config.mode = mode;
        self
    }

    /// Delayed mode ([`HedgeMode::Delay`]): a new attempt after `delay` without an answer. A
    /// zero delay is [parallel](Self::parallel) mode.
    pub fn delay(self, delay: Duration) -> Self {
        self.mode(HedgeMode::Delay(delay))
    }

    /// Delayed mode with the observed `percentile` (e.g. `0.95`) of successful attempts'
    /// latency over the last 128, once 16 were seen ([`HedgeMode::Percentile`]); the delay
    /// set before (or 100 ms) until then.
    pub fn latency_percentile(self, percentile: f64) -> Self {
        let fallback = match self.config.mode {
            HedgeMode::Delay(d) | HedgeMode::Percentile { fallback: d, .. } => d,
            _ => Duration::from_millis(100),
        };
        self.mode(HedgeMode::Percentile { percentile, fallback, min_samples: 16 })
    }

    /// Parallel mode ([`HedgeMode::Parallel`]): all attempts at once.
    pub fn parallel(self) -> Self {
        self.mode(HedgeMode::Parallel)
    }

    /// Fallback mode ([`HedgeMode::Fallback`]): the next attempt only after a retryable
    /// failure.
    pub fn fallback(self) -> Self {
        self.mode(HedgeMode::Fallback)
    }

    /// Sets [`HedgeConfig::max_retry_after`].
    pub fn max_retry_after(mut self, max: Duration) -> Self {
        self.config.max_retry_after = max;
        self
    }

    /// A budget shared with other layers; it takes the place of [`HedgeConfig::budget`],
    /// which makes one budget per layer.
    pub fn budget(mut self, budget: RetryBudget) -> Self {
        self.parts.budget = Some(budget);
        self
    }

    /// Registers a listener for the layer's events.
    pub fn on_event<OnEvent: Fn(&RetryEvent) + Send + Sync + 'static>(mut self, listener: OnEvent) -> Self {
        self.parts.on_event(listener);
        self
    }

    /// The classifier: a retryable failure is non-fatal (the other attempts go on).
    pub fn classifier<C2>(self, classifier: C2) -> HedgeBuilder<C2, Replay> {
        HedgeBuilder { config: self.config, parts: self.parts.with_classifier(classifier) }
    }

    /// How requests are copied for further attempts (see [`replay`](crate::replay)).
    pub fn replay<Replay2>(self, replay: Replay2) -> HedgeBuilder<C, Replay2> {
        HedgeBuilder { config: self.config, parts: self.parts.with_replay(replay) }
    }

    /// A "clone or give up" hook.
    pub fn replay_fn<F>(self, f: F) -> HedgeBuilder<C, ReplayFn<F>> {
        self.replay(replay_fn(f))
    }

    /// Validates the settings ([`HedgeConfig::validate`]) and builds the layer.
    pub fn build(self) -> Result<HedgeLayer<C, Replay>, ConfigError> {
        self.config.validate()?;
        let budget = self.config.budget.build()?;
        Ok(self.assemble(budget))
    }

    /// The layer from valid settings; `own_budget` serves unless a shared one was given.
    pub(crate) fn assemble(mut self, own_budget: RetryBudget) -> HedgeLayer<C, Replay> {
        let c = self.config;
        let parts = self.parts.core(&c.name, c.max_attempts, c.max_retry_after, own_budget);
        let (mode, latency) = match c.mode {
            // A zero delay sends every attempt at once: parallel mode (no timer).
            HedgeMode::Delay(d) if d.is_zero() => (HedgeMode::Parallel, None),
            HedgeMode::Percentile { percentile, min_samples, .. } => {
                (c.mode, Some(LatencyTracker::new(percentile, u64::from(min_samples))))
            }
            mode => (mode, None),
        };
        let core = Arc::new(AttemptCore::new(parts, HedgeStrategy { mode, latency }));
        HedgeLayer::from_parts(core, self.parts.classifier, self.parts.replay)
    }
}
