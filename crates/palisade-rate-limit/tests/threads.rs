//! Admission bounds hold on a multi-thread runtime over real time (issue 13.2): requests
//! are counted inside the inner service, and only the count bound is asserted (no timing).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use palisade_rate_limit::{Algorithm, Quota, RateLimitLayer, Tier};
use tower::{Layer, Service, ServiceExt};

const TASKS: usize = 16;
/// Requests each task makes.
const REQUESTS: usize = 3_000;

async fn hammer(algorithm: Algorithm, keyed: bool) {
    let limit = 20;
    let period = Duration::from_millis(50);
    // Read before the limiter exists: its windows start at its making, so the run touches
    // at most `elapsed / period + 1` of them (read after, a run could start mid-window and
    // touch one more than the bound counts).
    let start = tokio::time::Instant::now();
    let quota = Quota::new(limit, period);
    let tier =
        if keyed { Tier::keyed(quota, |_: &u32| Some(7u8)) } else { Tier::new(quota).when(|_: &u32| true) };
    let layer = RateLimitLayer::builder().algorithm(algorithm).tier(tier).build().unwrap();
    let passed = Arc::new(AtomicU64::new(0));
    let counter = passed.clone();
    let inner = tower::service_fn(move |_: u32| {
        counter.fetch_add(1, Ordering::Relaxed);
        std::future::ready(Ok::<_, std::convert::Infallible>(()))
    });
    let svc = layer.layer(inner);
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let mut svc = svc.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                for i in 0..REQUESTS {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let _ = svc.ready().await.unwrap().call(i as u32).await;
                    if i % 16 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    // Every admission happened before this reading, so the bound at this time holds.
    let elapsed = start.elapsed();
    let windows = (elapsed.as_nanos() / period.as_nanos()) as u64 + 1;
    let bound = match algorithm {
        // burst + one per interval (2.5 ms)
        Algorithm::TokenBucket => {
            u64::from(limit) + (elapsed.as_nanos() / (period.as_nanos() / 20)) as u64 + 1
        }
        _ => u64::from(limit) * windows,
    };
    let passed = passed.load(Ordering::Relaxed);
    assert!(passed <= bound, "{algorithm:?} keyed={keyed}: {passed} passed in {elapsed:?}, bound {bound}");
    assert!(passed > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_algorithm_over_admits_under_contention() {
    for keyed in [false, true] {
        for algorithm in [
            Algorithm::TokenBucket,
            Algorithm::SlidingWindowLog,
            Algorithm::SlidingWindowCounter,
            Algorithm::FixedWindow,
        ] {
            hammer(algorithm, keyed).await;
        }
    }
}
