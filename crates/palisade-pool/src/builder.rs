//! [`PoolBuilder`]: a [`PoolConfig`] plus what cannot be serialised (priority, classifier,
//! health-check request, scaling policy, listeners).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use palisade_core::classify::{Classify, DefaultClassifier};
use palisade_core::config::{ensure_nonzero_duration, ConfigError};
use palisade_core::event::{EventBus, Listener};
use palisade_core::rng::AtomicRng;
use palisade_core::when_full::WhenFull;
use palisade_core::BoxError;
use tokio::sync::mpsc;
use tower_service::Service;

use crate::config::{PoolConfig, Strategy};
use crate::event::PoolEvent;
use crate::handle::WorkerGuard;
use crate::scaling::{ScalingPolicy, UtilisationPolicy};
use crate::service::Pool;
use crate::shared::Shared;
use crate::worker::Worker;

pub(crate) type PriorityFn<Req> = Arc<dyn Fn(&Req) -> u8 + Send + Sync>;

pub(crate) struct HealthCheck<Req> {
    pub(crate) interval: Duration,
    pub(crate) timeout: Duration,
    pub(crate) request: Arc<dyn Fn() -> Req + Send + Sync>,
}

/// Builds a [`Pool`]; start with [`Pool::builder`]. Every serialisable setting is a field of
/// [`PoolConfig`] (defaults and rules there): 1 to 4 members, one call at a time per member,
/// a queue of 64 that refuses when full, least-in-flight dispatch, scale up at 80 %
/// utilisation or one queued request, scale down below 20 % utilisation sustained for 30 s,
/// no idle timeout, housekeeping every second, make backoff 100 ms doubling to 10 s,
/// eviction after 5 failures in a row ([`DefaultClassifier`]), no periodic health check.
///
/// The request type comes first and the classifier last (against the crate-wide "`C`
/// first" order) because only a trailing type parameter can have a default.
pub struct PoolBuilder<Req, C = DefaultClassifier> {
    config: PoolConfig,
    classifier: C,
    priority: Option<PriorityFn<Req>>,
    health_check: Option<HealthCheck<Req>>,
    policy: Option<Box<dyn ScalingPolicy>>,
    listeners: Vec<Listener<PoolEvent>>,
}

impl<Req, C> fmt::Debug for PoolBuilder<Req, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolBuilder")
            .field("config", &self.config)
            .field("priority", &self.priority.is_some())
            .field("health_check", &self.health_check.as_ref().map(|h| h.interval))
            .field("scaling_policy", &self.policy.is_some())
            .finish_non_exhaustive()
    }
}

impl<Req> Default for PoolBuilder<Req> {
    fn default() -> Self {
        Self {
            config: PoolConfig::default(),
            classifier: DefaultClassifier,
            priority: None,
            health_check: None,
            policy: None,
            listeners: Vec::new(),
        }
    }
}

impl<Req, C> PoolBuilder<Req, C> {
    /// Replaces every [`PoolConfig`] setting with `config` (code-only settings are kept).
    pub fn config(mut self, config: PoolConfig) -> Self {
        self.config = config;
        self
    }

    /// Sets [`PoolConfig::name`].
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.config.name = name.into();
        self
    }

    /// Sets [`PoolConfig::min_size`].
    pub fn min_size(mut self, min: usize) -> Self {
        self.config.min_size = min;
        self
    }

    /// Sets [`PoolConfig::max_size`].
    pub fn max_size(mut self, max: usize) -> Self {
        self.config.max_size = max;
        self
    }

    /// Sets [`PoolConfig::member_concurrency`].
    pub fn member_concurrency(mut self, n: usize) -> Self {
        self.config.member_concurrency = n;
        self
    }

    /// Sets [`PoolConfig::max_queue`].
    pub fn max_queue(mut self, n: usize) -> Self {
        self.config.max_queue = n;
        self
    }

    /// Sets [`PoolConfig::when_full`].
    pub fn when_full(mut self, when_full: WhenFull) -> Self {
        self.config.when_full = when_full;
        self
    }

    /// Sets [`PoolConfig::strategy`].
    pub fn strategy(mut self, strategy: Strategy) -> Self {
        self.config.strategy = strategy;
        self
    }

    /// Sets [`PoolConfig::scale_up_utilisation`].
    pub fn scale_up_utilisation(mut self, ratio: f64) -> Self {
        self.config.scale_up_utilisation = ratio;
        self
    }

    /// Sets [`PoolConfig::scale_up_queue`].
    pub fn scale_up_queue(mut self, queued: usize) -> Self {
        self.config.scale_up_queue = queued;
        self
    }

    /// Sets [`PoolConfig::scale_down_utilisation`] and [`PoolConfig::scale_down_after`].
    pub fn scale_down(mut self, ratio: f64, after: Duration) -> Self {
        (self.config.scale_down_utilisation, self.config.scale_down_after) = (ratio, after);
        self
    }

    /// Sets [`PoolConfig::idle_timeout`].
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.config.idle_timeout = Some(timeout);
        self
    }

    /// Sets [`PoolConfig::housekeeping_interval`].
    pub fn housekeeping_interval(mut self, interval: Duration) -> Self {
        self.config.housekeeping_interval = interval;
        self
    }

    /// Sets [`PoolConfig::make_backoff`] and [`PoolConfig::make_backoff_max`].
    pub fn make_backoff(mut self, base: Duration, max: Duration) -> Self {
        (self.config.make_backoff, self.config.make_backoff_max) = (base, max);
        self
    }

    /// Sets [`PoolConfig::make_timeout`].
    pub fn make_timeout(mut self, timeout: Duration) -> Self {
        self.config.make_timeout = Some(timeout);
        self
    }

    /// Sets [`PoolConfig::evict_after_failures`].
    pub fn evict_after_failures(mut self, n: u32) -> Self {
        self.config.evict_after_failures = n;
        self
    }

    /// Sets [`PoolConfig::peak_ewma_default_rtt`] and [`PoolConfig::peak_ewma_decay`].
    pub fn peak_ewma(mut self, default_rtt: Duration, decay: Duration) -> Self {
        (self.config.peak_ewma_default_rtt, self.config.peak_ewma_decay) = (default_rtt, decay);
        self
    }

    /// Sets [`PoolConfig::seed`].
    pub fn seed(mut self, seed: u64) -> Self {
        self.config.seed = Some(seed);
        self
    }

    /// Orders the queue by `priority(&request)`, highest first; equal priorities keep their
    /// arrival order. Without it the queue is FIFO.
    pub fn priority<F>(mut self, priority: F) -> Self
    where
        F: Fn(&Req) -> u8 + Send + Sync + 'static,
    {
        self.priority = Some(Arc::new(priority));
        self
    }

    /// Judges members' calls with `classifier` (default [`DefaultClassifier`]).
    pub fn classifier<C2>(self, classifier: C2) -> PoolBuilder<Req, C2> {
        let Self { config, classifier: _, priority, health_check, policy, listeners } = self;
        PoolBuilder { config, classifier, priority, health_check, policy, listeners }
    }

    /// Decides growth and shrinking with `policy` instead of the default
    /// [`UtilisationPolicy`] (whose settings — `scale_up_utilisation`, `scale_up_queue`,
    /// `scale_down` — are then not used); see the [`scaling`](crate::scaling) module.
    pub fn scaling_policy<P: ScalingPolicy>(mut self, policy: P) -> Self {
        self.policy = Some(Box::new(policy));
        self
    }

    /// Every `interval`, sends each member the request `request()` (waiting at most
    /// `interval` for the answer); a member whose answer the classifier judges a failure, or
    /// that does not answer in time, is evicted.
    pub fn health_check<F>(mut self, interval: Duration, request: F) -> Self
    where
        F: Fn() -> Req + Send + Sync + 'static,
    {
        self.health_check = Some(HealthCheck { interval, timeout: interval, request: Arc::new(request) });
        self
    }

    /// Calls `listener` with every [`PoolEvent`] (a panicking listener is contained and
    /// logged).
    pub fn on_event<OnEvent>(mut self, listener: OnEvent) -> Self
    where
        OnEvent: Fn(&PoolEvent) + Send + Sync + 'static,
    {
        self.listeners.push(Arc::new(listener));
        self
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.config.validate()?;
        if let Some(h) = &self.health_check {
            ensure_nonzero_duration("health_check", h.interval)?;
        }
        Ok(())
    }

    /// Builds the pool over `make`, a [`MakeService`](tower_service::Service) called with
    /// `()` (a `tower::service_fn(|()| async { … })` or [`make_fn`](crate::make_fn)), and
    /// starts its worker on the current Tokio runtime.
    ///
    /// # Errors
    ///
    /// Invalid settings, or no Tokio runtime running.
    pub fn build<M, S>(self, make: M) -> Result<Pool<Req, S::Response>, ConfigError>
    where
        M: Service<(), Response = S> + Send + 'static,
        M::Error: Into<BoxError>,
        M::Future: Send + 'static,
        S: Service<Req> + Send + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send + 'static,
        S::Response: Send + 'static,
        Req: Send + 'static,
        C: Classify<S::Response, S::Error> + Send + Sync + 'static,
    {
        self.build_with_target(make, ())
    }

    /// Builds the pool over `make`, called with clones of `target` for every member.
    ///
    /// # Errors
    ///
    /// Invalid settings, or no Tokio runtime running.
    pub fn build_with_target<M, T, S>(self, make: M, target: T) -> Result<Pool<Req, S::Response>, ConfigError>
    where
        M: Service<T, Response = S> + Send + 'static,
        M::Error: Into<BoxError>,
        M::Future: Send + 'static,
        T: Clone + Send + 'static,
        S: Service<Req> + Send + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send + 'static,
        S::Response: Send + 'static,
        Req: Send + 'static,
        C: Classify<S::Response, S::Error> + Send + Sync + 'static,
    {
        self.validate()?;
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| ConfigError::new("runtime", "a Pool must be built inside a Tokio runtime"))?;
        let config = self.config;
        let (control_tx, control_rx) = mpsc::unbounded_channel();
        let (tx, rx) = mpsc::unbounded_channel();
        let name: Arc<str> = config.name.as_str().into();
        let events = EventBus::with_listeners("pool", name.clone(), self.listeners);
        let shared =
            Arc::new(Shared::new(name, events, config.max_queue, config.member_concurrency, control_tx));
        let rng = config.seed.map_or_else(AtomicRng::from_entropy, AtomicRng::seeded);
        let policy = self.policy.unwrap_or_else(|| {
            Box::new(UtilisationPolicy::new(
                config.scale_up_utilisation,
                config.scale_up_queue,
                config.scale_down_utilisation,
                config.scale_down_after,
            ))
        });
        let when_full = config.when_full;
        let worker = Worker::new(
            make,
            target,
            config,
            self.health_check,
            shared.clone(),
            self.classifier,
            rng,
            rx,
            control_rx,
            policy,
        );
        let worker = if self.priority.is_some() { worker.with_priority() } else { worker };
        let task = runtime.spawn(worker.run());
        let guard = Arc::new(WorkerGuard { task, shared: shared.clone() });
        Ok(Pool::from_parts(tx, &shared, guard, when_full, self.priority))
    }
}
