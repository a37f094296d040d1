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

use futures_util::stream::{FuturesOrdered, FuturesUnordered};
use palisade_core::BoxError;
use tokio::time::Instant;
use tower_service::Service;

mod call;

use self::call::{Call, Done, InFlight, Slot};
use crate::chain::{ChannelSource, Msg, Source, SpawnCtx};
use crate::error::StageError;
use crate::handle::StageShared;
use crate::queue::{queue, Closed, QueueTx};
use crate::stage::{fail, Stage, StageKind, StageOptions, StageService};

impl<S, Kind, T> Stage<S, Kind, T>
where
    S: StageService<T>,
    Kind: StageKind<S::Response>,
    T: Send + 'static,
{
    /// Spawns this stage's worker reading from `src`; returns its output buffer.
    pub(crate) fn spawn<Src: Source<T>>(self, ctx: &mut SpawnCtx<'_>, src: Src) -> ChannelSource<Kind::Out> {
        let (tx, rx) = queue(self.opts.buffer);
        let in_flight = if ctx.ordered {
            InFlight::Ordered(FuturesOrdered::new())
        } else {
            InFlight::Unordered(FuturesUnordered::new())
        };
        let upstream = self.shared.clone();
        let mut worker = Worker::<S, Kind, T, Src> {
            service: self.service,
            src,
            src_done: false,
            inbox: VecDeque::new(),
            in_flight,
            spare: None,
            inline_works: true,
            since_probe: 0,
            running: 0,
            completed: VecDeque::new(),
            tx,
            stats: LocalStats::default(),
            shared: self.shared,
            opts: self.opts,
        };
        ctx.runner.spawn(async move { poll_fn(|cx| worker.poll(cx)).await });
        ChannelSource { rx, upstream, taken: 0 }
    }
}

/// Numbers counted by a worker between two publications (one atomic update per poll, not
/// per item).
#[derive(Default)]
struct LocalStats {
    items_in: u64,
    items_out: u64,
    filtered: u64,
    in_flight: i64,
    queued: i64,
}

struct Worker<S, Kind, T, Src>
where
    S: Service<T>,
    S::Error: Into<BoxError>,
    Kind: StageKind<S::Response>,
{
    service: S,
    src: Src,
    src_done: bool,
    /// Items read from the source, waiting for the service to be ready.
    inbox: VecDeque<Msg<T>>,
    in_flight: InFlight<Slot<S::Future, T>>,
    /// Whether the last call polled at once completed (cheap stages do, I/O stages do not).
    inline_works: bool,
    /// Calls since inline polling was last tried, while it does not work.
    since_probe: u32,
    /// The allocation of the last call that completed at once, reused for the next call.
    spare: Option<Pin<Box<Call<S::Future, T>>>>,
    /// Calls still running (the rest of `in_flight` is done, waiting for its turn).
    running: usize,
    /// Results waiting for room in the output buffer.
    completed: VecDeque<Msg<Kind::Out>>,
    tx: QueueTx<Msg<Kind::Out>>,
    stats: LocalStats,
    shared: Arc<StageShared>,
    opts: StageOptions<T>,
}

impl<S, Kind, T, Src> Drop for Worker<S, Kind, T, Src>
where
    S: Service<T>,
    S::Error: Into<BoxError>,
    Kind: StageKind<S::Response>,
{
    fn drop(&mut self) {
        let in_flight = self.stats.in_flight - self.running as i64;
        if in_flight != 0 {
            self.shared.in_flight.add(in_flight);
        }
        self.stats.in_flight = 0;
        if self.stats.items_in > 0 {
            self.shared.items_in.add(self.stats.items_in);
        }
        if self.stats.items_out > 0 {
            self.shared.items_out.add(self.stats.items_out);
        }
        if self.stats.filtered > 0 {
            self.shared.filtered.add(self.stats.filtered);
        }
        if self.stats.queued != 0 {
            self.shared.queue_depth.add(self.stats.queued);
        }
    }
}

/// While polling calls at once does not pay, try it again every this many calls.
const PROBE_EVERY: u32 = 64;

/// Items a worker takes from its source in one round.
const ITEMS_PER_ROUND: usize = 1024;

/// Rounds a worker runs before yielding to the scheduler (each round moves up to
/// `concurrency` items in and a buffer's worth out).
const ROUNDS_PER_POLL: usize = 32;

enum Flush {
    Progress,
    Blocked,
    Closed,
}

impl<S, Kind, T, Src> Worker<S, Kind, T, Src>
where
    S: StageService<T>,
    Kind: StageKind<S::Response>,
    T: Send + 'static,
    Src: Source<T>,
{
    /// Items this worker holds.
    #[inline]
    fn held(&self) -> usize {
        self.in_flight.len() + self.completed.len() + self.inbox.len()
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let result = self.poll_inner(cx);
        self.publish();
        result
    }

    fn publish(&mut self) {
        let stats = std::mem::take(&mut self.stats);
        if stats.items_in > 0 {
            self.shared.items_in.add(stats.items_in);
        }
        if stats.items_out > 0 {
            self.shared.items_out.add(stats.items_out);
        }
        if stats.filtered > 0 {
            self.shared.filtered.add(stats.filtered);
        }
        if stats.in_flight != 0 {
            self.shared.in_flight.add(stats.in_flight);
        }
        if stats.queued != 0 {
            self.shared.queue_depth.add(stats.queued);
        }
        self.src.flush_stats();
    }

    fn poll_inner(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        for _ in 0..ROUNDS_PER_POLL {
            let mut progress = false;
            // At most one clock read per round: calls started or finished in the same round
            // share it.
            let mut now = None;

            // Finished calls, in order (ordered mode) or as they complete.
            while let Poll::Ready(Some(done)) = self.in_flight.poll_next(cx) {
                progress = true;
                if let Some(msg) = self.complete(done, &mut now) {
                    self.completed.push_back(msg);
                }
            }

            // Results to the output buffer, while it has room.
            match self.flush(cx) {
                Flush::Closed => return Poll::Ready(()),
                Flush::Progress => progress = true,
                Flush::Blocked => {}
            }

            // New items while slots are free, each called once the service is ready; at most
            // `ITEMS_PER_ROUND` per round, so that one poll ends whatever the concurrency
            // (`usize::MAX` over an always-ready input used to loop inside one poll).
            let mut taken = 0;
            loop {
                if self.inbox.is_empty() {
                    let room = ITEMS_PER_ROUND - taken;
                    let free = self.opts.concurrency.saturating_sub(self.held()).min(room);
                    if room == 0 {
                        // More to do: the next round (or, after the last, a self-wake) goes on.
                        progress = true;
                        break;
                    }
                    if self.src_done || free == 0 {
                        break;
                    }
                    match self.src.poll_fill(cx, &mut self.inbox, free) {
                        Poll::Ready(true) => taken += self.inbox.len(),
                        Poll::Ready(false) => {
                            self.src_done = true;
                            progress = true;
                            break;
                        }
                        Poll::Pending => break,
                    }
                }
                match self.inbox.front() {
                    None => break,
                    Some(Err(_)) => {
                        if let Some(Err(e)) = self.inbox.pop_front() {
                            self.pass(e);
                        }
                        progress = true;
                        continue;
                    }
                    Some(Ok(_)) => {}
                }
                // A panic in `poll_ready` fails the item waiting for it, like an error.
                let ready = match crate::panic::catch("poll_ready", || self.service.poll_ready(cx)) {
                    Ok(Poll::Ready(result)) => result.map_err(Into::into),
                    Ok(Poll::Pending) => break,
                    Err(panicked) => Err(panicked),
                };
                match ready {
                    Ok(()) => {
                        if let Some(Ok((seq, item))) = self.inbox.pop_front() {
                            if let Some(done) = self.call(seq, item, &mut now, cx) {
                                if let Some(msg) = self.complete(done, &mut now) {
                                    self.completed.push_back(msg);
                                }
                            }
                        }
                        progress = true;
                    }
                    Err(e) => {
                        if let Some(Ok((seq, item))) = self.inbox.pop_front() {
                            let kept = self.opts.keep.is_some().then_some(item);
                            self.stats.items_in += 1;
                            if let Some(msg) = self.failed(seq, e, kept) {
                                self.completed.push_back(msg);
                            }
                        }
                        progress = true;
                    }
                }
            }

            if self.src_done && self.held() == 0 {
                return Poll::Ready(());
            }
            if !progress {
                return Poll::Pending;
            }
        }
        // Still busy: let the other tasks on this thread run, then carry on.
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    fn flush(&mut self, cx: &mut Context<'_>) -> Flush {
        if self.completed.is_empty() {
            return Flush::Blocked;
        }
        match self.tx.push_from(&mut self.completed, cx) {
            Ok(0) => Flush::Blocked,
            Ok(n) => {
                self.stats.queued += n as i64;
                Flush::Progress
            }
            // The next stage (or the output stream) is gone: stop.
            Err(Closed) => Flush::Closed,
        }
    }

    /// Calls the service. A call that completes on its first poll (a cheap stage) while
    /// nothing is ahead of it skips the in-flight set, and its allocation is reused.
    #[inline]
    fn call(
        &mut self,
        seq: u64,
        item: T,
        now: &mut Option<Instant>,
        cx: &mut Context<'_>,
    ) -> Option<Done<S::Response, T>> {
        let now = *now.get_or_insert_with(Instant::now);
        self.stats.items_in += 1;
        self.stats.in_flight += 1;
        self.running += 1;
        // The item's `Clone` and the service's `call` are user code: a panic fails this
        // item (as a finished call, so the counters stay right) and the stage goes on.
        let (kept, fut) =
            match self.opts.keep.map(|keep| crate::panic::catch("clone", || keep(&item))).transpose() {
                Ok(kept) => match crate::panic::catch("call", || self.service.call(item)) {
                    Ok(fut) => (kept, fut),
                    Err(panicked) => {
                        return Some(Done::Finished { seq, result: Err(panicked), kept, start: now })
                    }
                },
                Err(panicked) => {
                    return Some(Done::Finished { seq, result: Err(panicked), kept: None, start: now })
                }
            };
        let call = Call::Running { fut, seq, kept, start: now };
        let may_inline = self.in_flight.len() == 0 || matches!(self.in_flight, InFlight::Unordered(_));
        let try_inline = may_inline
            && (self.inline_works || {
                // Re-probe now and then: a stage may turn cheap (a cache warms up).
                self.since_probe += 1;
                self.since_probe >= PROBE_EVERY
            });
        if !try_inline {
            self.in_flight.push(Slot::Inline { fut: call });
            return None;
        }
        self.since_probe = 0;
        let mut boxed = match self.spare.take() {
            Some(mut spare) => {
                spare.as_mut().set(call);
                spare
            }
            None => Box::pin(call),
        };
        if let Poll::Ready(done) = boxed.as_mut().poll(cx) {
            // Drop what the finished call still holds; keep the allocation.
            boxed.as_mut().set(Call::Pass { err: None });
            self.spare = Some(boxed);
            self.inline_works = true;
            return Some(done);
        }
        self.inline_works = false;
        self.in_flight.push(Slot::Boxed { fut: boxed });
        None
    }

    fn pass(&mut self, e: StageError) {
        match &mut self.in_flight {
            // Keep the error in its place among the items.
            InFlight::Ordered(q) => q.push_back(Slot::Inline { fut: Call::Pass { err: Some(e) } }),
            InFlight::Unordered(_) => self.completed.push_back(Err(e)),
        }
    }

    #[inline]
    fn complete(&mut self, done: Done<S::Response, T>, now: &mut Option<Instant>) -> Option<Msg<Kind::Out>> {
        match done {
            Done::Finished { seq, result, kept, start } => {
                self.running -= 1;
                self.stats.in_flight -= 1;
                let now = *now.get_or_insert_with(Instant::now);
                self.shared.latency.record(if start == now {
                    Duration::ZERO
                } else {
                    now.saturating_duration_since(start)
                });
                match result {
                    Ok(response) => {
                        if let Some(out) = Kind::into_option(response) {
                            self.stats.items_out += 1;
                            Some(Ok((seq, out)))
                        } else {
                            self.stats.filtered += 1;
                            None
                        }
                    }
                    Err(e) => self.failed(seq, e, kept),
                }
            }
            Done::Pass(e) => e.map(Err),
        }
    }

    fn failed(&self, seq: u64, error: BoxError, kept: Option<T>) -> Option<Msg<Kind::Out>> {
        match fail(&self.shared, Some(seq), error, kept, self.opts.into_any, self.opts.dead_letter.as_ref()) {
            // Dead-lettered: the sink has it; the stream goes on without it.
            Ok(_) => None,
            Err(e) => Some(Err(e)),
        }
    }
}
