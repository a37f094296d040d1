#![allow(clippy::unwrap_used, clippy::expect_used, clippy::float_cmp, missing_docs)]
//! Issue 14.5: half-open can never be pinned and never invites a stampede; the
//! Resilience4j / Polly options (cases ported from Resilience4j's
//! `CircuitBreakerStateMachineTest`, with its numbers).

mod support;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade_circuit_breaker::{
    CircuitBreakerBuilder, CircuitBreakerEvent, CircuitBreakerLayer, CircuitState, TransitionReason,
};
use palisade_core::BoxError;
use support::{recorder, rejection};
use tokio::time::advance;
use tower::{Layer, Service, ServiceExt};

const SEC: Duration = Duration::from_secs(1);

/// What the backend does with a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Do {
    Ok,
    Fail,
    /// Never answers.
    Hang,
}

type BoxFut = Pin<Box<dyn Future<Output = Result<(), &'static str>> + Send>>;

fn backend() -> impl Service<Do, Response = (), Error = &'static str, Future = BoxFut> + Clone {
    tower::service_fn(|d: Do| -> BoxFut {
        Box::pin(async move {
            match d {
                Do::Ok => Ok(()),
                Do::Fail => Err("boom"),
                Do::Hang => std::future::pending().await,
            }
        })
    })
}

async fn send<S>(svc: &S, d: Do) -> Result<(), BoxError>
where
    S: Service<Do, Response = (), Error = BoxError> + Clone,
{
    svc.clone().oneshot(d).await
}

fn transitions(
    events: &Mutex<Vec<CircuitBreakerEvent>>,
) -> Vec<(CircuitState, CircuitState, TransitionReason)> {
    events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            CircuitBreakerEvent::StateTransition { from, to, reason, .. } => Some((*from, *to, *reason)),
            _ => None,
        })
        .collect()
}

fn hung(builder: CircuitBreakerBuilder) -> CircuitBreakerBuilder {
    builder.consecutive_failures(1).wait_in_open(10 * SEC).half_open_trials(1)
}

/// The input: `consecutive_failures(1)`, `wait_in_open(10s)`, `half_open_trials(1)`,
/// a trial that never completes; an hour later calls are not all rejected.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_trial_that_never_ends_does_not_pin_the_breaker_half_open() {
    let (builder, events) = recorder(hung(CircuitBreakerLayer::builder()));
    let layer = builder.build().unwrap();
    let handle = layer.handle();
    let mut svc = layer.layer(backend());

    send(&svc, Do::Fail).await.unwrap_err();
    advance(10 * SEC).await;
    std::future::poll_fn(|cx| svc.poll_ready(cx)).await.unwrap();
    let hung_trial = svc.call(Do::Hang); // holds the only trial slot, for ever
    assert_eq!(handle.state(), CircuitState::HalfOpen);
    assert!(rejection(&send(&svc, Do::Ok).await).is_some());

    advance(Duration::from_secs(3600)).await;
    send(&svc, Do::Ok).await.expect("an hour later, a new trial is let through");
    assert_eq!(handle.state(), CircuitState::Closed);
    assert_eq!(
        transitions(&events),
        vec![
            (CircuitState::Closed, CircuitState::Open, TransitionReason::ConsecutiveFailures { failures: 1 }),
            (CircuitState::Open, CircuitState::HalfOpen, TransitionReason::WaitElapsed),
            // 60 s (the default max wait in half-open) later: open again ...
            (CircuitState::HalfOpen, CircuitState::Open, TransitionReason::HalfOpenTimedOut),
            // ... and, the wait being long over, a new trial.
            (CircuitState::Open, CircuitState::HalfOpen, TransitionReason::WaitElapsed),
            (
                CircuitState::HalfOpen,
                CircuitState::Closed,
                TransitionReason::TrialsSucceeded { successes: 1 }
            ),
        ]
    );
    // The hung trial belongs to a period that is over: dropping it changes nothing.
    drop(hung_trial);
    assert_eq!(handle.state(), CircuitState::Closed);
    assert_eq!(handle.snapshot().trials_in_flight, 0);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn max_wait_in_half_open_reopens_for_the_next_wait_then_tries_again() {
    let layer = hung(CircuitBreakerLayer::builder()).max_wait_in_half_open(5 * SEC).build().unwrap();
    let handle = layer.handle();
    let mut svc = layer.layer(backend());
    send(&svc, Do::Fail).await.unwrap_err();
    advance(10 * SEC).await;
    std::future::poll_fn(|cx| svc.poll_ready(cx)).await.unwrap();
    let _hung = svc.call(Do::Hang);
    advance(Duration::from_millis(4_999)).await;
    assert_eq!(rejection(&send(&svc, Do::Ok).await).unwrap().retry_after(), Duration::from_millis(1));
    advance(Duration::from_millis(1)).await;
    // At 15 s the half-open period times out: open from then, for the wait (10 s).
    let open = send(&svc, Do::Ok).await;
    assert_eq!(rejection(&open).unwrap().retry_after(), 10 * SEC);
    assert_eq!(handle.state(), CircuitState::Open);
    advance(10 * SEC).await;
    send(&svc, Do::Ok).await.unwrap();
    assert_eq!(handle.state(), CircuitState::Closed);
}

/// With every trial slot taken, the hint is positive: the last open wait, or the time left
/// in half-open when that is shorter. Never `Retry-After: 0`.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_rejection_while_the_trials_decide_hints_a_positive_wait() {
    let layer = hung(CircuitBreakerLayer::builder()).build().unwrap();
    let mut svc = layer.layer(backend());
    send(&svc, Do::Fail).await.unwrap_err();
    advance(10 * SEC).await;
    std::future::poll_fn(|cx| svc.poll_ready(cx)).await.unwrap();
    let _hung = svc.call(Do::Hang);
    let hint = |r: Result<(), BoxError>| rejection(&r).unwrap().retry_after();
    assert_eq!(hint(send(&svc, Do::Ok).await), 10 * SEC);
    advance(55 * SEC).await;
    assert_eq!(hint(send(&svc, Do::Ok).await), 5 * SEC);
    advance(Duration::from_nanos(4_999_999_999)).await;
    assert_eq!(hint(send(&svc, Do::Ok).await), Duration::from_millis(1), "floored at 1 ms, never zero");
    // As an HTTP answer: `Retry-After` rounds up, so at least 1.
    let err: BoxError = palisade_core::rejection::CircuitOpen::new("b", Duration::from_millis(1)).into();
    let res = palisade_core::respond::http_response_for::<String>(&err);
    assert_eq!(res.headers()["retry-after"], "1");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn setting_the_state_the_breaker_is_in_publishes_no_transition() {
    let (builder, events) = recorder(CircuitBreakerLayer::builder().consecutive_failures(1));
    let handle = builder.build().unwrap().handle();
    handle.force_closed(); // closed already
    for _ in 0..2 {
        handle.force_open();
    }
    for _ in 0..2 {
        handle.disable();
    }
    for _ in 0..2 {
        handle.metrics_only();
    }
    for _ in 0..2 {
        handle.force_closed();
    }
    handle.reset(); // closed already: a reset event, no transition
    let t: Vec<_> = transitions(&events).into_iter().map(|(f, t, _)| (f, t)).collect();
    assert_eq!(
        t,
        vec![
            (CircuitState::Closed, CircuitState::ForcedOpen),
            (CircuitState::ForcedOpen, CircuitState::Disabled),
            (CircuitState::Disabled, CircuitState::MetricsOnly),
            (CircuitState::MetricsOnly, CircuitState::Closed),
        ]
    );
    let resets =
        events.lock().unwrap().iter().filter(|e| matches!(e, CircuitBreakerEvent::Reset { .. })).count();
    assert_eq!(resets, 1);
}

/// Resilience4j `shouldTransitionBackToOpenStateWhenFailureRateIsAboveThreshold` and
/// `shouldTransitionBackToClosedStateWhenFailureIsBelowThreshold`: 4 trials, failure rate
/// threshold 50 %, judged once all 4 ended.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn wait_for_all_trials_judges_the_trials_as_resilience4j() {
    let r4j = || {
        CircuitBreakerLayer::builder()
            .failure_rate(0.5)
            .time_window(5 * SEC)
            .minimum_calls(5)
            .half_open_trials(4)
            .wait_in_open(5 * SEC)
            .wait_for_all_trials(true)
            .build()
            .unwrap()
    };
    for (trials, end) in [
        ([Do::Fail, Do::Fail, Do::Ok, Do::Fail], CircuitState::Open),
        ([Do::Fail, Do::Ok, Do::Ok, Do::Ok], CircuitState::Closed),
    ] {
        let layer = r4j();
        let handle = layer.handle();
        let svc = layer.layer(backend());
        handle.open_for(5 * SEC);
        advance(5 * SEC).await;
        for (i, t) in trials.into_iter().enumerate() {
            let _ = send(&svc, t).await;
            if i < 3 {
                assert_eq!(handle.state(), CircuitState::HalfOpen, "decided only after the 4th trial");
            }
        }
        assert_eq!(handle.state(), end, "{trials:?}");
    }
    // palisade's default decides early: the first failed trial re-opens.
    let layer = CircuitBreakerLayer::builder().half_open_trials(4).wait_in_open(5 * SEC).build().unwrap();
    let handle = layer.handle();
    let svc = layer.layer(backend());
    handle.open_for(5 * SEC);
    advance(5 * SEC).await;
    send(&svc, Do::Fail).await.unwrap_err();
    assert_eq!(handle.state(), CircuitState::Open);
}

/// Resilience4j `shouldOpenAfterFailureRateThresholdExceeded`: a time window of 5 s,
/// minimum 5 calls, 50 %: F F F S S opens at 60 %, with one failure-rate-exceeded event;
/// the next call is not permitted (counted in the open state's own count).
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn failure_rate_exceeded_event_and_rejections_per_state_as_resilience4j() {
    let (builder, events) = recorder(
        CircuitBreakerLayer::builder()
            .failure_rate(0.5)
            .time_window(5 * SEC)
            .minimum_calls(5)
            .wait_in_open(5 * SEC),
    );
    let layer = builder.build().unwrap();
    let handle = layer.handle();
    let svc = layer.layer(backend());
    for d in [Do::Fail, Do::Fail, Do::Fail, Do::Ok] {
        let _ = send(&svc, d).await;
        assert_eq!(handle.state(), CircuitState::Closed);
    }
    send(&svc, Do::Ok).await.unwrap();
    assert_eq!(handle.state(), CircuitState::Open);
    let exceeded: Vec<f64> = events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            CircuitBreakerEvent::FailureRateExceeded { rate, .. } => Some(*rate),
            _ => None,
        })
        .collect();
    assert_eq!(exceeded, vec![0.6]);
    // Published just before the transition it causes.
    let kinds: Vec<&str> = events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| !matches!(e, CircuitBreakerEvent::Recorded { .. }))
        .map(|e| palisade_core::event::Event::kind(e))
        .collect();
    assert_eq!(kinds, vec!["failure_rate_exceeded", "state_transition"]);
    assert!(rejection(&send(&svc, Do::Ok).await).is_some());
    assert_eq!((handle.snapshot().rejected, handle.snapshot().rejected_in_state), (1, 1));

    // Resilience4j `shouldTransitionToHalfOpenAfterWaitDuration`: +3 s still open, +3 s
    // half-open with the open state's rejections (2) left behind.
    advance(3 * SEC).await;
    assert!(rejection(&send(&svc, Do::Ok).await).is_some());
    assert_eq!(handle.snapshot().rejected_in_state, 2);
    advance(3 * SEC).await;
    send(&svc, Do::Ok).await.unwrap();
    assert_eq!(handle.state(), CircuitState::HalfOpen);
    assert_eq!((handle.snapshot().rejected, handle.snapshot().rejected_in_state), (2, 0));
}

/// Resilience4j `shouldOpenAfterSlowCallRateThresholdExceeded` (slow calls of 5 s over a 4 s
/// threshold, 50 %): three slow calls of five open the breaker with a slow-call-rate event.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn slow_call_rate_exceeded_event() {
    let (builder, events) = recorder(
        CircuitBreakerLayer::builder()
            .failure_rate(0.5)
            .count_window(5)
            .minimum_calls(5)
            .slow_calls(4 * SEC, 0.5),
    );
    let layer = builder.build().unwrap();
    let handle = layer.handle();
    let svc = layer.layer(support::backend(Arc::default()));
    for call in
        [support::slow(5 * SEC), support::OK, support::slow(5 * SEC), support::OK, support::slow(5 * SEC)]
    {
        support::send(&svc, call).await.unwrap();
    }
    assert_eq!(handle.state(), CircuitState::Open);
    let slow = events.lock().unwrap().iter().any(
        |e| matches!(e, CircuitBreakerEvent::SlowCallRateExceeded { rate, .. } if (*rate - 0.6).abs() < 1e-9),
    );
    assert!(slow);
}

/// Resilience4j `shouldRecordMetricsInMetricsOnlyState`: metrics-only never opens and
/// publishes the failure-rate-exceeded event once.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn metrics_only_publishes_the_exceeded_event_once_and_never_opens() {
    let (builder, events) =
        recorder(CircuitBreakerLayer::builder().failure_rate(0.5).count_window(5).minimum_calls(5));
    let layer = builder.build().unwrap();
    let handle = layer.handle();
    handle.metrics_only();
    let svc = layer.layer(backend());
    for d in [Do::Fail, Do::Fail, Do::Fail, Do::Ok, Do::Ok, Do::Fail] {
        let _ = send(&svc, d).await;
    }
    assert_eq!(handle.state(), CircuitState::MetricsOnly);
    let n = events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| matches!(e, CircuitBreakerEvent::FailureRateExceeded { .. }))
        .count();
    assert_eq!(n, 1);
    assert_eq!(handle.snapshot().failure_rate, Some(0.6));
}

/// Resilience4j resets the metrics on entering half-open: the snapshot shows the trials.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn half_open_snapshot_shows_the_trials_not_the_closed_window() {
    let layer = CircuitBreakerLayer::builder()
        .failure_rate(0.5)
        .count_window(10)
        .minimum_calls(4)
        .half_open_trials(3)
        .wait_in_open(SEC)
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = layer.layer(backend());
    for d in [Do::Ok, Do::Fail, Do::Ok, Do::Fail] {
        let _ = send(&svc, d).await;
    }
    assert_eq!(handle.state(), CircuitState::Open);
    assert_eq!((handle.snapshot().window_calls, handle.snapshot().window_failures), (4, 2));
    advance(SEC).await;
    send(&svc, Do::Ok).await.unwrap();
    let s = handle.snapshot();
    assert_eq!(s.state, CircuitState::HalfOpen);
    assert_eq!((s.window_calls, s.window_failures, s.failure_rate), (1, 0, Some(0.0)));
    assert_eq!((s.trial_successes, s.trials_in_flight), (1, 0));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn automatic_transition_to_half_open_happens_at_the_end_of_the_wait() {
    let (builder, events) = recorder(
        CircuitBreakerLayer::builder()
            .consecutive_failures(1)
            .wait_in_open(5 * SEC)
            .automatic_transition_to_half_open(true),
    );
    let layer = builder.build().unwrap();
    let handle = layer.handle();
    let svc = layer.layer(backend());
    send(&svc, Do::Fail).await.unwrap_err();
    advance(Duration::from_millis(4_999)).await;
    tokio::task::yield_now().await;
    assert_eq!(handle.state(), CircuitState::Open);
    advance(Duration::from_millis(1)).await;
    tokio::task::yield_now().await;
    // No call needed: the timer moved it, and the event is out at that time.
    assert_eq!(handle.state(), CircuitState::HalfOpen);
    assert_eq!(
        transitions(&events).last().map(|t| (t.0, t.1)),
        Some((CircuitState::Open, CircuitState::HalfOpen))
    );
    // A breaker closed by hand before the timer fires is left alone by it.
    send(&svc, Do::Fail).await.unwrap_err(); // the trial fails: open again
    handle.force_closed();
    advance(60 * SEC).await;
    tokio::task::yield_now().await;
    assert_eq!(handle.state(), CircuitState::Closed);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn open_for_and_open_until_then_half_open_as_usual() {
    let layer = CircuitBreakerLayer::builder().consecutive_failures(5).half_open_trials(1).build().unwrap();
    let handle = layer.handle();
    let svc = layer.layer(backend());
    handle.open_for(3 * SEC);
    let r = send(&svc, Do::Ok).await;
    assert_eq!(rejection(&r).unwrap().retry_after(), 3 * SEC);
    assert!(!rejection(&r).unwrap().is_isolated());
    advance(3 * SEC).await;
    send(&svc, Do::Ok).await.unwrap();
    assert_eq!(handle.state(), CircuitState::Closed);
    handle.open_until(tokio::time::Instant::now() + 2 * SEC);
    assert_eq!(handle.snapshot().retry_after, Some(2 * SEC));
    // Re-opening by hand for another time moves the deadline.
    handle.open_for(7 * SEC);
    assert_eq!(handle.snapshot().retry_after, Some(7 * SEC));
    // Saturates instead of panicking.
    handle.open_for(Duration::MAX);
    assert_eq!(handle.state(), CircuitState::Open);
    assert_eq!(handle.snapshot().times_opened, 0, "opened by hand, not by failures");
}

/// Polly's `IsolatedCircuitException`: a breaker forced open by hand says so.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_breaker_isolated_by_hand_is_told_apart_from_one_opened_by_failures() {
    let layer = CircuitBreakerLayer::builder().consecutive_failures(1).build().unwrap();
    let handle = layer.handle();
    let svc = layer.layer(backend());
    send(&svc, Do::Fail).await.unwrap_err();
    assert!(!rejection(&send(&svc, Do::Ok).await).unwrap().is_isolated());
    handle.force_open();
    assert!(rejection(&send(&svc, Do::Ok).await).unwrap().is_isolated());
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_initial_state_comes_from_the_config() {
    let layer = CircuitBreakerLayer::builder().initial_state(CircuitState::ForcedOpen).build().unwrap();
    let handle = layer.handle();
    let svc = layer.layer(backend());
    assert_eq!(handle.state(), CircuitState::ForcedOpen);
    assert!(rejection(&send(&svc, Do::Ok).await).unwrap().is_isolated());
    handle.reset();
    assert_eq!(handle.state(), CircuitState::ForcedOpen, "reset goes back to the initial state");
    handle.force_closed();
    send(&svc, Do::Ok).await.unwrap();

    let layer = CircuitBreakerLayer::builder()
        .initial_state(CircuitState::Disabled)
        .consecutive_failures(1)
        .build()
        .unwrap();
    let svc = layer.layer(backend());
    send(&svc, Do::Fail).await.unwrap_err();
    send(&svc, Do::Ok).await.unwrap();
    assert_eq!(layer.handle().state(), CircuitState::Disabled);

    let layer = CircuitBreakerLayer::builder()
        .initial_state(CircuitState::Open)
        .wait_in_open(2 * SEC)
        .build()
        .unwrap();
    assert_eq!(layer.handle().snapshot().retry_after, Some(2 * SEC));
}

/// Issue 15.3: a listener that panics fails neither the call nor the breaker.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_panicking_listener_breaks_neither_the_call_nor_the_breaker() {
    let (builder, events) =
        recorder(CircuitBreakerLayer::builder().consecutive_failures(2).on_event(|_| panic!("listener bug")));
    let layer = builder.build().unwrap();
    let handle = layer.handle();
    handle.on_event(|e| {
        if matches!(e, CircuitBreakerEvent::Rejected { .. }) {
            panic!("another listener bug")
        }
    });
    let svc = layer.layer(backend());
    send(&svc, Do::Ok).await.unwrap();
    send(&svc, Do::Fail).await.unwrap_err();
    send(&svc, Do::Fail).await.unwrap_err();
    assert_eq!(handle.state(), CircuitState::Open);
    assert!(rejection(&send(&svc, Do::Ok).await).is_some());
    handle.force_closed();
    send(&svc, Do::Ok).await.unwrap();
    // The listener registered after the panicking one saw every transition.
    assert_eq!(transitions(&events).len(), 2);
}

/// Polly v8 `CircuitStateControllerTests`: `OnActionPreExecute_HalfOpen` (after the break
/// duration, 5 s by default, one trial passes and the next call is refused, half-open),
/// `IsolateAsync_Ok` (isolated: `IsolatedCircuitException`; closed by hand: calls pass) and
/// `OnActionFailureAsync_EnsureBreakDurationNotOverflow` (a break that would overflow the
/// clock saturates).
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn polly_half_open_isolate_and_overflow() {
    let layer = CircuitBreakerLayer::builder()
        .consecutive_failures(1)
        .half_open_trials(1)
        .wait_in_open(5 * SEC)
        .build()
        .unwrap();
    let handle = layer.handle();
    let mut svc = layer.layer(backend());
    send(&svc, Do::Fail).await.unwrap_err();
    advance(5 * SEC).await;
    std::future::poll_fn(|cx| svc.poll_ready(cx)).await.unwrap();
    let _trial = svc.call(Do::Hang);
    let refused = send(&svc, Do::Ok).await;
    assert!(rejection(&refused).is_some() && !rejection(&refused).unwrap().is_isolated());
    assert_eq!(handle.state(), CircuitState::HalfOpen);

    handle.force_open();
    assert!(rejection(&send(&svc, Do::Ok).await).unwrap().is_isolated());
    handle.force_closed();
    send(&svc, Do::Ok).await.unwrap();
    assert_eq!(handle.state(), CircuitState::Closed);

    // A break as long as the clock allows: saturates, never panics.
    let layer =
        CircuitBreakerLayer::builder().consecutive_failures(1).wait_in_open(Duration::MAX).build().unwrap();
    let svc = layer.layer(backend());
    send(&svc, Do::Fail).await.unwrap_err();
    let r = send(&svc, Do::Ok).await;
    assert!(rejection(&r).unwrap().retry_after() >= Duration::from_secs(86_400 * 365 * 30));
}

/// Review (issue 14.5, more of the kind): R4j's "wait for all trials" with one trial that
/// never ends must not pin half-open either: the max wait in half-open reopens, later a
/// new round of trials decides.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn wait_for_all_trials_with_a_hung_trial_times_out_and_tries_again() {
    let layer = CircuitBreakerLayer::builder()
        .consecutive_failures(1)
        .wait_in_open(10 * SEC)
        .half_open_trials(2)
        .wait_for_all_trials(true)
        .max_wait_in_half_open(5 * SEC)
        .build()
        .unwrap();
    let handle = layer.handle();
    let mut svc = layer.layer(backend());
    send(&svc, Do::Fail).await.unwrap_err();
    advance(10 * SEC).await;
    std::future::poll_fn(|cx| svc.poll_ready(cx)).await.unwrap();
    let hung = svc.call(Do::Hang);
    send(&svc, Do::Ok).await.unwrap();
    assert_eq!(handle.state(), CircuitState::HalfOpen, "one of two trials still running");
    let hint = rejection(&send(&svc, Do::Ok).await).unwrap().retry_after();
    assert!(hint > Duration::ZERO && hint <= 5 * SEC, "{hint:?}");
    advance(5 * SEC).await;
    let r = send(&svc, Do::Ok).await;
    assert_eq!(rejection(&r).unwrap().retry_after(), 10 * SEC, "timed out: open for the wait");
    advance(10 * SEC).await;
    send(&svc, Do::Ok).await.unwrap();
    send(&svc, Do::Ok).await.unwrap();
    assert_eq!(handle.state(), CircuitState::Closed);
    drop(hung);
    assert_eq!(handle.state(), CircuitState::Closed, "the stale trial changes nothing");
}

/// Review: `open_for` then a hung trial: the manual open goes to half-open as usual and the
/// hung trial times out like any other.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn open_for_then_a_hung_trial_does_not_pin_half_open() {
    let layer = hung(CircuitBreakerLayer::builder()).max_wait_in_half_open(3 * SEC).build().unwrap();
    let handle = layer.handle();
    let mut svc = layer.layer(backend());
    handle.open_for(2 * SEC);
    assert_eq!(rejection(&send(&svc, Do::Ok).await).unwrap().retry_after(), 2 * SEC);
    advance(2 * SEC).await;
    std::future::poll_fn(|cx| svc.poll_ready(cx)).await.unwrap();
    let _hung = svc.call(Do::Hang);
    advance(3 * SEC).await;
    let hint = rejection(&send(&svc, Do::Ok).await).unwrap().retry_after();
    assert_eq!(hint, 10 * SEC);
    advance(10 * SEC).await;
    send(&svc, Do::Ok).await.unwrap();
    assert_eq!(handle.state(), CircuitState::Closed);
}

/// Review: huge manual durations saturate (project policy) instead of panicking, and a
/// deadline already past goes straight on to half-open. Every refusal hints > 0.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn open_for_a_huge_duration_saturates_and_a_past_deadline_half_opens() {
    let layer = hung(CircuitBreakerLayer::builder()).build().unwrap();
    let handle = layer.handle();
    let svc = layer.layer(backend());
    handle.open_for(Duration::MAX);
    let hint = rejection(&send(&svc, Do::Ok).await).unwrap().retry_after();
    assert!(hint > Duration::from_secs(365 * 24 * 3600), "{hint:?}");
    advance(Duration::from_secs(3600)).await;
    assert!(rejection(&send(&svc, Do::Ok).await).is_some());
    let past = tokio::time::Instant::now() - SEC;
    handle.open_until(past);
    send(&svc, Do::Ok).await.expect("the deadline is past: a trial goes through");
    assert_eq!(handle.state(), CircuitState::Closed);
    handle.force_open();
    let hint = rejection(&send(&svc, Do::Ok).await).unwrap().retry_after();
    assert!(hint > Duration::ZERO);
}

/// Review (issue 14.5): every path back to closed restarts the exponential open wait, not
/// only a successful trial and `force_closed`: also `reset`, and leaving `metrics_only` /
/// `disable` by `force_closed`.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn every_path_to_closed_restarts_the_exponential_wait() {
    type Step = fn(&palisade_circuit_breaker::CircuitBreakerHandle);
    let paths: [(&str, Step); 4] = [
        ("reset", |h| h.reset()),
        ("force_closed", |h| h.force_closed()),
        ("metrics_only then force_closed", |h| {
            h.metrics_only();
            h.force_closed();
        }),
        ("disable then force_closed", |h| {
            h.disable();
            h.force_closed();
        }),
    ];
    for (name, path) in paths {
        let layer = CircuitBreakerLayer::builder()
            .consecutive_failures(1)
            .exponential_wait_in_open(SEC, 2.0, 64 * SEC)
            .half_open_trials(1)
            .build()
            .unwrap();
        let handle = layer.handle();
        let svc = layer.layer(backend());
        send(&svc, Do::Fail).await.unwrap_err();
        for _ in 0..3 {
            advance(handle.snapshot().retry_after.unwrap()).await;
            send(&svc, Do::Fail).await.unwrap_err();
        }
        assert_eq!(handle.snapshot().retry_after, Some(8 * SEC));
        path(&handle);
        assert_eq!(handle.state(), CircuitState::Closed, "{name}");
        send(&svc, Do::Fail).await.unwrap_err();
        assert_eq!(handle.snapshot().retry_after, Some(SEC), "{name}: the wait starts over");
    }
}
