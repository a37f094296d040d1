//! Fleet tests against a real `redis-server` started by each test (Debian package
//! `redis-server`; without it the tests fail and name the install command).
//!
//! Real time here: Redis has its own clock. Outcomes are asserted as counts and bounds,
//! never as durations; every wait is a bounded loop.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::ignored_unit_patterns,
    clippy::many_single_char_names,
    missing_docs
)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use palisade_core::event::Event;
use palisade_core::rejection::{find, BulkheadFull, CircuitOpen};
use palisade_redis::server::RedisServer;
use palisade_redis::{
    OnRedisDown, Quota, RedisBackend, RedisBulkheadLayer, RedisCircuitBreakerLayer, RedisCircuitState,
    RedisEvent, RedisRateLimiter, Source,
};
use tower::{service_fn, Layer, Service, ServiceExt};

const HOUR: Duration = Duration::from_secs(3600);

// A generous timeout: these tests are about exactness, not about a slow Redis (a loaded
// machine can take longer than 200 ms to answer, which would read as Redis being down).
fn backend(server: &RedisServer) -> RedisBackend {
    RedisBackend::builder(server.url()).timeout(Duration::from_secs(5)).build().unwrap()
}

fn limiter(server: &RedisServer, quota: Quota) -> RedisRateLimiter {
    RedisRateLimiter::builder("api", backend(server)).tier(quota).build().unwrap()
}

async fn admitted(l: &RedisRateLimiter, key: &'static str, n: usize) -> usize {
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..n {
        let l = l.clone();
        set.spawn(async move { l.check(key, 1).await.unwrap() });
    }
    let mut ok = 0;
    while let Some(d) = set.join_next().await {
        let d = d.unwrap();
        assert!(d.source == Source::Redis || d.source == Source::Batch, "{d:?}");
        ok += usize::from(d.allowed);
    }
    ok
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_independent_limiters_admit_no_more_than_the_quota_in_total() {
    let server = RedisServer::start();
    // Separate backends: separate connections and local state, one quota in Redis.
    let a = limiter(&server, Quota::per(50, HOUR));
    let b = limiter(&server, Quota::per(50, HOUR));
    let (x, y) = tokio::join!(admitted(&a, "client-1", 200), admitted(&b, "client-1", 200));
    assert_eq!(x + y, 50, "a admitted {x}, b admitted {y}");
    // another key has its own quota
    assert_eq!(admitted(&a, "client-2", 60).await, 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_tier_refusing_spends_nothing_and_retry_after_is_exact() {
    let server = RedisServer::start();
    let ten = Quota::per(10, HOUR);
    let three = Quota::per(3, HOUR);
    let l = RedisRateLimiter::builder("tiers", backend(&server)).tier(ten).tier(three).build().unwrap();
    for _ in 0..3 {
        assert!(l.check("k", 1).await.unwrap().allowed);
    }
    let refused = l.check("k", 1).await.unwrap();
    assert!(!refused.allowed);
    // the 3/h tier: one token every 1200 s, the bucket was filled just now.
    assert!(refused.retry_after <= Duration::from_secs(1200), "{refused:?}");
    assert!(refused.retry_after > Duration::from_secs(1199), "{refused:?}");
    for _ in 0..5 {
        assert!(!l.check("k", 1).await.unwrap().allowed);
    }
    // The first tier was charged only for the 3 admitted calls: 7 left, 6 after this one.
    let first_only = l.check_with("k", 1, &[ten]).await.unwrap();
    assert!(first_only.allowed);
    assert_eq!(first_only.remaining, 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_checks_and_a_weight_above_the_burst_is_an_error() {
    let server = RedisServer::start();
    let l = limiter(&server, Quota::per(10, HOUR));
    let d = l.check("w", 4).await.unwrap();
    assert!(d.allowed);
    assert_eq!(d.remaining, 6);
    assert!(!l.check("w", 7).await.unwrap().allowed);
    assert!(l.check("w", 6).await.unwrap().allowed);
    let err = l.check("w", 11).await.unwrap_err();
    assert_eq!((err.cost(), err.capacity(), err.tier(), err.name()), (11, 10, "tiers[0]", "api"));
    assert!(l.check("w", 0).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_expire_and_a_flushed_script_is_reloaded() {
    let server = RedisServer::start();
    let l = limiter(&server, Quota::per(10, Duration::from_secs(10)));
    assert!(l.check("ttl", 2).await.unwrap().allowed);
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query_async(&mut conn).await.unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
    let ttl: i64 = redis::cmd("PTTL").arg(&keys[0]).query_async(&mut conn).await.unwrap();
    // two tokens of one per second: the key lives until the first whole second after its
    // arrival time (about 2 s from now), so at most 3 s.
    assert!(ttl > 0 && ttl <= 3000, "{ttl}");
    let _: () = redis::cmd("SCRIPT").arg("FLUSH").query_async(&mut conn).await.unwrap();
    let d = l.check("ttl", 1).await.unwrap();
    assert_eq!((d.allowed, d.source), (true, Source::Redis));
}

/// A stored arrival time in µs: whole ones in hexadecimal (`0x…`), fractional ones decimal.
fn arrival_time(value: &str) -> f64 {
    match value.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).unwrap() as f64,
        None => value.parse().unwrap(),
    }
}

/// Every key's TTL covers its theoretical arrival time and ends at most 1 s after it (the
/// script keeps the TTL of a key whose arrival time stays in the same second).
async fn assert_ttls_cover_arrival_times(server: &RedisServer) -> Vec<String> {
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query_async(&mut conn).await.unwrap();
    for k in &keys {
        let ((secs, micros), value, pttl): ((u64, u64), String, i64) = redis::pipe()
            .atomic()
            .cmd("TIME")
            .cmd("GET")
            .arg(k)
            .cmd("PTTL")
            .arg(k)
            .query_async(&mut conn)
            .await
            .unwrap();
        let now = (secs * 1_000_000 + micros) as f64;
        let tat = arrival_time(&value);
        assert!(pttl > 0, "{k}: pttl {pttl}");
        let expires = now + pttl as f64 * 1000.0;
        // PTTL is in whole ms: 1 ms of slack either way
        assert!(expires + 1000.0 >= tat, "{k} expires at {expires} before its arrival time {tat}");
        assert!(expires <= tat + 1_001_000.0, "{k} expires at {expires}, over 1 s after {tat}");
    }
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_ttls_always_cover_the_arrival_time() {
    let server = RedisServer::start();
    // 1,000 per second: a token every ms, so most writes stay in the same second (KEEPTTL)
    // and some cross into the next one (a new PXAT).
    let one = limiter(&server, Quota::per(1_000, Duration::from_secs(1)));
    let two = RedisRateLimiter::builder("two", backend(&server))
        .tier(Quota::per(1_000, Duration::from_secs(1)))
        .tier(Quota::per(5_000, Duration::from_secs(10)))
        .build()
        .unwrap();
    // a slow quota: its keys live for an hour, so the check below is never vacuous
    let cold =
        RedisRateLimiter::builder("cold", backend(&server)).tier(Quota::per(10, HOUR)).build().unwrap();
    for round in 0..6 {
        // concurrent checks: coalesced into shared script calls, same keys within a call
        let (x, y) = tokio::join!(admitted(&one, "hot", 300), admitted(&two, "hot", 300));
        assert!(x > 0 && y > 0, "round {round}: {x} {y}");
        assert!(cold.check(&format!("k{round}"), 7).await.unwrap().allowed);
        // a refund keeps the TTL (the arrival time moves back, the TTL still covers it)
        let d = one.check("hot", 1).await.unwrap();
        one.refund("hot", 1, &d).await;
        let d = two.check("hot", 1).await.unwrap();
        two.refund("hot", 1, &d).await;
        let keys = assert_ttls_cover_arrival_times(&server).await;
        assert_eq!(keys.iter().filter(|k| k.starts_with("palisade:cold:")).count(), round + 1, "{keys:?}");
    }
    // a refund that moves the arrival time back by seconds: the TTL follows it
    let slow = RedisRateLimiter::builder("slow", backend(&server))
        .tier(Quota::per(2, Duration::from_secs(10)))
        .build()
        .unwrap();
    let d = slow.check("r", 2).await.unwrap();
    assert!(d.allowed);
    slow.refund("r", 1, &d).await;
    let keys = assert_ttls_cover_arrival_times(&server).await;
    assert!(keys.iter().any(|k| k.starts_with("palisade:slow:")), "{keys:?}");
    // a whole arrival time is stored in hexadecimal (read back without a decimal conversion)
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let v: String = redis::cmd("GET").arg("palisade:slow:{r}:0").query_async(&mut conn).await.unwrap();
    assert!(v.starts_with("0x"), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fractional_emission_interval_stays_exact() {
    let server = RedisServer::start();
    // 7 per hour: a token every 514,285,714.29 µs, so arrival times have a fraction
    let q = Quota::per(7, HOUR);
    let (a, b) = (limiter(&server, q), limiter(&server, q));
    let (x, y) = tokio::join!(admitted(&a, "f", 50), admitted(&b, "f", 50));
    assert_eq!(x + y, 7, "a admitted {x}, b admitted {y}");
    let d = a.check("f", 1).await.unwrap();
    assert!(!d.allowed);
    assert!(d.retry_after <= Duration::from_micros(514_285_715), "{d:?}");
    assert!(d.retry_after > Duration::from_secs(514), "{d:?}");
    // a refund of the last admission's token: exactly one more admission
    for _ in 0..6 {
        assert!(a.check("g", 1).await.unwrap().allowed);
    }
    let last = a.check("g", 1).await.unwrap();
    assert!(last.allowed);
    a.refund("g", 1, &last).await;
    assert!(b.check("g", 1).await.unwrap().allowed);
    assert!(!b.check("g", 1).await.unwrap().allowed);
    let keys = assert_ttls_cover_arrival_times(&server).await;
    assert_eq!(keys.len(), 2, "{keys:?}");
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let v: String = redis::cmd("GET").arg(&keys[0]).query_async(&mut conn).await.unwrap();
    assert!(v.contains('.') && !v.starts_with("0x"), "the fraction is kept: {v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batching_two_instances_stay_within_the_documented_overshoot_bound() {
    let server = RedisServer::start();
    let quota = Quota::per(1000, HOUR);
    let size = 8;
    let mk = || {
        RedisRateLimiter::builder("batched", backend(&server))
            .tier(quota)
            .batch(size, Duration::from_secs(60))
            .build()
            .unwrap()
    };
    let (a, b) = (mk(), mk());
    let (x, y) = tokio::join!(admitted(&a, "hot", 1500), admitted(&b, "hot", 1500));
    // Every token spent was paid for in Redis: never above the quota here (no refill to
    // speak of); at most one partly spent block per instance is left unspent.
    assert!(x + y <= 1000, "{x} + {y}");
    assert!(x + y >= 1000 - 2 * (size as usize - 1), "{x} + {y}");
}

fn bulkhead_instance(server: &RedisServer, n: u32, lease: Duration) -> RedisBulkheadLayer {
    RedisBulkheadLayer::builder("partner", backend(server), n).lease(lease).build().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_bulkhead_never_exceeds_n_across_instances() {
    let server = RedisServer::start();
    let in_flight = Arc::new(AtomicUsize::new(0));
    let max = Arc::new(AtomicUsize::new(0));
    let inner = {
        let (in_flight, max) = (in_flight.clone(), max.clone());
        service_fn(move |_: ()| {
            let (in_flight, max) = (in_flight.clone(), max.clone());
            async move {
                let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                max.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
                in_flight.fetch_sub(1, Ordering::SeqCst);
                Ok::<_, std::io::Error>(())
            }
        })
    };
    let a = bulkhead_instance(&server, 5, Duration::from_secs(5)).layer(inner.clone());
    let b = bulkhead_instance(&server, 5, Duration::from_secs(5)).layer(inner);
    let admitted = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(AtomicUsize::new(0));
    let mut set = tokio::task::JoinSet::new();
    for i in 0..200 {
        let svc = if i % 2 == 0 { a.clone() } else { b.clone() };
        let (admitted, refused) = (admitted.clone(), refused.clone());
        set.spawn(async move {
            match svc.oneshot(()).await {
                Ok(()) => admitted.fetch_add(1, Ordering::SeqCst),
                Err(e) => {
                    assert!(find::<BulkheadFull>(&*e).is_some(), "{e}");
                    refused.fetch_add(1, Ordering::SeqCst)
                }
            };
        });
    }
    while set.join_next().await.is_some() {}
    assert!(max.load(Ordering::SeqCst) <= 5, "max in flight {}", max.load(Ordering::SeqCst));
    assert!(admitted.load(Ordering::SeqCst) >= 5);
    assert_eq!(admitted.load(Ordering::SeqCst) + refused.load(Ordering::SeqCst), 200);
    // every permit was released on completion
    let layer = bulkhead_instance(&server, 5, Duration::from_secs(5));
    for _ in 0..100 {
        if layer.in_flight().await == Some(0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(layer.in_flight().await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_response_future_releases_the_permit() {
    let server = RedisServer::start();
    let layer = bulkhead_instance(&server, 1, Duration::from_secs(30));
    let svc = layer.layer(service_fn(|_: ()| std::future::pending::<Result<(), std::io::Error>>()));
    let held = tokio::spawn(svc.clone().oneshot(()));
    for _ in 0..200 {
        if layer.in_flight().await == Some(1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(layer.in_flight().await, Some(1));
    held.abort();
    let _ = held.await;
    for _ in 0..200 {
        if layer.in_flight().await == Some(0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(layer.in_flight().await, Some(0), "released long before the 30 s lease");
}

#[test]
fn a_killed_instance_permits_come_back_after_the_lease() {
    let server = RedisServer::start();
    let url = server.url();
    // The "killed" instance: its own runtime, 3 calls that never finish, then the runtime is
    // dropped with the calls leaked (no release is ever sent, no renewal runs any more).
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let backend = RedisBackend::builder(url).timeout(Duration::from_secs(5)).build().unwrap();
            let layer = RedisBulkheadLayer::builder("partner", backend, 3)
                .lease(Duration::from_millis(600))
                .build()
                .unwrap();
            let svc = layer.layer(service_fn(|_: ()| std::future::pending::<Result<(), std::io::Error>>()));
            for _ in 0..3 {
                let mut fut = Box::pin(svc.clone().oneshot(()));
                // drive it until the permit is held and the inner call is pending
                for _ in 0..50 {
                    let _ = tokio::time::timeout(Duration::from_millis(5), &mut fut).await;
                }
                std::mem::forget(fut);
            }
            assert_eq!(layer.in_flight().await, Some(3));
        });
        drop(rt);
    })
    .join()
    .unwrap();

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let layer = bulkhead_instance(&server, 3, Duration::from_millis(600));
        let svc = layer.layer(service_fn(|_: ()| async { Ok::<_, std::io::Error>(()) }));
        let first = svc.clone().oneshot(()).await;
        assert!(
            find::<BulkheadFull>(&*first.unwrap_err()).is_some(),
            "all 3 permits held by the dead instance"
        );
        let mut recovered = false;
        for _ in 0..200 {
            if svc.clone().oneshot(()).await.is_ok() {
                recovered = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(recovered, "the dead instance's leases never expired");
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shared_breaker_opens_every_instance_after_failures_seen_by_one() {
    let server = RedisServer::start();
    let mk = || {
        RedisCircuitBreakerLayer::builder("backend", backend(&server))
            .failure_rate(0.5, 5)
            .time_window(Duration::from_secs(10), 10)
            .wait_in_open(Duration::from_secs(30))
            .poll_interval(Duration::from_millis(20))
            .build()
            .unwrap()
    };
    let (a, b) = (mk(), mk());
    let failing = a.layer(service_fn(|_: ()| async { Err::<(), _>(std::io::Error::other("down")) }));
    for _ in 0..4 {
        let _ = failing.clone().oneshot(()).await;
    }
    // Those four were recorded by spawned tasks; record more, awaited, until the fifth
    // outcome lands: the breaker opens on the instance that saw it.
    let mut opened = false;
    for _ in 0..5 {
        if a.record(true).await == RedisCircuitState::Open {
            opened = true;
            break;
        }
    }
    assert!(opened, "five failures within the window did not open the breaker");
    let started = tokio::time::Instant::now();
    let mut seen = None;
    for _ in 0..400 {
        if b.state() == RedisCircuitState::Open {
            seen = Some(started.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let seen = seen.expect("instance b never saw the fleet open");
    eprintln!("breaker transition reached the other instance after {seen:?} (poll interval 20 ms)");
    let mut svc = b.layer(service_fn(|_: ()| async { Ok::<_, std::io::Error>(()) }));
    let err = svc.ready().await.unwrap().call(()).await.unwrap_err();
    assert!(find::<CircuitOpen>(&*err).is_some(), "{err}");
}

fn events(b: &RedisBackend) -> Arc<std::sync::Mutex<Vec<RedisEvent>>> {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let s = seen.clone();
    b.on_event(move |e| s.lock().unwrap().push(e.clone()));
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stopped_mid_run_each_policy_then_recovery_after_restart() {
    let mut server = RedisServer::start();
    let port = server.port();
    let quota = Quota::per(10, HOUR);
    let timeout = Duration::from_millis(100);
    let mk = |policy| {
        let backend = RedisBackend::builder(server.url())
            .timeout(timeout)
            .guard(3, Duration::from_millis(200))
            .build()
            .unwrap();
        let seen = events(&backend);
        (
            RedisRateLimiter::builder("down", backend.clone())
                .tier(quota)
                .on_redis_down(policy)
                .build()
                .unwrap(),
            backend,
            seen,
        )
    };
    let (open, open_b, open_seen) = mk(OnRedisDown::FailOpen);
    let (closed, _, _) = mk(OnRedisDown::FailClosed);
    let (local, _, _) = mk(OnRedisDown::Local { share: 0.5 });
    for l in [&open, &closed, &local] {
        assert_eq!(l.check("k", 1).await.unwrap().source, Source::Redis);
    }
    server.stop();
    // A hang guard only (ten timeouts); the decision itself comes from the policy.
    let guard = timeout * 10;
    for _ in 0..10 {
        let d = tokio::time::timeout(guard, open.check("k", 1)).await.expect("hang").unwrap();
        assert_eq!((d.allowed, d.source), (true, Source::FailOpen));
        let d = tokio::time::timeout(guard, closed.check("k", 1)).await.expect("hang").unwrap();
        assert_eq!((d.allowed, d.source), (false, Source::FailClosed));
    }
    // local: half of the 10-token quota, then refused
    let mut local_ok = 0;
    for _ in 0..10 {
        let d = tokio::time::timeout(guard, local.check("k", 1)).await.expect("hang").unwrap();
        assert_eq!(d.source, Source::Local);
        local_ok += usize::from(d.allowed);
    }
    assert_eq!(local_ok, 5);
    // events and metrics for every fallback; the guard breaker opened (calls stop reaching Redis)
    assert_eq!(open_b.snapshot().fallbacks, 10);
    let seen = open_seen.lock().unwrap().clone();
    assert_eq!(seen.iter().filter(|e| matches!(e, RedisEvent::Fallback { .. })).count(), 10);
    assert!(
        seen.iter().any(|e| matches!(
            e,
            RedisEvent::CallFailed { error: palisade_redis::BackendError::BreakerOpen, .. }
        )),
        "{seen:?}"
    );
    // their typed `tracing` fields (`op` goes to `extra`)
    let fields = |e: &RedisEvent| {
        let mut out = Vec::new();
        e.fields(&mut |k, v| out.push((k, v)));
        out
    };
    let fallback = seen.iter().find(|e| e.kind() == "fallback").unwrap();
    assert_eq!(fields(fallback), vec![("op", "gcra".into()), ("reason", "fail_open".into())]);
    let refused = seen.iter().find(|e| {
        matches!(e, RedisEvent::CallFailed { error: palisade_redis::BackendError::BreakerOpen, .. })
    });
    assert_eq!(
        fields(refused.unwrap()),
        vec![("op", "gcra".into()), ("error", "the circuit breaker around redis is open".into())]
    );

    // Redis comes back (empty: a restarted server lost its scripts and keys)
    let _server = loop {
        match RedisServer::start_on(port) {
            Ok(s) => break s,
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    for l in [&open, &closed, &local] {
        let mut back = false;
        for _ in 0..200 {
            if l.check("k2", 1).await.unwrap().source == Source::Redis {
                back = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(back, "no recovery");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulkhead_when_redis_is_down_follows_its_policy() {
    let mut server = RedisServer::start();
    let mk = |policy| {
        let backend =
            RedisBackend::builder(server.url()).timeout(Duration::from_millis(100)).build().unwrap();
        RedisBulkheadLayer::builder("down", backend, 4).on_redis_down(policy).build().unwrap()
    };
    let open = mk(OnRedisDown::FailOpen).layer(service_fn(|_: ()| async { Ok::<_, std::io::Error>(()) }));
    let closed = mk(OnRedisDown::FailClosed).layer(service_fn(|_: ()| async { Ok::<_, std::io::Error>(()) }));
    let local = mk(OnRedisDown::Local { share: 0.5 })
        .layer(service_fn(|_: ()| std::future::pending::<Result<(), std::io::Error>>()));
    server.stop();
    assert!(open.clone().oneshot(()).await.is_ok());
    assert!(find::<BulkheadFull>(&*closed.clone().oneshot(()).await.unwrap_err()).is_some());
    // local: ceil(0.5 × 4) = 2 permits held by pending calls, the third is refused
    let h1 = tokio::spawn(local.clone().oneshot(()));
    let h2 = tokio::spawn(local.clone().oneshot(()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let third = local.clone().oneshot(()).await;
    assert!(find::<BulkheadFull>(&*third.unwrap_err()).is_some());
    h1.abort();
    h2.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_owned_check_gives_its_token_back() {
    let server = RedisServer::start();
    // A generous timeout: a check that times out after Redis ran it keeps its token (see
    // `check_owned`), and this test loads the machine with 10 checks at once.
    let backend = RedisBackend::builder(server.url()).timeout(Duration::from_secs(5)).build().unwrap();
    let l = RedisRateLimiter::builder("api", backend).tier(Quota::per(3, HOUR)).build().unwrap();
    // dropped at once: the spawned check still runs, then refunds what it admitted
    for _ in 0..10 {
        drop(l.check_owned("k".to_owned(), 1));
    }
    let mut all_back = None;
    for _ in 0..500 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        // the limiter's own view: a direct check of the whole burst passes only when all 3 are back
        let d = l.check_with("k", 3, &[Quota::per(3, HOUR)]).await.unwrap();
        if d.allowed {
            all_back = Some(d);
            break;
        }
    }
    if all_back.is_none() {
        let client = redis::Client::open(server.url()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let keys: Vec<String> = redis::cmd("KEYS").arg("*").query_async(&mut conn).await.unwrap();
        let t: (u64, u64) = redis::cmd("TIME").query_async(&mut conn).await.unwrap();
        for k in &keys {
            let v: String = redis::cmd("GET").arg(k).query_async(&mut conn).await.unwrap();
            eprintln!("state on failure: {k} = {v}, redis now = {}{:06}", t.0, t.1);
        }
        eprintln!("state on failure: {:?}", l.check_with("k", 1, &[Quota::per(3, HOUR)]).await);
    }
    let Some(whole) = all_back else { panic!("tokens of dropped checks were not refunded") };
    // and a refund of that admission: 0 left, refund 1, 1 left
    l.refund("k", 1, &whole).await;
    let d = l.check("k", 1).await.unwrap();
    assert_eq!((d.allowed, d.remaining), (true, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coalesced_limiters_stay_exact() {
    let server = RedisServer::start();
    let mk = || {
        RedisRateLimiter::builder("coalesced", backend(&server))
            .tier(Quota::per(50, HOUR))
            .tier(Quota::per(500, HOUR))
            .coalesce(64)
            .build()
            .unwrap()
    };
    let (a, b) = (mk(), mk());
    let (x, y) = tokio::join!(admitted(&a, "c", 300), admitted(&b, "c", 300));
    assert_eq!(x + y, 50, "a admitted {x}, b admitted {y}");
    // a refusal is exact there too: the 50/h tier, one token every 72 s
    let d = a.check("c", 1).await.unwrap();
    assert!(
        !d.allowed && d.retry_after <= Duration::from_secs(72) && d.retry_after > Duration::from_secs(71),
        "{d:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coalesced_calls_mixing_weights_and_quotas_stay_exact() {
    let server = RedisServer::start();
    // 3 decisions per script call: many calls in flight, each with runs of different
    // weights and quotas (a run's quota is sent once)
    let l = RedisRateLimiter::builder("mixed", backend(&server))
        .tier(Quota::per(100, HOUR))
        .coalesce(3)
        .build()
        .unwrap();
    let per_key = Quota::per(20, HOUR);
    let mut set = tokio::task::JoinSet::new();
    for i in 0..150u64 {
        let l = l.clone();
        set.spawn(async move {
            let (key, weight, d) = match i % 3 {
                0 => ("m", 1, l.check("m", 1).await.unwrap()),
                1 => ("m", 2, l.check("m", 2).await.unwrap()),
                _ => ("n", 1, l.check_with("n", 1, &[per_key]).await.unwrap()),
            };
            (key, weight, d)
        });
    }
    let (mut m, mut n) = (0, 0);
    while let Some(r) = set.join_next().await {
        let (key, weight, d) = r.unwrap();
        assert_eq!(d.source, Source::Redis, "{d:?}");
        if d.allowed {
            assert_eq!(d.retry_after, Duration::ZERO);
            if key == "m" {
                m += weight;
                assert!(d.remaining < 100, "{d:?}");
            } else {
                n += weight;
                assert!(d.remaining < 20, "{d:?}");
            }
        } else {
            // 100/h: a token every 36 s; 20/h: every 180 s
            assert!(d.retry_after > Duration::from_secs(30), "{key} {weight} {d:?}");
        }
    }
    // 150 weight asked of "m": its 100 tokens, less one when only weight-2 checks were left
    assert!(m == 100 || m == 99, "m admitted {m}");
    assert_eq!(n, 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_async_rate_limit_layers_over_redis_share_one_quota() {
    use palisade_core::rejection::RateLimited;
    use palisade_rate_limit::async_store::AsyncRateLimitLayer;
    let server = RedisServer::start();
    let mk = || {
        let l = limiter(&server, Quota::per(20, HOUR));
        AsyncRateLimitLayer::new("api", l, |r: &String| Some(r.clone()))
            .layer(service_fn(|_: String| async { Ok::<_, std::io::Error>(()) }))
    };
    let (a, b) = (mk(), mk());
    let mut set = tokio::task::JoinSet::new();
    for i in 0..100 {
        let svc = if i % 2 == 0 { a.clone() } else { b.clone() };
        set.spawn(async move { svc.oneshot("client".to_owned()).await });
    }
    let mut ok = 0;
    while let Some(r) = set.join_next().await {
        match r.unwrap() {
            Ok(()) => ok += 1,
            Err(e) => assert!(find::<RateLimited>(&*e).is_some(), "{e}"),
        }
    }
    assert_eq!(ok, 20);
}

/// `RedisBulkheadLayer::new` never fails: a zero `max_concurrent` becomes 1, and two
/// layers built with `new` share that one permit through Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_never_fails_and_shares_the_permits() {
    let server = RedisServer::start();
    // A generous timeout: a loaded machine must not turn the first (lazy) connection into
    // a fail-closed refusal of the call that should hold the permit.
    let slow_backend =
        || RedisBackend::builder(server.url()).timeout(Duration::from_secs(5)).build().unwrap();
    let a = RedisBulkheadLayer::new("new", slow_backend(), 0);
    let b = RedisBulkheadLayer::new("new", slow_backend(), 0);
    let (entered_tx, entered_rx) = tokio::sync::oneshot::channel::<()>();
    let entered = Arc::new(std::sync::Mutex::new(Some(entered_tx)));
    let gate = Arc::new(tokio::sync::Notify::new());
    let g = gate.clone();
    let slow = a.layer(service_fn(move |()| {
        let (g, entered) = (g.clone(), entered.clone());
        async move {
            if let Some(tx) = entered.lock().unwrap().take() {
                let _ = tx.send(());
            }
            g.notified().await;
            Ok::<_, std::io::Error>(())
        }
    }));
    let held = tokio::spawn(slow.oneshot(()));
    entered_rx.await.expect("the first call never got the permit");
    // The one permit is held (by the other layer): refused.
    let fast = b.layer(service_fn(|()| async { Ok::<_, std::io::Error>(()) }));
    let err = fast.clone().oneshot(()).await.unwrap_err();
    assert!(find::<BulkheadFull>(&*err).is_some(), "{err}");
    gate.notify_one();
    held.await.unwrap().unwrap();
    // Released: the other layer gets it now (bounded wait for the release to reach Redis).
    let mut ok = false;
    for _ in 0..200 {
        if fast.clone().oneshot(()).await.is_ok() {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(ok, "the permit never came back");
}

/// Coalescing is on by default and needs a runtime for its dispatcher: built outside one, the
/// default limiter decides one script call per decision, while an explicit `coalesce(n)` is a
/// config error naming the field. The backend itself built outside a runtime is a config error
/// (redis-rs would panic). The default limiter decides, and stays exact, once inside a runtime.
#[test]
fn coalescing_default_outside_a_runtime_is_off_and_explicit_coalescing_is_an_error() {
    let server = RedisServer::start();
    let err = RedisBackend::builder(server.url()).build().unwrap_err();
    assert!(err.to_string().contains("runtime"), "{err}");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let backend = {
        let _in = rt.enter();
        RedisBackend::builder(server.url()).timeout(Duration::from_secs(1)).build().unwrap()
    };
    let err = RedisRateLimiter::builder("outside", backend.clone())
        .tier(Quota::per(2, HOUR))
        .coalesce(64)
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("coalesce"), "{err}");
    let l = RedisRateLimiter::builder("outside", backend).tier(Quota::per(2, HOUR)).build().unwrap();
    let allowed: Vec<bool> = rt
        .block_on(async { futures_util::future::join_all((0..4).map(|_| l.check("k", 1))).await })
        .into_iter()
        .map(|d| d.unwrap().allowed)
        .collect();
    assert_eq!(allowed.iter().filter(|a| **a).count(), 2, "{allowed:?}");
}
