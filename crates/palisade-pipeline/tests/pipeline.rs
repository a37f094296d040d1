#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade_core::BoxError;
use palisade_pipeline::{PipelineEvent, PipelineService, Processed, StageError};
use tokio_test::{assert_pending, assert_ready, assert_ready_ok, task};
use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
use tower_test::mock;

fn assert_service<S: Service<u32, Response = usize, Error = StageError>>(_: &S) {}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn types_chain_and_pipeline_is_a_service() {
    let pipeline = PipelineService::builder::<u32>()
        .name("chain")
        .stage_fn("render", |n: u32| async move { Ok::<_, BoxError>(format!("#{n}")) })
        .map("measure", |s: String| s.len())
        .stage("double", service_fn(|n: usize| async move { Ok::<_, BoxError>(n * 2) }))
        .build()
        .unwrap();
    assert_service(&pipeline);

    let out = pipeline.clone().oneshot(1234).await.unwrap();
    assert_eq!(out, 10);

    let snap = pipeline.handle().snapshot();
    assert_eq!(snap.stages.len(), 3);
    assert_eq!(snap.stages.iter().map(|s| &*s.name).collect::<Vec<_>>(), ["render", "measure", "double"]);
    for stage in &snap.stages {
        assert_eq!((stage.items_in, stage.items_out, stage.errors, stage.in_flight), (1, 1, 0, 0));
        assert_eq!(stage.latency_count, 1);
    }
    assert_eq!(pipeline.handle().name(), "chain");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn filter_yields_filtered_not_error() {
    let pipeline = PipelineService::builder::<u32>()
        .filter("even", |n: &u32| n % 2 == 0)
        .map("half", |n: u32| n / 2)
        .build()
        .unwrap();

    assert_eq!(pipeline.clone().oneshot(8).await.unwrap(), Processed::Item(4));
    match pipeline.clone().oneshot(7).await.unwrap() {
        Processed::Filtered(f) => assert_eq!(f.stage(), "even"),
        other @ Processed::Item(_) => panic!("expected filtered, got {other:?}"),
    }
    let snap = pipeline.handle().snapshot();
    assert_eq!(snap.stage("even").unwrap().filtered, 1);
    assert_eq!(snap.stage("half").unwrap().items_in, 1);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn filter_map_service_drops_none() {
    let lookup =
        service_fn(|id: u32| async move { Ok::<_, BoxError>((id < 10).then(|| format!("user{id}"))) });
    let pipeline = PipelineService::builder::<u32>().filter_map("lookup", lookup).build().unwrap();
    assert_eq!(pipeline.clone().oneshot(3).await.unwrap().into_item().as_deref(), Some("user3"));
    assert!(pipeline.clone().oneshot(30).await.unwrap().is_filtered());
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn error_names_the_stage_and_keeps_the_item() {
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = events.clone();
    let pipeline = PipelineService::builder::<u32>()
        .map("parse", |n: u32| n + 1)
        .stage_fn("enrich", |n: u32| async move {
            if n == 5 {
                Err::<u32, BoxError>("enrich backend down".into())
            } else {
                Ok(n)
            }
        })
        .keep_failed_items()
        .on_event(move |e: &PipelineEvent| seen.lock().unwrap().push(e.clone()))
        .build()
        .unwrap();

    let err = pipeline.clone().oneshot(4).await.unwrap_err();
    assert_eq!(err.stage(), "enrich");
    assert_eq!(err.position(), 1);
    assert_eq!(err.item::<u32>(), Some(&5));
    assert_eq!(err.error().to_string(), "enrich backend down");
    assert_eq!(err.seq(), None);
    assert_eq!(err.into_item::<u32>().unwrap(), 5);

    let events = events.lock().unwrap();
    assert_eq!(events.len(), 1);
    assert!(matches!(&events[0], PipelineEvent::StageFailed { stage, .. } if &**stage == "enrich"));
    assert_eq!(pipeline.handle().snapshot().stage("enrich").unwrap().errors, 1);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_layer_wraps_one_stage() {
    // Only the slow stage has a timeout; palisade's retry/breaker/rate-limit layers go in the
    // same place.
    let pipeline = PipelineService::builder::<u64>()
        .map("parse", |ms: u64| ms)
        .layered(
            "fetch",
            tower::timeout::TimeoutLayer::new(Duration::from_millis(50)),
            service_fn(|ms: u64| async move {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                Ok::<_, BoxError>(ms)
            }),
        )
        .build()
        .unwrap();
    assert_eq!(pipeline.clone().oneshot(10).await.unwrap(), 10);
    let err = pipeline.clone().oneshot(100).await.unwrap_err();
    assert_eq!(err.stage(), "fetch");
    assert!(err.error().is::<tower::timeout::error::Elapsed>());
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn stage_built_with_service_builder() {
    let enrich = ServiceBuilder::new()
        .concurrency_limit(2)
        .service(service_fn(|n: u32| async move { Ok::<_, BoxError>(n * 10) }));
    let pipeline = PipelineService::builder::<u32>().stage("enrich", enrich).build().unwrap();
    assert_eq!(pipeline.oneshot(2).await.unwrap(), 20);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn poll_ready_is_the_first_stage_readiness() {
    let (svc, mut handle) = mock::pair::<u32, u32>();
    let mut pipeline =
        PipelineService::builder::<u32>().stage("first", svc).map("second", |n: u32| n + 1).build().unwrap();

    handle.allow(0);
    let mut ready = task::spawn(());
    assert_pending!(ready.enter(|cx, _| pipeline.poll_ready(cx)));

    handle.allow(1);
    assert!(ready.is_woken());
    assert_ready_ok!(ready.enter(|cx, _| pipeline.poll_ready(cx)));

    let mut fut = task::spawn(pipeline.call(1));
    assert_pending!(fut.poll());
    let (req, send) = handle.next_request().await.unwrap();
    assert_eq!(req, 1);
    send.send_response(41);
    assert_eq!(assert_ready!(fut.poll()).unwrap(), 42);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn readiness_error_names_first_stage() {
    let (svc, mut handle) = mock::pair::<u32, u32>();
    let mut pipeline = PipelineService::builder::<u32>().stage("first", svc).build().unwrap();
    handle.send_error("not today");
    let err = std::future::poll_fn(|cx| pipeline.poll_ready(cx)).await.unwrap_err();
    assert_eq!(err.stage(), "first");
    assert_eq!(pipeline.handle().snapshot().stage("first").unwrap().errors, 1);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn dropping_the_response_future_drops_the_stage_call() {
    let live = support::AliveCounter::new();
    let counter = live.clone();
    let pipeline = PipelineService::builder::<u32>()
        .map("parse", |n: u32| n)
        .stage_fn("slow", move |n: u32| {
            let token = counter.token();
            async move {
                let _token = token;
                tokio::time::sleep(Duration::from_secs(60)).await;
                Ok::<_, BoxError>(n)
            }
        })
        .build()
        .unwrap();

    let mut fut = task::spawn(pipeline.clone().oneshot(1));
    assert_pending!(fut.poll());
    assert_eq!(live.alive(), 1);
    assert_eq!(pipeline.handle().snapshot().stage("slow").unwrap().in_flight, 1);
    drop(fut);
    assert_eq!(live.alive(), 0);
    assert_eq!(pipeline.handle().snapshot().stage("slow").unwrap().in_flight, 0);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn dead_letter_on_the_service_path() {
    let letters = Arc::new(Mutex::new(Vec::new()));
    let sink = letters.clone();
    let pipeline = PipelineService::builder::<String>()
        .stage_fn(
            "deliver",
            |s: String| async move { Err::<(), BoxError>(format!("cannot deliver {s}").into()) },
        )
        .dead_letter(move |dl| sink.lock().unwrap().push((dl.stage().to_owned(), dl.item().clone())))
        .build()
        .unwrap();
    let err = pipeline.oneshot("hello".to_owned()).await.unwrap_err();
    assert!(err.is_dead_lettered());
    assert_eq!(&*letters.lock().unwrap(), &[("deliver".to_owned(), "hello".to_owned())]);
}

#[test]
fn invalid_settings_are_config_errors() {
    let err = PipelineService::builder::<u32>().map("a", |n: u32| n).concurrency(0).build().unwrap_err();
    assert_eq!(err.field(), "concurrency");
    let err = PipelineService::builder::<u32>().map("a", |n: u32| n).buffer(0).build().unwrap_err();
    assert_eq!(err.field(), "buffer");
    let err =
        PipelineService::builder::<u32>().map("a", |n: u32| n).map("a", |n: u32| n).build().unwrap_err();
    assert_eq!(err.field(), "stage");
    let err = PipelineService::builder::<u32>().name("").map("a", |n: u32| n).build().unwrap_err();
    assert_eq!(err.field(), "name");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn clones_share_metrics() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let pipeline = PipelineService::builder::<u32>()
        .stage_fn("count", move |n: u32| {
            c.fetch_add(1, Ordering::SeqCst);
            async move { Ok::<_, BoxError>(n) }
        })
        .build()
        .unwrap();
    let a = pipeline.clone();
    let b = pipeline.clone();
    a.oneshot(1).await.unwrap();
    b.oneshot(2).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(pipeline.handle().snapshot().stage("count").unwrap().items_out, 2);
}

// === the tower contract, through a first stage that holds capacity ===

fn limited_pipeline() -> impl Service<u32, Response = u32, Error = StageError> + Clone {
    let limited = ServiceBuilder::new().concurrency_limit(1).service(service_fn(|n: u32| async move {
        tokio::time::sleep(Duration::from_millis(10)).await;
        if n == 0 {
            Err::<u32, BoxError>("zero".into())
        } else {
            Ok(n)
        }
    }));
    PipelineService::builder::<u32>().stage("limited", limited).map("next", |n: u32| n).build().unwrap()
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn reserving_without_calling_holds_the_first_stage_and_dropping_frees_it() {
    let mut a = limited_pipeline();
    let mut b = a.clone();
    let mut ta = task::spawn(());
    let mut tb = task::spawn(());
    assert_ready_ok!(ta.enter(|cx, _| a.poll_ready(cx)));
    assert_pending!(tb.enter(|cx, _| b.poll_ready(cx)));
    drop(a);
    assert!(tb.is_woken());
    assert_ready_ok!(tb.enter(|cx, _| b.poll_ready(cx)));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn dropping_the_response_future_or_an_error_frees_the_first_stage() {
    let mut a = limited_pipeline();
    let mut b = a.clone();
    let mut tb = task::spawn(());

    // Dropped future.
    std::future::poll_fn(|cx| a.poll_ready(cx)).await.unwrap();
    let mut fut = task::spawn(a.call(1));
    assert_pending!(fut.poll());
    assert_pending!(tb.enter(|cx, _| b.poll_ready(cx)));
    drop(fut);
    assert!(tb.is_woken());
    assert_ready_ok!(tb.enter(|cx, _| b.poll_ready(cx)));

    // An error.
    let err = b.call(0).await.unwrap_err();
    assert_eq!(err.stage(), "limited");
    assert_ready_ok!(task::spawn(()).enter(|cx, _| a.poll_ready(cx)));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn waiters_are_woken_in_order() {
    let mut first = limited_pipeline();
    let mut waiters: Vec<_> = (0..3).map(|_| first.clone()).collect();
    std::future::poll_fn(|cx| first.poll_ready(cx)).await.unwrap();
    let mut tasks: Vec<_> = (0..3).map(|_| task::spawn(())).collect();
    for (t, w) in tasks.iter_mut().zip(waiters.iter_mut()) {
        assert_pending!(t.enter(|cx, _| w.poll_ready(cx)));
    }
    assert_eq!(first.call(5).await.unwrap(), 5);
    assert!(tasks[0].is_woken());
    assert!(!tasks[1].is_woken());
    assert_ready_ok!(tasks[0].enter(|cx, _| waiters[0].poll_ready(cx)));
    assert_eq!(waiters[0].call(6).await.unwrap(), 6);
    assert!(tasks[1].is_woken());
    assert_ready_ok!(tasks[1].enter(|cx, _| waiters[1].poll_ready(cx)));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_later_stage_readiness_error_keeps_the_item() {
    let (svc, mut handle) = mock::pair::<u32, u32>();
    let pipeline = PipelineService::builder::<u32>()
        .map("first", |n: u32| n + 1)
        .stage("second", svc)
        .keep_failed_items()
        .build()
        .unwrap();
    handle.send_error("second is broken");
    let err = pipeline.oneshot(1).await.unwrap_err();
    assert_eq!(err.stage(), "second");
    assert_eq!(err.item::<u32>(), Some(&2));
}
