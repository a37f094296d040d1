#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::float_cmp,
    clippy::items_after_statements,
    missing_docs
)]

mod support;

use std::time::Duration;

use palisade_core::classify::{classify_fn, Classification};
use palisade_core::BoxError;
use palisade_retry::hedge::{HedgeBuilder, HedgeLayer};
use palisade_retry::{GiveUpReason, RetryBudget, RetryEvent};
use support::{err, ms, Events, Scripted, Step};
use tokio::time::Instant;
use tokio_test::{assert_pending, task};
use tower::{Layer, Service, ServiceExt};

fn builder() -> HedgeBuilder {
    HedgeLayer::builder().budget(RetryBudget::unlimited())
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_fast_hedge_wins_and_the_slow_attempt_is_dropped() {
    let start = Instant::now();
    let svc = Scripted::new([Step::Ok(1, ms(1000)), Step::Ok(2, ms(10))]);
    let events = Events::default();
    let layer = builder().max_attempts(2).delay(ms(50)).on_event(events.listener()).build().unwrap();
    let handle = layer.handle();
    assert_eq!(layer.layer(svc.clone()).oneshot(7).await.unwrap(), 2);
    assert_eq!(start.elapsed(), ms(60));
    assert_eq!(svc.call_times(), [ms(0), ms(50)]);
    assert_eq!(svc.requests(), [7, 7]);
    assert_eq!(svc.dropped(), 1, "the slow attempt was cancelled");
    assert_eq!(handle.snapshot().hedges, 1);
    assert!(events.all().contains(&RetryEvent::HedgeStarted { attempt: 2 }));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn no_hedge_when_the_first_answer_is_fast() {
    let svc = Scripted::new([Step::Ok(1, ms(10))]);
    let layer = builder().max_attempts(3).delay(ms(50)).build().unwrap();
    assert_eq!(layer.layer(svc.clone()).oneshot(1).await.unwrap(), 1);
    assert_eq!(svc.calls(), 1);
    assert_eq!(layer.handle().snapshot().hedges, 0);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn up_to_max_attempts_run_at_once() {
    let svc = Scripted::new([Step::Hang, Step::Hang, Step::Ok(3, ms(10))]);
    let layer = builder().max_attempts(3).delay(ms(20)).build().unwrap();
    assert_eq!(layer.layer(svc.clone()).oneshot(1).await.unwrap(), 3);
    assert_eq!(svc.call_times(), [ms(0), ms(20), ms(40)]);
    assert_eq!(svc.dropped(), 2);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn parallel_mode_sends_every_attempt_at_once() {
    let svc = Scripted::new([Step::Ok(1, ms(30)), Step::Ok(2, ms(10)), Step::Ok(3, ms(20))]);
    let layer = builder().max_attempts(3).parallel().build().unwrap();
    assert_eq!(layer.layer(svc.clone()).oneshot(1).await.unwrap(), 2);
    assert_eq!(svc.call_times(), [ms(0); 3]);
    assert_eq!(svc.dropped(), 2);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn fallback_mode_sends_the_next_only_after_a_failure() {
    let svc = Scripted::new([Step::Err("a", ms(30)), Step::Err("b", ms(10)), Step::Ok(3, ms(5))]);
    let layer = builder().max_attempts(3).fallback().build().unwrap();
    assert_eq!(layer.layer(svc.clone()).oneshot(1).await.unwrap(), 3);
    assert_eq!(svc.call_times(), [ms(0), ms(30), ms(40)]);
    assert_eq!(svc.dropped(), 0);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_non_fatal_failure_lets_the_others_go_on_and_sends_the_next_at_once() {
    let svc = Scripted::new([Step::Ok(1, ms(100)), Step::Err("unavailable", ms(5)), Step::Ok(3, ms(500))]);
    let layer = builder().max_attempts(3).delay(ms(20)).build().unwrap();
    assert_eq!(layer.layer(svc.clone()).oneshot(1).await.unwrap(), 1);
    // The second attempt failed at 25 ms: the third went at once, not at 45 ms.
    assert_eq!(svc.call_times(), [ms(0), ms(20), ms(25)]);
    assert_eq!(svc.dropped(), 1);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_fatal_failure_is_returned_at_once_and_cancels_the_others() {
    let svc = Scripted::new([Step::Ok(1, ms(100)), Step::Err("fatal", ms(5))]);
    let classifier = classify_fn(|r: &Result<u32, BoxError>| match r {
        Ok(_) => Classification::success(),
        Err(_) => Classification::failure(),
    });
    let layer = builder().max_attempts(2).delay(ms(20)).classifier(classifier).build().unwrap();
    let err = layer.layer(svc.clone()).oneshot(1).await.unwrap_err();
    assert_eq!(err.to_string(), "fatal");
    assert_eq!(svc.dropped(), 1);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn when_every_attempt_fails_the_last_failure_is_returned() {
    let svc = Scripted::new([Step::Err("a", ms(30)), Step::Err("b", ms(30))]);
    let events = Events::default();
    let layer = builder().max_attempts(2).delay(ms(10)).on_event(events.listener()).build().unwrap();
    let err = layer.layer(svc.clone()).oneshot(1).await.unwrap_err();
    assert_eq!(err.to_string(), "b");
    assert!(events
        .all()
        .contains(&RetryEvent::GaveUp { attempts: 2, reason: GiveUpReason::AttemptsExhausted }));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn hedges_draw_from_the_budget() {
    // No floor and no ratio: no hedge may ever start.
    let budget = RetryBudget::ratio(Duration::from_secs(10), 0, 0.0).unwrap();
    let svc = Scripted::new([Step::Ok(1, ms(100))]);
    let events = Events::default();
    let layer =
        HedgeLayer::builder().budget(budget).delay(ms(10)).on_event(events.listener()).build().unwrap();
    assert_eq!(layer.layer(svc.clone()).oneshot(1).await.unwrap(), 1);
    assert_eq!(svc.calls(), 1);
    assert_eq!(layer.handle().snapshot().budget_exhausted, 1);
    assert!(events.all().contains(&RetryEvent::BudgetExhausted { attempt: 2 }));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_delay_follows_the_observed_percentile() {
    let layer = builder().max_attempts(2).delay(ms(500)).latency_percentile(0.5).build().unwrap();
    let handle = layer.handle();
    assert_eq!(handle.current_delay(), Some(ms(500)));
    for _ in 0..16 {
        let svc = Scripted::new([Step::Ok(1, ms(40))]);
        layer.layer(svc).oneshot(1).await.unwrap();
    }
    assert_eq!(handle.current_delay(), Some(ms(40)));
    // Now a slow first attempt is hedged after 40 ms.
    let svc = Scripted::new([Step::Hang, Step::Ok(2, ms(1))]);
    assert_eq!(layer.layer(svc.clone()).oneshot(1).await.unwrap(), 2);
    assert_eq!(svc.call_times(), [ms(0), ms(40)]);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn dropping_the_future_drops_every_attempt() {
    let svc = Scripted::new([Step::Hang, Step::Hang]);
    let layer = builder().max_attempts(2).delay(ms(10)).build().unwrap();
    let mut service = layer.layer(svc.clone());
    service.ready().await.unwrap();
    let mut fut = task::spawn(service.call(1));
    assert_pending!(fut.poll());
    tokio::time::advance(ms(10)).await;
    assert_pending!(fut.poll());
    assert_eq!(svc.calls(), 2);
    drop(fut);
    assert_eq!(svc.dropped(), 2);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_request_that_cannot_be_copied_is_not_hedged() {
    let svc = Scripted::new([Step::Ok(1, ms(100))]);
    let layer = builder().delay(ms(10)).replay_fn(|_: &u32| None).build().unwrap();
    assert_eq!(layer.layer(svc.clone()).oneshot(1).await.unwrap(), 1);
    assert_eq!(svc.calls(), 1);
    let _ = err("unused");
}

#[test]
fn bad_settings_are_refused() {
    assert_eq!(HedgeLayer::builder().max_attempts(0).build().unwrap_err().field(), "max_attempts");
    assert_eq!(HedgeLayer::builder().max_attempts(101).build().unwrap_err().field(), "max_attempts");
    assert_eq!(HedgeLayer::builder().max_attempts(u32::MAX).build().unwrap_err().field(), "max_attempts");
    assert!(HedgeLayer::builder().max_attempts(100).build().is_ok());
    assert_eq!(
        HedgeLayer::builder().latency_percentile(1.5).build().unwrap_err().field(),
        "latency_percentile"
    );
}

/// Issue 14.3: a zero hedge delay is parallel mode (every attempt at once), not refused.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_zero_delay_is_parallel_mode() {
    let svc = Scripted::new([Step::Ok(1, ms(30)), Step::Ok(2, ms(20)), Step::Ok(3, ms(10))]);
    let layer = builder().max_attempts(3).delay(Duration::ZERO).build().unwrap();
    assert_eq!(layer.handle().current_delay(), None, "parallel: no delay");
    assert_eq!(layer.layer(svc.clone()).oneshot(1).await.unwrap(), 3);
    assert_eq!(svc.call_times(), [ms(0), ms(0), ms(0)]);
}

/// A gRPC-shaped service: each call answers its scripted `(after, grpc-status, pushback)`.
fn grpc_script(
    script: Vec<(Duration, &'static str, Option<&'static str>)>,
) -> (
    impl Service<
            u32,
            Response = http::Response<()>,
            Error = BoxError,
            Future = impl std::future::Future<Output = Result<http::Response<()>, BoxError>>,
        > + Clone,
    std::sync::Arc<std::sync::Mutex<Vec<Instant>>>,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let dropped = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let calls = log.clone();
    let drops = dropped.clone();
    let script = std::sync::Arc::new(std::sync::Mutex::new(script.into_iter()));
    let svc = tower::service_fn(move |_req: u32| {
        calls.lock().unwrap().push(Instant::now());
        let (after, code, pushback) =
            script.lock().unwrap().next().unwrap_or((Duration::from_secs(3600), "0", None));
        struct Guard(std::sync::Arc<std::sync::atomic::AtomicUsize>, bool);
        impl Drop for Guard {
            fn drop(&mut self) {
                if !self.1 {
                    self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
            }
        }
        let guard = Guard(drops.clone(), false);
        async move {
            let mut guard = guard;
            tokio::time::sleep(after).await;
            guard.1 = true;
            let mut res = http::Response::builder().header("grpc-status", code);
            if let Some(p) = pushback {
                res = res.header("grpc-retry-pushback-ms", p);
            }
            Ok::<_, BoxError>(res.body(()).unwrap())
        }
    });
    (svc, log, dropped)
}

/// Issue 14.2 (gRFC A6 hedging): max 3 attempts, 100 ms hedge delay; the primary answers OK
/// at 1 s; the hedge answers UNAVAILABLE with pushback -1 at 150 ms. "Do not retry" stops
/// new hedges but the primary goes on: the caller gets its OK at 1 s. Before the fix it got
/// the UNAVAILABLE at 150 ms and the primary was cancelled.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_do_not_retry_pushback_stops_new_hedges_but_keeps_the_primary() {
    let start = Instant::now();
    let (svc, log, dropped) =
        grpc_script(vec![(ms(1000), "0", None), (ms(50), "14", Some("-1")), (ms(1), "0", None)]);
    let budget = RetryBudget::token_bucket(10, 0.1).unwrap();
    let layer = HedgeLayer::builder()
        .budget(budget.clone())
        .classifier(palisade_core::classify::GrpcClassifier::new())
        .max_attempts(3)
        .delay(ms(100))
        .build()
        .unwrap();
    let res = layer.layer(svc).oneshot(1).await.unwrap();
    assert_eq!(res.headers()["grpc-status"], "0");
    assert_eq!(start.elapsed(), ms(1000));
    let calls: Vec<Duration> = log.lock().unwrap().iter().map(|t| t.duration_since(start)).collect();
    assert_eq!(calls, [ms(0), ms(100)], "no third attempt after the server said not to retry");
    assert_eq!(dropped.load(std::sync::atomic::Ordering::SeqCst), 0, "the primary was not cancelled");
    assert!((budget.remaining() - 9.1).abs() < 1e-9, "the pushback cost a token, the OK gave 0.1 back");
}

/// A pushback of n ms on a non-fatal failure delays the next hedge by n ms (not at once,
/// not after the hedge delay).
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_pushback_delays_the_next_hedge() {
    let start = Instant::now();
    let (svc, log, _) =
        grpc_script(vec![(ms(5000), "0", None), (ms(50), "14", Some("300")), (ms(10), "0", None)]);
    let layer = builder()
        .classifier(palisade_core::classify::GrpcClassifier::new())
        .max_attempts(3)
        .delay(ms(100))
        .build()
        .unwrap();
    let res = layer.layer(svc).oneshot(1).await.unwrap();
    assert_eq!(res.headers()["grpc-status"], "0");
    let calls: Vec<Duration> = log.lock().unwrap().iter().map(|t| t.duration_since(start)).collect();
    assert_eq!(calls, [ms(0), ms(100), ms(450)]);
    assert_eq!(start.elapsed(), ms(460));
}

/// A fatal status still ends the call at once and cancels the others, pushback or not.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_fatal_status_with_a_pushback_cancels_the_others() {
    let start = Instant::now();
    let (svc, _, dropped) = grpc_script(vec![(ms(1000), "0", None), (ms(50), "13", Some("-1"))]);
    let layer = builder()
        .classifier(palisade_core::classify::GrpcClassifier::new())
        .max_attempts(3)
        .delay(ms(100))
        .build()
        .unwrap();
    let res = layer.layer(svc).oneshot(1).await.unwrap();
    assert_eq!(res.headers()["grpc-status"], "13");
    assert_eq!(start.elapsed(), ms(150));
    assert_eq!(dropped.load(std::sync::atomic::Ordering::SeqCst), 1);
}

/// When every attempt in flight fails after "do not retry", the last failure is returned.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn after_do_not_retry_the_last_failure_is_returned_when_all_fail() {
    let events = Events::default();
    let (svc, log, _) = grpc_script(vec![(ms(200), "14", None), (ms(50), "14", Some("-1"))]);
    let layer = builder()
        .classifier(palisade_core::classify::GrpcClassifier::new())
        .max_attempts(5)
        .delay(ms(100))
        .on_event(events.listener())
        .build()
        .unwrap();
    let res = layer.layer(svc).oneshot(1).await.unwrap();
    assert_eq!(res.headers()["grpc-status"], "14");
    assert_eq!(log.lock().unwrap().len(), 2);
    assert!(events.all().contains(&RetryEvent::GaveUp { attempts: 2, reason: GiveUpReason::NonRetryable }));
}

/// Issue 15.1: a huge hedge delay saturates instead of panicking.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_huge_delay_never_panics() {
    let svc = Scripted::new([Step::Ok(1, ms(10))]);
    let layer = builder().max_attempts(2).delay(Duration::MAX).build().unwrap();
    assert_eq!(layer.layer(svc.clone()).oneshot(1).await.unwrap(), 1);
    let layer = builder()
        .max_attempts(2)
        .delay(ms(1))
        .latency_percentile(0.9)
        .mode(palisade_retry::hedge::HedgeMode::Percentile {
            percentile: 0.5,
            fallback: Duration::MAX,
            min_samples: u32::MAX,
        })
        .build()
        .unwrap();
    assert_eq!(layer.layer(svc).oneshot(1).await.unwrap(), 1);
}

/// grpc-java `RetriableStreamTest.hedging_pushback_positive`, with its numbers (hedging delay
/// 100 s): attempt 1 fails non-fatally at 100 s with a pushback of 101 s, so the next hedge
/// starts at 201 s, not at 200 s; attempt 2 fails non-fatally at 201 s with a pushback of 99 s,
/// so the next starts at 300 s (not at 301 s, the hedging delay after 201 s); attempt 4
/// answers a fatal status, which commits it and cancels attempt 3. (grpc-java closes each
/// stream just after the hedge of the same instant started; here each answer comes 1 ms
/// later for the same order, since an answer and a due hedge at the same instant are taken
/// answer first.)
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn grpc_java_hedging_pushback_positive() {
    let start = Instant::now();
    let s = Duration::from_secs;
    let ms = Duration::from_millis;
    let (svc, log, dropped) = grpc_script(vec![
        (s(100) + ms(1), "14", Some("101000")),
        (s(101) + ms(2), "14", Some("99000")),
        (s(3600), "0", None),
        (Duration::ZERO, "13", None),
    ]);
    let layer = builder()
        .classifier(palisade_core::classify::GrpcClassifier::new())
        .max_attempts(5)
        .delay(s(100))
        // grpc-java honours any pushback; palisade caps it (30 s by default).
        .max_retry_after(s(3600))
        .build()
        .unwrap();
    let res = layer.layer(svc).oneshot(1).await.unwrap();
    assert_eq!(res.headers()["grpc-status"], "13");
    let calls: Vec<Duration> = log.lock().unwrap().iter().map(|t| t.duration_since(start)).collect();
    assert_eq!(calls, [s(0), s(100), s(201) + ms(1), s(300) + ms(2)]);
    assert_eq!(start.elapsed(), s(300) + ms(2));
    assert_eq!(dropped.load(std::sync::atomic::Ordering::SeqCst), 1, "attempt 3 cancelled by the commit");
}
