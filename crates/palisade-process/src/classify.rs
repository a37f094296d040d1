//! [`ExitClassifier`]: what a child's exit means, in palisade-core's terms.

use std::sync::Arc;

use palisade_core::classify::{classify_error, Classification, Classify};
use palisade_core::BoxError;

use crate::error::{ProcessError, ProcessErrorKind, WorkerError};
use crate::output::{KillReason, ProcessOutput, Termination};

/// Classifies [`ProcessOutput`]s and process errors for retry, circuit-breaker and
/// fallback layers.
///
/// | result | verdict |
/// | --- | --- |
/// | exit code 0 | success |
/// | exit code in [`retryable_codes`](Self::retryable_codes) (e.g. 75, `EX_TEMPFAIL`) | retryable failure |
/// | any other exit code | failure, not retried |
/// | killed after its timeout | retryable failure ([`retry_timeouts`](Self::retry_timeouts)) |
/// | ended by an outside signal | failure ([`retry_signals`](Self::retry_signals)) |
/// | killed for an output cap | failure, not retried |
/// | program not found, permission denied, invalid request | failure, not retried |
/// | other spawn errors (`EAGAIN`, `EMFILE`) | retryable failure |
/// | worker crashed or broke the protocol | retryable failure (a pool brings a new worker) |
/// | worker answered with an error | failure, not retried |
///
/// ```
/// use palisade_core::Classify;
/// use palisade_process::{ExitClassifier, ProcessError, ProcessOutput};
///
/// let classifier = ExitClassifier::new().retryable_codes([75]);
/// # let _: &dyn Classify<ProcessOutput, ProcessError> = &classifier;
/// ```
#[derive(Clone, Debug)]
pub struct ExitClassifier {
    retryable_codes: Arc<[i32]>,
    retry_timeouts: bool,
    retry_signals: bool,
}

impl Default for ExitClassifier {
    fn default() -> Self {
        Self::new()
    }
}

impl ExitClassifier {
    /// Exit 0 is a success, every other code a failure that is not retried; timeouts are
    /// retried, outside signals are not.
    pub fn new() -> Self {
        Self { retryable_codes: Arc::from([]), retry_timeouts: true, retry_signals: false }
    }

    /// Exit codes worth retrying (e.g. `[75]`, `EX_TEMPFAIL` of sysexits.h).
    pub fn retryable_codes(mut self, codes: impl IntoIterator<Item = i32>) -> Self {
        self.retryable_codes = codes.into_iter().collect();
        self
    }

    /// Whether a child killed at its timeout is worth retrying (default `true`).
    pub fn retry_timeouts(mut self, retry: bool) -> Self {
        self.retry_timeouts = retry;
        self
    }

    /// Whether a child ended by an outside signal (OOM killer, `SIGSEGV`) is worth retrying
    /// (default `false`).
    pub fn retry_signals(mut self, retry: bool) -> Self {
        self.retry_signals = retry;
        self
    }

    /// The verdict on how a child ended.
    pub fn classify_termination(&self, termination: Termination) -> Classification {
        match termination {
            Termination::Exited(0) => Classification::success(),
            Termination::Exited(code) if self.retryable_codes.contains(&code) => {
                Classification::retryable_failure()
            }
            Termination::Signaled(_) => Classification::failure().with_retryable(self.retry_signals),
            Termination::Killed(KillReason::Timeout) => {
                Classification::failure().with_retryable(self.retry_timeouts)
            }
            // The caller gave up: says nothing about the program.
            Termination::Killed(KillReason::Cancelled) => Classification::ignored(),
            Termination::Exited(_) | Termination::Killed(_) => Classification::failure(),
        }
    }

    /// The verdict on a [`ProcessError`].
    pub fn classify_process_error(&self, err: &ProcessError) -> Classification {
        match err.kind() {
            ProcessErrorKind::Spawn => Classification::retryable_failure(),
            _ => Classification::failure(),
        }
    }

    /// The verdict on a [`WorkerError`].
    pub fn classify_worker_error(&self, err: &WorkerError) -> Classification {
        if err.is_fatal() {
            Classification::retryable_failure()
        } else {
            Classification::failure()
        }
    }

    fn classify_box(&self, err: &BoxError) -> Classification {
        if let Some(e) = palisade_core::rejection::find::<ProcessError>(err.as_ref()) {
            return self.classify_process_error(e);
        }
        if let Some(e) = palisade_core::rejection::find::<WorkerError>(err.as_ref()) {
            return self.classify_worker_error(e);
        }
        classify_error(err)
    }
}

impl Classify<ProcessOutput, ProcessError> for ExitClassifier {
    fn classify(&self, result: &Result<ProcessOutput, ProcessError>) -> Classification {
        match result {
            Ok(out) => self.classify_termination(out.termination()),
            Err(err) => self.classify_process_error(err),
        }
    }
}

/// Behind other layers (errors boxed): a [`ProcessOutput`] is judged by how the child
/// ended, any other response is a success; errors are found through their source chains.
impl<R: 'static> Classify<R, BoxError> for ExitClassifier {
    fn classify(&self, result: &Result<R, BoxError>) -> Classification {
        match result {
            Ok(res) => {
                let any: &dyn std::any::Any = res;
                match any.downcast_ref::<ProcessOutput>() {
                    Some(out) => self.classify_termination(out.termination()),
                    None => Classification::success(),
                }
            }
            Err(err) => self.classify_box(err),
        }
    }
}

impl<R> Classify<R, WorkerError> for ExitClassifier {
    fn classify(&self, result: &Result<R, WorkerError>) -> Classification {
        match result {
            Ok(_) => Classification::success(),
            Err(err) => self.classify_worker_error(err),
        }
    }
}
