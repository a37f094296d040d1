//! [`PipelineService`]: a chain of stages that is itself a tower `Service`, and runs streams.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_core::Stream;
use pin_project_lite::pin_project;
use tower_service::Service;

use crate::builder::PipelineBuilder;
use crate::chain::{Chain, SpawnCtx, Start, StreamSource};
use crate::error::StageError;
use crate::handle::{PipelineHandle, PipelineShared};
use crate::output::{Execution, FilterMode, NoFilter, Order};
use crate::stream::{PipelineStream, Runner};

/// A typed chain of stages: a tower `Service<In>` answering the last stage's response, and a
/// stream processor with per-stage concurrency and backpressure.
///
/// Build one with [`PipelineService::builder`]. A pipeline without filter stages answers
/// `Out`; one with filter stages answers [`Processed<Out>`](crate::Processed).
///
/// # As a `Service`
///
/// `poll_ready` is the first stage's `poll_ready`; `call` calls the first stage, then each
/// later stage on a clone of it, polled ready inside the response future. The stages run in
/// the caller's task: dropping the response future drops the call in whatever stage it is.
/// Any failure is a [`StageError`] naming the stage.
///
/// # As a stream processor
///
/// [`process_stream`](Self::process_stream) runs every stage on its own task (owned by the
/// returned stream), each with its concurrency and a bounded output buffer; see the crate
/// docs.
///
/// # Clone
///
/// Clones share the pipeline's metrics and event listeners ([`handle`](Self::handle)); each
/// clone holds clones of the stage services and starts un-ready.
pub struct PipelineService<In, Stages, M = NoFilter> {
    chain: Stages,
    shared: Arc<PipelineShared>,
    order: Order,
    execution: Execution,
    fail_fast: bool,
    _types: PhantomData<fn(In) -> M>,
}

impl PipelineService<(), Start, NoFilter> {
    /// A builder for a pipeline taking `In`.
    pub fn builder<In>() -> PipelineBuilder<In, Start, NoFilter> {
        PipelineBuilder::new()
    }
}

impl<In, Stages, M> PipelineService<In, Stages, M> {
    pub(crate) fn new(
        chain: Stages,
        shared: Arc<PipelineShared>,
        order: Order,
        execution: Execution,
        fail_fast: bool,
    ) -> Self {
        Self { chain, shared, order, execution, fail_fast, _types: PhantomData }
    }

    /// The pipeline's handle: per-stage numbers and events, shared with every clone.
    pub fn handle(&self) -> PipelineHandle {
        PipelineHandle { shared: self.shared.clone() }
    }

    /// The chain of stages.
    pub fn get_ref(&self) -> &Stages {
        &self.chain
    }

    /// The chain of stages, mutably.
    pub fn get_mut(&mut self) -> &mut Stages {
        &mut self.chain
    }

    /// The chain of stages, by value.
    pub fn into_inner(self) -> Stages {
        self.chain
    }
}

impl<In, Stages, M> PipelineService<In, Stages, M>
where
    In: Send + 'static,
    Stages: Chain<In>,
    M: FilterMode,
{
    /// Runs `input` through every stage and yields each result: the last stage's output or a
    /// [`StageError`] naming the stage that failed. Filtered and dead-lettered items are left
    /// out.
    ///
    /// Each stage runs on its own task with its [concurrency](PipelineBuilder::concurrency)
    /// and a [bounded output buffer](PipelineBuilder::buffer): at most `Σ (concurrency +
    /// buffer)` items are alive at once, whatever the input's length, and a slow stage slows
    /// the reading of `input`. Results come in input order or as they complete
    /// ([`order`](PipelineBuilder::order)). By default a failed item is reported and the
    /// stream goes on; with [`fail_fast`](PipelineBuilder::fail_fast) the stream ends after
    /// the first error.
    ///
    /// The stages start on the first poll (inside a tokio runtime). With
    /// [`Execution::Tasks`](crate::Execution::Tasks) (the default) each runs on a task owned by
    /// the returned stream, with [`Execution::Inline`](crate::Execution::Inline) inside the
    /// stream itself: either way dropping the stream stops every stage and drops its
    /// in-flight work, and no task outlives it.
    ///
    /// User code that panics on an item — a stage's `poll_ready`, `call` or response future,
    /// the item's `Clone`, a dead-letter sink — fails that item with a [`StageError`] holding
    /// [`Panicked`](crate::Panicked), and the stream goes on with the next item. An
    /// input stream that panics ends the input with such an error (stage `"input"`).
    pub fn process_stream<St>(&self, input: St) -> PipelineStream<Stages::Out>
    where
        St: Stream<Item = In> + Send + 'static,
    {
        let chain = self.chain.clone();
        let ordered = self.order == Order::Preserved;
        let start = Box::new(move |runner: &mut Runner| {
            let mut ctx = SpawnCtx { runner, ordered };
            chain.spawn(&mut ctx, StreamSource::new(input))
        });
        PipelineStream::new(start, self.execution, self.fail_fast, self.shared.clone())
    }
}

impl<In, Stages: Clone, M> Clone for PipelineService<In, Stages, M> {
    fn clone(&self) -> Self {
        Self {
            chain: self.chain.clone(),
            shared: self.shared.clone(),
            order: self.order,
            execution: self.execution,
            fail_fast: self.fail_fast,
            _types: PhantomData,
        }
    }
}

impl<In, Stages: fmt::Debug, M> fmt::Debug for PipelineService<In, Stages, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PipelineService")
            .field("name", &self.shared.name)
            .field("chain", &self.chain)
            .field("order", &self.order)
            .field("execution", &self.execution)
            .field("fail_fast", &self.fail_fast)
            .finish()
    }
}

impl<In, Stages, M> Service<In> for PipelineService<In, Stages, M>
where
    In: Send + 'static,
    Stages: Chain<In>,
    M: FilterMode,
{
    type Response = M::Response<Stages::Out>;
    type Error = StageError;
    type Future = ResponseFuture<Stages::Future, M>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), StageError>> {
        self.chain.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, req: In) -> Self::Future {
        ResponseFuture { fut: self.chain.call(req), _mode: PhantomData }
    }
}

pin_project! {
    /// The response future of a [`PipelineService`].
    pub struct ResponseFuture<F, M> {
        #[pin]
        fut: F,
        _mode: PhantomData<fn() -> M>,
    }
}

impl<F, M> fmt::Debug for ResponseFuture<F, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, T, M> Future for ResponseFuture<F, M>
where
    F: Future<Output = Result<crate::Processed<T>, StageError>>,
    M: FilterMode,
{
    type Output = Result<M::Response<T>, StageError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let processed = std::task::ready!(self.project().fut.poll(cx))?;
        Poll::Ready(M::finish(processed))
    }
}
