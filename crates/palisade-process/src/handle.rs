//! [`ProcessHandle`] and [`ProcessSnapshot`]: the counters and listeners of a
//! [`ProcessService`](crate::ProcessService) or a [`MakeWorker`](crate::MakeWorker) and its
//! workers.

use std::sync::Arc;
use std::time::Duration;

use crate::event::{ProcessEvent, Telemetry};

/// Counters of a [`ProcessService`](crate::ProcessService) or a
/// [`MakeWorker`](crate::MakeWorker) and its workers, read at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProcessSnapshot {
    /// Children started.
    pub spawned: u64,
    /// Spawns that failed.
    pub spawn_failed: u64,
    /// Children that exited with code 0.
    pub exited_success: u64,
    /// Children that exited with another code or an outside signal.
    pub exited_failure: u64,
    /// Children killed because of a timeout.
    pub killed_timeout: u64,
    /// Children killed because their response future was dropped.
    pub killed_cancelled: u64,
    /// Children killed because of an output cap.
    pub killed_output_limit: u64,
    /// Workers killed at shutdown after the grace period, or for a protocol error.
    pub killed_other: u64,
    /// Workers that crashed while serving.
    pub crashed: u64,
    /// Children running now.
    pub running: i64,
    /// Mean run time of finished children.
    pub mean_duration: Duration,
    /// Longest run time of a finished child.
    pub max_duration: Duration,
}

/// A handle on a service's (or worker factory's) events and counters.
///
/// # Example
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// use palisade_process::{ProcessEvent, ProcessRequest, ProcessService};
/// use tower::ServiceExt;
///
/// let service = ProcessService::builder("/bin/true")
///     .name("truth")
///     .on_event(|event: &ProcessEvent| {
///         if let ProcessEvent::Killed { pid, reason, .. } = event {
///             tracing::warn!(pid, ?reason, "killed");
///         }
///     })
///     .build()?;
/// let handle = service.handle();
/// service.oneshot(ProcessRequest::new()).await?;
/// let snapshot = handle.snapshot();
/// assert_eq!((snapshot.spawned, snapshot.exited_success, snapshot.running), (1, 1, 0));
/// # Ok(()) }
/// ```
///
/// # Clone
///
/// Clones observe the same service: every clone of the service and every worker spawned by
/// one [`MakeWorker`](crate::MakeWorker) share one set of counters and listeners.
#[derive(Clone, Debug)]
pub struct ProcessHandle {
    pub(crate) telemetry: Arc<Telemetry>,
}

impl ProcessHandle {
    /// The service's name.
    pub fn name(&self) -> &str {
        &self.telemetry.name
    }

    /// The counters now.
    pub fn snapshot(&self) -> ProcessSnapshot {
        self.telemetry.snapshot()
    }

    /// Registers a listener for every event from now on. A listener that panics misses
    /// that event (the panic is logged); the service goes on.
    pub fn on_event<F>(&self, listener: F)
    where
        F: Fn(&ProcessEvent) + Send + Sync + 'static,
    {
        self.telemetry.events.subscribe(listener);
    }
}
