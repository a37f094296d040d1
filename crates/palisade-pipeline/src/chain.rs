//! The typed chain of stages behind a pipeline.
//!
//! [`PipelineBuilder`](crate::PipelineBuilder) nests stages as [`First`] and [`Then`]; the
//! [`Chain`] trait is what makes a nest of stages a pipeline. These types show up in the
//! pipeline's type (`PipelineService<In, Then<First<..>, ..>, _>`); box the pipeline
//! (`tower::util::BoxCloneService`) or return `impl Service` to keep signatures short.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;

use crate::error::StageError;
use crate::handle::StageShared;
use crate::queue::QueueRx;
use crate::stage::{Stage, StageFuture, StageKind, StageOptions, StageService};
use crate::Processed;

/// One item travelling between stages: its position in the input and the value, or the error
/// of an earlier stage.
#[doc(hidden)]
pub type Msg<T> = Result<(u64, T), StageError>;

/// Where a stage's worker reads its items from.
#[doc(hidden)]
pub trait Source<T>: Send + 'static {
    /// Moves up to `max` items (`max >= 1`) to the back of `inbox`: `Ready(true)` if at least
    /// one moved, `Ready(false)` at the end, `Pending` when none is available yet.
    fn poll_fill(&mut self, cx: &mut Context<'_>, inbox: &mut VecDeque<Msg<T>>, max: usize) -> Poll<bool>;

    /// Publishes numbers kept locally since the last call.
    fn flush_stats(&mut self) {}
}

/// Where spawned stage workers go.
#[doc(hidden)]
#[derive(Debug)]
pub struct SpawnCtx<'a> {
    pub(crate) runner: &'a mut crate::stream::Runner,
    pub(crate) ordered: bool,
}

/// The receiving end of a stage's output buffer.
#[doc(hidden)]
pub struct ChannelSource<T> {
    pub(crate) rx: QueueRx<Msg<T>>,
    pub(crate) upstream: Arc<StageShared>,
    /// Items taken since the last `flush_stats`.
    pub(crate) taken: i64,
}

impl<T> fmt::Debug for ChannelSource<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChannelSource").field("stage", &self.upstream.name).finish_non_exhaustive()
    }
}

impl<T> ChannelSource<T> {
    /// Takes one item (the output stream takes them one by one, so the last buffer's
    /// capacity stays the bound).
    #[inline]
    pub(crate) fn poll_one(&mut self, cx: &mut Context<'_>) -> Poll<Option<Msg<T>>> {
        let msg = std::task::ready!(self.rx.poll_pop(cx));
        if msg.is_some() {
            self.taken += 1;
        }
        Poll::Ready(msg)
    }
}

impl<T: Send + 'static> Source<T> for ChannelSource<T> {
    #[inline]
    fn poll_fill(&mut self, cx: &mut Context<'_>, inbox: &mut VecDeque<Msg<T>>, max: usize) -> Poll<bool> {
        let before = inbox.len();
        let more = std::task::ready!(self.rx.poll_pop_into(inbox, max, cx));
        self.taken += (inbox.len() - before) as i64;
        Poll::Ready(more)
    }

    #[inline]
    fn flush_stats(&mut self) {
        if self.taken != 0 {
            self.upstream.queue_depth.add(-self.taken);
            self.taken = 0;
        }
    }
}

impl<T> Drop for ChannelSource<T> {
    fn drop(&mut self) {
        let left = self.taken + self.rx.len() as i64;
        if left > 0 {
            self.upstream.queue_depth.add(-left);
        }
    }
}

/// The input stream, numbered.
pub(crate) struct StreamSource<St> {
    stream: Pin<Box<St>>,
    seq: u64,
    ended: bool,
}

impl<St> StreamSource<St> {
    pub(crate) fn new(stream: St) -> Self {
        Self { stream: Box::pin(stream), seq: 0, ended: false }
    }
}

impl<St> Source<St::Item> for StreamSource<St>
where
    St: futures_core::Stream + Send + 'static,
{
    #[inline]
    fn poll_fill(
        &mut self,
        cx: &mut Context<'_>,
        inbox: &mut VecDeque<Msg<St::Item>>,
        max: usize,
    ) -> Poll<bool> {
        let mut moved = 0;
        while moved < max && !self.ended {
            // The input stream is user code: a panic ends the input (it cannot be polled
            // again) with an error in its place, and what was read goes on.
            match crate::panic::catch("input", || self.stream.as_mut().poll_next(cx)) {
                Ok(Poll::Ready(Some(item))) => {
                    inbox.push_back(Ok((self.seq, item)));
                    self.seq += 1;
                    moved += 1;
                }
                Ok(Poll::Ready(None)) => self.ended = true,
                Ok(Poll::Pending) => break,
                Err(panicked) => {
                    let input = Arc::from("input");
                    let panicked = crate::panic::named(panicked, &input);
                    inbox.push_back(Err(StageError::new(input, 0, Some(self.seq), panicked)));
                    self.seq += 1;
                    moved += 1;
                    self.ended = true;
                }
            }
        }
        if moved > 0 {
            Poll::Ready(true)
        } else if self.ended {
            Poll::Ready(false)
        } else {
            Poll::Pending
        }
    }
}

/// A builder with no stage yet.
#[derive(Clone, Copy, Debug, Default)]
pub struct Start;

/// The first stage of a chain.
#[derive(Clone, Debug)]
pub struct First<St>(pub(crate) St);

/// A chain `P` followed by the stage `St`.
#[derive(Clone, Debug)]
pub struct Then<P, St> {
    pub(crate) prev: P,
    pub(crate) stage: St,
}

/// A chain under construction: what its current item type is and how a stage is appended.
pub trait Link<In> {
    /// The item type the next stage receives.
    type Cur: Send + 'static;
    /// The chain with `St` appended.
    type Next<St>;
    /// How many stages the chain has.
    const LEN: usize;
    #[doc(hidden)]
    fn append<St>(self, stage: St) -> Self::Next<St>;
}

impl<In: Send + 'static> Link<In> for Start {
    type Cur = In;
    type Next<St> = First<St>;
    const LEN: usize = 0;
    fn append<St>(self, stage: St) -> First<St> {
        First(stage)
    }
}

impl<In, S, Kind> Link<In> for First<Stage<S, Kind, In>>
where
    S: tower_service::Service<In>,
    Kind: StageKind<S::Response>,
{
    type Cur = Kind::Out;
    type Next<St> = Then<Self, St>;
    const LEN: usize = 1;
    fn append<St>(self, stage: St) -> Then<Self, St> {
        Then { prev: self, stage }
    }
}

impl<In, P, S, Kind, T> Link<In> for Then<P, Stage<S, Kind, T>>
where
    P: Link<In>,
    S: tower_service::Service<T>,
    Kind: StageKind<S::Response>,
{
    type Cur = Kind::Out;
    type Next<St> = Then<Self, St>;
    const LEN: usize = P::LEN + 1;
    fn append<St>(self, stage: St) -> Then<Self, St> {
        Then { prev: self, stage }
    }
}

/// A complete chain of stages from `In` to [`Out`](Chain::Out).
pub trait Chain<In>: Clone + Send + 'static {
    /// What the last stage produces.
    type Out: Send + 'static;
    /// The last stage's input type.
    type LastIn: Send + 'static;
    /// The future of one call through every stage.
    type Future: Future<Output = Result<Processed<Self::Out>, StageError>> + Send + 'static;

    #[doc(hidden)]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), StageError>>;
    #[doc(hidden)]
    fn call(&mut self, req: In) -> Self::Future;
    #[doc(hidden)]
    fn spawn<Src: Source<In>>(self, ctx: &mut SpawnCtx<'_>, src: Src) -> ChannelSource<Self::Out>;
    #[doc(hidden)]
    fn last_options(&mut self) -> &mut StageOptions<Self::LastIn>;
}

impl<In, S, Kind> Chain<In> for First<Stage<S, Kind, In>>
where
    In: Send + 'static,
    S: StageService<In>,
    Kind: StageKind<S::Response>,
{
    type Out = Kind::Out;
    type LastIn = In;
    type Future = StageFuture<S::Future, Kind, In>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), StageError>> {
        self.0.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, req: In) -> Self::Future {
        self.0.call(req)
    }

    fn spawn<Src: Source<In>>(self, ctx: &mut SpawnCtx<'_>, src: Src) -> ChannelSource<Kind::Out> {
        self.0.spawn(ctx, src)
    }

    fn last_options(&mut self) -> &mut StageOptions<In> {
        &mut self.0.opts
    }
}

impl<In, P, S, Kind> Chain<In> for Then<P, Stage<S, Kind, P::Out>>
where
    In: Send + 'static,
    P: Chain<In>,
    S: StageService<P::Out>,
    Kind: StageKind<S::Response>,
{
    type Out = Kind::Out;
    type LastIn = P::Out;
    type Future = ThenFuture<P::Future, S, Kind, P::Out>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), StageError>> {
        self.prev.poll_ready(cx)
    }

    fn call(&mut self, req: In) -> Self::Future {
        // The later stages are called on clones polled ready inside the future (the first
        // stage was polled ready through `poll_ready`).
        ThenFuture { state: ThenState::Prev { fut: self.prev.call(req), stage: Some(self.stage.clone()) } }
    }

    fn spawn<Src: Source<In>>(self, ctx: &mut SpawnCtx<'_>, src: Src) -> ChannelSource<Kind::Out> {
        let mid = self.prev.spawn(ctx, src);
        self.stage.spawn(ctx, mid)
    }

    fn last_options(&mut self) -> &mut StageOptions<P::Out> {
        &mut self.stage.opts
    }
}

pin_project! {
    /// A call through a chain: the earlier stages, then this one.
    pub struct ThenFuture<PF, S, Kind, T>
    where
        S: tower_service::Service<T>,
    {
        #[pin]
        state: ThenState<PF, S, Kind, T>,
    }
}

pin_project! {
    #[project = ThenProj]
    enum ThenState<PF, S, Kind, T>
    where
        S: tower_service::Service<T>,
    {
        Prev { #[pin] fut: PF, stage: Option<Stage<S, Kind, T>> },
        Ready { stage: Stage<S, Kind, T>, item: Option<T> },
        Call { #[pin] fut: StageFuture<S::Future, Kind, T> },
    }
}

impl<PF, S, Kind, T> fmt::Debug for ThenFuture<PF, S, Kind, T>
where
    S: tower_service::Service<T>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThenFuture").finish_non_exhaustive()
    }
}

fn polled_after_completion() -> StageError {
    StageError::new(Arc::from("pipeline"), 0, None, "pipeline future polled after completion".into())
}

impl<PF, S, Kind, T> Future for ThenFuture<PF, S, Kind, T>
where
    PF: Future<Output = Result<Processed<T>, StageError>>,
    S: StageService<T>,
    Kind: StageKind<S::Response>,
    T: Send + 'static,
{
    type Output = Result<Processed<Kind::Out>, StageError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            match state.as_mut().project() {
                ThenProj::Prev { fut, stage } => {
                    let item = match std::task::ready!(fut.poll(cx)) {
                        Ok(Processed::Item(item)) => item,
                        Ok(Processed::Filtered(f)) => return Poll::Ready(Ok(Processed::Filtered(f))),
                        Err(e) => return Poll::Ready(Err(e)),
                    };
                    let Some(stage) = stage.take() else {
                        return Poll::Ready(Err(polled_after_completion()));
                    };
                    state.set(ThenState::Ready { stage, item: Some(item) });
                }
                ThenProj::Ready { stage, item } => {
                    if let Err(e) = std::task::ready!(stage.poll_ready(cx)) {
                        // Give the item back in the error when the stage keeps failed items.
                        let kept =
                            stage.opts.into_any.zip(item.take()).map(|(into_any, item)| into_any(item));
                        return Poll::Ready(Err(e.with_item(kept)));
                    }
                    let Some(item) = item.take() else {
                        return Poll::Ready(Err(polled_after_completion()));
                    };
                    let fut = stage.call(item);
                    state.set(ThenState::Call { fut });
                }
                ThenProj::Call { fut } => return fut.poll(cx),
            }
        }
    }
}
