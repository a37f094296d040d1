//! Review: more cases of issue 14's retry kinds — non-idempotent requests (RFC 9110 §9.2.2,
//! Go's `net/http` resend rule), grpc-go's current backoff (±20 % jitter around the capped
//! exponential, restarted by pushback), Resilience4j's randomized exponential interval, and
//! max attempts counting the first call.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::float_cmp, missing_docs)]
#![cfg(feature = "http")]

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use palisade_core::classify::HttpClassifier;
use palisade_retry::hedge::HedgeLayer;
use palisade_retry::http::IdempotentOnly;
use palisade_retry::replay::CloneRequest;
use palisade_retry::{Backoff, GiveUpReason, Jitter, RetryBudget, RetryEvent, RetryLayer};
use support::{err, gaps, ms, ok, Events, Scripted};
use tokio::time::Instant;
use tower::{service_fn, Layer, ServiceExt};

type Req = http::Request<Full<Bytes>>;

/// A backend answering 503 to the first `fail` calls, then 200; counts calls.
fn backend(
    fail: usize,
    calls: Arc<AtomicUsize>,
) -> impl tower::Service<Req, Response = http::Response<()>, Error = http::Error, Future: Send> + Clone {
    service_fn(move |_req: Req| {
        let n = calls.fetch_add(1, Ordering::SeqCst);
        async move { http::Response::builder().status(if n < fail { 503 } else { 200 }).body(()) }
    })
}

fn retry(events: &Events) -> RetryLayer<HttpClassifier, IdempotentOnly<CloneRequest>> {
    RetryLayer::builder()
        .classifier(HttpClassifier::new())
        .replay(IdempotentOnly::new(CloneRequest))
        .budget(RetryBudget::unlimited())
        .max_attempts(3)
        .backoff(Backoff::fixed(ms(10)))
        .jitter(Jitter::None)
        .on_event(events.listener())
        .build()
        .unwrap()
}

fn req(method: http::Method, key: Option<&str>) -> Req {
    let mut b = http::Request::builder().method(method).uri("http://x/orders");
    if let Some(key) = key {
        b = b.header("idempotency-key", key);
    }
    b.body(Full::new(Bytes::from("order #1"))).unwrap()
}

/// RFC 9110 §9.2.2: a `POST` (or `PATCH`) that got a 503 is not sent again by
/// `IdempotentOnly`: one call, the 503 is the answer, the give-up reason `NotReplayable`.
/// Idempotent methods and requests with an `Idempotency-Key` are retried as usual.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn only_idempotent_requests_are_retried() {
    for (method, key, retried) in [
        (http::Method::POST, None, false),
        (http::Method::PATCH, None, false),
        (http::Method::POST, Some("8e03978e"), true),
        (http::Method::GET, None, true),
        (http::Method::PUT, None, true),
        (http::Method::DELETE, None, true),
    ] {
        let events = Events::default();
        let calls = Arc::new(AtomicUsize::new(0));
        let svc = retry(&events).layer(backend(1, calls.clone()));
        let res = svc.oneshot(req(method.clone(), key)).await.unwrap();
        if retried {
            assert_eq!((res.status().as_u16(), calls.load(Ordering::SeqCst)), (200, 2), "{method} {key:?}");
        } else {
            assert_eq!((res.status().as_u16(), calls.load(Ordering::SeqCst)), (503, 1), "{method} {key:?}");
            let gave_up = events.all().into_iter().find_map(|e| match e {
                RetryEvent::GaveUp { reason, .. } => Some(reason),
                _ => None,
            });
            assert_eq!(gave_up, Some(GiveUpReason::NotReplayable), "{method}");
        }
    }
}

/// Hedging a `POST` would send it twice at once: `IdempotentOnly` sends it once, however
/// slow the answer; a `GET` is hedged.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_non_idempotent_request_is_never_hedged() {
    for (method, hedged) in [(http::Method::POST, false), (http::Method::GET, true)] {
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = calls.clone();
        let slow = service_fn(move |_req: Req| {
            counter.fetch_add(1, Ordering::SeqCst);
            async move {
                tokio::time::sleep(ms(500)).await;
                http::Response::builder().status(200).body(())
            }
        });
        let layer = HedgeLayer::builder()
            .classifier(HttpClassifier::new())
            .replay(IdempotentOnly::new(CloneRequest))
            .budget(RetryBudget::unlimited())
            .max_attempts(3)
            .delay(ms(100))
            .build()
            .unwrap();
        let res = layer.layer(slow).oneshot(req(method.clone(), None)).await.unwrap();
        assert_eq!(res.status(), 200);
        let expected = if hedged { 3 } else { 1 };
        assert_eq!(calls.load(Ordering::SeqCst), expected, "{method}");
    }
}

/// grpc-go's `shouldRetry` today: `cur = min(initialBackoff × multiplier^n, maxBackoff)`,
/// then `cur × (0.8 + 0.4 × rand)` — ±20 % around the capped delay — with `n` counted since
/// the last pushback. initialBackoff 0.1 s, multiplier 2, maxBackoff 1 s: every retry
/// lands in [0.8, 1.2) × 0.1, 0.2, 0.4, 0.8, 1.0, 1.0 s. Palisade's form: exponential,
/// `Jitter::Proportional { percent: 20 }`, `max_delay(1 s)` capped before the jitter.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn grpc_go_backoff_numbers() {
    for seed in 0..20 {
        let svc = Scripted::new([err("unavailable")]);
        let layer = RetryLayer::builder()
            .max_attempts(7)
            .budget(RetryBudget::unlimited())
            .backoff(Backoff::exponential_with(ms(100), 2.0))
            .jitter(Jitter::Proportional { percent: 20 })
            .max_delay(ms(1_000))
            .seed(seed)
            .build()
            .unwrap();
        layer.layer(svc.clone()).oneshot(1).await.unwrap_err();
        let delays = gaps(&svc.call_times());
        assert_eq!(delays.len(), 6);
        for (d, base) in delays.iter().zip([100u64, 200, 400, 800, 1_000, 1_000]) {
            assert!(*d >= ms(base * 8 / 10) && *d < ms(base * 12 / 10), "seed {seed}: {d:?} for {base} ms");
        }
    }
}

/// Resilience4j `IntervalFunction.ofExponentialRandomBackoff(100 ms, 1.5, 0.5)` (its
/// `IntervalFunctionTest` bounds): attempt n waits `100 × 1.5^(n-1) × (1 ± 0.5)` ms.
/// `maxAttempts` 4 counts the first call: three retries.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn resilience4j_exponential_random_backoff_and_max_attempts() {
    for seed in 0..20 {
        let svc = Scripted::new([err("boom")]);
        let layer = RetryLayer::builder()
            .max_attempts(4)
            .budget(RetryBudget::unlimited())
            .backoff(Backoff::exponential_with(ms(100), 1.5))
            .jitter(Jitter::Proportional { percent: 50 })
            .no_max_delay()
            .seed(seed)
            .build()
            .unwrap();
        layer.layer(svc.clone()).oneshot(1).await.unwrap_err();
        let delays = gaps(&svc.call_times());
        assert_eq!(svc.calls(), 4, "max attempts counts the first call");
        for (d, base) in delays.iter().zip([100.0, 150.0, 225.0]) {
            let (lo, hi) = (Duration::from_secs_f64(base * 0.5e-3), Duration::from_secs_f64(base * 1.5e-3));
            assert!(*d >= lo && *d <= hi, "seed {seed}: {d:?} outside [{lo:?}, {hi:?}]");
        }
    }
}

/// A success after retries is returned as is; the number of calls is the attempts made,
/// never more than `max_attempts`, whatever the budget or the number of services cloned.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn attempts_never_exceed_max_attempts_across_clones() {
    let svc = Scripted::new([err("a"), err("b"), ok(7)]);
    let layer = RetryLayer::builder()
        .max_attempts(2)
        .budget(RetryBudget::unlimited())
        .backoff(Backoff::fixed(ms(1)))
        .jitter(Jitter::None)
        .build()
        .unwrap();
    let service = layer.layer(svc.clone());
    let start = Instant::now();
    let first = service.clone().oneshot(1).await;
    assert_eq!(first.unwrap_err().to_string(), "b");
    assert_eq!(svc.calls(), 2);
    assert_eq!(service.oneshot(2).await.unwrap(), 7);
    assert_eq!(svc.calls(), 3);
    assert_eq!(start.elapsed(), ms(1));
}

/// A hedge refused locally — by an open breaker, a full bulkhead, a rate limit between the
/// hedge layer and the backend — was never sent: it says nothing about the primary, which
/// is still running and may well succeed. As with a "do not retry" pushback (gRFC A6: only
/// a fatal status from the server cancels the outstanding attempts), no further hedge is
/// sent and the primary's answer is awaited. Max 3 attempts, 100 ms hedge delay; the
/// primary answers OK at 1 s; the hedge at 100 ms is refused at once.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_hedge_refused_locally_does_not_cancel_the_primary() {
    use palisade_core::rejection::{BulkheadFull, BulkheadFullReason, CircuitOpen, RateLimited};
    for refusal in 0..3 {
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = calls.clone();
        let svc = service_fn(move |_req: u32| {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            async move {
                if n == 0 {
                    tokio::time::sleep(ms(1_000)).await;
                    return Ok::<u32, palisade_core::BoxError>(7);
                }
                Err(match refusal {
                    0 => CircuitOpen::new("backend", Duration::from_secs(5)).into(),
                    1 => BulkheadFull::new("backend", BulkheadFullReason::NoPermit).into(),
                    _ => RateLimited::new("backend", Duration::from_secs(1)).into(),
                })
            }
        });
        let layer = HedgeLayer::builder()
            .budget(RetryBudget::unlimited())
            .max_attempts(3)
            .delay(ms(100))
            .build()
            .unwrap();
        let start = Instant::now();
        let res = layer.layer(svc).oneshot(1).await;
        assert_eq!(res.unwrap(), 7, "refusal {refusal}: the primary's answer");
        assert_eq!(start.elapsed(), ms(1_000), "refusal {refusal}");
        assert_eq!(calls.load(Ordering::SeqCst), 2, "refusal {refusal}: no hedge after the refusal");
    }
}

/// The primary itself refused locally (the layers below are full): the refusal is the
/// answer, at once, instead of a hedge after a hedge sent into the same refusal; a timeout
/// (an attempt that was sent and ran out of time) is still a failure the next hedge may
/// answer.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_primary_refused_locally_is_answered_at_once_and_a_timeout_is_hedged() {
    use palisade_core::rejection::{BulkheadFull, BulkheadFullReason, TimedOut};
    let layer = || {
        HedgeLayer::builder().budget(RetryBudget::unlimited()).max_attempts(3).delay(ms(100)).build().unwrap()
    };
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let full = service_fn(move |_req: u32| {
        counter.fetch_add(1, Ordering::SeqCst);
        std::future::ready(Err::<u32, palisade_core::BoxError>(
            BulkheadFull::new("backend", BulkheadFullReason::NoPermit).into(),
        ))
    });
    let err = layer().layer(full).oneshot(1).await.unwrap_err();
    assert!(err.is::<BulkheadFull>());
    assert_eq!(calls.load(Ordering::SeqCst), 1, "no hedge into the same refusal");

    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let timing_out = service_fn(move |_req: u32| {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        std::future::ready(if n == 0 {
            Err::<u32, palisade_core::BoxError>(TimedOut::new("backend", ms(50)).into())
        } else {
            Ok(9)
        })
    });
    assert_eq!(layer().layer(timing_out).oneshot(1).await.unwrap(), 9);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}
