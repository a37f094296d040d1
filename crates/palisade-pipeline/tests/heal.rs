#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
//! Issue 17.5: supervised stages, priority fan-in with inputs added and removed, and an
//! aggregate fan-out.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{stream, StreamExt};
use palisade_core::BoxError;
use palisade_pipeline::fan::{self, FanOut};
use palisade_pipeline::priority::priority_merge;
use palisade_pipeline::supervise::{make_fn, Supervised};
use palisade_pipeline::PipelineService;
use tower::{service_fn, Service, ServiceExt};

/// A factory whose incarnations break from their `breaks_at`-th call on; counts makes.
fn fragile(
    breaks_at: u32,
    made: Arc<AtomicU32>,
) -> impl Service<
    (),
    Response = impl Service<
        u32,
        Response = u32,
        Error = BoxError,
        Future = impl std::future::Future<Output = Result<u32, BoxError>> + Send + 'static,
    > + Send
                   + 'static,
    Error = BoxError,
    Future = impl std::future::Future<
        Output = Result<
            impl Service<
                    u32,
                    Response = u32,
                    Error = BoxError,
                    Future = impl std::future::Future<Output = Result<u32, BoxError>> + Send + 'static,
                > + Send
                + 'static,
            BoxError,
        >,
    > + Send
                 + 'static,
> + Clone
       + Send
       + 'static {
    make_fn(move || {
        let made = made.clone();
        async move {
            made.fetch_add(1, Ordering::SeqCst);
            let calls = Arc::new(AtomicU32::new(0));
            Ok::<_, BoxError>(service_fn(move |x: u32| {
                let n = calls.fetch_add(1, Ordering::SeqCst);
                async move {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    if n >= breaks_at {
                        Err::<u32, BoxError>("worn out".into())
                    } else {
                        Ok(x)
                    }
                }
            }))
        }
    })
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_supervised_stage_restarts_with_fresh_state() {
    let made = Arc::new(AtomicU32::new(0));
    let stage = Supervised::builder().restart_after(2).build(fragile(3, made.clone())).unwrap();
    let pipeline = PipelineService::builder::<u32>().stage("fragile", stage).concurrency(1).build().unwrap();
    let out: Vec<bool> = pipeline.process_stream(stream::iter(0..12)).map(|r| r.is_ok()).collect().await;
    // Three good calls, two failures (the threshold), then a fresh incarnation.
    assert_eq!(out, [true, true, true, false, false, true, true, true, false, false, true, true]);
    assert_eq!(made.load(Ordering::SeqCst), 3);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn restart_counts_and_old_calls_do_not_count() {
    let made = Arc::new(AtomicU32::new(0));
    let mut svc = Supervised::builder().restart_after(1).build(fragile(0, made.clone())).unwrap();
    assert_eq!(
        Supervised::builder().restart_after(0).build(fragile(0, made.clone())).unwrap_err().field(),
        "restart_after"
    );
    // Two calls of the first incarnation in flight; both fail, but only one restart.
    svc.ready().await.unwrap();
    let a = svc.call(1);
    svc.ready().await.unwrap();
    let b = svc.call(2);
    assert!(a.await.is_err());
    assert!(b.await.is_err());
    assert_eq!(svc.restarts(), 1);
    svc.ready().await.unwrap();
    assert_eq!(made.load(Ordering::SeqCst), 2);
    // A make that fails is an error of poll_ready; the next poll_ready tries again.
    let tries = Arc::new(AtomicU32::new(0));
    let t = tries.clone();
    let mut flaky = Supervised::builder()
        .build(make_fn(move || {
            let n = t.fetch_add(1, Ordering::SeqCst);
            async move {
                if n == 0 {
                    Err::<tower::util::BoxService<u32, u32, BoxError>, BoxError>("no".into())
                } else {
                    Ok(tower::util::BoxService::new(service_fn(|x: u32| async move { Ok::<_, BoxError>(x) })))
                }
            }
        }))
        .unwrap();
    assert!(flaky.ready().await.is_err());
    assert_eq!(flaky.ready().await.unwrap().call(5).await.unwrap(), 5);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn priority_fan_in_with_inputs_added_and_removed() {
    let (merged, handle) = priority_merge::<&'static str>();
    let tick = |items: Vec<&'static str>, every: u64| {
        stream::iter(items).then(move |i| async move {
            tokio::time::sleep(Duration::from_millis(every)).await;
            i
        })
    };
    handle.add(tick(vec!["low-1", "low-2", "low-3", "low-4"], 10), 1);
    let mut merged = Box::pin(merged);
    assert_eq!(merged.next().await, Some("low-1"));
    // A high-priority input joins: its ready items go first.
    handle.add(stream::iter(vec!["high-1", "high-2"]), 9);
    assert_eq!(merged.next().await, Some("high-1"));
    assert_eq!(merged.next().await, Some("high-2"));
    assert_eq!(merged.next().await, Some("low-2"));
    // A second input is removed while merging; nothing more comes from it.
    let noisy = handle.add(tick(vec!["noisy-1", "noisy-2", "noisy-3"], 5), 5);
    assert_eq!(merged.next().await, Some("noisy-1"));
    handle.remove(noisy);
    assert_eq!(merged.next().await, Some("low-3"));
    assert_eq!(merged.next().await, Some("low-4"));
    // No inputs, but a handle: the merge waits for more.
    let waiting = tokio::time::timeout(Duration::from_secs(1), merged.next()).await;
    assert!(waiting.is_err());
    let clone = handle.clone();
    drop(handle);
    clone.add(stream::iter(vec!["last"]), 0);
    drop(clone);
    assert_eq!(merged.next().await, Some("last"));
    assert_eq!(merged.next().await, None);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn aggregate_fan_out_keeps_every_success_and_error_by_index() {
    let branch = |id: usize| {
        service_fn(move |x: u32| async move {
            tokio::time::sleep(Duration::from_millis(10 * (5 - id as u64))).await;
            if id % 2 == 1 {
                Err::<String, BoxError>(format!("branch {id} failed").into())
            } else {
                Ok(format!("{x}@{id}"))
            }
        })
    };
    let fan = FanOut::new((0..5).map(branch), fan::all_settled()).unwrap();
    let agg = fan.oneshot(7).await.unwrap();
    assert_eq!(agg.completed, [(0, "7@0".to_string()), (2, "7@2".to_string()), (4, "7@4".to_string())]);
    assert_eq!(
        agg.errors.iter().map(|(i, e)| (*i, e.to_string())).collect::<Vec<_>>(),
        [(1, "branch 1 failed".to_string()), (3, "branch 3 failed".to_string())]
    );
    assert!(!agg.all_completed());
    let all_ok = FanOut::new((0..5).step_by(2).map(branch), fan::all_settled()).unwrap();
    assert!(all_ok.oneshot(1).await.unwrap().all_completed());
}

/// Inputs of the same priority take turns: an always-ready input does not starve a peer of
/// equal priority; a higher priority still goes first (strict between levels).
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn equal_priorities_take_turns() {
    use futures_util::{stream, StreamExt};
    let (merged, handle) = priority_merge::<&'static str>();
    handle.add(stream::repeat("a"), 1);
    handle.add(stream::repeat("b"), 1);
    handle.add(stream::iter(["hi-1", "hi-2"]), 5);
    let out: Vec<_> = merged.take(6).collect().await;
    assert_eq!(out, ["hi-1", "hi-2", "a", "b", "a", "b"]);
}

#[cfg(feature = "serde")]
#[test]
fn supervised_config_from_a_file() {
    use palisade_pipeline::supervise::{SupervisedBuilder, SupervisedConfig};
    let config: SupervisedConfig = serde_json::from_str(r#"{"restart_after": 5}"#).unwrap();
    assert_eq!(config.restart_after, 5);
    assert_eq!(serde_json::from_str::<SupervisedConfig>("{}").unwrap(), SupervisedConfig::default());
    assert!(serde_json::from_str::<SupervisedConfig>(r#"{"restarts": 5}"#).is_err());
    let zero: SupervisedConfig = serde_json::from_str(r#"{"restart_after": 0}"#).unwrap();
    let make = make_fn(|| async {
        Ok::<_, std::io::Error>(tower::service_fn(|x: u32| async move { Ok::<_, std::io::Error>(x) }))
    });
    let err = SupervisedBuilder::from(zero).build(make).unwrap_err();
    assert_eq!(err.field(), "restart_after");
}
