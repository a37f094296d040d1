#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use palisade_core::{BoxError, Classify, Outcome};
use palisade_process::{ExitClassifier, KillReason, Termination, WorkerError};

#[test]
fn terminations() {
    let c = ExitClassifier::new().retryable_codes([75, 69]);
    let verdict = |t| c.classify_termination(t);
    assert_eq!(verdict(Termination::Exited(0)).outcome(), Outcome::Success);
    assert!(verdict(Termination::Exited(75)).is_retryable());
    assert!(verdict(Termination::Exited(69)).is_retryable());
    assert!(verdict(Termination::Exited(1)).is_failure() && !verdict(Termination::Exited(1)).is_retryable());
    assert!(
        verdict(Termination::Signaled(9)).is_failure() && !verdict(Termination::Signaled(9)).is_retryable()
    );
    assert!(c.clone().retry_signals(true).classify_termination(Termination::Signaled(9)).is_retryable());
    assert!(verdict(Termination::Killed(KillReason::Timeout)).is_retryable());
    assert!(!verdict(Termination::Killed(KillReason::OutputLimit)).is_retryable());
    assert!(verdict(Termination::Killed(KillReason::OutputLimit)).is_failure());
    assert_eq!(verdict(Termination::Killed(KillReason::Cancelled)).outcome(), Outcome::Ignored);
}

#[test]
fn boxed_errors_are_found_through_layers() {
    let c = ExitClassifier::new();
    // A timeout layer's own error is not a process error: the default rules apply.
    let elapsed: Result<(), BoxError> = Err(Box::new(tower::timeout::error::Elapsed::new()));
    assert!(c.classify(&elapsed).is_retryable());
    // Any other response type is a success.
    assert!(c.classify(&Ok::<u8, BoxError>(1)).is_success());
}

#[test]
fn worker_errors() {
    let c = ExitClassifier::new();
    let ok: Result<u8, WorkerError> = Ok(1);
    assert!(c.classify(&ok).is_success());
    assert_eq!(c.classify(&ok).outcome(), Outcome::Success);
}

/// What a pool, a buffer or a spawned task needs of these types.
#[test]
fn services_and_futures_are_send() {
    fn send<T: Send + 'static>() {}
    fn send_sync<T: Send + Sync + 'static>() {}
    // axum's `route_service` wants `Send + Sync` services.
    send_sync::<palisade_process::ProcessService>();
    send::<palisade_process::future::ResponseFuture>();
    send_sync::<palisade_process::WorkerProcess>();
    send::<palisade_process::future::WorkerFuture<Vec<u8>>>();
    send_sync::<palisade_process::MakeWorker>();
    send_sync::<palisade_process::ProcessHandle>();
    send_sync::<palisade_process::ProcessError>();
    send_sync::<palisade_process::WorkerError>();
    #[cfg(feature = "json")]
    send::<palisade_process::WorkerProcess<palisade_process::Json<serde_json::Value, serde_json::Value>>>();
}
