#![allow(clippy::unwrap_used, clippy::expect_used, clippy::needless_range_loop, missing_docs)]

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use palisade_core::rejection::KeySetFull;
use palisade_core::when_full::WhenFull;
use palisade_core::BoxError;
use palisade_rate_limit::error::CostExceedsCapacity;
use palisade_rate_limit::{Algorithm, Quota, RateLimitEvent, RateLimitLayer, Tier};
use support::{advance, ms, retry_after, Echo};
use tokio_test::task::{spawn, Spawn};
use tokio_test::{assert_pending, assert_ready_ok};
use tower::{Layer, Service, ServiceExt};

fn poll_ready<S: Service<R>, R>(task: &mut Spawn<()>, svc: &mut S) -> Poll<Result<(), S::Error>> {
    task.enter(|cx, _| svc.poll_ready(cx))
}

fn global(quota: Quota) -> RateLimitLayer<u32> {
    RateLimitLayer::builder().name("test").quota(quota).build().unwrap()
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn reject_mode_retry_after_is_the_exact_time_to_admission() {
    let mut svc = global(Quota::per_second(10).burst(2)).layer(Echo);
    assert_eq!(svc.ready().await.unwrap().call(1).await.unwrap(), 1);
    assert_eq!(svc.ready().await.unwrap().call(2).await.unwrap(), 2);
    let err = svc.ready().await.unwrap().call(3).await.unwrap_err();
    assert_eq!(retry_after(&err), ms(100));
    advance(ms(99)).await;
    assert_eq!(retry_after(&svc.ready().await.unwrap().call(3).await.unwrap_err()), ms(1));
    advance(ms(1)).await;
    assert_eq!(svc.ready().await.unwrap().call(3).await.unwrap(), 3);
}

/// Five requests, each through a service freshly made by `layer`, as a server does that
/// applies its middleware per connection (hyper's `MakeService`, tower's own `RateLimit` not
/// being `Clone`).
async fn through_fresh_services<L>(layer: L) -> Vec<bool>
where
    L: Layer<Echo>,
    L::Service: Service<u32>,
{
    let mut outcomes = Vec::new();
    for i in 0..5 {
        outcomes.push(layer.layer(Echo).oneshot(i).await.is_ok());
    }
    outcomes
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_sharing_check_catches_towers_per_service_window() {
    // tower's own RateLimit, 3 per second: every service starts with a fresh window.
    let tower = tower::limit::RateLimitLayer::new(3, std::time::Duration::from_secs(1));
    assert_eq!(through_fresh_services(tower).await, [true; 5], "tower limits nothing here");
    let palisade = global(Quota::per_second(3));
    assert_eq!(through_fresh_services(palisade).await, [true, true, true, false, false]);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn extreme_settings_do_not_panic() {
    let layer: RateLimitLayer<u32> = RateLimitLayer::builder()
        .quota(Quota::new(1, Quota::MAX_PERIOD))
        .when_full(WhenFull::wait(std::time::Duration::MAX))
        .build()
        .unwrap();
    let svc = layer.layer(Echo);
    assert!(svc.clone().oneshot(1).await.is_ok());
    let mut next = spawn(svc.clone().oneshot(2));
    assert_pending!(next.poll(), "waits (practically forever) without overflowing");
    assert!(RateLimitLayer::<u32>::builder().quota(Quota::new(1, std::time::Duration::MAX)).build().is_err());
    let reject = global(Quota::new(1, Quota::MAX_PERIOD)).layer(Echo);
    assert!(reject.clone().oneshot(1).await.is_ok());
    assert!(retry_after(&reject.clone().oneshot(2).await.unwrap_err()) == Quota::MAX_PERIOD);
}

/// axum clones the service per request: every request here goes through a fresh clone, and
/// the limit holds across them.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn every_clone_shares_one_limit() {
    let svc = global(Quota::per_second(1).burst(3)).layer(Echo);
    let mut outcomes = Vec::new();
    for i in 0..5 {
        outcomes.push(svc.clone().oneshot(i).await.is_ok());
    }
    assert_eq!(outcomes, [true, true, true, false, false]);

    // Services made separately from one layer value share it too.
    let layer = global(Quota::per_second(1).burst(1));
    assert!(layer.layer(Echo).oneshot(1).await.is_ok());
    assert!(layer.layer(Echo).oneshot(2).await.is_err());
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_reservation_is_held_until_call_and_given_back_on_drop() {
    let svc = global(Quota::per_second(10).burst(1)).layer(Echo);
    let (mut a, mut b) = (svc.clone(), svc.clone());
    let (mut ta, mut tb) = (spawn(()), spawn(()));

    assert_ready_ok!(poll_ready(&mut ta, &mut a));
    // a holds the only token: b is refused although a has not called yet. `poll_ready` is
    // ready (it never fails for a refusal) and `call` answers with the rejection.
    assert_ready_ok!(poll_ready(&mut tb, &mut b));
    assert_eq!(retry_after(&b.call(0).await.unwrap_err()), ms(100));
    // Polling a again keeps the same reservation.
    assert_ready_ok!(poll_ready(&mut ta, &mut a));

    // Dropping a without calling gives the token back.
    drop(a);
    assert_ready_ok!(poll_ready(&mut tb, &mut b));
    assert_eq!(b.call(7).await.unwrap(), 7);
    let mut c = svc.clone();
    assert_ready_ok!(poll_ready(&mut spawn(()), &mut c), "c is refused, not left pending");
    assert!(c.call(8).await.is_err());
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_clone_starts_unready() {
    let svc = global(Quota::per_second(10).burst(1)).layer(Echo);
    let mut a = svc.clone();
    assert_ready_ok!(poll_ready(&mut spawn(()), &mut a));
    let mut b = a.clone();
    assert_ready_ok!(poll_ready(&mut spawn(()), &mut b));
    assert!(b.call(2).await.is_err(), "the clone holds no reservation");
    assert_eq!(a.call(1).await.unwrap(), 1);
}

#[derive(Clone, Debug)]
struct FailsReady;

impl Service<u32> for FailsReady {
    type Response = u32;
    type Error = BoxError;
    type Future = std::future::Ready<Result<u32, BoxError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Err("inner broken".into()))
    }

    fn call(&mut self, req: u32) -> Self::Future {
        std::future::ready(Ok(req))
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn an_inner_readiness_error_gives_the_reservation_back() {
    let layer = global(Quota::per_second(10).burst(1));
    let mut broken = layer.layer(FailsReady);
    let err = broken.ready().await.unwrap_err();
    assert_eq!(err.to_string(), "inner broken");
    // The token went back although `broken` is still alive.
    assert_eq!(layer.layer(Echo).oneshot(5).await.unwrap(), 5);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn call_without_poll_ready_admits_or_refuses_without_panicking() {
    let mut svc = global(Quota::per_second(10).burst(1)).layer(Echo);
    assert_eq!(svc.call(1).await.unwrap(), 1);
    assert_eq!(retry_after(&svc.call(2).await.unwrap_err()), ms(100));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn wait_mode_admits_after_exactly_the_computed_delay() {
    let layer = RateLimitLayer::builder()
        .quota(Quota::per_second(10).burst(1))
        .when_full(WhenFull::wait(ms(250)))
        .build()
        .unwrap();
    let svc = layer.layer(Echo);
    let mut first = svc.clone();
    assert_eq!(first.ready().await.unwrap().call(0).await.unwrap(), 0);

    let mut a = svc.clone();
    let mut ta = spawn(());
    assert_pending!(poll_ready(&mut ta, &mut a));
    advance(ms(99)).await;
    assert!(!ta.is_woken());
    assert_pending!(poll_ready(&mut ta, &mut a));
    advance(ms(1)).await;
    assert!(ta.is_woken());
    assert_ready_ok!(poll_ready(&mut ta, &mut a));
    assert_eq!(a.call(1).await.unwrap(), 1);
    assert_eq!(layer.handle().snapshot().waited, 1);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn wait_mode_refuses_at_once_past_max_wait() {
    let layer: RateLimitLayer<u32> = RateLimitLayer::builder()
        .quota(Quota::per_second(10).burst(1))
        .when_full(WhenFull::wait(ms(150)))
        .build()
        .unwrap();
    let svc = layer.layer(Echo);
    let (mut a, mut b, mut c) = (svc.clone(), svc.clone(), svc.clone());
    assert_ready_ok!(poll_ready(&mut spawn(()), &mut a));
    assert_pending!(poll_ready(&mut spawn(()), &mut b)); // slot at 100ms
    assert_ready_ok!(poll_ready(&mut spawn(()), &mut c), "c would wait 200ms > 150ms: refused at once");
    // Its slot (200ms) is within a 150ms wait from 50ms on: the same request is admitted then.
    assert_eq!(retry_after(&c.call(2).await.unwrap_err()), ms(50));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn waiters_are_woken_in_order_at_their_slots() {
    let layer: RateLimitLayer<u32> = RateLimitLayer::builder()
        .quota(Quota::per_second(10).burst(1))
        .when_full(WhenFull::wait(ms(1000)))
        .build()
        .unwrap();
    let svc = layer.layer(Echo);
    let mut services: Vec<_> = (0..4).map(|_| svc.clone()).collect();
    let mut tasks: Vec<_> = (0..4).map(|_| spawn(())).collect();
    assert_ready_ok!(poll_ready(&mut tasks[0], &mut services[0]));
    for i in 1..4 {
        assert_pending!(poll_ready(&mut tasks[i], &mut services[i]));
    }
    for i in 1..4 {
        advance(ms(100)).await;
        for j in 1..4 {
            assert_eq!(tasks[j].is_woken(), j == i, "after {i} intervals only waiter {i} wakes");
        }
        assert_ready_ok!(poll_ready(&mut tasks[i], &mut services[i]));
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn dropping_a_waiting_service_gives_its_slot_back() {
    let layer: RateLimitLayer<u32> = RateLimitLayer::builder()
        .quota(Quota::per_second(10).burst(1))
        .when_full(WhenFull::wait(ms(1000)))
        .build()
        .unwrap();
    let svc = layer.layer(Echo);
    let (mut a, mut b, mut c) = (svc.clone(), svc.clone(), svc.clone());
    assert_ready_ok!(poll_ready(&mut spawn(()), &mut a));
    assert_pending!(poll_ready(&mut spawn(()), &mut b)); // slot at 100ms
    drop(b);
    let mut tc = spawn(());
    assert_pending!(poll_ready(&mut tc, &mut c));
    advance(ms(100)).await;
    assert!(tc.is_woken(), "c took b's slot at 100ms, not 200ms");
    assert_ready_ok!(poll_ready(&mut tc, &mut c));
}

fn keyed(quota: Quota) -> RateLimitLayer<(u32, u32)> {
    RateLimitLayer::builder()
        .name("keyed")
        .quota(quota)
        .keyed(|req: &(u32, u32)| Some(req.0))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn keys_are_isolated() {
    let svc = keyed(Quota::per_second(1).burst(2)).layer(Echo);
    assert!(svc.clone().oneshot((1, 0)).await.is_ok());
    assert!(svc.clone().oneshot((1, 1)).await.is_ok());
    assert_eq!(retry_after(&svc.clone().oneshot((1, 2)).await.unwrap_err()), ms(1000));
    assert!(svc.clone().oneshot((2, 0)).await.is_ok(), "key 2 has its own bucket");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn quotas_differ_per_key() {
    let layer = RateLimitLayer::builder()
        .tier(Tier::keyed_by(
            |plan: &&'static str| {
                if *plan == "paid" {
                    Quota::per_second(100)
                } else {
                    Quota::per_second(10)
                }
            },
            |req: &(&'static str, u32)| Some(req.0),
        ))
        .build()
        .unwrap();
    let svc = layer.layer(Echo);
    let mut free = 0;
    let mut paid = 0;
    for i in 0..200 {
        free += u32::from(svc.clone().oneshot(("free", i)).await.is_ok());
        paid += u32::from(svc.clone().oneshot(("paid", i)).await.is_ok());
    }
    assert_eq!((free, paid), (10, 100));
    assert_eq!(layer.handle().status(&"paid").unwrap().remaining, 0);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn keyed_wait_happens_in_the_response_future_and_dropping_it_refunds() {
    let layer = RateLimitLayer::builder()
        .quota(Quota::per_second(10).burst(1))
        .keyed(|req: &(u32, u32)| Some(req.0))
        .when_full(WhenFull::wait(ms(1000)))
        .build()
        .unwrap();
    let mut svc = layer.layer(Echo);
    assert_eq!(svc.ready().await.unwrap().call((1, 0)).await.unwrap(), (1, 0));

    let mut waiting = spawn(svc.ready().await.unwrap().call((1, 1)));
    assert_pending!(waiting.poll());
    drop(waiting); // its slot at 100ms goes back

    let mut next = spawn(svc.ready().await.unwrap().call((1, 2)));
    assert_pending!(next.poll());
    advance(ms(99)).await;
    assert_pending!(next.poll());
    advance(ms(1)).await;
    assert!(next.is_woken());
    assert_eq!(assert_ready_ok!(next.poll()), (1, 2));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn weights_take_several_tokens_and_too_heavy_is_a_clear_error() {
    let layer = RateLimitLayer::builder()
        .quota(Quota::per_second(10).burst(5))
        .weight(|req: &u32| *req)
        .when_full(WhenFull::wait(ms(10_000)))
        .build()
        .unwrap();
    let svc = layer.layer(Echo);
    assert!(svc.clone().oneshot(3).await.is_ok());
    assert!(svc.clone().oneshot(2).await.is_ok());
    // Never admissible: refused at once even in wait mode.
    let err = svc.clone().oneshot(6).await.unwrap_err();
    let too_heavy = err.downcast_ref::<CostExceedsCapacity>().unwrap();
    assert_eq!((too_heavy.cost(), too_heavy.capacity()), (6, 5));
    // A weight of 3 with an empty bucket waits exactly 300ms.
    let mut fut = spawn(svc.clone().oneshot(3));
    assert_pending!(fut.poll());
    advance(ms(299)).await;
    assert_pending!(fut.poll());
    advance(ms(1)).await;
    assert_eq!(assert_ready_ok!(fut.poll()), 3);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_later_tier_refusal_spends_nothing_in_earlier_tiers() {
    let layer = RateLimitLayer::builder()
        .tier(Tier::keyed(Quota::per_minute(2), |req: &(u32, u32)| Some(req.0)).name("per_user"))
        .tier(Tier::new(Quota::per_minute(3)).name("global"))
        .build()
        .unwrap();
    let svc = layer.layer(Echo);
    assert!(svc.clone().oneshot((1, 0)).await.is_ok());
    assert!(svc.clone().oneshot((1, 1)).await.is_ok());
    assert!(svc.clone().oneshot((2, 0)).await.is_ok()); // global now spent
    assert!(svc.clone().oneshot((2, 1)).await.is_err()); // refused by global
    let handle = layer.handle();
    let user2 = handle.tier("per_user").unwrap().status_of(&2u32).unwrap();
    assert_eq!(user2.remaining, 1, "the refused request took nothing from user 2's tier");
    assert_eq!(handle.tier("global").unwrap().status().unwrap().remaining, 0);
    let snap = handle.snapshot();
    assert_eq!((snap.admitted, snap.rejected, snap.keys), (3, 1, 2));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn conditional_tiers_apply_only_to_their_requests() {
    let layer = RateLimitLayer::builder()
        .tier(Tier::new(Quota::per_minute(1)).name("writes").when(|req: &(bool, u32)| req.0))
        .tier(Tier::new(Quota::per_minute(3)).name("all"))
        .build()
        .unwrap();
    let svc = layer.layer(Echo);
    assert!(svc.clone().oneshot((true, 0)).await.is_ok());
    assert!(svc.clone().oneshot((true, 1)).await.is_err(), "second write");
    assert!(svc.clone().oneshot((false, 2)).await.is_ok());
    assert!(svc.clone().oneshot((false, 3)).await.is_ok());
    assert!(svc.clone().oneshot((false, 4)).await.is_err(), "all spent");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn leaky_bucket_spaces_requests_and_rejects_when_the_queue_is_full() {
    let layer: RateLimitLayer<u32> = RateLimitLayer::builder()
        .algorithm(Algorithm::LeakyBucket { queue: 2 })
        .quota(Quota::per_second(10))
        .build()
        .unwrap();
    let svc = layer.layer(Echo);
    let mut services: Vec<_> = (0..4).map(|_| svc.clone()).collect();
    let mut tasks: Vec<_> = (0..4).map(|_| spawn(())).collect();
    assert_ready_ok!(poll_ready(&mut tasks[0], &mut services[0]));
    assert_pending!(poll_ready(&mut tasks[1], &mut services[1]));
    assert_pending!(poll_ready(&mut tasks[2], &mut services[2]));
    assert_ready_ok!(poll_ready(&mut tasks[3], &mut services[3]), "queue full: refused at once");
    // The queue has room again when the slot at 300ms is within its reach (200ms): at 100ms.
    assert_eq!(retry_after(&services[3].call(3).await.unwrap_err()), ms(100));
    assert_eq!(layer.handle().tier("global").unwrap().status().unwrap().queued, 2);

    let mut departures = Vec::new();
    for step in 1..=3 {
        advance(ms(50)).await;
        for i in 1..3 {
            if poll_ready(&mut tasks[i], &mut services[i]).is_ready()
                && !departures.iter().any(|&(j, _)| j == i)
            {
                departures.push((i, step * 50));
            }
        }
        advance(ms(50)).await;
        for i in 1..3 {
            if poll_ready(&mut tasks[i], &mut services[i]).is_ready()
                && !departures.iter().any(|&(j, _)| j == i)
            {
                departures.push((i, step * 100));
            }
        }
    }
    assert_eq!(departures, [(1, 100), (2, 200)]);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn windows_book_a_slot_in_the_next_window() {
    let layer = RateLimitLayer::builder()
        .algorithm(Algorithm::FixedWindow)
        .quota(Quota::per_second(1))
        .when_full(WhenFull::wait(ms(1500)))
        .build()
        .unwrap();
    let svc = layer.layer(Echo);
    assert!(svc.clone().oneshot(0).await.is_ok());
    advance(ms(400)).await;
    let mut next = spawn(svc.clone().oneshot(1));
    assert_pending!(next.poll());
    advance(ms(599)).await;
    assert_pending!(next.poll());
    advance(ms(1)).await;
    assert_eq!(assert_ready_ok!(next.poll()), 1);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn events_report_rejections_and_evictions() {
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = events.clone();
    let layer = RateLimitLayer::builder()
        .tier(Tier::keyed(Quota::per_minute(1), |req: &u32| Some(*req)).max_keys(2).name("per_key"))
        .on_event(move |e: &RateLimitEvent| seen.lock().unwrap().push(e.clone()))
        .build()
        .unwrap();
    let svc = layer.layer(Echo);
    let evicted = Arc::new(AtomicUsize::new(0));
    let count = evicted.clone();
    layer.handle().on_event(move |e| {
        if matches!(e, RateLimitEvent::Evicted { .. }) {
            count.fetch_add(1, Ordering::Relaxed);
        }
    });
    assert!(svc.clone().oneshot(1).await.is_ok());
    assert!(svc.clone().oneshot(1).await.is_err());
    assert!(svc.clone().oneshot(2).await.is_ok());
    // Both keys still constrain their clients: a third key is refused, nothing is reset.
    let err = svc.clone().oneshot(3).await.unwrap_err();
    assert_eq!(err.downcast_ref::<KeySetFull>().map(KeySetFull::capacity), Some(2));
    advance(ms(60_000)).await;
    assert!(svc.clone().oneshot(3).await.is_ok()); // keys 1 and 2 are full again: forgotten
    let events = events.lock().unwrap();
    assert_eq!(events[0], RateLimitEvent::Rejected { tier: "per_key".into(), retry_after: Some(ms(60_000)) });
    assert_eq!(events[1], RateLimitEvent::Rejected { tier: "per_key".into(), retry_after: None });
    assert_eq!(events[2], RateLimitEvent::Evicted { tier: "per_key".into(), keys: 2 });
    assert_eq!(evicted.load(Ordering::Relaxed), 1);
    assert_eq!(layer.handle().snapshot().keys_evicted, 2);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_flood_of_distinct_keys_stays_within_the_bound() {
    use futures_util::FutureExt;
    let layer = RateLimitLayer::builder()
        .tier(Tier::keyed(Quota::per_second(1), |req: &u32| Some(*req)).max_keys(1_000))
        .build()
        .unwrap();
    let mut svc = layer.layer(Echo);
    let handle = layer.handle();
    for key in 0..1_000_000u32 {
        if key % 1_000 == 0 {
            // The previous thousand keys are full again and may be forgotten.
            tokio::time::advance(ms(1_000)).await;
        }
        let res = svc.call(key).now_or_never().expect("answered at once");
        assert!(res.is_ok());
        if key % 50_000 == 0 {
            assert!(handle.snapshot().keys <= 1_000);
        }
    }
    let snap = handle.snapshot();
    assert!(snap.keys <= 1_000, "{} keys held", snap.keys);
    assert!(snap.keys_evicted >= 999_000);
    // The same flood within one second: the thousand keys held are in use, the rest refused.
    for key in 1_000_000..1_010_000u32 {
        let res = svc.call(key).now_or_never().expect("answered at once");
        assert!(res.unwrap_err().is::<KeySetFull>());
    }
    assert_eq!(handle.snapshot().keys, 1_000);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn poll_ready_rejection_becomes_429_with_retry_after() {
    use palisade_core::respond::HttpRejectionLayer;
    let layer = RateLimitLayer::builder().quota(Quota::per_second(1).burst(1)).build().unwrap();
    let svc = tower::ServiceBuilder::new().layer(HttpRejectionLayer::new()).layer(layer).service(
        tower::service_fn(|_: http::Request<()>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
        }),
    );
    assert_eq!(svc.clone().oneshot(http::Request::new(())).await.unwrap().status(), 200);
    let res = svc.clone().oneshot(http::Request::new(())).await.unwrap();
    assert_eq!(res.status(), 429);
    assert_eq!(res.headers()["retry-after"], "1");
}

#[cfg(feature = "http")]
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn ratelimit_headers_on_success_and_on_429() {
    use palisade_core::respond::HttpRejectionLayer;
    use palisade_rate_limit::headers::RateLimitHeadersLayer;
    let layer = RateLimitLayer::builder().quota(Quota::per_second(2)).build().unwrap();
    let svc = tower::ServiceBuilder::new()
        .layer(RateLimitHeadersLayer::new(layer.handle(), "global", |_: &http::Request<()>| Some(())))
        .layer(HttpRejectionLayer::new())
        .layer(layer)
        .service(tower::service_fn(|_: http::Request<()>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
        }));
    let headers = |res: &http::Response<String>| {
        ["ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"]
            .map(|h| res.headers().get(h).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default())
    };
    let first = svc.clone().oneshot(http::Request::new(())).await.unwrap();
    assert_eq!(headers(&first), ["2", "1", "1"]);
    let second = svc.clone().oneshot(http::Request::new(())).await.unwrap();
    assert_eq!(headers(&second), ["2", "0", "1"]);
    let third = svc.clone().oneshot(http::Request::new(())).await.unwrap();
    assert_eq!(third.status(), 429);
    assert_eq!(headers(&third), ["2", "0", "1"]);
    assert_eq!(third.headers()["retry-after"], "1");
    advance(ms(500)).await;
    let fourth = svc.clone().oneshot(http::Request::new(())).await.unwrap();
    assert_eq!((fourth.status().as_u16(), headers(&fourth)), (200, ["2".into(), "0".into(), "1".into()]));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn multi_tier_wait_holds_nothing_while_a_later_tier_makes_it_wait() {
    let layer = RateLimitLayer::builder()
        .tier(Tier::keyed(Quota::per_second(10).burst(1), |req: &(u32, u32)| Some(req.0)).name("per_user"))
        .tier(Tier::new(Quota::per_second(2)).name("global").algorithm(Algorithm::FixedWindow))
        .when_full(WhenFull::wait(ms(2000)))
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = layer.layer(Echo);
    assert!(svc.clone().oneshot((1, 0)).await.is_ok());
    assert!(svc.clone().oneshot((2, 0)).await.is_ok());
    let mut third = spawn(svc.clone().oneshot((3, 0)));
    assert_pending!(third.poll());
    // While the global window makes it wait, user 3's own bucket is untouched.
    assert_eq!(handle.tier("per_user").unwrap().status_of(&3u32).unwrap().remaining, 1);
    advance(ms(999)).await;
    assert_pending!(third.poll());
    advance(ms(1)).await;
    assert_eq!(assert_ready_ok!(third.poll()), (3, 0));
    assert_eq!(handle.tier("per_user").unwrap().status_of(&3u32).unwrap().remaining, 0);
    assert_eq!(handle.snapshot().waited, 1);
}

/// A store of its own behind the seam: here it wraps the in-memory one and records calls.
struct RecordingStore {
    inner: palisade_rate_limit::LocalStore<u32>,
    acquired: AtomicUsize,
    refunded: AtomicUsize,
}

impl palisade_rate_limit::KeyedStore<u32> for RecordingStore {
    fn acquire(
        &self,
        key: &u32,
        cost: u32,
        now: tokio::time::Instant,
        max_wait: Option<std::time::Duration>,
    ) -> Result<palisade_rate_limit::Grant, palisade_rate_limit::Denied> {
        self.acquired.fetch_add(1, Ordering::Relaxed);
        self.inner.acquire(key, cost, now, max_wait)
    }

    fn refund(&self, grant: palisade_rate_limit::Grant) {
        self.refunded.fetch_add(1, Ordering::Relaxed);
        self.inner.refund(grant);
    }

    fn status(&self, key: &u32, now: tokio::time::Instant) -> Option<palisade_rate_limit::Status> {
        self.inner.status(key, now)
    }

    fn keys(&self) -> usize {
        self.inner.keys()
    }

    fn evictions(&self) -> u64 {
        self.inner.evictions()
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_custom_store_plugs_in_without_changing_the_layer() {
    use palisade_rate_limit::{KeyedRateLimiter, KeyedStore};
    let inner =
        KeyedRateLimiter::<u32>::builder().quota(Quota::per_minute(1)).max_keys(10).build_store().unwrap();
    let limiter = KeyedRateLimiter::with_store(RecordingStore {
        inner,
        acquired: AtomicUsize::new(0),
        refunded: AtomicUsize::new(0),
    });
    let layer = RateLimitLayer::builder()
        .tier(Tier::keyed_limiter(limiter.clone(), |req: &(u32, u32)| Some(req.0)).name("per_user"))
        .tier(Tier::new(Quota::per_minute(1)).name("global"))
        .build()
        .unwrap();
    let svc = layer.layer(Echo);
    assert!(svc.clone().oneshot((1, 0)).await.is_ok());
    assert!(svc.clone().oneshot((2, 0)).await.is_err()); // global refuses, user 2 is refunded
    let store = limiter.store();
    assert_eq!((store.acquired.load(Ordering::Relaxed), store.refunded.load(Ordering::Relaxed)), (2, 1));
    assert_eq!(store.status(&2, tokio::time::Instant::now()).unwrap().remaining, 1);
    assert_eq!(layer.handle().status(&1u32).unwrap().remaining, 0);
}

/// `Buffer` treats a failed `poll_ready` as a dead service and fails every later call; a
/// refusal therefore surfaces from `call`, never from `poll_ready`.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn behind_a_buffer_a_refusal_does_not_kill_the_service() {
    let layer: RateLimitLayer<u32> = global(Quota::per_second(10).burst(1));
    let svc = tower::buffer::Buffer::new(layer.layer(Echo), 8);
    assert_eq!(svc.clone().oneshot(1).await.unwrap(), 1);
    let err = svc.clone().oneshot(2).await.unwrap_err();
    assert!(
        palisade_core::rejection::find::<palisade_core::rejection::RateLimited>(err.as_ref()).is_some(),
        "{err}"
    );
    advance(ms(100)).await;
    assert_eq!(svc.clone().oneshot(3).await.unwrap(), 3, "the buffer's worker is still alive");
}
