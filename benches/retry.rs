//! Retry pass path (the first attempt succeeds) on a no-op service: bare, tower's `Retry`
//! with a never-retry policy, palisade's `RetryLayer` (default Finagle budget, unlimited,
//! gRPC token bucket), tower-resilience's retry, plus palisade's `HedgeLayer` (default
//! budget, and without one) next to tower's `Timeout` (palisade's `TimeoutLayer` is in
//! `benches/timeout.rs`).
//!
//! tower's `TpsBudget` policy and `Timeout` read the clock on every request; so does
//! palisade's default ratio budget on this current-thread runtime (on a multi-thread runtime
//! it reads it on one request in 64 of a service value: its deposits go to a slot a tokio
//! timer keeps current, see `RetryBudget::deposit`). The last two entries measure tower's
//! and palisade's budgets again with a multi-thread runtime's context entered.
//!
//! Each iteration readies the service, calls it and polls the future once with a no-op
//! waker (a no-op service answers at once), so the figures are the middleware's own cost.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::convert::Infallible;
use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use palisade::retry::hedge::HedgeLayer;
use palisade::retry::{RetryBudget, RetryLayer};
use tower::{service_fn, Layer, Service};

#[derive(Clone, Copy)]
struct NeverRetry;

impl<Req: Clone, Res, E> tower::retry::Policy<Req, Res, E> for NeverRetry {
    type Future = std::future::Ready<()>;

    fn retry(&mut self, _: &mut Req, _: &mut Result<Res, E>) -> Option<Self::Future> {
        None
    }

    fn clone_request(&mut self, req: &Req) -> Option<Req> {
        Some(req.clone())
    }
}

/// tower's documented budget pattern: deposit on success, withdraw to retry.
#[derive(Clone)]
struct TowerBudgetPolicy(std::sync::Arc<tower::retry::budget::TpsBudget>);

impl<Req: Clone, Res, E> tower::retry::Policy<Req, Res, E> for TowerBudgetPolicy {
    type Future = std::future::Ready<()>;

    fn retry(&mut self, _: &mut Req, result: &mut Result<Res, E>) -> Option<Self::Future> {
        use tower::retry::budget::Budget;
        match result {
            Ok(_) => {
                self.0.deposit();
                None
            }
            Err(_) => self.0.withdraw().then(|| std::future::ready(())),
        }
    }

    fn clone_request(&mut self, req: &Req) -> Option<Req> {
        Some(req.clone())
    }
}

fn noop(
) -> impl Service<u64, Response = u64, Error = Infallible, Future = std::future::Ready<Result<u64, Infallible>>>
       + Clone {
    service_fn(|x: u64| std::future::ready(Ok::<_, Infallible>(x)))
}

/// Readies `svc`, calls it, polls the response future to completion with a no-op waker.
#[inline]
fn once<S: Service<u64>>(svc: &mut S, cx: &mut Context<'_>) -> Option<S::Response> {
    match svc.poll_ready(cx) {
        Poll::Ready(Ok(())) => {}
        _ => return None,
    }
    let mut fut = pin!(svc.call(black_box(1)));
    loop {
        if let Poll::Ready(res) = fut.as_mut().poll(cx) {
            return res.ok();
        }
    }
}

fn bench<S: Service<u64>>(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    mut svc: S,
) {
    let mut cx = Context::from_waker(Waker::noop());
    group.bench_function(name, |b| b.iter(|| black_box(once(&mut svc, &mut cx))));
}

/// tower's `Retry` with its `TpsBudget` (10 s, 10 per second, ratio 0.2) around the no-op
/// service.
fn tower_budget_retry() -> impl Service<u64> {
    tower::retry::RetryLayer::new(TowerBudgetPolicy(std::sync::Arc::new(
        tower::retry::budget::TpsBudget::new(Duration::from_secs(10), 10, 0.2),
    )))
    .layer(noop())
}

fn retry(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().expect("runtime");
    let guard = rt.enter();
    let mut group = c.benchmark_group("retry");

    bench(&mut group, "bare", noop());
    bench(
        &mut group,
        "tower Retry (never-retry policy)",
        tower::retry::RetryLayer::new(NeverRetry).layer(noop()),
    );
    bench(&mut group, "tower Retry (TpsBudget policy)", tower_budget_retry());
    bench(&mut group, "palisade RetryLayer (default budget)", RetryLayer::new(3).layer(noop()));
    bench(
        &mut group,
        "palisade RetryLayer (no budget)",
        RetryLayer::builder().budget(RetryBudget::unlimited()).build().unwrap().layer(noop()),
    );
    bench(
        &mut group,
        "palisade RetryLayer (gRPC token bucket)",
        RetryLayer::builder()
            .budget(RetryBudget::token_bucket(10, 0.1).unwrap())
            .build()
            .unwrap()
            .layer(noop()),
    );
    bench(
        &mut group,
        "tower-resilience retry",
        tower_resilience_retry::RetryLayer::<u64, u64, Infallible>::builder()
            .max_attempts(3)
            .build()
            .layer(noop()),
    );
    bench(
        &mut group,
        "tower Timeout",
        tower::timeout::TimeoutLayer::new(Duration::from_secs(1)).layer(noop()),
    );
    bench(
        &mut group,
        "palisade HedgeLayer (no hedge needed)",
        HedgeLayer::new(Duration::from_millis(100)).layer(noop()),
    );
    bench(
        &mut group,
        "palisade HedgeLayer (no hedge needed, no budget)",
        HedgeLayer::builder().budget(RetryBudget::unlimited()).build().unwrap().layer(noop()),
    );
    drop(guard);

    // The same two budgets with a multi-thread runtime's context entered (the runtime most
    // servers run on): palisade's default budget then deposits into a time slot a tokio
    // timer keeps current (the runtime's workers run the timer driver), while tower's
    // `TpsBudget` still reads the clock and takes its lock on every deposit.
    let mt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_time().build().expect("runtime");
    let _guard = mt.enter();
    bench(&mut group, "tower Retry (TpsBudget policy), multi-thread runtime", tower_budget_retry());
    bench(
        &mut group,
        "palisade RetryLayer (default budget), multi-thread runtime",
        RetryLayer::new(3).layer(noop()),
    );
    group.finish();
}

criterion_group!(benches, retry);
criterion_main!(benches);
