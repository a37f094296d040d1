//! The redesigned shape (issue 19) and the defaults of issue 18.2: Resilience4j's defaults,
//! a configurable `Retry-After`, an explicit answer for requests without a key, infallible
//! `new`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use palisade_bulkhead::{AdaptiveLimitLayer, BulkheadConfig, BulkheadFullReason, BulkheadLayer, KeyMissing};
use palisade_core::keyed::Unkeyed;
use palisade_core::rejection::find_rejection;
use palisade_core::WhenFull;
use tokio_test::{assert_pending, assert_ready_ok};
use tower::{Layer, ServiceExt};
use tower_test::mock;

type Req = (Option<&'static str>, u32);

/// Resilience4j's `BulkheadConfig` defaults (`DEFAULT_MAX_CONCURRENT_CALLS = 25`,
/// `DEFAULT_MAX_WAIT_DURATION = Duration.ofSeconds(0)`): 25 calls, and a call that finds
/// them all taken is refused at once — the 26th, here, without waiting a moment.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_defaults_are_resilience4js_refuse_at_once() {
    let config = BulkheadConfig::default();
    assert_eq!((config.max_concurrent, config.when_full), (25, WhenFull::Refuse));
    assert_eq!((config.max_queue, config.retry_after), (None, None));
    let layer = BulkheadLayer::builder().build().unwrap();
    let h = layer.handle();
    assert_eq!((h.max_concurrent(), h.when_full()), (25, WhenFull::Refuse));

    let (mut svc, _inner) = mock::spawn_layer::<(), (), _>(layer);
    let mut held: Vec<_> = (0..25).map(|_| svc.clone()).collect();
    for s in &mut held {
        assert_ready_ok!(s.poll_ready());
    }
    // The 26th is answered at once (no pending, no wait) with `NoPermit`.
    assert_ready_ok!(svc.poll_ready());
    let err = svc.call(()).await.unwrap_err();
    assert_eq!(support::reason(&err), Some(BulkheadFullReason::NoPermit));
    assert_eq!((h.queued(), h.snapshot().waited), (0, 0));
}

/// `new(n)` is the common case with the same defaults; `new(0)` is the drain switch (closed
/// until raised); a number above tokio's semaphore is brought down to it.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn new_never_fails() {
    let layer = BulkheadLayer::new(2);
    assert_eq!((layer.handle().max_concurrent(), layer.handle().when_full()), (2, WhenFull::Refuse));
    assert_eq!(BulkheadLayer::new(usize::MAX).handle().max_concurrent(), tokio::sync::Semaphore::MAX_PERMITS);

    let drained = BulkheadLayer::new(0);
    let h = drained.handle();
    let (mut svc, _inner) = mock::spawn_layer::<(), (), _>(drained);
    assert_ready_ok!(svc.poll_ready());
    let err = svc.call(()).await.unwrap_err();
    assert_eq!(support::reason(&err), Some(BulkheadFullReason::NoPermit));
    h.set_max_concurrent(1).unwrap();
    assert_ready_ok!(svc.poll_ready());
    assert_eq!(h.in_flight(), 1);

    let adaptive = AdaptiveLimitLayer::new();
    assert_eq!(adaptive.handle().limit(), 20, "Vegas' initial limit, as concurrency-limits");
}

/// Issue 18.2: a bulkhead refusal carries the configured `Retry-After`, for every reason,
/// and palisade's HTTP mapping answers 503 with it (whole seconds, rounded up).
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn refusals_carry_the_configured_retry_after() {
    let layer = BulkheadLayer::builder()
        .max_concurrent(1)
        .when_full(WhenFull::wait(Duration::from_millis(10)))
        .max_queue(1)
        .retry_after(Duration::from_millis(1500))
        .build()
        .unwrap();
    let (mut a, _inner) = mock::spawn_layer::<(), (), _>(layer);
    let mut b = a.clone();
    let mut c = a.clone();
    assert_ready_ok!(a.poll_ready());
    assert_pending!(b.poll_ready());
    // Queue full.
    assert_ready_ok!(c.poll_ready());
    let queue_full = c.call(()).await.unwrap_err();
    // Wait timed out.
    tokio::time::advance(Duration::from_millis(10)).await;
    assert_ready_ok!(b.poll_ready());
    let timed_out = b.call(()).await.unwrap_err();
    for (err, reason) in
        [(queue_full, BulkheadFullReason::QueueFull), (timed_out, BulkheadFullReason::WaitTimedOut)]
    {
        assert_eq!(support::reason(&err), Some(reason));
        let rejection = find_rejection(err.as_ref()).unwrap();
        assert_eq!(rejection.retry_after(), Some(Duration::from_millis(1500)));
        let res = palisade_core::respond::http_response_for::<String>(&err);
        assert_eq!(res.status(), 503);
        assert_eq!(res.headers()["retry-after"], "2");
    }

    // Without the option: no suggestion, no header.
    let (mut a, _inner) = mock::spawn_layer::<(), (), _>(BulkheadLayer::new(1));
    let mut b = a.clone();
    assert_ready_ok!(a.poll_ready());
    assert_ready_ok!(b.poll_ready());
    let err = b.call(()).await.unwrap_err();
    assert_eq!(find_rejection(err.as_ref()).unwrap().retry_after(), None);
    assert!(palisade_core::respond::http_response_for::<String>(&err).headers().get("retry-after").is_none());
}

/// Issue 18.2: a request whose key function answers `None` is refused with `KeyMissing` by
/// default, never silently put in one bucket.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn an_unkeyed_request_is_refused_by_default() {
    let layer = BulkheadLayer::builder().max_concurrent(1).keyed(|r: &Req| r.0).build().unwrap();
    let h = layer.handle();
    let (_gate, inner) = support::gated::<Option<&'static str>>();
    let svc = layer.layer(inner);
    let err = svc.clone().oneshot((None, 1)).await.unwrap_err();
    let missing = err.downcast_ref::<KeyMissing>().expect("KeyMissing");
    assert_eq!(missing.name(), "bulkhead");
    assert_eq!(palisade_core::respond::http_response_for::<String>(&err).status(), 500);
    assert_eq!(h.keys(), 0);
}

/// `PassThrough`: unkeyed requests are not limited at all (three at once over a limit of 1),
/// while keyed ones still are.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn pass_through_lets_unkeyed_requests_through_unlimited() {
    let layer = BulkheadLayer::builder()
        .max_concurrent(1)
        .keyed(|r: &Req| r.0)
        .when_unkeyed(Unkeyed::PassThrough)
        .build()
        .unwrap();
    let h = layer.handle();
    let (gate, inner) = support::gated::<Option<&'static str>>();
    let svc = layer.layer(inner);
    let unkeyed: Vec<_> = (0..3).map(|i| tokio::spawn(svc.clone().oneshot((None, i)))).collect();
    let keyed = tokio::spawn(svc.clone().oneshot((Some("a"), 9)));
    tokio::task::yield_now().await;
    let err = svc.clone().oneshot((Some("a"), 10)).await.unwrap_err();
    assert_eq!(support::reason(&err), Some(BulkheadFullReason::NoPermit));
    assert_eq!(h.snapshot().total.in_flight, 1, "only the keyed call holds a permit");
    gate.notify_waiters();
    for (i, t) in unkeyed.into_iter().enumerate() {
        assert_eq!(t.await.unwrap().unwrap(), i as u32);
    }
    assert_eq!(keyed.await.unwrap().unwrap(), 9);
}

/// `Shared`: every unkeyed request shares one compartment of `max_concurrent` permits, apart
/// from the keys (it takes no key's place) and resized with them.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn shared_puts_unkeyed_requests_in_one_compartment() {
    let layer = BulkheadLayer::builder()
        .max_concurrent(1)
        .keyed(|r: &Req| r.0)
        .max_keys(1)
        .when_unkeyed(Unkeyed::Shared)
        .build()
        .unwrap();
    let h = layer.handle();
    let (gate, inner) = support::gated::<Option<&'static str>>();
    let svc = layer.layer(inner);
    let first = tokio::spawn(svc.clone().oneshot((None, 1)));
    let keyed = tokio::spawn(svc.clone().oneshot((Some("a"), 2)));
    tokio::task::yield_now().await;
    let err = svc.clone().oneshot((None, 3)).await.unwrap_err();
    assert_eq!(support::reason(&err), Some(BulkheadFullReason::NoPermit), "one shared permit");
    assert_eq!((h.keys(), h.snapshot().total.in_flight), (1, 2));

    h.set_max_concurrent(2).unwrap();
    let second = tokio::spawn(svc.clone().oneshot((None, 4)));
    tokio::task::yield_now().await;
    assert_eq!(h.snapshot().total.in_flight, 3, "the shared compartment grew with the keys");
    gate.notify_waiters();
    assert_eq!(first.await.unwrap().unwrap(), 1);
    assert_eq!(keyed.await.unwrap().unwrap(), 2);
    assert_eq!(second.await.unwrap().unwrap(), 4);
    assert_eq!(h.snapshot().total.in_flight, 0);
}

/// The config is the builder's storage; with `serde` it round-trips through its file form.
#[cfg(feature = "serde")]
#[test]
fn the_config_round_trips() {
    let config = BulkheadConfig {
        name: "db".to_owned(),
        max_concurrent: 8,
        when_full: WhenFull::wait(Duration::from_millis(250)),
        max_queue: Some(32),
        retry_after: Some(Duration::from_secs(2)),
        max_keys: 10,
        when_unkeyed: Unkeyed::Shared,
        ..BulkheadConfig::default()
    };
    let json = serde_json::to_string(&config).unwrap();
    assert_eq!(serde_json::from_str::<BulkheadConfig>(&json).unwrap(), config);
    assert_eq!(serde_json::from_str::<BulkheadConfig>("{}").unwrap(), BulkheadConfig::default());
    let h = config.into_builder().build().unwrap().handle();
    assert_eq!((h.name(), h.max_queue()), ("db", Some(32)));
    assert_eq!(h.when_full(), WhenFull::wait(Duration::from_millis(250)));
    let err = BulkheadConfig { max_keys: 0, ..BulkheadConfig::default() }.validate().unwrap_err();
    assert_eq!(err.field(), "max_keys");
}

/// The adaptive backlog: `when_full(WhenFull::wait(d))` turns it on, and its length defaults
/// to concurrency-limits' `LifoBlockingLimiter` backlog size, 100: the 101st waiter is shed.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_adaptive_backlog_holds_100_by_default() {
    use palisade_bulkhead::adaptive::Fixed;
    let layer = AdaptiveLimitLayer::builder()
        .algorithm(Fixed::new(1))
        .when_full(WhenFull::wait(Duration::from_secs(1)))
        .build()
        .unwrap();
    let h = layer.handle();
    let (gate, inner) = support::gated::<Option<&'static str>>();
    let svc = layer.layer(inner);
    let running = tokio::spawn(svc.clone().oneshot((None, 0)));
    tokio::task::yield_now().await;
    let waiting: Vec<_> = (1..=100).map(|i| tokio::spawn(svc.clone().oneshot((None, i)))).collect();
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(h.backlog(), 100);
    let err = svc.clone().oneshot((None, 101)).await.unwrap_err();
    assert!(err.is::<palisade_bulkhead::Overloaded>(), "{err}");
    // Refuse (the default) sheds at once, with no backlog at all.
    let refusing = AdaptiveLimitLayer::builder().algorithm(Fixed::new(1)).build().unwrap();
    let (_gate2, inner2) = support::gated::<Option<&'static str>>();
    let svc2 = refusing.layer(inner2);
    let _busy = tokio::spawn(svc2.clone().oneshot((None, 0)));
    tokio::task::yield_now().await;
    assert!(svc2.clone().oneshot((None, 1)).await.unwrap_err().is::<palisade_bulkhead::Overloaded>());
    assert_eq!(refusing.handle().backlog(), 0);

    // Let every call through, one at a time (the limit is 1).
    for _ in 0..10_000 {
        if running.is_finished() && waiting.iter().all(tokio::task::JoinHandle::is_finished) {
            break;
        }
        gate.notify_waiters();
        tokio::task::yield_now().await;
    }
    assert_eq!(running.await.unwrap().unwrap(), 0);
    for (i, t) in waiting.into_iter().enumerate() {
        assert_eq!(t.await.unwrap().unwrap(), i as u32 + 1);
    }
}

/// The adaptive config round-trips through its file form and builds what it says.
#[cfg(feature = "serde")]
#[test]
fn the_adaptive_config_round_trips() {
    use palisade_bulkhead::adaptive::{
        AdaptiveLimitConfig, AlgorithmConfig, Gradient2Config, PartitionConfig,
    };
    let config = AdaptiveLimitConfig {
        name: "search".to_owned(),
        algorithm: AlgorithmConfig::Gradient2(Gradient2Config {
            initial_limit: Some(40),
            min_limit: Some(10),
            max_limit: Some(400),
            ..Gradient2Config::default()
        }),
        when_full: WhenFull::wait(Duration::from_millis(50)),
        max_queue: 7,
        partitions: vec![PartitionConfig { name: "live".to_owned(), ratio: 0.9 }],
        ..AdaptiveLimitConfig::default()
    };
    let json = serde_json::to_string(&config).unwrap();
    assert_eq!(serde_json::from_str::<AdaptiveLimitConfig>(&json).unwrap(), config);
    assert_eq!(serde_json::from_str::<AdaptiveLimitConfig>("{}").unwrap(), AdaptiveLimitConfig::default());
    let layer = config.into_builder().partition_by(|(): &()| "live").build().unwrap();
    let s = layer.handle().snapshot();
    assert_eq!((s.limit, s.partitions[0].limit), (40, 36));
}

/// Events report typed fields (issue 18.4), so JSON logs can be queried by them.
#[test]
fn events_report_typed_fields() {
    use palisade_bulkhead::{AdaptiveLimitEvent, BulkheadEvent};
    use palisade_core::event::{Event, FieldValue};
    fn fields(e: &dyn Event) -> Vec<(&'static str, FieldValue)> {
        let mut seen = Vec::new();
        e.fields(&mut |k, v| seen.push((k, v)));
        seen
    }
    let acquired = BulkheadEvent::Acquired { wait: Duration::from_millis(40) };
    assert_eq!(fields(&acquired), vec![("wait_ms", FieldValue::U64(40))]);
    let rejected = BulkheadEvent::Rejected { reason: BulkheadFullReason::WaitTimedOut };
    assert_eq!(fields(&rejected), vec![("reason", FieldValue::from("wait_timed_out"))]);
    let changed = AdaptiveLimitEvent::LimitChanged { from: 20, to: 18 };
    assert_eq!(
        fields(&changed),
        vec![("from_limit", FieldValue::U64(20)), ("to_limit", FieldValue::U64(18))]
    );
    let shed = AdaptiveLimitEvent::Rejected { partition: Some(Arc::from("batch")) };
    assert_eq!(fields(&shed), vec![("partition", FieldValue::from("batch"))]);
}
