//! Review of the stamped refund (`RedisRateLimiter::refund` with the admission's arrival
//! time): a refund never lets the admissions that were used exceed the quota. Redis' clock
//! is real, so these tests wait real time; they bound admissions by the quota over the time
//! that passed, never how long something took.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::Duration;

use tokio::time::Instant;

use palisade_redis::server::RedisServer;
use palisade_redis::{OnRedisDown, Quota, RedisBackend, RedisRateLimiter};

fn limiter(server: &RedisServer, name: &str, tiers: &[Quota]) -> RedisRateLimiter {
    let backend = RedisBackend::builder(server.url()).timeout(Duration::from_secs(10)).build().unwrap();
    let mut b = RedisRateLimiter::builder(name, backend).on_redis_down(OnRedisDown::FailClosed);
    for q in tiers {
        b = b.tier(*q);
    }
    b.build().unwrap()
}

/// An earlier refund moves a later admission's slot back, so its stamp is stale: ten a
/// second (T = 100 ms), burst 10. X (5) and Z (5) at 0: Z's stamp says its slot ends at
/// 1 s. X given back at once: Z's slot is now [0, 0.5 s]. At ~0.6 s Z's slot has passed
/// and the bucket is full: Y takes the whole burst (10). Z given back then must give
/// nothing (its slot passed), but `min(stamp, tat) − now` gave back ~0.4 s: 4 more tokens
/// passed beside Y's 10, 14 used within a few ms where the quota allows 10.
/// Open: no rule on `(stamp, tat, now)` alone can tell this from the same state reached
/// without X's refund (Y of 6 tokens, where Z's 0.4 s back is right); the fix needs the
/// credits given since the admission (state kept per key), see the review report.
#[ignore = "open: a stale stamp over-credits; needs per-key refund state (review wave 5d)"]
#[tokio::test(flavor = "current_thread")]
async fn a_refund_whose_stamp_an_earlier_refund_made_stale_gives_nothing_once_its_slot_passed() {
    let server = RedisServer::start();
    let l = limiter(&server, "stale", &[Quota::per(10, Duration::from_secs(1)).burst(10)]);
    let x = l.check("k", 5).await.unwrap();
    let z = l.check("k", 5).await.unwrap();
    assert!(x.allowed && z.allowed, "{x:?} {z:?}");
    l.refund("k", 5, &x).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let start = Instant::now();
    let y = l.check("k", 10).await.unwrap();
    assert!(y.allowed, "the bucket is full once Z's slot passed: {y:?}");
    l.refund("k", 5, &z).await;
    let mut used = 10u64;
    for _ in 0..10 {
        if l.check("k", 1).await.unwrap().allowed {
            used += 1;
        }
    }
    // the quota over the time since Y: the burst, plus one token per 100 ms that passed
    let allowed = 10 + (start.elapsed().as_millis() / 100) as u64;
    assert!(used <= allowed, "{used} tokens used where the quota allows {allowed}");
}

/// A per-key quota's admission refunded by a limiter whose configured tier refills slower:
/// the refund gave back `min(weight × T_configured, tat − now)`, more than the admission
/// took. Configured one an hour; `check_with` ten a second, burst 2 (T = 100 ms): A and B
/// at 0 (the bucket owes 200 ms), B given back. B took 100 ms; 200 ms came back (the key
/// was deleted), and two more passed beside A: three within a few ms, burst 2.
#[tokio::test(flavor = "current_thread")]
async fn a_per_key_admission_refunded_gives_back_its_own_slot_not_the_configured_one() {
    let server = RedisServer::start();
    let l = limiter(&server, "perkey", &[Quota::per(1, Duration::from_secs(3600))]);
    let fast = [Quota::per(10, Duration::from_secs(1)).burst(2)];
    let start = Instant::now();
    let a = l.check_with("k", 1, &fast).await.unwrap();
    let b = l.check_with("k", 1, &fast).await.unwrap();
    assert!(a.allowed && b.allowed, "{a:?} {b:?}");
    l.refund("k", 1, &b).await;
    let mut used = 1u64;
    for _ in 0..4 {
        if l.check_with("k", 1, &fast).await.unwrap().allowed {
            used += 1;
        }
    }
    let allowed = 2 + (start.elapsed().as_millis() / 100) as u64;
    assert!(used <= allowed, "{used} tokens used where the quota allows {allowed}");
}

/// The same with several tiers of `check_with` refunded by a one-tier limiter: every tier
/// of the admission comes back (by its own interval), so the refunded admission is undone
/// whole and the next one passes; nothing more.
#[tokio::test(flavor = "current_thread")]
async fn a_per_key_admission_of_more_tiers_than_configured_comes_back_in_every_tier() {
    let server = RedisServer::start();
    let l = limiter(&server, "perkey-tiers", &[Quota::per(1, Duration::from_secs(3600))]);
    let per_key = [
        Quota::per(1, Duration::from_secs(3600)).burst(2),
        Quota::per(1, Duration::from_secs(7200)).burst(1),
    ];
    let a = l.check_with("k", 1, &per_key).await.unwrap();
    assert!(a.allowed, "{a:?}");
    assert!(!l.check_with("k", 1, &per_key).await.unwrap().allowed);
    l.refund("k", 1, &a).await;
    assert!(l.check_with("k", 1, &per_key).await.unwrap().allowed, "the second tier kept A's token");
    assert!(!l.check_with("k", 1, &per_key).await.unwrap().allowed);
}

/// A batching `Source::Redis` decision took a block (10 tokens, 9 kept locally) for a
/// weight-1 check; a refund naming more than the decision's weight gave the whole block
/// back in Redis while its 9 tokens were still spent from the local block (19 used, burst
/// 10). A refund gives back at most the decision's own weight.
#[tokio::test(flavor = "current_thread")]
async fn a_refund_of_a_block_decision_gives_back_at_most_its_own_weight() {
    let server = RedisServer::start();
    let backend = RedisBackend::builder(server.url()).timeout(Duration::from_secs(10)).build().unwrap();
    let l = RedisRateLimiter::builder("block", backend)
        .on_redis_down(OnRedisDown::FailClosed)
        .tier(Quota::per(1, Duration::from_secs(3600)).burst(10))
        .batch(10, Duration::from_secs(3600))
        .build()
        .unwrap();
    let d = l.check("k", 1).await.unwrap();
    assert!(d.allowed && d.source == palisade_redis::Source::Redis, "{d:?}");
    l.refund("k", 10, &d).await;
    let mut used = 0;
    for _ in 0..30 {
        if l.check("k", 1).await.unwrap().allowed {
            used += 1;
        }
    }
    assert_eq!(used, 10, "the block's 9 and the refunded token");
}

/// Refunds of decisions that admitted nothing in this limiter's Redis keys are no-ops and
/// never fail: a refusal, a down-policy decision, another limiter's admission (other keys:
/// its stamp points elsewhere), and the same admission given to a limiter of other tiers.
#[tokio::test(flavor = "current_thread")]
async fn refunds_of_foreign_or_refused_decisions_give_nothing() {
    let server = RedisServer::start();
    let q = Quota::per(1, Duration::from_secs(3600)).burst(1);
    let l = limiter(&server, "own", &[q]);
    let other = limiter(&server, "other", &[q, q]);
    let a = l.check("k", 1).await.unwrap();
    assert!(a.allowed, "{a:?}");
    let refused = l.check("k", 1).await.unwrap();
    assert!(!refused.allowed);
    l.refund("k", 1, &refused).await;
    assert!(!l.check("k", 1).await.unwrap().allowed);
    // a down-policy decision: a limiter whose Redis is gone decides fail-closed
    let dead =
        RedisBackend::builder("redis://127.0.0.1:1").timeout(Duration::from_millis(200)).build().unwrap();
    let dead =
        RedisRateLimiter::builder("own", dead).on_redis_down(OnRedisDown::FailOpen).tier(q).build().unwrap();
    let open = dead.check("k", 1).await.unwrap();
    assert!(open.allowed && open.source == palisade_redis::Source::FailOpen, "{open:?}");
    l.refund("k", 1, &open).await;
    assert!(!l.check("k", 1).await.unwrap().allowed);
    // another limiter's admission refunded here: its keys are elsewhere, its stamp names
    // an arrival time of its own bucket
    let b = other.check("k", 1).await.unwrap();
    assert!(b.allowed, "{b:?}");
    other.refund("k", 1, &b).await;
    assert!(other.check("k", 1).await.unwrap().allowed, "its own refund gave it back");
}

/// The dispatcher (a second call from 8 waiting decisions) with replies of 1 to 8 tiers in
/// exact and batching runs side by side: 64 callers on 8 keys, every one answered once,
/// refunds of half the Redis admissions on the way, and each key admits exactly its burst
/// (the tightest tier) plus what came back, never more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dispatcher_answers_every_mixed_tier_decision_and_refunds_stay_exact() {
    let server = RedisServer::start();
    let backend = RedisBackend::builder(server.url()).timeout(Duration::from_secs(10)).build().unwrap();
    let hour = Duration::from_secs(3600);
    let l = RedisRateLimiter::builder("mixed", backend)
        .on_redis_down(OnRedisDown::FailClosed)
        .tier(Quota::per(1, hour).burst(20))
        .coalesce(128)
        .build()
        .unwrap();
    let l = std::sync::Arc::new(l);
    let mut tasks = Vec::new();
    for c in 0..64u64 {
        let l = l.clone();
        tasks.push(tokio::spawn(async move {
            let key = format!("k{}", c % 8);
            let tiers = 1 + (c % 8) as usize;
            // the tightest tier (burst 10) is the last; the others are wider
            let quotas: Vec<Quota> =
                (0..tiers).map(|i| Quota::per(1, hour).burst(if i + 1 == tiers { 10 } else { 40 })).collect();
            let mut admitted = 0u64;
            let mut refunded = 0u64;
            for round in 0..6 {
                let d = l.check_with(&key, 1, &quotas).await.unwrap();
                // a decision lost by the dispatcher ends in the down policy after the timeout
                assert_eq!(d.source, palisade_redis::Source::Redis, "{d:?}");
                if d.allowed {
                    if round % 2 == 0 {
                        l.refund(&key, 1, &d).await;
                        refunded += 1;
                    } else {
                        admitted += 1;
                    }
                }
            }
            (key, tiers, admitted, refunded)
        }));
    }
    let mut used = std::collections::HashMap::new();
    for t in tasks {
        let (key, _tiers, admitted, _refunded) = t.await.unwrap();
        *used.entry(key).or_insert(0u64) += admitted;
    }
    for (key, used) in used {
        // every key's callers use tier lists of one shape (c % 8 fixes both)
        assert!(used <= 10, "{key}: {used} used where the tightest tier allows 10");
    }
}
