//! Review wave 4c: the token bucket's late refunds (a `mark` of credits given back since an
//! admission) under quota changes and on racing threads. The loom models of refunds racing
//! a quota change and an admission are in `tests/loom.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[cfg(not(loom))]
use std::sync::{Arc, Barrier, Mutex};
use std::time::Duration;

use palisade_rate_limit::{KeyedRateLimiter, KeyedStore, Quota};
use tokio::time::Instant;

/// A reservation given back after the quota was set to the value it already had (a
/// configuration reload applying unchanged settings, a keyed `set_quota` of the same
/// quota): nothing was rescaled, so the reservation returns its token as without the call.
/// `per_second(2)`, burst 2: two grants at t=0, the quota "changed" to `per_second(2)`
/// burst 2, the first grant given back: one token is free again. Before, any `set_quota`
/// moved the settings generation, so every outstanding reservation lapsed and its token
/// was lost until time repaid it (a reload every second lost every token held across it).
#[cfg(not(loom))]
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_quota_set_to_its_current_value_keeps_reservations() {
    let quota = Quota::per_second(2).burst(2);
    let limiter = KeyedRateLimiter::builder().quota(quota).build().unwrap();
    let store = limiter.store();
    let now = Instant::now();
    let a = store.acquire(&"k", 1, now, None).unwrap();
    let _b = store.acquire(&"k", 1, now, None).unwrap();
    assert_eq!(store.status(&"k", now).unwrap().remaining, 0);
    limiter.set_quota(quota).unwrap();
    assert_eq!(store.status(&"k", now).unwrap().remaining, 0, "the same quota changes nothing");
    store.refund(a);
    assert_eq!(store.status(&"k", now).unwrap().remaining, 1, "the reservation came back");
    assert!(limiter.check_key(&"k").is_ok());
    assert!(limiter.check_key(&"k").is_err(), "still no more than the burst");

    // A real change still makes reservations made before it lapse (their slots were
    // rescaled: giving one back could over-credit).
    let c = store.acquire(&"j", 1, now, None).unwrap();
    let _d = store.acquire(&"j", 1, now, None).unwrap();
    limiter.set_quota(Quota::per_second(4).burst(2)).unwrap();
    let before = store.status(&"j", now).unwrap();
    store.refund(c);
    assert_eq!(store.status(&"j", now).unwrap(), before);
}

/// The count of credits given back must not wrap while a reservation is outstanding. With
/// an interval of exactly 2⁴³ ns (10 per ~24.4 h, burst 10), 32 intervals credited are
/// 2⁴⁸ ns, where the old 48-bit count wrapped to 0. At t=0: A (cost 2), G (cost 2), H
/// (cost 1). A is given back (G's slot moves to [0, 2T)); then 15 rounds of two grants
/// taken and given back credit 30 T more (32 T in all). At 1.9 T, G is given back: only
/// 0.1 T of its slot is unpaid, so at most 9 tokens are free (H holds the tenth). Before, the
/// count had wrapped: G's refund saw no credit since its admission, measured its debt from
/// its original end (4 T) and gave back its whole 2 T: 10 tokens free, one more than the
/// burst allows with H held.
#[cfg(not(loom))]
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_count_of_credits_given_back_never_wraps() {
    let interval = Duration::from_nanos(1 << 43);
    let limiter = KeyedRateLimiter::builder().quota(Quota::new(10, interval * 10).burst(10)).build().unwrap();
    let store = limiter.store();
    let now = Instant::now();
    let grant_a = store.acquire(&"k", 2, now, None).unwrap();
    let grant_g = store.acquire(&"k", 2, now, None).unwrap();
    let _grant_h = store.acquire(&"k", 1, now, None).unwrap();
    store.refund(grant_a);
    for _ in 0..15 {
        let grant_x = store.acquire(&"k", 1, now, None).unwrap();
        let grant_y = store.acquire(&"k", 1, now, None).unwrap();
        store.refund(grant_x);
        store.refund(grant_y);
    }
    tokio::time::advance(interval * 19 / 10).await;
    store.refund(grant_g);
    let free = (0..20).filter(|_| limiter.check_key(&"k").is_ok()).count();
    // 8 here: the count of credits is a bound on how far G's slot moved (the rounds
    // after it did not move it), so the refund gives back less, never more.
    assert!(free <= 9, "{free} free: H holds one of the burst of 10");
}

/// A tiny deterministic generator (xorshift), one per thread.
#[cfg(not(loom))]
struct Rng(u64);

#[cfg(not(loom))]
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Refunds racing admissions on four threads over real time, reject mode and wait mode:
/// each thread takes grants for one key and gives each back at once, a few steps later, or
/// never (used). A slow rate (8 per 1,000 s, burst 8) makes the refill over the run
/// negligible, so whatever the interleaving of the refunds' and admissions'
/// compare-and-swaps, the used grants' slots (their `ready_at`) never hold more than the
/// burst plus what the rate refilled between them. Only counts are asserted.
#[cfg(not(loom))]
#[test]
fn racing_refunds_never_over_admit() {
    const BURST: u32 = 8;
    let period = Duration::from_secs(1_000);
    let interval = period / BURST;
    for max_wait in [None, Some(Duration::from_secs(100_000))] {
        for round in 0..20u64 {
            let limiter = Arc::new(
                KeyedRateLimiter::builder().quota(Quota::new(BURST, period).burst(BURST)).build().unwrap(),
            );
            let used = Arc::new(Mutex::new(Vec::new()));
            let barrier = Arc::new(Barrier::new(4));
            let threads: Vec<_> = (0..4u64)
                .map(|t| {
                    let (limiter, used, barrier) = (limiter.clone(), used.clone(), barrier.clone());
                    std::thread::spawn(move || {
                        let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (round << 8 | t) | 1);
                        let mut held = Vec::new();
                        barrier.wait();
                        for _ in 0..2_000 {
                            let store = limiter.store();
                            let cost = 1 + (rng.next() % 3) as u32;
                            if let Ok(grant) = store.acquire(&0u8, cost, Instant::now(), max_wait) {
                                match rng.next() % 16 {
                                    0 => used.lock().unwrap().push((grant.ready_at(), grant.cost())),
                                    1..=9 => store.refund(grant),
                                    _ => held.push(grant),
                                }
                            }
                            if held.len() > 3 {
                                let i = (rng.next() % held.len() as u64) as usize;
                                store.refund(held.swap_remove(i));
                            }
                        }
                        for grant in held {
                            limiter.store().refund(grant);
                        }
                    })
                })
                .collect();
            for t in threads {
                t.join().unwrap();
            }
            let mut used = used.lock().unwrap().clone();
            used.sort();
            for i in 0..used.len() {
                let mut n = 0u64;
                for j in i..used.len() {
                    n += u64::from(used[j].1);
                    let span = used[j].0.saturating_duration_since(used[i].0);
                    let refill = (span.as_nanos() / interval.as_nanos()) as u64 + 1;
                    assert!(
                        n <= u64::from(BURST) + refill,
                        "max_wait {max_wait:?}, round {round}: {n} used within {span:?} (burst {BURST})"
                    );
                }
            }
        }
    }
}
