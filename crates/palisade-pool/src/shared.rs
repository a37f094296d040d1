//! State shared by a pool's services, its handle, its worker and the calls in flight.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use futures_util::task::AtomicWaker;
use palisade_core::event::EventBus;
use palisade_core::metric::{Counter, Gauge};
use palisade_core::rejection::Closed;
use palisade_core::sync::lock;
use palisade_core::BoxError;
use tokio::sync::{mpsc, Semaphore};
use tokio::time::Instant;

use crate::event::PoolEvent;
use crate::handle::Control;
use crate::member::MemberView;

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) name: Arc<str>,
    pub(crate) events: EventBus<PoolEvent>,
    /// Wakes the worker: calls completing while requests wait, members turning unhealthy.
    pub(crate) waker: AtomicWaker,
    pub(crate) closed: AtomicBool,
    pub(crate) epoch: Instant,
    /// Queue places: taken by `poll_ready`, given back when the request leaves the queue.
    pub(crate) slots: Arc<Semaphore>,
    pub(crate) max_queue: usize,
    pub(crate) control: mpsc::UnboundedSender<Control>,
    pub(crate) queued: Gauge,
    pub(crate) in_flight: Gauge,
    pub(crate) member_count: Gauge,
    pub(crate) made: Counter,
    pub(crate) retired: Counter,
    pub(crate) evicted: Counter,
    pub(crate) make_failures: Counter,
    pub(crate) rejected: Counter,
    /// Calls finished that the classifier did not judge failures.
    pub(crate) completed: Counter,
    /// Calls finished that the classifier judged failures (or whose member panicked).
    pub(crate) failed: Counter,
    /// Calls each member takes at once (for per-member load in snapshots).
    pub(crate) member_concurrency: usize,
    /// An operator's shrink waits for busy members to go idle: wake the worker on
    /// completions.
    pub(crate) shrink_pending: AtomicBool,
    pub(crate) members: Mutex<Vec<Arc<dyn MemberView>>>,
}

impl Shared {
    pub(crate) fn new(
        name: Arc<str>,
        events: EventBus<PoolEvent>,
        max_queue: usize,
        member_concurrency: usize,
        control: mpsc::UnboundedSender<Control>,
    ) -> Self {
        let n = &*name;
        Self {
            waker: AtomicWaker::new(),
            closed: AtomicBool::new(false),
            epoch: Instant::now(),
            slots: Arc::new(Semaphore::new(max_queue)),
            max_queue,
            control,
            queued: Gauge::new("palisade_pool_queued", n),
            in_flight: Gauge::new("palisade_pool_in_flight", n),
            member_count: Gauge::new("palisade_pool_members", n),
            made: Counter::new("palisade_pool_members_made_total", n),
            retired: Counter::new("palisade_pool_members_retired_total", n),
            evicted: Counter::new("palisade_pool_members_evicted_total", n),
            make_failures: Counter::new("palisade_pool_make_failures_total", n),
            rejected: Counter::new("palisade_pool_rejected_total", n),
            completed: Counter::labeled("palisade_pool_calls_total", n, ("outcome", "success")),
            failed: Counter::labeled("palisade_pool_calls_total", n, ("outcome", "failure")),
            member_concurrency,
            shrink_pending: AtomicBool::new(false),
            members: Mutex::new(Vec::new()),
            events,
            name,
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.slots.close();
        self.waker.wake();
    }

    pub(crate) fn closed_error(&self) -> BoxError {
        Closed::new(self.name.clone()).into()
    }

    /// Whether the worker wants to hear about every completed call.
    #[inline]
    pub(crate) fn wants_completions(&self) -> bool {
        self.queued.get() > 0
            || self.closed.load(Ordering::Relaxed)
            || self.shrink_pending.load(Ordering::Relaxed)
    }

    /// Publishes `event`, containing a panic of a listener: listeners are user code and the
    /// worker calling them must go on.
    pub(crate) fn publish(&self, event: PoolEvent) {
        let published = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.events.publish(event)));
        if published.is_err() {
            tracing::warn!(target: "palisade", pool = %self.name, "a pool event listener panicked");
        }
    }

    pub(crate) fn members(&self) -> MutexGuard<'_, Vec<Arc<dyn MemberView>>> {
        lock(&self.members)
    }
}
