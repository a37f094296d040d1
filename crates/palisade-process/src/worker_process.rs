//! [`WorkerProcess`]: a persistent child serving many requests over framed stdin/stdout,
//! and [`MakeWorker`], the `MakeService` that spawns them.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use palisade_core::config::{ensure, ensure_nonzero_duration, ConfigError};
use palisade_core::event::Listener;
use palisade_core::time::deadline_from_now;
use tokio::io::AsyncReadExt;
use tokio::process::{ChildStderr, ChildStdout};
use tokio::sync::{oneshot, watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tower_service::Service;

use crate::codec::{Codec, FrameBuffer, LengthPrefixed};
use crate::config::Settings;
use crate::error::{ProcessError, ProcessErrorKind, WorkerError, WorkerErrorKind};
use crate::event::{ProcessEvent, ProcessHandle, Telemetry};
use crate::future::WorkerFuture;
use crate::group::{kill_group, ChildGuard};
use crate::output::{KillReason, Termination};
use crate::request::ProcessRequest;
use crate::stdin::{FrameWriter, SendError, WriterTask};

/// Default limit of requests in flight on one worker: 64.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 64;
/// Default largest frame, either way: 16 MiB.
pub const DEFAULT_MAX_FRAME_LEN: usize = 16 * 1024 * 1024;
/// Default time a worker gets to exit after its stdin is closed: 5 seconds.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

// === impl WorkerBuilder ===

/// Builds a [`MakeWorker`] (and so [`WorkerProcess`]es); from [`WorkerProcess::builder`].
pub struct WorkerBuilder<C> {
    settings: Settings,
    codec: C,
    name: Option<Arc<str>>,
    listeners: Vec<Listener<ProcessEvent>>,
    max_in_flight: usize,
    max_frame_len: usize,
    shutdown_grace: Duration,
    log_stderr: bool,
}

impl<C: fmt::Debug> fmt::Debug for WorkerBuilder<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerBuilder")
            .field("program", &self.settings.program)
            .field("codec", &self.codec)
            .field("max_in_flight", &self.max_in_flight)
            .field("max_frame_len", &self.max_frame_len)
            .field("shutdown_grace", &self.shutdown_grace)
            .finish_non_exhaustive()
    }
}

impl<C> WorkerBuilder<C> {
    crate::config::command_options!();

    /// At most `n` requests in flight on one worker (default 64): `poll_ready` waits.
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = n;
        self
    }

    /// Largest frame accepted or sent, in bytes (default 16 MiB). A worker sending a bigger
    /// one is killed as broken.
    pub fn max_frame_len(mut self, bytes: usize) -> Self {
        self.max_frame_len = bytes;
        self
    }

    /// How long a worker may take to exit after its stdin is closed before it is killed
    /// (default 5 s).
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }

    /// Forwards the worker's stderr to `tracing` (target `palisade`, level INFO) when `true`
    /// (the default); discards it when `false`.
    pub fn log_stderr(mut self, log: bool) -> Self {
        self.log_stderr = log;
        self
    }

    /// Registers a listener for events of every worker built from this builder.
    pub fn on_event<F>(mut self, listener: F) -> Self
    where
        F: Fn(&ProcessEvent) + Send + Sync + 'static,
    {
        self.listeners.push(Arc::new(crate::panic::guard_listener(listener)));
        self
    }

    /// Uses another framing (anything implementing [`Codec`]).
    pub fn codec<C2: Codec>(self, codec: C2) -> WorkerBuilder<C2> {
        WorkerBuilder {
            settings: self.settings,
            codec,
            name: self.name,
            listeners: self.listeners,
            max_in_flight: self.max_in_flight,
            max_frame_len: self.max_frame_len,
            shutdown_grace: self.shutdown_grace,
            log_stderr: self.log_stderr,
        }
    }

    /// Length-prefixed binary frames of bytes (the default).
    pub fn length_prefixed(self) -> WorkerBuilder<LengthPrefixed> {
        self.codec(LengthPrefixed)
    }

    /// Newline-delimited JSON frames of `Req` requests and `Res` responses.
    #[cfg(feature = "json")]
    #[cfg_attr(docsrs, doc(cfg(feature = "json")))]
    pub fn json<Req, Res>(self) -> WorkerBuilder<crate::codec::Json<Req, Res>>
    where
        crate::codec::Json<Req, Res>: Codec,
    {
        self.codec(crate::codec::Json::new())
    }
}

impl<C: Codec> WorkerBuilder<C> {
    /// Validates the settings and builds the worker factory.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when the program or environment is invalid, `max_in_flight` or
    /// `max_frame_len` is zero (or `max_in_flight` over tokio's limit), the grace period
    /// is zero, or the program, named without a `/`, is not in the search path (field
    /// `program`; see [`search_path`](Self::search_path)).
    pub fn build(mut self) -> Result<MakeWorker<C>, ConfigError> {
        self.settings.validate_command()?;
        ensure(self.max_in_flight >= 1, "max_in_flight", "must be at least 1")?;
        ensure(
            self.max_in_flight <= Semaphore::MAX_PERMITS,
            "max_in_flight",
            "must not exceed tokio's Semaphore::MAX_PERMITS",
        )?;
        ensure(self.max_frame_len >= 16, "max_frame_len", "must be at least 16 bytes")?;
        ensure(u32::try_from(self.max_frame_len).is_ok(), "max_frame_len", "must fit in 32 bits")?;
        ensure_nonzero_duration("shutdown_grace", self.shutdown_grace)?;
        self.settings.resolve()?;
        let name = self.name.unwrap_or_else(|| Arc::from("worker"));
        Ok(MakeWorker {
            config: Arc::new(WorkerSettings {
                telemetry: Arc::new(Telemetry::new(name, self.listeners)),
                settings: self.settings,
                codec: Arc::new(self.codec),
                max_in_flight: self.max_in_flight,
                max_frame_len: self.max_frame_len,
                shutdown_grace: self.shutdown_grace,
                log_stderr: self.log_stderr,
            }),
        })
    }
}

/// A worker configuration read with `serde` (feature `serde`); framing is chosen in code
/// ([`WorkerBuilder::json`] or [`WorkerBuilder::codec`]) because it carries types.
///
/// ```
/// # #[cfg(feature = "serde")] {
/// use palisade_process::WorkerProcessConfig;
///
/// let config: WorkerProcessConfig = serde_json::from_str(r#"{
///     "program": "./my-worker",
///     "args": ["--binary"],
///     "max_in_flight": 32,
///     "shutdown_grace": "2s"
/// }"#).unwrap();
/// let make = config.build().unwrap();
/// # }
/// ```
#[cfg(feature = "serde")]
#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerProcessConfig {
    /// The worker program.
    pub program: String,
    /// Name in events and metrics.
    #[serde(default)]
    pub name: Option<String>,
    /// Arguments.
    #[serde(default)]
    pub args: Vec<String>,
    /// Environment variables.
    #[serde(default)]
    pub env: std::collections::BTreeMap<String, String>,
    /// Parent variables passed through.
    #[serde(default)]
    pub env_allow: Vec<String>,
    /// Pass the whole parent environment through.
    #[serde(default)]
    pub inherit_env: bool,
    /// Working directory.
    #[serde(default)]
    pub current_dir: Option<PathBuf>,
    /// Requests in flight on one worker.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// Largest frame in bytes.
    #[serde(default = "default_max_frame_len")]
    pub max_frame_len: usize,
    /// Time to exit after stdin is closed (`"5s"`).
    #[serde(default = "default_grace", with = "palisade_core::duration::serde")]
    pub shutdown_grace: Duration,
    /// Forward the worker's stderr to `tracing`.
    #[serde(default = "default_true")]
    pub log_stderr: bool,
    /// Where a program named without a `/` is looked up (a `PATH`-style list); default:
    /// the parent's `PATH`.
    #[serde(default)]
    pub search_path: Option<String>,
}

#[cfg(feature = "serde")]
fn default_max_in_flight() -> usize {
    DEFAULT_MAX_IN_FLIGHT
}

#[cfg(feature = "serde")]
fn default_max_frame_len() -> usize {
    DEFAULT_MAX_FRAME_LEN
}

#[cfg(feature = "serde")]
fn default_grace() -> Duration {
    DEFAULT_SHUTDOWN_GRACE
}

#[cfg(feature = "serde")]
fn default_true() -> bool {
    true
}

#[cfg(feature = "serde")]
impl WorkerProcessConfig {
    /// The equivalent builder (length-prefixed frames until `.json()` or `.codec()`).
    pub fn into_builder(self) -> WorkerBuilder<LengthPrefixed> {
        let mut b = WorkerProcess::builder(&self.program)
            .args(&self.args)
            .inherit_env(self.inherit_env)
            .max_in_flight(self.max_in_flight)
            .max_frame_len(self.max_frame_len)
            .shutdown_grace(self.shutdown_grace)
            .log_stderr(self.log_stderr);
        if let Some(name) = self.name {
            b = b.name(name);
        }
        for (k, v) in &self.env {
            b = b.env(k, v);
        }
        for k in &self.env_allow {
            b = b.env_allow(k);
        }
        if let Some(dir) = self.current_dir {
            b = b.current_dir(dir);
        }
        if let Some(path) = self.search_path {
            b = b.search_path(path);
        }
        b
    }

    /// Validates and builds a length-prefixed worker factory.
    pub fn build(self) -> Result<MakeWorker<LengthPrefixed>, ConfigError> {
        self.into_builder().build()
    }
}

#[derive(Debug)]
struct WorkerSettings<C> {
    settings: Settings,
    codec: Arc<C>,
    telemetry: Arc<Telemetry>,
    max_in_flight: usize,
    max_frame_len: usize,
    shutdown_grace: Duration,
    log_stderr: bool,
}

// === impl MakeWorker ===

/// Spawns a fresh [`WorkerProcess`] per call: a `MakeService` (`Service<T>` for any target
/// `T`, which it ignores), so a pool can make and replace workers.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// use palisade_process::WorkerProcess;
/// use tower::{Service, ServiceExt};
///
/// let mut make = WorkerProcess::builder("./my-worker").max_in_flight(16).build()?;
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
pub struct MakeWorker<C = LengthPrefixed> {
    config: Arc<WorkerSettings<C>>,
}

impl<C> Clone for MakeWorker<C> {
    fn clone(&self) -> Self {
        Self { config: self.config.clone() }
    }
}

impl<C> fmt::Debug for MakeWorker<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MakeWorker")
            .field("program", &self.config.settings.program)
            .field("name", &self.config.telemetry.name)
            .finish_non_exhaustive()
    }
}

impl<C: Codec> MakeWorker<C> {
    /// The handle on the counters and events of every worker this factory spawns.
    pub fn handle(&self) -> ProcessHandle {
        ProcessHandle { telemetry: self.config.telemetry.clone() }
    }

    /// Spawns one worker now.
    ///
    /// # Errors
    ///
    /// A [`ProcessError`] when no Tokio runtime is running or the program cannot be started.
    pub fn spawn(&self) -> Result<WorkerProcess<C>, ProcessError> {
        let cfg = &self.config;
        let program = &cfg.settings.program;
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return Err(ProcessError::new(
                ProcessErrorKind::NoRuntime,
                program,
                "spawn inside a Tokio runtime",
            ));
        };
        let mut cmd = crate::run::command(&cfg.settings, &ProcessRequest::new())?;
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped());
        cmd.stderr(if cfg.log_stderr { Stdio::piped() } else { Stdio::null() });
        let started = Instant::now();
        let mut child = match cmd.spawn() {
            Ok(child) => child,
            Err(err) => {
                cfg.telemetry.spawn_failed(&err);
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
        let guard = ChildGuard::new(child, started, cfg.telemetry.clone());
        let pid = guard.pid();

        let (writer, writer_task) = match FrameWriter::new(stdin) {
            Ok(w) => w,
            Err(err) => return Err(ProcessError::spawn(program, err)),
        };
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let (exit_tx, exit_rx) = watch::channel(None);
        let core = Arc::new(Core {
            codec: cfg.codec.clone(),
            name: cfg.telemetry.name.clone(),
            pid,
            max_frame_len: cfg.max_frame_len,
            next_id: AtomicU64::new(0),
            failed: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            pending: Mutex::new(Pending { map: HashMap::new(), failure: None }),
            semaphore: Arc::new(Semaphore::new(cfg.max_in_flight)),
            shutdown: shutdown_tx,
            exit: exit_rx,
            writer,
            telemetry: cfg.telemetry.clone(),
        });
        runtime.spawn(write_frames(core.clone(), writer_task, shutdown_rx.clone()));
        runtime.spawn(supervise(core.clone(), guard, stdout, shutdown_rx, exit_tx, cfg.shutdown_grace));
        if let Some(stderr) = stderr {
            runtime.spawn(forward_stderr(stderr, cfg.telemetry.name.clone(), pid));
        }
        Ok(WorkerProcess::from_handle(Arc::new(WorkerHandle { core })))
    }
}

impl<C: Codec, T> Service<T> for MakeWorker<C> {
    type Response = WorkerProcess<C>;
    type Error = ProcessError;
    type Future = std::future::Ready<Result<WorkerProcess<C>, ProcessError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _target: T) -> Self::Future {
        std::future::ready(self.spawn())
    }
}

// === impl Core ===

struct Slot<R> {
    tx: oneshot::Sender<Result<R, WorkerError>>,
    _permit: OwnedSemaphorePermit,
}

struct Pending<R> {
    map: HashMap<u64, Slot<R>>,
    /// Set once the worker takes no more requests (crashed, broken, or shutting down).
    failure: Option<WorkerError>,
}

/// Requests taken out of a dead worker, failed once its end is recorded (so a caller that
/// sees the error also sees the termination and the counters).
struct Failed<R> {
    slots: Vec<Slot<R>>,
    error: WorkerError,
}

impl<R> Failed<R> {
    fn len(&self) -> usize {
        self.slots.len()
    }

    fn fail(self) {
        for slot in self.slots {
            let _ = slot.tx.send(Err(self.error.clone()));
        }
    }
}

/// State shared by a worker's handles and its tasks.
struct Core<C: Codec> {
    codec: Arc<C>,
    name: Arc<str>,
    pid: u32,
    max_frame_len: usize,
    next_id: AtomicU64,
    failed: AtomicBool,
    closing: AtomicBool,
    pending: Mutex<Pending<C::Response>>,
    semaphore: Arc<Semaphore>,
    shutdown: watch::Sender<bool>,
    exit: watch::Receiver<Option<Termination>>,
    writer: Arc<FrameWriter>,
    telemetry: Arc<Telemetry>,
}

impl<C: Codec> Core<C> {
    fn lock(&self) -> MutexGuard<'_, Pending<C::Response>> {
        match self.pending.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Takes no more requests: later `poll_ready`s and calls get `error`.
    fn refuse(&self, error: &WorkerError) {
        let mut pending = self.lock();
        if pending.failure.is_none() {
            pending.failure = Some(error.clone());
        }
        drop(pending);
        self.failed.store(true, Ordering::Release);
        self.semaphore.close();
    }

    /// Takes no more requests and fails every request in flight with `error`; returns how
    /// many there were.
    /// Takes no more requests and takes every request in flight out, to be failed with
    /// `error` by [`fail`]. The final verdict replaces a provisional one ("stdout closed"
    /// before the exit status was known).
    fn take_all(&self, error: &WorkerError) -> Failed<C::Response> {
        let slots: Vec<Slot<C::Response>> = {
            let mut pending = self.lock();
            pending.failure = Some(error.clone());
            pending.map.drain().map(|(_, slot)| slot).collect()
        };
        self.failed.store(true, Ordering::Release);
        self.semaphore.close();
        Failed { slots, error: error.clone() }
    }

    fn failure(&self) -> WorkerError {
        self.lock().failure.clone().unwrap_or_else(|| WorkerError::closed(&self.name))
    }

    /// Delivers an answer; `false` when no request `id` is in flight.
    fn complete(&self, id: u64, result: Result<C::Response, String>) -> bool {
        let slot = self.lock().map.remove(&id);
        // An answer nobody waits for is dropped here, on the supervisor's task: its `Drop`
        // is user code, and a panic in it must not end the supervisor (every later request
        // of this worker would hang).
        let unsent = match slot {
            Some(slot) => {
                let result = result.map_err(|msg| WorkerError::new(WorkerErrorKind::Remote, msg));
                slot.tx.send(result).err().map(Ok)
            }
            None => Some(Err(result)),
        };
        let delivered = !matches!(unsent, Some(Err(_)));
        if let Err(message) = crate::panic::catch(move || drop(unsent)) {
            tracing::warn!(target: "palisade", %message, "dropping an unclaimed worker answer panicked");
        }
        delivered
    }

    fn begin_shutdown(&self) {
        // A shutdown asked for after the worker already failed (its last handle dropped by a
        // pool evicting it) must not turn the crash into a clean close: the supervisor still
        // reports how the worker ended, and its requests fail as crashed.
        if !self.failed.load(Ordering::Acquire) {
            self.closing.store(true, Ordering::Release);
        }
        self.refuse(&WorkerError::closed(&self.name));
        self.shutdown.send_replace(true);
    }
}

/// Runs the stdin writer; a write error means the worker closed its stdin or died.
async fn write_frames<C: Codec>(core: Arc<Core<C>>, task: WriterTask, shutdown: watch::Receiver<bool>) {
    if task.run(shutdown).await.is_err() {
        // Take no more requests, and let the supervisor fail the ones in flight with how
        // the worker ended (killing it after the grace period if it lingers).
        core.refuse(&WorkerError::new(WorkerErrorKind::Io, "writing to the worker's stdin failed"));
        core.shutdown.send_replace(true);
    }
}

/// Reads answers, watches the child, enforces the grace period, fails what is left.
async fn supervise<C: Codec>(
    core: Arc<Core<C>>,
    mut guard: ChildGuard,
    mut stdout: ChildStdout,
    mut shutdown: watch::Receiver<bool>,
    exit: watch::Sender<Option<Termination>>,
    grace: Duration,
) {
    let mut buffer = FrameBuffer::default();
    let mut grace_deadline: Option<Instant> = None;
    let mut stdout_open = true;
    let mut broken: Option<String> = None;

    let exited: Option<Termination> = loop {
        let Some(child) = guard.child_mut() else { break None };
        let grace_timer = async {
            match grace_deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            read = buffer.fill(&mut stdout), if stdout_open => match read {
                Ok(0) | Err(_) => {
                    // A worker without stdout can answer nothing: take no more requests
                    // and give it the grace period to exit.
                    stdout_open = false;
                    core.refuse(&WorkerError::new(WorkerErrorKind::Crashed, "the worker closed its stdout"));
                    grace_deadline.get_or_insert_with(|| deadline_from_now(grace));
                }
                Ok(_) => {
                    if let Err(msg) = dispatch(&core, &mut buffer) {
                        broken = Some(msg);
                        break None;
                    }
                }
            },
            status = child.wait() => {
                break Some(status.map_or(Termination::Exited(-1), Termination::from_status));
            },
            _ = shutdown.wait_for(|s| *s), if grace_deadline.is_none() => {
                grace_deadline = Some(deadline_from_now(grace));
            },
            () = grace_timer => break None,
        }
    };

    let (termination, failed) = if let Some(message) = broken {
        let error =
            WorkerError::new(WorkerErrorKind::Malformed, format!("worker broke the protocol: {message}"));
        let failed = core.take_all(&error);
        (guard.kill(KillReason::ProtocolError, Some(failed.len())).await, failed)
    } else if let Some(termination) = exited {
        // Answers written just before the exit are still in the pipe: read them first
        // (bounded by the grace period; stragglers holding the pipe are killed).
        kill_group(core.pid);
        if stdout_open {
            let drained = tokio::time::timeout_at(deadline_from_now(grace), async {
                loop {
                    match buffer.fill(&mut stdout).await {
                        Ok(0) | Err(_) => return Ok::<(), String>(()),
                        Ok(_) => dispatch(&core, &mut buffer)?,
                    }
                }
            })
            .await;
            if let Ok(Err(message)) = drained {
                tracing::debug!(target: "palisade", pid = core.pid, %message, "bad frame after exit");
            }
        }
        let shutting_down = core.closing.load(Ordering::Acquire);
        let error =
            if shutting_down { WorkerError::closed(&core.name) } else { WorkerError::crashed(termination) };
        let failed = core.take_all(&error);
        guard.finish(termination, (!shutting_down).then_some(failed.len()));
        (termination, failed)
    } else if core.closing.load(Ordering::Acquire) {
        // The grace period after a shutdown ran out.
        let failed = core.take_all(&WorkerError::closed(&core.name));
        (guard.kill(KillReason::ShutdownGrace, None).await, failed)
    } else {
        // The grace period after the worker closed its stdout ran out.
        let error = WorkerError::new(WorkerErrorKind::Crashed, "the worker stopped answering and was killed");
        let failed = core.take_all(&error);
        (guard.kill(KillReason::ShutdownGrace, Some(failed.len())).await, failed)
    };
    // The child is gone: let the writer close stdin and end, even while handles remain.
    core.shutdown.send_replace(true);
    exit.send_replace(Some(termination));
    failed.fail();
}

/// Delivers every complete frame in `buffer`; `Err` on a protocol error.
fn dispatch<C: Codec>(core: &Core<C>, buffer: &mut FrameBuffer) -> Result<(), String> {
    loop {
        let max = core.max_frame_len;
        // The codec is user code: a panic in it is a protocol error of this worker (the
        // frame boundaries are lost), never the end of the supervisor.
        let decode = |src: &[u8]| match crate::panic::catch(|| core.codec.decode_response(src, max)) {
            Ok(decoded) => decoded,
            Err(message) => Err(crate::error::FrameError::new(format!("the codec panicked: {message}"))),
        };
        // Dropping a decoded answer the buffer refuses is user code too (its `Drop`).
        let next = crate::panic::catch(|| buffer.next(core.codec.delimiter(), max, decode)).unwrap_or_else(
            |message| Err(crate::error::FrameError::new(format!("the codec panicked: {message}"))),
        );
        match next {
            Ok(Some(frame)) => {
                if !core.complete(frame.id, frame.value) {
                    return Err(format!("answer to request id {} that is not in flight", frame.id));
                }
            }
            Ok(None) => return Ok(()),
            Err(e) => return Err(e.message().to_owned()),
        }
    }
}

/// Forwards the worker's stderr to `tracing`, one event per chunk read.
async fn forward_stderr(mut stderr: ChildStderr, name: Arc<str>, pid: u32) {
    let mut chunk = vec![0u8; 4096];
    loop {
        match stderr.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let text = String::from_utf8_lossy(&chunk[..n]);
                tracing::info!(target: "palisade", name = %name, pid, stderr = %text.trim_end(), "worker stderr");
            }
        }
    }
}

// === impl WorkerProcess ===

/// Held by every clone of a [`WorkerProcess`]; when the last one goes, the worker shuts down.
struct WorkerHandle<C: Codec> {
    core: Arc<Core<C>>,
}

impl<C: Codec> Drop for WorkerHandle<C> {
    fn drop(&mut self) {
        self.core.begin_shutdown();
    }
}

type AcquireFuture =
    Pin<Box<dyn Future<Output = Result<OwnedSemaphorePermit, tokio::sync::AcquireError>> + Send + Sync>>;

/// A persistent child process serving many requests at once over framed stdin/stdout.
///
/// Each call encodes the request as a frame with a fresh id, writes it to the worker's
/// stdin and resolves when the frame with that id comes back on stdout; answers may arrive
/// in any order. Build one with [`WorkerProcess::builder`] then
/// [`MakeWorker::spawn`] (or call the [`MakeWorker`]); write the worker with
/// [`worker::serve_stdio`](crate::worker::serve_stdio).
///
/// # Backpressure
///
/// `poll_ready` reserves one of `max_in_flight` slots. The slot is held until the worker
/// answers (or dies), even if the response future is dropped first: it counts requests the
/// worker is really handling.
///
/// # Failure
///
/// If the worker exits, is killed, or writes a frame that breaks the protocol, every
/// request in flight fails with a [`WorkerError`] (none hangs) and `poll_ready` returns
/// that error from then on, so a pool or balancer drops the worker and makes a new one.
/// An error the worker *answers* with ([`WorkerErrorKind::Remote`]) fails that request
/// only.
///
/// # Shutdown
///
/// [`shutdown`](Self::shutdown) (or dropping every clone) closes the worker's stdin, lets
/// requests in flight finish, waits up to the grace period for the worker to exit, then
/// kills its process group.
///
/// # Clone
///
/// Clones talk to the same child and share its in-flight slots; a clone starts without a
/// reserved slot.
pub struct WorkerProcess<C: Codec = LengthPrefixed> {
    handle: Arc<WorkerHandle<C>>,
    permit: Option<OwnedSemaphorePermit>,
    acquire: Option<AcquireFuture>,
}

impl WorkerProcess<LengthPrefixed> {
    /// Starts building workers that run `program` (length-prefixed binary frames unless
    /// [`json`](WorkerBuilder::json) or [`codec`](WorkerBuilder::codec) says otherwise).
    pub fn builder(program: impl AsRef<OsStr>) -> WorkerBuilder<LengthPrefixed> {
        WorkerBuilder {
            settings: Settings::new(program.as_ref()),
            codec: LengthPrefixed,
            name: None,
            listeners: Vec::new(),
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            max_frame_len: DEFAULT_MAX_FRAME_LEN,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            log_stderr: true,
        }
    }
}

impl<C: Codec> WorkerProcess<C> {
    fn from_handle(handle: Arc<WorkerHandle<C>>) -> Self {
        Self { handle, permit: None, acquire: None }
    }

    fn core(&self) -> &Core<C> {
        &self.handle.core
    }

    /// The handle on the counters and events shared by every worker of the same
    /// [`MakeWorker`].
    pub fn handle(&self) -> ProcessHandle {
        ProcessHandle { telemetry: self.core().telemetry.clone() }
    }

    /// The worker's process id.
    pub fn pid(&self) -> u32 {
        self.core().pid
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> usize {
        self.core().lock().map.len()
    }

    /// Whether the worker still takes requests.
    pub fn is_alive(&self) -> bool {
        !self.core().failed.load(Ordering::Acquire)
    }

    /// How the worker ended, once it has.
    pub fn termination(&self) -> Option<Termination> {
        *self.core().exit.borrow()
    }

    /// Shuts the worker down gracefully and waits until it is gone: no new requests, stdin
    /// closed, requests in flight answered if the worker does so before exiting, then a
    /// kill after the grace period. Returns how it ended.
    pub async fn shutdown(&self) -> Termination {
        self.core().begin_shutdown();
        let mut exit = self.core().exit.clone();
        let ended = exit.wait_for(Option::is_some).await.map(|t| *t);
        match ended {
            Ok(t) => t.unwrap_or(Termination::Killed(KillReason::ShutdownGrace)),
            // The supervisor is gone (runtime shutting down): the child was killed on drop.
            Err(_) => Termination::Killed(KillReason::Cancelled),
        }
    }
}

impl<C: Codec> Clone for WorkerProcess<C> {
    fn clone(&self) -> Self {
        Self::from_handle(self.handle.clone())
    }
}

impl<C: Codec> fmt::Debug for WorkerProcess<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerProcess")
            .field("name", &self.core().name)
            .field("pid", &self.core().pid)
            .field("alive", &self.is_alive())
            .field("ready", &self.permit.is_some())
            .finish_non_exhaustive()
    }
}

impl<C: Codec> Service<C::Request> for WorkerProcess<C> {
    type Response = C::Response;
    type Error = WorkerError;
    type Future = WorkerFuture<C::Response>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.core().failed.load(Ordering::Acquire) {
            self.permit = None;
            self.acquire = None;
            return Poll::Ready(Err(self.core().failure()));
        }
        if self.permit.is_some() {
            return Poll::Ready(Ok(()));
        }
        if self.acquire.is_none() {
            if let Ok(permit) = self.core().semaphore.clone().try_acquire_owned() {
                self.permit = Some(permit);
                return Poll::Ready(Ok(()));
            }
        }
        let semaphore = &self.handle.core.semaphore;
        let acquire = self.acquire.get_or_insert_with(|| Box::pin(semaphore.clone().acquire_owned()));
        match acquire.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(result) => {
                self.acquire = None;
                match result {
                    Ok(permit) => {
                        self.permit = Some(permit);
                        Poll::Ready(Ok(()))
                    }
                    Err(_) => Poll::Ready(Err(self.core().failure())),
                }
            }
        }
    }

    fn call(&mut self, request: C::Request) -> Self::Future {
        let Some(permit) = self.permit.take() else {
            return WorkerFuture::failed(WorkerError::new(
                WorkerErrorKind::NotReady,
                "call `poll_ready` first",
            ));
        };
        let core = &self.handle.core;
        let id = core.next_id.fetch_add(1, Ordering::Relaxed);
        let mut frame = Vec::new();
        match crate::panic::catch(|| core.codec.encode_request(id, &request, &mut frame)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                return WorkerFuture::failed(WorkerError::new(WorkerErrorKind::Encode, e.message()))
            }
            Err(message) => {
                let message = format!("the codec panicked: {message}");
                return WorkerFuture::failed(WorkerError::new(WorkerErrorKind::Encode, message));
            }
        }
        if frame.len() > core.max_frame_len.saturating_add(4) {
            return WorkerFuture::failed(WorkerError::new(
                WorkerErrorKind::Encode,
                format!("request frame of {} bytes is over `max_frame_len`", frame.len()),
            ));
        }
        let (tx, rx) = oneshot::channel();
        {
            let mut pending = core.lock();
            if let Some(failure) = &pending.failure {
                return WorkerFuture::failed(failure.clone());
            }
            pending.map.insert(id, Slot { tx, _permit: permit });
        }
        if let Err(e) = core.writer.send(frame) {
            core.lock().map.remove(&id);
            if let SendError::Io(e) = e {
                let message = format!("writing to the worker's stdin failed: {e}");
                core.refuse(&WorkerError::new(WorkerErrorKind::Io, message));
                core.shutdown.send_replace(true);
            }
            return WorkerFuture::failed(core.failure());
        }
        WorkerFuture::pending(rx)
    }
}
