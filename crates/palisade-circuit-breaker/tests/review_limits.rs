//! Review: more cases of issue 14's breaker kinds — the half-open period's end on a timer
//! (as Resilience4j's `HalfOpenState` schedules `toOpenState` after
//! `maxWaitDurationInHalfOpenState`), manual states and resets, and keyed churn.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::float_cmp, missing_docs)]

mod support;

use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade_circuit_breaker::{CircuitBreakerEvent, CircuitBreakerLayer, CircuitState, TransitionReason};
use palisade_core::rejection::KeySetFull;
use support::{backend, recorder, rejection, send, FAIL, OK};
use tokio::time::{advance, Instant};
use tower::Layer;

const SEC: Duration = Duration::from_secs(1);

/// Transitions with the time they were published at (seconds since `start`).
fn timed(
    events: &Arc<Mutex<Vec<(Duration, CircuitBreakerEvent)>>>,
) -> Vec<(u64, CircuitState, CircuitState, TransitionReason)> {
    events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|(at, e)| match e {
            CircuitBreakerEvent::StateTransition { from, to, reason, .. } => {
                Some((at.as_secs(), *from, *to, *reason))
            }
            _ => None,
        })
        .collect()
}

async fn settle() {
    for _ in 0..4 {
        tokio::task::yield_now().await;
    }
}

/// Resilience4j `HalfOpenState`: with `maxWaitDurationInHalfOpenState` set, a scheduler
/// moves a half-open breaker whose trials did not decide back to open when that time is up,
/// whether or not a call comes. With `automatic_transition_to_half_open` (palisade's "move
/// on timers" switch) an idle breaker must do the same: open at 0 s (wait 5 s), half-open
/// at 5 s, back to open at 8 s (half-open for at most 3 s, nobody called), half-open again
/// at 13 s — each transition published at its time, for dashboards.
///
/// Before the fix the breaker stayed half-open (state and snapshot) until the next call,
/// however long that took, and the `HalfOpenTimedOut` transition was published then.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn an_idle_half_open_breaker_reopens_on_time_with_automatic_transitions() {
    let start = Instant::now();
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let layer = CircuitBreakerLayer::builder()
        .consecutive_failures(1)
        .wait_in_open(5 * SEC)
        .max_wait_in_half_open(3 * SEC)
        .half_open_trials(1)
        .automatic_transition_to_half_open(true)
        .on_event(move |e| sink.lock().unwrap().push((start.elapsed(), e.clone())))
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = layer.layer(backend(Arc::new(AtomicUsize::new(0))));
    send(&svc, FAIL).await.unwrap_err();
    advance(5 * SEC).await;
    settle().await;
    assert_eq!(handle.state(), CircuitState::HalfOpen);
    advance(Duration::from_millis(2_999)).await;
    settle().await;
    assert_eq!(handle.state(), CircuitState::HalfOpen);
    advance(Duration::from_millis(1)).await;
    settle().await;
    assert_eq!(handle.state(), CircuitState::Open, "half-open timed out at 8 s with no call");
    assert_eq!(handle.snapshot().retry_after, Some(5 * SEC));
    advance(5 * SEC).await;
    settle().await;
    assert_eq!(handle.state(), CircuitState::HalfOpen);
    assert_eq!(
        timed(&events),
        [
            (
                0,
                CircuitState::Closed,
                CircuitState::Open,
                TransitionReason::ConsecutiveFailures { failures: 1 }
            ),
            (5, CircuitState::Open, CircuitState::HalfOpen, TransitionReason::WaitElapsed),
            (8, CircuitState::HalfOpen, CircuitState::Open, TransitionReason::HalfOpenTimedOut),
            (13, CircuitState::Open, CircuitState::HalfOpen, TransitionReason::WaitElapsed),
        ]
    );
    // A trial that decides before the deadline is not undone by the timer.
    send(&svc, OK).await.unwrap();
    assert_eq!(handle.state(), CircuitState::Closed);
    advance(10 * SEC).await;
    settle().await;
    assert_eq!(handle.state(), CircuitState::Closed);
    assert_eq!(timed(&events).len(), 5);
}

/// The same with a half-open breaker whose only trial hangs: the timer re-opens it at the
/// deadline; the hung trial's late answer then counts for nothing.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_hung_trial_is_timed_out_by_the_timer_and_its_late_answer_ignored() {
    let (builder, events) = recorder(
        CircuitBreakerLayer::builder()
            .consecutive_failures(1)
            .wait_in_open(5 * SEC)
            .max_wait_in_half_open(3 * SEC)
            .half_open_trials(1)
            .automatic_transition_to_half_open(true),
    );
    let layer = builder.build().unwrap();
    let handle = layer.handle();
    let svc = layer.layer(backend(Arc::new(AtomicUsize::new(0))));
    send(&svc, FAIL).await.unwrap_err();
    advance(5 * SEC).await;
    settle().await;
    let trial = tokio::spawn(support::send_owned(svc.clone(), support::slow(10 * SEC)));
    settle().await;
    advance(3 * SEC).await;
    settle().await;
    assert_eq!(handle.state(), CircuitState::Open);
    trial.await.unwrap().unwrap(); // answers OK at 15 s, in the next half-open period
    settle().await;
    let last = events.lock().unwrap().iter().rev().find_map(|e| match e {
        CircuitBreakerEvent::StateTransition { to, reason, .. } => Some((*to, *reason)),
        _ => None,
    });
    // At 13 s the timer moved it to half-open; the stale trial closes nothing.
    assert_eq!(last, Some((CircuitState::HalfOpen, TransitionReason::WaitElapsed)));
    assert_eq!(handle.state(), CircuitState::HalfOpen);
}

/// Resilience4j `reset()`: back to closed with fresh metrics and the first wait, whatever
/// the state (forced open here), one transition and one reset event.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn reset_from_forced_open_starts_afresh() {
    let (builder, events) = recorder(
        CircuitBreakerLayer::builder()
            .failure_rate(0.5)
            .count_window(4)
            .minimum_calls(4)
            .exponential_wait_in_open(SEC, 2.0, 60 * SEC),
    );
    let layer = builder.build().unwrap();
    let handle = layer.handle();
    let svc = layer.layer(backend(Arc::new(AtomicUsize::new(0))));
    for call in [FAIL, FAIL, OK] {
        let _ = send(&svc, call).await;
    }
    handle.force_open();
    assert!(rejection(&send(&svc, OK).await).unwrap().is_isolated());
    handle.reset();
    assert_eq!(handle.state(), CircuitState::Closed);
    let s = handle.snapshot();
    assert_eq!((s.window_calls, s.window_failures), (0, 0), "a reset empties the window");
    // Three more calls do not reach the minimum: the old ones are gone.
    for call in [FAIL, FAIL, FAIL] {
        send(&svc, call).await.unwrap_err();
    }
    assert_eq!(handle.state(), CircuitState::Closed);
    send(&svc, FAIL).await.unwrap_err();
    assert_eq!(handle.state(), CircuitState::Open);
    assert_eq!(handle.snapshot().retry_after, Some(SEC), "the first wait");
    let resets =
        events.lock().unwrap().iter().filter(|e| matches!(e, CircuitBreakerEvent::Reset { .. })).count();
    assert_eq!(resets, 1);
}

/// Keyed churn at `max_keys`: open keys are kept (a new key is refused, nothing reset); a
/// key that recovered (closed again through its trials) is forgotten for a new one.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn keyed_churn_keeps_open_keys_and_frees_recovered_ones() {
    let layer = CircuitBreakerLayer::builder()
        .consecutive_failures(1)
        .wait_in_open(10 * SEC)
        .half_open_trials(1)
        .keyed(|c: &(u32, support::Call)| Some(c.0))
        .max_keys(2)
        .build()
        .unwrap();
    let handle = layer.handle();
    let inner = tower::service_fn(|(_, c): (u32, support::Call)| async move {
        if c.fail {
            Err("boom")
        } else {
            Ok(())
        }
    });
    let svc = layer.layer(inner);
    let call = |k: u32, c: support::Call| {
        let svc = svc.clone();
        async move { tower::ServiceExt::oneshot(svc, (k, c)).await }
    };
    call(1, FAIL).await.unwrap_err();
    call(2, FAIL).await.unwrap_err();
    for k in 3..20 {
        let err = call(k, OK).await.unwrap_err();
        assert!(err.is::<KeySetFull>(), "{err}");
    }
    // Still open, still refusing: nothing was reset.
    assert!(call(1, OK).await.unwrap_err().is::<palisade_circuit_breaker::error::CircuitOpen>());
    advance(10 * SEC).await;
    call(1, OK).await.unwrap(); // key 1's trial closes it
    call(3, OK).await.unwrap(); // key 1 is like new: it makes room
    assert_eq!(handle.len(), 2);
    assert!(handle.get(&2).is_some(), "the open key is kept");
}

/// With automatic transitions and no bound on half-open (`Duration::MAX`: never), entering
/// half-open schedules no timer: a timer would sleep for ever, one more per half-open
/// period. The breaker stays half-open until its trials decide.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn an_unbounded_half_open_period_schedules_no_timer() {
    let layer = CircuitBreakerLayer::builder()
        .consecutive_failures(1)
        .wait_in_open(SEC)
        .max_wait_in_half_open(Duration::MAX)
        .automatic_transition_to_half_open(true)
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = layer.layer(backend(Arc::new(AtomicUsize::new(0))));
    let metrics = tokio::runtime::Handle::current().metrics();
    for round in 0..5 {
        send(&svc, FAIL).await.unwrap_err(); // open (a trial failing re-opens)
        advance(SEC).await;
        settle().await;
        assert_eq!(handle.state(), CircuitState::HalfOpen, "round {round}");
        assert_eq!(metrics.num_alive_tasks(), 0, "round {round}: no timer left sleeping");
    }
    advance(Duration::from_secs(86_400)).await;
    settle().await;
    assert_eq!(handle.state(), CircuitState::HalfOpen);
    // Likewise an open period without an end (opened by hand for `Duration::MAX`).
    for _ in 0..5 {
        handle.open_for(Duration::MAX);
        settle().await;
        assert_eq!(metrics.num_alive_tasks(), 0, "no timer for a wait that never ends");
    }
    assert_eq!(handle.state(), CircuitState::Open);
}

/// A keyed breaker with the default settings (failure rate, no window set): keys that come
/// and go must not fill the key set for good. Three hosts call once each (`max_keys(3)`,
/// all healthy); long after, a fourth host is served — an idle healthy key made room.
/// Before, the default window was a count window of 100 calls, which never empties, so
/// every key that ever made a call was kept and every new key was refused with
/// `KeySetFull` for ever (and `sweep` could not help): a hundred thousand hostile one-off
/// keys poisoned a default keyed layer permanently. A keyed layer without an explicit
/// window now judges over a time window of 100 s (Resilience4j's default window size, in
/// seconds), whose calls age out.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn default_keyed_breakers_forget_idle_healthy_keys() {
    let layer = CircuitBreakerLayer::builder()
        .keyed(|c: &(u32, support::Call)| Some(c.0))
        .max_keys(3)
        .build()
        .unwrap();
    let handle = layer.handle();
    let inner = tower::service_fn(|(_, c): (u32, support::Call)| async move {
        if c.fail {
            Err("boom")
        } else {
            Ok(())
        }
    });
    let svc = layer.layer(inner);
    let call = |k: u32, c: support::Call| {
        let svc = svc.clone();
        async move { tower::ServiceExt::oneshot(svc, (k, c)).await }
    };
    for k in 0..3 {
        call(k, OK).await.unwrap();
    }
    // While their calls are in the window, the keys are kept: a new one is refused.
    assert!(call(3, OK).await.unwrap_err().is::<KeySetFull>());
    advance(Duration::from_secs(101)).await;
    call(3, OK).await.unwrap();
    assert_eq!(handle.len(), 1, "the idle keys were forgotten together");
    // A key with a failure in its window is kept as long as the failure counts.
    call(3, FAIL).await.unwrap_err();
    for k in 10..12 {
        call(k, OK).await.unwrap();
    }
    advance(Duration::from_secs(50)).await;
    assert!(call(12, OK).await.unwrap_err().is::<KeySetFull>());
    assert!(handle.get(&3).is_some());
    advance(Duration::from_secs(51)).await;
    call(12, OK).await.unwrap();
    assert_eq!(handle.len(), 1);
}

/// The same for a keyed layer in consecutive mode that detects slow calls (it needs a
/// window for the slow-call rate): with no window set, idle healthy keys are forgotten
/// once their calls aged out of a 100 s time window.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn keyed_consecutive_with_slow_calls_forgets_idle_keys() {
    let layer = CircuitBreakerLayer::builder()
        .consecutive_failures(3)
        .slow_calls(SEC, 0.5)
        .keyed(|c: &(u32, support::Call)| Some(c.0))
        .max_keys(2)
        .build()
        .unwrap();
    let inner = tower::service_fn(|(_, _c): (u32, support::Call)| async move { Ok::<_, &'static str>(()) });
    let svc = layer.layer(inner);
    for k in 0..2 {
        tower::ServiceExt::oneshot(svc.clone(), (k, OK)).await.unwrap();
    }
    assert!(tower::ServiceExt::oneshot(svc.clone(), (2, OK)).await.unwrap_err().is::<KeySetFull>());
    advance(Duration::from_secs(101)).await;
    tower::ServiceExt::oneshot(svc.clone(), (2, OK)).await.unwrap();
}
