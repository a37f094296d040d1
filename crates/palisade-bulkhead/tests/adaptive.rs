#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade_bulkhead::adaptive::{Aimd, Gradient2, LimitAlgorithm, Sample, Vegas};
use palisade_bulkhead::{AdaptiveLimitEvent, AdaptiveLimitLayer};
use palisade_core::classify::{classify_fn, Classification};
use palisade_core::WhenFull;
use tokio_test::{assert_pending, assert_ready, assert_ready_ok};
use tower::ServiceExt;
use tower_test::mock;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn ok(rtt: Duration, in_flight: usize) -> Sample {
    Sample::new(rtt, in_flight, false)
}

fn drop_(rtt: Duration, in_flight: usize) -> Sample {
    Sample::new(rtt, in_flight, true)
}

/// A fixed limit of `n` (AIMD pinned between n and n).
fn fixed(n: usize) -> Aimd {
    Aimd::default().initial_limit(n).min_limit(n).max_limit(n)
}

// === algorithms under scripted latency ===

#[test]
fn aimd_trajectory() {
    let mut aimd = Aimd::default().initial_limit(10).min_limit(1).max_limit(15);
    let mut seen = Vec::new();
    for _ in 0..8 {
        let limit = seen.last().copied().unwrap_or(10);
        seen.push(aimd.update(&ok(ms(10), limit)));
    }
    // +1 per success while busy, then it holds at the max.
    assert_eq!(seen, vec![11, 12, 13, 14, 15, 15, 15, 15]);
    assert_eq!(aimd.update(&drop_(ms(10), 15)), 13); // × 0.9
    assert_eq!(aimd.update(&ok(Duration::from_secs(6), 13)), 11); // slower than the 5 s timeout
    assert_eq!(aimd.update(&ok(ms(10), 2)), 11); // not busy: no growth
    for _ in 0..50 {
        aimd.update(&drop_(ms(1), 11));
    }
    assert_eq!(aimd.update(&drop_(ms(1), 1)), 1); // never below the min
}

/// concurrency-limits issue 155: AIMD used to halve the limit when it reached the max.
#[test]
fn aimd_does_not_halve_at_max() {
    let mut aimd = Aimd::default(); // 20..=200
    let mut limit = aimd.limit();
    for _ in 0..500 {
        let next = aimd.update(&ok(ms(5), limit));
        assert!(next >= limit, "a success never lowers the limit ({limit} -> {next})");
        limit = next;
    }
    assert_eq!(limit, 200);
}

#[test]
fn gradient2_trajectory() {
    // Numbers from concurrency-limits' Gradient2Limit fed the same samples.
    let mut g = Gradient2::default().initial_limit(20).min_limit(5).max_limit(40);
    let mut limit = 20;
    let mut trace = Vec::new();
    for _ in 0..10 {
        limit = g.update(&ok(ms(10), limit));
        trace.push(limit);
    }
    // Steady latency, fully used: + smoothing × queue_size = 0.8 per call.
    assert_eq!(trace, vec![20, 21, 22, 23, 24, 24, 25, 26, 27, 28]);
    // Latency doubles (beyond the 1.5 tolerance): the limit shrinks towards
    // `limit × 0.75 + 4`'s fixed point.
    trace.clear();
    for _ in 0..30 {
        limit = g.update(&ok(ms(20), limit));
        trace.push(limit);
    }
    assert_eq!(&trace[..10], &[27, 26, 26, 25, 25, 25, 24, 24, 24, 23]);
    assert_eq!(limit, 21);
    // Latency back to normal: growth resumes.
    trace.clear();
    for _ in 0..10 {
        limit = g.update(&ok(ms(10), limit));
        trace.push(limit);
    }
    assert_eq!(trace, vec![22, 23, 24, 25, 25, 26, 27, 28, 29, 29]);
}

/// `rtt_tolerance` (1.5): latency up to 1.5 × the long-term average is no queueing.
#[test]
fn gradient2_tolerates_latency_within_rtt_tolerance() {
    let mut g = Gradient2::default().initial_limit(50).min_limit(1).max_limit(200).queue_size(0);
    for _ in 0..10 {
        g.update(&ok(ms(10), 50));
    }
    for _ in 0..5 {
        assert_eq!(g.update(&ok(ms(15), 1000)), 50);
    }
    let trace: Vec<_> = (0..5).map(|_| g.update(&ok(ms(30), 1000))).collect();
    assert_eq!(trace, vec![45, 40, 36, 33, 29]);
    let mut strict =
        Gradient2::default().initial_limit(50).min_limit(1).max_limit(200).queue_size(0).rtt_tolerance(1.0);
    for _ in 0..10 {
        strict.update(&ok(ms(10), 50));
    }
    assert!(strict.update(&ok(ms(15), 1000)) < 50);
}

/// concurrency-limits issue 137: with calls timing out at a steady latency, Gradient2 saw
/// no gradient and grew the limit to the max.
#[test]
fn gradient2_shrinks_under_steady_timeouts() {
    let mut g = Gradient2::default().initial_limit(50).min_limit(5).max_limit(200);
    let mut limit = 50;
    for _ in 0..10 {
        limit = g.update(&ok(ms(10), limit));
    }
    let start = limit;
    for _ in 0..200 {
        let next = g.update(&drop_(Duration::from_secs(5), limit));
        assert!(next <= limit);
        limit = next;
    }
    assert!(start > 5);
    assert_eq!(limit, 5);
}

/// concurrency-limits issue 176: Gradient2 ignored drops, and their short RTT raised the limit.
#[test]
fn gradient2_drops_lower_the_limit() {
    let mut g = Gradient2::default().initial_limit(50).min_limit(5).max_limit(200);
    let mut limit = 50;
    for _ in 0..10 {
        limit = g.update(&ok(ms(10), limit));
    }
    let before = limit;
    for _ in 0..5 {
        let next = g.update(&drop_(ms(1), limit));
        assert!(next < limit, "a fast drop must lower the limit ({limit} -> {next})");
        limit = next;
    }
    assert!(limit < before);
    // The fast drops did not pollute the long-term RTT: a normal call finds no queueing.
    let after = g.update(&ok(ms(10), limit));
    assert!(after >= limit);
}

#[test]
fn vegas_grows_without_queueing_and_drops_shrink_it() {
    let mut v = Vegas::default().probe_multiplier(0).seed(7);
    assert_eq!(v.limit(), 20);
    assert_eq!(v.update(&ok(ms(10), 20)), 20); // first sample: the no-load RTT
    assert_eq!(v.update(&ok(ms(10), 20)), 26); // no queue: + beta (6 × log10(20))
    assert_eq!(v.update(&drop_(ms(10), 26)), 25); // a drop: - log10
                                                  // As in concurrency-limits, a drop faster than the no-load RTT becomes the no-load RTT
                                                  // (and changes nothing else) ...
    assert_eq!(v.update(&drop_(ms(1), 25)), 25);
    // ... so 10 ms now looks like heavy queueing, and the limit shrinks.
    assert_eq!(v.update(&ok(ms(10), 25)), 24);
}

#[test]
fn invalid_algorithm_settings_are_refused() {
    let err =
        AdaptiveLimitLayer::builder().algorithm(Aimd::default().backoff_ratio(1.5)).build().unwrap_err();
    assert_eq!(err.field(), "aimd.backoff_ratio");
    let err =
        AdaptiveLimitLayer::builder().algorithm(Gradient2::default().min_limit(300)).build().unwrap_err();
    assert_eq!(err.field(), "gradient2.min_limit");
    let err = AdaptiveLimitLayer::builder().partition("a", 0.7).partition("b", 0.7).build().unwrap_err();
    assert_eq!(err.field(), "partitions");
    let err = AdaptiveLimitLayer::builder().partition("a", 0.5).build().unwrap_err();
    assert_eq!(err.field(), "partition_by");
    let err =
        AdaptiveLimitLayer::builder().when_full(WhenFull::wait(ms(1))).max_queue(0).build().unwrap_err();
    assert_eq!((err.field(), err.conflicting_field()), ("max_queue", Some("when_full")));
}

// === the layer ===

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn calls_over_the_limit_are_shed() {
    let layer = AdaptiveLimitLayer::builder().name("api").algorithm(fixed(2)).build().unwrap();
    let h = layer.handle();
    let (mut svc, mut handle) = mock::spawn_layer::<u32, u32, _>(layer);
    assert_ready_ok!(svc.poll_ready());
    let a = svc.call(1);
    assert_ready_ok!(svc.poll_ready());
    let b = svc.call(2);
    assert_eq!(h.in_flight(), 2);
    assert_ready_ok!(svc.poll_ready());
    let err = svc.call(3).await.unwrap_err();
    assert!(support::is_overloaded(&err));
    assert!(err.to_string().contains("`api`"));
    assert_eq!(h.snapshot().rejected, 1);
    // Dropping a response future gives its capacity back.
    drop(a);
    assert_eq!(h.in_flight(), 1);
    let (_, send) = handle.next_request().await.unwrap();
    send.send_response(10);
    let _ = handle.next_request().await;
    drop(b);
    assert_eq!(h.in_flight(), 0);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn errors_are_drops_and_move_the_limit() {
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = events.clone();
    let layer = AdaptiveLimitLayer::builder()
        .algorithm(Aimd::default().initial_limit(10).min_limit(1).max_limit(20))
        .on_event(move |e| seen.lock().unwrap().push(e.clone()))
        .build()
        .unwrap();
    let h = layer.handle();
    let svc = tower::Layer::layer(
        &layer,
        tower::service_fn(|fail: bool| async move {
            tokio::time::sleep(ms(10)).await;
            if fail {
                Err::<(), _>("overloaded")
            } else {
                Ok(())
            }
        }),
    );
    svc.clone().oneshot(true).await.unwrap_err();
    assert_eq!(h.limit(), 9);
    svc.clone().oneshot(true).await.unwrap_err();
    assert_eq!(h.limit(), 8);
    let snap = h.snapshot();
    assert_eq!((snap.limit, snap.dropped, snap.in_flight), (8, 2, 0));
    let changes: Vec<_> = events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| matches!(e, AdaptiveLimitEvent::LimitChanged { .. }))
        .cloned()
        .collect();
    assert_eq!(
        changes,
        vec![
            AdaptiveLimitEvent::LimitChanged { from: 10, to: 9 },
            AdaptiveLimitEvent::LimitChanged { from: 9, to: 8 }
        ]
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn concurrent_successes_grow_the_limit_through_the_layer() {
    let layer = AdaptiveLimitLayer::builder()
        .algorithm(Aimd::default().initial_limit(4).min_limit(1).max_limit(100))
        .build()
        .unwrap();
    let h = layer.handle();
    let svc = tower::Layer::layer(
        &layer,
        tower::service_fn(|d: u64| async move {
            tokio::time::sleep(ms(d)).await;
            Ok::<_, std::convert::Infallible>(())
        }),
    );
    // Scripted latency: four calls at once per round.
    for round in 0..5u64 {
        let calls: Vec<_> = (0..4).map(|i| tokio::spawn(svc.clone().oneshot(10 + round + i))).collect();
        for c in calls {
            c.await.unwrap().unwrap();
        }
    }
    assert!(h.limit() > 4, "limit {}", h.limit());
    assert_eq!(h.in_flight(), 0);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn ignored_outcomes_are_not_samples() {
    let layer = AdaptiveLimitLayer::builder()
        .algorithm(Aimd::default().initial_limit(10).min_limit(1).max_limit(20))
        .classifier(classify_fn(|_: &Result<(), &str>| Classification::ignored()))
        .build()
        .unwrap();
    let h = layer.handle();
    let svc = tower::Layer::layer(&layer, tower::service_fn(|()| async { Err::<(), _>("cancelled") }));
    svc.oneshot(()).await.unwrap_err();
    assert_eq!(h.limit(), 10);
    assert_eq!(h.in_flight(), 0);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn partitions_keep_their_share() {
    let layer = AdaptiveLimitLayer::builder()
        .algorithm(fixed(10))
        .partition("live", 0.9)
        .partition("batch", 0.1)
        .partition_by(|r: &&'static str| *r)
        .build()
        .unwrap();
    let h = layer.handle();
    let (mut svc, _handle) = mock::spawn_layer::<&str, (), _>(layer);
    let mut held = Vec::new();
    for _ in 0..10 {
        assert_ready_ok!(svc.poll_ready());
        held.push(svc.call("live"));
    }
    // The total is full, but live used the share of batch too: live is refused ...
    assert_ready_ok!(svc.poll_ready());
    assert!(support::is_overloaded(&svc.call("live").await.unwrap_err()));
    // ... batch still gets its guaranteed one ...
    assert_ready_ok!(svc.poll_ready());
    held.push(svc.call("batch"));
    // ... and not two.
    assert_ready_ok!(svc.poll_ready());
    assert!(support::is_overloaded(&svc.call("batch").await.unwrap_err()));
    // Unknown partitions only use room under the total.
    assert_ready_ok!(svc.poll_ready());
    assert!(support::is_overloaded(&svc.call("other").await.unwrap_err()));
    let snap = h.snapshot();
    assert_eq!(snap.in_flight, 11);
    assert_eq!((snap.partitions[0].limit, snap.partitions[0].in_flight), (9, 10));
    assert_eq!((snap.partitions[1].limit, snap.partitions[1].in_flight), (1, 1));
    drop(held);
    assert_eq!(h.in_flight(), 0);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn backlog_serves_the_newest_first_and_times_out() {
    let layer = AdaptiveLimitLayer::builder()
        .algorithm(fixed(1))
        .when_full(WhenFull::wait(ms(100)))
        .max_queue(2)
        .build()
        .unwrap();
    let h = layer.handle();
    let (mut svc, mut handle) = mock::spawn_layer::<u32, u32, _>(layer);
    assert_ready_ok!(svc.poll_ready());
    let mut running = tokio_test::task::spawn(svc.call(0));
    assert_pending!(running.poll());
    let (_, first) = handle.next_request().await.unwrap();

    assert_ready_ok!(svc.poll_ready());
    let mut older = tokio_test::task::spawn(svc.call(1));
    assert_pending!(older.poll());
    tokio::time::advance(ms(10)).await;
    assert_ready_ok!(svc.poll_ready());
    let mut newer = tokio_test::task::spawn(svc.call(2));
    assert_pending!(newer.poll());
    assert_eq!(h.backlog(), 2);
    // The backlog is full.
    assert_ready_ok!(svc.poll_ready());
    assert!(support::is_overloaded(&svc.call(3).await.unwrap_err()));

    first.send_response(0);
    assert_eq!(assert_ready!(running.poll()).unwrap(), 0);
    // LIFO: the newer waiter got the capacity.
    assert!(newer.is_woken());
    assert_pending!(newer.poll());
    let (req, send) = handle.next_request().await.unwrap();
    assert_eq!(req, 2);
    assert_pending!(older.poll());
    assert_eq!(h.backlog(), 1);

    // The older one gives up after its 100 ms.
    tokio::time::advance(ms(90)).await;
    assert!(older.is_woken());
    assert!(support::is_overloaded(&assert_ready!(older.poll()).unwrap_err()));
    assert_eq!(h.backlog(), 0);
    send.send_response(2);
    assert_eq!(assert_ready!(newer.poll()).unwrap(), 2);
    assert_eq!(h.in_flight(), 0);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_dropped_backlog_waiter_leaves_and_strands_nothing() {
    let layer = AdaptiveLimitLayer::builder()
        .algorithm(fixed(1))
        .when_full(WhenFull::wait(Duration::from_secs(1)))
        .max_queue(5)
        .build()
        .unwrap();
    let h = layer.handle();
    let (mut svc, _handle) = mock::spawn_layer::<u32, u32, _>(layer);
    assert_ready_ok!(svc.poll_ready());
    let running = svc.call(0);
    assert_ready_ok!(svc.poll_ready());
    let mut waiting = tokio_test::task::spawn(svc.call(1));
    assert_pending!(waiting.poll());
    assert_eq!(h.backlog(), 1);
    drop(waiting);
    assert_eq!(h.backlog(), 0);

    // Granted but never polled again, then dropped: the capacity is passed on.
    assert_ready_ok!(svc.poll_ready());
    let mut granted = tokio_test::task::spawn(svc.call(2));
    assert_pending!(granted.poll());
    drop(running);
    assert!(granted.is_woken());
    assert_eq!(h.in_flight(), 1);
    drop(granted);
    assert_eq!(h.in_flight(), 0);
    assert_eq!(h.backlog(), 0);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_panicking_call_gives_its_capacity_back() {
    let layer = AdaptiveLimitLayer::builder().algorithm(fixed(1)).build().unwrap();
    let h = layer.handle();
    let svc = tower::Layer::layer(
        &layer,
        tower::service_fn(|panic: bool| async move {
            assert!(!panic, "inner service panicked");
            Ok::<_, std::convert::Infallible>(())
        }),
    );
    assert!(tokio::spawn(svc.clone().oneshot(true)).await.unwrap_err().is_panic());
    assert_eq!(h.in_flight(), 0);
    assert_eq!(h.limit(), 1);
    svc.oneshot(false).await.unwrap();
}

#[cfg(feature = "serde")]
#[test]
fn config_deserializes_and_validates() {
    use palisade_bulkhead::adaptive::AdaptiveLimitConfig;
    let c: AdaptiveLimitConfig = serde_json::from_str(
        r#"{ "algorithm": { "aimd": { "initial_limit": 5, "min_limit": 2, "max_limit": 9 } } }"#,
    )
    .unwrap();
    assert_eq!(c.into_builder().build().unwrap().handle().limit(), 5);
    let c: AdaptiveLimitConfig =
        serde_json::from_str(r#"{ "algorithm": { "aimd": { "backoff_ratio": 0.2 } } }"#).unwrap();
    assert_eq!(c.into_builder().build().unwrap_err().field(), "aimd.backoff_ratio");
    assert!(serde_json::from_str::<AdaptiveLimitConfig>(r#"{ "algorithm": { "bbr": {} } }"#).is_err());
    let c: AdaptiveLimitConfig = serde_json::from_str("{}").unwrap();
    assert_eq!(c.into_builder().build().unwrap().handle().limit(), 20); // Vegas default
}

/// Issue 137 through the layer: every call times out at the same latency (a timeout inside
/// the limit); the limit falls to its minimum instead of climbing.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn steady_timeouts_inside_the_limit_shrink_it() {
    let layer = AdaptiveLimitLayer::builder()
        .algorithm(Gradient2::default().initial_limit(20).min_limit(2).max_limit(100))
        .build()
        .unwrap();
    let h = layer.handle();
    let svc = tower::ServiceBuilder::new()
        .layer(layer)
        .timeout(Duration::from_secs(5))
        .service_fn(|()| std::future::pending::<Result<(), std::convert::Infallible>>());
    let mut last = h.limit();
    for _ in 0..10 {
        let calls: Vec<_> = (0..h.limit()).map(|_| tokio::spawn(svc.clone().oneshot(()))).collect();
        for c in calls {
            assert!(c.await.unwrap().unwrap_err().is::<tower::timeout::error::Elapsed>());
        }
        assert!(h.limit() <= last);
        last = h.limit();
    }
    assert_eq!(h.limit(), 2);
    assert_eq!(h.in_flight(), 0);
}
