//! A hostile reviewer's extra cases: every adaptive algorithm driven with extreme bounds,
//! limits and samples (issue 15 kinds 1, 2 and 8), called directly so that a panic is not
//! hidden by the layer's `catch_unwind`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::Duration;

use palisade_bulkhead::adaptive::{Aimd, Gradient2, LimitAlgorithm, Sample, Vegas};
use palisade_core::WhenFull;

fn algorithms() -> Vec<(&'static str, Box<dyn LimitAlgorithm>)> {
    vec![
        ("aimd", Box::new(Aimd::default())),
        ("vegas", Box::new(Vegas::default())),
        ("gradient2", Box::new(Gradient2::default())),
    ]
}

fn samples() -> Vec<Sample> {
    let mut out = Vec::new();
    for rtt in [
        Duration::ZERO,
        Duration::from_nanos(1),
        Duration::from_millis(10),
        Duration::from_secs(86_400),
        Duration::MAX,
    ] {
        for in_flight in [0, 1, usize::MAX / 2, usize::MAX] {
            for dropped in [false, true] {
                out.push(Sample::new(rtt, in_flight, dropped));
            }
        }
    }
    out
}

/// Bounds at `usize::MAX`, the limit set at either end, and every extreme sample: no
/// algorithm panics (an overflow is a panic in debug builds and a wrong limit in release),
/// and the limit stays within the bounds.
#[test]
fn extreme_bounds_limits_and_samples_never_panic() {
    for (min, max) in [(1, usize::MAX), (usize::MAX, usize::MAX), (1, 1), (usize::MAX / 2, usize::MAX)] {
        for start in [min, max] {
            for (name, mut alg) in algorithms() {
                alg.set_bounds(min, max).unwrap();
                alg.set_limit(start);
                for s in samples() {
                    let limit = alg.update(&s);
                    assert!(
                        (min..=max).contains(&limit),
                        "{name}: bounds {min}..={max}, start {start}, {s:?} -> {limit}"
                    );
                    assert_eq!(limit, alg.limit(), "{name}");
                }
            }
        }
    }
}

/// Vegas' functions at their extremes (a user's `alpha_fn` returning `usize::MAX`, an
/// `increase_fn` returning NaN or infinity): no panic, the limit stays within the bounds.
#[test]
fn vegas_functions_at_their_extremes() {
    let builds: Vec<Box<dyn Fn() -> Vegas>> = vec![
        Box::new(|| Vegas::default().alpha_fn(|_| usize::MAX).beta_fn(|_| usize::MAX)),
        Box::new(|| Vegas::default().threshold_fn(|_| usize::MAX)),
        Box::new(|| Vegas::default().increase_fn(|_| f64::NAN).decrease_fn(|_| f64::NAN)),
        Box::new(|| Vegas::default().increase_fn(|_| f64::INFINITY).decrease_fn(|_| f64::NEG_INFINITY)),
        Box::new(|| Vegas::default().increase_fn(|_| -1e300).decrease_fn(|_| 1e300)),
    ];
    for build in builds {
        for (min, max) in [(1, 1000), (1, usize::MAX)] {
            let mut vegas = build();
            vegas.set_bounds(min, max).unwrap();
            for s in samples() {
                let limit = vegas.update(&s);
                assert!((min..=max).contains(&limit), "{vegas:?} {s:?} -> {limit}");
            }
        }
    }
}

/// tower contract: a refusal decided in `poll_ready` must not outlive the lack of capacity.
/// A balancer's ready cache keeps a service that answered ready and polls it again before
/// the call; a permit freed meanwhile must win over the stale refusal (with shedding, with
/// a full queue, and after a wait that expired).
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_refusal_is_not_served_once_a_permit_is_free() {
    use palisade_bulkhead::BulkheadLayer;
    use tokio_test::{assert_pending, assert_ready_ok, task};
    use tower_test::mock;
    for case in ["shed", "queue_full", "wait_expired"] {
        let builder = BulkheadLayer::builder().when_full(WhenFull::wait(Duration::MAX)).max_concurrent(1);
        let layer = match case {
            "shed" => builder.when_full(WhenFull::Refuse),
            "queue_full" => builder.max_queue(0),
            _ => builder.when_full(WhenFull::wait(Duration::from_millis(10))),
        }
        .build()
        .unwrap();
        let h = layer.handle();
        let (mut a, mut inner) = mock::spawn_layer::<u32, u32, _>(layer);
        let mut b = a.clone();
        assert_ready_ok!(a.poll_ready());
        if case == "wait_expired" {
            assert!(b.poll_ready().is_pending());
            tokio::time::advance(Duration::from_millis(11)).await;
        }
        assert_ready_ok!(b.poll_ready(), "{case}: refused, answered ready");
        assert_eq!(h.snapshot().rejected(), 1, "{case}");
        drop(a); // the permit is free again
        assert_ready_ok!(b.poll_ready(), "{case}");
        let mut call = task::spawn(b.call(7));
        assert_pending!(call.poll(), "{case}: the call went to the inner service, not the stale refusal");
        let (req, reply) = inner.next_request().await.unwrap();
        assert_eq!(req, 7, "{case}");
        reply.send_response(8);
        assert_eq!(call.await.unwrap(), 8, "{case}: served, not the stale refusal");
        assert_eq!(h.in_flight(), 0, "{case}");
    }
}
