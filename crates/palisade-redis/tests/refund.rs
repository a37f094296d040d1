//! `RedisRateLimiter::refund` gives back at most what the admission still owes: its slot
//! (which ends at the arrival time the script stamped on it) is repaid by time, and later
//! admissions were built on it. Redis' clock is real, so these tests wait real time; they
//! assert counts of admissions, never how long something took.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::many_single_char_names, missing_docs)]

use std::time::Duration;

use palisade_redis::server::RedisServer;
use palisade_redis::{OnRedisDown, Quota, RedisBackend, RedisRateLimiter, Source};

const HOUR: Duration = Duration::from_secs(3600);

fn limiter(server: &RedisServer, name: &str, tiers: &[Quota]) -> RedisRateLimiter {
    let backend = RedisBackend::builder(server.url()).timeout(Duration::from_secs(10)).build().unwrap();
    let mut b = RedisRateLimiter::builder(name, backend).on_redis_down(OnRedisDown::FailClosed);
    for q in tiers {
        b = b.tier(*q);
    }
    b.build().unwrap()
}

/// An admission given back at once is undone whole, whatever came after it: one a second,
/// burst 2 over an hour-long refill, A and B admitted, A (not the last) given back: one more.
#[tokio::test(flavor = "current_thread")]
async fn an_early_refund_gives_the_whole_weight_back_in_any_order() {
    let server = RedisServer::start();
    let l = limiter(&server, "early", &[Quota::per(2, HOUR)]);
    let a = l.check("k", 1).await.unwrap();
    let b = l.check("k", 1).await.unwrap();
    assert!(a.allowed && b.allowed && a.source == Source::Redis);
    assert!(!l.check("k", 1).await.unwrap().allowed);
    // the first admission back: its slot is 30 minutes long and barely begun
    l.refund("k", 1, &a).await;
    assert!(l.check("k", 1).await.unwrap().allowed);
    assert!(!l.check("k", 1).await.unwrap().allowed);
    // B back too, then the bucket is full again: two more
    l.refund("k", 1, &b).await;
    let c = l.check("k", 1).await.unwrap();
    assert!(c.allowed, "{c:?}");
    assert!(!l.check("k", 1).await.unwrap().allowed);
}

/// A refund after the admission's slot passed gives nothing back, with one tier or several:
/// ten a second (a token every 100 ms), burst 1; A at 0, B once A's slot has passed, A given
/// back: C is refused (before, C passed beside B: two within 100 ms). In a second tier
/// (100 an hour) A's slot has barely begun: there A's token comes back (the hour-long tier
/// does not refuse D below, after the first tier refilled).
#[tokio::test(flavor = "current_thread")]
async fn a_late_refund_gives_back_nothing_of_a_passed_slot() {
    let server = RedisServer::start();
    let one = limiter(&server, "late-one", &[Quota::per(10, Duration::from_secs(1)).burst(1)]);
    let two = limiter(
        &server,
        "late-two",
        &[Quota::per(10, Duration::from_secs(1)).burst(1), Quota::per(2, HOUR).burst(2)],
    );
    for l in [&one, &two] {
        let a = l.check("k", 1).await.unwrap();
        assert!(a.allowed, "{a:?}");
        tokio::time::sleep(Duration::from_millis(150)).await;
        let b = l.check("k", 1).await.unwrap();
        assert!(b.allowed, "{b:?}");
        l.refund("k", 1, &a).await;
        let c = l.check("k", 1).await.unwrap();
        assert!(!c.allowed, "C passed beside B: {c:?}");
    }
    // the hour-long tier got A's token back: after the fast tier refills, D passes (2 an
    // hour, A refunded, B spent: one left)
    tokio::time::sleep(Duration::from_millis(150)).await;
    let d = two.check("k", 1).await.unwrap();
    assert!(d.allowed, "{d:?}");
    assert!(!two.check("k", 1).await.unwrap().allowed);
}

/// A refund in the middle of its slot gives back the part still ahead: one a second,
/// burst 2; A and B admitted at 0 (the bucket owes 2 s), A given back at t ≈ 0.5 s (its
/// slot, the first second, is half repaid: 0.5 s back), then C passes and D is refused
/// for 1 s whatever t was (a whole-weight refund said 1 − t: D came ~0.5 s early).
#[tokio::test(flavor = "current_thread")]
async fn a_refund_in_the_middle_of_its_slot_gives_back_the_part_ahead() {
    let server = RedisServer::start();
    let l = limiter(&server, "middle", &[Quota::per(1, Duration::from_secs(1)).burst(2)]);
    let a = l.check("k", 1).await.unwrap();
    let b = l.check("k", 1).await.unwrap();
    assert!(a.allowed && b.allowed);
    tokio::time::sleep(Duration::from_millis(500)).await;
    l.refund("k", 1, &a).await;
    let c = l.check("k", 1).await.unwrap();
    assert!(c.allowed, "{c:?}");
    let d = l.check("k", 1).await.unwrap();
    // the slot's part still ahead is 1 s − t; whatever t (< 1 s), D waits a whole interval
    assert!(!d.allowed && d.retry_after > Duration::from_millis(900), "{d:?}");
}
