//! `AdaptiveLimitBuilder`: an [`AdaptiveLimitConfig`] plus what is code (the classifier,
//! partition and bypass functions, a custom algorithm, listeners).

use std::fmt;
use std::sync::Arc;

use palisade_core::classify::DefaultClassifier;
use palisade_core::config::{ensure, ConfigError};
use palisade_core::event::{EventBus, Listener};
use palisade_core::WhenFull;

use super::algorithm::LimitAlgorithm;
use super::config::{AdaptiveLimitConfig, PartitionConfig};
use super::layer::AdaptiveLimitLayer;
use super::limiter::{Limiter, PartitionShare};
use super::partition::{Bypass, NoPartitions, PartitionBy};
use crate::event::AdaptiveLimitEvent;

/// Builds an [`AdaptiveLimitLayer`]. Its data settings, their defaults and their checks are
/// [`AdaptiveLimitConfig`]'s; the rest is code:
///
/// | setting | default |
/// |---|---|
/// | [`algorithm`](Self::algorithm) | the config's ([`Vegas::default()`](super::Vegas), as concurrency-limits) |
/// | [`classifier`](Self::classifier) | [`DefaultClassifier`]: `Err` is a drop |
/// | [`partition_by`](Self::partition_by) | none (needed with [`partition`](Self::partition)) |
/// | [`bypass`](Self::bypass) | none: every call counts |
///
/// ```
/// use std::time::Duration;
/// use palisade_bulkhead::adaptive::Aimd;
/// use palisade_bulkhead::AdaptiveLimitLayer;
/// use palisade_core::WhenFull;
///
/// let layer = AdaptiveLimitLayer::builder()
///     .algorithm(Aimd::default())
///     .when_full(WhenFull::wait(Duration::from_millis(100)))
///     .max_queue(50)
///     .build()
///     .unwrap();
/// assert_eq!(layer.handle().limit(), 20);
/// ```
#[must_use]
pub struct AdaptiveLimitBuilder<C = DefaultClassifier, Partition = NoPartitions> {
    config: AdaptiveLimitConfig,
    /// An algorithm given in code; replaces `config.algorithm`.
    algorithm: Option<Box<dyn LimitAlgorithm>>,
    classifier: C,
    partitioner: Partition,
    has_partitioner: bool,
    listeners: Vec<Listener<AdaptiveLimitEvent>>,
}

impl<C: fmt::Debug, Partition> fmt::Debug for AdaptiveLimitBuilder<C, Partition> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdaptiveLimitBuilder")
            .field("config", &self.config)
            .field("algorithm", &self.algorithm)
            .field("classifier", &self.classifier)
            .finish_non_exhaustive()
    }
}

impl AdaptiveLimitBuilder {
    pub(crate) fn from_config(config: AdaptiveLimitConfig) -> Self {
        Self {
            config,
            algorithm: None,
            classifier: DefaultClassifier,
            partitioner: NoPartitions,
            has_partitioner: false,
            listeners: Vec::new(),
        }
    }
}

impl<C> AdaptiveLimitBuilder<C, NoPartitions> {
    /// Maps each request to a partition name; names matching no partition share what is
    /// left under the limit. (Call it before [`bypass`](AdaptiveLimitBuilder::bypass).)
    pub fn partition_by<Select>(self, f: Select) -> AdaptiveLimitBuilder<C, PartitionBy<Select>> {
        let mut b = self.map(|classifier, _| (classifier, PartitionBy(f)));
        b.has_partitioner = true;
        b
    }
}

impl<C, Partition> AdaptiveLimitBuilder<C, Partition> {
    /// The same builder with a new classifier or partitioner; `config` moves over whole.
    fn map<C2, Partition2>(
        self,
        f: impl FnOnce(C, Partition) -> (C2, Partition2),
    ) -> AdaptiveLimitBuilder<C2, Partition2> {
        let (classifier, partitioner) = f(self.classifier, self.partitioner);
        AdaptiveLimitBuilder {
            config: self.config,
            algorithm: self.algorithm,
            classifier,
            partitioner,
            has_partitioner: self.has_partitioner,
            listeners: self.listeners,
        }
    }

    /// Sets [`AdaptiveLimitConfig::name`].
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.config.name = name.into();
        self
    }

    /// The algorithm that moves the limit, in code (a custom [`LimitAlgorithm`], Vegas with
    /// functions): replaces [`AdaptiveLimitConfig::algorithm`].
    pub fn algorithm(mut self, algorithm: impl LimitAlgorithm) -> Self {
        self.algorithm = Some(Box::new(algorithm));
        self
    }

    /// Judges each call: a [`Failure`](palisade_core::Outcome::Failure) is a *drop* (timeouts,
    /// 503/429, `UNAVAILABLE`, … — it shrinks the limit), a success is a latency sample, an
    /// ignored call is no sample. Turn failures that say nothing about load (a 500 from a bug)
    /// into ignored ones with [`ClassifyExt::ignore_if`](palisade_core::ClassifyExt::ignore_if).
    pub fn classifier<C2>(self, classifier: C2) -> AdaptiveLimitBuilder<C2, Partition> {
        self.map(|_, partitioner| (classifier, partitioner))
    }

    /// Requests for which `predicate` is true skip the limit: they take no capacity, are
    /// never shed or queued and feed no sample (concurrency-limits' `bypassLimitResolver`;
    /// several predicates are or-ed). Counted in
    /// [`AdaptiveLimitSnapshot::bypassed`](super::AdaptiveLimitSnapshot::bypassed).
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
    pub fn bypass<Predicate>(
        self,
        predicate: Predicate,
    ) -> AdaptiveLimitBuilder<C, Bypass<Partition, Predicate>> {
        self.map(|classifier, inner| (classifier, Bypass { inner, predicate }))
    }

    /// Sets [`AdaptiveLimitConfig::shed_when_inner_not_ready`].
    pub fn shed_when_inner_not_ready(mut self) -> Self {
        self.config.shed_when_inner_not_ready = true;
        self
    }

    /// Adds a partition to [`AdaptiveLimitConfig::partitions`]: guaranteed `ratio` of the
    /// limit (e.g. `("live", 0.9)`, `("batch", 0.1)`); calls pick theirs through
    /// [`partition_by`](AdaptiveLimitBuilder::partition_by). A partition may go beyond its
    /// share while the total is under the limit, and always gets its share (at least 1) when
    /// the total is full.
    pub fn partition(mut self, name: impl Into<String>, ratio: f64) -> Self {
        self.config.partitions.push(PartitionConfig { name: name.into(), ratio });
        self
    }

    /// Sets [`AdaptiveLimitConfig::when_full`].
    pub fn when_full(mut self, when_full: WhenFull) -> Self {
        self.config.when_full = when_full;
        self
    }

    /// Sets [`AdaptiveLimitConfig::max_queue`].
    pub fn max_queue(mut self, n: usize) -> Self {
        self.config.max_queue = n;
        self
    }

    /// Calls `f` with every event. A panicking listener is contained.
    pub fn on_event<OnEvent>(mut self, f: OnEvent) -> Self
    where
        OnEvent: Fn(&AdaptiveLimitEvent) + Send + Sync + 'static,
    {
        self.listeners.push(Arc::new(f));
        self
    }

    /// Checks the settings and builds the layer.
    ///
    /// # Errors
    ///
    /// As [`AdaptiveLimitConfig::validate`] (for an algorithm given in code: its own
    /// [`validate`](LimitAlgorithm::validate)), and partitions without `partition_by` or the
    /// reverse.
    pub fn build(self) -> Result<AdaptiveLimitLayer<C, Partition>, ConfigError> {
        match &self.algorithm {
            Some(algorithm) => algorithm.validate()?,
            None => self.config.algorithm.to_algorithm().validate()?,
        }
        self.config.validate_rest()?;
        ensure(
            self.config.partitions.is_empty() != self.has_partitioner,
            "partition_by",
            "partitions and partition_by go together",
        )?;
        Ok(self.assemble())
    }

    /// The layer of validated settings (the defaults are valid: `AdaptiveLimitLayer::new`).
    pub(crate) fn assemble(self) -> AdaptiveLimitLayer<C, Partition> {
        let config = self.config;
        let algorithm = self.algorithm.unwrap_or_else(|| config.algorithm.to_algorithm());
        let names: Arc<[Arc<str>]> = config.partitions.iter().map(|p| Arc::from(p.name.as_str())).collect();
        let partitions = names
            .iter()
            .zip(&config.partitions)
            .map(|(name, p)| PartitionShare { name: name.clone(), ratio: p.ratio });
        let name: Arc<str> = Arc::from(config.name.as_str());
        let events = EventBus::with_listeners("adaptive_limit", name.clone(), self.listeners);
        let limiter =
            Limiter::new(name, events, algorithm, partitions.collect(), config.when_full, config.max_queue);
        AdaptiveLimitLayer::from_parts(
            Arc::new(limiter),
            self.classifier,
            Arc::new(self.partitioner),
            names,
            config.shed_when_inner_not_ready,
        )
    }
}
