//! Keyed limits never forget a key that still constrains anyone (issue 13.1).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use palisade_core::rejection::KeySetFull;
use palisade_core::when_full::WhenFull;
use palisade_rate_limit::{
    Denied, KeyedRateLimiter, KeyedStore, Quota, RateLimitLayer, Tier, DEFAULT_MAX_KEYS,
};
use support::{advance, ms, retry_after, Echo};
use tower::{Layer, Service, ServiceExt};

/// Issue 13.1, first input: `per_second(1)`, burst 1, `max_keys(1)`, wait mode. Key `a` is
/// admitted at t=0 and five more `a` wait (slots 1 s … 5 s; the bucket is next free at 6 s).
/// A key `b` at 1.5 s must not make the map forget `a`: `b` is refused, and a new `a` at
/// 1.5 s is not admitted before 6 s (`retry_after` 4.5 s).
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_key_with_waiters_is_not_forgotten_for_a_new_key() {
    let layer = RateLimitLayer::builder()
        .tier(Tier::keyed(Quota::per_second(1).burst(1), |k: &&str| Some(*k)).max_keys(1))
        .when_full(WhenFull::wait(Duration::from_secs(5)))
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = layer.layer(Echo);
    let start = tokio::time::Instant::now();

    assert_eq!(svc.clone().oneshot("a").await.unwrap(), "a");
    let waiters: Vec<_> = (0..5).map(|_| tokio::spawn(svc.clone().oneshot("a"))).collect();
    tokio::task::yield_now().await;
    advance(ms(1_500)).await;

    let err = svc.clone().oneshot("b").await.unwrap_err();
    assert_eq!(err.downcast_ref::<KeySetFull>().map(KeySetFull::capacity), Some(1));
    assert_eq!(handle.status(&"a").unwrap().reset_after, ms(4_500), "a's state is intact");

    // A new `a` now waits behind the five (its slot is at 6 s) instead of passing at once.
    let mut late = tokio_test::task::spawn(svc.clone().oneshot("a"));
    tokio_test::assert_pending!(late.poll());
    let done: Vec<_> = futures_util::future::join_all(waiters).await;
    assert!(done.into_iter().all(|r| r.unwrap().is_ok()));
    assert_eq!(start.elapsed(), ms(5_000), "the fifth waiter ran at its slot, 5 s");
    advance(ms(999)).await;
    tokio_test::assert_pending!(late.poll());
    advance(ms(1)).await;
    assert_eq!(tokio_test::assert_ready_ok!(late.poll()), "a");
    assert_eq!(handle.snapshot().keys_refused, 1);
}

/// The same input through the keyed limiter directly (reject semantics): `retry_after` is
/// exactly 4.5 s, and `b` is refused with `KeySetFull`.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_direct_keyed_check_reports_the_exact_wait_of_a_kept_key() {
    let limiter =
        KeyedRateLimiter::builder().quota(Quota::per_second(1).burst(1)).max_keys(1).build().unwrap();
    let store = limiter.store();
    let now = tokio::time::Instant::now();
    for _ in 0..6 {
        store.acquire(&"a", 1, now, Some(Duration::from_secs(5))).unwrap();
    }
    advance(ms(1_500)).await;
    assert_eq!(limiter.check_key(&"b"), Err(Denied::KeySetFull { capacity: 1 }));
    assert_eq!(limiter.check_key(&"a"), Err(Denied::RetryAfter(ms(4_500))));
    assert_eq!(limiter.sweep(), 0, "a still constrains its waiters");
    advance(ms(4_500)).await;
    assert_eq!(limiter.sweep(), 1, "at 6 s a is as good as new");
    assert!(limiter.check_key(&"b").is_ok());
}

/// Issue 13.1, second input: a long-period quota (`per_hour(10)`) is not reset when the map
/// is full, whatever the time since the key was last used.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_per_hour_quota_is_not_reset_by_idleness() {
    let limiter = KeyedRateLimiter::builder().quota(Quota::per_hour(10)).max_keys(1).build().unwrap();
    for _ in 0..10 {
        limiter.check_key(&"a").unwrap();
    }
    advance(Duration::from_secs(61)).await; // past the old one-minute idle timeout
    assert_eq!(limiter.check_key(&"b"), Err(Denied::KeySetFull { capacity: 1 }));
    // One token comes back every 6 minutes: the next `a` is 360 s - 61 s away.
    assert_eq!(limiter.check_key(&"a"), Err(Denied::RetryAfter(Duration::from_secs(299))));
    advance(Duration::from_secs(299)).await;
    assert!(limiter.check_key(&"a").is_ok());
    assert!(limiter.check_key(&"a").is_err(), "one token only, not a reset bucket");
    assert_eq!(limiter.evictions(), 0);
}

/// Issue 13.1: `max_keys(1500)` holds exactly 1500 keys (not 1504).
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn max_keys_is_exact() {
    let limiter = KeyedRateLimiter::builder().quota(Quota::per_minute(1)).max_keys(1500).build().unwrap();
    assert_eq!(limiter.store().capacity(), 1500);
    for k in 0..1500u32 {
        limiter.check_key(&k).unwrap();
    }
    assert_eq!(limiter.check_key(&1500), Err(Denied::KeySetFull { capacity: 1500 }));
    assert_eq!((limiter.len(), limiter.evictions(), limiter.overflows()), (1500, 0, 1));
}

/// Issue 13.1: `per_minute(1).burst(1)`, the default `max_keys` (100,000) and 100,000
/// distinct clients making two passes: the second pass admits none (today 50 %); with
/// 99,000 clients, none either (today 32 %). A working set that fits is never evicted.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_working_set_that_fits_is_never_evicted() {
    for clients in [100_000u32, 99_000] {
        let limiter = KeyedRateLimiter::builder().quota(Quota::per_minute(1).burst(1)).build().unwrap();
        assert_eq!(limiter.store().capacity(), DEFAULT_MAX_KEYS);
        let first = (0..clients).filter(|c| limiter.check_key(c).is_ok()).count();
        assert_eq!(first, clients as usize);
        advance(Duration::from_secs(1)).await;
        let second = (0..clients).filter(|c| limiter.check_key(c).is_ok()).count();
        assert_eq!(second, 0, "{clients} clients: limits reset in the second pass");
        assert_eq!(limiter.evictions(), 0);
    }
}

/// Every algorithm: a key is kept while its limit differs from a fresh key's, and forgotten
/// (when room is needed) once it does not.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn every_algorithm_keeps_a_constraining_key() {
    use palisade_rate_limit::Algorithm;
    for algorithm in [
        Algorithm::TokenBucket,
        Algorithm::LeakyBucket { queue: 2 },
        Algorithm::SlidingWindowLog,
        Algorithm::SlidingWindowCounter,
        Algorithm::FixedWindow,
    ] {
        let limiter = KeyedRateLimiter::builder()
            .algorithm(algorithm)
            .quota(Quota::per_second(2))
            .max_keys(1)
            .build()
            .unwrap();
        assert!(limiter.check_key(&1).is_ok(), "{algorithm:?}");
        let _ = limiter.check_key(&1); // the leaky bucket's check never queues: refused
        advance(ms(400)).await;
        assert_eq!(limiter.check_key(&2), Err(Denied::KeySetFull { capacity: 1 }), "{algorithm:?}");
        // Two seconds on, every algorithm is back to a fresh state (the sliding counter needs
        // its previous window to slide out too).
        advance(ms(2_600)).await;
        assert!(limiter.check_key(&2).is_ok(), "{algorithm:?}");
        assert_eq!(limiter.evictions(), 1, "{algorithm:?}");
    }
}

/// A key with a refundable admission in flight (a waiting request holds its state) is kept
/// even if its bucket would otherwise be full again.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_waiting_request_keeps_its_key() {
    let layer = RateLimitLayer::builder()
        .tier(Tier::keyed(Quota::per_second(10).burst(1), |k: &u32| Some(*k)).max_keys(1))
        .when_full(WhenFull::wait(Duration::from_secs(1)))
        .build()
        .unwrap();
    let mut svc = layer.layer(Echo);
    let handle = layer.handle();
    assert!(svc.call(1).now_or_never().unwrap().is_ok());
    let mut waiting = tokio_test::task::spawn(svc.call(1));
    tokio_test::assert_pending!(waiting.poll());
    assert_eq!(handle.sweep(), 0);
    let err = svc.call(2).now_or_never().unwrap().unwrap_err();
    assert!(err.is::<KeySetFull>());
    drop(waiting); // gives its slot back
    advance(ms(100)).await;
    assert_eq!(handle.sweep(), 1);
    assert!(svc.call(2).now_or_never().unwrap().is_ok());
}

/// In reject mode, a full map refuses new keys with `KeySetFull` and never a `RateLimited`
/// carrying someone else's wait.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_overflow_refusal_is_typed() {
    let layer = RateLimitLayer::builder()
        .name("per_ip")
        .tier(Tier::keyed(Quota::per_second(1), |k: &u32| Some(*k)).max_keys(2))
        .build()
        .unwrap();
    let mut svc = layer.layer(Echo);
    assert!(svc.call(1).now_or_never().unwrap().is_ok());
    assert!(svc.call(2).now_or_never().unwrap().is_ok());
    let err = svc.call(1).now_or_never().unwrap().unwrap_err();
    assert_eq!(retry_after(&err), ms(1_000));
    let err = svc.call(3).now_or_never().unwrap().unwrap_err();
    let full = err.downcast_ref::<KeySetFull>().unwrap();
    assert_eq!((full.name(), full.capacity()), ("per_ip", 2));
    let rejection = palisade_core::rejection::find_rejection(err.as_ref()).unwrap();
    assert_eq!(rejection.kind(), palisade_core::rejection::RejectionKind::Overloaded);
}

/// 2,000,000 distinct hostile keys against a limiter also serving 1,000 real clients: memory
/// stays bounded (keys never above `max_keys`, resident memory growth bounded) and no real
/// client gets past its limit. Run with
/// `cargo test --release -p palisade-rate-limit --test keyed -- --ignored --nocapture`.
#[tokio::test(flavor = "current_thread", start_paused = true)]
#[ignore = "slow: 2,000,000 keys; run in release"]
async fn two_million_hostile_keys() {
    const MAX_KEYS: usize = 100_000;
    const CLIENTS: u64 = 1_000;
    let limiter =
        KeyedRateLimiter::builder().quota(Quota::per_minute(1).burst(1)).max_keys(MAX_KEYS).build().unwrap();
    let rss_before = rss_kib();
    let mut client_admits = 0u64;
    let mut hostile_admits = 0u64;
    let mut max_len = 0;
    let mut minutes = 1u64;
    // Real clients take their one request per minute first.
    for c in 0..CLIENTS {
        client_admits += u64::from(limiter.check_key(&c).is_ok());
    }
    for i in 0..2_000_000u64 {
        let key = 1_000_000_000 + i;
        hostile_admits += u64::from(limiter.check_key(&key).is_ok());
        if i % 1_000 == 0 {
            // Real clients keep asking; each may pass once per minute at most.
            for c in 0..CLIENTS {
                client_admits += u64::from(limiter.check_key(&c).is_ok());
            }
            max_len = max_len.max(limiter.len());
        }
        if i % 500_000 == 499_999 {
            advance(Duration::from_secs(60)).await;
            minutes += 1;
        }
    }
    let rss_after = rss_kib();
    println!(
        "hostile admitted {hostile_admits}, refused {}, evicted {}, max keys {max_len}, client admits {client_admits} \
         over {minutes} minutes, RSS {rss_before:?} KiB -> {rss_after:?} KiB",
        limiter.overflows(),
        limiter.evictions()
    );
    assert!(max_len <= MAX_KEYS);
    assert!(client_admits <= CLIENTS * minutes, "a client got past its limit");
    // Each key costs well under 200 bytes; allow 64 MiB of growth for the map and allocator.
    if let (Some(before), Some(after)) = (rss_before, rss_after) {
        assert!(after.saturating_sub(before) < 64 * 1024, "RSS grew by {} KiB", after - before);
    }
}

fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Review: `set_quota` on a keyed limiter while new keys arrive on another thread. A new
/// key's state was made under its shard's write lock (reading the quota), while
/// `set_quota` held the quota's write lock and walked the shards: each waited for the
/// other's lock, for ever.
#[test]
fn set_quota_while_new_keys_arrive_does_not_deadlock() {
    // Keys refill within a microsecond, so the full map keeps making room for new ones.
    let limiter =
        KeyedRateLimiter::builder().quota(Quota::per_second(1_000_000)).max_keys(1_000).build().unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let inserter = {
        let (limiter, stop, done_tx) = (limiter.clone(), stop.clone(), done_tx.clone());
        std::thread::spawn(move || {
            let mut k = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = limiter.check_key(&k);
                k += 1;
            }
            done_tx.send(()).unwrap();
        })
    };
    let changer = {
        let (limiter, stop) = (limiter.clone(), stop.clone());
        std::thread::spawn(move || {
            for i in 0..20_000u32 {
                limiter.set_quota(Quota::per_second(1_000_000 + i % 7)).unwrap();
            }
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            done_tx.send(()).unwrap();
        })
    };
    for _ in 0..2 {
        done_rx.recv_timeout(Duration::from_secs(60)).expect("set_quota and a new key deadlocked");
    }
    inserter.join().unwrap();
    changer.join().unwrap();
}

// === requests without a key (CONTRIBUTING §7) ===

fn unkeyed_layer(when_unkeyed: palisade_core::keyed::Unkeyed) -> RateLimitLayer<Option<u32>> {
    RateLimitLayer::builder()
        .name("per_user")
        .quota(Quota::per_second(2).burst(2))
        .keyed(|user: &Option<u32>| *user)
        .when_unkeyed(when_unkeyed)
        .build()
        .unwrap()
}

/// The default refuses a request without a key with `KeyMissing` (and does not limit the
/// keyed ones for it); the refusal is counted.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_request_without_a_key_is_refused_by_default() {
    use palisade_core::rejection::KeyMissing;
    let layer =
        RateLimitLayer::builder().quota(Quota::per_second(1)).keyed(|u: &Option<u32>| *u).build().unwrap();
    let svc = layer.layer(Echo);
    let err = svc.clone().oneshot(None).await.unwrap_err();
    assert_eq!(err.downcast_ref::<KeyMissing>().unwrap().name(), "rate_limit");
    assert!(svc.clone().oneshot(Some(1)).await.is_ok());
    assert_eq!(layer.handle().snapshot().rejected, 1);
    assert_eq!(layer.handle().snapshot().keys, 1);
    // Same with a tier of its own, in wait mode (the path that reserves).
    let waiting = RateLimitLayer::builder()
        .tier(Tier::keyed(Quota::per_second(1), |u: &Option<u32>| *u))
        .when_full(WhenFull::wait(Duration::from_secs(1)))
        .build()
        .unwrap()
        .layer(Echo);
    assert!(waiting.clone().oneshot(None).await.unwrap_err().is::<KeyMissing>());
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn pass_through_leaves_unkeyed_requests_unlimited() {
    let layer = unkeyed_layer(palisade_core::keyed::Unkeyed::PassThrough);
    let svc = layer.layer(Echo);
    for _ in 0..10 {
        assert!(svc.clone().oneshot(None).await.is_ok());
    }
    assert!(svc.clone().oneshot(Some(1)).await.is_ok());
    assert!(svc.clone().oneshot(Some(1)).await.is_ok());
    assert!(svc.clone().oneshot(Some(1)).await.is_err(), "keyed requests stay limited");
    assert_eq!(layer.handle().snapshot().keys, 1);
}

/// `Shared`: every unkeyed request shares one bucket of the quota, apart from the keys'.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn shared_puts_unkeyed_requests_under_one_limit() {
    let layer = unkeyed_layer(palisade_core::keyed::Unkeyed::Shared);
    let svc = layer.layer(Echo);
    assert!(svc.clone().oneshot(None).await.is_ok());
    assert!(svc.clone().oneshot(None).await.is_ok());
    let err = svc.clone().oneshot(None).await.unwrap_err();
    assert_eq!(retry_after(&err), ms(500));
    // The keys have their own buckets.
    assert!(svc.clone().oneshot(Some(1)).await.is_ok());
    assert!(svc.clone().oneshot(Some(1)).await.is_ok());
    advance(ms(500)).await;
    assert!(svc.clone().oneshot(None).await.is_ok());
    // A quota change reaches the shared bucket too: at 0.5 s its TAT is 1.5 s, a debt of
    // 1 s at the old 500 ms interval, 2 s at the new 1 s one (TAT 2.5 s); with burst 1 the
    // next token is then due at 2.5 s, 2 s from now (the old quota said 500 ms).
    layer.handle().set_quota("per_key", Quota::per_second(1).burst(1)).unwrap();
    let err = svc.clone().oneshot(None).await.unwrap_err();
    assert_eq!(retry_after(&err), Duration::from_secs(2));
}

/// `Shared` in wait mode reserves in the shared bucket, and a reservation dropped unused is
/// given back to it (not to a key's).
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_shared_reservation_dropped_unused_is_given_back() {
    let layer = RateLimitLayer::builder()
        .quota(Quota::per_second(10).burst(1))
        .keyed(|u: &Option<u32>| *u)
        .when_unkeyed(palisade_core::keyed::Unkeyed::Shared)
        .when_full(WhenFull::wait(Duration::from_secs(1)))
        .build()
        .unwrap();
    let svc = layer.layer(Echo);
    assert!(svc.clone().oneshot(None).await.is_ok());
    let mut waiting = Box::pin(svc.clone().oneshot(None));
    assert!((&mut waiting).now_or_never().is_none());
    drop(waiting);
    // The slot at 100 ms was given back: the next one gets it, not 200 ms.
    let start = tokio::time::Instant::now();
    assert!(svc.clone().oneshot(None).await.is_ok());
    assert_eq!(start.elapsed(), ms(100));
}

/// `Shared` needs the tier's one quota: a per-key quota refuses it at build.
#[test]
fn shared_with_a_per_key_quota_is_refused_at_build() {
    let err = RateLimitLayer::builder()
        .tier(Tier::keyed_by(|_: &u32| Quota::per_second(1), |u: &Option<u32>| *u))
        .when_unkeyed(palisade_core::keyed::Unkeyed::Shared)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "when_unkeyed");
    let err = RateLimitLayer::builder().keyed(|u: &Option<u32>| *u).build().unwrap_err();
    assert_eq!(err.field(), "quota");
}

/// `RateLimitLayer::new` never fails: an invalid quota is brought to the nearest valid one.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn new_never_fails() {
    let layer = RateLimitLayer::<u32>::new(Quota::per_second(2));
    let svc = layer.layer(Echo);
    assert!(svc.clone().oneshot(1).await.is_ok());
    assert!(svc.clone().oneshot(1).await.is_ok());
    assert_eq!(retry_after(&svc.clone().oneshot(1).await.unwrap_err()), ms(500));
    for bad in [
        Quota::per_second(0),
        Quota::new(5, Duration::ZERO),
        Quota::per_second(5).burst(0),
        Quota::new(1, Duration::MAX),
    ] {
        let fixed = bad.nearest_valid();
        assert!(fixed.validate("quota").is_ok(), "{bad:?} -> {fixed:?}");
        let svc = RateLimitLayer::<u32>::new(bad).layer(Echo);
        assert!(svc.oneshot(1).await.is_ok(), "{bad:?}");
    }
    assert_eq!(Quota::per_second(0).nearest_valid(), Quota::per_second(1));
    assert_eq!(Quota::per_second(7).burst(3).nearest_valid(), Quota::per_second(7).burst(3));
}
