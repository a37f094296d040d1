//! One stage of a pipeline: a service, its options and its numbers.
//!
//! You rarely name these types: [`PipelineBuilder`](crate::PipelineBuilder) creates them.
//! [`StageFn`], [`MapFn`] and [`Predicate`] are the small services behind
//! [`stage_fn`](crate::PipelineBuilder::stage_fn), [`map`](crate::PipelineBuilder::map) and
//! [`filter`](crate::PipelineBuilder::filter).

use std::convert::Infallible;
use std::fmt;
use std::future::{ready, Future, Ready};
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use palisade_core::BoxError;
use pin_project_lite::pin_project;
use tokio::time::Instant;
use tower_service::Service;

use crate::error::{DeadLetter, DeadLettered, StageError};
use crate::handle::StageShared;
use crate::Processed;

/// A tower service usable as a pipeline stage: cloneable, `Send`, its future `Send`, its
/// error convertible into a `BoxError`. Implemented for every such service.
pub trait StageService<T>:
    Service<T, Response: Send + 'static, Future: Send + 'static, Error: Into<BoxError> + Send + 'static>
    + Clone
    + Send
    + 'static
{
}

impl<T, S> StageService<T> for S where
    S: Service<T, Response: Send + 'static, Future: Send + 'static, Error: Into<BoxError> + Send + 'static>
        + Clone
        + Send
        + 'static
{
}

/// How a stage's response becomes the next stage's request.
pub trait StageKind<R>: Send + Sync + 'static {
    /// The next stage's request type.
    type Out: Send + 'static;
    /// `None` drops the item (a filter).
    fn into_option(response: R) -> Option<Self::Out>;
}

/// The response is the next request.
#[derive(Clone, Copy, Debug)]
pub struct Map;

/// The response is an `Option`: `None` drops the item.
#[derive(Clone, Copy, Debug)]
pub struct FilterMap;

impl<R: Send + 'static> StageKind<R> for Map {
    type Out = R;
    #[inline]
    fn into_option(response: R) -> Option<R> {
        Some(response)
    }
}

impl<R: Send + 'static> StageKind<Option<R>> for FilterMap {
    type Out = R;
    #[inline]
    fn into_option(response: Option<R>) -> Option<R> {
        response
    }
}

pub(crate) type DeadLetterSink<T> = Arc<dyn Fn(DeadLetter<T>) + Send + Sync>;
pub(crate) type IntoAny<T> = fn(T) -> Box<dyn std::any::Any + Send + Sync>;

/// A stage's settings: concurrency, output buffer, what happens to failed items.
pub struct StageOptions<T> {
    pub(crate) concurrency: usize,
    pub(crate) buffer: usize,
    pub(crate) keep: Option<fn(&T) -> T>,
    pub(crate) into_any: Option<IntoAny<T>>,
    pub(crate) dead_letter: Option<DeadLetterSink<T>>,
}

impl<T> Clone for StageOptions<T> {
    fn clone(&self) -> Self {
        Self {
            concurrency: self.concurrency,
            buffer: self.buffer,
            keep: self.keep,
            into_any: self.into_any,
            dead_letter: self.dead_letter.clone(),
        }
    }
}

impl<T> fmt::Debug for StageOptions<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StageOptions")
            .field("concurrency", &self.concurrency)
            .field("buffer", &self.buffer)
            .field("keep_failed_items", &self.into_any.is_some())
            .field("dead_letter", &self.dead_letter.is_some())
            .finish_non_exhaustive()
    }
}

/// Default number of calls a stage runs at once in a stream.
pub const DEFAULT_CONCURRENCY: usize = 1;
/// Default capacity of a stage's output buffer in a stream.
pub const DEFAULT_BUFFER: usize = 16;

impl<T> Default for StageOptions<T> {
    fn default() -> Self {
        Self {
            concurrency: DEFAULT_CONCURRENCY,
            buffer: DEFAULT_BUFFER,
            keep: None,
            into_any: None,
            dead_letter: None,
        }
    }
}

/// One stage: service `S` taking `T`, whose response `Kind` turns into the next request.
pub struct Stage<S, Kind, T> {
    pub(crate) service: S,
    pub(crate) shared: Arc<StageShared>,
    pub(crate) opts: StageOptions<T>,
    _kind: PhantomData<fn() -> Kind>,
}

impl<S: Clone, Kind, T> Clone for Stage<S, Kind, T> {
    fn clone(&self) -> Self {
        Self {
            service: self.service.clone(),
            shared: self.shared.clone(),
            opts: self.opts.clone(),
            _kind: PhantomData,
        }
    }
}

impl<S, Kind, T> fmt::Debug for Stage<S, Kind, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stage")
            .field("name", &self.shared.name)
            .field("position", &self.shared.position)
            .field("options", &self.opts)
            .finish_non_exhaustive()
    }
}

impl<S, Kind, T> Stage<S, Kind, T>
where
    S: StageService<T>,
    Kind: StageKind<S::Response>,
    T: Send + 'static,
{
    pub(crate) fn new(service: S, shared: Arc<StageShared>) -> Self {
        Self { service, shared, opts: StageOptions::default(), _kind: PhantomData }
    }

    pub(crate) fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), StageError>> {
        match self.service.poll_ready(cx) {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(())),
            Poll::Ready(Err(e)) => {
                let e: BoxError = e.into();
                self.shared.failed(None, &e);
                Poll::Ready(Err(StageError::new(self.shared.name.clone(), self.shared.position, None, e)))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    pub(crate) fn call(&mut self, req: T) -> StageFuture<S::Future, Kind, T> {
        let kept = self.opts.keep.map(|keep| keep(&req));
        self.shared.items_in.increment();
        self.shared.in_flight.add(1);
        let start = Instant::now();
        let fut = self.service.call(req);
        StageFuture {
            fut,
            guard: InFlightGuard(self.shared.clone()),
            kept,
            into_any: self.opts.into_any,
            dead_letter: self.opts.dead_letter.clone(),
            start,
            _kind: PhantomData,
        }
    }
}

pub(crate) struct InFlightGuard(pub(crate) Arc<StageShared>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.in_flight.add(-1);
    }
}

pin_project! {
    /// One stage's call, when the pipeline is called as a `Service`.
    pub struct StageFuture<F, Kind, T> {
        #[pin]
        fut: F,
        guard: InFlightGuard,
        kept: Option<T>,
        into_any: Option<IntoAny<T>>,
        dead_letter: Option<DeadLetterSink<T>>,
        start: Instant,
        _kind: PhantomData<fn() -> Kind>,
    }
}

impl<F, Kind, T> fmt::Debug for StageFuture<F, Kind, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StageFuture").field("stage", &self.guard.0.name).finish_non_exhaustive()
    }
}

impl<F, R, E, Kind, T> Future for StageFuture<F, Kind, T>
where
    F: Future<Output = Result<R, E>>,
    E: Into<BoxError>,
    Kind: StageKind<R>,
    T: Send + 'static,
{
    type Output = Result<Processed<Kind::Out>, StageError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = std::task::ready!(this.fut.poll(cx));
        let shared = &this.guard.0;
        shared.latency.record(this.start.elapsed());
        Poll::Ready(match result {
            Ok(response) => {
                if let Some(out) = Kind::into_option(response) {
                    shared.items_out.increment();
                    Ok(Processed::Item(out))
                } else {
                    shared.filtered.increment();
                    Ok(Processed::Filtered(crate::Filtered { stage: shared.name.clone() }))
                }
            }
            Err(e) => {
                Err(fail(shared, None, e.into(), this.kept.take(), *this.into_any, this.dead_letter.as_ref())
                    .unwrap_or_else(|e| e))
            }
        })
    }
}

/// Handles a failed call: counts it, publishes it, sends the item to the dead-letter sink if
/// there is one (`Ok(StageError)` then carries no item and is marked dead-lettered; the
/// stream path drops it), otherwise builds the error (with the item if kept).
///
/// Returns `Ok` when the item was dead-lettered, `Err` with the error to report otherwise.
pub(crate) fn fail<T: Send + 'static>(
    shared: &StageShared,
    seq: Option<u64>,
    error: BoxError,
    kept: Option<T>,
    into_any: Option<IntoAny<T>>,
    dead_letter: Option<&DeadLetterSink<T>>,
) -> Result<StageError, StageError> {
    let error = crate::panic::named(error, &shared.name);
    shared.failed(seq, &error);
    match (dead_letter, kept) {
        (Some(sink), Some(item)) => {
            let text = error.to_string();
            // The sink is user code: if it panics, the item is reported as failed with the
            // panic (it is gone into the sink), and the stage goes on.
            match crate::panic::catch("dead_letter", || {
                sink(DeadLetter::new(shared.name.clone(), seq, error, item));
            }) {
                Ok(()) => {
                    shared.dead_lettered(seq);
                    let reported = StageError::new(
                        shared.name.clone(),
                        shared.position,
                        seq,
                        Box::new(DeadLettered(text)),
                    );
                    Ok(reported.dead_lettered())
                }
                Err(panicked) => {
                    let panicked = crate::panic::named(panicked, &shared.name);
                    Err(StageError::new(shared.name.clone(), shared.position, seq, panicked))
                }
            }
        }
        (_, kept) => {
            let item = match (into_any, kept) {
                (Some(into_any), Some(item)) => Some(into_any(item)),
                _ => None,
            };
            Err(StageError::new(shared.name.clone(), shared.position, seq, error).with_item(item))
        }
    }
}

// === small services ===

/// A stage from an async closure: `FnMut(T) -> impl Future<Output = Result<U, E>>`.
#[derive(Clone)]
pub struct StageFn<F> {
    f: F,
}

impl<F> StageFn<F> {
    pub(crate) fn new(f: F) -> Self {
        Self { f }
    }
}

impl<F> fmt::Debug for StageFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StageFn").finish_non_exhaustive()
    }
}

impl<F, T, Fut, U, E> Service<T> for StageFn<F>
where
    F: FnMut(T) -> Fut,
    Fut: Future<Output = Result<U, E>>,
{
    type Response = U;
    type Error = E;
    type Future = Fut;

    #[inline]
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), E>> {
        Poll::Ready(Ok(()))
    }

    #[inline]
    fn call(&mut self, req: T) -> Fut {
        (self.f)(req)
    }
}

/// A stage from a plain function `Fn(T) -> U` that cannot fail.
#[derive(Clone)]
pub struct MapFn<F> {
    f: F,
}

impl<F> MapFn<F> {
    pub(crate) fn new(f: F) -> Self {
        Self { f }
    }
}

impl<F> fmt::Debug for MapFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MapFn").finish_non_exhaustive()
    }
}

impl<F, T, U> Service<T> for MapFn<F>
where
    F: FnMut(T) -> U,
{
    type Response = U;
    type Error = Infallible;
    type Future = Ready<Result<U, Infallible>>;

    #[inline]
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    #[inline]
    fn call(&mut self, req: T) -> Self::Future {
        ready(Ok((self.f)(req)))
    }
}

/// A filter stage from a predicate `Fn(&T) -> bool`: items for which it returns `false` are
/// dropped.
#[derive(Clone)]
pub struct Predicate<F> {
    f: F,
}

impl<F> Predicate<F> {
    pub(crate) fn new(f: F) -> Self {
        Self { f }
    }
}

impl<F> fmt::Debug for Predicate<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Predicate").finish_non_exhaustive()
    }
}

impl<F, T> Service<T> for Predicate<F>
where
    F: FnMut(&T) -> bool,
{
    type Response = Option<T>;
    type Error = Infallible;
    type Future = Ready<Result<Option<T>, Infallible>>;

    #[inline]
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    #[inline]
    fn call(&mut self, req: T) -> Self::Future {
        ready(Ok(if (self.f)(&req) { Some(req) } else { None }))
    }
}
