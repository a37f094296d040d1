//! [`PipelineBuilder`]: chains stages into a [`PipelineService`].

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use palisade_core::event::EventBus;
use palisade_core::ConfigError;
use tower_layer::Layer;

use crate::chain::{Chain, Link, Start};
use crate::error::DeadLetter;
use crate::event::PipelineEvent;
use crate::handle::{PipelineShared, StageShared};
use crate::output::{Execution, FilterMode, NoFilter, Order, WithFilter};
use crate::service::PipelineService;
use crate::stage::{FilterMap, Map, MapFn, Predicate, Stage, StageFn, StageKind, StageService};

const PATTERN: &str = "pipeline";

/// Chains stages into a [`PipelineService`]; start with [`PipelineService::builder`].
///
/// Each stage is a tower `Service` whose request is the previous stage's response: adding a
/// stage whose request type does not match is a compile error. Settings that follow a stage
/// ([`concurrency`](Self::concurrency), [`buffer`](Self::buffer),
/// [`keep_failed_items`](Self::keep_failed_items), [`dead_letter`](Self::dead_letter)) apply
/// to the stage added last.
pub struct PipelineBuilder<In, Stages, M = NoFilter> {
    chain: Stages,
    name: Arc<str>,
    bus: Arc<EventBus<PipelineEvent>>,
    stages: Vec<Arc<StageShared>>,
    order: Order,
    execution: Execution,
    fail_fast: bool,
    error: Option<ConfigError>,
    _types: PhantomData<fn(In) -> M>,
}

impl<In, Stages: fmt::Debug, M> fmt::Debug for PipelineBuilder<In, Stages, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PipelineBuilder")
            .field("name", &self.name)
            .field("chain", &self.chain)
            .field("order", &self.order)
            .field("fail_fast", &self.fail_fast)
            .finish_non_exhaustive()
    }
}

impl<In> PipelineBuilder<In, Start, NoFilter> {
    pub(crate) fn new() -> Self {
        let name: Arc<str> = Arc::from(PATTERN);
        Self {
            chain: Start,
            bus: Arc::new(EventBus::new(PATTERN, name.clone())),
            name,
            stages: Vec::new(),
            order: Order::Preserved,
            execution: Execution::Tasks,
            fail_fast: false,
            error: None,
            _types: PhantomData,
        }
    }

    /// Names the pipeline (default `"pipeline"`): it labels metrics
    /// (`<pipeline>.<stage>`) and events. Set it before adding stages.
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        let name = name.into();
        if name.is_empty() {
            self.record(ConfigError::new("name", "must not be empty"));
        }
        self.bus = Arc::new(EventBus::new(PATTERN, name.clone()));
        self.name = name;
        self
    }
}

impl<In, Stages, M> PipelineBuilder<In, Stages, M> {
    fn record(&mut self, e: ConfigError) {
        if self.error.is_none() {
            self.error = Some(e);
        }
    }

    fn with<C2, M2>(self, chain: impl FnOnce(Stages) -> C2) -> PipelineBuilder<In, C2, M2> {
        PipelineBuilder {
            chain: chain(self.chain),
            name: self.name,
            bus: self.bus,
            stages: self.stages,
            order: self.order,
            execution: self.execution,
            fail_fast: self.fail_fast,
            error: self.error,
            _types: PhantomData,
        }
    }

    /// The order of a stream's results (default [`Order::Preserved`]).
    pub fn order(mut self, order: Order) -> Self {
        self.order = order;
        self
    }

    /// Where a stream's stages run (default [`Execution::Tasks`]).
    pub fn execution(mut self, execution: Execution) -> Self {
        self.execution = execution;
        self
    }

    /// Stops a stream at its first error (after yielding it) and cancels every stage, instead
    /// of reporting the error and going on (the default).
    pub fn fail_fast(mut self, fail_fast: bool) -> Self {
        self.fail_fast = fail_fast;
        self
    }

    /// Calls `listener` with every [`PipelineEvent`].
    pub fn on_event<F>(self, listener: F) -> Self
    where
        F: Fn(&PipelineEvent) + Send + Sync + 'static,
    {
        self.bus.subscribe(listener);
        self
    }
}

impl<In, Stages, M> PipelineBuilder<In, Stages, M>
where
    Stages: Link<In>,
{
    fn push<S, Kind, M2>(
        mut self,
        name: impl Into<Arc<str>>,
        service: S,
    ) -> PipelineBuilder<In, Stages::Next<Stage<S, Kind, Stages::Cur>>, M2>
    where
        S: StageService<Stages::Cur>,
        Kind: StageKind<S::Response>,
    {
        let name: Arc<str> = name.into();
        if name.is_empty() {
            self.record(ConfigError::new("stage", "stage names must not be empty"));
        } else if self.stages.iter().any(|s| s.name == name) {
            self.record(ConfigError::new("stage", format!("stage name `{name}` is used twice")));
        }
        let shared = Arc::new(StageShared::new(&self.name, name, Stages::LEN, self.bus.clone()));
        self.stages.push(shared.clone());
        let stage = Stage::<S, Kind, Stages::Cur>::new(service, shared);
        self.with(|chain| chain.append(stage))
    }

    /// Adds a stage: any tower service taking the current item.
    ///
    /// Wrap the service in any layer first to give this stage alone a retry, a timeout, a
    /// breaker… (`ServiceBuilder::new().layer(…).service(svc)`), or use
    /// [`layered`](Self::layered).
    pub fn stage<S>(
        self,
        name: impl Into<Arc<str>>,
        service: S,
    ) -> PipelineBuilder<In, Stages::Next<Stage<S, Map, Stages::Cur>>, M>
    where
        S: StageService<Stages::Cur>,
        S::Response: Send + 'static,
    {
        self.push::<S, Map, M>(name, service)
    }

    /// Adds a stage made of `layer` around `service`: pipeline middleware for this stage only.
    pub fn layered<L, S>(
        self,
        name: impl Into<Arc<str>>,
        layer: L,
        service: S,
    ) -> PipelineBuilder<In, Stages::Next<Stage<L::Service, Map, Stages::Cur>>, M>
    where
        L: Layer<S>,
        L::Service: StageService<Stages::Cur>,
        <L::Service as tower_service::Service<Stages::Cur>>::Response: Send + 'static,
    {
        self.push::<L::Service, Map, M>(name, layer.layer(service))
    }

    /// Adds a stage from an async closure `FnMut(item) -> impl Future<Output = Result<U, E>>`.
    pub fn stage_fn<F, Fut, U, E>(
        self,
        name: impl Into<Arc<str>>,
        f: F,
    ) -> PipelineBuilder<In, Stages::Next<Stage<StageFn<F>, Map, Stages::Cur>>, M>
    where
        F: FnMut(Stages::Cur) -> Fut + Clone + Send + 'static,
        Fut: std::future::Future<Output = Result<U, E>> + Send + 'static,
        E: Into<palisade_core::BoxError> + Send + 'static,
        U: Send + 'static,
    {
        self.push::<StageFn<F>, Map, M>(name, StageFn::new(f))
    }

    /// Adds a stage that transforms each item with a plain function (no I/O, cannot fail).
    pub fn map<F, U>(
        self,
        name: impl Into<Arc<str>>,
        f: F,
    ) -> PipelineBuilder<In, Stages::Next<Stage<MapFn<F>, Map, Stages::Cur>>, M>
    where
        F: FnMut(Stages::Cur) -> U + Clone + Send + 'static,
        U: Send + 'static,
    {
        self.push::<MapFn<F>, Map, M>(name, MapFn::new(f))
    }

    /// Adds a filter stage: items for which `predicate` returns `false` are dropped. A dropped
    /// item is not an error: a stream leaves it out; a call answers
    /// [`Processed::Filtered`](crate::Processed::Filtered).
    pub fn filter<F>(
        self,
        name: impl Into<Arc<str>>,
        predicate: F,
    ) -> PipelineBuilder<In, Stages::Next<Stage<Predicate<F>, FilterMap, Stages::Cur>>, WithFilter>
    where
        F: FnMut(&Stages::Cur) -> bool + Clone + Send + 'static,
    {
        self.push::<Predicate<F>, FilterMap, WithFilter>(name, Predicate::new(predicate))
    }

    /// Adds a service stage that may drop items: it answers `Option<U>`, `None` drops the item.
    pub fn filter_map<S, U>(
        self,
        name: impl Into<Arc<str>>,
        service: S,
    ) -> PipelineBuilder<In, Stages::Next<Stage<S, FilterMap, Stages::Cur>>, WithFilter>
    where
        S: StageService<Stages::Cur, Response = Option<U>>,
        U: Send + 'static,
    {
        self.push::<S, FilterMap, WithFilter>(name, service)
    }
}

impl<In, Stages, M> PipelineBuilder<In, Stages, M>
where
    Stages: Chain<In>,
    M: FilterMode,
{
    /// How many items the last stage works on at once in a stream (default 1). Calls through
    /// the pipeline as a `Service` are limited by the caller instead.
    pub fn concurrency(mut self, n: usize) -> Self {
        if n == 0 {
            self.record(ConfigError::new("concurrency", "must be at least 1"));
        }
        self.chain.last_options().concurrency = n;
        self
    }

    /// The capacity of the last stage's output buffer in a stream (default 16): how many
    /// results may wait for the next stage (or the consumer) before the stage stops.
    pub fn buffer(mut self, n: usize) -> Self {
        if n == 0 {
            self.record(ConfigError::new("buffer", "must be at least 1"));
        }
        self.chain.last_options().buffer = n;
        self
    }

    /// Keeps a copy of each item the last stage receives so that a failure carries it: read
    /// it with [`StageError::item`](crate::StageError::item). Costs one clone per item.
    pub fn keep_failed_items(mut self) -> Self
    where
        Stages::LastIn: Clone + Sync,
    {
        let opts = self.chain.last_options();
        opts.keep = Some(<Stages::LastIn as Clone>::clone);
        opts.into_any = Some(|item| Box::new(item));
        self
    }

    /// Sends each item that fails the last stage to `sink`, with its error. A stream then
    /// leaves the item out and goes on; a call answers a [`StageError`](crate::StageError)
    /// marked [`is_dead_lettered`](crate::StageError::is_dead_lettered). Costs one clone per
    /// item (the service consumes its request).
    ///
    /// The sink runs on the stage's task: keep it short (push to a channel with `try_send`).
    pub fn dead_letter<F>(mut self, sink: F) -> Self
    where
        Stages::LastIn: Clone,
        F: Fn(DeadLetter<Stages::LastIn>) + Send + Sync + 'static,
    {
        let opts = self.chain.last_options();
        opts.keep = Some(<Stages::LastIn as Clone>::clone);
        opts.dead_letter = Some(Arc::new(sink));
        self
    }

    /// Validates the settings and builds the pipeline.
    pub fn build(self) -> Result<PipelineService<In, Stages, M>, ConfigError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let shared = Arc::new(PipelineShared { name: self.name, bus: self.bus, stages: self.stages });
        Ok(PipelineService::new(self.chain, shared, self.order, self.execution, self.fail_fast))
    }
}
