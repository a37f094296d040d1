#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade_core::BoxError;
use palisade_pipeline::{Batch, PipelineService, Progress};
use support::AliveCounter;
use tokio_test::{assert_pending, assert_ready, task};
use tower::{service_fn, ServiceBuilder};

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn results_come_back_in_input_order() {
    let batch = Batch::builder().max_concurrency(8).build().unwrap();
    let svc = service_fn(|n: u64| async move {
        tokio::time::sleep(Duration::from_millis(100 - n)).await;
        if n % 7 == 0 {
            Err::<u64, BoxError>(format!("{n} rejected").into())
        } else {
            Ok(n * 3)
        }
    });
    let results = batch.run(svc, 1..=50).await;
    assert_eq!(results.len(), 50);
    for (i, r) in results.iter().enumerate() {
        let n = i as u64 + 1;
        match r {
            Ok(v) => assert_eq!(*v, n * 3),
            Err(e) => {
                assert_eq!(n % 7, 0);
                assert_eq!(e.to_string(), format!("{n} rejected"));
            }
        }
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn concurrency_is_capped() {
    let live = AliveCounter::new();
    let counter = live.clone();
    let batch = Batch::builder().max_concurrency(5).build().unwrap();
    let svc = service_fn(move |n: u64| {
        let token = counter.token();
        async move {
            let _token = token;
            tokio::time::sleep(Duration::from_millis(1 + n % 4)).await;
            Ok::<_, BoxError>(n)
        }
    });
    let results = batch.run(svc, 0..100).await;
    assert_eq!(results.len(), 100);
    assert_eq!(live.max_alive(), 5);
    assert_eq!(live.alive(), 0);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn progress_reports_every_completion() {
    let reports = Arc::new(Mutex::new(Vec::new()));
    let seen = reports.clone();
    let batch = Batch::builder()
        .max_concurrency(3)
        .on_progress(move |p: Progress| seen.lock().unwrap().push(p))
        .build()
        .unwrap();
    let svc = service_fn(|n: u32| async move {
        if n % 4 == 0 {
            Err::<u32, BoxError>("no".into())
        } else {
            Ok(n)
        }
    });
    batch.run(svc, 0..10).await;
    let reports = reports.lock().unwrap();
    assert_eq!(reports.len(), 10);
    assert_eq!(reports.iter().map(|p| p.done).collect::<Vec<_>>(), (1..=10).collect::<Vec<_>>());
    assert!(reports.iter().all(|p| p.total == 10));
    assert_eq!(reports.last().unwrap().failures, 3);
    assert!(reports.windows(2).all(|w| w[0].failures <= w[1].failures));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn max_per_second_paces_the_calls() {
    let started = Arc::new(AtomicUsize::new(0));
    let counter = started.clone();
    let batch = Batch::builder().max_concurrency(100).max_per_second(10).build().unwrap();
    let svc = service_fn(move |n: u32| {
        counter.fetch_add(1, Ordering::SeqCst);
        async move { Ok::<_, BoxError>(n) }
    });
    let mut run = task::spawn(batch.run(svc, 0..25));
    assert_pending!(run.poll());
    assert_eq!(started.load(Ordering::SeqCst), 1, "the first call goes at once");
    for expected in 2..=25 {
        tokio::time::advance(Duration::from_millis(99)).await;
        let _ = run.poll();
        assert_eq!(started.load(Ordering::SeqCst), expected - 1);
        tokio::time::advance(Duration::from_millis(1)).await;
        let done = run.poll();
        assert_eq!(started.load(Ordering::SeqCst), expected);
        if expected == 25 {
            assert_eq!(assert_ready!(done).len(), 25);
        }
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn composes_with_a_rate_limit_layer() {
    // Any layer that applies backpressure in poll_ready works: tower's RateLimit here;
    // palisade's RateLimitLayer goes in the same place.
    let started = Arc::new(AtomicUsize::new(0));
    let counter = started.clone();
    let svc =
        ServiceBuilder::new().rate_limit(2, Duration::from_secs(1)).service(service_fn(move |n: u32| {
            counter.fetch_add(1, Ordering::SeqCst);
            async move { Ok::<_, BoxError>(n) }
        }));
    let batch = Batch::builder().max_concurrency(10).build().unwrap();
    let mut run = task::spawn(batch.run(svc, 0..6));
    assert_pending!(run.poll());
    assert_eq!(started.load(Ordering::SeqCst), 2);
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_pending!(run.poll());
    assert_eq!(started.load(Ordering::SeqCst), 4);
    tokio::time::advance(Duration::from_secs(1)).await;
    let results = assert_ready!(run.poll());
    assert_eq!(results.into_iter().map(Result::unwrap).collect::<Vec<_>>(), [0, 1, 2, 3, 4, 5]);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_batch_through_a_pipeline() {
    let pipeline =
        PipelineService::builder::<u32>().map("a", |n: u32| n + 1).map("b", |n: u32| n * 2).build().unwrap();
    let batch = Batch::builder().max_concurrency(4).build().unwrap();
    let results = batch.run(pipeline, 0..5).await;
    assert_eq!(results.into_iter().map(Result::unwrap).collect::<Vec<_>>(), [2, 4, 6, 8, 10]);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn dropping_the_batch_drops_its_calls() {
    let live = AliveCounter::new();
    let counter = live.clone();
    let batch = Batch::builder().max_concurrency(4).build().unwrap();
    let svc = service_fn(move |n: u32| {
        let token = counter.token();
        async move {
            let _token = token;
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok::<_, BoxError>(n)
        }
    });
    let mut run = task::spawn(batch.run(svc, 0..100));
    assert_pending!(run.poll());
    assert_eq!(live.alive(), 4);
    drop(run);
    assert_eq!(live.alive(), 0);
}

#[test]
fn invalid_batch_settings() {
    assert_eq!(Batch::builder().max_concurrency(0).build().unwrap_err().field(), "max_concurrency");
    assert_eq!(Batch::builder().max_per_second(0).build().unwrap_err().field(), "max_per_second");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn empty_batch() {
    let batch = Batch::builder().build().unwrap();
    let results = batch.run(service_fn(|n: u32| async move { Ok::<_, BoxError>(n) }), Vec::new()).await;
    assert!(results.is_empty());
}

#[cfg(feature = "serde")]
#[test]
fn batch_config_from_json() {
    use palisade_pipeline::BatchConfig;
    let config: BatchConfig =
        serde_json::from_str(r#"{ "max_concurrency": 4, "max_per_second": 50 }"#).unwrap();
    assert_eq!(config.max_concurrency, 4);
    assert_eq!(config.max_per_second, Some(50));
    config.build().unwrap();
    let defaults: BatchConfig = serde_json::from_str("{}").unwrap();
    assert_eq!(defaults.max_concurrency, 16);
    let bad: BatchConfig = serde_json::from_str(r#"{ "max_concurrency": 0 }"#).unwrap();
    assert_eq!(bad.build().unwrap_err().field(), "max_concurrency");
    assert!(serde_json::from_str::<BatchConfig>(r#"{ "concurrency": 3 }"#).is_err());
}
