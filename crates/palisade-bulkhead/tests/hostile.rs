//! A hostile review of the keyed shape, the default refusal and the adaptive backlog
//! (issue 19): the shared compartment of unkeyed requests, the tower contract of the keyed
//! bulkhead (a response future dropped while waiting or running), `retry_after` on the
//! default refusal, and a waiting adaptive limit with no room to wait.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use palisade_bulkhead::{AdaptiveLimitLayer, BulkheadFullReason, BulkheadLayer};
use palisade_core::keyed::Unkeyed;
use palisade_core::rejection::Rejection;
use palisade_core::WhenFull;
use tokio_test::{assert_pending, task};
use tower::{Layer, Service, ServiceExt};

type Req = (Option<&'static str>, u32);

/// Counts the inner futures alive: a dropped response future must drop (cancel) its inner
/// call.
struct Alive(Arc<AtomicUsize>);

impl Drop for Alive {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// An inner service whose calls never finish, counting the ones alive.
fn never(
    alive: Arc<AtomicUsize>,
) -> impl Service<Req, Response = u32, Error = std::convert::Infallible, Future = impl Send> + Clone {
    tower::service_fn(move |_: Req| {
        alive.fetch_add(1, Ordering::SeqCst);
        let guard = Alive(alive.clone());
        async move {
            let _guard = guard;
            std::future::pending::<()>().await;
            Ok::<u32, std::convert::Infallible>(0)
        }
    })
}

/// `Unkeyed::Shared`: the one compartment of unkeyed requests follows
/// `set_max_concurrent` as every key does (grown and shrunk).
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_shared_compartment_follows_set_max_concurrent() {
    let layer = BulkheadLayer::builder()
        .max_concurrent(1)
        .keyed(|r: &Req| r.0)
        .when_unkeyed(Unkeyed::Shared)
        .build()
        .unwrap();
    let h = layer.handle();
    let alive = Arc::new(AtomicUsize::new(0));
    let svc = layer.layer(never(alive.clone()));

    h.set_max_concurrent(2).unwrap();
    let mut a = task::spawn(svc.clone().oneshot((None, 1)));
    let mut b = task::spawn(svc.clone().oneshot((None, 2)));
    assert_pending!(a.poll());
    assert_pending!(b.poll());
    assert_eq!(h.snapshot().total.in_flight, 2, "grown to 2, two unkeyed calls run");
    let err = svc.clone().oneshot((None, 3)).await.unwrap_err();
    assert_eq!(support::reason(&err), Some(BulkheadFullReason::NoPermit));

    drop((a, b));
    assert_eq!(alive.load(Ordering::SeqCst), 0);
    assert_eq!(h.snapshot().total.in_flight, 0);
    h.set_max_concurrent(1).unwrap();
    let mut a = task::spawn(svc.clone().oneshot((None, 4)));
    assert_pending!(a.poll());
    let err = svc.clone().oneshot((None, 5)).await.unwrap_err();
    assert_eq!(support::reason(&err), Some(BulkheadFullReason::NoPermit), "shrunk back to 1");
    // The shared compartment is not a key: it neither counts against nor shows in the keys.
    assert_eq!(h.snapshot().keys, 0);
}

/// Tower contract, keyed: a response future dropped while waiting for its key's permit
/// leaves the queue; one dropped while running frees the permit and cancels the inner call
/// (for a key, for the shared compartment and for a pass-through call).
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_dropped_keyed_response_future_leaves_the_queue_frees_the_permit_and_cancels() {
    for when_unkeyed in [Unkeyed::Shared, Unkeyed::PassThrough] {
        let layer = BulkheadLayer::builder()
            .max_concurrent(1)
            .when_full(WhenFull::wait(Duration::from_secs(60)))
            .keyed(|r: &Req| r.0)
            .when_unkeyed(when_unkeyed)
            .build()
            .unwrap();
        let h = layer.handle();
        let alive = Arc::new(AtomicUsize::new(0));
        let svc = layer.layer(never(alive.clone()));

        for key in [Some("a"), None] {
            let mut running = task::spawn(svc.clone().oneshot((key, 1)));
            assert_pending!(running.poll());
            assert_eq!(alive.load(Ordering::SeqCst), 1);
            let mut waiting = task::spawn(svc.clone().oneshot((key, 2)));
            assert_pending!(waiting.poll());
            let limited = key.is_some() || when_unkeyed == Unkeyed::Shared;
            let snap = h.snapshot().total;
            if limited {
                assert_eq!((snap.in_flight, snap.queued, alive.load(Ordering::SeqCst)), (1, 1, 1));
            } else {
                assert_eq!((snap.in_flight, snap.queued, alive.load(Ordering::SeqCst)), (0, 0, 2));
            }
            drop(waiting);
            assert_eq!(h.snapshot().total.queued, 0, "{when_unkeyed:?} {key:?}: the waiter left");
            drop(running);
            assert_eq!(h.snapshot().total.in_flight, 0, "{when_unkeyed:?} {key:?}: permit freed");
            assert_eq!(alive.load(Ordering::SeqCst), 0, "{when_unkeyed:?} {key:?}: inner cancelled");
            // The freed permit serves the next call at once.
            let mut next = task::spawn(svc.clone().oneshot((key, 3)));
            assert_pending!(next.poll());
            assert_eq!(alive.load(Ordering::SeqCst), 1);
        }
    }
}

/// Tower contract: the keyed bulkhead readies the inner service in `poll_ready`; a service
/// dropped after `poll_ready` without a call gives the inner reservation back.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_keyed_service_dropped_after_poll_ready_releases_the_inner_reservation() {
    let layer = BulkheadLayer::builder()
        .max_concurrent(1)
        .keyed(|r: &Req| r.0)
        .when_unkeyed(Unkeyed::PassThrough)
        .build()
        .unwrap();
    let alive = Arc::new(AtomicUsize::new(0));
    let inner = tower::ServiceBuilder::new().concurrency_limit(1).service(never(alive.clone()));
    let mut first = layer.layer(inner.clone());
    futures_ready(&mut first).await;
    let mut second = layer.layer(inner);
    let mut ready = task::spawn(futures_ready(&mut second));
    assert_pending!(ready.poll(), "the inner's one permit is reserved by `first`");
    drop(first);
    assert!(ready.is_woken());
    assert!(ready.poll().is_ready());
}

async fn futures_ready<S: Service<Req>>(svc: &mut S) {
    std::future::poll_fn(|cx| svc.poll_ready(cx)).await.ok().unwrap();
}

/// The default is to refuse at once (Resilience4j's `maxWaitDuration` 0), and the refusal
/// carries the configured `retry_after`, for a plain and a keyed bulkhead.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_default_refusal_carries_retry_after() {
    let alive = Arc::new(AtomicUsize::new(0));
    let plain =
        BulkheadLayer::builder().max_concurrent(1).retry_after(Duration::from_secs(3)).build().unwrap();
    assert_eq!(plain.handle().when_full(), WhenFull::Refuse);
    let svc = plain.layer(never(alive.clone()));
    let mut running = task::spawn(svc.clone().oneshot((None, 1)));
    assert_pending!(running.poll());
    let err = svc.clone().oneshot((None, 2)).await.unwrap_err();
    let full = err.downcast_ref::<palisade_bulkhead::BulkheadFull>().unwrap();
    assert_eq!(full.reason(), BulkheadFullReason::NoPermit);
    assert_eq!(full.retry_after(), Some(Duration::from_secs(3)));

    let keyed = BulkheadLayer::builder()
        .max_concurrent(1)
        .retry_after(Duration::from_secs(3))
        .keyed(|r: &Req| r.0)
        .build()
        .unwrap();
    let svc = keyed.layer(never(alive));
    let mut running = task::spawn(svc.clone().oneshot((Some("a"), 1)));
    assert_pending!(running.poll());
    let err = svc.clone().oneshot((Some("a"), 2)).await.unwrap_err();
    let full = err.downcast_ref::<palisade_bulkhead::BulkheadFull>().unwrap();
    assert_eq!(full.retry_after(), Some(Duration::from_secs(3)));
}

/// Adaptive: `.when_full(WhenFull::wait(d)).max_queue(0)` is a conflict named by both
/// fields, whichever order the setters ran in; a waiting limit with room builds.
#[test]
fn an_adaptive_wait_with_no_room_to_wait_is_a_conflict() {
    let wait = WhenFull::wait(Duration::from_secs(1));
    for err in [
        AdaptiveLimitLayer::builder().when_full(wait).max_queue(0).build().unwrap_err(),
        AdaptiveLimitLayer::builder().max_queue(0).when_full(wait).build().unwrap_err(),
    ] {
        let text = err.to_string();
        assert!(text.contains("max_queue") && text.contains("when_full"), "{text}");
    }
    // Refusing needs no room: queue 0 is fine then.
    AdaptiveLimitLayer::builder().max_queue(0).build().unwrap();
    AdaptiveLimitLayer::builder().when_full(wait).max_queue(1).build().unwrap();
}

/// A bad partition in a config file names the file's field, `partitions` (was `partition`,
/// the builder method's name, which a config file does not have).
#[test]
fn a_bad_partition_names_the_config_field() {
    use palisade_bulkhead::adaptive::{AdaptiveLimitConfig, PartitionConfig};
    let part = |name: &str, ratio| PartitionConfig { name: name.into(), ratio };
    for partitions in [vec![part("a", 1.5)], vec![part("a", f64::NAN)], vec![part("a", 0.7), part("b", 0.7)]]
    {
        let config = AdaptiveLimitConfig { partitions, ..AdaptiveLimitConfig::default() };
        assert_eq!(config.validate().unwrap_err().field(), "partitions");
    }
}

/// A bulkhead or adaptive config written out reads back the same, whatever its numbers:
/// any wait (the unbounded `Duration::MAX` included), any `retry_after`, `max_queue` unset,
/// zero or huge, every `when_unkeyed`.
#[cfg(feature = "serde")]
mod round_trip {
    use std::time::Duration;

    use palisade_bulkhead::adaptive::{AdaptiveLimitConfig, AimdConfig, AlgorithmConfig};
    use palisade_bulkhead::BulkheadConfig;
    use palisade_core::keyed::Unkeyed;
    use palisade_core::WhenFull;
    use proptest::prelude::*;

    fn duration() -> impl Strategy<Value = Duration> {
        prop_oneof![
            (0u64..=u64::MAX, 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
            (0u64..10_000_000_000).prop_map(Duration::from_nanos),
            Just(Duration::MAX),
        ]
    }

    proptest! {
        #[test]
        fn any_bulkhead_config_reads_back_the_same(
            max_concurrent in 0usize..=usize::MAX,
            wait in proptest::option::of(duration()),
            max_queue in proptest::option::of(0usize..=usize::MAX),
            retry_after in proptest::option::of(duration()),
            shed in any::<bool>(),
            max_keys in 0usize..=usize::MAX,
            when_unkeyed in prop_oneof![Just(Unkeyed::Reject), Just(Unkeyed::PassThrough), Just(Unkeyed::Shared)],
        ) {
            let config = BulkheadConfig {
                name: "db".into(),
                max_concurrent,
                when_full: wait.map_or(WhenFull::Refuse, WhenFull::wait),
                max_queue,
                retry_after,
                shed_when_inner_not_ready: shed,
                max_keys,
                when_unkeyed,
            };
            let json = serde_json::to_string(&config).unwrap();
            let back: BulkheadConfig =
                serde_json::from_str(&json).map_err(|e| TestCaseError::fail(format!("{e}: {json}")))?;
            prop_assert_eq!(back, config, "{}", json);
        }

        #[test]
        fn any_adaptive_config_reads_back_the_same(
            wait in proptest::option::of(duration()),
            max_queue in 0usize..=usize::MAX,
            timeout in proptest::option::of(duration()),
        ) {
            let config = AdaptiveLimitConfig {
                when_full: wait.map_or(WhenFull::Refuse, WhenFull::wait),
                max_queue,
                algorithm: AlgorithmConfig::Aimd(AimdConfig { timeout, ..AimdConfig::default() }),
                ..AdaptiveLimitConfig::default()
            };
            let json = serde_json::to_string(&config).unwrap();
            let back: AdaptiveLimitConfig =
                serde_json::from_str(&json).map_err(|e| TestCaseError::fail(format!("{e}: {json}")))?;
            prop_assert_eq!(back, config, "{}", json);
        }
    }
}

/// `retry_after` is what every refusal of the bulkhead suggests: the load-shedding one
/// (`shed_when_inner_not_ready`, an `Overloaded`) too, not only `BulkheadFull`.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_shed_refusal_carries_retry_after_too() {
    let layer = BulkheadLayer::builder()
        .max_concurrent(1)
        .retry_after(Duration::from_secs(3))
        .shed_when_inner_not_ready()
        .build()
        .unwrap();
    let (mut svc, mut inner) = tower_test::mock::spawn_layer::<u32, u32, _>(layer);
    inner.allow(0);
    tokio_test::assert_ready_ok!(svc.poll_ready());
    let err = svc.call(1).await.unwrap_err();
    let shed = err.downcast_ref::<palisade_bulkhead::Overloaded>().expect("Overloaded");
    assert_eq!(shed.retry_after(), Some(Duration::from_secs(3)));
}
