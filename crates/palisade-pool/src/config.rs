//! [`PoolServiceBuilder`]: the settings of a [`PoolService`].

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use palisade_core::classify::{Classify, DefaultClassifier};
use palisade_core::config::{ensure, ensure_nonzero_duration, ensure_ordered, ensure_ratio, ConfigError};
use palisade_core::event::{EventBus, Listener};
use palisade_core::rng::AtomicRng;
use palisade_core::BoxError;
use tokio::sync::{mpsc, Semaphore};
use tower_service::Service;

use crate::event::PoolEvent;
use crate::handle::WorkerGuard;
use crate::scaling::{ScalingPolicy, UtilisationPolicy};
use crate::service::PoolService;
use crate::shared::Shared;
use crate::sizing::{Backoff, Sizing};
use crate::worker::Worker;

/// How a request picks its member among those ready with room.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize), serde(rename_all = "snake_case"))]
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

/// What `poll_ready` does when the queue is full.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize), serde(rename_all = "snake_case"))]
#[non_exhaustive]
pub enum WhenFull {
    /// `poll_ready` is ready and `call` fails at once with
    /// [`Overloaded`](palisade_core::rejection::Overloaded) (load shedding, as tower's
    /// `LoadShed`).
    #[default]
    Reject,
    /// `poll_ready` is pending until a place frees up (backpressure, as tower's `Buffer`).
    Wait,
}

pub(crate) type PriorityFn<Req> = Arc<dyn Fn(&Req) -> u8 + Send + Sync>;

pub(crate) struct HealthCheck<Req> {
    pub(crate) interval: Duration,
    pub(crate) timeout: Duration,
    pub(crate) request: Arc<dyn Fn() -> Req + Send + Sync>,
}

/// Settings the worker reads.
pub(crate) struct WorkerConfig<Req> {
    pub(crate) sizing: Sizing,
    pub(crate) member_concurrency: usize,
    pub(crate) strategy: Strategy,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) housekeeping_interval: Duration,
    pub(crate) make_timeout: Option<Duration>,
    pub(crate) default_rtt: Duration,
    pub(crate) health_check: Option<HealthCheck<Req>>,
}

/// Builds a [`PoolService`]; start with [`PoolService::builder`].
///
/// Defaults: 1 to 4 members, one call at a time per member, a queue of 64 that rejects
/// when full, least-in-flight dispatch, scale up at 80 % utilisation or one queued request,
/// scale down below 20 % utilisation sustained for 30 s, no idle timeout, housekeeping every
/// second, make backoff 100 ms doubling to 10 s, eviction after 5 failures in a row
/// ([`DefaultClassifier`]), no periodic health check.
pub struct PoolServiceBuilder<Req, C = DefaultClassifier> {
    name: Arc<str>,
    sizing: Sizing,
    member_concurrency: usize,
    queue_capacity: usize,
    when_full: WhenFull,
    strategy: Strategy,
    priority: Option<PriorityFn<Req>>,
    scale_up_utilisation: f64,
    scale_up_queue: usize,
    scale_down_utilisation: f64,
    scale_down_after: Duration,
    idle_timeout: Option<Duration>,
    housekeeping_interval: Duration,
    make_backoff: Duration,
    make_backoff_max: Duration,
    make_timeout: Option<Duration>,
    classifier: C,
    failure_threshold: u32,
    health_check: Option<HealthCheck<Req>>,
    default_rtt: Duration,
    ewma_decay: Duration,
    seed: Option<u64>,
    listeners: Vec<Listener<PoolEvent>>,
    policy: Option<Box<dyn ScalingPolicy>>,
}

impl<Req, C> fmt::Debug for PoolServiceBuilder<Req, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolServiceBuilder")
            .field("name", &self.name)
            .field("min_size", &self.sizing.min)
            .field("max_size", &self.sizing.max)
            .field("member_concurrency", &self.member_concurrency)
            .field("queue_capacity", &self.queue_capacity)
            .field("when_full", &self.when_full)
            .field("strategy", &self.strategy)
            .field("priority", &self.priority.is_some())
            .field("idle_timeout", &self.idle_timeout)
            .field("scaling_policy", &self.policy.is_some())
            .finish_non_exhaustive()
    }
}

impl<Req> Default for PoolServiceBuilder<Req> {
    fn default() -> Self {
        Self {
            name: Arc::from("pool"),
            sizing: Sizing { min: 1, max: 4 },
            member_concurrency: 1,
            queue_capacity: 64,
            when_full: WhenFull::Reject,
            strategy: Strategy::LeastInFlight,
            priority: None,
            scale_up_utilisation: 0.8,
            scale_up_queue: 1,
            scale_down_utilisation: 0.2,
            scale_down_after: Duration::from_secs(30),
            idle_timeout: None,
            housekeeping_interval: Duration::from_secs(1),
            make_backoff: Duration::from_millis(100),
            make_backoff_max: Duration::from_secs(10),
            make_timeout: None,
            classifier: DefaultClassifier,
            failure_threshold: 5,
            health_check: None,
            default_rtt: Duration::from_millis(30),
            ewma_decay: Duration::from_secs(10),
            seed: None,
            listeners: Vec::new(),
            policy: None,
        }
    }
}

impl<Req, C> PoolServiceBuilder<Req, C> {
    /// The pool's name in rejections, events and metrics (default `"pool"`).
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = name.into();
        self
    }

    /// Members kept at all times (default 1, at most 4,096). A fixed pool has
    /// `min_size == max_size`.
    pub fn min_size(mut self, min: usize) -> Self {
        self.sizing.min = min;
        self
    }

    /// Most members at once (default 4, at least 1). Nothing is allocated up front for
    /// them: members are made as load asks, so any value up to `usize::MAX` is accepted.
    pub fn max_size(mut self, max: usize) -> Self {
        self.sizing.max = max;
        self
    }

    /// Calls one member may have in flight (default 1: a worker does one job at a time).
    /// A member's own `poll_ready` can lower it further.
    pub fn member_concurrency(mut self, n: usize) -> Self {
        self.member_concurrency = n;
        self
    }

    /// Requests that may wait for a member (default 64, at least 1).
    pub fn queue_capacity(mut self, n: usize) -> Self {
        self.queue_capacity = n;
        self
    }

    /// What `poll_ready` does when the queue is full (default [`WhenFull::Reject`]).
    pub fn when_full(mut self, when_full: WhenFull) -> Self {
        self.when_full = when_full;
        self
    }

    /// How requests pick a member (default [`Strategy::LeastInFlight`]).
    pub fn strategy(mut self, strategy: Strategy) -> Self {
        self.strategy = strategy;
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

    /// Makes a member when in-flight calls / (members × `member_concurrency`) reach this
    /// ratio (default 0.8).
    pub fn scale_up_utilisation(mut self, ratio: f64) -> Self {
        self.scale_up_utilisation = ratio;
        self
    }

    /// Makes a member when this many requests wait with no member free (default 1; 0 turns
    /// queue-driven scaling off).
    pub fn scale_up_queue(mut self, queued: usize) -> Self {
        self.scale_up_queue = queued;
        self
    }

    /// Retires a member once utilisation stayed below `ratio` for `after` (defaults 0.2 and
    /// 30 s); one member per `after`, never below `min_size`.
    pub fn scale_down(mut self, ratio: f64, after: Duration) -> Self {
        self.scale_down_utilisation = ratio;
        self.scale_down_after = after;
        self
    }

    /// Retires members idle longer than this, down to `min_size` (default: never).
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = Some(timeout);
        self
    }

    /// How often scaling down, idleness and health checks are looked at (default 1 s).
    pub fn housekeeping_interval(mut self, interval: Duration) -> Self {
        self.housekeeping_interval = interval;
        self
    }

    /// Backoff between failed attempts to make a member: `base`, doubling up to `max`
    /// (defaults 100 ms and 10 s).
    pub fn make_backoff(mut self, base: Duration, max: Duration) -> Self {
        self.make_backoff = base;
        self.make_backoff_max = max;
        self
    }

    /// Gives up on making a member after this long (counted as a failure; default: no
    /// limit).
    pub fn make_timeout(mut self, timeout: Duration) -> Self {
        self.make_timeout = Some(timeout);
        self
    }

    /// Judges members' calls with `classifier` (default [`DefaultClassifier`]).
    pub fn classifier<C2>(self, classifier: C2) -> PoolServiceBuilder<Req, C2> {
        PoolServiceBuilder {
            name: self.name,
            sizing: self.sizing,
            member_concurrency: self.member_concurrency,
            queue_capacity: self.queue_capacity,
            when_full: self.when_full,
            strategy: self.strategy,
            priority: self.priority,
            scale_up_utilisation: self.scale_up_utilisation,
            scale_up_queue: self.scale_up_queue,
            scale_down_utilisation: self.scale_down_utilisation,
            scale_down_after: self.scale_down_after,
            idle_timeout: self.idle_timeout,
            housekeeping_interval: self.housekeeping_interval,
            make_backoff: self.make_backoff,
            make_backoff_max: self.make_backoff_max,
            make_timeout: self.make_timeout,
            classifier,
            failure_threshold: self.failure_threshold,
            health_check: self.health_check,
            default_rtt: self.default_rtt,
            ewma_decay: self.ewma_decay,
            seed: self.seed,
            listeners: self.listeners,
            policy: self.policy,
        }
    }

    /// Decides growth and shrinking with `policy` instead of the default
    /// [`UtilisationPolicy`] (whose settings — `scale_up_utilisation`, `scale_up_queue`,
    /// `scale_down` — are then not used); see the [`scaling`](crate::scaling) module.
    pub fn scaling_policy<P: ScalingPolicy>(mut self, policy: P) -> Self {
        self.policy = Some(Box::new(policy));
        self
    }

    /// Evicts a member after this many calls in a row judged failures (default 5; 0 turns
    /// it off).
    pub fn evict_after_failures(mut self, n: u32) -> Self {
        self.failure_threshold = n;
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

    /// Peak-EWMA settings: the latency assumed for a new member and the decay time
    /// (defaults 30 ms and 10 s).
    pub fn peak_ewma(mut self, default_rtt: Duration, decay: Duration) -> Self {
        self.default_rtt = default_rtt;
        self.ewma_decay = decay;
        self
    }

    /// Seeds the random choices of the power-of-two strategies (for reproducible tests).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Calls `listener` with every [`PoolEvent`].
    pub fn on_event<F>(mut self, listener: F) -> Self
    where
        F: Fn(&PoolEvent) + Send + Sync + 'static,
    {
        self.listeners.push(Arc::new(listener));
        self
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.sizing.validate()?;
        ensure(self.member_concurrency >= 1, "member_concurrency", "must be at least 1")?;
        ensure(self.queue_capacity >= 1, "queue_capacity", "must be at least 1")?;
        ensure(
            self.queue_capacity <= Semaphore::MAX_PERMITS,
            "queue_capacity",
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
        if let Some(h) = &self.health_check {
            ensure_nonzero_duration("health_check", h.interval)?;
        }
        ensure_nonzero_duration("peak_ewma", self.ewma_decay)?;
        Ok(())
    }

    /// Builds the pool over `make`, a [`MakeService`](tower_service::Service) called with
    /// `()` (a `tower::service_fn(|()| async { … })` or [`make_fn`]), and starts its worker
    /// on the current Tokio runtime.
    ///
    /// # Errors
    ///
    /// Invalid settings, or no Tokio runtime running.
    pub fn build<M, S>(self, make: M) -> Result<PoolService<Req, S::Response>, ConfigError>
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
    pub fn build_with_target<M, T, S>(
        self,
        make: M,
        target: T,
    ) -> Result<PoolService<Req, S::Response>, ConfigError>
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
            .map_err(|_| ConfigError::new("runtime", "a PoolService must be built inside a Tokio runtime"))?;
        let backoff = Backoff::new(self.make_backoff, self.make_backoff_max)?;
        let (control_tx, control_rx) = mpsc::unbounded_channel();
        let (tx, rx) = mpsc::unbounded_channel();
        let events = EventBus::with_listeners("pool", self.name.clone(), self.listeners);
        let shared = Arc::new(Shared::new(
            self.name,
            events,
            self.queue_capacity,
            self.member_concurrency,
            control_tx,
        ));
        let decay = matches!(self.strategy, Strategy::PeakEwma).then_some(self.ewma_decay);
        let rng = self.seed.map_or_else(AtomicRng::from_entropy, AtomicRng::seeded);
        let policy = self.policy.unwrap_or_else(|| {
            Box::new(UtilisationPolicy::new(
                self.scale_up_utilisation,
                self.scale_up_queue,
                self.scale_down_utilisation,
                self.scale_down_after,
            ))
        });
        let config = WorkerConfig {
            sizing: self.sizing,
            member_concurrency: self.member_concurrency,
            strategy: self.strategy,
            idle_timeout: self.idle_timeout,
            housekeeping_interval: self.housekeeping_interval,
            make_timeout: self.make_timeout,
            default_rtt: self.default_rtt,
            health_check: self.health_check,
        };
        let worker = Worker::new(
            make,
            target,
            config,
            shared.clone(),
            self.classifier,
            self.failure_threshold,
            decay,
            backoff,
            rng,
            rx,
            control_rx,
            policy,
        );
        let worker = if self.priority.is_some() { worker.with_priority() } else { worker };
        let task = runtime.spawn(worker.run());
        let guard = Arc::new(WorkerGuard { task, shared: shared.clone() });
        Ok(PoolService::from_parts(tx, &shared, guard, self.when_full, self.priority))
    }
}

/// A [`Service<()>`](tower_service::Service) that makes members by calling a closure; see
/// [`make_fn`].
#[derive(Clone)]
pub struct MakeFn<F> {
    f: F,
}

impl<F> fmt::Debug for MakeFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MakeFn").finish_non_exhaustive()
    }
}

/// Makes pool members with `f`, a closure returning a future of `Result<S, E>`.
///
/// ```
/// use palisade_pool::make_fn;
/// let make = make_fn(|| async { Ok::<_, std::io::Error>(tower::service_fn(|x: u32| async move { Ok::<_, std::io::Error>(x + 1) })) });
/// # let _ = make;
/// ```
pub fn make_fn<F, Fut, S, E>(f: F) -> MakeFn<F>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<S, E>>,
{
    MakeFn { f }
}

impl<F, Fut, S, E> Service<()> for MakeFn<F>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<S, E>>,
{
    type Response = S;
    type Error = E;
    type Future = Fut;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), E>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, (): ()) -> Fut {
        (self.f)()
    }
}

// === serde ===

/// A [`PoolService`]'s settings as data (feature `serde`), e.g. from a config file. Every
/// field is optional; missing ones keep the builder's defaults. Durations are strings like
/// `"250ms"`. Code-only settings (priority, classifier, health-check request, listeners)
/// are added on the builder returned by [`PoolServiceConfig::into_builder`].
///
/// ```
/// # #[cfg(feature = "serde")] {
/// use palisade_pool::PoolServiceConfig;
///
/// let config: PoolServiceConfig = serde_json::from_str(
///     r#"{ "name": "workers", "min_size": 2, "max_size": 8, "strategy": "peak_ewma",
///          "when_full": "wait", "idle_timeout": "5m", "scale_down_after": "30s" }"#,
/// ).unwrap();
/// let builder = config.into_builder::<String>().unwrap();
/// # let _ = builder;
/// let bad: PoolServiceConfig = serde_json::from_str(r#"{ "min_size": 3, "max_size": 2 }"#).unwrap();
/// assert_eq!(bad.into_builder::<String>().unwrap_err().field(), "min_size");
/// # }
/// ```
#[cfg(feature = "serde")]
#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct PoolServiceConfig {
    /// See [`PoolServiceBuilder::name`].
    #[serde(default)]
    pub name: Option<String>,
    /// See [`PoolServiceBuilder::min_size`].
    #[serde(default)]
    pub min_size: Option<usize>,
    /// See [`PoolServiceBuilder::max_size`].
    #[serde(default)]
    pub max_size: Option<usize>,
    /// See [`PoolServiceBuilder::member_concurrency`].
    #[serde(default)]
    pub member_concurrency: Option<usize>,
    /// See [`PoolServiceBuilder::queue_capacity`].
    #[serde(default)]
    pub queue_capacity: Option<usize>,
    /// `"reject"` or `"wait"`; see [`PoolServiceBuilder::when_full`].
    #[serde(default)]
    pub when_full: Option<WhenFull>,
    /// `"round_robin"`, `"least_in_flight"`, `"power_of_two_choices"` or `"peak_ewma"`.
    #[serde(default)]
    pub strategy: Option<Strategy>,
    /// See [`PoolServiceBuilder::scale_up_utilisation`].
    #[serde(default)]
    pub scale_up_utilisation: Option<f64>,
    /// See [`PoolServiceBuilder::scale_up_queue`].
    #[serde(default)]
    pub scale_up_queue: Option<usize>,
    /// See [`PoolServiceBuilder::scale_down`].
    #[serde(default)]
    pub scale_down_utilisation: Option<f64>,
    /// See [`PoolServiceBuilder::scale_down`].
    #[serde(default, with = "palisade_core::duration::serde::option")]
    pub scale_down_after: Option<Duration>,
    /// See [`PoolServiceBuilder::idle_timeout`].
    #[serde(default, with = "palisade_core::duration::serde::option")]
    pub idle_timeout: Option<Duration>,
    /// See [`PoolServiceBuilder::housekeeping_interval`].
    #[serde(default, with = "palisade_core::duration::serde::option")]
    pub housekeeping_interval: Option<Duration>,
    /// See [`PoolServiceBuilder::make_backoff`].
    #[serde(default, with = "palisade_core::duration::serde::option")]
    pub make_backoff: Option<Duration>,
    /// See [`PoolServiceBuilder::make_backoff`].
    #[serde(default, with = "palisade_core::duration::serde::option")]
    pub make_backoff_max: Option<Duration>,
    /// See [`PoolServiceBuilder::make_timeout`].
    #[serde(default, with = "palisade_core::duration::serde::option")]
    pub make_timeout: Option<Duration>,
    /// See [`PoolServiceBuilder::evict_after_failures`].
    #[serde(default)]
    pub evict_after_failures: Option<u32>,
}

#[cfg(feature = "serde")]
impl PoolServiceConfig {
    /// A builder with these settings, validated as [`PoolServiceBuilder::build`] does.
    ///
    /// # Errors
    ///
    /// The first invalid setting.
    pub fn into_builder<Req>(self) -> Result<PoolServiceBuilder<Req>, ConfigError> {
        let mut b = PoolServiceBuilder::default();
        if let Some(v) = self.name {
            b = b.name(v);
        }
        if let Some(v) = self.min_size {
            b = b.min_size(v);
        }
        if let Some(v) = self.max_size {
            b = b.max_size(v);
        }
        if let Some(v) = self.member_concurrency {
            b = b.member_concurrency(v);
        }
        if let Some(v) = self.queue_capacity {
            b = b.queue_capacity(v);
        }
        if let Some(v) = self.when_full {
            b = b.when_full(v);
        }
        if let Some(v) = self.strategy {
            b = b.strategy(v);
        }
        if let Some(v) = self.scale_up_utilisation {
            b = b.scale_up_utilisation(v);
        }
        if let Some(v) = self.scale_up_queue {
            b = b.scale_up_queue(v);
        }
        let ratio = self.scale_down_utilisation.unwrap_or(b.scale_down_utilisation);
        let after = self.scale_down_after.unwrap_or(b.scale_down_after);
        b = b.scale_down(ratio, after);
        if let Some(v) = self.idle_timeout {
            b = b.idle_timeout(v);
        }
        if let Some(v) = self.housekeeping_interval {
            b = b.housekeeping_interval(v);
        }
        let base = self.make_backoff.unwrap_or(b.make_backoff);
        let max = self.make_backoff_max.unwrap_or(b.make_backoff_max);
        b = b.make_backoff(base, max);
        if let Some(v) = self.make_timeout {
            b = b.make_timeout(v);
        }
        if let Some(v) = self.evict_after_failures {
            b = b.evict_after_failures(v);
        }
        b.validate()?;
        Backoff::new(b.make_backoff, b.make_backoff_max)?;
        Ok(b)
    }
}
