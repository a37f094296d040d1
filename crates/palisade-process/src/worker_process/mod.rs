//! [`WorkerProcess`]: a persistent child serving many requests over framed stdin/stdout.

mod core;

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

use palisade_core::panic::Panicked;
use tokio::sync::oneshot;
use tower_service::Service;

use crate::codec::{Codec, LengthPrefixed};
use crate::error::{WorkerError, WorkerErrorKind};
use crate::future::WorkerFuture;
use crate::handle::ProcessHandle;
use crate::output::{KillReason, Termination};
use crate::reserve::Reservation;
use crate::stdin::SendError;

pub(crate) use self::core::start;
use self::core::{Core, Slot};

/// Held by every clone of a [`WorkerProcess`]; when the last one goes, the worker shuts down.
pub(crate) struct WorkerGuard<Framing: Codec> {
    pub(crate) core: Arc<Core<Framing>>,
}

impl<Framing: Codec> Drop for WorkerGuard<Framing> {
    fn drop(&mut self) {
        self.core.begin_shutdown();
    }
}

/// A persistent child process serving many requests at once over framed stdin/stdout.
///
/// Each call encodes the request as a frame with a fresh id, writes it to the worker's
/// stdin and resolves when the frame with that id comes back on stdout; answers may arrive
/// in any order. Build a factory with [`MakeWorker::builder`](crate::MakeWorker::builder), then
/// [`MakeWorker::spawn`](crate::MakeWorker::spawn) (or call the [`MakeWorker`](crate::MakeWorker)); write the worker with
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
pub struct WorkerProcess<Framing: Codec = LengthPrefixed> {
    guard: Arc<WorkerGuard<Framing>>,
    slot: Reservation,
}

impl<Framing: Codec> WorkerProcess<Framing> {
    pub(crate) fn from_guard(guard: Arc<WorkerGuard<Framing>>) -> Self {
        Self { guard, slot: Reservation::default() }
    }

    fn core(&self) -> &Core<Framing> {
        &self.guard.core
    }

    /// The handle on the counters and events shared by every worker of the same
    /// [`MakeWorker`](crate::MakeWorker).
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

impl<Framing: Codec> Clone for WorkerProcess<Framing> {
    fn clone(&self) -> Self {
        Self::from_guard(self.guard.clone())
    }
}

impl<Framing: Codec> fmt::Debug for WorkerProcess<Framing> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerProcess")
            .field("name", &self.core().name)
            .field("pid", &self.core().pid)
            .field("alive", &self.is_alive())
            .field("ready", &self.slot.is_ready())
            .finish_non_exhaustive()
    }
}

impl<Framing: Codec> Service<Framing::Request> for WorkerProcess<Framing> {
    type Response = Framing::Response;
    type Error = WorkerError;
    type Future = WorkerFuture<Framing::Response>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.core().failed.load(Ordering::Acquire) {
            self.slot.clear();
            return Poll::Ready(Err(self.core().failure()));
        }
        let core = &self.guard.core;
        self.slot.poll_reserve(&core.semaphore, cx).map_err(|_| core.failure())
    }

    fn call(&mut self, request: Framing::Request) -> Self::Future {
        let Some(permit) = self.slot.take() else {
            return WorkerFuture::failed(WorkerError::new(
                WorkerErrorKind::NotReady,
                "call `poll_ready` first",
            ));
        };
        let core = &self.guard.core;
        let id = core.next_id.fetch_add(1, Ordering::Relaxed);
        let mut frame = Vec::new();
        match crate::panic::catch(|| core.codec.encode_request(id, &request, &mut frame)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                return WorkerFuture::failed(WorkerError::new(WorkerErrorKind::Encode, e.message()))
            }
            Err(message) => {
                let panicked = Panicked::new("codec", core.name.clone(), message).with_site("encode_request");
                return WorkerFuture::failed(WorkerError::codec_panicked(WorkerErrorKind::Encode, panicked));
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
