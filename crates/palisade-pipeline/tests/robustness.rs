//! Issue 15 for pipelines: user code that panics on a stage's task fails one item and the
//! stream goes on; sizes from a config never abort; every builder and serde config either
//! refuses extreme values or serves.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::convert::Infallible;
use std::future::Ready;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::{stream, StreamExt};
use palisade_core::BoxError;
use palisade_pipeline::fan::{self, FanOut};
use palisade_pipeline::{
    Batch, BatchError, Execution, Order, Panicked, PipelineEvent, PipelineService, StageError,
};
use proptest::prelude::*;
use tower::{service_fn, Service, ServiceExt};

/// Generous bound on a paused clock: a hang shows up as this timeout, instantly.
const HANG_GUARD: Duration = Duration::from_secs(3600);

fn panicked(err: &StageError) -> &Panicked {
    err.error().downcast_ref::<Panicked>().unwrap_or_else(|| panic!("not a panic: {err:?}"))
}

const MODES: [(Execution, Order, usize); 6] = [
    (Execution::Tasks, Order::Preserved, 1),
    (Execution::Tasks, Order::Preserved, 4),
    (Execution::Tasks, Order::Completion, 4),
    (Execution::Inline, Order::Preserved, 1),
    (Execution::Inline, Order::Preserved, 4),
    (Execution::Inline, Order::Completion, 4),
];

/// Runs 0..10 through `panicky` then a doubling stage, in every mode; item 3 must fail with
/// `message` at `stage`, every other item come out doubled.
async fn check_modes<S>(panicky: S, stage: &str, message: &str)
where
    S: Service<u64, Response = u64> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError> + Send + 'static,
{
    for (execution, order, concurrency) in MODES {
        let pipeline = PipelineService::builder::<u64>()
            .stage("panicky", panicky.clone())
            .concurrency(concurrency)
            .map("double", |n: u64| n * 2)
            .execution(execution)
            .order(order)
            .build()
            .unwrap();
        let results: Vec<_> =
            tokio::time::timeout(HANG_GUARD, pipeline.process_stream(stream::iter(0..10u64)).collect())
                .await
                .expect("the stream ends");
        assert_eq!(results.len(), 10, "{execution:?} {order:?} {concurrency}");
        let mut ok: Vec<u64> = results.iter().filter_map(|r| r.as_ref().ok().copied()).collect();
        ok.sort_unstable();
        assert_eq!(ok, [0, 2, 4, 8, 10, 12, 14, 16, 18]);
        let errors: Vec<&StageError> = results.iter().filter_map(|r| r.as_ref().err()).collect();
        assert_eq!(errors.len(), 1);
        assert_eq!((errors[0].stage(), errors[0].seq()), (stage, Some(3)));
        assert_eq!(panicked(errors[0]).message(), message);
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_panic_in_a_response_future_fails_that_item_only() {
    let svc = service_fn(|n: u64| async move {
        tokio::time::sleep(Duration::from_millis(10 - n)).await;
        assert!(n != 3, "future bug");
        Ok::<_, BoxError>(n)
    });
    check_modes(svc, "panicky", "future bug").await;
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_panic_in_call_fails_that_item_only() {
    let svc = service_fn(|n: u64| {
        assert!(n != 3, "call bug");
        std::future::ready(Ok::<_, BoxError>(n))
    });
    check_modes(svc, "panicky", "call bug").await;
}

/// A service whose `poll_ready` panics once, on its fourth readiness check of the stream.
#[derive(Clone)]
struct PanicsWhenReady {
    checks: Arc<AtomicUsize>,
}

impl Service<u64> for PanicsWhenReady {
    type Response = u64;
    type Error = Infallible;
    type Future = Ready<Result<u64, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        assert!(self.checks.fetch_add(1, Ordering::SeqCst) != 3, "ready bug");
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, n: u64) -> Self::Future {
        std::future::ready(Ok(n))
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_panic_in_poll_ready_fails_the_waiting_item_only() {
    for (execution, order, concurrency) in MODES {
        let svc = PanicsWhenReady { checks: Arc::new(AtomicUsize::new(0)) };
        let pipeline = PipelineService::builder::<u64>()
            .stage("ready", svc)
            .concurrency(concurrency)
            .execution(execution)
            .order(order)
            .build()
            .unwrap();
        let results: Vec<_> = pipeline.process_stream(stream::iter(0..10u64)).collect().await;
        assert_eq!(results.len(), 10);
        let err = results.iter().find_map(|r| r.as_ref().err()).unwrap();
        assert_eq!((err.stage(), err.seq()), ("ready", Some(3)));
        assert_eq!(panicked(err).message(), "ready bug");
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 9);
    }
}

/// An item whose `Clone` panics for the value 3 (kept items are cloned before the call).
#[derive(Debug, PartialEq)]
struct Fragile(u64);

impl Clone for Fragile {
    fn clone(&self) -> Self {
        assert!(self.0 != 3, "clone bug");
        Self(self.0)
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_panicking_clone_of_a_kept_item_fails_that_item_only() {
    let pipeline = PipelineService::builder::<Fragile>()
        .stage_fn("keep", |f: Fragile| async move { Ok::<_, BoxError>(f.0) })
        .keep_failed_items()
        .build()
        .unwrap();
    let results: Vec<_> = pipeline.process_stream(stream::iter((0..6).map(Fragile))).collect().await;
    assert_eq!(results.len(), 6);
    let err = results[3].as_ref().unwrap_err();
    assert_eq!(panicked(err).message(), "clone bug");
    assert!(err.item::<Fragile>().is_none());
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 5);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_panicking_dead_letter_sink_reports_the_item_and_the_stream_goes_on() {
    let sunk = Arc::new(AtomicUsize::new(0));
    let counter = sunk.clone();
    let pipeline = PipelineService::builder::<u64>()
        .stage_fn("odd-fails", |n: u64| async move {
            if n % 2 == 1 {
                Err::<u64, BoxError>("odd".into())
            } else {
                Ok(n)
            }
        })
        .dead_letter(move |letter| {
            assert!(*letter.item() != 3, "sink bug");
            counter.fetch_add(1, Ordering::SeqCst);
        })
        .build()
        .unwrap();
    let results: Vec<_> = pipeline.process_stream(stream::iter(0..6u64)).collect().await;
    // 0, 2, 4 pass; 1 and 5 go to the sink; 3 made the sink panic and is reported.
    assert_eq!(results.len(), 4);
    let err = results.iter().find_map(|r| r.as_ref().err()).unwrap();
    assert_eq!(err.seq(), Some(3));
    assert_eq!(panicked(err).message(), "sink bug");
    assert!(!err.is_dead_lettered());
    assert_eq!(sunk.load(Ordering::SeqCst), 2);
    let stage = pipeline.handle().snapshot().stage("odd-fails").unwrap().clone();
    assert_eq!((stage.errors, stage.dead_lettered), (3, 2));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_panicking_listener_misses_its_event_and_nothing_else() {
    let pipeline = PipelineService::builder::<u64>()
        .on_event(|e: &PipelineEvent| panic!("listener bug: {e:?}"))
        .stage_fn("fails", |n: u64| async move {
            if n == 1 {
                Err::<u64, BoxError>("one".into())
            } else {
                Ok(n)
            }
        })
        .build()
        .unwrap();
    pipeline.handle().on_event(|_: &PipelineEvent| panic!("handle listener bug"));
    let results: Vec<_> = pipeline.process_stream(stream::iter(0..4u64)).collect().await;
    assert_eq!(results.len(), 4);
    assert!(results[1].is_err());
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 3);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_panicking_input_stream_ends_the_input_with_an_error() {
    for (execution, order, concurrency) in MODES {
        let input = stream::iter(0..10u64).map(|n| {
            assert!(n != 3, "input bug");
            n
        });
        let pipeline = PipelineService::builder::<u64>()
            .map("id", |n: u64| n)
            .concurrency(concurrency)
            .execution(execution)
            .order(order)
            .build()
            .unwrap();
        let results: Vec<_> = pipeline.process_stream(input).collect().await;
        assert_eq!(results.len(), 4, "three items, then the error, then the end");
        let err = results.iter().find_map(|r| r.as_ref().err()).unwrap();
        assert_eq!((err.stage(), err.seq()), ("input", Some(3)));
        assert_eq!(panicked(err).message(), "input bug");
    }
}

/// Panics on item 2 in `call`, on item 4 in the response future, and in the seventh
/// `poll_ready` (waiting to call item 6).
#[derive(Clone)]
struct PanickyBatchService {
    checks: Arc<AtomicUsize>,
}

impl Service<u32> for PanickyBatchService {
    type Response = u32;
    type Error = BoxError;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<u32, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        assert!(self.checks.fetch_add(1, Ordering::SeqCst) != 6, "ready bug");
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, n: u32) -> Self::Future {
        assert!(n != 2, "call bug");
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(u64::from(10 - n))).await;
            assert!(n != 4, "future bug");
            if n == 8 {
                Err("eight".into())
            } else {
                Ok(n * 10)
            }
        })
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_batch_item_that_panics_fails_alone_and_the_batch_goes_on() {
    let reports = Arc::new(AtomicUsize::new(0));
    let seen = reports.clone();
    let batch = Batch::builder()
        .max_concurrency(3)
        .on_progress(move |p| {
            seen.fetch_add(1, Ordering::SeqCst);
            assert!(p.done != 1, "progress bug");
        })
        .build()
        .unwrap();
    let svc = PanickyBatchService { checks: Arc::new(AtomicUsize::new(0)) };
    let results = tokio::time::timeout(HANG_GUARD, batch.run(svc, 0..10)).await.expect("the batch ends");
    assert_eq!(results.len(), 10);
    for (n, r) in results.iter().enumerate() {
        match (n, r) {
            (2 | 4 | 6, Err(BatchError::Panicked(p))) => {
                let expected = match n {
                    2 => "call bug",
                    4 => "future bug",
                    _ => "ready bug",
                };
                assert_eq!(p.message(), expected);
            }
            (8, Err(BatchError::Service(e))) => assert_eq!(e.to_string(), "eight"),
            (n, Ok(v)) => assert_eq!(*v, n as u32 * 10),
            (n, other) => panic!("item {n}: {other:?}"),
        }
    }
    assert_eq!(reports.load(Ordering::SeqCst), 10, "every item reported, the panicking report included");
}

// === 2. sizes from a config ===

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_quorum_of_usize_max_is_refused_not_allocated() {
    // FanOut checks the quorum when it is built...
    let replica = service_fn(|n: u32| async move { Ok::<_, BoxError>(n) });
    let err = FanOut::new([replica, replica], fan::quorum(usize::MAX)).unwrap_err();
    assert_eq!(err.field(), "quorum");
    // ...a split only knows its number of parts per call: it used to allocate room for
    // `usize::MAX` successes there ("capacity overflow") before refusing.
    let split = FanOut::split(replica, |n: u32| vec![n, n + 1], fan::quorum(usize::MAX));
    let err = split.oneshot(1).await.unwrap_err();
    assert_eq!(err.errors().len(), 1);
    assert_eq!(
        err.errors()[0].1.to_string(),
        "invalid `quorum`: must be from 1 to the number of branches (2), got 18446744073709551615"
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn unlimited_concurrency_over_an_endless_input_still_yields() {
    // `concurrency(usize::MAX)` used to make a stage read an always-ready input inside one
    // poll without end (memory growing until the process died).
    for execution in [Execution::Tasks, Execution::Inline] {
        let pipeline = PipelineService::builder::<u64>()
            .map("id", |n: u64| n)
            .concurrency(usize::MAX)
            .buffer(usize::MAX)
            .map("double", |n: u64| n * 2)
            .concurrency(usize::MAX)
            .execution(execution)
            .build()
            .unwrap();
        let first: Vec<u64> =
            pipeline.process_stream(stream::iter(0u64..)).take(20).map(Result::unwrap).collect().await;
        assert_eq!(first, (0..20).map(|n| n * 2).collect::<Vec<_>>());
    }
}

// === 8. extreme configs: a ConfigError, or a pipeline that serves ===

fn sizes() -> impl Strategy<Value = usize> {
    prop_oneof![Just(0usize), Just(1), Just(2), Just(16), Just(1 << 20), Just(usize::MAX)]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn pipeline_builders_refuse_or_serve(
        concurrency in sizes(),
        buffer in sizes(),
        inline in any::<bool>(),
        completion in any::<bool>(),
        fail_fast in any::<bool>(),
        items in 0u64..20,
    ) {
        let built = PipelineService::builder::<u64>()
            .stage_fn("slow", |n: u64| async move {
                tokio::time::sleep(Duration::from_millis(n % 3)).await;
                Ok::<_, BoxError>(n)
            })
            .concurrency(concurrency)
            .buffer(buffer)
            .map("double", |n: u64| n * 2)
            .concurrency(concurrency)
            .buffer(buffer)
            .execution(if inline { Execution::Inline } else { Execution::Tasks })
            .order(if completion { Order::Completion } else { Order::Preserved })
            .fail_fast(fail_fast)
            .build();
        let Ok(pipeline) = built else {
            let e = built.unwrap_err();
            prop_assert!(["concurrency", "buffer"].contains(&e.field()), "{}", e);
            return Ok(());
        };
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap();
        rt.block_on(async {
            let run = pipeline.process_stream(stream::iter(0..items)).collect::<Vec<_>>();
            let results = tokio::time::timeout(HANG_GUARD, run).await.expect("no hang");
            let mut out: Vec<u64> = results.into_iter().map(Result::unwrap).collect();
            out.sort_unstable();
            prop_assert_eq!(out, (0..items).map(|n| n * 2).collect::<Vec<_>>());
            // As a service too.
            let answer = tokio::time::timeout(HANG_GUARD, pipeline.clone().oneshot(21)).await.expect("no hang");
            prop_assert_eq!(answer.unwrap(), 42);
            Ok(())
        })?;
    }

    #[test]
    fn batch_configs_refuse_or_serve(
        max_concurrency in sizes(),
        max_per_second in proptest::option::of(prop_oneof![
            Just(0u32), Just(1), Just(1000), Just(1_000_000_000), Just(1_000_000_001), Just(u32::MAX)
        ]),
        from_serde in any::<bool>(),
        items in 0u32..12,
    ) {
        let built = if from_serde {
            let config: palisade_pipeline::BatchConfig = serde_json::from_value(serde_json::json!({
                "max_concurrency": max_concurrency,
                "max_per_second": max_per_second,
            })).unwrap();
            config.build()
        } else {
            let b = Batch::builder().max_concurrency(max_concurrency);
            match max_per_second { Some(n) => b.max_per_second(n), None => b }.build()
        };
        let Ok(batch) = built else {
            let e = built.unwrap_err();
            prop_assert!(["max_concurrency", "max_per_second"].contains(&e.field()), "{}", e);
            return Ok(());
        };
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap();
        rt.block_on(async {
            let svc = service_fn(|n: u32| async move {
                tokio::time::sleep(Duration::from_millis(u64::from(n % 4))).await;
                if n % 5 == 4 { Err::<u32, BoxError>("five".into()) } else { Ok(n + 1) }
            });
            let results = tokio::time::timeout(HANG_GUARD, batch.run(svc, 0..items)).await.expect("no hang");
            prop_assert_eq!(results.len(), items as usize);
            for (n, r) in (0..items).zip(&results) {
                prop_assert_eq!(r.is_err(), n % 5 == 4);
            }
            Ok(())
        })?;
    }

    #[test]
    fn fan_out_strategies_refuse_or_serve(needed in sizes(), branches in 1usize..5, split in any::<bool>()) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap();
        let replica = service_fn(|n: usize| async move { Ok::<_, BoxError>(n) });
        rt.block_on(async {
            let fits = (1..=branches).contains(&needed);
            if split {
                let s = FanOut::split(replica, move |n: usize| vec![n; branches], fan::quorum(needed));
                let r = tokio::time::timeout(HANG_GUARD, s.oneshot(7)).await.expect("no hang");
                prop_assert_eq!(r.is_ok(), fits);
                if let Ok(v) = r { prop_assert_eq!(v.len(), needed); }
            } else {
                match FanOut::new(vec![replica; branches], fan::quorum(needed)) {
                    Err(e) => { prop_assert!(!fits); prop_assert_eq!(e.field(), "quorum"); }
                    Ok(f) => {
                        let v = tokio::time::timeout(HANG_GUARD, f.oneshot(7)).await.expect("no hang").unwrap();
                        prop_assert_eq!(v.len(), needed);
                    }
                }
            }
            Ok(())
        })?;
    }
}

/// A stage future that answers `n` (after `n` ms when `slow`) and panics when dropped for
/// item 3.
struct DropBomb {
    n: u64,
    sleep: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl std::future::Future for DropBomb {
    type Output = Result<u64, BoxError>;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Some(sleep) = self.sleep.as_mut() {
            std::task::ready!(sleep.as_mut().poll(cx));
        }
        Poll::Ready(Ok(self.n))
    }
}

impl Drop for DropBomb {
    fn drop(&mut self) {
        assert!(self.n != 3 || std::thread::panicking(), "drop bug");
    }
}

/// The given input: `service_fn(|n| DropBomb(n))` with `concurrency(2)` used to exit the
/// program with 101 (the finished future was dropped outside the catch). Now item 3 fails
/// with `Panicked` and the stream goes on.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_stage_future_panicking_on_drop_fails_that_item_only() {
    let given = PipelineService::builder::<u64>()
        .stage("bomb", service_fn(|n: u64| DropBomb { n, sleep: None }))
        .concurrency(2)
        .build()
        .unwrap();
    let results: Vec<_> = given.process_stream(stream::iter(0..6u64)).collect().await;
    assert_eq!(results.len(), 6);
    let errors: Vec<&StageError> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert_eq!(errors.len(), 1);
    assert_eq!((errors[0].stage(), errors[0].seq()), ("bomb", Some(3)));
    assert_eq!(panicked(errors[0]).message(), "drop bug");
    // Own cases: every execution mode and order, answering at once and after a delay (the
    // in-flight sets' paths).
    check_modes(service_fn(|n: u64| DropBomb { n, sleep: None }), "panicky", "drop bug").await;
    let slow = service_fn(|n: u64| DropBomb {
        n,
        sleep: Some(Box::pin(tokio::time::sleep(Duration::from_millis(10 - n)))),
    });
    check_modes(slow, "panicky", "drop bug").await;
}
