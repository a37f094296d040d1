//! The machinery of one worker: the state its handles and tasks share ([`Core`]), the
//! stdin writer, the supervisor reading answers and watching the child, and the stderr
//! forwarder.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use palisade_core::time::deadline_from_now;
use tokio::io::AsyncReadExt;
use tokio::process::{ChildStderr, ChildStdin, ChildStdout};
use tokio::sync::{oneshot, watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::codec::{Codec, FrameBuffer};
use crate::error::{ProcessError, WorkerError, WorkerErrorKind};
use crate::event::Telemetry;
use crate::group::{kill_group, ChildGuard};
use crate::make_worker::Shared;
use crate::output::{KillReason, Termination};
use crate::stdin::{FrameWriter, WriterTask};
use crate::worker_process::{WorkerGuard, WorkerProcess};

/// Runs a freshly spawned worker: its shared state, the stdin writer, the supervisor and
/// (with `log_stderr`) the stderr forwarder, on `runtime`.
pub(crate) fn start<Framing: Codec>(
    runtime: &tokio::runtime::Handle,
    shared: &Shared<Framing>,
    guard: ChildGuard,
    stdin: ChildStdin,
    stdout: ChildStdout,
    stderr: Option<ChildStderr>,
) -> Result<WorkerProcess<Framing>, ProcessError> {
    let pid = guard.pid();
    let (writer, writer_task) = match FrameWriter::new(stdin) {
        Ok(w) => w,
        Err(err) => return Err(ProcessError::spawn(&shared.program.name, err)),
    };
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (exit_tx, exit_rx) = watch::channel(None);
    let config = &shared.config;
    let core = Arc::new(Core {
        codec: shared.codec.clone(),
        name: shared.telemetry.name.clone(),
        pid,
        max_frame_len: config.max_frame_len,
        next_id: AtomicU64::new(0),
        failed: AtomicBool::new(false),
        closing: AtomicBool::new(false),
        pending: Mutex::new(Pending { map: HashMap::new(), failure: None }),
        semaphore: Arc::new(Semaphore::new(config.max_in_flight)),
        shutdown: shutdown_tx,
        exit: exit_rx,
        writer,
        telemetry: shared.telemetry.clone(),
    });
    runtime.spawn(write_frames(core.clone(), writer_task, shutdown_rx.clone()));
    runtime.spawn(supervise(core.clone(), guard, stdout, shutdown_rx, exit_tx, config.shutdown_grace));
    if let Some(stderr) = stderr {
        runtime.spawn(forward_stderr(stderr, shared.telemetry.name.clone(), pid));
    }
    Ok(WorkerProcess::from_guard(Arc::new(WorkerGuard { core })))
}

pub(crate) struct Slot<R> {
    pub(crate) tx: oneshot::Sender<Result<R, WorkerError>>,
    pub(crate) _permit: OwnedSemaphorePermit,
}

pub(crate) struct Pending<R> {
    pub(crate) map: HashMap<u64, Slot<R>>,
    /// Set once the worker takes no more requests (crashed, broken, or shutting down).
    pub(crate) failure: Option<WorkerError>,
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
pub(crate) struct Core<Framing: Codec> {
    pub(crate) codec: Arc<Framing>,
    pub(crate) name: Arc<str>,
    pub(crate) pid: u32,
    pub(crate) max_frame_len: usize,
    pub(crate) next_id: AtomicU64,
    pub(crate) failed: AtomicBool,
    pub(crate) closing: AtomicBool,
    pub(crate) pending: Mutex<Pending<Framing::Response>>,
    pub(crate) semaphore: Arc<Semaphore>,
    pub(crate) shutdown: watch::Sender<bool>,
    pub(crate) exit: watch::Receiver<Option<Termination>>,
    pub(crate) writer: Arc<FrameWriter>,
    pub(crate) telemetry: Arc<Telemetry>,
}

impl<Framing: Codec> Core<Framing> {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Pending<Framing::Response>> {
        palisade_core::sync::lock(&self.pending)
    }

    /// Takes no more requests: later `poll_ready`s and calls get `error`.
    pub(crate) fn refuse(&self, error: &WorkerError) {
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
    fn take_all(&self, error: &WorkerError) -> Failed<Framing::Response> {
        let slots: Vec<Slot<Framing::Response>> = {
            let mut pending = self.lock();
            pending.failure = Some(error.clone());
            pending.map.drain().map(|(_, slot)| slot).collect()
        };
        self.failed.store(true, Ordering::Release);
        self.semaphore.close();
        Failed { slots, error: error.clone() }
    }

    pub(crate) fn failure(&self) -> WorkerError {
        self.lock().failure.clone().unwrap_or_else(|| WorkerError::closed(&self.name))
    }

    /// Delivers an answer; `false` when no request `id` is in flight.
    fn complete(&self, id: u64, result: Result<Framing::Response, String>) -> bool {
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

    pub(crate) fn begin_shutdown(&self) {
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
async fn write_frames<Framing: Codec>(
    core: Arc<Core<Framing>>,
    task: WriterTask,
    shutdown: watch::Receiver<bool>,
) {
    if task.run(shutdown).await.is_err() {
        // Take no more requests, and let the supervisor fail the ones in flight with how
        // the worker ended (killing it after the grace period if it lingers).
        core.refuse(&WorkerError::new(WorkerErrorKind::Io, "writing to the worker's stdin failed"));
        core.shutdown.send_replace(true);
    }
}

/// Reads answers, watches the child, enforces the grace period, fails what is left.
async fn supervise<Framing: Codec>(
    core: Arc<Core<Framing>>,
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
fn dispatch<Framing: Codec>(core: &Core<Framing>, buffer: &mut FrameBuffer) -> Result<(), String> {
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
