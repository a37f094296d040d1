#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
#![cfg(all(feature = "retry", feature = "circuit-breaker"))]
//! Issue 14.4: `RetryLayer` outside `CircuitBreakerLayer` (the recommended order): once the
//! breaker is open, a call is refused with `CircuitOpen` at once — the retry does not sleep
//! on the breaker's remaining open time. Waiting for half-open is an explicit opt-in.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use palisade::circuit_breaker::CircuitBreakerLayer;
use palisade::rejection::CircuitOpen;
use palisade::retry::{Backoff, GiveUpReason, Jitter, RetryEvent, RetryLayer};
use palisade::BoxError;
use tokio::time::Instant;
use tower::{service_fn, ServiceBuilder, ServiceExt};

/// A backend that fails while `down` is set and counts its calls.
fn backend(
    calls: Arc<AtomicU32>,
    down: Arc<std::sync::atomic::AtomicBool>,
) -> impl tower::Service<
    u32,
    Response = u32,
    Error = std::io::Error,
    Future = std::future::Ready<Result<u32, std::io::Error>>,
> + Clone {
    service_fn(move |req: u32| {
        calls.fetch_add(1, Ordering::SeqCst);
        std::future::ready(if down.load(Ordering::SeqCst) {
            Err(std::io::Error::other("down"))
        } else {
            Ok(req)
        })
    })
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn an_open_breaker_answers_at_once_through_a_retry() {
    let calls = Arc::new(AtomicU32::new(0));
    let down = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let breaker = CircuitBreakerLayer::builder()
        .consecutive_failures(2)
        .wait_in_open(Duration::from_secs(2))
        .build()
        .unwrap();
    let events = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = events.clone();
    let retry = RetryLayer::builder()
        .max_attempts(3)
        .backoff(Backoff::fixed(Duration::from_millis(10)))
        .jitter(Jitter::None)
        .on_event(move |e: &RetryEvent| seen.lock().unwrap().push(e.clone()))
        .build()
        .unwrap();
    let svc = ServiceBuilder::new().layer(retry).layer(breaker).service(backend(calls.clone(), down.clone()));

    // Two failures open the breaker; the third attempt is refused by it and returned at once.
    let start = Instant::now();
    let err: BoxError = svc.clone().oneshot(1).await.unwrap_err();
    let open = err.downcast_ref::<CircuitOpen>().expect("CircuitOpen reaches the caller");
    assert_eq!(open.retry_after(), Duration::from_millis(1990), "opened at 10 ms, refused at 20 ms");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(start.elapsed(), Duration::from_millis(20), "two backoffs, no wait on the open breaker");
    assert!(events
        .lock()
        .unwrap()
        .contains(&RetryEvent::GaveUp { attempts: 3, reason: GiveUpReason::NonRetryable }));

    // While open: each call is refused at once, without reaching the backend.
    for _ in 0..5 {
        let start = Instant::now();
        let err = svc.clone().oneshot(2).await.unwrap_err();
        assert!(err.is::<CircuitOpen>(), "{err}");
        assert_eq!(start.elapsed(), Duration::ZERO, "not retried, not delayed");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    // After the open wait, a trial goes through and closes the breaker.
    down.store(false, Ordering::SeqCst);
    tokio::time::advance(Duration::from_secs(2)).await;
    assert_eq!(svc.oneshot(3).await.unwrap(), 3);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn waiting_for_half_open_is_an_explicit_bounded_opt_in() {
    let calls = Arc::new(AtomicU32::new(0));
    let down = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let breaker = CircuitBreakerLayer::builder()
        .consecutive_failures(1)
        .wait_in_open(Duration::from_secs(2))
        .build()
        .unwrap();
    let retry = RetryLayer::builder()
        .max_attempts(3)
        .backoff(Backoff::fixed(Duration::from_millis(10)))
        .jitter(Jitter::None)
        .wait_for_half_open(Duration::from_secs(3))
        .build()
        .unwrap();
    let svc = ServiceBuilder::new().layer(retry).layer(breaker).service(backend(calls.clone(), down.clone()));
    // The first attempt fails and opens the breaker; the second is refused; the retry then
    // waits the 2 s open time (within its 3 s bound) and the backend, now up, answers.
    let start = Instant::now();
    let flip = {
        let down = down.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            down.store(false, Ordering::SeqCst);
        })
    };
    assert_eq!(svc.oneshot(4).await.unwrap(), 4);
    flip.await.unwrap();
    assert!(start.elapsed() >= Duration::from_secs(2));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}
