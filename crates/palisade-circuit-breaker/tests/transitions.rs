#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
// Rates are compared exactly on purpose: the thresholds are inclusive, to the bit.
#![allow(clippy::float_cmp)]

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use palisade_circuit_breaker::{CircuitBreakerEvent, CircuitBreakerLayer, CircuitState, TransitionReason};
use palisade_core::classify::{classify_fn, Classification};
use palisade_core::Outcome;
use support::{backend, recorder, rejection, send, send_owned, slow, Call, FAIL, OK};
use tokio::time::advance;
use tower::Layer;

const SEC: Duration = Duration::from_secs(1);

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn consecutive_failures_open_at_exactly_n_and_successes_reset_the_count() {
    let hits = Arc::new(AtomicUsize::new(0));
    let layer =
        CircuitBreakerLayer::builder().consecutive_failures(3).wait_in_open(10 * SEC).build().unwrap();
    let handle = layer.handle();
    let svc = layer.layer(backend(hits.clone()));

    send(&svc, FAIL).await.unwrap_err();
    send(&svc, FAIL).await.unwrap_err();
    send(&svc, OK).await.unwrap();
    assert_eq!(handle.snapshot().consecutive_failures, 0);
    send(&svc, FAIL).await.unwrap_err();
    send(&svc, FAIL).await.unwrap_err();
    assert_eq!(handle.state(), CircuitState::Closed);
    send(&svc, FAIL).await.unwrap_err();
    assert_eq!(handle.state(), CircuitState::Open);
    assert_eq!(hits.load(Ordering::SeqCst), 6);

    let res = send(&svc, OK).await;
    assert_eq!(rejection(&res).unwrap().retry_after(), 10 * SEC);
    assert_eq!(rejection(&res).unwrap().name(), "circuit_breaker");
    assert_eq!(hits.load(Ordering::SeqCst), 6, "a rejected call never reaches the service");
    assert_eq!(handle.snapshot().rejected, 1);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn count_window_waits_for_minimum_calls_and_opens_at_exactly_the_rate() {
    let layer =
        CircuitBreakerLayer::builder().failure_rate(0.5).count_window(4).minimum_calls(4).build().unwrap();
    let handle = layer.handle();
    let svc = layer.layer(backend(Arc::default()));

    // 3 failures out of 3: 100 %, but under the minimum of 4 calls.
    for _ in 0..3 {
        send(&svc, FAIL).await.unwrap_err();
    }
    assert_eq!(handle.state(), CircuitState::Closed);
    assert_eq!(handle.snapshot().failure_rate, None);
    handle.reset();

    // S S S F: 25 %.
    for call in [OK, OK, OK, FAIL] {
        let _ = send(&svc, call).await;
    }
    assert_eq!(handle.state(), CircuitState::Closed);
    assert_eq!(handle.snapshot().failure_rate, Some(0.25));
    // The window slides: [S S F F] = 50 %, the boundary itself, opens.
    send(&svc, FAIL).await.unwrap_err();
    assert_eq!(handle.state(), CircuitState::Open);
    assert_eq!(handle.snapshot().window_failures, 2);
    assert_eq!(handle.snapshot().window_calls, 4);

    // Half-open: one failed trial of ten re-opens; ten good ones close with a fresh window.
    advance(Duration::from_secs(60)).await;
    send(&svc, OK).await.unwrap();
    send(&svc, FAIL).await.unwrap_err();
    assert_eq!(handle.state(), CircuitState::Open);
    advance(Duration::from_secs(60)).await;
    for _ in 0..10 {
        send(&svc, OK).await.unwrap();
    }
    assert_eq!(handle.state(), CircuitState::Closed);
    assert_eq!(handle.snapshot().window_calls, 0);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn count_window_forgets_the_oldest_call() {
    let layer =
        CircuitBreakerLayer::builder().failure_rate(0.5).count_window(4).minimum_calls(4).build().unwrap();
    let handle = layer.handle();
    let svc = layer.layer(backend(Arc::default()));
    for call in [FAIL, OK, OK, OK, OK] {
        let _ = send(&svc, call).await;
    }
    // The failure left the window.
    assert_eq!(handle.snapshot().window_failures, 0);
    assert_eq!(handle.snapshot().failure_rate, Some(0.0));
    send(&svc, FAIL).await.unwrap_err();
    assert_eq!(handle.state(), CircuitState::Closed);
    send(&svc, FAIL).await.unwrap_err();
    assert_eq!(handle.state(), CircuitState::Open);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn minimum_calls_is_capped_by_a_count_window() {
    // Default minimum is 100; a window of 2 judges after 2 calls.
    let layer = CircuitBreakerLayer::builder().count_window(2).build().unwrap();
    let handle = layer.handle();
    let svc = layer.layer(backend(Arc::default()));
    send(&svc, OK).await.unwrap();
    send(&svc, FAIL).await.unwrap_err();
    assert_eq!(handle.state(), CircuitState::Open);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn time_window_rate_forgets_old_buckets() {
    let layer = CircuitBreakerLayer::builder()
        .failure_rate(0.5)
        .time_window(10 * SEC)
        .minimum_calls(3)
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = layer.layer(backend(Arc::default()));

    send(&svc, FAIL).await.unwrap_err();
    send(&svc, FAIL).await.unwrap_err();
    assert_eq!(handle.snapshot().window_calls, 2);
    advance(11 * SEC).await;
    assert_eq!(handle.snapshot().window_calls, 0, "the first two calls left the window");

    send(&svc, OK).await.unwrap();
    send(&svc, OK).await.unwrap();
    send(&svc, FAIL).await.unwrap_err(); // 1 / 3
    assert_eq!(handle.state(), CircuitState::Closed);
    advance(SEC).await;
    send(&svc, FAIL).await.unwrap_err(); // 2 / 4: exactly 50 %
    assert_eq!(handle.state(), CircuitState::Open);

    // Default wait (60 s) and trials (10): half-open, then closed with an empty window.
    advance(Duration::from_secs(60)).await;
    for i in 0..10 {
        send(&svc, OK).await.unwrap();
        let expected = if i < 9 { CircuitState::HalfOpen } else { CircuitState::Closed };
        assert_eq!(handle.state(), expected, "after trial {i}");
    }
    assert_eq!(handle.snapshot().window_calls, 0);
    send(&svc, FAIL).await.unwrap_err();
    assert_eq!(handle.snapshot().window_failures, 1);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn failure_count_opens_whatever_the_successes() {
    let (builder, events) =
        recorder(CircuitBreakerLayer::builder().failure_count(3, Duration::from_secs(60)));
    let layer = builder.build().unwrap();
    let handle = layer.handle();
    let svc = layer.layer(backend(Arc::default()));

    for _ in 0..200 {
        send(&svc, OK).await.unwrap();
    }
    send(&svc, FAIL).await.unwrap_err();
    send(&svc, FAIL).await.unwrap_err();
    advance(Duration::from_secs(61)).await;
    // Both failures expired.
    send(&svc, FAIL).await.unwrap_err();
    send(&svc, FAIL).await.unwrap_err();
    assert_eq!(handle.state(), CircuitState::Closed);
    for _ in 0..200 {
        send(&svc, OK).await.unwrap();
    }
    send(&svc, FAIL).await.unwrap_err();
    assert_eq!(handle.state(), CircuitState::Open);
    let reasons: Vec<_> = events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            CircuitBreakerEvent::StateTransition { reason, key: None, .. } => Some(*reason),
            _ => None,
        })
        .collect();
    assert_eq!(reasons, vec![TransitionReason::FailureCount { failures: 3 }]);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn slow_successful_calls_open_the_breaker() {
    let (builder, events) =
        recorder(CircuitBreakerLayer::builder().count_window(10).minimum_calls(4).slow_calls(SEC, 0.5));
    let layer = builder.build().unwrap();
    let handle = layer.handle();
    let svc = layer.layer(backend(Arc::default()));

    send(&svc, slow(2 * SEC)).await.unwrap();
    send(&svc, slow(SEC)).await.unwrap(); // exactly the threshold: not slow
    send(&svc, OK).await.unwrap();
    assert_eq!(handle.snapshot().window_slow_calls, 1);
    assert_eq!(handle.state(), CircuitState::Closed);
    send(&svc, slow(3 * SEC)).await.unwrap(); // 2 slow / 4
    assert_eq!(handle.state(), CircuitState::Open);
    assert_eq!(handle.snapshot().slow_calls, 2);
    assert_eq!(handle.snapshot().failures, 0);
    assert!(events.lock().unwrap().iter().any(|e| matches!(
        e,
        CircuitBreakerEvent::StateTransition { to: CircuitState::Open, reason: TransitionReason::SlowCallRate { rate }, .. }
            if *rate == 0.5
    )));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn open_moves_to_half_open_lazily_on_the_first_call_after_the_wait() {
    let layer = CircuitBreakerLayer::builder()
        .consecutive_failures(1)
        .wait_in_open(10 * SEC)
        .half_open_trials(2)
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = layer.layer(backend(Arc::default()));

    send(&svc, FAIL).await.unwrap_err();
    advance(4 * SEC).await;
    let res = send(&svc, OK).await;
    assert_eq!(rejection(&res).unwrap().retry_after(), 6 * SEC);
    assert_eq!(handle.snapshot().retry_after, Some(6 * SEC));
    advance(6 * SEC).await;
    assert_eq!(handle.state(), CircuitState::Open, "no timer: the state moves on the next call");

    send(&svc, OK).await.unwrap();
    assert_eq!(handle.state(), CircuitState::HalfOpen);
    assert_eq!(handle.snapshot().trial_successes, 1);
    send(&svc, OK).await.unwrap();
    assert_eq!(handle.state(), CircuitState::Closed);
    // Closed again with a fresh count.
    assert_eq!(handle.snapshot().consecutive_failures, 0);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_failed_trial_reopens() {
    let (builder, events) = recorder(
        CircuitBreakerLayer::builder().consecutive_failures(1).wait_in_open(SEC).half_open_trials(3),
    );
    let layer = builder.build().unwrap();
    let handle = layer.handle();
    let svc = layer.layer(backend(Arc::default()));

    send(&svc, FAIL).await.unwrap_err();
    advance(SEC).await;
    send(&svc, OK).await.unwrap();
    send(&svc, FAIL).await.unwrap_err();
    assert_eq!(handle.state(), CircuitState::Open);
    let transitions: Vec<_> = events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            CircuitBreakerEvent::StateTransition { from, to, reason, .. } => Some((*from, *to, *reason)),
            _ => None,
        })
        .collect();
    assert_eq!(
        transitions,
        vec![
            (CircuitState::Closed, CircuitState::Open, TransitionReason::ConsecutiveFailures { failures: 1 }),
            (CircuitState::Open, CircuitState::HalfOpen, TransitionReason::WaitElapsed),
            (CircuitState::HalfOpen, CircuitState::Open, TransitionReason::TrialsFailed { failures: 1 }),
        ]
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn half_open_failure_ratio_decides_over_the_trials() {
    // 4 trials, re-open at 50 %: two failed trials re-open, three successes close.
    let layer = CircuitBreakerLayer::builder()
        .consecutive_failures(1)
        .wait_in_open(SEC)
        .half_open_trials(4)
        .half_open_failure_ratio(0.5)
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = layer.layer(backend(Arc::default()));

    send(&svc, FAIL).await.unwrap_err();
    advance(SEC).await;
    send(&svc, FAIL).await.unwrap_err();
    assert_eq!(handle.state(), CircuitState::HalfOpen, "one failed trial of four is 25 %");
    send(&svc, OK).await.unwrap();
    send(&svc, FAIL).await.unwrap_err();
    assert_eq!(handle.state(), CircuitState::Open);

    advance(SEC).await;
    send(&svc, OK).await.unwrap();
    send(&svc, FAIL).await.unwrap_err();
    send(&svc, OK).await.unwrap();
    assert_eq!(handle.state(), CircuitState::HalfOpen);
    send(&svc, OK).await.unwrap(); // 3 successes: the fourth trial cannot reach 50 %
    assert_eq!(handle.state(), CircuitState::Closed);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn exponential_wait_grows_caps_and_starts_over_when_closed() {
    let layer = CircuitBreakerLayer::builder()
        .consecutive_failures(1)
        .exponential_wait_in_open(SEC, 2.0, 4 * SEC)
        .half_open_trials(1)
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = layer.layer(backend(Arc::default()));

    send(&svc, FAIL).await.unwrap_err();
    let mut waits = Vec::new();
    for _ in 0..4 {
        let wait = handle.snapshot().retry_after.unwrap();
        waits.push(wait);
        advance(wait).await;
        send(&svc, FAIL).await.unwrap_err(); // the trial fails: open again, longer
    }
    waits.push(handle.snapshot().retry_after.unwrap());
    assert_eq!(waits, vec![SEC, 2 * SEC, 4 * SEC, 4 * SEC, 4 * SEC]);

    advance(4 * SEC).await;
    send(&svc, OK).await.unwrap();
    assert_eq!(handle.state(), CircuitState::Closed);
    send(&svc, FAIL).await.unwrap_err();
    assert_eq!(handle.snapshot().retry_after, Some(SEC), "closing starts the wait over");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_server_retry_hint_forces_the_breaker_open_for_that_long() {
    let classifier = classify_fn(|r: &Result<(), &'static str>| match r {
        Ok(()) => Classification::success(),
        Err(_) => Classification::retryable_failure().with_retry_after(Some(Duration::from_secs(7))),
    });
    let layer = CircuitBreakerLayer::builder()
        .consecutive_failures(100)
        .open_on_retry_after(Duration::from_secs(60))
        .classifier(classifier)
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = layer.layer(backend(Arc::default()));

    send(&svc, FAIL).await.unwrap_err();
    assert_eq!(handle.state(), CircuitState::Open);
    let res = send(&svc, OK).await;
    assert_eq!(rejection(&res).unwrap().retry_after(), Duration::from_secs(7));

    // Capped at the configured maximum.
    let layer = CircuitBreakerLayer::builder()
        .open_on_retry_after(Duration::from_secs(3))
        .classifier(classifier)
        .build()
        .unwrap();
    let svc = layer.layer(backend(Arc::default()));
    send(&svc, FAIL).await.unwrap_err();
    assert_eq!(layer.handle().snapshot().retry_after, Some(Duration::from_secs(3)));

    // Without the option, hints are not followed.
    let layer = CircuitBreakerLayer::builder().classifier(classifier).build().unwrap();
    let svc = layer.layer(backend(Arc::default()));
    send(&svc, FAIL).await.unwrap_err();
    assert_eq!(layer.handle().state(), CircuitState::Closed);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn manual_states() {
    let hits = Arc::new(AtomicUsize::new(0));
    let layer = CircuitBreakerLayer::builder().consecutive_failures(2).wait_in_open(SEC).build().unwrap();
    let handle = layer.handle();
    let svc = layer.layer(backend(hits.clone()));

    handle.force_open();
    assert!(rejection(&send(&svc, OK).await).is_some());
    advance(10 * SEC).await;
    assert!(rejection(&send(&svc, OK).await).is_some(), "forced open stays open past the wait");
    assert_eq!(handle.state(), CircuitState::ForcedOpen);
    assert_eq!(hits.load(Ordering::SeqCst), 0);

    handle.disable();
    for _ in 0..5 {
        send(&svc, FAIL).await.unwrap_err();
    }
    assert_eq!(handle.state(), CircuitState::Disabled);
    assert_eq!(handle.snapshot().failures, 0, "disabled records nothing");

    handle.metrics_only();
    for _ in 0..5 {
        send(&svc, FAIL).await.unwrap_err();
    }
    assert_eq!(handle.state(), CircuitState::MetricsOnly);
    assert_eq!(handle.snapshot().failures, 5);
    assert_eq!(handle.snapshot().consecutive_failures, 5);

    handle.force_closed();
    assert_eq!(handle.snapshot().consecutive_failures, 0);
    send(&svc, FAIL).await.unwrap_err();
    send(&svc, FAIL).await.unwrap_err();
    assert_eq!(handle.state(), CircuitState::Open, "force-closed resumes automatic operation");

    handle.reset();
    assert_eq!(handle.state(), CircuitState::Closed);
    send(&svc, OK).await.unwrap();
}

/// Issue 14.5: as Resilience4j and Polly, closing by hand restarts the exponential wait.
/// Waits 1, 2, 4, 8, 16 s; `force_closed()`; one failure: open for 1 s again (not 32 s).
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn force_closed_restarts_the_exponential_wait_as_resilience4j_and_polly() {
    let layer = CircuitBreakerLayer::builder()
        .consecutive_failures(1)
        .half_open_trials(1)
        .exponential_wait_in_open(SEC, 2.0, Duration::from_secs(1000))
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = layer.layer(backend(Arc::default()));
    send(&svc, FAIL).await.unwrap_err();
    for wait in [1, 2, 4, 8, 16] {
        assert_eq!(handle.snapshot().retry_after, Some(Duration::from_secs(wait)));
        advance(Duration::from_secs(wait)).await;
        send(&svc, FAIL).await.unwrap_err(); // the trial fails: open again, twice as long
    }
    assert_eq!(handle.snapshot().retry_after, Some(Duration::from_secs(32)));
    handle.force_closed();
    send(&svc, FAIL).await.unwrap_err();
    assert_eq!(handle.state(), CircuitState::Open);
    assert_eq!(handle.snapshot().retry_after, Some(SEC));
    // reset() forgets it too.
    advance(SEC).await;
    send(&svc, FAIL).await.unwrap_err();
    assert_eq!(handle.snapshot().retry_after, Some(2 * SEC));
    handle.reset();
    send(&svc, FAIL).await.unwrap_err();
    assert_eq!(handle.snapshot().retry_after, Some(SEC));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn clones_and_services_of_one_layer_share_the_breaker() {
    let layer = CircuitBreakerLayer::builder().consecutive_failures(2).build().unwrap();
    let a = layer.layer(backend(Arc::default()));
    let b = layer.clone().layer(backend(Arc::default()));
    send(&a, FAIL).await.unwrap_err();
    send(&b.clone(), FAIL).await.unwrap_err();
    assert!(rejection(&send(&a, OK).await).is_some());
    assert!(rejection(&send(&b, OK).await).is_some());
    assert_eq!(layer.handle().state(), CircuitState::Open);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn ignored_and_dropped_calls_count_neither_way() {
    let classifier = classify_fn(|r: &Result<(), &'static str>| match r {
        Ok(()) => Classification::success(),
        Err(_) => Classification::ignored(),
    });
    let layer =
        CircuitBreakerLayer::builder().consecutive_failures(1).classifier(classifier).build().unwrap();
    let handle = layer.handle();
    let svc = layer.layer(backend(Arc::default()));
    send(&svc, FAIL).await.unwrap_err();
    assert_eq!(handle.state(), CircuitState::Closed);

    let fut = tower::ServiceExt::oneshot(svc.clone(), Call { fail: true, delay: SEC });
    let mut fut = tokio_test::task::spawn(fut);
    tokio_test::assert_pending!(fut.poll());
    drop(fut);
    let snap = handle.snapshot();
    assert_eq!((snap.ignored, snap.failures, snap.successes), (2, 0, 0));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_call_admitted_before_a_transition_does_not_count_after_it() {
    let layer = CircuitBreakerLayer::builder()
        .consecutive_failures(1)
        .wait_in_open(SEC)
        .half_open_trials(1)
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = layer.layer(backend(Arc::default()));

    // A slow failing call admitted while closed ...
    let late = tokio::spawn(support::send_owned(svc.clone(), Call { fail: true, delay: 5 * SEC }));
    tokio::task::yield_now().await;
    send(&svc, FAIL).await.unwrap_err();
    advance(SEC).await;
    // ... the trial succeeds and closes the breaker ...
    send(&svc, OK).await.unwrap();
    assert_eq!(handle.state(), CircuitState::Closed);
    // ... and the late failure, from the earlier period, does not open it again.
    advance(5 * SEC).await;
    late.await.unwrap().unwrap_err();
    assert_eq!(handle.state(), CircuitState::Closed);
    assert_eq!(handle.snapshot().consecutive_failures, 0);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn events_report_rejections_and_recorded_calls() {
    let (builder, events) =
        recorder(CircuitBreakerLayer::builder().consecutive_failures(1).wait_in_open(SEC));
    let layer = builder.build().unwrap();
    let svc = layer.layer(backend(Arc::default()));
    send(&svc, FAIL).await.unwrap_err();
    let _ = send(&svc, OK).await;
    let events = events.lock().unwrap().clone();
    assert_eq!(
        events,
        vec![
            CircuitBreakerEvent::Recorded { outcome: Outcome::Failure, slow: false, elapsed: None },
            CircuitBreakerEvent::StateTransition {
                from: CircuitState::Closed,
                to: CircuitState::Open,
                reason: TransitionReason::ConsecutiveFailures { failures: 1 },
                key: None,
            },
            CircuitBreakerEvent::Rejected { retry_after: SEC },
        ]
    );
}

#[test]
fn invalid_settings_are_refused_at_build() {
    let field =
        |r: Result<CircuitBreakerLayer, palisade_core::ConfigError>| r.unwrap_err().field().to_owned();
    let b = CircuitBreakerLayer::builder;
    assert_eq!(field(b().consecutive_failures(0).build()), "consecutive_failures");
    assert_eq!(field(b().failure_count(0, SEC).build()), "failure_count");
    assert_eq!(field(b().failure_count(3, Duration::ZERO).build()), "time_window");
    assert_eq!(field(b().failure_rate(0.0).build()), "failure_rate");
    assert_eq!(field(b().failure_rate(1.5).build()), "failure_rate");
    assert_eq!(field(b().failure_rate(f64::NAN).build()), "failure_rate");
    assert_eq!(field(b().count_window(0).build()), "count_window");
    assert_eq!(field(b().count_window(u32::MAX).build()), "count_window");
    assert_eq!(field(b().time_window(SEC).time_window_buckets(0).build()), "time_window_buckets");
    assert_eq!(field(b().slow_calls(Duration::ZERO, 0.5).build()), "slow_call_duration");
    assert_eq!(field(b().slow_calls(SEC, 2.0).build()), "slow_call_rate");
    assert_eq!(field(b().wait_in_open(Duration::ZERO).build()), "wait_in_open");
    assert_eq!(field(b().exponential_wait_in_open(SEC, 0.5, 2 * SEC).build()), "wait_multiplier");
    assert_eq!(field(b().exponential_wait_in_open(2 * SEC, 2.0, SEC).build()), "max_wait_in_open");
    assert_eq!(field(b().half_open_trials(0).build()), "half_open_trials");
    assert_eq!(field(b().half_open_trials(70_000).build()), "half_open_trials");
    assert_eq!(field(b().half_open_failure_ratio(0.0).build()), "half_open_failure_ratio");
    assert_eq!(field(b().open_on_retry_after(Duration::ZERO).build()), "max_retry_after");
    assert_eq!(field(b().name("").build()), "name");
    let keyed = b().keyed(|r: &u32| Some(*r)).max_keys(0).build();
    assert_eq!(keyed.unwrap_err().field(), "max_keys");
}

/// A count window counts its successes by its position counter; a success that lands after
/// a transition (not recorded in the window) and a trial's success are still counted.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn successes_are_counted_once_whichever_way_they_are_recorded() {
    let layer = CircuitBreakerLayer::builder()
        .failure_rate(0.5)
        .count_window(4)
        .minimum_calls(2)
        .wait_in_open(SEC)
        .half_open_trials(1)
        .build()
        .unwrap();
    let handle = layer.handle();
    let (mock, mut ctl) = tower_test::mock::pair::<Call, ()>();
    let mut svc = layer.layer(mock);
    ctl.allow(10);
    ready(&mut svc).await;
    let late = tower::Service::call(&mut svc, OK); // admitted while closed ...
    let (_, late_reply) = ctl.next_request().await.unwrap();
    for _ in 0..2 {
        ready(&mut svc).await;
        let f = tower::Service::call(&mut svc, FAIL);
        ctl.next_request().await.unwrap().1.send_error("boom");
        f.await.unwrap_err();
    }
    assert_eq!(handle.state(), CircuitState::Open);
    late_reply.send_response(()); // ... succeeds once open: not in the window
    late.await.unwrap();
    advance(SEC).await;
    ready(&mut svc).await;
    let trial = tower::Service::call(&mut svc, OK);
    ctl.next_request().await.unwrap().1.send_response(());
    trial.await.unwrap();
    assert_eq!(handle.state(), CircuitState::Closed);
    ready(&mut svc).await;
    let ok = tower::Service::call(&mut svc, OK);
    ctl.next_request().await.unwrap().1.send_response(());
    ok.await.unwrap();
    let s = handle.snapshot();
    assert_eq!((s.successes, s.failures), (3, 2));
}

async fn ready<S: tower::Service<Call>>(svc: &mut S)
where
    S::Error: std::fmt::Debug,
{
    std::future::poll_fn(|cx| svc.poll_ready(cx)).await.unwrap();
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_time_window_counts_every_success_once_across_rotations_and_closes() {
    // A time window counts its successes in its buckets; calls that aged out, and calls of a
    // window emptied by a reset, still count in the snapshot's success counter.
    let layer = CircuitBreakerLayer::builder()
        .failure_rate(0.5)
        .time_window(2 * SEC)
        .time_window_buckets(2)
        .minimum_calls(100)
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = layer.layer(backend(Arc::default()));
    for _ in 0..3 {
        send(&svc, OK).await.unwrap();
    }
    send(&svc, FAIL).await.unwrap_err();
    advance(5 * SEC).await; // every bucket aged out
    send(&svc, OK).await.unwrap();
    let snap = handle.snapshot();
    assert_eq!((snap.window_calls, snap.successes, snap.failures), (1, 4, 1));
    handle.reset();
    send(&svc, OK).await.unwrap();
    let snap = handle.snapshot();
    assert_eq!((snap.window_calls, snap.successes, snap.failures), (1, 5, 1));
}

/// Resilience4j's defaults (CircuitBreakerConfig.ofDefaults): failure rate threshold 50 %,
/// count window of 100, minimum 100 calls, 60 s open, 10 calls permitted half-open.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn new_is_a_breaker_with_resilience4j_defaults() {
    let layer = CircuitBreakerLayer::new();
    assert_eq!(
        format!("{:?}", CircuitBreakerLayer::default().handle().snapshot()),
        format!("{:?}", layer.handle().snapshot())
    );
    let handle = layer.handle();
    let svc = layer.layer(backend(Arc::default()));
    for _ in 0..50 {
        send(&svc, FAIL).await.unwrap_err();
    }
    for _ in 0..49 {
        send(&svc, OK).await.unwrap();
    }
    // 99 calls: below the minimum, whatever the rate.
    assert_eq!(handle.state(), CircuitState::Closed);
    send(&svc, OK).await.unwrap();
    // 100 calls, 50 % failed: the threshold is inclusive.
    assert_eq!(handle.state(), CircuitState::Open);
    assert_eq!(rejection(&send(&svc, OK).await).unwrap().retry_after(), 60 * SEC);
    advance(60 * SEC).await;
    let trials: Vec<_> = (0..10).map(|_| send_owned(svc.clone(), slow(SEC))).collect();
    let trials: Vec<_> = trials.into_iter().map(tokio::spawn).collect();
    tokio::task::yield_now().await;
    assert_eq!(handle.snapshot().trials_in_flight, 10);
    assert!(rejection(&send(&svc, OK).await).is_some(), "the 11th call is refused");
    for t in trials {
        t.await.unwrap().unwrap();
    }
    assert_eq!(handle.state(), CircuitState::Closed);
}

/// A recorded call is an event only when someone listens: a listener registered on the
/// handle (none on the builder) gets every one from then on, on a single and a keyed layer.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_listener_added_on_the_handle_gets_recorded_calls() {
    let recorded = |events: &Arc<std::sync::Mutex<Vec<CircuitBreakerEvent>>>| {
        events.lock().unwrap().iter().filter(|e| matches!(e, CircuitBreakerEvent::Recorded { .. })).count()
    };
    let layer = CircuitBreakerLayer::builder().consecutive_failures(5).build().unwrap();
    let svc = layer.layer(backend(Arc::default()));
    send(&svc, OK).await.unwrap();
    let events = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = events.clone();
    layer.handle().on_event(move |e| sink.lock().unwrap().push(e.clone()));
    send(&svc, OK).await.unwrap();
    send(&svc, FAIL).await.unwrap_err();
    assert_eq!(recorded(&events), 2);

    let keyed = CircuitBreakerLayer::builder()
        .consecutive_failures(5)
        .keyed(|c: &Call| Some(c.fail))
        .build()
        .unwrap();
    let svc = keyed.layer(backend(Arc::default()));
    let events = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = events.clone();
    keyed.handle().on_event(move |e| sink.lock().unwrap().push(e.clone()));
    send(&svc, OK).await.unwrap();
    assert_eq!(recorded(&events), 1);
}
