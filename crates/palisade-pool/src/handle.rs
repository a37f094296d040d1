//! The pool's handle: stats, events and graceful shutdown.

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::event::PoolEvent;
use crate::shared::Shared;

pub(crate) enum Control {
    Shutdown { deadline: Duration, done: oneshot::Sender<ShutdownReport> },
    Scale(ScaleTo),
}

/// An operator's resize request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ScaleTo {
    Exactly(usize),
    Up(usize),
    Down(usize),
}

impl fmt::Debug for Control {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Shutdown { deadline, .. } => {
                f.debug_struct("Shutdown").field("deadline", deadline).finish()
            }
            Self::Scale(to) => f.debug_tuple("Scale").field(to).finish(),
        }
    }
}

/// Owns the worker task: aborts it when the last service, handle and waiting response
/// future are gone.
#[derive(Debug)]
pub(crate) struct WorkerGuard {
    pub(crate) task: JoinHandle<()>,
    pub(crate) shared: Arc<Shared>,
}

impl Drop for WorkerGuard {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One member in a [`PoolSnapshot`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct MemberSnapshot {
    /// The member's id (unique within the pool, in order of making).
    pub id: u64,
    /// Calls dispatched to it and not finished.
    pub in_flight: usize,
    /// Calls it finished.
    pub served: u64,
    /// Of those, calls the classifier judged failures.
    pub failed: u64,
    /// Calls it takes at once (`member_concurrency`).
    pub capacity: usize,
    /// Failures in a row, as the classifier judged them.
    pub failures_in_a_row: u32,
}

impl MemberSnapshot {
    /// `in_flight / capacity`: 0 idle, 1 full.
    pub fn load(&self) -> f64 {
        if self.capacity == 0 {
            return 0.0;
        }
        self.in_flight as f64 / self.capacity as f64
    }
}

/// A [`Pool`](crate::Pool)'s numbers at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolSnapshot {
    /// The live members.
    pub members: Vec<MemberSnapshot>,
    /// Requests accepted and waiting for a member.
    pub queued: usize,
    /// The queue's capacity.
    pub max_queue: usize,
    /// Calls dispatched and not finished (including those on evicted or retired members).
    pub in_flight: usize,
    /// Members made since the pool was built.
    pub made: u64,
    /// Members retired by scaling down.
    pub retired: u64,
    /// Members evicted as unhealthy.
    pub evicted: u64,
    /// Failed attempts to make a member.
    pub make_failures: u64,
    /// Requests refused because the queue was full.
    pub rejected: u64,
    /// Calls finished that the classifier did not judge failures.
    pub completed: u64,
    /// Calls finished that the classifier judged failures, or whose member panicked.
    pub failed: u64,
    /// Whether the pool was shut down.
    pub closed: bool,
}

/// What [`PoolHandle::shutdown`] achieved.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// Every accepted request was dispatched and every call finished before the deadline.
    pub drained: bool,
    /// Queued requests answered with `Closed` at the deadline.
    pub abandoned: usize,
    /// Calls still running at the deadline (their callers still drive them).
    pub in_flight: usize,
}

/// Watches and controls a [`Pool`](crate::Pool): stats, events, shutdown.
///
/// # Clone
///
/// Clones control the same pool. A handle keeps the pool's worker alive like a service
/// does.
#[derive(Clone)]
pub struct PoolHandle {
    pub(crate) worker: Arc<WorkerGuard>,
}

impl fmt::Debug for PoolHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolHandle").field("name", &self.worker.shared.name).finish()
    }
}

impl PoolHandle {
    fn shared(&self) -> &Shared {
        &self.worker.shared
    }

    /// The pool's name.
    pub fn name(&self) -> &str {
        &self.shared().name
    }

    /// Registers a listener for [`PoolEvent`]s.
    pub fn on_event<OnEvent>(&self, listener: OnEvent)
    where
        OnEvent: Fn(&PoolEvent) + Send + Sync + 'static,
    {
        self.shared().events.subscribe(listener);
    }

    /// Whether shutdown began.
    pub fn is_closed(&self) -> bool {
        self.shared().is_closed()
    }

    /// The pool's numbers now.
    pub fn snapshot(&self) -> PoolSnapshot {
        snapshot(self.shared())
    }

    /// Resizes the pool to `n` members, clamped to `min_size..=max_size`: members are made
    /// (one at a time, as always) or idle members retired (the longest idle first; busy
    /// ones as soon as their calls finish) until the pool has that many. Until then the
    /// scaling policy does not act; afterwards it takes over from the new size (so under
    /// load a shrunk pool may grow again: change the policy or the bounds to pin a size).
    ///
    /// A target is kept whatever the load, as `min_size` is, so it is bounded the same way:
    /// at most 4,096 members, or the current size when load already grew the pool past
    /// that (a `max_size` far above is reached only by the scaling policy, under load). A
    /// bad number from an admin endpoint (`usize::MAX`) cannot make members until memory
    /// runs out.
    ///
    /// Events report [`ScaleUpReason::Operator`](crate::ScaleUpReason::Operator) and
    /// [`ScaleDownReason::Operator`](crate::ScaleDownReason::Operator).
    ///
    /// ```
    /// use std::time::Duration;
    /// use palisade_pool::{make_fn, Pool};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), palisade_core::BoxError> {
    /// let make = make_fn(|| async {
    ///     Ok::<_, std::io::Error>(tower::service_fn(|x: u32| async move { Ok::<_, std::io::Error>(x) }))
    /// });
    /// let pool = Pool::builder().min_size(1).max_size(8).build(make)?;
    /// let handle = pool.handle();
    /// handle.scale_to(5);
    /// tokio::time::sleep(Duration::from_millis(10)).await;
    /// assert_eq!(handle.snapshot().members.len(), 5);
    /// handle.scale_down(2);
    /// tokio::time::sleep(Duration::from_millis(10)).await;
    /// assert_eq!(handle.snapshot().members.len(), 3);
    /// handle.scale_to(100); // clamped to max_size
    /// tokio::time::sleep(Duration::from_millis(10)).await;
    /// assert_eq!(handle.snapshot().members.len(), 8);
    /// # Ok(())
    /// # }
    /// ```
    pub fn scale_to(&self, n: usize) {
        let _ = self.shared().control.send(Control::Scale(ScaleTo::Exactly(n)));
        self.shared().waker.wake();
    }

    /// Adds `k` members to the current target (clamped to `max_size`); see
    /// [`scale_to`](PoolHandle::scale_to).
    pub fn scale_up(&self, k: usize) {
        let _ = self.shared().control.send(Control::Scale(ScaleTo::Up(k)));
        self.shared().waker.wake();
    }

    /// Removes `k` members from the current target (clamped to `min_size`); see
    /// [`scale_to`](PoolHandle::scale_to).
    pub fn scale_down(&self, k: usize) {
        let _ = self.shared().control.send(Control::Scale(ScaleTo::Down(k)));
        self.shared().waker.wake();
    }

    /// Shuts the pool down: new requests fail with
    /// [`Closed`](palisade_core::rejection::Closed) at once; queued requests are still
    /// dispatched and calls finish, for up to `deadline`; then requests still queued are
    /// answered with `Closed` and the members are dropped. Calls still running at that
    /// point belong to their callers, who keep driving (or dropping) them.
    pub async fn shutdown(&self, deadline: Duration) -> ShutdownReport {
        let shared = self.shared();
        shared.close();
        let (done, report) = oneshot::channel();
        if shared.control.send(Control::Shutdown { deadline, done }).is_ok() {
            if let Ok(report) = report.await {
                return report;
            }
        }
        let in_flight = usize::try_from(shared.in_flight.get()).unwrap_or(0);
        ShutdownReport { drained: in_flight == 0, abandoned: 0, in_flight }
    }
}

pub(crate) fn snapshot(shared: &Shared) -> PoolSnapshot {
    let members = shared
        .members()
        .iter()
        .map(|m| {
            let c = m.counters();
            MemberSnapshot {
                id: c.id,
                in_flight: c.in_flight(),
                served: c.served.load(Ordering::Relaxed),
                failed: c.failed.load(Ordering::Relaxed),
                capacity: shared.member_concurrency,
                failures_in_a_row: c.failures_in_a_row.load(Ordering::Relaxed),
            }
        })
        .collect();
    PoolSnapshot {
        members,
        queued: usize::try_from(shared.queued.get()).unwrap_or(0),
        max_queue: shared.max_queue,
        in_flight: usize::try_from(shared.in_flight.get()).unwrap_or(0),
        made: shared.made.get(),
        retired: shared.retired.get(),
        evicted: shared.evicted.get(),
        make_failures: shared.make_failures.get(),
        rejected: shared.rejected.get(),
        completed: shared.completed.get(),
        failed: shared.failed.get(),
        closed: shared.is_closed(),
    }
}
