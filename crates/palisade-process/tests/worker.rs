#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
#![cfg(all(target_os = "linux", feature = "json"))]

mod support;

use std::future::poll_fn;
use std::time::Duration;

use palisade_core::rejection::{find_rejection, RejectionKind};
use palisade_process::{
    KillReason, LengthPrefixed, MakeWorker, ProcessErrorKind, ProcessEvent, Termination, WorkerErrorKind,
    WorkerProcess,
};
use serde_json::{json, Value};
use tokio_test::{assert_pending, assert_ready_ok, task};
use tower::{Service, ServiceExt};

use support::{echo_worker, eventually, is_reaped, recorder};

type JsonCodec = palisade_process::Json<Value, Value>;

fn json_worker() -> palisade_process::MakeWorkerBuilder<JsonCodec> {
    MakeWorker::builder(echo_worker()).arg("--json").json::<Value, Value>().log_stderr(false)
}

fn binary_worker() -> palisade_process::MakeWorkerBuilder<LengthPrefixed> {
    MakeWorker::builder(echo_worker()).arg("--binary").log_stderr(false)
}

async fn ask(worker: &WorkerProcess<JsonCodec>, req: Value) -> Result<Value, palisade_process::WorkerError> {
    worker.clone().oneshot(req).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_requests_round_trip() {
    let worker = json_worker().build().unwrap().spawn().unwrap();
    assert_eq!(
        ask(&worker, json!({"op": "echo", "value": {"a": [1, 2]}})).await.unwrap(),
        json!({"a": [1, 2]})
    );
    assert_eq!(ask(&worker, json!({"op": "add", "a": 2, "b": 40})).await.unwrap(), json!(42));
    assert_eq!(ask(&worker, json!({"op": "echo", "value": null})).await.unwrap(), Value::Null);

    // An error the worker answers with fails that request only.
    let err = ask(&worker, json!({"op": "fail", "message": "nope"})).await.unwrap_err();
    assert_eq!(err.kind(), WorkerErrorKind::Remote);
    assert_eq!(err.message(), "nope");
    assert!(!err.is_fatal());
    let classifier = palisade_process::ExitClassifier::new();
    let verdict = palisade_core::Classify::classify(&classifier, &Err::<Value, _>(err));
    assert!(verdict.is_failure() && !verdict.is_retryable());
    assert!(worker.is_alive());
    assert_eq!(ask(&worker, json!({"op": "echo", "value": 1})).await.unwrap(), json!(1));
    assert_eq!(worker.shutdown().await, Termination::Exited(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_requests_round_trip() {
    let worker = binary_worker().build().unwrap().spawn().unwrap();
    let big: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(worker.clone().oneshot(big.clone()).await.unwrap(), big);
    assert_eq!(worker.clone().oneshot(Vec::new()).await.unwrap(), Vec::<u8>::new());
    assert_eq!(worker.clone().oneshot(b"hi".to_vec()).await.unwrap(), b"hi");
    assert_eq!(worker.shutdown().await, Termination::Exited(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_requests_are_answered_in_any_order() {
    let worker = json_worker().max_in_flight(128).build().unwrap().spawn().unwrap();
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..1000u64 {
        let worker = worker.clone();
        // Answers come back out of order: later requests sleep less.
        let req = json!({"op": "sleep", "ms": (1000 - i) % 7, "value": i});
        calls.spawn(async move { (i, worker.oneshot(req).await) });
    }
    let mut seen = vec![false; 1000];
    while let Some(joined) = calls.join_next().await {
        let (i, answer) = joined.unwrap();
        assert_eq!(answer.unwrap(), json!(i));
        seen[i as usize] = true;
    }
    assert!(seen.iter().all(|s| *s));
    assert_eq!(worker.in_flight(), 0);
    assert_eq!(worker.shutdown().await, Termination::Exited(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_fails_every_request_in_flight() {
    let (events, listener) = recorder();
    let make = json_worker().on_event(listener).build().unwrap();
    let handle = make.handle();
    let worker = make.spawn().unwrap();
    let slow: Vec<_> = (0..5)
        .map(|i| tokio::spawn(ask_owned(worker.clone(), json!({"op": "sleep", "ms": 5000, "value": i}))))
        .collect();
    assert!(eventually(Duration::from_secs(2), || worker.in_flight() == 5).await);
    let crash = ask(&worker, json!({"op": "crash", "code": 7})).await.unwrap_err();
    assert_eq!(crash.kind(), WorkerErrorKind::Crashed);
    assert_eq!(crash.termination(), Some(Termination::Exited(7)));
    // A pool brings a new worker: worth retrying, also behind layers that box errors.
    let classifier = palisade_process::ExitClassifier::new();
    assert!(palisade_core::Classify::classify(&classifier, &Err::<Value, _>(crash.clone())).is_retryable());
    let boxed: Result<Value, tower::BoxError> = Err(crash.clone().into());
    assert!(palisade_core::Classify::classify(&classifier, &boxed).is_retryable());
    for call in slow {
        let err = call.await.unwrap().unwrap_err();
        assert_eq!(err.kind(), WorkerErrorKind::Crashed);
        assert!(err.is_fatal());
    }
    // Not ready any more: a pool replaces it.
    let mut w = worker.clone();
    let err = poll_fn(|cx| w.poll_ready(cx)).await.unwrap_err();
    assert_eq!(err.kind(), WorkerErrorKind::Crashed);
    assert_eq!(err.termination(), Some(Termination::Exited(7)));
    assert!(!worker.is_alive());
    assert_eq!(worker.termination(), Some(Termination::Exited(7)));
    assert!(eventually(Duration::from_secs(2), || is_reaped(worker.pid())).await);
    assert_eq!(handle.snapshot().crashed, 1);
    assert!(events.lock().unwrap().iter().any(|e| matches!(
        e,
        ProcessEvent::Crashed { in_flight: 6, termination: Termination::Exited(7), .. }
    )));
}

async fn ask_owned(
    worker: WorkerProcess<JsonCodec>,
    req: Value,
) -> Result<Value, palisade_process::WorkerError> {
    worker.oneshot(req).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_frame_kills_the_worker_and_fails_in_flight() {
    for binary in [false, true] {
        let (pid, slow, garbage, worker_err, termination) = if binary {
            let worker = binary_worker().build().unwrap().spawn().unwrap();
            let slow = tokio::spawn(worker.clone().oneshot(b"sleep:5000".to_vec()));
            assert!(eventually(Duration::from_secs(2), || worker.in_flight() == 1).await);
            let garbage = worker.clone().oneshot(b"garbage".to_vec()).await.unwrap_err();
            let mut w = worker.clone();
            let ready = poll_fn(|cx| w.poll_ready(cx)).await.unwrap_err();
            let slow = slow.await.unwrap().unwrap_err();
            assert!(eventually(Duration::from_secs(2), || worker.termination().is_some()).await);
            (worker.pid(), slow, garbage, ready, worker.termination())
        } else {
            let worker = json_worker().build().unwrap().spawn().unwrap();
            let slow = tokio::spawn(ask_owned(worker.clone(), json!({"op": "sleep", "ms": 5000})));
            assert!(eventually(Duration::from_secs(2), || worker.in_flight() == 1).await);
            let garbage = ask(&worker, json!({"op": "garbage"})).await.unwrap_err();
            let mut w = worker.clone();
            let ready = poll_fn(|cx| w.poll_ready(cx)).await.unwrap_err();
            let slow = slow.await.unwrap().unwrap_err();
            assert!(eventually(Duration::from_secs(2), || worker.termination().is_some()).await);
            (worker.pid(), slow, garbage, ready, worker.termination())
        };
        assert_eq!(slow.kind(), WorkerErrorKind::Malformed, "binary={binary}");
        assert_eq!(garbage.kind(), WorkerErrorKind::Malformed);
        assert_eq!(worker_err.kind(), WorkerErrorKind::Malformed);
        assert_eq!(termination, Some(Termination::Killed(KillReason::ProtocolError)));
        assert!(eventually(Duration::from_secs(2), || is_reaped(pid)).await);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_answers_in_flight_then_exits() {
    let worker = json_worker().build().unwrap().spawn().unwrap();
    let slow = tokio::spawn(ask_owned(worker.clone(), json!({"op": "sleep", "ms": 50, "value": "done"})));
    assert!(eventually(Duration::from_secs(2), || worker.in_flight() == 1).await);
    assert_eq!(worker.shutdown().await, Termination::Exited(0));
    assert_eq!(slow.await.unwrap().unwrap(), json!("done"));

    let mut w = worker.clone();
    let err = poll_fn(|cx| w.poll_ready(cx)).await.unwrap_err();
    assert_eq!(err.kind(), WorkerErrorKind::Closed);
    let err: tower::BoxError = err.into();
    assert_eq!(find_rejection(err.as_ref()).map(palisade_core::Rejection::kind), Some(RejectionKind::Closed));
    assert!(eventually(Duration::from_secs(2), || is_reaped(worker.pid())).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_kills_after_the_grace_period() {
    let (events, listener) = recorder();
    let worker = json_worker()
        .shutdown_grace(Duration::from_millis(100))
        .on_event(listener)
        .build()
        .unwrap()
        .spawn()
        .unwrap();
    let slow = tokio::spawn(ask_owned(worker.clone(), json!({"op": "sleep", "ms": 5000})));
    assert!(eventually(Duration::from_secs(2), || worker.in_flight() == 1).await);
    assert_eq!(worker.shutdown().await, Termination::Killed(KillReason::ShutdownGrace));
    assert_eq!(slow.await.unwrap().unwrap_err().kind(), WorkerErrorKind::Closed);
    assert!(is_reaped(worker.pid()));
    assert!(events
        .lock()
        .unwrap()
        .iter()
        .any(|e| matches!(e, ProcessEvent::Killed { reason: KillReason::ShutdownGrace, .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_every_handle_shuts_the_worker_down() {
    let make = json_worker().build().unwrap();
    let handle = make.handle();
    let worker = make.spawn().unwrap();
    let pid = worker.pid();
    assert_eq!(ask(&worker, json!({"op": "echo", "value": 1})).await.unwrap(), json!(1));
    drop(worker);
    assert!(eventually(Duration::from_secs(2), || is_reaped(pid)).await);
    assert!(eventually(Duration::from_secs(2), || handle.snapshot().running == 0).await);
    assert_eq!(handle.snapshot().exited_success, 1);
    assert_eq!(handle.snapshot().crashed, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_in_flight_is_reserved_in_poll_ready() {
    let worker = json_worker().max_in_flight(2).build().unwrap().spawn().unwrap();
    let a = tokio::spawn(ask_owned(worker.clone(), json!({"op": "sleep", "ms": 80, "value": "a"})));
    let b = tokio::spawn(ask_owned(worker.clone(), json!({"op": "sleep", "ms": 80, "value": "b"})));
    assert!(eventually(Duration::from_secs(2), || worker.in_flight() == 2).await);
    let mut third = worker.clone();
    let mut ready = task::spawn(poll_fn(|cx| third.poll_ready(cx)));
    assert_pending!(ready.poll());
    assert_eq!(a.await.unwrap().unwrap(), json!("a"));
    assert_eq!(b.await.unwrap().unwrap(), json!("b"));
    assert!(ready.is_woken());
    assert_ready_ok!(ready.poll());
    drop(ready);
    assert_eq!(third.call(json!({"op": "echo", "value": 3})).await.unwrap(), json!(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn make_worker_is_a_make_service() {
    let mut make: MakeWorker<JsonCodec> = json_worker().build().unwrap();
    let first = ServiceExt::<()>::ready(&mut make).await.unwrap().call(()).await.unwrap();
    let second = ServiceExt::<()>::ready(&mut make).await.unwrap().call(()).await.unwrap();
    assert_ne!(first.pid(), second.pid());
    assert_eq!(ask(&second, json!({"op": "add", "a": 1, "b": 1})).await.unwrap(), json!(2));
    assert_eq!(make.handle().snapshot().spawned, 2);
    first.shutdown().await;
    second.shutdown().await;

    let missing = MakeWorker::builder("/nonexistent/worker").build().unwrap();
    assert_eq!(missing.spawn().unwrap_err().kind(), ProcessErrorKind::NotFound);
}

#[test]
fn spawning_outside_a_runtime_is_an_error() {
    let make = binary_worker().build().unwrap();
    assert_eq!(make.spawn().unwrap_err().kind(), ProcessErrorKind::NoRuntime);
}

#[test]
fn builder_rejects_bad_settings() {
    assert_eq!(MakeWorker::builder("w").max_in_flight(0).build().unwrap_err().field(), "max_in_flight");
    assert_eq!(MakeWorker::builder("w").max_frame_len(0).build().unwrap_err().field(), "max_frame_len");
    assert_eq!(
        MakeWorker::builder("w").shutdown_grace(Duration::ZERO).build().unwrap_err().field(),
        "shutdown_grace"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_requests_fail_without_killing_the_worker() {
    let worker = binary_worker().max_frame_len(1024).build().unwrap().spawn().unwrap();
    let err = worker.clone().oneshot(vec![0; 4096]).await.unwrap_err();
    assert_eq!(err.kind(), WorkerErrorKind::Encode);
    assert!(worker.is_alive());
    assert_eq!(worker.clone().oneshot(b"ok".to_vec()).await.unwrap(), b"ok");
    worker.shutdown().await;
}

// === the tower five: in-flight slots ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_slots_follow_the_tower_contract() {
    let worker = json_worker().max_in_flight(1).build().unwrap().spawn().unwrap();

    // Reserve without calling; a clone starts un-ready and waits.
    let mut a = worker.clone();
    let mut b = worker.clone();
    let mut c = worker.clone();
    assert_ready_ok!(task::spawn(poll_fn(|cx| a.poll_ready(cx))).poll());
    let mut b_ready = task::spawn(poll_fn(|cx| b.poll_ready(cx)));
    let mut c_ready = task::spawn(poll_fn(|cx| c.poll_ready(cx)));
    assert_pending!(b_ready.poll());
    assert_pending!(c_ready.poll());

    // Dropping a ready service frees its slot, to the first waiter.
    drop(a);
    assert!(b_ready.is_woken());
    assert_pending!(c_ready.poll());
    assert_ready_ok!(b_ready.poll());
    drop(b_ready);

    // An error answer frees the slot.
    let err = b.call(json!({"op": "fail", "message": "x"})).await.unwrap_err();
    assert_eq!(err.kind(), WorkerErrorKind::Remote);
    assert!(eventually(Duration::from_secs(2), || c_ready.is_woken()).await);
    assert_ready_ok!(c_ready.poll());
    drop(c_ready);
    assert_eq!(c.call(json!({"op": "echo", "value": 1})).await.unwrap(), json!(1));
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_call_keeps_its_slot_until_the_worker_answers() {
    let worker = json_worker().max_in_flight(1).build().unwrap().spawn().unwrap();
    let mut a = worker.clone();
    poll_fn(|cx| a.poll_ready(cx)).await.unwrap();
    let mut call = task::spawn(a.call(json!({"op": "sleep", "ms": 60, "value": 1})));
    assert_pending!(call.poll());
    drop(call);
    // The worker is still working on it: the slot counts real load on the child.
    let mut b = worker.clone();
    let mut ready = task::spawn(poll_fn(|cx| b.poll_ready(cx)));
    assert_pending!(ready.poll());
    assert_eq!(worker.in_flight(), 1);
    // Its answer (discarded) frees the slot.
    assert!(eventually(Duration::from_secs(2), || ready.is_woken()).await);
    assert_ready_ok!(ready.poll());
    assert_eq!(worker.in_flight(), 0);
    assert!(worker.is_alive());
    worker.shutdown().await;
}

#[cfg(feature = "serde")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_config_from_serde() {
    let text = format!(
        r#"{{"program": {:?}, "args": ["--binary"], "max_in_flight": 4, "shutdown_grace": "1s", "log_stderr": false, "name": "echo"}}"#,
        echo_worker().display().to_string()
    );
    let config: palisade_process::MakeWorkerConfig = serde_json::from_str(&text).unwrap();
    let worker = config.build().unwrap().spawn().unwrap();
    assert_eq!(worker.handle().name(), "echo");
    assert_eq!(worker.clone().oneshot(b"x".to_vec()).await.unwrap(), b"x");
    assert_eq!(worker.shutdown().await, Termination::Exited(0));
    let bad: palisade_process::MakeWorkerConfig =
        serde_json::from_str(r#"{"program": "w", "max_in_flight": 0}"#).unwrap();
    assert_eq!(bad.build().unwrap_err().field(), "max_in_flight");
}
