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
}

impl fmt::Debug for Control {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Shutdown { deadline, .. } => {
                f.debug_struct("Shutdown").field("deadline", deadline).finish()
            }
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

/// One member in a [`Snapshot`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct MemberStats {
    /// The member's id (unique within the pool, in order of making).
    pub id: u64,
    /// Calls dispatched to it and not finished.
    pub in_flight: usize,
    /// Calls it finished.
    pub served: u64,
    /// Failures in a row, as the classifier judged them.
    pub failures_in_a_row: u32,
}

/// A [`PoolService`](crate::PoolService)'s numbers at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Snapshot {
    /// The live members.
    pub members: Vec<MemberStats>,
    /// Requests accepted and waiting for a member.
    pub queued: usize,
    /// The queue's capacity.
    pub queue_capacity: usize,
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

/// Watches and controls a [`PoolService`](crate::PoolService): stats, events, shutdown.
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
    pub fn on_event<F>(&self, listener: F)
    where
        F: Fn(&PoolEvent) + Send + Sync + 'static,
    {
        self.shared().events.subscribe(listener);
    }

    /// Whether shutdown began.
    pub fn is_closed(&self) -> bool {
        self.shared().is_closed()
    }

    /// The pool's numbers now.
    pub fn snapshot(&self) -> Snapshot {
        snapshot(self.shared())
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

pub(crate) fn snapshot(shared: &Shared) -> Snapshot {
    let members = shared
        .members()
        .iter()
        .map(|m| {
            let c = m.counters();
            MemberStats {
                id: c.id,
                in_flight: c.in_flight(),
                served: c.served.load(Ordering::Relaxed),
                failures_in_a_row: c.failures_in_a_row.load(Ordering::Relaxed),
            }
        })
        .collect();
    Snapshot {
        members,
        queued: usize::try_from(shared.queued.get()).unwrap_or(0),
        queue_capacity: shared.queue_capacity,
        in_flight: usize::try_from(shared.in_flight.get()).unwrap_or(0),
        made: shared.made.get(),
        retired: shared.retired.get(),
        evicted: shared.evicted.get(),
        make_failures: shared.make_failures.get(),
        rejected: shared.rejected.get(),
        closed: shared.is_closed(),
    }
}
