//! The GCRA script reads every key of a call with one `MGET`: a key decided twice in one
//! call must see what the call wrote for it, and a key that holds something else must not
//! spoil the other decisions coalesced with it (a `GET` on it failed the whole call).
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

fn limiter(server: &RedisServer, name: &str, tiers: &[Quota]) -> RedisRateLimiter {
    let backend = RedisBackend::builder(server.url()).timeout(Duration::from_secs(10)).build().unwrap();
    let mut b = RedisRateLimiter::builder(name, backend).on_redis_down(OnRedisDown::FailClosed);
    for q in tiers {
        b = b.tier(*q);
    }
    b.build().unwrap()
}

/// `n` checks of `keys` (in turn) issued while Redis is paused, decided together after.
async fn together(
    server: &RedisServer,
    l: &RedisRateLimiter,
    keys: &[&str],
    n: usize,
) -> Vec<palisade_redis::Decision> {
    assert_eq!(l.check("warm", 1).await.unwrap().source, Source::Redis);
    pause(server, 300).await;
    let checks = (0..n).map(|i| {
        let l = l.clone();
        let key = keys[i % keys.len()].to_owned();
        async move { l.check(&key, 1).await.unwrap() }
    });
    join_all(checks).await
}

#[tokio::test(flavor = "current_thread")]
async fn a_key_decided_many_times_in_one_call_sees_its_own_writes() {
    let server = RedisServer::start();
    // 3 an hour: nothing refills during the test
    let l = limiter(&server, "dup", &[Quota::per(3, HOUR)]);
    let d = together(&server, &l, &["k"], 10).await;
    assert!(d.iter().all(|d| d.source == Source::Redis), "{d:?}");
    let admitted: Vec<u64> = d.iter().filter(|d| d.allowed).map(|d| d.remaining).collect();
    assert_eq!(admitted, [2, 1, 0], "{d:?}");
    // every refusal names the same wait: the next token, 20 minutes after the first
    for r in d.iter().filter(|d| !d.allowed) {
        assert!(
            r.retry_after > Duration::from_secs(1190) && r.retry_after <= Duration::from_secs(1200),
            "{r:?}"
        );
    }
}

#[tokio::test(flavor = "current_thread")]
async fn keys_decided_many_times_across_tiers_in_one_call_see_their_own_writes() {
    let server = RedisServer::start();
    let l = limiter(&server, "dup-tiers", &[Quota::per(5, HOUR), Quota::per(2, HOUR)]);
    // a and b alternate: each is decided 6 times in the call; the tighter tier admits 2 each
    let d = together(&server, &l, &["a", "b"], 12).await;
    assert!(d.iter().all(|d| d.source == Source::Redis), "{d:?}");
    assert_eq!(d.iter().filter(|d| d.allowed).count(), 4, "{d:?}");
    // a later call sees the same state: nothing more for a or b
    assert!(!l.check("a", 1).await.unwrap().allowed);
    assert!(!l.check("b", 1).await.unwrap().allowed);
}

#[tokio::test(flavor = "current_thread")]
async fn a_key_holding_another_type_spoils_no_other_decision() {
    let server = RedisServer::start();
    let l = limiter(&server, "poisoned", &[Quota::per(100, HOUR)]);
    // find the key the limiter uses for "bad", then make it a hash
    assert!(l.check("bad", 1).await.unwrap().allowed);
    let mut c = raw(&server).await;
    let keys: Vec<String> = redis::cmd("KEYS").arg("*{bad}*").query_async(&mut c).await.unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
    let _: () = redis::cmd("DEL").arg(&keys[0]).query_async(&mut c).await.unwrap();
    let _: () = redis::cmd("HSET").arg(&keys[0]).arg("f").arg("v").query_async(&mut c).await.unwrap();
    let names = ["k1", "k2", "bad", "k3", "k4", "k5", "k6", "k7"];
    let d = together(&server, &l, &names, 24).await;
    // every decision made by Redis (fail-closed would refuse): the hash reads as a fresh bucket
    assert!(d.iter().all(|d| d.source == Source::Redis && d.allowed), "{d:?}");
    // and "bad" is a bucket again
    let ty: String = redis::cmd("TYPE").arg(&keys[0]).query_async(&mut c).await.unwrap();
    assert_eq!(ty, "string");
}
