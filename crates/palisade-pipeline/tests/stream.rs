#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{stream, StreamExt};
use palisade_core::BoxError;
use palisade_pipeline::{Order, PipelineEvent, PipelineService};
use support::{alive_tasks, settle, AliveCounter, Tracked};
use tokio_test::{assert_pending, task};

/// A stage that sleeps `delay(n)` then passes `n` on.
fn sleepy(
    delay: fn(u64) -> u64,
) -> impl FnMut(u64) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<u64, BoxError>> + Send>> + Clone
{
    move |n| {
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(delay(n))).await;
            Ok(n)
        })
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn preserved_order_despite_reversed_latencies() {
    let pipeline = PipelineService::builder::<u64>()
        .stage_fn("slow-first", sleepy(|n| 100 - n * 10))
        .concurrency(10)
        .map("id", |n: u64| n)
        .build()
        .unwrap();
    let out: Vec<u64> = pipeline.process_stream(stream::iter(0..10)).map(Result::unwrap).collect().await;
    assert_eq!(out, (0..10).collect::<Vec<_>>());
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn completion_order_when_configured() {
    let pipeline = PipelineService::builder::<u64>()
        .stage_fn("slow-first", sleepy(|n| 100 - n * 10))
        .concurrency(10)
        .map("id", |n: u64| n)
        .order(Order::Completion)
        .build()
        .unwrap();
    let out: Vec<u64> = pipeline.process_stream(stream::iter(0..10)).map(Result::unwrap).collect().await;
    assert_eq!(out, (0..10).rev().collect::<Vec<_>>());
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn filters_drop_items_from_the_stream() {
    let pipeline = PipelineService::builder::<u64>()
        .filter("even", |n: &u64| n % 2 == 0)
        .map("square", |n: u64| n * n)
        .build()
        .unwrap();
    let out: Vec<u64> = pipeline.process_stream(stream::iter(0..10)).map(Result::unwrap).collect().await;
    assert_eq!(out, [0, 4, 16, 36, 64]);
    assert_eq!(pipeline.handle().snapshot().stage("even").unwrap().filtered, 5);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_stuck_last_stage_bounds_what_the_source_produced() {
    // concurrency and buffer per stage: (2, 4), (3, 5), (1, 6)
    let produced = Arc::new(AtomicU64::new(0));
    let counter = produced.clone();
    let source = stream::iter(0u64..).inspect(move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
    });
    let pipeline = PipelineService::builder::<u64>()
        .map("a", |n: u64| n)
        .concurrency(2)
        .buffer(4)
        .map("b", |n: u64| n)
        .concurrency(3)
        .buffer(5)
        .stage_fn("stuck", |_n: u64| std::future::pending::<Result<u64, BoxError>>())
        .concurrency(1)
        .buffer(6)
        .build()
        .unwrap();

    let mut out = task::spawn(pipeline.process_stream(source));
    assert_pending!(out.poll_next());
    settle().await;
    assert_pending!(out.poll_next());

    // stuck holds 1; b's buffer 5, b holds 3 done; a's buffer 4, a holds 2.
    assert_eq!(produced.load(Ordering::SeqCst), 1 + 5 + 3 + 4 + 2);
    let snap = pipeline.handle().snapshot();
    assert_eq!(snap.stage("a").unwrap().queue_depth, 4);
    assert_eq!(snap.stage("b").unwrap().queue_depth, 5);
    assert_eq!(snap.stage("stuck").unwrap().in_flight, 1);
    assert_eq!(snap.stage("a").unwrap().items_in, 2 + 4 + 3 + 5 + 1);

    // Nothing more is read however long we wait.
    tokio::time::advance(Duration::from_secs(3600)).await;
    settle().await;
    assert_pending!(out.poll_next());
    assert_eq!(produced.load(Ordering::SeqCst), 15);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_slow_consumer_bounds_the_pipeline() {
    let produced = Arc::new(AtomicU64::new(0));
    let counter = produced.clone();
    let source = stream::iter(0u64..).inspect(move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
    });
    let pipeline = PipelineService::builder::<u64>()
        .map("a", |n: u64| n)
        .concurrency(2)
        .buffer(3)
        .map("b", |n: u64| n)
        .concurrency(4)
        .buffer(5)
        .build()
        .unwrap();
    let mut out = pipeline.process_stream(source);
    assert_eq!(out.next().await.unwrap().unwrap(), 0);
    settle().await;
    // one taken by the consumer + (2 + 3) + (4 + 5) held
    assert_eq!(produced.load(Ordering::SeqCst), 1 + 2 + 3 + 4 + 5);
    assert_eq!(out.next().await.unwrap().unwrap(), 1);
    settle().await;
    assert_eq!(produced.load(Ordering::SeqCst), 2 + 2 + 3 + 4 + 5);
}

async fn flat_memory(items: u64) {
    let alive = AliveCounter::new();
    let counter = alive.clone();
    let source = stream::iter(0..items).map(move |n| Tracked::new(n, &counter));
    let pipeline = PipelineService::builder::<Tracked>()
        .map("one", |t: Tracked| t)
        .concurrency(4)
        .buffer(8)
        .stage_fn("two", |t: Tracked| async move { Ok::<_, BoxError>(t) })
        .concurrency(4)
        .buffer(8)
        .map("three", |mut t: Tracked| {
            t.value += 1;
            t
        })
        .concurrency(4)
        .buffer(8)
        .build()
        .unwrap();
    let mut out = pipeline.process_stream(source);
    let mut count = 0u64;
    let mut sum = 0u64;
    while let Some(t) = out.next().await {
        let t = t.unwrap();
        sum += t.value;
        count += 1;
    }
    assert_eq!(count, items);
    assert_eq!(sum, items * (items + 1) / 2);
    // 3 stages × (concurrency 4 + buffer 8) + the one the consumer holds.
    assert!(alive.max_alive() <= 3 * (4 + 8) + 1, "max alive {}", alive.max_alive());
    assert_eq!(alive.alive(), 0);
}

/// About three seconds in a debug build.
#[tokio::test(flavor = "current_thread")]
async fn million_items_in_flat_memory() {
    flat_memory(1_000_000).await;
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_failed_item_is_reported_and_the_stream_goes_on() {
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = events.clone();
    let pipeline = PipelineService::builder::<u64>()
        .map("parse", |n: u64| n * 10)
        .stage_fn("enrich", |n: u64| async move {
            if n % 30 == 0 {
                Err::<u64, BoxError>(format!("no data for {n}").into())
            } else {
                Ok(n + 1)
            }
        })
        .keep_failed_items()
        .concurrency(3)
        .map("store", |n: u64| n)
        .on_event(move |e: &PipelineEvent| seen.lock().unwrap().push(e.clone()))
        .build()
        .unwrap();
    let results: Vec<_> = pipeline.process_stream(stream::iter(1..=7)).collect().await;
    assert_eq!(results.len(), 7);
    let ok: Vec<u64> = results.iter().filter_map(|r| r.as_ref().ok().copied()).collect();
    assert_eq!(ok, [11, 21, 41, 51, 71]);
    let errs: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert_eq!(errs.len(), 2);
    assert_eq!(errs[0].stage(), "enrich");
    assert_eq!(errs[0].seq(), Some(2));
    assert_eq!(errs[0].item::<u64>(), Some(&30));
    assert_eq!(errs[1].seq(), Some(5));
    assert_eq!(errs[1].item::<u64>(), Some(&60));
    // In order: the errors sit where their items were.
    assert!(results[2].is_err() && results[5].is_err());

    let snap = pipeline.handle().snapshot();
    assert_eq!(snap.stage("enrich").unwrap().errors, 2);
    assert_eq!(snap.stage("store").unwrap().items_in, 5);
    let failed =
        events.lock().unwrap().iter().filter(|e| matches!(e, PipelineEvent::StageFailed { .. })).count();
    assert_eq!(failed, 2);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn failed_items_go_to_the_dead_letter_sink() {
    let letters = Arc::new(Mutex::new(Vec::new()));
    let sink = letters.clone();
    let events = Arc::new(AtomicUsize::new(0));
    let seen = events.clone();
    let pipeline = PipelineService::builder::<u64>()
        .map("parse", |n: u64| format!("msg-{n}"))
        .stage_fn("deliver", |s: String| async move {
            if s.ends_with('3') {
                Err::<String, BoxError>("mailbox full".into())
            } else {
                Ok(s)
            }
        })
        .dead_letter(move |dl| {
            let (item, err) = (dl.item().clone(), dl.error().to_string());
            sink.lock().unwrap().push((dl.seq(), item, err));
        })
        .on_event(move |e: &PipelineEvent| {
            if matches!(e, PipelineEvent::DeadLettered { .. }) {
                seen.fetch_add(1, Ordering::SeqCst);
            }
        })
        .build()
        .unwrap();
    let out: Vec<String> = pipeline.process_stream(stream::iter(0..15)).map(Result::unwrap).collect().await;
    assert_eq!(out.len(), 13);
    assert!(!out.contains(&"msg-3".to_owned()));
    let letters = letters.lock().unwrap();
    assert_eq!(
        &*letters,
        &[
            (Some(3), "msg-3".to_owned(), "mailbox full".to_owned()),
            (Some(13), "msg-13".to_owned(), "mailbox full".to_owned())
        ]
    );
    assert_eq!(events.load(Ordering::SeqCst), 2);
    assert_eq!(pipeline.handle().snapshot().stage("deliver").unwrap().dead_lettered, 2);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn fail_fast_stops_at_the_first_error() {
    let produced = Arc::new(AtomicU64::new(0));
    let counter = produced.clone();
    let source = stream::iter(0u64..).inspect(move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
    });
    let pipeline = PipelineService::builder::<u64>()
        .stage_fn("check", |n: u64| async move {
            if n == 4 {
                Err::<u64, BoxError>("bad record".into())
            } else {
                Ok(n)
            }
        })
        .buffer(2)
        .map("store", |n: u64| n)
        .buffer(2)
        .fail_fast(true)
        .build()
        .unwrap();
    let mut out = pipeline.process_stream(source);
    let results: Vec<_> = (&mut out).collect().await;
    assert_eq!(results.len(), 5);
    assert_eq!(results[..4].iter().map(|r| *r.as_ref().unwrap()).collect::<Vec<_>>(), [0, 1, 2, 3]);
    assert_eq!(results[4].as_ref().unwrap_err().stage(), "check");
    settle().await;
    let after_stop = produced.load(Ordering::SeqCst);
    // The source was only ever read as far as the buffers allowed.
    assert!(after_stop <= 5 + (1 + 2) + (1 + 2), "produced {after_stop}");
    assert_eq!(alive_tasks(), 0);
    settle().await;
    assert_eq!(produced.load(Ordering::SeqCst), after_stop);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn dropping_the_output_cancels_every_stage() {
    let (in_a, in_b) = (AliveCounter::new(), AliveCounter::new());
    let service_clones = Arc::new(());
    let (c1, c2) = (in_a.clone(), in_b.clone());
    let (m1, m2) = (service_clones.clone(), service_clones.clone());
    let pipeline = PipelineService::builder::<u64>()
        .stage_fn("a", move |n: u64| {
            std::hint::black_box(&m1);
            let token = c1.token();
            async move {
                let _token = token;
                tokio::time::sleep(Duration::from_millis(1)).await;
                Ok::<_, BoxError>(n)
            }
        })
        .concurrency(4)
        .stage_fn("b", move |n: u64| {
            std::hint::black_box(&m2);
            let token = c2.token();
            async move {
                let _token = token;
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Ok::<_, BoxError>(n)
            }
        })
        .concurrency(3)
        .build()
        .unwrap();
    let baseline = Arc::strong_count(&service_clones);

    let mut out = task::spawn(pipeline.process_stream(stream::iter(0u64..)));
    assert_pending!(out.poll_next());
    settle().await;
    assert_pending!(out.poll_next());
    assert_eq!(out.running_tasks(), 2);
    assert_eq!(alive_tasks(), 2);
    assert_eq!(in_b.alive(), 3, "b has three calls in flight");
    assert!(in_a.alive() <= 4);
    assert!(Arc::strong_count(&service_clones) > baseline);

    drop(out);
    settle().await;
    assert_eq!(alive_tasks(), 0);
    assert_eq!(in_a.alive() + in_b.alive(), 0);
    assert_eq!(Arc::strong_count(&service_clones), baseline);
    let snap = pipeline.handle().snapshot();
    assert_eq!(snap.stage("b").unwrap().in_flight, 0);
    assert_eq!(snap.stage("a").unwrap().queue_depth, 0);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn tasks_end_with_the_stream() {
    let pipeline =
        PipelineService::builder::<u64>().map("a", |n: u64| n).map("b", |n: u64| n).build().unwrap();
    let mut out = pipeline.process_stream(stream::iter(0..100));
    assert_eq!(out.running_tasks(), 0, "nothing runs before the first poll");
    let mut n = 0;
    while let Some(r) = out.next().await {
        r.unwrap();
        n += 1;
    }
    assert_eq!(n, 100);
    assert_eq!(out.running_tasks(), 0);
    assert_eq!(alive_tasks(), 0);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_stage_panic_fails_that_item_and_the_stream_goes_on() {
    let pipeline = PipelineService::builder::<u64>()
        .stage_fn("boom", |n: u64| async move {
            assert!(n != 3, "stage blew up");
            Ok::<_, BoxError>(n)
        })
        .build()
        .unwrap();
    let results: Vec<_> = pipeline.process_stream(stream::iter(0..10)).collect().await;
    assert_eq!(results.len(), 10);
    let err = results[3].as_ref().unwrap_err();
    assert_eq!((err.stage(), err.seq()), ("boom", Some(3)));
    let panicked = err.error().downcast_ref::<palisade_pipeline::Panicked>().unwrap();
    assert_eq!(panicked.message(), "stage blew up");
    assert!(results.iter().enumerate().all(|(i, r)| i == 3 || r.as_ref().ok() == Some(&(i as u64))));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn each_stage_runs_at_its_own_concurrency() {
    let (in_a, in_b) = (AliveCounter::new(), AliveCounter::new());
    let (c1, c2) = (in_a.clone(), in_b.clone());
    let pipeline = PipelineService::builder::<u64>()
        .stage_fn("a", move |n: u64| {
            let token = c1.token();
            async move {
                let _token = token;
                tokio::time::sleep(Duration::from_millis(1 + n % 3)).await;
                Ok::<_, BoxError>(n)
            }
        })
        .concurrency(3)
        .stage_fn("b", move |n: u64| {
            let token = c2.token();
            async move {
                let _token = token;
                tokio::time::sleep(Duration::from_millis(2 + n % 5)).await;
                Ok::<_, BoxError>(n)
            }
        })
        .concurrency(5)
        .build()
        .unwrap();
    let out: Vec<u64> = pipeline.process_stream(stream::iter(0..200)).map(Result::unwrap).collect().await;
    assert_eq!(out, (0..200).collect::<Vec<_>>());
    assert_eq!(in_a.max_alive(), 3);
    assert_eq!(in_b.max_alive(), 5);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn completion_order_lets_items_pass_a_stuck_one() {
    let pipeline = PipelineService::builder::<u64>()
        .stage_fn("maybe-stuck", |n: u64| async move {
            if n == 0 {
                std::future::pending::<()>().await;
            }
            Ok::<_, BoxError>(n)
        })
        .concurrency(4)
        .order(Order::Completion)
        .build()
        .unwrap();
    let mut out = pipeline.process_stream(stream::iter(0..10));
    let mut got = Vec::new();
    for _ in 0..9 {
        got.push(out.next().await.unwrap().unwrap());
    }
    got.sort_unstable();
    assert_eq!(got, (1..10).collect::<Vec<_>>());

    // In input order nothing passes the stuck item.
    let ordered = PipelineService::builder::<u64>()
        .stage_fn("maybe-stuck", |n: u64| async move {
            if n == 0 {
                std::future::pending::<()>().await;
            }
            Ok::<_, BoxError>(n)
        })
        .concurrency(4)
        .build()
        .unwrap();
    let mut out = task::spawn(ordered.process_stream(stream::iter(0..10)));
    assert_pending!(out.poll_next());
    settle().await;
    assert_pending!(out.poll_next());
    assert_eq!(ordered.handle().snapshot().stage("maybe-stuck").unwrap().items_in, 4);
}

// === Execution::Inline: the same guarantees without tasks ===

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn inline_stages_bound_the_source_and_spawn_nothing() {
    let produced = Arc::new(AtomicU64::new(0));
    let counter = produced.clone();
    let source = stream::iter(0u64..).inspect(move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
    });
    let pipeline = PipelineService::builder::<u64>()
        .map("a", |n: u64| n)
        .concurrency(2)
        .buffer(4)
        .stage_fn("stuck", |_n: u64| std::future::pending::<Result<u64, BoxError>>())
        .concurrency(3)
        .execution(palisade_pipeline::Execution::Inline)
        .build()
        .unwrap();
    let mut out = task::spawn(pipeline.process_stream(source));
    for _ in 0..10 {
        assert_pending!(out.poll_next());
    }
    assert_eq!(alive_tasks(), 0);
    assert_eq!(out.running_tasks(), 2);
    // stuck holds 3, a's buffer 4, a holds 2
    assert_eq!(produced.load(Ordering::SeqCst), 3 + 4 + 2);
    drop(out);
    assert_eq!(pipeline.handle().snapshot().stage("stuck").unwrap().in_flight, 0);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn inline_stages_preserve_order_and_drop_cleanly() {
    let live = AliveCounter::new();
    let counter = live.clone();
    let pipeline = PipelineService::builder::<u64>()
        .stage_fn("slow", move |n: u64| {
            let token = counter.token();
            async move {
                let _token = token;
                tokio::time::sleep(Duration::from_millis(20 - n % 20)).await;
                Ok::<_, BoxError>(n)
            }
        })
        .concurrency(8)
        .map("double", |n: u64| n * 2)
        .execution(palisade_pipeline::Execution::Inline)
        .build()
        .unwrap();
    let mut out = pipeline.process_stream(stream::iter(0..1000));
    let first: Vec<u64> = (&mut out).take(100).map(Result::unwrap).collect().await;
    assert_eq!(first, (0..100).map(|n| n * 2).collect::<Vec<_>>());
    assert!(live.alive() > 0);
    drop(out);
    assert_eq!(live.alive(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stages_on_several_threads_keep_order_and_count() {
    let pipeline = PipelineService::builder::<u64>()
        .stage_fn("one", |n: u64| async move {
            if n % 7 == 0 {
                tokio::task::yield_now().await;
            }
            Ok::<_, BoxError>(n + 1)
        })
        .concurrency(8)
        .buffer(4)
        .map("two", |n: u64| n * 2)
        .concurrency(3)
        .buffer(2)
        .stage_fn("three", |n: u64| async move {
            if n % 5 == 0 {
                tokio::task::yield_now().await;
            }
            Ok::<_, BoxError>(n)
        })
        .concurrency(5)
        .build()
        .unwrap();
    let out: Vec<u64> =
        pipeline.process_stream(stream::iter(0..50_000u64)).map(Result::unwrap).collect().await;
    assert_eq!(out.len(), 50_000);
    assert!(out.iter().enumerate().all(|(i, v)| *v == (i as u64 + 1) * 2));
    let snap = pipeline.handle().snapshot();
    for stage in &snap.stages {
        assert_eq!(
            (stage.items_in, stage.items_out, stage.in_flight, stage.queue_depth),
            (50_000, 50_000, 0, 0)
        );
    }
}
