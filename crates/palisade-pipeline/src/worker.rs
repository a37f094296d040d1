//! The task that runs one stage of a stream.
//!
//! A worker reads items from its source (the input stream or the previous stage's output
//! buffer), calls its service on up to `concurrency` items at once, and writes the results to
//! its own bounded output buffer. It holds at most `concurrency` items (waiting for the
//! service, in flight, or done and waiting for room downstream), so a stream through `n`
//! stages holds at most `Σ (concurrency + buffer)` items whatever its length; when the
//! output buffer is full the worker stops reading, which stops the stage before it, back to
//! the input stream (backpressure).

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_core::Stream;
use futures_util::stream::{FuturesOrdered, FuturesUnordered};
use palisade_core::BoxError;
use pin_project_lite::pin_project;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::PollSender;
use tower_service::Service;

use crate::chain::{ChannelSource, Msg, Source, SpawnCtx};
use crate::error::StageError;
use crate::handle::StageShared;
use crate::stage::{fail, Stage, StageKind, StageOptions, StageService};

impl<S, K, T> Stage<S, K, T>
where
    S: StageService<T>,
    K: StageKind<S::Response>,
    T: Send + 'static,
{
    /// Spawns this stage's worker reading from `src`; returns its output buffer.
    pub(crate) fn spawn<Src: Source<T>>(self, ctx: &mut SpawnCtx<'_>, src: Src) -> ChannelSource<K::Out> {
        let (tx, rx) = mpsc::channel(self.opts.buffer);
        let in_flight = if ctx.ordered {
            InFlight::Ordered(FuturesOrdered::new())
        } else {
            InFlight::Unordered(FuturesUnordered::new())
        };
        let upstream = self.shared.clone();
        let mut worker = Worker::<S, K, T, Src> {
            service: self.service,
            src,
            src_done: false,
            pending: None,
            in_flight,
            running: 0,
            completed: VecDeque::new(),
            tx: PollSender::new(tx),
            shared: self.shared,
            opts: self.opts,
        };
        ctx.tasks.spawn(async move { poll_fn(|cx| worker.poll(cx)).await });
        ChannelSource { rx, upstream }
    }
}

struct Worker<S, K, T, Src>
where
    S: Service<T>,
    K: StageKind<S::Response>,
{
    service: S,
    src: Src,
    src_done: bool,
    /// An item read from the source, waiting for the service to be ready.
    pending: Option<(u64, T)>,
    in_flight: InFlight<Call<S::Future, T>>,
    /// Calls still running (the rest of `in_flight` is done, waiting for its turn).
    running: usize,
    /// Results waiting for room in the output buffer.
    completed: VecDeque<Msg<K::Out>>,
    tx: PollSender<Msg<K::Out>>,
    shared: Arc<StageShared>,
    opts: StageOptions<T>,
}

impl<S, K, T, Src> Drop for Worker<S, K, T, Src>
where
    S: Service<T>,
    K: StageKind<S::Response>,
{
    fn drop(&mut self) {
        if self.running > 0 {
            self.shared.in_flight.add(-(self.running as i64));
        }
    }
}

impl<S, K, T, Src> Worker<S, K, T, Src>
where
    S: StageService<T>,
    K: StageKind<S::Response>,
    T: Send + 'static,
    Src: Source<T>,
{
    /// Items this worker holds.
    fn held(&self) -> usize {
        self.in_flight.len() + self.completed.len() + usize::from(self.pending.is_some())
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            let mut progress = false;

            // Finished calls, in order (ordered mode) or as they complete.
            while let Poll::Ready(Some(done)) = self.in_flight.poll_next(cx) {
                progress = true;
                if let Some(msg) = self.complete(done) {
                    self.completed.push_back(msg);
                }
            }

            // Results to the output buffer, while it has room.
            while !self.completed.is_empty() {
                match self.tx.poll_reserve(cx) {
                    Poll::Ready(Ok(())) => {
                        if let Some(msg) = self.completed.pop_front() {
                            if self.tx.send_item(msg).is_err() {
                                return Poll::Ready(());
                            }
                            self.shared.queue_depth.add(1);
                        }
                        progress = true;
                    }
                    // The next stage (or the output stream) is gone: stop.
                    Poll::Ready(Err(_)) => return Poll::Ready(()),
                    Poll::Pending => break,
                }
            }

            // A new item, when a slot is free.
            if self.pending.is_none() && !self.src_done && self.held() < self.opts.concurrency {
                match self.src.poll_msg(cx) {
                    Poll::Ready(Some(Ok(item))) => {
                        self.pending = Some(item);
                        progress = true;
                    }
                    Poll::Ready(Some(Err(e))) => {
                        self.pass(e);
                        progress = true;
                    }
                    Poll::Ready(None) => {
                        self.src_done = true;
                        progress = true;
                    }
                    Poll::Pending => {}
                }
            }

            // Call the service once it is ready.
            if self.pending.is_some() {
                match self.service.poll_ready(cx) {
                    Poll::Ready(Ok(())) => {
                        if let Some((seq, item)) = self.pending.take() {
                            self.call(seq, item);
                        }
                        progress = true;
                    }
                    Poll::Ready(Err(e)) => {
                        if let Some((seq, item)) = self.pending.take() {
                            let kept = self.opts.keep.is_some().then_some(item);
                            self.shared.items_in.increment();
                            if let Some(msg) = self.failed(seq, e.into(), kept) {
                                self.completed.push_back(msg);
                            }
                        }
                        progress = true;
                    }
                    Poll::Pending => {}
                }
            }

            if self.src_done && self.held() == 0 {
                return Poll::Ready(());
            }
            if !progress {
                return Poll::Pending;
            }
        }
    }

    fn call(&mut self, seq: u64, item: T) {
        let kept = self.opts.keep.map(|keep| keep(&item));
        self.shared.items_in.increment();
        self.shared.in_flight.add(1);
        self.running += 1;
        let start = Instant::now();
        let fut = self.service.call(item);
        self.in_flight.push(Call::Running { fut, seq, kept, start });
    }

    fn pass(&mut self, e: StageError) {
        match &mut self.in_flight {
            // Keep the error in its place among the items.
            InFlight::Ordered(q) => q.push_back(Call::Pass { err: Some(e) }),
            InFlight::Unordered(_) => self.completed.push_back(Err(e)),
        }
    }

    fn complete(&mut self, done: Done<S::Response, S::Error, T>) -> Option<Msg<K::Out>> {
        match done {
            Done::Finished { seq, result, kept, elapsed } => {
                self.running -= 1;
                self.shared.in_flight.add(-1);
                self.shared.latency.record(elapsed);
                match result {
                    Ok(response) => match K::into_option(response) {
                        Some(out) => {
                            self.shared.items_out.increment();
                            Some(Ok((seq, out)))
                        }
                        None => {
                            self.shared.filtered.increment();
                            None
                        }
                    },
                    Err(e) => self.failed(seq, e.into(), kept),
                }
            }
            Done::Pass(e) => e.map(Err),
        }
    }

    fn failed(&self, seq: u64, error: BoxError, kept: Option<T>) -> Option<Msg<K::Out>> {
        match fail(&self.shared, Some(seq), error, kept, self.opts.into_any, &self.opts.dead_letter) {
            // Dead-lettered: the sink has it; the stream goes on without it.
            Ok(_) => None,
            Err(e) => Some(Err(e)),
        }
    }
}

/// Calls in flight: in input order or as they complete.
enum InFlight<F: Future> {
    Ordered(FuturesOrdered<F>),
    Unordered(FuturesUnordered<F>),
}

impl<F: Future> InFlight<F> {
    #[inline]
    fn len(&self) -> usize {
        match self {
            Self::Ordered(q) => q.len(),
            Self::Unordered(q) => q.len(),
        }
    }

    #[inline]
    fn push(&mut self, f: F) {
        match self {
            Self::Ordered(q) => q.push_back(f),
            Self::Unordered(q) => q.push(f),
        }
    }

    #[inline]
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<F::Output>> {
        if self.len() == 0 {
            return Poll::Ready(None);
        }
        match self {
            Self::Ordered(q) => Pin::new(q).poll_next(cx),
            Self::Unordered(q) => Pin::new(q).poll_next(cx),
        }
    }
}

pin_project! {
    #[project = CallProj]
    enum Call<F, T> {
        Running { #[pin] fut: F, seq: u64, kept: Option<T>, start: Instant },
        Pass { err: Option<StageError> },
    }
}

enum Done<R, E, T> {
    Finished { seq: u64, result: Result<R, E>, kept: Option<T>, elapsed: Duration },
    Pass(Option<StageError>),
}

impl<F, R, E, T> Future for Call<F, T>
where
    F: Future<Output = Result<R, E>>,
{
    type Output = Done<R, E, T>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            CallProj::Running { fut, seq, kept, start } => {
                let result = std::task::ready!(fut.poll(cx));
                Poll::Ready(Done::Finished { seq: *seq, result, kept: kept.take(), elapsed: start.elapsed() })
            }
            CallProj::Pass { err } => Poll::Ready(Done::Pass(err.take())),
        }
    }
}
