//! The worker task that owns a pool's members: it takes queued requests, polls members for
//! readiness, dispatches, scales and heals. Modelled on tower's `buffer` worker.

use std::collections::{BinaryHeap, VecDeque};
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use palisade_core::classify::Classify;
use palisade_core::rng::AtomicRng;
use palisade_core::time::{deadline_from_now, FAR_FUTURE};
use palisade_core::BoxError;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit};
use tokio::time::{Instant, Interval, MissedTickBehavior, Sleep};
use tower_service::Service;

use crate::builder::HealthCheck;
use crate::config::{PoolConfig, Strategy};
use crate::event::{PoolEvent, ScaleUpReason};
use crate::handle::{Control, ScaleTo, ShutdownReport};
use crate::member::{Judge, MemberState};
use crate::scaling::ScalingPolicy;
use crate::shared::Shared;
use crate::sizing::{Backoff, Sizing, MAX_MIN_SIZE};

mod dispatch;
mod health;
mod queue;
mod scaling;

use self::queue::Queue;

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
    config: PoolConfig,
    /// `min_size` and `max_size` of `config`.
    sizing: Sizing,
    health_check: Option<HealthCheck<Req>>,
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
        config: PoolConfig,
        health_check: Option<HealthCheck<Req>>,
        shared: Arc<Shared>,
        classifier: C,
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
        let next_check = health_check.as_ref().map(|h| deadline_from_now(h.interval));
        let threshold = config.evict_after_failures;
        let decay = matches!(config.strategy, Strategy::PeakEwma).then_some(config.peak_ewma_decay);
        let backoff = Backoff::new(config.make_backoff, config.make_backoff_max);
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
            sizing: config.sizing(),
            health_check,
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
                // An operator target is kept whatever the load, as `min_size` is, so it is
                // bounded the same way: at most 4,096 members (or the current size, when load
                // already grew the pool past that), never grown towards a huge `max_size` until
                // memory runs out because of a bad number.
                let sizing = self.sizing;
                let cap = sizing.max.min(MAX_MIN_SIZE.max(current));
                self.desired = Some(target.clamp(sizing.min, cap));
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
}
