//! Errors returned by [`ProcessService`](crate::ProcessService) and
//! [`WorkerProcess`](crate::WorkerProcess).
//!
//! A process that ran is never an error: its exit code, signal or kill reason is in the
//! [`ProcessOutput`](crate::ProcessOutput) and judged by an
//! [`ExitClassifier`](crate::ExitClassifier). Errors are the calls that could not run a
//! process at all ([`ProcessError`]) and the worker requests that got no answer
//! ([`WorkerError`]).

use std::error::Error;
use std::fmt;
use std::io;
use std::sync::Arc;

use palisade_core::panic::Panicked;
use palisade_core::rejection::Closed;

use crate::output::Termination;

/// Why a child process could not be run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProcessErrorKind {
    /// The program does not exist (`ENOENT`).
    NotFound,
    /// The program or working directory may not be executed or entered (`EACCES`).
    PermissionDenied,
    /// Spawning failed for another reason (`EAGAIN`, `EMFILE`, bad working directory, …).
    Spawn,
    /// The request was invalid (an environment name with `=` or NUL, a NUL in an argument).
    InvalidRequest,
    /// `call` was used without a successful `poll_ready` first.
    NotReady,
    /// No Tokio runtime was running to drive the child.
    NoRuntime,
}

/// A child process could not be run.
///
/// The [`kind`](Self::kind) says why; the underlying `io::Error`, if any, is the
/// [`source`](Error::source).
#[derive(Debug)]
pub struct ProcessError {
    kind: ProcessErrorKind,
    program: Arc<str>,
    detail: Option<&'static str>,
    source: Option<io::Error>,
}

impl ProcessError {
    pub(crate) fn spawn(program: &Arc<str>, err: io::Error) -> Self {
        let kind = match err.kind() {
            io::ErrorKind::NotFound => ProcessErrorKind::NotFound,
            io::ErrorKind::PermissionDenied => ProcessErrorKind::PermissionDenied,
            io::ErrorKind::InvalidInput => ProcessErrorKind::InvalidRequest,
            _ => ProcessErrorKind::Spawn,
        };
        Self { kind, program: program.clone(), detail: None, source: Some(err) }
    }

    pub(crate) fn new(kind: ProcessErrorKind, program: &Arc<str>, detail: &'static str) -> Self {
        Self { kind, program: program.clone(), detail: Some(detail), source: None }
    }

    /// Why the process could not be run.
    pub fn kind(&self) -> ProcessErrorKind {
        self.kind
    }

    /// The program that was to be run.
    pub fn program(&self) -> &str {
        &self.program
    }

    /// Whether running the same request again may work (resource exhaustion, not a missing
    /// or forbidden program).
    pub fn is_transient(&self) -> bool {
        matches!(self.kind, ProcessErrorKind::Spawn)
    }
}

impl fmt::Display for ProcessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            ProcessErrorKind::NotFound => "program not found",
            ProcessErrorKind::PermissionDenied => "permission denied",
            ProcessErrorKind::Spawn => "failed to spawn",
            ProcessErrorKind::InvalidRequest => "invalid request",
            ProcessErrorKind::NotReady => "called before poll_ready",
            ProcessErrorKind::NoRuntime => "no Tokio runtime",
        };
        write!(f, "cannot run `{}`: {what}", self.program)?;
        if let Some(detail) = self.detail {
            write!(f, " ({detail})")?;
        }
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl Error for ProcessError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.source.as_ref().map(|e| e as &(dyn Error + 'static))
    }
}

/// Why a worker request got no answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WorkerErrorKind {
    /// The worker process exited (or was killed) before answering.
    Crashed,
    /// The worker wrote a frame that does not follow the protocol; it was killed.
    Malformed,
    /// Writing to or reading from the worker failed.
    Io,
    /// The worker was shut down (or every handle to it dropped) and takes no more requests.
    Closed,
    /// The worker answered this request with an error (the worker itself is healthy).
    Remote,
    /// The request could not be encoded into a frame (or its frame is over the size limit).
    Encode,
    /// `call` was used without a successful `poll_ready` first.
    NotReady,
}

/// A worker request failed.
///
/// Every request in flight when a worker crashes or breaks the protocol gets a clone of the
/// same error; the worker's `poll_ready` returns it from then on, so a pool drops the worker
/// and makes a new one. A [`Closed`](WorkerErrorKind::Closed) error has palisade's
/// [`Closed`] rejection as its source, so `find_rejection` sees it.
#[derive(Clone, Debug)]
pub struct WorkerError {
    kind: WorkerErrorKind,
    message: Arc<str>,
    termination: Option<Termination>,
    closed: Option<Closed>,
    panicked: Option<Panicked>,
}

impl WorkerError {
    pub(crate) fn new(kind: WorkerErrorKind, message: impl Into<Arc<str>>) -> Self {
        Self { kind, message: message.into(), termination: None, closed: None, panicked: None }
    }

    /// The codec (user code) panicked: the error says so and has palisade-core's
    /// [`Panicked`] as its source.
    pub(crate) fn codec_panicked(kind: WorkerErrorKind, panicked: Panicked) -> Self {
        let message = format!("the codec panicked: {}", panicked.message());
        Self { panicked: Some(panicked), ..Self::new(kind, message) }
    }

    pub(crate) fn crashed(termination: Termination) -> Self {
        Self {
            kind: WorkerErrorKind::Crashed,
            message: Arc::from(format!("worker process ended: {termination}")),
            termination: Some(termination),
            closed: None,
            panicked: None,
        }
    }

    pub(crate) fn closed(name: &Arc<str>) -> Self {
        Self {
            kind: WorkerErrorKind::Closed,
            message: Arc::from("worker process is shut down"),
            termination: None,
            closed: Some(Closed::new(name.clone())),
            panicked: None,
        }
    }

    /// What went wrong.
    pub fn kind(&self) -> WorkerErrorKind {
        self.kind
    }

    /// A human-readable detail (for [`Remote`](WorkerErrorKind::Remote), the worker's message).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// How the worker process ended, for [`Crashed`](WorkerErrorKind::Crashed).
    pub fn termination(&self) -> Option<Termination> {
        self.termination
    }

    /// Whether the worker is unusable after this error (everything but `Remote`, `Encode`
    /// and `NotReady`).
    pub fn is_fatal(&self) -> bool {
        !matches!(self.kind, WorkerErrorKind::Remote | WorkerErrorKind::Encode | WorkerErrorKind::NotReady)
    }
}

impl fmt::Display for WorkerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            WorkerErrorKind::Remote => write!(f, "worker returned an error: {}", self.message),
            _ => f.write_str(&self.message),
        }
    }
}

impl Error for WorkerError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match (&self.closed, &self.panicked) {
            (Some(closed), _) => Some(closed),
            (None, Some(panicked)) => Some(panicked),
            (None, None) => None,
        }
    }
}

/// A frame could not be encoded or decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrameError {
    message: Arc<str>,
}

impl FrameError {
    /// A framing error with a description.
    pub fn new(message: impl Into<Arc<str>>) -> Self {
        Self { message: message.into() }
    }

    /// The description.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad frame: {}", self.message)
    }
}

impl Error for FrameError {}
