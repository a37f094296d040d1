use std::ffi::OsStr;
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::Semaphore;
use tower_service::Service;

use crate::builder::ProcessBuilder;
use crate::command::Program;
use crate::config::ProcessConfig;
use crate::error::{ProcessError, ProcessErrorKind};
use crate::event::Telemetry;
use crate::future::ResponseFuture;
use crate::handle::ProcessHandle;
use crate::output::ProcessOutput;
use crate::request::ProcessRequest;
use crate::reserve::Reservation;
use crate::run;

/// The validated configuration, the program found, the concurrency semaphore and
/// telemetry, shared by every clone.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: ProcessConfig,
    pub(crate) program: Program,
    pub(crate) semaphore: Arc<Semaphore>,
    pub(crate) telemetry: Arc<Telemetry>,
}

impl Shared {
    pub(crate) fn new(config: ProcessConfig, program: Program, telemetry: Arc<Telemetry>) -> Self {
        let semaphore = Arc::new(Semaphore::new(config.max_concurrency));
        Self { config, program, semaphore, telemetry }
    }
}

/// Runs a program once per call, as a tower [`Service`].
///
/// Each call spawns the program (never through a shell) with the builder's fixed arguments
/// plus the [`ProcessRequest`]'s arguments, environment and stdin, and resolves to a
/// [`ProcessOutput`] when the child has exited and its output is read. See the
/// [crate documentation](crate) for limits, timeouts and cancellation.
///
/// # Backpressure
///
/// `poll_ready` reserves one of `max_concurrency` child slots; the slot moves into the
/// response future and is freed when the child is gone (or when the future is dropped). A
/// reserved slot that is never used is freed when the service is dropped.
///
/// # Clone
///
/// Clones share the settings, the child slots, the counters and the event listeners. A
/// clone starts without a reserved slot (call `poll_ready` on it first).
pub struct ProcessService {
    shared: Arc<Shared>,
    slot: Reservation,
}

// === impl ProcessService ===

impl ProcessService {
    /// Starts building a service that runs `program`.
    ///
    /// A program without a `/` is looked up when the service is built, in the `PATH` of the
    /// parent process (or the list given to
    /// [`search_path`](ProcessBuilder::search_path)); the child runs that file, with its
    /// environment still cleared. A program not found there fails
    /// [`build`](ProcessBuilder::build) with a `ConfigError` for the field `program`.
    pub fn builder(program: impl AsRef<OsStr>) -> ProcessBuilder {
        ProcessBuilder::new(program)
    }

    pub(crate) fn from_shared(shared: Arc<Shared>) -> Self {
        Self { shared, slot: Reservation::default() }
    }

    /// The handle on this service's counters and events (shared by all clones).
    pub fn handle(&self) -> ProcessHandle {
        ProcessHandle { telemetry: self.shared.telemetry.clone() }
    }

    /// Child slots free now.
    pub fn available_slots(&self) -> usize {
        self.shared.semaphore.available_permits()
    }
}

impl Clone for ProcessService {
    fn clone(&self) -> Self {
        Self::from_shared(self.shared.clone())
    }
}

impl fmt::Debug for ProcessService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessService")
            .field("program", &self.shared.program.name)
            .field("name", &self.shared.telemetry.name)
            .field("ready", &self.slot.is_ready())
            .finish_non_exhaustive()
    }
}

impl Service<ProcessRequest> for ProcessService {
    type Response = ProcessOutput;
    type Error = ProcessError;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // The semaphore is never closed; report rather than panic.
        self.slot.poll_reserve(&self.shared.semaphore, cx).map_err(|_| {
            ProcessError::new(ProcessErrorKind::NotReady, &self.shared.program.name, "child slots closed")
        })
    }

    fn call(&mut self, req: ProcessRequest) -> Self::Future {
        match self.slot.take() {
            Some(permit) => ResponseFuture::new(Box::pin(run::run(self.shared.clone(), req, permit))),
            None => ResponseFuture::ready(Err(ProcessError::new(
                ProcessErrorKind::NotReady,
                &self.shared.program.name,
                "call `poll_ready` first",
            ))),
        }
    }
}
