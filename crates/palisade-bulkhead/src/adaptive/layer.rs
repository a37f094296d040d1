use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use palisade_core::classify::DefaultClassifier;
use palisade_core::config::{ensure, ensure_nonzero_duration, ConfigError};
use palisade_core::event::{EventBus, Listener};
use tower_layer::Layer;

use super::algorithm::{LimitAlgorithm, Vegas};
use super::limiter::{Limiter, Partition};
use super::service::AdaptiveLimit;
use crate::event::AdaptiveEvent;

/// Picks a call's partition from its request.
///
/// Implemented by [`NoPartitions`] and by [`PartitionBy`] (from
/// [`AdaptiveLimitBuilder::partition_by`]).
pub trait Partitioner<Req> {
    /// The index in `partitions` of the request's partition, or `None` (the call then only
    /// passes while the total is under the limit).
    fn select(&self, req: &Req, partitions: &[Arc<str>]) -> Option<usize>;

    /// Whether `req` skips the limit altogether (see
    /// [`AdaptiveLimitBuilder::bypass`]): no capacity taken, no sample, never shed.
    fn bypass(&self, req: &Req) -> bool {
        let _ = req;
        false
    }
}

/// A partitioner with a bypass predicate, from [`AdaptiveLimitBuilder::bypass`].
#[derive(Clone, Copy)]
pub struct Bypass<P, F> {
    inner: P,
    predicate: F,
}

impl<P, F> fmt::Debug for Bypass<P, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bypass").finish_non_exhaustive()
    }
}

impl<Req, P, F> Partitioner<Req> for Bypass<P, F>
where
    P: Partitioner<Req>,
    F: Fn(&Req) -> bool,
{
    fn select(&self, req: &Req, partitions: &[Arc<str>]) -> Option<usize> {
        self.inner.select(req, partitions)
    }

    fn bypass(&self, req: &Req) -> bool {
        // Several predicates are or-ed, as concurrency-limits' `bypassLimitResolver`.
        self.inner.bypass(req) || (self.predicate)(req)
    }
}

/// No partitions: every call shares the whole limit.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoPartitions;

impl<Req> Partitioner<Req> for NoPartitions {
    fn select(&self, _: &Req, _: &[Arc<str>]) -> Option<usize> {
        None
    }
}

/// Partitions by a function from the request to a partition name.
#[derive(Clone, Copy)]
pub struct PartitionBy<F>(F);

impl<F> fmt::Debug for PartitionBy<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PartitionBy").finish_non_exhaustive()
    }
}

impl<Req, F, N> Partitioner<Req> for PartitionBy<F>
where
    F: Fn(&Req) -> N,
    N: AsRef<str>,
{
    fn select(&self, req: &Req, partitions: &[Arc<str>]) -> Option<usize> {
        let name = (self.0)(req);
        partitions.iter().position(|p| **p == *name.as_ref())
    }
}

/// Applies an [`AdaptiveLimit`]: a concurrency limit that an algorithm ([`Vegas`] by
/// default, [`Aimd`](super::Aimd), [`Gradient2`](super::Gradient2)) moves from the latency and
/// outcome of every call; calls over the limit are shed with
/// [`Overloaded`](palisade_core::rejection::Overloaded). See the [module docs](super).
///
/// # Clone
///
/// The limit, the in-flight counts and the backlog live in an `Arc` created when the layer is
/// built: every service this layer wraps, and every clone, share one limit. The
/// [`handle`](Self::handle) reads it.
pub struct AdaptiveLimitLayer<C = DefaultClassifier, P = NoPartitions> {
    limiter: Arc<Limiter>,
    classifier: C,
    partitioner: Arc<P>,
    names: Arc<[Arc<str>]>,
    shed_when_inner_not_ready: bool,
}

impl<C: Clone, P> Clone for AdaptiveLimitLayer<C, P> {
    fn clone(&self) -> Self {
        Self {
            limiter: self.limiter.clone(),
            classifier: self.classifier.clone(),
            partitioner: self.partitioner.clone(),
            names: self.names.clone(),
            shed_when_inner_not_ready: self.shed_when_inner_not_ready,
        }
    }
}

impl<C: fmt::Debug, P> fmt::Debug for AdaptiveLimitLayer<C, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdaptiveLimitLayer")
            .field("limiter", &self.limiter)
            .field("classifier", &self.classifier)
            .field("partitions", &self.names)
            .finish_non_exhaustive()
    }
}

impl AdaptiveLimitLayer {
    /// Starts building an adaptive limit.
    pub fn builder() -> AdaptiveLimitBuilder {
        AdaptiveLimitBuilder {
            name: Arc::from("adaptive_limit"),
            algorithm: None,
            classifier: DefaultClassifier,
            partitioner: NoPartitions,
            has_partitioner: false,
            partitions: Vec::new(),
            backlog: None,
            shed_when_inner_not_ready: false,
            listeners: Vec::new(),
        }
    }
}

impl<C, P> AdaptiveLimitLayer<C, P> {
    /// The handle: current limit, snapshot, events.
    pub fn handle(&self) -> AdaptiveLimitHandle {
        AdaptiveLimitHandle { limiter: self.limiter.clone() }
    }
}

impl<S, C: Clone, P> Layer<S> for AdaptiveLimitLayer<C, P> {
    type Service = AdaptiveLimit<S, C, P>;

    fn layer(&self, inner: S) -> Self::Service {
        AdaptiveLimit::new(
            inner,
            self.limiter.clone(),
            self.classifier.clone(),
            self.partitioner.clone(),
            self.names.clone(),
            self.shed_when_inner_not_ready,
        )
    }
}

/// Builds an [`AdaptiveLimitLayer`].
///
/// | setting | default |
/// |---|---|
/// | [`name`](Self::name) | `"adaptive_limit"` |
/// | [`algorithm`](Self::algorithm) | [`Vegas::default()`] (as concurrency-limits) |
/// | [`classifier`](Self::classifier) | [`DefaultClassifier`]: `Err` is a drop |
/// | [`partition`](Self::partition) | none |
/// | [`backlog`](Self::backlog) | none: shed at once at the limit |
/// | [`bypass`](Self::bypass) | none: every call counts |
/// | [`shed_when_inner_not_ready`](Self::shed_when_inner_not_ready) | off: wait for the inner service |
#[must_use]
pub struct AdaptiveLimitBuilder<C = DefaultClassifier, P = NoPartitions> {
    name: Arc<str>,
    algorithm: Option<Box<dyn LimitAlgorithm>>,
    classifier: C,
    partitioner: P,
    has_partitioner: bool,
    partitions: Vec<(Arc<str>, f64)>,
    backlog: Option<(usize, Duration)>,
    shed_when_inner_not_ready: bool,
    listeners: Vec<Listener<AdaptiveEvent>>,
}

impl<C: fmt::Debug, P> fmt::Debug for AdaptiveLimitBuilder<C, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdaptiveLimitBuilder")
            .field("name", &self.name)
            .field("algorithm", &self.algorithm)
            .field("classifier", &self.classifier)
            .field("partitions", &self.partitions)
            .field("backlog", &self.backlog)
            .finish_non_exhaustive()
    }
}

impl<C> AdaptiveLimitBuilder<C, NoPartitions> {
    /// Maps each request to a partition name; names matching no partition share what is
    /// left under the limit. (Call it before [`bypass`](AdaptiveLimitBuilder::bypass).)
    pub fn partition_by<F>(self, f: F) -> AdaptiveLimitBuilder<C, PartitionBy<F>> {
        AdaptiveLimitBuilder {
            name: self.name,
            algorithm: self.algorithm,
            classifier: self.classifier,
            partitioner: PartitionBy(f),
            has_partitioner: true,
            partitions: self.partitions,
            backlog: self.backlog,
            shed_when_inner_not_ready: self.shed_when_inner_not_ready,
            listeners: self.listeners,
        }
    }
}

impl<C, P> AdaptiveLimitBuilder<C, P> {
    /// The name in rejections, events and metric labels.
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = name.into();
        self
    }

    /// The algorithm that moves the limit.
    pub fn algorithm(mut self, algorithm: impl LimitAlgorithm) -> Self {
        self.algorithm = Some(Box::new(algorithm));
        self
    }

    /// Judges each call: a [`Failure`](palisade_core::Outcome::Failure) is a *drop* (timeouts,
    /// 503/429, `UNAVAILABLE`, … — it shrinks the limit), a success is a latency sample, an
    /// ignored call is no sample. Turn failures that say nothing about load (a 500 from a bug)
    /// into ignored ones with [`ClassifyExt::ignore_if`](palisade_core::ClassifyExt::ignore_if).
    pub fn classifier<C2>(self, classifier: C2) -> AdaptiveLimitBuilder<C2, P> {
        AdaptiveLimitBuilder {
            name: self.name,
            algorithm: self.algorithm,
            classifier,
            partitioner: self.partitioner,
            has_partitioner: self.has_partitioner,
            partitions: self.partitions,
            backlog: self.backlog,
            shed_when_inner_not_ready: self.shed_when_inner_not_ready,
            listeners: self.listeners,
        }
    }

    /// Requests for which `predicate` is true skip the limit: they take no capacity, are
    /// never shed or queued and feed no sample (concurrency-limits' `bypassLimitResolver`;
    /// several predicates are or-ed). Counted in [`AdaptiveSnapshot::bypassed`].
    ///
    /// ```
    /// use palisade_bulkhead::adaptive::Fixed;
    /// use palisade_bulkhead::AdaptiveLimitLayer;
    ///
    /// // Health checks always pass.
    /// let layer = AdaptiveLimitLayer::builder()
    ///     .algorithm(Fixed::new(10))
    ///     .bypass(|req: &http::Request<()>| req.uri().path() == "/health")
    ///     .build()
    ///     .unwrap();
    /// # let _ = layer;
    /// ```
    pub fn bypass<F>(self, predicate: F) -> AdaptiveLimitBuilder<C, Bypass<P, F>> {
        AdaptiveLimitBuilder {
            name: self.name,
            algorithm: self.algorithm,
            classifier: self.classifier,
            partitioner: Bypass { inner: self.partitioner, predicate },
            has_partitioner: self.has_partitioner,
            partitions: self.partitions,
            backlog: self.backlog,
            shed_when_inner_not_ready: self.shed_when_inner_not_ready,
            listeners: self.listeners,
        }
    }

    /// Sheds calls at once with [`Overloaded`](palisade_core::rejection::Overloaded) while
    /// the inner service is not ready, as tower's `LoadShed`: `poll_ready` answers ready and
    /// `call` refuses without calling the inner service (no capacity taken, no sample).
    pub fn shed_when_inner_not_ready(mut self) -> Self {
        self.shed_when_inner_not_ready = true;
        self
    }

    /// Adds a partition guaranteed `ratio` of the limit (e.g. `("live", 0.9)`,
    /// `("batch", 0.1)`); calls pick theirs through [`partition_by`](Self::partition_by).
    /// A partition may go beyond its share while the total is under the limit, and always
    /// gets its share (at least 1) when the total is full.
    pub fn partition(mut self, name: impl Into<Arc<str>>, ratio: f64) -> Self {
        self.partitions.push((name.into(), ratio));
        self
    }

    /// Lets up to `max_len` calls over the limit wait up to `max_wait` for capacity, newest
    /// first (LIFO: under overload the freshest requests, whose callers are still there, go
    /// first). Without a backlog, calls over the limit are shed at once.
    pub fn backlog(mut self, max_len: usize, max_wait: Duration) -> Self {
        self.backlog = Some((max_len, max_wait));
        self
    }

    /// Calls `f` with every event.
    pub fn on_event<F>(mut self, f: F) -> Self
    where
        F: Fn(&AdaptiveEvent) + Send + Sync + 'static,
    {
        self.listeners.push(Arc::new(f));
        self
    }

    /// Checks the settings and builds the layer.
    ///
    /// # Errors
    ///
    /// Invalid algorithm settings; a partition ratio outside `(0, 1]` or ratios summing above
    /// 1; partitions without `partition_by` or the reverse; a backlog of length zero or a
    /// zero backlog wait.
    pub fn build(self) -> Result<AdaptiveLimitLayer<C, P>, ConfigError> {
        let algorithm = self.algorithm.unwrap_or_else(|| Box::new(Vegas::default()));
        algorithm.validate()?;
        let mut total = 0.0;
        for (name, ratio) in &self.partitions {
            // As concurrency-limits: [0, 1]; a share of 0 still guarantees one call.
            ensure(
                ratio.is_finite() && (0.0..=1.0).contains(ratio),
                "partition",
                format!("ratio of `{name}` must be in [0, 1]"),
            )?;
            total += ratio;
        }
        ensure(total <= 1.0 + 1e-9, "partition", "ratios must not sum above 1.0")?;
        ensure(
            self.partitions.is_empty() != self.has_partitioner,
            "partition_by",
            "partitions and partition_by go together",
        )?;
        if let Some((len, wait)) = self.backlog {
            ensure(len > 0, "backlog", "length must be at least 1")?;
            ensure_nonzero_duration("backlog", wait)?;
        }
        let names: Arc<[Arc<str>]> = self.partitions.iter().map(|(n, _)| n.clone()).collect();
        let partitions = self.partitions.into_iter().map(|(name, ratio)| Partition { name, ratio }).collect();
        let events = EventBus::with_listeners("adaptive_limit", self.name.clone(), self.listeners);
        let limiter = Limiter::new(self.name, events, algorithm, partitions, self.backlog);
        Ok(AdaptiveLimitLayer {
            limiter: Arc::new(limiter),
            classifier: self.classifier,
            partitioner: Arc::new(self.partitioner),
            names,
            shed_when_inner_not_ready: self.shed_when_inner_not_ready,
        })
    }
}

/// A handle to an adaptive limit: the current limit, a snapshot, events.
#[derive(Clone)]
pub struct AdaptiveLimitHandle {
    pub(crate) limiter: Arc<Limiter>,
}

impl fmt::Debug for AdaptiveLimitHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdaptiveLimitHandle").field("limiter", &self.limiter).finish()
    }
}

impl AdaptiveLimitHandle {
    /// The layer's name.
    pub fn name(&self) -> &str {
        &self.limiter.name
    }

    /// The current limit (also the gauge `palisade_adaptive_limit_limit`).
    pub fn limit(&self) -> usize {
        self.limiter.limit()
    }

    /// Calls holding capacity now.
    pub fn in_flight(&self) -> usize {
        self.limiter.in_flight()
    }

    /// Calls waiting in the backlog now.
    pub fn backlog(&self) -> usize {
        self.limiter.backlog_len()
    }

    /// The algorithm's `(min_limit, max_limit)`, when it has bounds.
    pub fn bounds(&self) -> Option<(usize, usize)> {
        self.limiter.bounds()
    }

    /// Sets the limit now (concurrency-limits' `SettableLimit.setLimit`, for any algorithm);
    /// later samples move it from there. Raising it admits backlog waiters at once; lowering
    /// it below the calls in flight lets them finish and admits no more until their number
    /// is below the new limit. Publishes [`AdaptiveEvent::LimitChanged`].
    ///
    /// ```
    /// use palisade_bulkhead::adaptive::Fixed;
    /// use palisade_bulkhead::AdaptiveLimitLayer;
    ///
    /// let layer = AdaptiveLimitLayer::builder().algorithm(Fixed::new(10)).build().unwrap();
    /// layer.handle().set_limit(4).unwrap();
    /// assert_eq!(layer.handle().limit(), 4);
    /// assert!(layer.handle().set_limit(0).is_err());
    /// ```
    ///
    /// # Errors
    ///
    /// `limit` is zero or outside the algorithm's [`bounds`](Self::bounds) (change those with
    /// [`set_bounds`](Self::set_bounds)); nothing changes then.
    pub fn set_limit(&self, limit: usize) -> Result<(), ConfigError> {
        self.limiter.set_limit(limit)
    }

    /// Changes the algorithm's `min_limit` and `max_limit` now; the limit moves into them
    /// (with the same effect on waiters and calls in flight as [`set_limit`](Self::set_limit)).
    ///
    /// # Errors
    ///
    /// `max_limit` is zero, `min_limit > max_limit`, or the algorithm has no bounds to
    /// change ([`Fixed`](super::Fixed), the default of a custom algorithm); nothing changes
    /// then.
    pub fn set_bounds(&self, min_limit: usize, max_limit: usize) -> Result<(), ConfigError> {
        self.limiter.set_bounds(min_limit, max_limit)
    }

    /// Registers a listener for every event from now on.
    pub fn subscribe<F>(&self, f: F)
    where
        F: Fn(&AdaptiveEvent) + Send + Sync + 'static,
    {
        self.limiter.events.subscribe(f);
    }

    /// The limit's numbers now.
    pub fn snapshot(&self) -> AdaptiveSnapshot {
        let m = &self.limiter.metrics;
        AdaptiveSnapshot {
            limit: self.limit(),
            in_flight: self.in_flight(),
            backlog: self.backlog(),
            acquired: m.acquired.get(),
            rejected: m.rejected.get(),
            bypassed: m.bypassed.get(),
            dropped: m.dropped.get(),
            mean_wait: m.wait_time.mean(),
            partitions: self
                .limiter
                .partition_state()
                .into_iter()
                .map(|(name, limit, in_flight)| PartitionSnapshot { name, limit, in_flight })
                .collect(),
        }
    }
}

/// An adaptive limit's numbers at one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct AdaptiveSnapshot {
    /// The current limit.
    pub limit: usize,
    /// Calls holding capacity.
    pub in_flight: usize,
    /// Calls waiting in the backlog.
    pub backlog: usize,
    /// Calls admitted so far.
    pub acquired: u64,
    /// Calls shed so far.
    pub rejected: u64,
    /// Calls that skipped the limit through the bypass predicate so far.
    pub bypassed: u64,
    /// Calls the classifier judged dropped (timeouts, overload answers) so far.
    pub dropped: u64,
    /// Mean backlog wait of the calls that waited.
    pub mean_wait: Duration,
    /// Each partition's share and use.
    pub partitions: Vec<PartitionSnapshot>,
}

/// One partition in an [`AdaptiveSnapshot`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PartitionSnapshot {
    /// The partition's name.
    pub name: Arc<str>,
    /// Its guaranteed share of the current limit.
    pub limit: usize,
    /// Its calls holding capacity.
    pub in_flight: usize,
}
