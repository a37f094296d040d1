#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::ops::ControlFlow;
use std::time::Duration;

use futures_util::{stream, StreamExt};
use palisade_core::BoxError;
use palisade_pipeline::fan::{self, FanOut};
use palisade_pipeline::merge;
use support::AliveCounter;
use tokio_test::{assert_pending, assert_ready, assert_ready_ok, task};
use tower::util::BoxCloneService;
use tower::{service_fn, Service, ServiceExt};
use tower_test::mock;

type Backend = BoxCloneService<u32, String, BoxError>;

/// A backend answering after `ms` milliseconds, or failing after them.
fn backend(id: usize, ms: u64, ok: bool, live: &AliveCounter) -> Backend {
    let live = live.clone();
    BoxCloneService::new(service_fn(move |req: u32| {
        let token = live.token();
        async move {
            let _token = token;
            tokio::time::sleep(Duration::from_millis(ms)).await;
            if ok {
                Ok(format!("{req}@{id}"))
            } else {
                Err(BoxError::from(format!("backend {id} failed")))
            }
        }
    }))
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn all_collects_in_branch_order() {
    let live = AliveCounter::new();
    let fan = FanOut::new(
        [backend(0, 30, true, &live), backend(1, 10, true, &live), backend(2, 20, true, &live)],
        fan::all(),
    )
    .unwrap();
    assert_eq!(fan.oneshot(7).await.unwrap(), ["7@0", "7@1", "7@2"]);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn all_aggregates_errors_with_their_index() {
    let live = AliveCounter::new();
    let fan = FanOut::new(
        [
            backend(0, 30, false, &live),
            backend(1, 10, true, &live),
            backend(2, 20, false, &live),
            backend(3, 5, true, &live),
        ],
        fan::all(),
    )
    .unwrap();
    let err = fan.oneshot(7).await.unwrap_err();
    assert_eq!(err.succeeded(), 2);
    let errors: Vec<(usize, String)> = err.errors().iter().map(|(i, e)| (*i, e.to_string())).collect();
    assert_eq!(errors, [(0, "backend 0 failed".to_owned()), (2, "backend 2 failed".to_owned())]);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn first_success_answers_and_drops_the_rest() {
    let live = AliveCounter::new();
    let fan = FanOut::new(
        [backend(0, 5, false, &live), backend(1, 10, true, &live), backend(2, 1000, true, &live)],
        fan::first_success(),
    )
    .unwrap();
    assert_eq!(fan.oneshot(1).await.unwrap(), "1@1");
    assert_eq!(live.alive(), 0, "the slow call was dropped");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn first_success_fails_when_every_branch_fails() {
    let live = AliveCounter::new();
    let fan = FanOut::new([backend(0, 5, false, &live), backend(1, 1, false, &live)], fan::first_success())
        .unwrap();
    let err = fan.oneshot(1).await.unwrap_err();
    assert_eq!(err.errors().iter().map(|(i, _)| *i).collect::<Vec<_>>(), [0, 1]);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn quorum_reached() {
    let live = AliveCounter::new();
    let fan = FanOut::new(
        [
            backend(0, 30, true, &live),
            backend(1, 10, false, &live),
            backend(2, 20, true, &live),
            backend(3, 500, true, &live),
        ],
        fan::quorum(2),
    )
    .unwrap();
    let got = fan.oneshot(3).await.unwrap();
    assert_eq!(got, [(2, "3@2".to_owned()), (0, "3@0".to_owned())]);
    assert_eq!(live.alive(), 0);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn quorum_fails_as_soon_as_it_cannot_be_reached() {
    let live = AliveCounter::new();
    let fan = FanOut::new(
        [backend(0, 10, false, &live), backend(1, 20, false, &live), backend(2, 1000, true, &live)],
        fan::quorum(2),
    )
    .unwrap();
    let start = tokio::time::Instant::now();
    let err = fan.oneshot(3).await.unwrap_err();
    assert_eq!(err.needed(), Some(2));
    assert_eq!(err.succeeded(), 0);
    assert_eq!(err.errors().len(), 2);
    // Decided at the second failure, not after the slow branch.
    assert_eq!(start.elapsed(), Duration::from_millis(20));
    assert_eq!(live.alive(), 0);
}

#[test]
fn quorum_must_fit_the_branches() {
    let live = AliveCounter::new();
    let err = FanOut::new([backend(0, 1, true, &live)], fan::quorum(2)).unwrap_err();
    assert_eq!(err.field(), "quorum");
    let err = FanOut::new([backend(0, 1, true, &live)], fan::quorum(0)).unwrap_err();
    assert_eq!(err.field(), "quorum");
    let err = FanOut::new(Vec::<Backend>::new(), fan::all()).unwrap_err();
    assert_eq!(err.field(), "services");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn custom_reducer_can_stop_early() {
    let live = AliveCounter::new();
    // Sum the lengths of successful answers; stop once two failures were seen.
    let reducer = fan::reduce((0usize, 0usize), |(len, failures), _i, r: Result<String, BoxError>| match r {
        Ok(s) => ControlFlow::Continue((len + s.len(), failures)),
        Err(_) if failures == 1 => ControlFlow::Break((len, failures + 1)),
        Err(_) => ControlFlow::Continue((len, failures + 1)),
    });
    let fan = FanOut::new(
        [
            backend(0, 10, true, &live),
            backend(1, 20, false, &live),
            backend(2, 30, false, &live),
            backend(3, 40, true, &live),
        ],
        reducer,
    )
    .unwrap();
    assert_eq!(fan.oneshot(5).await.unwrap(), (3, 2));
    assert_eq!(live.alive(), 0);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn readiness_is_reserved_on_every_branch() {
    let (a, mut ha) = mock::pair::<u32, u32>();
    let (b, mut hb) = mock::pair::<u32, u32>();
    let mut fan = FanOut::new([a, b], fan::all()).unwrap();
    ha.allow(1);
    hb.allow(0);
    let mut ready = task::spawn(());
    assert_pending!(ready.enter(|cx, _| fan.poll_ready(cx)));
    hb.allow(1);
    assert_ready_ok!(ready.enter(|cx, _| fan.poll_ready(cx)));
    let mut call = task::spawn(fan.call(4));
    assert_pending!(call.poll());
    let (ra, sa) = ha.next_request().await.unwrap();
    let (rb, sb) = hb.next_request().await.unwrap();
    assert_eq!((ra, rb), (4, 4));
    sb.send_response(2);
    assert_pending!(call.poll());
    sa.send_response(1);
    assert_eq!(assert_ready!(call.poll()).unwrap(), [1, 2]);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_readiness_error_is_that_branch_result() {
    let (a, mut ha) = mock::pair::<u32, u32>();
    let (b, mut hb) = mock::pair::<u32, u32>();
    let mut fan = FanOut::new([a, b], fan::first_success()).unwrap();
    ha.send_error("a is broken");
    hb.allow(1);
    std::future::poll_fn(|cx| fan.poll_ready(cx)).await.unwrap();
    let mut call = task::spawn(fan.call(9));
    assert_pending!(call.poll());
    let (_, sb) = hb.next_request().await.unwrap();
    sb.send_response(90);
    assert_eq!(assert_ready!(call.poll()).unwrap(), 90);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn split_calls_every_part_and_merges() {
    let square = service_fn(|n: u64| async move {
        tokio::time::sleep(Duration::from_millis(10 - n)).await;
        if n == 7 {
            Err::<u64, BoxError>("seven".into())
        } else {
            Ok(n * n)
        }
    });
    let split = FanOut::split(square, |range: std::ops::Range<u64>| range, fan::all());
    assert_eq!(split.clone().oneshot(1..4).await.unwrap(), [1, 4, 9]);
    let err = split.oneshot(5..9).await.unwrap_err();
    assert_eq!(err.errors().iter().map(|(i, _)| *i).collect::<Vec<_>>(), [2]);
    assert_eq!(err.succeeded(), 3);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_fan_out_is_a_pipeline_stage() {
    let live = AliveCounter::new();
    let fan = FanOut::new([backend(0, 10, true, &live), backend(1, 20, true, &live)], fan::all()).unwrap();
    let pipeline = palisade_pipeline::PipelineService::builder::<u32>()
        .stage("replicate", fan)
        .map("join", |v: Vec<String>| v.join(","))
        .build()
        .unwrap();
    assert_eq!(pipeline.oneshot(1).await.unwrap(), "1@0,1@1");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn merge_round_robin_takes_turns() {
    let a = stream::iter(vec![1, 4, 7, 9, 10]);
    let b = stream::iter(vec![2, 5]);
    let c = stream::iter(vec![3, 6, 8]);
    let merged: Vec<_> = merge::round_robin([a, b, c]).collect().await;
    assert_eq!(merged, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn merge_round_robin_waits_for_its_turn() {
    let slow = stream::iter([1, 3]).then(|n| async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        n
    });
    let fast = stream::iter([2, 4]).then(|n| async move { n });
    let merged: Vec<_> = merge::round_robin([slow.boxed(), fast.boxed()]).collect().await;
    assert_eq!(merged, [1, 2, 3, 4]);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn merge_as_ready_follows_completion() {
    let delayed = |items: Vec<(u64, u64)>| {
        stream::iter(items)
            .then(|(ms, n)| async move {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                n
            })
            .boxed()
    };
    // Absolute times: a at 10, 40; b at 25, 30.
    let a = delayed(vec![(10, 1), (30, 4)]);
    let b = delayed(vec![(25, 2), (5, 3)]);
    let merged: Vec<_> = merge::as_ready([a, b]).collect().await;
    assert_eq!(merged, [1, 2, 3, 4]);
}
