//! A hostile review of the keyed breaker's tower contract (issue 19): a half-open trial
//! whose response future is dropped gives its slot back, for a key and for the shared
//! breaker of unkeyed requests (`handle.unkeyed()`); a pass-through request is never judged.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::Duration;

use palisade_circuit_breaker::{CircuitBreakerLayer, CircuitOpen, CircuitState, Unkeyed};
use tokio::time::advance;
use tokio_test::{assert_pending, assert_ready_err, assert_ready_ok, task};
use tower_test::mock;

const SEC: Duration = Duration::from_secs(1);

fn key(r: &&'static str) -> Option<&'static str> {
    (!r.is_empty()).then_some(*r)
}

fn layer(
    when_unkeyed: Unkeyed,
) -> palisade_circuit_breaker::KeyedCircuitBreakerLayer<
    palisade_core::DefaultClassifier,
    &'static str,
    fn(&&'static str) -> Option<&'static str>,
> {
    CircuitBreakerLayer::builder()
        .consecutive_failures(1)
        .wait_in_open(SEC)
        .half_open_trials(1)
        .keyed(key as fn(&&'static str) -> Option<&'static str>)
        .when_unkeyed(when_unkeyed)
        .build()
        .unwrap()
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_dropped_trial_of_a_key_or_of_the_shared_breaker_frees_its_slot() {
    for req in ["a", ""] {
        let layer = layer(Unkeyed::Shared);
        let handle = layer.handle();
        let (mut svc, mut inner) = mock::spawn_layer::<&str, &str, _>(layer);
        let state = |h: &palisade_circuit_breaker::KeyedCircuitBreakerHandle<&str>| {
            if req.is_empty() {
                h.unkeyed().unwrap().state()
            } else {
                h.get(&req).unwrap().state()
            }
        };

        // One failure opens this request's breaker.
        inner.allow(1);
        assert_ready_ok!(svc.poll_ready());
        let mut fut = task::spawn(svc.call(req));
        let (_, send) = inner.next_request().await.unwrap();
        send.send_error("boom");
        assert_ready_err!(fut.poll());
        assert_eq!(state(&handle), CircuitState::Open, "{req:?}");
        advance(SEC).await;

        // The one trial runs; a second call is refused meanwhile.
        inner.allow(2);
        assert_ready_ok!(svc.poll_ready());
        let mut trial = task::spawn(svc.call(req));
        let (_, _send) = inner.next_request().await.unwrap();
        assert_pending!(trial.poll());
        assert_ready_ok!(svc.poll_ready());
        let err = task::spawn(svc.call(req)).await.unwrap_err();
        assert!(err.is::<CircuitOpen>(), "{req:?}: {err}");

        // Dropped before its answer: ignored, and the slot serves the next call.
        drop(trial);
        assert_ready_ok!(svc.poll_ready());
        let next = task::spawn(svc.call(req));
        let (_, send) = inner.next_request().await.expect("the freed trial slot admits a call");
        send.send_response("ok");
        assert_eq!(next.await.unwrap(), "ok");
        assert_eq!(state(&handle), CircuitState::Closed, "{req:?}");
    }
}

/// `PassThrough`: an unkeyed request goes straight to the inner service, is never judged,
/// and makes no breaker, whatever it answers.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_pass_through_request_is_never_judged() {
    let layer = layer(Unkeyed::PassThrough);
    let handle = layer.handle();
    let (mut svc, mut inner) = mock::spawn_layer::<&str, &str, _>(layer);
    for _ in 0..3 {
        inner.allow(1);
        assert_ready_ok!(svc.poll_ready());
        let mut fut = task::spawn(svc.call(""));
        let (_, send) = inner.next_request().await.unwrap();
        send.send_error("boom");
        assert_ready_err!(fut.poll());
    }
    assert!(handle.unkeyed().is_none());
    assert_eq!(handle.len(), 0);
}
