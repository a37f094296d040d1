//! The soak run: a million requests through the full stack against an inner service that
//! fails 30 % of the time, hangs 1 % and panics 0.1 %, with clients that give up at random.
//!
//! Shared by `cargo run --release --example storm --features full -- --soak` and the ignored test
//! `cargo test --release --all-features --test soak -- --ignored`.
#![allow(unreachable_pub)] // shared with tests/soak.rs through `#[path]`

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use palisade::bulkhead::{BulkheadHandle, BulkheadLayer};
use palisade::chaos::ChaosLayer;
use palisade::circuit_breaker::CircuitBreakerLayer;
use palisade::fallback::{FallbackContext, FallbackLayer};
use palisade::rate_limit::{Quota, RateLimitLayer};
use palisade::retry::{Backoff, Jitter, RetryBudget, RetryLayer};
use palisade::timeout::TimeoutLayer;
use palisade::BoxError;
// palisade's own seedable RNG: an internal helper (no stability promise), fine for this
// in-repo soak tool; outside code would use `rand`.
use palisade_core::__private::AtomicRng;
use tower::{service_fn, Service, ServiceBuilder, ServiceExt};

/// What a soak run saw.
#[derive(Debug, Default)]
pub struct SoakReport {
    pub requests: u64,
    pub ok: u64,
    pub errors: u64,
    pub panicked: u64,
    pub cancelled: u64,
    /// Requests answered other than exactly once (must be zero).
    pub not_answered_once: u64,
    pub bulkhead_in_flight_after: usize,
    pub bulkhead_queued_after: usize,
    pub tasks_alive_before: usize,
    pub tasks_alive_after: usize,
    pub rss_after_warmup_kib: u64,
    pub rss_end_kib: u64,
    pub elapsed: Duration,
}

impl SoakReport {
    /// End memory over memory after warm-up.
    pub fn memory_ratio(&self) -> f64 {
        self.rss_end_kib as f64 / self.rss_after_warmup_kib.max(1) as f64
    }
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|p| p.parse::<u64>().ok()))
        .map_or(0, |pages| pages * 4)
}

fn stack(
    seed: u64,
) -> Result<
    (
        impl Service<u64, Response = u64, Error = BoxError, Future = impl Send> + Clone + Send + 'static,
        BulkheadHandle,
    ),
    BoxError,
> {
    let rng = Arc::new(AtomicRng::seeded(seed ^ 0x5EED));
    let inner = service_fn(move |req: u64| {
        let panics = rng.below(1000) == 0;
        async move {
            assert!(!panics, "inner service panicked on request {req}");
            Ok::<_, BoxError>(req)
        }
    });
    let chaos = ChaosLayer::builder().name("inner").seed(seed).fault_rate(0.3).hang_rate(0.01).build()?;
    let breaker = CircuitBreakerLayer::builder()
        .name("soak")
        .failure_rate(0.6)
        .count_window(100)
        .minimum_calls(50)
        .wait_in_open(Duration::from_millis(20))
        .build()?;
    let retry = RetryLayer::builder()
        .name("soak")
        .max_attempts(2)
        .backoff(Backoff::fixed(Duration::from_micros(100)))
        .jitter(Jitter::Full)
        .attempt_timeout(Duration::from_millis(10))
        .budget(RetryBudget::ratio(Duration::from_secs(10), 100, 0.2)?)
        .build()?;
    let fallback = FallbackLayer::builder()
        .name("soak")
        .fallback_fn(|_ctx: FallbackContext<u64, u64>| async { Ok::<_, BoxError>(u64::MAX) })
        .build()?;
    let bulkhead = BulkheadLayer::builder()
        .name("soak")
        .max_concurrent(256)
        .when_full(palisade_core::WhenFull::wait(Duration::from_millis(50)))
        .max_queue(512)
        .build()?;
    let handle = bulkhead.handle();
    let limit =
        RateLimitLayer::builder().name("soak").quota(Quota::per_second(1_000_000).burst(10_000)).build()?;
    let svc = ServiceBuilder::new()
        .layer(limit)
        .layer(bulkhead)
        .layer(TimeoutLayer::new(Duration::from_millis(30)))
        .layer(fallback)
        .layer(retry)
        .layer(breaker)
        .layer(chaos)
        .service(inner);
    Ok((tower::util::BoxCloneSyncService::new(svc), handle))
}

/// Runs `total` requests with at most `concurrency` in flight.
pub async fn run(total: u64, concurrency: usize, seed: u64) -> Result<SoakReport, BoxError> {
    // Panics are part of the workload: keep their messages out of the output.
    let quiet = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let result = run_inner(total, concurrency, seed).await;
    std::panic::set_hook(quiet);
    result
}

async fn run_inner(total: u64, concurrency: usize, seed: u64) -> Result<SoakReport, BoxError> {
    let metrics = tokio::runtime::Handle::current().metrics();
    let mut report = SoakReport { tasks_alive_before: metrics.num_alive_tasks(), ..SoakReport::default() };
    let (svc, bulkhead) = stack(seed)?;
    let answers: Arc<Vec<AtomicU8>> = Arc::new((0..total).map(|_| AtomicU8::new(0)).collect());
    // The zeroed vector may not be resident yet: touch it so it does not count as growth.
    for a in answers.iter() {
        a.store(0, Ordering::Relaxed);
    }
    let counts: Arc<[AtomicU64; 4]> = Arc::new(Default::default());
    let client_rng = Arc::new(AtomicRng::seeded(seed.wrapping_mul(31)));
    let warmup = (total / 10).max(1);
    #[allow(clippy::disallowed_methods)]
    let started = std::time::Instant::now();

    let mut tasks = tokio::task::JoinSet::new();
    for id in 0..total {
        if tasks.len() >= concurrency {
            tasks.join_next().await;
        }
        if id == warmup {
            while tasks.join_next().await.is_some() {}
            report.rss_after_warmup_kib = rss_kib();
        }
        let svc = svc.clone();
        let answers = answers.clone();
        let counts = counts.clone();
        // 5 % of clients give up after 0-5 ms.
        let give_up = (client_rng.below(20) == 0).then(|| Duration::from_micros(client_rng.below(5_000)));
        tasks.spawn(async move {
            let call = AssertUnwindSafe(svc.oneshot(id)).catch_unwind();
            let slot = match give_up {
                Some(after) => match tokio::time::timeout(after, call).await {
                    Ok(Ok(Ok(_))) => 0,
                    Ok(Ok(Err(_))) => 1,
                    Ok(Err(_panic)) => 2,
                    Err(_elapsed) => 3,
                },
                None => match call.await {
                    Ok(Ok(_)) => 0,
                    Ok(Err(_)) => 1,
                    Err(_panic) => 2,
                },
            };
            counts[slot].fetch_add(1, Ordering::Relaxed);
            answers[id as usize].fetch_add(1, Ordering::Relaxed);
        });
    }
    while tasks.join_next().await.is_some() {}
    drop(svc);
    // A finished task is released by the worker thread that ran it a moment after its
    // output is taken: give the count a few milliseconds to settle.
    for _ in 0..50 {
        if metrics.num_alive_tasks() <= report.tasks_alive_before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }

    report.requests = total;
    report.ok = counts[0].load(Ordering::Relaxed);
    report.errors = counts[1].load(Ordering::Relaxed);
    report.panicked = counts[2].load(Ordering::Relaxed);
    report.cancelled = counts[3].load(Ordering::Relaxed);
    report.not_answered_once = answers.iter().filter(|a| a.load(Ordering::Relaxed) != 1).count() as u64;
    report.bulkhead_in_flight_after = bulkhead.in_flight();
    report.bulkhead_queued_after = bulkhead.queued();
    report.tasks_alive_after = metrics.num_alive_tasks();
    report.rss_end_kib = rss_kib();
    report.elapsed = started.elapsed();
    Ok(report)
}
