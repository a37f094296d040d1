#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
#![cfg(loom)]

use std::sync::Arc;
use std::time::Duration;

use palisade_rate_limit::{KeyedRateLimiter, KeyedStore, Quota, RateLimiter};
use tokio::time::Instant;

/// Concurrent checks on one token bucket admit exactly its burst, whatever the interleaving.
#[test]
fn concurrent_checks_admit_exactly_the_burst() {
    loom::model(|| {
        let limiter = Arc::new(RateLimiter::token_bucket(Quota::per_second(1).burst(2)).unwrap());
        let now = Instant::now();
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let l = limiter.clone();
                loom::thread::spawn(move || u32::from(l.try_acquire_at(1, now).is_ok()))
            })
            .collect();
        let main = u32::from(limiter.try_acquire_at(1, now).is_ok());
        let admitted: u32 = threads.into_iter().map(|t| t.join().unwrap()).sum::<u32>() + main;
        assert_eq!(admitted, 2);
    });
}

/// A quota change racing a check: the check sees the old settings or the new ones, never a
/// mix, and the token in use stays in use.
#[test]
fn a_quota_change_is_atomic_for_a_concurrent_check() {
    loom::model(|| {
        let limiter = Arc::new(RateLimiter::token_bucket(Quota::per_second(1).burst(1)).unwrap());
        let now = Instant::now();
        assert!(limiter.try_acquire_at(1, now).is_ok());
        let l = limiter.clone();
        let writer = loom::thread::spawn(move || l.set_quota(Quota::per_second(1).burst(2)).unwrap());
        let second = limiter.try_acquire_at(1, now).is_ok();
        writer.join().unwrap();
        let third = limiter.try_acquire_at(1, now).is_ok();
        // Old quota: nothing more. New quota: exactly one more, before or after the change.
        assert!(!(second && third), "two more admitted with a burst of two and one in use");
        assert!(second || third, "the new burst was lost");
    });
}

/// A refund racing a quota raise. `Quota::new(10, 10_000 s)`, burst 10 (one token every
/// 1,000 s): ten grants at t=0 empty the key. One thread raises the quota to
/// `Quota::new(100, 10_000 s)`, burst 10 (one every 100 s: the ten tokens in use become
/// 1,000 s of debt, the bucket is still empty); the other gives the last grant back. In
/// either order at most one token is free afterwards (refund first: its 1,000 s go back and
/// are rescaled to one new token; raise first: the reservation lapses). Before, a refund
/// that read the old settings, then lost its compare-and-swap to the raise, retried on the
/// rescaled TAT with the old interval: it gave back 1,000 s of the new scale, ten tokens.
#[test]
fn a_refund_racing_a_quota_change_never_over_credits() {
    loom::model(|| {
        let period = Duration::from_secs(10_000);
        let limiter =
            Arc::new(KeyedRateLimiter::builder().quota(Quota::new(10, period).burst(10)).build().unwrap());
        let t0 = Instant::now();
        let mut grants: Vec<_> =
            (0..10).map(|_| limiter.store().acquire(&0u8, 1, t0, None).unwrap()).collect();
        let last = grants.pop().unwrap();
        let l = limiter.clone();
        let raise = loom::thread::spawn(move || l.set_quota(Quota::new(100, period).burst(10)).unwrap());
        limiter.store().refund(last);
        raise.join().unwrap();
        let free = (0..20).filter(|_| limiter.store().acquire(&0u8, 1, t0, None).is_ok()).count();
        assert!(free <= 1, "{free} tokens free after one was given back");
    });
}

/// Two refunds racing an admission on one key. `Quota::new(3, 3_000 s)`, burst 3: three
/// grants at t=0 empty it; one thread gives the first back, another asks for a token,
/// this one gives the second back; then whatever is free is taken. The third grant is
/// still held: in every interleaving at most two tokens pass after the refunds (the
/// `mark` of credits given back may only make a refund give back less, never more).
#[test]
fn refunds_racing_an_admission_never_over_credit() {
    loom::model(|| {
        let period = Duration::from_secs(3_000);
        let limiter =
            Arc::new(KeyedRateLimiter::builder().quota(Quota::new(3, period).burst(3)).build().unwrap());
        let t0 = Instant::now();
        let mut grants: Vec<_> =
            (0..3).map(|_| limiter.store().acquire(&0u8, 1, t0, None).unwrap()).collect();
        let _third = grants.pop().unwrap();
        let second = grants.pop().unwrap();
        let first = grants.pop().unwrap();
        let l = limiter.clone();
        let refund = loom::thread::spawn(move || l.store().refund(first));
        let l = limiter.clone();
        let admit = loom::thread::spawn(move || usize::from(l.store().acquire(&0u8, 1, t0, None).is_ok()));
        limiter.store().refund(second);
        refund.join().unwrap();
        let during = admit.join().unwrap();
        let after = (0..20).filter(|_| limiter.store().acquire(&0u8, 1, t0, None).is_ok()).count();
        assert!(during + after <= 2, "{during} + {after} tokens passed after two were given back");
    });
}

/// The striped counter behind `admitted`: a stripe handed from a thread that ends to the next
/// one (taken with `Acquire`, given back with `Release`) carries its count, and a thread
/// beyond the owned stripes adds on the shared one: no add is lost, whatever the interleaving.
#[test]
fn a_striped_counter_loses_no_add_when_stripes_change_hands() {
    use palisade_core::__private::{Slots, StripedCounter, OWNED_STRIPES};
    loom::model(|| {
        let slots = Arc::new(Slots::new());
        let counter = Arc::new(StripedCounter::new());
        // every owned stripe but one is held by threads that stay: the two threads below
        // contend for the last one, and the loser adds on the shared stripe
        for _ in 0..OWNED_STRIPES - 1 {
            let _ = slots.take();
        }
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let (slots, counter) = (slots.clone(), counter.clone());
                loom::thread::spawn(move || {
                    let slot = slots.take();
                    counter.add_at(slot, 1);
                    counter.add_at(slot, 2);
                    slots.give(slot);
                })
            })
            .collect();
        // a third thread comes after one of them may have ended, and takes its stripe
        let slot = slots.take();
        counter.add_at(slot, 4);
        slots.give(slot);
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(counter.get(), 10);
    });
}
