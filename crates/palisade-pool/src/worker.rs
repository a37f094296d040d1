//! The worker task that owns a pool's members: it takes queued requests, polls members for
//! readiness, dispatches, scales and heals. Modelled on tower's `buffer` worker.

use std::cmp::Ordering as CmpOrdering;
use std::collections::{BinaryHeap, VecDeque};
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::FutureExt;
use palisade_core::classify::Classify;
use palisade_core::rng::AtomicRng;
use palisade_core::time::{deadline_after, deadline_from_now, FAR_FUTURE};
use palisade_core::BoxError;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit};
use tokio::time::{Instant, Interval, MissedTickBehavior, Sleep};
use tower_service::Service;

use crate::config::{Strategy, WorkerConfig};
use crate::error::Panicked;
use crate::event::{EvictReason, PoolEvent, ScaleDownReason, ScaleUpReason};
use crate::handle::{Control, ScaleTo, ShutdownReport};
use crate::member::{Judge, MemberState, MemberView, Tracked};
use crate::scaling::{PoolLoad, ScalingPolicy};
use crate::shared::Shared;
use crate::sizing::Backoff;

pub(crate) type BoxResponse<Res> = Pin<Box<dyn Future<Output = Result<Res, BoxError>> + Send>>;
pub(crate) type Reply<Res> = oneshot::Sender<Result<BoxResponse<Res>, BoxError>>;
type MakeFuture<S> = Pin<Box<dyn Future<Output = Result<S, BoxError>> + Send>>;
/// A health check's outcome: `Ok(healthy)`, or the message of a panic in the member.
type CheckFuture = Pin<Box<dyn Future<Output = Result<bool, Arc<str>>> + Send>>;

/// Members joining in one turn of the worker before it yields to other tasks, so a pool
/// whose factory answers at once (and whose `min_size` is large) cannot hog its thread.
const MAX_JOINS_PER_TURN: usize = 16;

/// One accepted request on its way to a member.
pub(crate) struct Message<Req, Res> {
    pub(crate) request: Req,
    pub(crate) reply: Reply<Res>,
    pub(crate) priority: u8,
    /// The queue place; given back when the message leaves the queue.
    pub(crate) slot: OwnedSemaphorePermit,
}

// === queue ===

struct Ranked<Req, Res> {
    priority: u8,
    seq: u64,
    message: Message<Req, Res>,
}

impl<Req, Res> PartialEq for Ranked<Req, Res> {
    fn eq(&self, other: &Self) -> bool {
        self.priority == other.priority && self.seq == other.seq
    }
}

impl<Req, Res> Eq for Ranked<Req, Res> {}

impl<Req, Res> PartialOrd for Ranked<Req, Res> {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}

impl<Req, Res> Ord for Ranked<Req, Res> {
    fn cmp(&self, other: &Self) -> CmpOrdering {
        // Highest priority first, then the earliest arrival.
        self.priority.cmp(&other.priority).then_with(|| other.seq.cmp(&self.seq))
    }
}

enum Queue<Req, Res> {
    Fifo(VecDeque<Message<Req, Res>>),
    Priority { heap: BinaryHeap<Ranked<Req, Res>>, seq: u64 },
}

impl<Req, Res> Queue<Req, Res> {
    fn push(&mut self, message: Message<Req, Res>) {
        if message.priority != 0 {
            if let Self::Fifo(q) = self {
                // A ranked request (a batch with a priority) turns the FIFO into a priority
                // queue; the requests already waiting keep their order (priority 0, by seq).
                let waiting = std::mem::take(q);
                let mut heap = BinaryHeap::with_capacity(waiting.len() + 1);
                let mut seq = 0;
                for m in waiting {
                    seq += 1;
                    heap.push(Ranked { priority: m.priority, seq, message: m });
                }
                *self = Self::Priority { heap, seq };
            }
        }
        match self {
            Self::Fifo(q) => q.push_back(message),
            Self::Priority { heap, seq } => {
                *seq += 1;
                heap.push(Ranked { priority: message.priority, seq: *seq, message });
            }
        }
    }

    fn pop(&mut self) -> Option<Message<Req, Res>> {
        match self {
            Self::Fifo(q) => q.pop_front(),
            Self::Priority { heap, .. } => heap.pop().map(|r| r.message),
        }
    }

    fn len(&self) -> usize {
        match self {
            Self::Fifo(q) => q.len(),
            Self::Priority { heap, .. } => heap.len(),
        }
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops messages whose caller went away (registering to hear about the others). A
    /// request whose `Drop` panics is contained (logged under the pool's `name`).
    fn prune_cancelled(&mut self, cx: &mut Context<'_>, name: &str) -> usize {
        let before = self.len();
        let mut keep = |m: &mut Message<Req, Res>| m.reply.poll_closed(cx).is_pending();
        match self {
            Self::Fifo(q) => {
                for mut m in std::mem::take(q) {
                    if keep(&mut m) {
                        q.push_back(m);
                    } else {
                        drop_guarded(m, name, "a cancelled request");
                    }
                }
            }
            Self::Priority { heap, .. } => {
                let mut kept = Vec::with_capacity(heap.len());
                for mut r in std::mem::take(heap).into_vec() {
                    if keep(&mut r.message) {
                        kept.push(r);
                    } else {
                        drop_guarded(r, name, "a cancelled request");
                    }
                }
                *heap = BinaryHeap::from(kept);
            }
        }
        before - self.len()
    }
}

// === members ===

/// Drops a user value (a member's service, a request, a response future) on the worker's
/// task, containing a panic of its `Drop` so the worker goes on; the panic is logged.
fn drop_guarded<T>(value: T, pool: &str, what: &'static str) {
    if catch_unwind(AssertUnwindSafe(move || drop(value))).is_err() {
        tracing::warn!(target: "palisade", pool = %pool, "dropping {what} panicked");
    }
}

struct Member<S, C> {
    service: S,
    /// `poll_ready` returned `Ready(Ok)` and no call spent it yet.
    ready: bool,
    state: Arc<MemberState<C>>,
    last_active: Instant,
    /// A call was dispatched since the last housekeeping.
    active: bool,
    check_due: bool,
}

struct Draining {
    deadline: Pin<Box<Sleep>>,
    replies: Vec<oneshot::Sender<ShutdownReport>>,
}

pub(crate) struct Worker<M, T, S, Req, C>
where
    S: Service<Req>,
{
    make: M,
    target: T,
    making: Option<(MakeFuture<S>, ScaleUpReason)>,
    retry_at: Option<Pin<Box<Sleep>>>,
    backoff: Backoff,
    members: Vec<Member<S, C>>,
    queue: Queue<Req, S::Response>,
    rx: mpsc::UnboundedReceiver<Message<Req, S::Response>>,
    rx_open: bool,
    control: mpsc::UnboundedReceiver<Control>,
    shared: Arc<Shared>,
    judge: Arc<Judge<C>>,
    config: WorkerConfig<Req>,
    housekeeping: Interval,
    rng: AtomicRng,
    next_turn: usize,
    replacements_owed: usize,
    young_evictions: u32,
    next_id: u64,
    checks: Vec<(u64, CheckFuture)>,
    next_check: Option<Instant>,
    draining: Option<Draining>,
    candidates: Vec<usize>,
    policy: Box<dyn ScalingPolicy>,
    /// An operator's target size, until reached.
    desired: Option<usize>,
}

impl<M, T, S, Req, C> Worker<M, T, S, Req, C>
where
    M: Service<T, Response = S>,
    M::Error: Into<BoxError>,
    M::Future: Send + 'static,
    T: Clone,
    S: Service<Req>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
    C: Classify<S::Response, S::Error> + Send + Sync + 'static,
{
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        make: M,
        target: T,
        config: WorkerConfig<Req>,
        shared: Arc<Shared>,
        classifier: C,
        threshold: u32,
        decay: Option<Duration>,
        backoff: Backoff,
        rng: AtomicRng,
        rx: mpsc::UnboundedReceiver<Message<Req, S::Response>>,
        control: mpsc::UnboundedReceiver<Control>,
        policy: Box<dyn ScalingPolicy>,
    ) -> Self {
        let queue = Queue::Fifo(VecDeque::new());
        // Every deadline here saturates (a huge duration means "effectively never", see
        // `palisade_core::time`); tokio clamps an interval's period too, this states it.
        let mut housekeeping = tokio::time::interval(config.housekeeping_interval.min(FAR_FUTURE));
        housekeeping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let next_check = config.health_check.as_ref().map(|h| deadline_from_now(h.interval));
        Self {
            make,
            target,
            making: None,
            retry_at: None,
            backoff,
            // Grown as members join: `max_size` comes from the user and may be huge.
            members: Vec::new(),
            queue,
            rx,
            rx_open: true,
            control,
            judge: Arc::new(Judge { classifier, threshold, decay, shared: shared.clone() }),
            shared,
            housekeeping,
            rng,
            next_turn: 0,
            replacements_owed: 0,
            young_evictions: 0,
            next_id: 0,
            checks: Vec::new(),
            next_check,
            draining: None,
            candidates: Vec::new(),
            policy,
            desired: None,
            config,
        }
    }

    /// Switches to a priority queue.
    pub(crate) fn with_priority(mut self) -> Self {
        self.queue = Queue::Priority { heap: BinaryHeap::new(), seq: 0 };
        self
    }

    pub(crate) async fn run(mut self) {
        std::future::poll_fn(|cx| self.turn(cx)).await;
    }

    fn turn(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.shared.waker.register(cx.waker());
        while let Poll::Ready(Some(control)) = self.control.poll_recv(cx) {
            self.control(control);
        }
        self.intake(cx);
        if self.housekeeping.poll_tick(cx).is_ready() {
            // At most one round per turn, the next one `housekeeping_interval` from now: an
            // interval below the timer's 1 ms resolution would otherwise tick a million times
            // per millisecond to catch up. Polling again registers the wake-up.
            self.housekeeping.reset();
            self.housekeep();
            let _ = self.housekeeping.poll_tick(cx);
        }
        // Before dispatching, so that members an operator asked to retire take no new call.
        self.shrink_to_desired();
        // Bounded, so that members failing as soon as they join cannot spin the worker.
        let mut joins = 0;
        loop {
            self.evict_unhealthy();
            self.dispatch(cx);
            self.poll_checks(cx);
            // While draining, members are made only for requests still waiting.
            if self.draining.is_none() || !self.queue.is_empty() {
                self.start_making(cx);
            }
            if !self.poll_making(cx) {
                break;
            }
            joins += 1;
            if joins >= MAX_JOINS_PER_TURN {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
        }
        // Again after making: forgets a target reached this turn.
        self.shrink_to_desired();
        if let Some(draining) = &mut self.draining {
            if self.queue.is_empty() && self.shared.in_flight.get() <= 0 {
                self.finish_shutdown(true);
                return Poll::Ready(());
            }
            if draining.deadline.as_mut().poll(cx).is_ready() {
                self.finish_shutdown(false);
                return Poll::Ready(());
            }
        } else if !self.rx_open && self.queue.is_empty() {
            // Every service is gone and every accepted request was dispatched.
            self.drop_members();
            self.publish_members();
            return Poll::Ready(());
        }
        Poll::Pending
    }

    fn control(&mut self, control: Control) {
        match control {
            Control::Shutdown { deadline, done } => {
                if let Some(d) = &mut self.draining {
                    d.replies.push(done);
                    return;
                }
                self.shared.close();
                self.shared.publish(PoolEvent::ShutdownStarted);
                let deadline = Box::pin(tokio::time::sleep_until(deadline_from_now(deadline)));
                self.draining = Some(Draining { deadline, replies: vec![done] });
            }
            Control::Scale(to) => {
                if self.draining.is_some() {
                    return;
                }
                let current = self.desired.unwrap_or(self.members.len() + usize::from(self.making.is_some()));
                let target = match to {
                    ScaleTo::Exactly(n) => n,
                    ScaleTo::Up(k) => current.saturating_add(k),
                    ScaleTo::Down(k) => current.saturating_sub(k),
                };
                let sizing = self.config.sizing;
                self.desired = Some(target.clamp(sizing.min, sizing.max));
            }
        }
    }

    fn intake(&mut self, cx: &mut Context<'_>) {
        while self.rx_open {
            match self.rx.poll_recv(cx) {
                Poll::Ready(Some(message)) => self.queue.push(message),
                Poll::Ready(None) => self.rx_open = false,
                Poll::Pending => break,
            }
        }
    }

    fn finish_shutdown(&mut self, drained: bool) {
        self.rx.close();
        while let Ok(message) = self.rx.try_recv() {
            self.queue.push(message);
        }
        let abandoned = self.queue.len();
        while let Some(message) = self.queue.pop() {
            self.shared.queued.add(-1);
            let Message { request, reply, slot, .. } = message;
            drop(slot);
            let _ = reply.send(Err(self.shared.closed_error()));
            drop_guarded(request, &self.shared.name, "a request");
        }
        let in_flight = usize::try_from(self.shared.in_flight.get()).unwrap_or(0);
        self.drop_members();
        self.checks.clear();
        self.publish_members();
        let drained = drained && abandoned == 0;
        self.shared.publish(PoolEvent::ShutdownFinished { drained });
        let report = ShutdownReport { drained, abandoned, in_flight };
        if let Some(d) = self.draining.take() {
            for reply in d.replies {
                let _ = reply.send(report);
            }
        }
    }

    // === dispatch ===

    fn eligible(&self, i: usize) -> bool {
        let m = &self.members[i];
        m.ready
            && m.state.counters.in_flight() < self.config.member_concurrency
            && !m.state.counters.is_unhealthy()
    }

    fn pick(&mut self) -> Option<usize> {
        let n = self.members.len();
        if n == 0 {
            return None;
        }
        match self.config.strategy {
            Strategy::RoundRobin => {
                let i = (0..n).map(|k| (self.next_turn + k) % n).find(|&i| self.eligible(i))?;
                self.next_turn = i + 1;
                Some(i)
            }
            Strategy::LeastInFlight => {
                let i = (0..n)
                    .map(|k| (self.next_turn + k) % n)
                    .filter(|&i| self.eligible(i))
                    .min_by_key(|&i| self.members[i].state.counters.in_flight())?;
                self.next_turn = i + 1;
                Some(i)
            }
            Strategy::PowerOfTwoChoices | Strategy::PeakEwma => {
                self.candidates.clear();
                for i in 0..n {
                    if self.eligible(i) {
                        self.candidates.push(i);
                    }
                }
                match self.candidates.len() {
                    0 => None,
                    1 => Some(self.candidates[0]),
                    len => {
                        let a = self.rng.below(len as u64) as usize;
                        let mut b = self.rng.below(len as u64 - 1) as usize;
                        if b >= a {
                            b += 1;
                        }
                        let (a, b) = (self.candidates[a], self.candidates[b]);
                        Some(if self.load(b) < self.load(a) { b } else { a })
                    }
                }
            }
        }
    }

    fn load(&self, i: usize) -> u64 {
        let c = &self.members[i].state.counters;
        let in_flight = c.in_flight() as u64;
        match self.config.strategy {
            Strategy::PeakEwma => c.rtt_nanos().saturating_mul(in_flight + 1),
            _ => in_flight,
        }
    }

    /// Polls readiness of the member at `i`; evicts it on error. Returns whether it is
    /// still there.
    fn poll_member(&mut self, i: usize, cx: &mut Context<'_>) -> bool {
        let m = &mut self.members[i];
        if m.ready || m.state.counters.is_unhealthy() {
            return true;
        }
        match catch_unwind(AssertUnwindSafe(|| m.service.poll_ready(cx))) {
            Ok(Poll::Ready(Ok(()))) => {
                m.ready = true;
                true
            }
            Ok(Poll::Ready(Err(err))) => {
                let err: BoxError = err.into();
                self.evict(i, EvictReason::NotReady(err.to_string().into()));
                false
            }
            Ok(Poll::Pending) => true,
            Err(payload) => {
                let err = Panicked::new(self.shared.name.clone(), "poll_ready", &*payload);
                self.evict(i, EvictReason::Panicked(err.message().into()));
                false
            }
        }
    }

    /// Polls every member not yet ready: afterwards each one is ready, or its `poll_ready`
    /// registered this turn's waker, or it was evicted.
    fn poll_members(&mut self, cx: &mut Context<'_>) {
        let mut i = 0;
        while i < self.members.len() {
            if self.poll_member(i, cx) {
                i += 1;
            }
        }
    }

    fn dispatch(&mut self, cx: &mut Context<'_>) {
        let checks_due = self.members.iter().any(|m| m.check_due);
        if self.queue.is_empty() && !checks_due {
            return;
        }
        self.poll_members(cx);
        if checks_due {
            self.start_checks();
            self.evict_unhealthy();
            // A health check spends the readiness of the member it calls: poll those members
            // again, so each is ready or has registered a wake-up. Returning `Pending` with a
            // member marked not ready and no waker registered would leave requests queued
            // behind it until something unrelated woke the worker.
            self.poll_members(cx);
        }
        while !self.queue.is_empty() {
            let Some(i) = self.pick() else { break };
            let Some(message) = self.queue.pop() else { break };
            self.shared.queued.add(-1);
            if message.reply.is_closed() {
                drop_guarded(message, &self.shared.name, "a cancelled request");
                continue;
            }
            if self.call(i, message) {
                self.poll_member(i, cx);
            }
        }
        if !self.queue.is_empty() {
            let pruned = self.queue.prune_cancelled(cx, &self.shared.name);
            if pruned > 0 {
                self.shared.queued.add(-(pruned as i64));
            }
        }
    }

    /// Sends `message` to the member at `i`; returns whether the member is still there (a
    /// member whose `call` panics is evicted, and only this request fails).
    fn call(&mut self, i: usize, message: Message<Req, S::Response>) -> bool {
        let Message { request, reply, slot, .. } = message;
        // The request left the queue: its place is free again.
        drop(slot);
        let m = &mut self.members[i];
        m.ready = false;
        m.active = true;
        let call = match catch_unwind(AssertUnwindSafe(|| m.service.call(request))) {
            Ok(call) => call,
            Err(payload) => {
                let err = Panicked::new(self.shared.name.clone(), "call", &*payload);
                let message: Arc<str> = err.message().into();
                let _ = reply.send(Err(err.into()));
                self.evict(i, EvictReason::Panicked(message));
                return false;
            }
        };
        m.state.counters.in_flight.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        self.shared.in_flight.add(1);
        // The start is read for peak-EWMA and for completion events (when observed).
        let started = (self.judge.decay.is_some() || self.shared.events.is_observed()).then(Instant::now);
        let future = Tracked::new(call, m.state.clone(), started);
        // If the caller went away meanwhile, the call is dropped (cancelled) right here.
        if let Err(unsent) = reply.send(Ok(Box::pin(future))) {
            drop_guarded(unsent, &self.shared.name, "a cancelled call");
        }
        true
    }

    // === health ===

    fn start_checks(&mut self) {
        let Some(check) = &self.config.health_check else { return };
        for m in &mut self.members {
            if !(m.check_due && m.ready) {
                continue;
            }
            m.check_due = false;
            m.ready = false;
            let service = &mut m.service;
            let call = match catch_unwind(AssertUnwindSafe(|| service.call((check.request)()))) {
                Ok(call) => call,
                Err(payload) => {
                    let err = Panicked::new(self.shared.name.clone(), "health_check", &*payload);
                    // Evicted by the caller (`dispatch`) right after.
                    m.state.poison(err.message().into());
                    continue;
                }
            };
            let judge = self.judge.clone();
            let timeout = check.timeout;
            let name = self.shared.name.clone();
            let fut = async move {
                match tokio::time::timeout_at(deadline_from_now(timeout), call).await {
                    Ok(result) => !judge.classifier.classify(&result).is_failure(),
                    Err(_) => false,
                }
            };
            // The check runs on the worker's task: a panic in the member's future (or the
            // classifier) evicts the member instead of ending the worker.
            let fut = AssertUnwindSafe(fut).catch_unwind().map(move |r| {
                r.map_err(|payload| Panicked::new(name, "health_check", &*payload).message().into())
            });
            self.checks.push((m.state.counters.id, Box::pin(fut)));
        }
    }

    fn poll_checks(&mut self, cx: &mut Context<'_>) {
        let mut k = 0;
        while k < self.checks.len() {
            let Poll::Ready(outcome) = self.checks[k].1.as_mut().poll(cx) else {
                k += 1;
                continue;
            };
            let (id, _) = self.checks.swap_remove(k);
            let reason = match outcome {
                Ok(true) => continue,
                Ok(false) => EvictReason::HealthCheck,
                Err(message) => EvictReason::Panicked(message),
            };
            if let Some(i) = self.members.iter().position(|m| m.state.counters.id == id) {
                self.evict(i, reason);
            }
        }
    }

    fn evict_unhealthy(&mut self) {
        let mut i = self.members.len();
        while i > 0 {
            i -= 1;
            let state = &self.members[i].state;
            if state.counters.is_unhealthy() {
                let reason = match state.panic_message() {
                    Some(message) => EvictReason::Panicked(message),
                    None => EvictReason::ConsecutiveFailures(self.judge.threshold),
                };
                self.evict(i, reason);
            }
        }
    }

    fn evict(&mut self, i: usize, reason: EvictReason) {
        let m = self.members.remove(i);
        self.publish_leave(i);
        if m.state.counters.served.load(std::sync::atomic::Ordering::Relaxed) == 0 {
            // It failed before finishing a single call: making its replacement backs off
            // like a failed make, so a factory of broken members cannot churn.
            self.young_evictions += 1;
            let retry_in = self.backoff.fail();
            self.retry_at = Some(Box::pin(tokio::time::sleep_until(deadline_from_now(retry_in))));
        } else {
            self.young_evictions = 0;
        }
        self.shared.evicted.increment();
        self.replacements_owed = (self.replacements_owed + 1).min(self.config.sizing.max);
        self.shared.publish(PoolEvent::Evicted {
            member: m.state.counters.id,
            members: self.members.len(),
            reason,
        });
        // Calls in flight on it keep running: their callers own them.
        drop_guarded(m, &self.shared.name, "a member");
    }

    // === scaling ===

    fn start_making(&mut self, cx: &mut Context<'_>) {
        if self.making.is_some() {
            return;
        }
        if let Some(retry_at) = &mut self.retry_at {
            if retry_at.as_mut().poll(cx).is_pending() {
                return;
            }
            self.retry_at = None;
        }
        let n = self.members.len();
        let sizing = self.config.sizing;
        // A replacement is reported as one even when the pool is below its minimum (the
        // eviction took it there): metrics show the churn.
        let reason = if !sizing.can_grow(n) {
            return;
        } else if self.replacements_owed > 0 {
            ScaleUpReason::Replacement
        } else if n < sizing.min {
            ScaleUpReason::Minimum
        } else if self.desired.is_some_and(|d| d > n) {
            ScaleUpReason::Operator
        } else if n == 0 && !self.queue.is_empty() {
            ScaleUpReason::Queue
        } else if self.desired.is_some() || self.draining.is_some() {
            return;
        } else {
            let load = self.pool_load(Instant::now());
            let policy = &mut self.policy;
            match catch_unwind(AssertUnwindSafe(|| policy.scale_up(&load))) {
                Ok(Some(reason)) => reason,
                Ok(None) => return,
                Err(_) => {
                    tracing::warn!(target: "palisade", pool = %self.shared.name, "the scaling policy panicked");
                    return;
                }
            }
        };
        // The `MakeService` is user code run on the worker's task: a panic in it counts as a
        // failed make (with backoff), never ends the worker.
        let name = self.shared.name.clone();
        let panicked = |payload: Box<dyn std::any::Any + Send>| -> BoxError {
            Panicked::new(name.clone(), "make", &*payload).into()
        };
        match catch_unwind(AssertUnwindSafe(|| self.make.poll_ready(cx))) {
            Ok(Poll::Pending) => {}
            Ok(Poll::Ready(Err(err))) => self.make_failed(&err.into(), cx),
            Err(payload) => self.make_failed(&panicked(payload), cx),
            Ok(Poll::Ready(Ok(()))) => {
                let (make, target) = (&mut self.make, &self.target);
                let fut = match catch_unwind(AssertUnwindSafe(|| make.call(target.clone()))) {
                    Ok(fut) => fut,
                    Err(payload) => return self.make_failed(&panicked(payload), cx),
                };
                let make_timeout = self.config.make_timeout;
                let timeout_name = name.clone();
                let fut: MakeFuture<S> = Box::pin(async move {
                    let made = AssertUnwindSafe(async move {
                        match make_timeout {
                            None => fut.await.map_err(Into::into),
                            Some(limit) => match tokio::time::timeout_at(deadline_from_now(limit), fut).await
                            {
                                Ok(res) => res.map_err(Into::into),
                                Err(_) => {
                                    Err(palisade_core::rejection::TimedOut::new(timeout_name, limit).into())
                                }
                            },
                        }
                    });
                    match made.catch_unwind().await {
                        Ok(res) => res,
                        Err(payload) => Err(Panicked::new(name, "make", &*payload).into()),
                    }
                });
                self.making = Some((fut, reason));
            }
        }
    }

    /// Drives the member being made; returns `true` when one joined.
    fn poll_making(&mut self, cx: &mut Context<'_>) -> bool {
        let Some((fut, reason)) = &mut self.making else { return false };
        let Poll::Ready(result) = fut.as_mut().poll(cx) else { return false };
        let reason = *reason;
        self.making = None;
        match result {
            Ok(service) => {
                if self.young_evictions == 0 {
                    self.backoff.succeed();
                }
                if reason == ScaleUpReason::Replacement || self.replacements_owed > 0 {
                    self.replacements_owed = self.replacements_owed.saturating_sub(1);
                }
                let id = self.next_id;
                self.next_id += 1;
                let state = Arc::new(MemberState::new(id, self.judge.clone(), self.config.default_rtt));
                self.publish_join(&state);
                self.members.push(Member {
                    service,
                    ready: false,
                    state,
                    last_active: Instant::now(),
                    active: false,
                    check_due: false,
                });
                self.shared.made.increment();
                self.shared.publish(PoolEvent::ScaledUp { member: id, members: self.members.len(), reason });
                true
            }
            Err(err) => {
                self.make_failed(&err, cx);
                false
            }
        }
    }

    fn make_failed(&mut self, err: &BoxError, cx: &mut Context<'_>) {
        self.shared.make_failures.increment();
        let retry_in = self.backoff.fail();
        let mut sleep = Box::pin(tokio::time::sleep_until(deadline_from_now(retry_in)));
        // Register for the wake-up now: nothing else may wake the worker.
        let _ = sleep.as_mut().poll(cx);
        self.retry_at = Some(sleep);
        tracing::debug!(target: "palisade", pool = %self.shared.name, error = %err, "making a member failed");
        self.shared.publish(PoolEvent::MakeFailed {
            attempt: self.backoff.failures(),
            retry_in,
            error: err.to_string().into(),
        });
    }

    fn housekeep(&mut self) {
        let now = Instant::now();
        for m in &mut self.members {
            if m.active || m.state.counters.in_flight() > 0 {
                m.last_active = now;
                m.active = false;
            }
        }
        if self.draining.is_some() {
            return;
        }
        if let (Some(check), Some(next)) = (&self.config.health_check, self.next_check) {
            if now >= next {
                for m in &mut self.members {
                    m.check_due = true;
                }
                self.next_check = Some(deadline_after(now, check.interval));
            }
        }
        if self.desired.is_none() {
            let load = self.pool_load(now);
            let policy = &mut self.policy;
            match catch_unwind(AssertUnwindSafe(|| policy.scale_down(&load))) {
                Ok(Some(reason)) => {
                    if self.config.sizing.can_shrink(self.members.len()) {
                        self.retire_one(now, Duration::ZERO, reason);
                    }
                }
                Ok(None) => {}
                Err(_) => {
                    tracing::warn!(target: "palisade", pool = %self.shared.name, "the scaling policy panicked");
                }
            }
        }
        if let Some(idle) = self.config.idle_timeout {
            while self.config.sizing.can_shrink(self.members.len())
                && self.retire_one(now, idle, ScaleDownReason::Idle)
            {}
        }
    }

    /// The load a scaling policy sees.
    fn pool_load(&self, now: Instant) -> PoolLoad {
        let members = self.members.len();
        let in_flight: usize = self.members.iter().map(|m| m.state.counters.in_flight()).sum();
        let idle_members = self.members.iter().filter(|m| m.state.counters.in_flight() == 0).count();
        PoolLoad {
            members,
            idle_members,
            in_flight,
            capacity: members.saturating_mul(self.config.member_concurrency),
            queued: self.queue.len(),
            min_size: self.config.sizing.min,
            max_size: self.config.sizing.max,
            now,
        }
    }

    /// Works towards an operator's target: retires idle members while there are too many
    /// (busy ones when their calls finish), and forgets the target once reached.
    fn shrink_to_desired(&mut self) {
        let Some(d) = self.desired else { return };
        if self.draining.is_some() {
            self.desired = None;
            self.shared.shrink_pending.store(false, std::sync::atomic::Ordering::Relaxed);
            return;
        }
        let now = Instant::now();
        while self.members.len() > d && self.retire_one(now, Duration::ZERO, ScaleDownReason::Operator) {}
        let n = self.members.len();
        self.shared.shrink_pending.store(n > d, std::sync::atomic::Ordering::Relaxed);
        // Growing is finished by `start_making`/`poll_making`; the target is forgotten on
        // the turn after it is reached.
        if n == d && self.making.is_none() {
            self.desired = None;
        }
    }

    /// Retires the longest-idle member with no call in flight that has been idle for at
    /// least `idle_for`.
    fn retire_one(&mut self, now: Instant, idle_for: Duration, reason: ScaleDownReason) -> bool {
        let candidate = self
            .members
            .iter()
            .enumerate()
            .filter(|(_, m)| {
                m.state.counters.in_flight() == 0 && now.saturating_duration_since(m.last_active) >= idle_for
            })
            .min_by_key(|(_, m)| m.last_active)
            .map(|(i, _)| i);
        let Some(i) = candidate else { return false };
        let m = self.members.remove(i);
        self.publish_leave(i);
        self.shared.retired.increment();
        self.shared.publish(PoolEvent::ScaledDown {
            member: m.state.counters.id,
            members: self.members.len(),
            reason,
        });
        drop_guarded(m, &self.shared.name, "a member");
        true
    }

    /// Drops every member (shutdown, or every service gone).
    fn drop_members(&mut self) {
        for m in self.members.drain(..) {
            drop_guarded(m, &self.shared.name, "a member");
        }
    }

    /// Shows a member that joined (at the end of `members`) to snapshots.
    fn publish_join(&self, state: &Arc<MemberState<C>>) {
        let mut views = self.shared.members();
        views.push(state.clone() as Arc<dyn MemberView>);
        self.shared.member_count.set(views.len() as i64);
    }

    /// Hides the member that was at `i` in `members` from snapshots.
    fn publish_leave(&self, i: usize) {
        let mut views = self.shared.members();
        if i < views.len() {
            views.remove(i);
        }
        self.shared.member_count.set(views.len() as i64);
    }

    fn publish_members(&self) {
        let views: Vec<Arc<dyn MemberView>> =
            self.members.iter().map(|m| m.state.clone() as Arc<dyn MemberView>).collect();
        self.shared.member_count.set(views.len() as i64);
        *self.shared.members() = views;
    }
}
