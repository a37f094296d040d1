//! Review wave 4c: the open and half-open timers of automatic transitions must not outlive
//! the period they were set for (Resilience4j cancels `HalfOpenState`'s
//! `transitionToOpenFuture` when the breaker leaves half-open, and the open state's
//! scheduled `toHalfOpenState` on a manual transition).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use palisade_circuit_breaker::{CircuitBreakerLayer, CircuitState};
use support::{backend, send, FAIL, OK};
use tokio::time::advance;
use tower::Layer;

const SEC: Duration = Duration::from_secs(1);

async fn settle() {
    for _ in 0..4 {
        tokio::task::yield_now().await;
    }
}

/// A flapping breaker with automatic transitions: open for 1 s, half-open for at most 60 s
/// (the default), one trial closes it. Fifty rounds of fail → open → (1 s) half-open →
/// trial succeeds → closed take 50 s. Each half-open period that ends with its trial must
/// take its 60 s re-open timer with it: at most the timer of the current period is alive.
/// Before, every half-open period left its timer sleeping out its 60 s (a task and the
/// breaker's allocation through a `Weak`), fifty of them after fifty rounds: memory grew
/// with the transition rate times `max_wait_in_half_open`, per key for a keyed layer.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_decided_half_open_period_takes_its_timer_with_it() {
    let layer = CircuitBreakerLayer::builder()
        .consecutive_failures(1)
        .wait_in_open(SEC)
        .half_open_trials(1)
        .max_wait_in_half_open(Duration::from_secs(60))
        .automatic_transition_to_half_open(true)
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = layer.layer(backend(Arc::new(AtomicUsize::new(0))));
    let metrics = tokio::runtime::Handle::current().metrics();
    for round in 0..50 {
        send(&svc, FAIL).await.unwrap_err();
        assert_eq!(handle.state(), CircuitState::Open, "round {round}");
        advance(SEC).await;
        settle().await;
        assert_eq!(handle.state(), CircuitState::HalfOpen, "round {round}");
        send(&svc, OK).await.unwrap();
        assert_eq!(handle.state(), CircuitState::Closed, "round {round}");
        settle().await;
        assert_eq!(metrics.num_alive_tasks(), 0, "round {round}: a timer outlived its half-open period");
    }
}

/// Opened by hand for an hour, then reset, fifty times: each reset must end the open
/// period's half-open timer. Before, fifty tasks slept out their hour.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_reset_takes_the_open_timer_with_it() {
    let layer = CircuitBreakerLayer::builder()
        .consecutive_failures(1)
        .wait_in_open(SEC)
        .automatic_transition_to_half_open(true)
        .build()
        .unwrap();
    let handle = layer.handle();
    let _svc = layer.layer(backend(Arc::new(AtomicUsize::new(0))));
    let metrics = tokio::runtime::Handle::current().metrics();
    for round in 0..50 {
        handle.open_for(Duration::from_secs(3600));
        settle().await;
        assert_eq!(metrics.num_alive_tasks(), 1, "round {round}: the open period's timer");
        handle.reset();
        settle().await;
        assert_eq!(handle.state(), CircuitState::Closed);
        assert_eq!(metrics.num_alive_tasks(), 0, "round {round}: a timer outlived its open period");
    }
    // Re-opening by hand for another time replaces the timer too.
    for _ in 0..10 {
        handle.open_for(Duration::from_secs(3600));
    }
    settle().await;
    assert_eq!(metrics.num_alive_tasks(), 1);
    // And the timer still does its work.
    advance(Duration::from_secs(3600)).await;
    settle().await;
    assert_eq!(handle.state(), CircuitState::HalfOpen);
}

/// A keyed layer's breaker that is forgotten (removed by hand) ends its timers: keys that
/// come and go leave nothing sleeping behind them.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_forgotten_key_leaves_no_timer() {
    let layer = CircuitBreakerLayer::builder()
        .consecutive_failures(1)
        .wait_in_open(Duration::from_secs(3600))
        .automatic_transition_to_half_open(true)
        .keyed(|c: &(u32, support::Call)| Some(c.0))
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
    let metrics = tokio::runtime::Handle::current().metrics();
    for k in 0..20u32 {
        tower::ServiceExt::oneshot(svc.clone(), (k, FAIL)).await.unwrap_err();
        assert_eq!(handle.get(&k).unwrap().state(), CircuitState::Open);
        assert!(handle.remove(&k));
        settle().await;
        assert_eq!(metrics.num_alive_tasks(), 0, "key {k}: its timer outlived it");
    }
}

/// Transitions racing on four worker threads (opened by hand for an hour, reset, forced
/// closed, opened again), 4 × 500 of them: whatever the interleaving of a transition and
/// the storing of the timer of the one before, at most the timer of the period the
/// breaker ends in is left (one if it ends open, none otherwise).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_transitions_leave_at_most_the_current_timer() {
    let layer = CircuitBreakerLayer::builder()
        .consecutive_failures(1)
        .wait_in_open(SEC)
        .automatic_transition_to_half_open(true)
        .build()
        .unwrap();
    let handle = layer.handle();
    let _svc = layer.layer(backend(Arc::new(AtomicUsize::new(0))));
    let tasks: Vec<_> = (0..4)
        .map(|t| {
            let handle = handle.clone();
            tokio::spawn(async move {
                for i in 0..500 {
                    match (i + t) % 3 {
                        0 => handle.open_for(Duration::from_secs(3600)),
                        1 => handle.reset(),
                        _ => handle.open_for(Duration::from_secs(7200)),
                    }
                    if i % 8 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let metrics = tokio::runtime::Handle::current().metrics();
    let expected = usize::from(handle.state() == CircuitState::Open);
    // Aborted timers are dropped by the workers as they get to them.
    let mut alive = metrics.num_alive_tasks();
    for _ in 0..100_000 {
        if alive <= expected {
            break;
        }
        tokio::task::yield_now().await;
        alive = metrics.num_alive_tasks();
    }
    assert_eq!(alive, expected, "state {:?}", handle.state());
}

mod model {
    use super::*;
    use palisade_circuit_breaker::{CircuitBreakerEvent, TransitionReason};
    use proptest::prelude::*;
    use std::sync::Mutex;
    use tokio::time::Instant;

    #[derive(Clone, Debug)]
    enum Op {
        Call(bool),
        Advance(u64),
        OpenFor(u64),
        Reset,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => any::<bool>().prop_map(Op::Call),
            4 => (0u64..2_500).prop_map(Op::Advance),
            1 => (1u64..3_000).prop_map(Op::OpenFor),
            1 => Just(Op::Reset),
        ]
    }

    const WAIT: u64 = 1_000;
    const HALF_OPEN: u64 = 1_500;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        /// Automatic transitions under any sequence of calls, time, manual opens and
        /// resets: the breaker never stays open past its wait nor half-open past
        /// `max_wait_in_half_open` (each timer fires on time), and at most the current
        /// period's timer is alive.
        #[test]
        fn timers_fire_on_time_and_never_pile_up(ops in proptest::collection::vec(op(), 1..80)) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
            rt.block_on(async move {
                let events = Arc::new(Mutex::new(Vec::new()));
                let sink = events.clone();
                let layer = CircuitBreakerLayer::builder()
                    .consecutive_failures(1)
                    .wait_in_open(Duration::from_millis(WAIT))
                    .half_open_trials(1)
                    .max_wait_in_half_open(Duration::from_millis(HALF_OPEN))
                    .automatic_transition_to_half_open(true)
                    .on_event(move |e: &CircuitBreakerEvent| {
                        if let CircuitBreakerEvent::StateTransition { to, reason, .. } = e {
                            sink.lock().unwrap().push((Instant::now(), *to, *reason));
                        }
                    })
                    .build()
                    .unwrap();
                let handle = layer.handle();
                let svc = layer.layer(backend(Arc::new(AtomicUsize::new(0))));
                let metrics = tokio::runtime::Handle::current().metrics();
                // When the current open period ends: a failure opens for `WAIT` (from the
                // transition), a manual open for its own time (also when it re-opens an
                // open breaker, which moves the deadline silently).
                let mut open_until = None;
                let mut seen = 0;
                for op in ops {
                    match op {
                        Op::Call(ok) => drop(send(&svc, if ok { OK } else { FAIL }).await),
                        Op::Advance(ms) => advance(Duration::from_millis(ms)).await,
                        Op::OpenFor(ms) => {
                            handle.open_for(Duration::from_millis(ms));
                            open_until = Some(Instant::now() + Duration::from_millis(ms));
                            seen = events.lock().unwrap().len();
                        }
                        Op::Reset => handle.reset(),
                    }
                    settle().await;
                    prop_assert!(metrics.num_alive_tasks() <= 1, "{} timers alive", metrics.num_alive_tasks());
                    let state = handle.state();
                    for &(at, to, reason) in &events.lock().unwrap()[seen..] {
                        if to == CircuitState::Open && reason != TransitionReason::Manual {
                            open_until = Some(at + Duration::from_millis(WAIT));
                        }
                    }
                    seen = events.lock().unwrap().len();
                    let last = events.lock().unwrap().last().copied();
                    let Some((at, to, _)) = last else {
                        prop_assert_eq!(state, CircuitState::Closed);
                        continue;
                    };
                    prop_assert_eq!(state, to);
                    let since = Instant::now().saturating_duration_since(at);
                    match state {
                        CircuitState::Open => {
                            let until = open_until.unwrap();
                            prop_assert!(Instant::now() < until, "open {:?} past its end", Instant::now() - until);
                            prop_assert_eq!(metrics.num_alive_tasks(), 1);
                        }
                        CircuitState::HalfOpen => {
                            prop_assert!(since < Duration::from_millis(HALF_OPEN), "half-open for {since:?}");
                            prop_assert_eq!(metrics.num_alive_tasks(), 1);
                        }
                        _ => prop_assert_eq!(metrics.num_alive_tasks(), 0),
                    }
                }
                Ok(())
            })?;
        }
    }
}
