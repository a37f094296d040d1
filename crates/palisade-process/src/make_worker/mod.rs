//! [`MakeWorker`]: the `MakeService` that spawns [`WorkerProcess`]es, its
//! [builder](MakeWorkerBuilder) and its [config](MakeWorkerConfig).
//!
//! Naming: the builder builds what `build()` returns, a `MakeWorker` (as tower's
//! `MakeService`); a `MakeWorker` spawns `WorkerProcess`es, by [`spawn`](MakeWorker::spawn)
//! or as a service, so a pool can make and replace them.

mod builder;
mod config;

use std::ffi::OsStr;
use std::fmt;
use std::process::Stdio;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::time::Instant;
use tower_service::Service;

use crate::codec::{Codec, LengthPrefixed};
use crate::command::Program;
use crate::error::{ProcessError, ProcessErrorKind};
use crate::event::Telemetry;
use crate::group::ChildGuard;
use crate::handle::ProcessHandle;
use crate::request::ProcessRequest;
use crate::worker_process::WorkerProcess;

pub use self::builder::MakeWorkerBuilder;
pub use self::config::{
    MakeWorkerConfig, DEFAULT_MAX_FRAME_LEN, DEFAULT_MAX_IN_FLIGHT, DEFAULT_SHUTDOWN_GRACE,
};

/// What every clone of a [`MakeWorker`] shares.
#[derive(Debug)]
pub(crate) struct Shared<Framing> {
    pub(crate) config: MakeWorkerConfig,
    pub(crate) program: Program,
    pub(crate) codec: Arc<Framing>,
    pub(crate) telemetry: Arc<Telemetry>,
}

/// Spawns a fresh [`WorkerProcess`] per call: a `MakeService` (`Service<T>` for any target
/// `T`, which it ignores), so a pool can make and replace workers. Built with
/// [`MakeWorker::builder`].
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// use palisade_process::MakeWorker;
/// use tower::{Service, ServiceExt};
///
/// let mut make = MakeWorker::builder("./my-worker").max_in_flight(16).build()?;
/// // Any target type works; `()` here.
/// let mut worker = ServiceExt::<()>::ready(&mut make).await?.call(()).await?;
/// let answer = worker.ready().await?.call(b"ping".to_vec()).await?;
/// # Ok(()) }
/// ```
///
/// # Clone
///
/// Clones share the configuration, the counters and the event listeners (one
/// [`ProcessHandle`] sees every worker).
pub struct MakeWorker<Framing = LengthPrefixed> {
    shared: Arc<Shared<Framing>>,
}

impl<Framing> Clone for MakeWorker<Framing> {
    fn clone(&self) -> Self {
        Self { shared: self.shared.clone() }
    }
}

impl<Framing> fmt::Debug for MakeWorker<Framing> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MakeWorker")
            .field("program", &self.shared.program.name)
            .field("name", &self.shared.telemetry.name)
            .finish_non_exhaustive()
    }
}

impl MakeWorker<LengthPrefixed> {
    /// Starts building a factory of workers that run `program` (length-prefixed binary
    /// frames unless [`json`](MakeWorkerBuilder::json) or
    /// [`codec`](MakeWorkerBuilder::codec) says otherwise).
    pub fn builder(program: impl AsRef<OsStr>) -> MakeWorkerBuilder<LengthPrefixed> {
        MakeWorkerBuilder::new(program)
    }
}

impl<Framing> MakeWorker<Framing> {
    pub(crate) fn from_shared(shared: Arc<Shared<Framing>>) -> Self {
        Self { shared }
    }
}

impl<Framing: Codec> MakeWorker<Framing> {
    /// The handle on the counters and events of every worker this factory spawns.
    pub fn handle(&self) -> ProcessHandle {
        ProcessHandle { telemetry: self.shared.telemetry.clone() }
    }

    /// Spawns one worker now.
    ///
    /// # Errors
    ///
    /// A [`ProcessError`] when no Tokio runtime is running or the program cannot be started.
    pub fn spawn(&self) -> Result<WorkerProcess<Framing>, ProcessError> {
        let shared = &self.shared;
        let program = &shared.program.name;
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return Err(ProcessError::new(
                ProcessErrorKind::NoRuntime,
                program,
                "spawn inside a Tokio runtime",
            ));
        };
        let mut cmd = crate::run::command(&shared.config.command, &shared.program, &ProcessRequest::new())?;
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped());
        cmd.stderr(if shared.config.log_stderr { Stdio::piped() } else { Stdio::null() });
        let started = Instant::now();
        let mut child = match cmd.spawn() {
            Ok(child) => child,
            Err(err) => {
                shared.telemetry.spawn_failed(&err);
                return Err(ProcessError::spawn(program, err));
            }
        };
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(ProcessError::new(
                ProcessErrorKind::Spawn,
                program,
                "child has no stdin/stdout pipe",
            ));
        };
        let stderr = child.stderr.take();
        let guard = ChildGuard::new(child, started, shared.telemetry.clone());
        crate::worker_process::start(&runtime, shared, guard, stdin, stdout, stderr)
    }
}

impl<Framing: Codec, T> Service<T> for MakeWorker<Framing> {
    type Response = WorkerProcess<Framing>;
    type Error = ProcessError;
    type Future = std::future::Ready<Result<WorkerProcess<Framing>, ProcessError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _target: T) -> Self::Future {
        std::future::ready(self.spawn())
    }
}
