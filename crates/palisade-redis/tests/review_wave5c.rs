//! Review of the GCRA script's one-read path (wave 5c): values under the limiter's prefix
//! that `tonumber` reads but that are no arrival time, and the largest call (1,024
//! decisions of 8 tiers: several `MGET`s).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::Duration;

use futures_util::future::join_all;
use palisade_redis::server::RedisServer;
use palisade_redis::{OnRedisDown, Quota, RedisBackend, RedisRateLimiter, Source};

const HOUR: Duration = Duration::from_secs(3600);

async fn raw(server: &RedisServer) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(server.url()).unwrap();
    client.get_multiplexed_async_connection().await.unwrap()
}

/// Stalls every client of `server` for `ms` real milliseconds, so that the checks issued
/// meanwhile queue in the limiter's dispatcher and go to Redis together.
async fn pause(server: &RedisServer, ms: u64) {
    let mut c = raw(server).await;
    let _: () = redis::cmd("CLIENT").arg("PAUSE").arg(ms).arg("ALL").query_async(&mut c).await.unwrap();
}

fn limiter(server: &RedisServer, name: &str, tiers: &[Quota], coalesce: usize) -> RedisRateLimiter {
    let backend = RedisBackend::builder(server.url()).timeout(Duration::from_secs(20)).build().unwrap();
    let mut b =
        RedisRateLimiter::builder(name, backend).on_redis_down(OnRedisDown::FailClosed).coalesce(coalesce);
    for q in tiers {
        b = b.tier(*q);
    }
    b.build().unwrap()
}

/// `keys` checked (weight 1 each) while Redis is paused, decided together after.
async fn together(
    server: &RedisServer,
    l: &RedisRateLimiter,
    keys: &[String],
) -> Vec<palisade_redis::Decision> {
    assert_eq!(l.check("warm", 1).await.unwrap().source, Source::Redis);
    pause(server, 300).await;
    let checks = keys.iter().map(|key| {
        let l = l.clone();
        let key = key.clone();
        async move { l.check(&key, 1).await.unwrap() }
    });
    join_all(checks).await
}

/// Every key of the limiter holding `key`'s tiers.
async fn tier_keys(server: &RedisServer, key: &str) -> Vec<String> {
    let mut c = raw(server).await;
    let mut keys: Vec<String> =
        redis::cmd("KEYS").arg(format!("*{{{key}}}*")).query_async(&mut c).await.unwrap();
    keys.sort();
    keys
}

/// A string `tonumber` reads that no arrival time can be ("nan", "inf", a time past 2^53 µs)
/// reads as a fresh bucket, as any other value that is not an arrival time: before, "nan"
/// failed the script call (`SET … PXAT nan`), and so every decision coalesced with it, and
/// "inf" or "1e300" refused the key for ever (a `retry_after` of ~292,000 years).
#[tokio::test(flavor = "current_thread")]
async fn a_number_that_is_no_arrival_time_reads_as_a_fresh_bucket() {
    for (i, poison) in ["nan", "inf", "-inf", "1e300", "1e20"].into_iter().enumerate() {
        let server = RedisServer::start();
        for tiers in [&[Quota::per(100, HOUR)][..], &[Quota::per(100, HOUR), Quota::per(50, HOUR)][..]] {
            let name = format!("poison{i}-{}", tiers.len());
            let l = limiter(&server, &name, tiers, 128);
            let bad = format!("bad{}", tiers.len());
            assert!(l.check(&bad, 1).await.unwrap().allowed);
            let mut c = raw(&server).await;
            for k in tier_keys(&server, &bad).await {
                let _: () = redis::cmd("SET").arg(&k).arg(poison).query_async(&mut c).await.unwrap();
            }
            let names: Vec<String> =
                (0..24).map(|j| if j % 8 == 2 { bad.clone() } else { format!("k{j}") }).collect();
            let d = together(&server, &l, &names).await;
            assert!(
                d.iter().all(|d| d.source == Source::Redis && d.allowed),
                "{poison:?} under {} tiers: {d:?}",
                tiers.len()
            );
            // a fresh bucket spent three times (in whatever order): the tightest tier has 3 fewer
            let last = d.iter().zip(&names).filter(|(_, n)| **n == bad).map(|(d, _)| d.remaining).min();
            assert_eq!(last, Some(if tiers.len() == 1 { 97 } else { 47 }), "{poison:?}: {d:?}");
        }
    }
}

/// The largest call the limiter makes: 1,024 decisions of 8 tiers (8,192 keys, read by
/// several `MGET`s), keys repeated within the call, decides as deciding each alone would.
#[tokio::test(flavor = "current_thread")]
async fn the_largest_call_decides_as_each_decision_alone() {
    let server = RedisServer::start();
    // the tightest tier admits 3 an hour per key
    let tiers: Vec<Quota> = (0..8).map(|i| Quota::per(3 + 10 * (7 - i), HOUR)).collect();
    let l = limiter(&server, "largest", &tiers, 1024);
    // 256 distinct keys, each asked 4 times, interleaved: the 4th of each is refused
    let names: Vec<String> = (0..1024).map(|i| format!("k{}", i % 256)).collect();
    let d = together(&server, &l, &names).await;
    assert!(
        d.iter().all(|d| d.source == Source::Redis),
        "{:?}",
        d.iter().find(|d| d.source != Source::Redis)
    );
    // per key (its four decisions in whatever order the dispatcher sent them): 3 admitted
    // leaving 2, 1 and 0, one refused until the tightest tier's next token, 20 minutes on
    for key in 0..256 {
        let mine: Vec<_> = d.iter().skip(key).step_by(256).collect();
        let mut left: Vec<u64> = mine.iter().filter(|d| d.allowed).map(|d| d.remaining).collect();
        left.sort_unstable();
        assert_eq!(left, [0, 1, 2], "k{key}: {mine:?}");
        let refused = mine.iter().find(|d| !d.allowed).unwrap();
        assert!(
            refused.retry_after > Duration::from_secs(1190)
                && refused.retry_after <= Duration::from_secs(1200),
            "k{key}: {mine:?}"
        );
    }
    // and Redis holds what deciding them one by one leaves: nothing more for any key
    for k in ["k0", "k255", "k128"] {
        let again = l.check(k, 1).await.unwrap();
        assert!(!again.allowed && again.source == Source::Redis, "{k}: {again:?}");
    }
}

/// A refund of an admission whose slot time has already passed should give back nothing:
/// later admissions were built on the bucket as it refilled, not on that slot (the local
/// GCRA's refund gives back only the part of the slot still ahead). The refund script takes
/// the whole weight off the TAT whatever the time: with one token a second, A admitted at
/// 0, B at 1.1 s, A given back at 1.1 s empties the bucket's debt and C is admitted at once
/// beside B (two in a second). Fixing it needs the admission's TAT (or time) in the reply
/// and in `refund`'s arguments: a change of `RedisRateLimiter::refund`'s API, left to the
/// crate's owner (review wave 5c).
#[tokio::test(flavor = "current_thread")]
#[ignore = "known fault: a late Redis refund over-credits (see the doc comment)"]
async fn a_refund_after_its_slot_passed_gives_back_nothing() {
    let server = RedisServer::start();
    let l = limiter(&server, "late-refund", &[Quota::per(1, Duration::from_secs(1))], 0);
    let a = l.check("k", 1).await.unwrap();
    assert!(a.allowed && a.source == Source::Redis, "{a:?}");
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let b = l.check("k", 1).await.unwrap();
    assert!(b.allowed, "{b:?}");
    l.refund("k", 1, a.source).await;
    let c = l.check("k", 1).await.unwrap();
    assert!(!c.allowed, "B and C admitted within a second at one a second: {c:?}");
}
