#![allow(clippy::unwrap_used, clippy::expect_used, clippy::float_cmp, missing_docs)]

mod support;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade_core::classify::{classify_fn, Classification, ClassifyExt, GrpcClassifier, HttpClassifier};
use palisade_core::rejection::{Throttled, TimedOut};
use palisade_core::rng::AtomicRng;
use palisade_core::{BoxError, DefaultClassifier};
use palisade_retry::replay::CloneRequest;
use palisade_retry::Retry;
use palisade_retry::{
    AdaptiveThrottle, Backoff, GiveUpReason, Jitter, RetryBudget, RetryBuilder, RetryEvent, RetryLayer,
    RetryReason,
};
use support::{err, gaps, ms, ok, Events, Scripted, Step};
use tokio::time::Instant;
use tokio_test::{assert_pending, assert_ready, assert_ready_ok, task};
use tower::limit::ConcurrencyLimit;
use tower::{Layer, Service, ServiceBuilder, ServiceExt};

fn builder() -> RetryBuilder {
    RetryLayer::builder().budget(RetryBudget::unlimited()).jitter(Jitter::None).seed(1)
}

async fn run(layer: RetryLayer, svc: &Scripted, req: u32) -> Result<u32, BoxError> {
    layer.layer(svc.clone()).oneshot(req).await
}

// === delays ===

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn exponential_delays_are_exact() {
    let svc = Scripted::new([err("boom")]);
    let layer = builder().max_attempts(5).backoff(Backoff::exponential(ms(100))).build().unwrap();
    let handle = layer.handle();
    let res = run(layer, &svc, 1).await;
    assert_eq!(res.unwrap_err().to_string(), "boom");
    assert_eq!(svc.call_times(), [ms(0), ms(100), ms(300), ms(700), ms(1500)]);
    let snap = handle.snapshot();
    assert_eq!((snap.requests, snap.attempts, snap.retries, snap.gave_up), (1, 5, 4, 1));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn every_strategy_gives_its_sequence() {
    let cases: Vec<(Backoff, [u64; 4])> = vec![
        (Backoff::fixed(ms(50)), [50, 50, 50, 50]),
        (Backoff::linear(ms(100), ms(25)), [100, 125, 150, 175]),
        (Backoff::exponential_with(ms(10), 3.0), [10, 30, 90, 270]),
        (Backoff::fibonacci(ms(100)), [100, 100, 200, 300]),
        (Backoff::custom(|n| ms(u64::from(n) * 7)), [7, 14, 21, 28]),
    ];
    for (backoff, expected) in cases {
        let svc = Scripted::new([err("boom")]);
        let layer = builder().max_attempts(5).backoff(backoff.clone()).build().unwrap();
        let _ = run(layer, &svc, 1).await;
        assert_eq!(gaps(&svc.call_times()), expected.map(ms), "{backoff:?}");
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn max_delay_caps_the_backoff() {
    let svc = Scripted::new([err("boom")]);
    let layer =
        builder().max_attempts(5).backoff(Backoff::exponential(ms(100))).max_delay(ms(250)).build().unwrap();
    let _ = run(layer, &svc, 1).await;
    assert_eq!(gaps(&svc.call_times()), [ms(100), ms(200), ms(250), ms(250)]);
}

/// The jitter formulas, replayed on an RNG with the same seed (the reference model).
fn expected_jitter(jitter: Jitter, seed: u64, base: Duration, cap: Duration, n: u32) -> Vec<Duration> {
    let rng = AtomicRng::seeded(seed);
    let nanos = |d: Duration| d.as_nanos() as u64;
    let mut prev = base;
    (1..=n)
        .map(|i| {
            let raw = (base * 2u32.pow(i - 1)).min(cap);
            let d = match jitter {
                Jitter::Full => Duration::from_nanos(rng.below(nanos(raw))),
                Jitter::Equal => {
                    let half = nanos(raw) / 2;
                    Duration::from_nanos(half + rng.below(nanos(raw) - half))
                }
                Jitter::Decorrelated => {
                    let hi = nanos(prev) * 3;
                    Duration::from_nanos(nanos(base) + rng.below(hi - nanos(base))).min(cap)
                }
                _ => raw,
            };
            prev = d;
            d
        })
        .collect()
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn jittered_delays_follow_the_seeded_rng_exactly() {
    for jitter in [Jitter::None, Jitter::Full, Jitter::Equal, Jitter::Decorrelated] {
        let svc = Scripted::new([err("boom")]);
        let events = Events::default();
        let layer = builder()
            .max_attempts(6)
            .backoff(Backoff::exponential(ms(100)))
            .max_delay(ms(1000))
            .jitter(jitter)
            .seed(99)
            .on_event(events.listener())
            .build()
            .unwrap();
        let _ = run(layer, &svc, 1).await;
        let expected = expected_jitter(jitter, 99, ms(100), ms(1000), 5);
        assert_eq!(events.delays(), expected, "{jitter:?}");
        // The timer has millisecond resolution: each attempt starts within 1 ms after its delay.
        for (gap, delay) in gaps(&svc.call_times()).into_iter().zip(expected) {
            assert!(gap >= delay && gap < delay + ms(1), "{jitter:?}: gap {gap:?} for delay {delay:?}");
        }
    }
}

// === what is retried ===

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn success_after_failures_is_returned() {
    let svc = Scripted::new([err("a"), err("b"), ok(7)]);
    let events = Events::default();
    let layer = builder().backoff(Backoff::fixed(ms(100))).on_event(events.listener()).build().unwrap();
    let handle = layer.handle();
    assert_eq!(run(layer, &svc, 1).await.unwrap(), 7);
    assert_eq!(handle.snapshot().succeeded_after_retry, 1);
    assert_eq!(
        events.all(),
        [
            RetryEvent::RetryScheduled {
                attempt: 1,
                delay: ms(100),
                reason: RetryReason::Failure,
                server_hint: None
            },
            RetryEvent::AttemptStarted { attempt: 2 },
            RetryEvent::RetryScheduled {
                attempt: 2,
                delay: ms(100),
                reason: RetryReason::Failure,
                server_hint: None
            },
            RetryEvent::AttemptStarted { attempt: 3 },
            RetryEvent::SucceededAfterRetry { attempts: 3 },
        ]
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn non_retryable_errors_return_at_once() {
    let svc = Scripted::new([err("fatal")]);
    let events = Events::default();
    let classifier = classify_fn(|r: &Result<u32, BoxError>| match r {
        Ok(_) => Classification::success(),
        Err(e) if e.to_string() == "fatal" => Classification::failure(),
        Err(_) => Classification::retryable_failure(),
    });
    let layer = builder().classifier(classifier).on_event(events.listener()).build().unwrap();
    let res = layer.layer(svc.clone()).oneshot(1).await;
    assert_eq!(res.unwrap_err().to_string(), "fatal");
    assert_eq!(svc.calls(), 1);
    assert!(events.all().contains(&RetryEvent::GaveUp { attempts: 1, reason: GiveUpReason::NonRetryable }));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn max_attempts_one_never_copies_the_request() {
    let copies = Arc::new(AtomicU32::new(0));
    let counted = copies.clone();
    let svc = Scripted::new([err("boom")]);
    let layer = builder()
        .max_attempts(1)
        .replay_fn(move |r: &u32| {
            counted.fetch_add(1, Ordering::Relaxed);
            Some(*r)
        })
        .build()
        .unwrap();
    let res = layer.layer(svc.clone()).oneshot(1).await;
    assert!(res.is_err());
    assert_eq!((svc.calls(), copies.load(Ordering::Relaxed)), (1, 0));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn request_that_cannot_be_copied_is_sent_once() {
    let svc = Scripted::new([err("boom"), ok(1)]);
    let events = Events::default();
    let layer = builder().replay_fn(|_: &u32| None).on_event(events.listener()).build().unwrap();
    let res = layer.layer(svc.clone()).oneshot(5).await;
    assert_eq!(res.unwrap_err().to_string(), "boom");
    assert_eq!(svc.calls(), 1);
    assert!(events.all().contains(&RetryEvent::GaveUp { attempts: 1, reason: GiveUpReason::NotReplayable }));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_same_request_is_sent_every_attempt() {
    let svc = Scripted::new([err("a"), err("b"), ok(1)]);
    let layer = builder().build().unwrap();
    layer.layer(svc.clone()).oneshot(42).await.unwrap();
    assert_eq!(svc.requests(), [42, 42, 42]);
}

// === HTTP and gRPC: responses, hints ===

type Log = Arc<Mutex<Vec<Instant>>>;

/// A service answering scripted HTTP responses `(status, headers)` and logging call instants.
fn http_service(
    script: Vec<(u16, Vec<(&'static str, &'static str)>)>,
) -> (
    impl Service<
            u32,
            Response = http::Response<()>,
            Error = BoxError,
            Future = impl std::future::Future<Output = Result<http::Response<()>, BoxError>> + Send,
        > + Clone,
    Log,
) {
    let log: Log = Arc::default();
    let calls = log.clone();
    let script = Arc::new(Mutex::new(script.into_iter()));
    let svc = tower::service_fn(move |_req: u32| {
        calls.lock().unwrap().push(Instant::now());
        let (status, headers) = script.lock().unwrap().next().unwrap_or((200, vec![]));
        async move {
            let mut res = http::Response::builder().status(status);
            for (k, v) in headers {
                res = res.header(k, v);
            }
            Ok::<_, BoxError>(res.body(()).unwrap())
        }
    });
    (svc, log)
}

fn offsets(log: &Log, start: Instant) -> Vec<Duration> {
    log.lock().unwrap().iter().map(|t| t.duration_since(start)).collect()
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_failed_response_is_returned_as_is_when_attempts_run_out() {
    let (svc, log) = http_service(vec![(503, vec![]); 3]);
    let layer = builder().classifier(HttpClassifier::new()).build().unwrap();
    let res = layer.layer(svc).oneshot(1).await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(log.lock().unwrap().len(), 3);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn retry_after_is_a_floor_to_the_exact_instant() {
    let start = Instant::now();
    let (svc, log) = http_service(vec![(503, vec![("retry-after", "2")]), (200, vec![])]);
    let events = Events::default();
    let layer = builder()
        .classifier(HttpClassifier::new())
        .backoff(Backoff::fixed(ms(100)))
        .on_event(events.listener())
        .build()
        .unwrap();
    let res = layer.layer(svc).oneshot(1).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(offsets(&log, start), [ms(0), ms(2000)]);
    assert!(events.all().contains(&RetryEvent::RetryScheduled {
        attempt: 1,
        delay: ms(2000),
        reason: RetryReason::Failure,
        server_hint: Some(ms(2000)),
    }));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_longer_backoff_wins_over_a_shorter_hint() {
    let start = Instant::now();
    let (svc, log) = http_service(vec![(429, vec![("retry-after", "1")]), (200, vec![])]);
    let layer =
        builder().classifier(HttpClassifier::new()).backoff(Backoff::fixed(ms(1500))).build().unwrap();
    layer.layer(svc).oneshot(1).await.unwrap();
    assert_eq!(offsets(&log, start), [ms(0), ms(1500)]);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_hint_past_the_deadline_gives_up_at_once() {
    let start = Instant::now();
    let (svc, log) = http_service(vec![(503, vec![("retry-after", "10")]), (200, vec![])]);
    let events = Events::default();
    let layer = builder()
        .classifier(HttpClassifier::new())
        .deadline(Duration::from_secs(5))
        .on_event(events.listener())
        .build()
        .unwrap();
    let res = layer.layer(svc).oneshot(1).await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(start.elapsed(), Duration::ZERO, "gave up without waiting");
    assert_eq!(log.lock().unwrap().len(), 1);
    assert!(events
        .all()
        .contains(&RetryEvent::GaveUp { attempts: 1, reason: GiveUpReason::DeadlineExceeded }));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_hint_above_max_retry_after_gives_up() {
    let (svc, log) = http_service(vec![(503, vec![("retry-after", "120")]), (200, vec![])]);
    let events = Events::default();
    let layer = builder().classifier(HttpClassifier::new()).on_event(events.listener()).build().unwrap();
    let res = layer.layer(svc).oneshot(1).await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(log.lock().unwrap().len(), 1);
    assert!(events.all().contains(&RetryEvent::GaveUp { attempts: 1, reason: GiveUpReason::HintTooLong }));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn grpc_pushback_is_exact_and_negative_means_never() {
    let start = Instant::now();
    let (svc, log) = http_service(vec![
        (200, vec![("grpc-status", "14"), ("grpc-retry-pushback-ms", "300")]),
        (200, vec![("grpc-status", "14"), ("grpc-retry-pushback-ms", "-1")]),
        (200, vec![("grpc-status", "0")]),
    ]);
    let layer = builder()
        .classifier(GrpcClassifier::new())
        .max_attempts(5)
        .backoff(Backoff::fixed(ms(1)))
        .build()
        .unwrap();
    let res = layer.layer(svc).oneshot(1).await.unwrap();
    assert_eq!(res.headers()["grpc-status"], "14");
    assert_eq!(offsets(&log, start), [ms(0), ms(300)]);
}

// === deadlines ===

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn attempt_timeout_drops_the_attempt_and_retries() {
    let svc = Scripted::new([Step::Hang, Step::Hang, Step::Hang]);
    let events = Events::default();
    let layer = builder()
        .backoff(Backoff::fixed(ms(100)))
        .attempt_timeout(ms(1000))
        .on_event(events.listener())
        .build()
        .unwrap();
    let handle = layer.handle();
    let err = run(layer, &svc, 1).await.unwrap_err();
    assert_eq!(err.downcast_ref::<TimedOut>().unwrap().after(), ms(1000));
    assert_eq!(svc.call_times(), [ms(0), ms(1100), ms(2200)]);
    assert_eq!(svc.dropped(), 3);
    assert_eq!(handle.snapshot().attempt_timeouts, 3);
    assert!(events
        .all()
        .iter()
        .any(|e| matches!(e, RetryEvent::RetryScheduled { reason: RetryReason::AttemptTimedOut, .. })));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn attempt_timeout_then_success() {
    let svc = Scripted::new([Step::Hang, Step::Ok(9, ms(10))]);
    let layer = builder().backoff(Backoff::fixed(ms(100))).attempt_timeout(ms(500)).build().unwrap();
    assert_eq!(run(layer, &svc, 1).await.unwrap(), 9);
    assert_eq!(svc.call_times(), [ms(0), ms(600)]);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn total_deadline_cancels_the_attempt_in_flight() {
    let start = Instant::now();
    let svc = Scripted::new([err("a"), Step::Hang]);
    let layer = builder()
        .backoff(Backoff::fixed(ms(100)))
        .attempt_timeout(ms(1000))
        .deadline(ms(500))
        .build()
        .unwrap();
    let handle = layer.handle();
    let err = run(layer, &svc, 1).await.unwrap_err();
    assert_eq!(err.downcast_ref::<TimedOut>().unwrap().after(), ms(500));
    assert_eq!(start.elapsed(), ms(500));
    assert_eq!(svc.call_times(), [ms(0), ms(100)]);
    assert_eq!(svc.dropped(), 1);
    assert_eq!(handle.snapshot().deadline_exceeded, 1);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_wait_that_would_pass_the_deadline_is_not_started() {
    let start = Instant::now();
    let svc = Scripted::new([err("boom"), ok(1)]);
    let layer = builder().backoff(Backoff::fixed(ms(1000))).deadline(ms(500)).build().unwrap();
    let err = run(layer, &svc, 1).await.unwrap_err();
    assert_eq!(err.to_string(), "boom");
    assert_eq!(start.elapsed(), Duration::ZERO);
}

// === budget and throttle ===

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_budget_caps_retries_under_a_failing_backend() {
    let svc = Scripted::new([err("down")]);
    let budget = RetryBudget::ratio(Duration::from_secs(10), 1, 0.2).unwrap();
    let events = Events::default();
    let layer = RetryLayer::builder()
        .budget(budget)
        .max_attempts(3)
        .backoff(Backoff::fixed(ms(1)))
        .on_event(events.listener())
        .build()
        .unwrap();
    let handle = layer.handle();
    let service = layer.layer(svc.clone());
    for i in 0..100 {
        let res = service.clone().oneshot(i).await;
        assert_eq!(res.unwrap_err().to_string(), "down", "the last error is returned");
    }
    let snap = handle.snapshot();
    // ratio × requests + floor × ttl
    assert!(snap.retries <= 20 + 10, "{snap:?}");
    assert!(snap.budget_exhausted > 0);
    assert_eq!(svc.calls() as u64, 100 + snap.retries);
    assert!(events.all().iter().any(|e| matches!(e, RetryEvent::BudgetExhausted { .. })));
    assert!(events
        .all()
        .iter()
        .any(|e| matches!(e, RetryEvent::GaveUp { reason: GiveUpReason::BudgetExhausted, .. })));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_token_bucket_stops_retries_at_half() {
    let svc = Scripted::new([err("down")]);
    let layer = RetryLayer::builder()
        .budget(RetryBudget::token_bucket(10, 0.1).unwrap())
        .max_attempts(3)
        .backoff(Backoff::fixed(ms(1)))
        .build()
        .unwrap();
    let handle = layer.handle();
    let service = layer.layer(svc.clone());
    for i in 0..10 {
        let _ = service.clone().oneshot(i).await;
    }
    // Tokens: 10 → each failed attempt takes one; retries stop once 5 or fewer remain.
    // Request 1: 9 (retry), 8 (retry), 7. Request 2: 6 (retry), 5 (no more retries).
    assert_eq!(handle.snapshot().retries, 3);
    assert_eq!(handle.budget().remaining(), 0.0);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn one_budget_can_be_shared_by_two_layers() {
    let budget = RetryBudget::ratio(Duration::from_secs(1), 1, 0.0).unwrap(); // one retry per second
    let a = RetryLayer::builder().budget(budget.clone()).backoff(Backoff::fixed(ms(1))).build().unwrap();
    let b = RetryLayer::builder().budget(budget.clone()).backoff(Backoff::fixed(ms(1))).build().unwrap();
    let svc_a = Scripted::new([err("x"), ok(1)]);
    let svc_b = Scripted::new([err("x"), ok(1)]);
    assert!(a.layer(svc_a.clone()).oneshot(1).await.is_ok());
    assert!(b.layer(svc_b.clone()).oneshot(1).await.is_err());
    assert!(b.handle().budget().ptr_eq(&budget));
    assert_eq!((svc_a.calls(), svc_b.calls()), (2, 1));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_throttle_refuses_locally_once_the_backend_refuses() {
    let throttle = AdaptiveThrottle::builder().k(2.0).seed(3).build().unwrap();
    for _ in 0..100 {
        let _ = throttle.try_acquire();
        throttle.record(false);
    }
    let svc = Scripted::new([ok(1)]);
    let layer = builder().throttle(throttle.clone()).build().unwrap();
    let handle = layer.handle();
    let service = layer.layer(svc.clone());
    let mut refused = 0;
    for i in 0..50 {
        match service.clone().oneshot(i).await {
            Ok(_) => {}
            Err(e) => {
                assert!(e.is::<Throttled>());
                refused += 1;
            }
        }
    }
    assert_eq!(handle.snapshot().throttled, refused);
    assert_eq!(svc.calls() as u64, 50 - refused);
    // p starts near 100/101 and falls as calls are accepted.
    assert!(refused >= 25, "refused {refused}");
}

// === tower contract ===

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn dropping_the_future_mid_backoff_cancels_the_retry() {
    let svc = Scripted::new([err("a"), ok(1)]);
    let layer = builder().backoff(Backoff::fixed(ms(1000))).build().unwrap();
    let mut service = layer.layer(svc.clone());
    service.ready().await.unwrap();
    let mut fut = task::spawn(service.call(1));
    assert_pending!(fut.poll());
    assert_eq!(svc.calls(), 1);
    drop(fut);
    tokio::time::advance(ms(5000)).await;
    assert_eq!(svc.calls(), 1);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn dropping_the_future_mid_attempt_cancels_the_inner_call() {
    let svc = Scripted::new([Step::Hang]);
    let mut service = builder().build().unwrap().layer(svc.clone());
    service.ready().await.unwrap();
    let mut fut = task::spawn(service.call(1));
    assert_pending!(fut.poll());
    drop(fut);
    assert_eq!(svc.dropped(), 1);
}

fn limited(svc: &Scripted) -> Retry<ConcurrencyLimit<Scripted>, DefaultClassifier, CloneRequest> {
    builder().backoff(Backoff::fixed(ms(10))).build().unwrap().layer(ConcurrencyLimit::new(svc.clone(), 1))
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn poll_ready_reserves_the_inner_capacity_without_calling() {
    let svc = Scripted::new([ok(1)]);
    let mut a = limited(&svc);
    let mut b = a.clone();
    let mut ra = task::spawn(());
    let mut rb = task::spawn(());
    assert_ready_ok!(ra.enter(|cx, _| a.poll_ready(cx)));
    assert_pending!(rb.enter(|cx, _| b.poll_ready(cx)));
    // Dropping the service that reserved frees the slot.
    drop(a);
    assert!(rb.is_woken());
    assert_ready_ok!(rb.enter(|cx, _| b.poll_ready(cx)));
    assert_eq!(svc.calls(), 0);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn dropping_the_response_future_frees_the_capacity() {
    let svc = Scripted::new([Step::Hang]);
    let mut a = limited(&svc);
    let mut b = a.clone();
    a.ready().await.unwrap();
    let mut fut = task::spawn(a.call(1));
    assert_pending!(fut.poll());
    let mut rb = task::spawn(());
    assert_pending!(rb.enter(|cx, _| b.poll_ready(cx)));
    drop(fut);
    assert!(rb.is_woken());
    assert_ready_ok!(rb.enter(|cx, _| b.poll_ready(cx)));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn an_error_frees_the_capacity() {
    let svc = Scripted::new([err("x")]);
    let mut a = limited(&svc);
    let mut b = a.clone();
    let res = a.ready().await.unwrap().call(1).await;
    assert!(res.is_err());
    let mut rb = task::spawn(());
    assert_ready_ok!(rb.enter(|cx, _| b.poll_ready(cx)));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn retries_wait_for_capacity_and_waiters_are_woken_in_order() {
    let svc = Scripted::new([Step::Err("x", ms(5)), Step::Ok(1, ms(5))]);
    let mut a = limited(&svc);
    let mut b = a.clone();
    let mut c = a.clone();
    a.ready().await.unwrap();
    let mut fut = task::spawn(a.call(1));
    assert_pending!(fut.poll());
    let mut rb = task::spawn(());
    let mut rc = task::spawn(());
    assert_pending!(rb.enter(|cx, _| b.poll_ready(cx)));
    assert_pending!(rc.enter(|cx, _| c.poll_ready(cx)));
    // The first attempt fails and frees its slot: the first waiter gets it, not the retry.
    tokio::time::advance(ms(5)).await;
    assert_pending!(fut.poll());
    assert!(rb.is_woken());
    assert_ready_ok!(rb.enter(|cx, _| b.poll_ready(cx)));
    assert_pending!(rc.enter(|cx, _| c.poll_ready(cx)));
    // b gives its slot up: c (the earlier waiter) is served before the retry.
    drop(b);
    assert!(rc.is_woken());
    assert_ready_ok!(rc.enter(|cx, _| c.poll_ready(cx)));
    drop(c);
    tokio::time::advance(ms(10)).await;
    assert_pending!(fut.poll());
    tokio::time::advance(ms(5)).await;
    assert_eq!(assert_ready!(fut.poll()).unwrap(), 1);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn works_behind_a_buffer_in_a_service_builder() {
    let svc = Scripted::new([err("a"), ok(3)]);
    let service = ServiceBuilder::new()
        .buffer(8)
        .layer(builder().backoff(Backoff::fixed(ms(1))).build().unwrap())
        .service(svc.clone());
    assert_eq!(service.oneshot(1).await.unwrap(), 3);
}

// === configuration ===

#[test]
fn bad_settings_are_refused_at_build() {
    let field = |b: RetryBuilder| b.build().unwrap_err().field().to_owned();
    assert_eq!(field(RetryLayer::builder().max_attempts(0)), "max_attempts");
    assert_eq!(field(RetryLayer::builder().max_delay(Duration::ZERO)), "max_delay");
    assert_eq!(field(RetryLayer::builder().backoff(Backoff::exponential_with(ms(1), 0.1))), "backoff");
    assert_eq!(field(RetryLayer::builder().attempt_timeout(Duration::ZERO)), "attempt_timeout");
    assert_eq!(field(RetryLayer::builder().deadline(Duration::ZERO)), "deadline");
}

#[cfg(feature = "serde")]
#[test]
fn config_builds_the_same_layer() {
    let config: palisade_retry::RetryConfig =
        serde_json::from_str(r#"{"max_attempts": 0, "backoff": {"fixed": {"delay": "10ms"}}}"#).unwrap();
    assert_eq!(config.build().unwrap_err().field(), "max_attempts");
    let bad: Result<palisade_retry::RetryConfig, _> =
        serde_json::from_str(r#"{"budget": {"ratio": {"ttl": "0s", "min_per_sec": 1, "ratio": 0.1}}}"#);
    assert_eq!(bad.unwrap().build().unwrap_err().field(), "budget.ttl");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn waiting_for_inner_capacity_counts_against_the_deadline() {
    let start = Instant::now();
    let svc = Scripted::new([err("a"), ok(1)]);
    let layer = builder().backoff(Backoff::fixed(ms(100))).deadline(ms(1000)).build().unwrap();
    let handle = layer.handle();
    let mut a = layer.layer(ConcurrencyLimit::new(svc.clone(), 1));
    let mut hog = a.clone();
    a.ready().await.unwrap();
    let fut = a.call(1);
    // Someone else holds the only slot while the retry waits for it.
    let mut holder = task::spawn(());
    let fut = tokio::spawn(fut);
    tokio::time::advance(ms(1)).await;
    assert_ready_ok!(holder.enter(|cx, _| hog.poll_ready(cx)));
    let err = fut.await.unwrap().unwrap_err();
    assert_eq!(err.downcast_ref::<TimedOut>().unwrap().after(), ms(1000));
    assert_eq!(start.elapsed(), ms(1000));
    assert_eq!(svc.calls(), 1);
    assert_eq!(handle.snapshot().deadline_exceeded, 1);
}

// === issue 14.2: gRFC A6 pushback and throttling ===

fn grpc_unavailable(pushback: &'static str) -> (u16, Vec<(&'static str, &'static str)>) {
    (200, vec![("grpc-status", "14"), ("grpc-retry-pushback-ms", pushback)])
}

fn grpc_status(code: &'static str) -> (u16, Vec<(&'static str, &'static str)>) {
    (200, vec![("grpc-status", code)])
}

/// A6: a pushback of n ms means "retry in n ms", even below the backoff (a floor would
/// wait 500 ms).
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_grpc_pushback_is_the_exact_delay_not_a_floor() {
    let start = Instant::now();
    let (svc, log) = http_service(vec![grpc_unavailable("200"), grpc_status("0")]);
    let layer = builder().classifier(GrpcClassifier::new()).backoff(Backoff::fixed(ms(500))).build().unwrap();
    let res = layer.layer(svc).oneshot(1).await.unwrap();
    assert_eq!(res.headers()["grpc-status"], "0");
    assert_eq!(offsets(&log, start), [ms(0), ms(200)]);
}

/// A6 / grpc-go: after a pushback the exponential backoff restarts from the initial backoff
/// (`numRetriesSincePushback = 0`).
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_backoff_restarts_after_a_pushback() {
    let start = Instant::now();
    let (svc, log) = http_service(vec![
        grpc_status("14"),
        grpc_status("14"),
        grpc_unavailable("50"),
        grpc_status("14"),
        grpc_status("14"),
        grpc_status("0"),
    ]);
    let layer = builder()
        .classifier(GrpcClassifier::new())
        .max_attempts(6)
        .backoff(Backoff::exponential(ms(100)))
        .build()
        .unwrap();
    let res = layer.layer(svc).oneshot(1).await.unwrap();
    assert_eq!(res.headers()["grpc-status"], "0");
    let gaps = gaps(&offsets(&log, start));
    assert_eq!(gaps, [ms(100), ms(200), ms(50), ms(100), ms(200)]);
}

/// A pushback of zero retries at once; one above `max_retry_after` gives up.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_zero_pushback_retries_at_once_and_a_long_one_gives_up() {
    let start = Instant::now();
    let (svc, log) = http_service(vec![grpc_unavailable("0"), grpc_unavailable("60000"), grpc_status("0")]);
    let layer = builder().classifier(GrpcClassifier::new()).backoff(Backoff::fixed(ms(500))).build().unwrap();
    let res = layer.layer(svc).oneshot(1).await.unwrap();
    assert_eq!(res.headers()["grpc-retry-pushback-ms"], "60000");
    assert_eq!(offsets(&log, start), [ms(0), ms(0)]);
}

/// Issue 14.2: UNAVAILABLE with pushback -1 leaves 9.0 of 10 tokens (A6 counts it as a
/// failure); before the fix the bucket stayed at 10.0.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_do_not_retry_pushback_costs_a_token() {
    let (svc, log) = http_service(vec![grpc_unavailable("-1")]);
    let budget = RetryBudget::token_bucket(10, 0.1).unwrap();
    let layer = builder().classifier(GrpcClassifier::new()).budget(budget.clone()).build().unwrap();
    let res = layer.layer(svc).oneshot(1).await.unwrap();
    assert_eq!(res.headers()["grpc-status"], "14");
    assert_eq!(log.lock().unwrap().len(), 1, "not retried");
    assert_eq!(budget.remaining(), 9.0);
    // A success gives back 0.1; a fatal status without pushback takes nothing.
    let (svc, _) = http_service(vec![grpc_status("0"), grpc_status("13")]);
    let layer = builder().classifier(GrpcClassifier::new()).budget(budget.clone()).build().unwrap();
    let svc = layer.layer(svc);
    svc.clone().oneshot(1).await.unwrap();
    assert!((budget.remaining() - 9.1).abs() < 1e-9);
    svc.oneshot(1).await.unwrap();
    assert!((budget.remaining() - 9.1).abs() < 1e-9);
}

// === issue 14.3: retries exhausted, jitter, caps, saturation ===

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn an_opt_in_error_says_the_retries_ran_out() {
    use palisade_retry::error::RetriesExhausted;
    let svc = Scripted::new([err("boom")]);
    let layer = builder()
        .max_attempts(3)
        .backoff(Backoff::fixed(ms(1)))
        .retries_exhausted_error(true)
        .build()
        .unwrap();
    let e = run(layer, &svc, 1).await.unwrap_err();
    let exhausted = e.downcast_ref::<RetriesExhausted>().expect("wrapped");
    assert_eq!((exhausted.attempts(), exhausted.reason()), (3, GiveUpReason::AttemptsExhausted));
    assert_eq!(exhausted.last_error().to_string(), "boom");
    assert_eq!(exhausted.layer_name(), "retry");
    assert!(e.to_string().contains("gave up after 3 attempt(s) (attempts_exhausted): boom"), "{e}");

    // The budget stopping it says so.
    let svc = Scripted::new([err("boom")]);
    let layer = builder()
        .budget(RetryBudget::ratio(Duration::from_secs(1), 0, 0.0).unwrap())
        .retries_exhausted_error(true)
        .build()
        .unwrap();
    let e = run(layer, &svc, 1).await.unwrap_err();
    let exhausted = e.downcast_ref::<RetriesExhausted>().expect("wrapped");
    assert_eq!((exhausted.attempts(), exhausted.reason()), (1, GiveUpReason::BudgetExhausted));

    // A non-retryable failure, and a success, are returned as they are.
    let layer = builder()
        .classifier(DefaultClassifier.not_retryable_if(|r: &Result<u32, BoxError>| r.is_err()))
        .retries_exhausted_error(true)
        .build()
        .unwrap();
    let svc = Scripted::new([err("fatal")]);
    let e = layer.layer(svc.clone()).oneshot(1).await.unwrap_err();
    assert_eq!(e.to_string(), "fatal");
    assert!(e.downcast_ref::<RetriesExhausted>().is_none());

    // Off by default: the last error as is.
    let svc = Scripted::new([err("boom")]);
    let e = run(builder().backoff(Backoff::fixed(ms(1))).build().unwrap(), &svc, 1).await.unwrap_err();
    assert!(e.downcast_ref::<RetriesExhausted>().is_none());
    assert_eq!(e.to_string(), "boom");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn attempt_timeouts_that_run_out_are_wrapped_too() {
    use palisade_retry::error::RetriesExhausted;
    let svc = Scripted::new([Step::Hang]);
    let layer = builder()
        .max_attempts(2)
        .backoff(Backoff::fixed(ms(1)))
        .attempt_timeout(ms(10))
        .retries_exhausted_error(true)
        .build()
        .unwrap();
    let err = run(layer, &svc, 1).await.unwrap_err();
    let exhausted = err.downcast_ref::<RetriesExhausted>().expect("wrapped");
    assert_eq!(exhausted.attempts(), 2);
    assert!(
        palisade_core::rejection::find::<TimedOut>(err.as_ref()).is_some(),
        "the source chain keeps TimedOut"
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn proportional_jitter_stays_within_a_quarter_of_a_linear_backoff() {
    let svc = Scripted::new([err("boom")]);
    let layer = RetryLayer::builder()
        .budget(RetryBudget::unlimited())
        .seed(5)
        .max_attempts(6)
        .backoff(Backoff::linear(ms(100), ms(100)))
        .jitter(Jitter::proportional())
        .no_max_delay()
        .build()
        .unwrap();
    let _ = run(layer, &svc, 1).await;
    let gaps = gaps(&svc.call_times());
    assert_eq!(gaps.len(), 5);
    for (i, gap) in gaps.iter().enumerate() {
        let d = 100 * (i as u64 + 1);
        assert!(*gap >= ms(d * 3 / 4) && *gap < ms(d * 5 / 4), "retry {}: {gap:?}", i + 1);
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_cap_after_the_jitter_is_a_hard_cap() {
    let svc = Scripted::new([err("boom")]);
    let layer = RetryLayer::builder()
        .budget(RetryBudget::unlimited())
        .seed(11)
        .max_attempts(30)
        .backoff(Backoff::fixed(ms(100)))
        .jitter(Jitter::proportional())
        .max_delay(ms(100))
        .cap_after_jitter(true)
        .build()
        .unwrap();
    let _ = run(layer, &svc, 1).await;
    assert!(gaps(&svc.call_times()).iter().all(|g| *g >= ms(75) && *g <= ms(100)));
}

/// Issue 14.3: a saturated delay is "effectively never", not `DeadlineExceeded`, when no
/// deadline is set; with a deadline, the deadline decides.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_saturated_delay_is_never_a_deadline_without_a_deadline() {
    let svc = Scripted::new([err("boom"), ok(1)]);
    let events = Events::default();
    let layer = builder()
        .max_attempts(2)
        .backoff(Backoff::exponential_with(Duration::MAX, 10.0))
        .max_delay(Duration::MAX)
        .on_event(events.listener())
        .build()
        .unwrap();
    let mut fut = task::spawn(layer.layer(svc.clone()).oneshot(1));
    assert_pending!(fut.poll());
    tokio::time::advance(Duration::from_secs(86_400 * 365)).await;
    assert_pending!(fut.poll());
    assert_eq!(svc.calls(), 1);
    assert!(matches!(events.all()[..], [RetryEvent::RetryScheduled { .. }]), "{:?}", events.all());

    let svc = Scripted::new([err("boom"), ok(1)]);
    let events = Events::default();
    let layer = builder()
        .max_attempts(2)
        .backoff(Backoff::fixed(Duration::MAX))
        .no_max_delay()
        .deadline(Duration::from_secs(1))
        .on_event(events.listener())
        .build()
        .unwrap();
    assert_eq!(run(layer, &svc, 1).await.unwrap_err().to_string(), "boom");
    assert!(events
        .all()
        .contains(&RetryEvent::GaveUp { attempts: 1, reason: GiveUpReason::DeadlineExceeded }));
}

// === issue 14.4: an open breaker answers at once ===

fn refused_by_breaker(
    retry_after: Duration,
) -> impl Service<u32, Response = u32, Error = BoxError, Future = std::future::Ready<Result<u32, BoxError>>> + Clone
{
    let calls = Arc::new(AtomicU32::new(0));
    tower::service_fn(move |_req: u32| {
        let n = calls.fetch_add(1, Ordering::SeqCst);
        std::future::ready(if n == 0 {
            Err(palisade_core::rejection::CircuitOpen::new("backend", retry_after).into())
        } else {
            Ok(n)
        })
    })
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn circuit_open_is_returned_at_once_by_default() {
    let start = Instant::now();
    let events = Events::default();
    let layer = builder().on_event(events.listener()).build().unwrap();
    let err = layer.layer(refused_by_breaker(Duration::from_secs(2))).oneshot(1).await.unwrap_err();
    assert!(err.is::<palisade_core::rejection::CircuitOpen>());
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(events.all(), [RetryEvent::GaveUp { attempts: 1, reason: GiveUpReason::NonRetryable }]);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn waiting_for_half_open_is_an_opt_in_with_its_own_bound() {
    // Within the bound: retried once the open time has passed (not earlier).
    let start = Instant::now();
    let layer =
        builder().backoff(Backoff::fixed(ms(1))).wait_for_half_open(Duration::from_secs(5)).build().unwrap();
    let res = layer.layer(refused_by_breaker(Duration::from_secs(2))).oneshot(1).await.unwrap();
    assert_eq!(res, 1);
    assert_eq!(start.elapsed(), Duration::from_secs(2));
    // Above the bound: returned at once.
    let start = Instant::now();
    let layer = builder().wait_for_half_open(Duration::from_secs(1)).build().unwrap();
    let err = layer.layer(refused_by_breaker(Duration::from_secs(2))).oneshot(1).await.unwrap_err();
    assert!(err.is::<palisade_core::rejection::CircuitOpen>());
    assert_eq!(start.elapsed(), Duration::ZERO);
    // The bound is its own: above `max_retry_after` is fine.
    let start = Instant::now();
    let layer = builder()
        .max_retry_after(Duration::from_secs(1))
        .wait_for_half_open(Duration::from_secs(3))
        .build()
        .unwrap();
    assert_eq!(layer.layer(refused_by_breaker(Duration::from_secs(2))).oneshot(1).await.unwrap(), 1);
    assert_eq!(start.elapsed(), Duration::from_secs(2));
}

/// The pass path touches no shared counter: a service value tallies its requests and adds
/// them every 64 and when dropped; clones start from zero.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn requests_are_tallied_per_service_and_flushed_in_batches_and_on_drop() {
    let layer = builder().build().unwrap();
    let handle = layer.handle();
    let mut svc = layer.layer(Scripted::new([ok(1)]));
    for _ in 0..70 {
        svc.ready().await.unwrap().call(1).await.unwrap();
    }
    assert_eq!(handle.snapshot().requests, 64, "one batch added, six pending");
    let mut clone = svc.clone();
    clone.ready().await.unwrap().call(1).await.unwrap();
    drop(clone);
    assert_eq!(handle.snapshot().requests, 65);
    drop(svc);
    let snap = handle.snapshot();
    assert_eq!((snap.requests, snap.attempts), (71, 71));
}
