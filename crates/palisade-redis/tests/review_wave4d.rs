//! Review of the exact-mode GCRA rewrite (coalescing dispatcher with two calls in flight,
//! one-integer replies, KEEPTTL, hexadecimal arrival times) against a real `redis-server`
//! started by each test.
//!
//! A stalled Redis is `CLIENT PAUSE` (the socket stays open, no answer comes); waits on real
//! time are bounded loops, and the one duration asserted is tokio's paused clock, which only
//! moves by timers (the backend's timeout), never by the machine's speed.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::ignored_unit_patterns,
    clippy::many_single_char_names,
    missing_docs
)]

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use palisade_redis::server::RedisServer;
use palisade_redis::{OnRedisDown, Quota, RedisBackend, RedisRateLimiter, Source};

const HOUR: Duration = Duration::from_secs(3600);

async fn raw(server: &RedisServer) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(server.url()).unwrap();
    client.get_multiplexed_async_connection().await.unwrap()
}

/// Stalls every client of `server` for `ms` real milliseconds (the reply to this command
/// comes at once; everything after it waits).
async fn pause(server: &RedisServer, ms: u64) {
    let mut c = raw(server).await;
    let _: () = redis::cmd("CLIENT").arg("PAUSE").arg(ms).arg("ALL").query_async(&mut c).await.unwrap();
}

type Check = Pin<
    Box<dyn Future<Output = Result<palisade_redis::Decision, palisade_redis::CostExceedsCapacity>> + Send>,
>;

fn check(l: &RedisRateLimiter, key: &'static str) -> Check {
    let l = l.clone();
    Box::pin(async move { l.check(key, 1).await })
}

/// Whether `f` is still pending after one poll.
async fn pending<F: Future + Unpin>(f: &mut F) -> bool {
    std::future::poll_fn(|cx| std::task::Poll::Ready(Pin::new(&mut *f).poll(cx).is_pending())).await
}

/// Polls `f` once (it then sits on the limiter: a direct script call or a queued decision).
async fn poll_once(f: &mut Check) {
    assert!(pending(f).await, "Redis answered while paused");
}

async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

// A caller queued behind two script calls in flight waited for one of them to time out and
// then for its own call: twice the configured timeout while Redis stalled. Every caller is
// answered by the down policy within the timeout now. Time is tokio's paused clock: it only
// moves by the timers (the backend timeout), so the elapsed times are exact multiples of it.
#[tokio::test(flavor = "current_thread")]
async fn a_stalled_redis_answers_every_queued_caller_within_the_timeout() {
    let server = RedisServer::start();
    let timeout = Duration::from_millis(300);
    let backend = RedisBackend::builder(server.url())
        .timeout(timeout)
        // never opens here: the worst case, every call waits for its timeout
        .guard(10_000, Duration::from_secs(1))
        .build()
        .unwrap();
    let l = RedisRateLimiter::builder("stall", backend)
        .tier(Quota::per(1_000, HOUR))
        .on_redis_down(OnRedisDown::FailOpen)
        .build()
        .unwrap();
    // the connection is up and the script loaded (real time)
    assert_eq!(l.check("warm", 1).await.unwrap().source, Source::Redis);
    pause(&server, 1_500).await;
    tokio::time::pause();
    let start = tokio::time::Instant::now();
    let wave = |n: usize| {
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..n {
            let l = l.clone();
            set.spawn(async move {
                let d = l.check("k", 1).await.unwrap();
                (d, start.elapsed())
            });
        }
        set
    };
    // 64 callers: a direct call and two dispatcher calls in flight
    let mut first = wave(64);
    settle().await;
    // then 10 more: queued behind the two calls in flight
    let mut second = wave(10);
    let mut answered = 0;
    for set in [&mut first, &mut second] {
        while let Some(r) = set.join_next().await {
            let (d, waited) = r.unwrap();
            assert_eq!((d.allowed, d.source), (true, Source::FailOpen), "{d:?}");
            // tokio's timer wheel fires at the next whole millisecond: 301 ms (two timeouts
            // in a row: 602 ms)
            assert!(waited < timeout * 3 / 2, "a caller waited {waited:?} with a timeout of {timeout:?}");
            answered += 1;
        }
    }
    assert_eq!(answered, 74);
}

// A decision whose caller was dropped while it waited in the dispatcher's queue (its script
// call not yet sent) was still sent and spent a token for no one.
#[tokio::test(flavor = "current_thread")]
async fn a_caller_dropped_while_queued_spends_nothing() {
    let server = RedisServer::start();
    let backend = RedisBackend::builder(server.url()).timeout(Duration::from_secs(10)).build().unwrap();
    // one token every 1,000 s: nothing refills during the test
    let l = RedisRateLimiter::builder("drop", backend)
        .tier(Quota::per(100, Duration::from_secs(100_000)))
        .build()
        .unwrap();
    assert_eq!(l.check("warm", 1).await.unwrap().source, Source::Redis);
    pause(&server, 1_000).await;
    // A: alone, straight to Redis; B1: the dispatcher's first call
    let mut a = check(&l, "k");
    poll_once(&mut a).await;
    let mut b1 = check(&l, "k");
    poll_once(&mut b1).await;
    settle().await;
    // B2..B6 queue behind B1's call (fewer than a second call's worth), then are dropped
    let mut dropped: Vec<Check> = (0..5).map(|_| check(&l, "k")).collect();
    for f in &mut dropped {
        poll_once(f).await;
    }
    settle().await;
    drop(dropped);
    let (a, b1) = tokio::join!(a, b1);
    assert!(a.unwrap().allowed && b1.unwrap().allowed);
    // C goes through the dispatcher after whatever it still holds (X keeps C from being alone)
    let mut x = check(&l, "other");
    poll_once(&mut x).await;
    let c = l.check("k", 1).await.unwrap();
    assert!(c.allowed, "{c:?}");
    // A, B1 and C spent: 97 left (the dropped ones spent 5 more: 92)
    assert_eq!(c.remaining, 97, "{c:?}");
    x.await.unwrap();
}

// `check_with` took per-key quotas unvalidated: a zero period admitted everything (the
// script's arithmetic turned to NaN), and a limit of 0 with a burst wrote "nan" with an
// invalid expiry, so the script failed: every decision coalesced in that call went to the down
// policy. Such a quota is now refused like a weight above the burst (it can never admit).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_per_key_quota_is_refused_and_poisons_no_one() {
    let server = RedisServer::start();
    let backend = RedisBackend::builder(server.url()).timeout(Duration::from_secs(5)).build().unwrap();
    let l = RedisRateLimiter::builder("perkey", backend).tier(Quota::per(1_000, HOUR)).build().unwrap();
    let bad = [
        Quota::per(5, Duration::ZERO),
        Quota::per(0, HOUR).burst(5),
        Quota::per(5_000_000, Duration::from_secs(1)),
        Quota::per(1, Duration::from_secs(86_400 * 365)).burst(1 << 40),
    ];
    for q in bad {
        for _ in 0..3 {
            let r = l.check_with("bad", 1, &[q]).await;
            assert!(r.is_err(), "{q:?}: {r:?}");
        }
    }
    // many at once, mixed with valid decisions in coalesced calls: the valid ones are all
    // decided by Redis
    let mut set = tokio::task::JoinSet::new();
    for i in 0..200u32 {
        let l = l.clone();
        set.spawn(async move {
            if i % 2 == 0 {
                (true, l.check_with("bad", 1, &[Quota::per(0, HOUR).burst(5)]).await)
            } else {
                (false, l.check("good", 1).await)
            }
        });
    }
    let mut good = 0;
    while let Some(r) = set.join_next().await {
        match r.unwrap() {
            (true, r) => assert!(r.is_err(), "{r:?}"),
            (false, r) => {
                let d = r.unwrap();
                assert_eq!((d.allowed, d.source), (true, Source::Redis), "{d:?}");
                good += 1;
            }
        }
    }
    assert_eq!(good, 100);
}

// A quota whose bucket spans more microseconds than a Lua number holds exactly (period ÷ limit
// × burst beyond 2^52 µs, ~142 years) was accepted: the arrival time lost its units (and past
// 2^63 the script's `%x` and `PXAT` failed, so every check went to the down policy).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bucket_beyond_a_lua_numbers_precision_is_a_config_error() {
    let server = RedisServer::start();
    let backend = RedisBackend::builder(server.url()).timeout(Duration::from_secs(5)).build().unwrap();
    let year = Duration::from_secs(86_400 * 365);
    let e = RedisRateLimiter::builder("huge", backend.clone())
        .tier(Quota::per(1, year).burst(1 << 40))
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("tiers[0]"), "{e}");
    let e = RedisRateLimiter::builder("huge", backend.clone())
        .tier(Quota::per(1, year).burst(200))
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("tiers[0]"), "{e}");
    // the largest accepted bucket (142 years) stays exact: its whole burst, then a refusal
    // with the exact retry_after of one token (a year)
    let l = RedisRateLimiter::builder("huge", backend).tier(Quota::per(1, year).burst(142)).build().unwrap();
    let d = l.check("k", 142).await.unwrap();
    assert_eq!((d.allowed, d.source, d.remaining), (true, Source::Redis, 0), "{d:?}");
    let d = l.check("k", 1).await.unwrap();
    assert_eq!((d.allowed, d.source), (false, Source::Redis), "{d:?}");
    assert!(
        d.retry_after <= year && d.retry_after > year.checked_sub(Duration::from_secs(60)).unwrap(),
        "{d:?}"
    );
    // the stored arrival time is a whole number of µs, hexadecimal, its TTL covering it
    let mut c = raw(&server).await;
    let keys: Vec<String> = redis::cmd("KEYS").arg("*huge*").query_async(&mut c).await.unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
    let v: String = redis::cmd("GET").arg(&keys[0]).query_async(&mut c).await.unwrap();
    let tat = u64::from_str_radix(v.strip_prefix("0x").expect(&v), 16).unwrap();
    let at: i64 = redis::cmd("PEXPIRETIME").arg(&keys[0]).query_async(&mut c).await.unwrap();
    assert!(at as u64 * 1_000 >= tat, "{at} ms < {tat} µs");
}

// Dropped check_owned futures while their script calls are in flight (two calls, Redis
// stalled): every admission of a dropped caller is given back exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owned_checks_dropped_mid_batch_are_refunded_exactly_once() {
    let server = RedisServer::start();
    let backend = RedisBackend::builder(server.url()).timeout(Duration::from_secs(10)).build().unwrap();
    let period = Duration::from_secs(100_000);
    let l = RedisRateLimiter::builder("owned", backend).tier(Quota::per(10, period)).build().unwrap();
    assert_eq!(l.check("warm", 1).await.unwrap().source, Source::Redis);
    pause(&server, 800).await;
    let mut futs: Vec<_> = (0..40).map(|_| l.check_owned("k".to_owned(), 1)).collect();
    for f in &mut futs {
        let _ = pending(f).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let kept = futs.split_off(20);
    drop(futs);
    let mut admitted = 0u64;
    for f in kept {
        admitted += u64::from(f.await.unwrap().allowed);
    }
    // the refunds are spawned: wait (bounded) until Redis holds exactly the kept admissions
    let mut c = raw(&server).await;
    let key = "palisade:owned:{k}:0";
    let mut spent = u64::MAX;
    for _ in 0..500 {
        let v: Option<String> = redis::cmd("GET").arg(key).query_async(&mut c).await.unwrap();
        let t: (u64, u64) = redis::cmd("TIME").query_async(&mut c).await.unwrap();
        let now = t.0 * 1_000_000 + t.1;
        let tat = v.map_or(0.0, |v| match v.strip_prefix("0x") {
            Some(h) => u64::from_str_radix(h, 16).unwrap() as f64,
            None => v.parse::<f64>().unwrap(),
        });
        let t_us = 10_000_000_000.0;
        spent = ((tat - now as f64).max(0.0) / t_us).ceil() as u64;
        if spent == admitted {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(spent, admitted, "Redis holds {spent} tokens, the kept callers were admitted {admitted}");
    // and no refund comes twice: a direct check of everything not spent passes, one more fails
    tokio::time::sleep(Duration::from_millis(100)).await;
    let q = [Quota::per(10, period)];
    if admitted < 10 {
        let d = l.check_with("k", 10 - admitted, &q).await.unwrap();
        assert_eq!((d.allowed, d.remaining), (true, 0), "{d:?}");
    }
    let d = l.check_with("k", 1, &q).await.unwrap();
    assert!(!d.allowed, "{d:?}");
}

// Local batching: callers of one key waited in turn on the key's block lock, each behind the
// previous one's script call; with Redis stalled the n-th caller waited n timeouts. Every
// caller is answered by the down policy within the timeout now (tokio's paused clock again).
#[tokio::test(flavor = "current_thread")]
async fn a_stalled_redis_answers_batching_callers_of_one_key_within_the_timeout() {
    let server = RedisServer::start();
    let timeout = Duration::from_millis(300);
    let backend = RedisBackend::builder(server.url())
        .timeout(timeout)
        .guard(10_000, Duration::from_secs(1))
        .build()
        .unwrap();
    let l = RedisRateLimiter::builder("stall-batch", backend)
        .tier(Quota::per(1_000, HOUR))
        .batch(10, Duration::from_secs(1))
        .on_redis_down(OnRedisDown::FailOpen)
        .build()
        .unwrap();
    assert_eq!(l.check("warm", 1).await.unwrap().source, Source::Redis);
    pause(&server, 1_500).await;
    tokio::time::pause();
    let start = tokio::time::Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let l = l.clone();
        set.spawn(async move { (l.check("k", 1).await.unwrap(), start.elapsed()) });
    }
    let mut answered = 0;
    while let Some(r) = set.join_next().await {
        let (d, waited) = r.unwrap();
        assert_eq!((d.allowed, d.source), (true, Source::FailOpen), "{d:?}");
        assert!(waited < timeout * 3 / 2, "a caller waited {waited:?} with a timeout of {timeout:?}");
        answered += 1;
    }
    assert_eq!(answered, 8);
}

// Scripts flushed back to back while two limiters (separate connections) burst: every
// decision is Redis' own, and the quota holds. A call that met `NOSCRIPT` sent `SCRIPT LOAD`
// then `EVALSHA` again, which failed when a flush came between the two (the decision went to
// the down policy); it retries with `EVAL` and the source now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_flushed_mid_burst_are_reloaded_and_the_quota_holds() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let server = RedisServer::start();
    let mk = || {
        let backend = RedisBackend::builder(server.url()).timeout(Duration::from_secs(5)).build().unwrap();
        RedisRateLimiter::builder("flush", backend).tier(Quota::per(200, HOUR)).build().unwrap()
    };
    let (a, b) = (mk(), mk());
    let done = Arc::new(AtomicBool::new(false));
    let flusher = {
        let done = done.clone();
        let mut c = raw(&server).await;
        tokio::spawn(async move {
            let mut flushes = 0u32;
            while !done.load(Ordering::Relaxed) {
                let _: () = redis::cmd("SCRIPT").arg("FLUSH").query_async(&mut c).await.unwrap();
                flushes += 1;
                tokio::task::yield_now().await;
            }
            flushes
        })
    };
    let mut set = tokio::task::JoinSet::new();
    for i in 0..128 {
        let l = if i % 2 == 0 { a.clone() } else { b.clone() };
        set.spawn(async move {
            let mut ok = 0;
            for _ in 0..20 {
                let d = l.check("k", 1).await.unwrap();
                assert_eq!(d.source, Source::Redis, "{d:?}");
                ok += usize::from(d.allowed);
            }
            ok
        });
    }
    let mut ok = 0;
    while let Some(r) = set.join_next().await {
        ok += r.unwrap();
    }
    done.store(true, Ordering::Relaxed);
    assert!(flusher.await.unwrap() > 0);
    assert_eq!(ok, 200);
}

// Redis killed while callers burst (two script calls in flight), then restarted on its port:
// no caller hangs or panics, every decision is Redis' or the configured policy's, and Redis
// decides again after the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_and_restarted_mid_burst_answers_every_caller() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    let mut server = RedisServer::start();
    let port = server.port();
    let timeout = Duration::from_millis(200);
    let backend = RedisBackend::builder(server.url())
        .timeout(timeout)
        .guard(3, Duration::from_millis(100))
        .build()
        .unwrap();
    let l = RedisRateLimiter::builder("kill", backend)
        .tier(Quota::per(1_000_000, HOUR))
        .on_redis_down(OnRedisDown::Local { share: 0.5 })
        .build()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (redis, local) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..64 {
        let (l, stop, redis, local) = (l.clone(), stop.clone(), redis.clone(), local.clone());
        set.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                // a hang guard only: ten timeouts
                let d = tokio::time::timeout(timeout * 10, l.check("k", 1)).await.expect("hang").unwrap();
                match d.source {
                    Source::Redis => redis.fetch_add(1, Ordering::Relaxed),
                    Source::Local => local.fetch_add(1, Ordering::Relaxed),
                    other => panic!("{other:?}"),
                };
            }
        });
    }
    let wait_for = |counter: Arc<AtomicUsize>, above: usize| async move {
        for _ in 0..1_000 {
            if counter.load(Ordering::Relaxed) > above {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("stuck at {}", counter.load(Ordering::Relaxed));
    };
    wait_for(redis.clone(), 1_000).await;
    server.stop();
    wait_for(local.clone(), 100).await;
    let _server = loop {
        match RedisServer::start_on(port) {
            Ok(s) => break s,
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    let before = redis.load(Ordering::Relaxed);
    wait_for(redis.clone(), before + 1_000).await;
    stop.store(true, Ordering::Relaxed);
    while let Some(r) = set.join_next().await {
        r.unwrap();
    }
}

// `check_with` took any number of per-key tiers, but a tier's key carries one digit: the
// 11th tier shared the 1st one's key, and the last write won. Here the 1st tier (2 an hour)
// was overwritten by the 11th (1,000 an hour) and admitted every check. More than 8 tiers (as
// `build` allows) or none is now refused like a weight above the burst.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_key_tiers_beyond_eight_or_none_are_refused() {
    let server = RedisServer::start();
    let backend = RedisBackend::builder(server.url()).timeout(Duration::from_secs(5)).build().unwrap();
    let l = RedisRateLimiter::builder("tiers", backend).tier(Quota::per(1_000, HOUR)).build().unwrap();
    let mut tiers = vec![Quota::per(2, HOUR)];
    tiers.extend(std::iter::repeat_n(Quota::per(1_000, HOUR), 10));
    let mut admitted = 0;
    for _ in 0..5 {
        match l.check_with("k", 1, &tiers).await {
            Ok(d) => admitted += usize::from(d.allowed),
            Err(e) => assert_eq!(e.capacity(), 0, "{e}"),
        }
    }
    assert!(admitted <= 2, "the 2-an-hour tier admitted {admitted}");
    assert_eq!(admitted, 0, "11 tiers are refused");
    assert!(l.check_with("k", 1, &[]).await.is_err());
    // 8 tiers are fine, and the strictest holds
    let eight: Vec<Quota> =
        std::iter::once(Quota::per(2, HOUR)).chain(std::iter::repeat_n(Quota::per(1_000, HOUR), 7)).collect();
    let mut ok = 0;
    for _ in 0..5 {
        ok += usize::from(l.check_with("k8", 1, &eight).await.unwrap().allowed);
    }
    assert_eq!(ok, 2);
}

fn parse_tat(v: &str) -> f64 {
    match v.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).unwrap() as f64,
        None => v.parse().unwrap(),
    }
}

// A fractional arrival time is a Lua number: near 2^50.6 µs (today) its step is 0.25 µs, so
// `tat + T` rounded to the nearest step, and with T = 333,333.3333 µs (3 a second) every
// admission rounded 0.083 µs down: the bucket refilled faster than the quota (by 0.083 / T; a
// quota of 300,000 a second admitted 2.5% more). The arrival time is never behind the exact one
// now (rounded up when the sum rounded down; the emission interval is rounded up too).
// Measured exactly: a second tier with a whole interval sees the same `now` in each decision,
// and both tiers stay ahead of the clock, so each arrival time is `now₀ + k × T`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fractional_arrival_times_never_fall_behind_the_exact_ones() {
    let server = RedisServer::start();
    let backend = RedisBackend::builder(server.url()).timeout(Duration::from_secs(5)).build().unwrap();
    let sec = Duration::from_secs(1);
    let l = RedisRateLimiter::builder("drift", backend)
        .tier(Quota::per(3, sec).burst(2_000))
        .tier(Quota::per(1, sec).burst(2_000))
        .coalesce(0)
        .build()
        .unwrap();
    let n = 1_000u32;
    for _ in 0..n {
        assert!(l.check("k", 1).await.unwrap().allowed);
    }
    let mut c = raw(&server).await;
    let t0: String = redis::cmd("GET").arg("palisade:drift:{k}:0").query_async(&mut c).await.unwrap();
    let t1: String = redis::cmd("GET").arg("palisade:drift:{k}:1").query_async(&mut c).await.unwrap();
    let now0 = parse_tat(&t1) - f64::from(n) * 1e6;
    let exact = f64::from(n) * 1e6 / 3.0;
    let got = parse_tat(&t0) - now0;
    assert!(
        got >= exact,
        "tier 0 advanced {got} µs for {n} tokens of {} µs: {} µs behind",
        1e6 / 3.0,
        exact - got
    );
    // and not far ahead (≤ 0.25 µs and 0.0001 µs of interval per token)
    assert!(got <= exact + f64::from(n) * 0.2501, "{got} vs {exact}");
}

// Coalesced calls, two tiers, mixed weights: when the second tier refuses, the first spends
// nothing, so both tiers hold exactly the weight admitted (read back from Redis).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coalesced_multi_tier_refusals_spend_nothing_in_any_tier() {
    let server = RedisServer::start();
    let backend = RedisBackend::builder(server.url()).timeout(Duration::from_secs(5)).build().unwrap();
    let period = Duration::from_secs(100_000);
    let l = RedisRateLimiter::builder("tiers2", backend)
        .tier(Quota::per(1_000, period))
        .tier(Quota::per(25, period))
        .build()
        .unwrap();
    let mut set = tokio::task::JoinSet::new();
    for i in 0..200u64 {
        let l = l.clone();
        set.spawn(async move {
            let w = 1 + i % 3;
            let d = l.check("k", w).await.unwrap();
            assert_eq!(d.source, Source::Redis, "{d:?}");
            if d.allowed {
                w
            } else {
                0
            }
        });
    }
    let mut admitted = 0;
    while let Some(r) = set.join_next().await {
        admitted += r.unwrap();
    }
    assert!((23..=25).contains(&admitted), "admitted weight {admitted} of 25");
    let mut c = raw(&server).await;
    let t: (u64, u64) = redis::cmd("TIME").query_async(&mut c).await.unwrap();
    let now = (t.0 * 1_000_000 + t.1) as f64;
    let spent = |v: String, t_us: f64| ((parse_tat(&v) - now) / t_us).ceil() as u64;
    let v0: String = redis::cmd("GET").arg("palisade:tiers2:{k}:0").query_async(&mut c).await.unwrap();
    let v1: String = redis::cmd("GET").arg("palisade:tiers2:{k}:1").query_async(&mut c).await.unwrap();
    assert_eq!(spent(v0, 100_000_000.0), admitted, "tier 0");
    assert_eq!(spent(v1, 4_000_000_000.0), admitted, "tier 1");
}
