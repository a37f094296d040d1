//! Unit tests of the algorithms with plain numbers.

use std::time::Duration;

use super::*;
use crate::error::Denied;
use crate::quota::Quota;

const MS: u64 = 1_000_000;

fn retry(ms: u64) -> Result<Admit, Denied> {
    Err(Denied::RetryAfter(Duration::from_millis(ms)))
}

#[test]
fn gcra_admits_burst_then_one_per_interval() {
    // 10 per second, burst 3: interval 100ms.
    let cell: Cell = Cell::new(Algorithm::TokenBucket, &Quota::per_second(10).burst(3));
    for _ in 0..3 {
        assert!(cell.acquire(0, 1, None).is_ok());
    }
    assert_eq!(cell.acquire(0, 1, None), retry(100));
    assert_eq!(cell.acquire(99 * MS, 1, None), retry(1));
    assert!(cell.acquire(100 * MS, 1, None).is_ok());
    assert_eq!(cell.acquire(100 * MS, 1, None), retry(100));
    // Idle for long: back to a full burst, not more.
    for _ in 0..3 {
        assert!(cell.acquire(10_000 * MS, 1, None).is_ok());
    }
    assert!(cell.acquire(10_000 * MS, 1, None).is_err());
}

#[test]
fn gcra_weights_and_capacity() {
    let cell: Cell = Cell::new(Algorithm::TokenBucket, &Quota::per_second(10).burst(5));
    assert!(cell.acquire(0, 3, None).is_ok());
    assert_eq!(cell.acquire(0, 3, None), retry(100));
    assert!(cell.acquire(0, 2, None).is_ok());
    assert_eq!(cell.acquire(0, 6, None), Err(Denied::CostExceedsCapacity { cost: 6, capacity: 5 }));
    assert!(cell.acquire(0, 0, None).is_ok(), "free requests always pass");
}

#[test]
fn gcra_reservations_are_spaced_and_refundable() {
    let cell: Cell = Cell::new(Algorithm::TokenBucket, &Quota::per_second(10).burst(1));
    assert_eq!(cell.acquire(0, 1, Some(250 * MS)).map(|a| a.ready_at), Ok(0));
    assert_eq!(cell.acquire(0, 1, Some(250 * MS)).map(|a| a.ready_at), Ok(100 * MS));
    let third = cell.acquire(0, 1, Some(250 * MS)).unwrap();
    assert_eq!(third.ready_at, 200 * MS);
    // The slot at 300ms is beyond a 250ms wait; from 50ms on it is within reach.
    assert_eq!(cell.acquire(0, 1, Some(250 * MS)), retry(50));
    cell.refund(third, 1, 0);
    assert_eq!(cell.acquire(0, 1, Some(250 * MS)).map(|a| a.ready_at), Ok(200 * MS));
}

#[test]
fn a_reservation_given_back_mid_queue_lapses_rather_than_double_booking() {
    let cell: Cell = Cell::new(Algorithm::LeakyBucket { queue: 5 }, &Quota::per_second(10));
    let slots: Vec<_> = (0..3).map(|_| cell.acquire(0, 1, None).unwrap()).collect();
    cell.refund(slots[1], 1, 0); // the slot at 100ms, with 200ms booked after it
    assert_eq!(cell.acquire(0, 1, None).map(|a| a.ready_at), Ok(300 * MS), "no second departure at 200ms");
    // With nobody waiting, tokens are interchangeable and come back.
    let bucket: Cell = Cell::new(Algorithm::TokenBucket, &Quota::per_second(10).burst(2));
    let a = bucket.acquire(0, 1, None).unwrap();
    let _b = bucket.acquire(0, 1, None).unwrap();
    bucket.refund(a, 1, 0);
    assert!(bucket.acquire(0, 1, None).is_ok());
    assert!(bucket.acquire(0, 1, None).is_err());
}

#[test]
fn leaky_bucket_spaces_departures_and_bounds_the_queue() {
    let cell: Cell = Cell::new(Algorithm::LeakyBucket { queue: 2 }, &Quota::per_second(10));
    let slots: Vec<_> = (0..3).map(|_| cell.acquire(0, 1, None).map(|a| a.ready_at)).collect();
    assert_eq!(slots, vec![Ok(0), Ok(100 * MS), Ok(200 * MS)]);
    assert_eq!(cell.status(0).queued, 2);
    // Queue full: the next slot (300ms) is within the queue's reach 100ms from now.
    assert_eq!(cell.acquire(0, 1, None), retry(100));
    assert!(cell.acquire(100 * MS - 1, 1, None).is_err());
    assert_eq!(cell.status(150 * MS).queued, 1);
    assert_eq!(cell.acquire(150 * MS, 1, None).map(|a| a.ready_at), Ok(300 * MS));
}

#[test]
fn sliding_log_is_exact() {
    let cell: Cell = Cell::new(Algorithm::SlidingWindowLog, &Quota::new(3, Duration::from_secs(1)));
    assert!(cell.acquire(0, 1, None).is_ok());
    assert!(cell.acquire(400 * MS, 1, None).is_ok());
    assert!(cell.acquire(800 * MS, 1, None).is_ok());
    assert_eq!(cell.acquire(900 * MS, 1, None), retry(100));
    assert!(cell.acquire(1000 * MS, 1, None).is_ok());
    assert_eq!(cell.acquire(1000 * MS, 2, None), retry(800));
    assert_eq!(cell.status(1000 * MS).used(), 3);
}

#[test]
fn sliding_counter_weights_the_previous_window() {
    let cell: Cell = Cell::new(Algorithm::SlidingWindowCounter, &Quota::new(10, Duration::from_secs(1)));
    for _ in 0..10 {
        assert!(cell.acquire(500 * MS, 1, None).is_ok());
    }
    assert_eq!(cell.acquire(500 * MS, 1, None), retry(600));
    // At 1.5s the previous window (10) weighs half: 5 in the estimate, 5 free.
    for _ in 0..5 {
        assert!(cell.acquire(1500 * MS, 1, None).is_ok());
    }
    // prev 10 * (1 - e) + 5 + 1 <= 10 ⇒ e >= 0.6 ⇒ 100ms later.
    assert_eq!(cell.acquire(1500 * MS, 1, None), retry(100));
    assert!(cell.acquire(1600 * MS, 1, None).is_ok());
}

proptest::proptest! {
    #[test]
    fn leaky_bucket_departures_are_spaced_and_the_queue_bounded(
        queue in 0u32..5,
        steps in proptest::collection::vec(0u64..150, 1..200),
    ) {
        let cell: Cell = Cell::new(Algorithm::LeakyBucket { queue }, &Quota::per_second(10));
        let interval = 100 * MS;
        let mut now = 0;
        let mut last: Option<u64> = None;
        for advance in steps {
            now += advance * MS / 3;
            if let Ok(admit) = cell.acquire(now, 1, None) {
                proptest::prop_assert!(admit.ready_at >= now);
                proptest::prop_assert!(admit.ready_at - now <= u64::from(queue) * interval, "beyond the queue");
                if let Some(prev) = last {
                    proptest::prop_assert!(admit.ready_at >= prev + interval, "departures closer than the interval");
                }
                last = Some(admit.ready_at);
            }
            proptest::prop_assert!(cell.status(now).queued <= queue);
        }
    }

    #[test]
    fn sliding_counter_never_exceeds_the_limit_in_an_aligned_window(
        limit in 1u32..20,
        steps in proptest::collection::vec((0u64..300, 1u32..3), 1..300),
    ) {
        let cell: Cell = Cell::new(Algorithm::SlidingWindowCounter, &Quota::new(limit, Duration::from_secs(1)));
        let mut now = 0;
        let mut per_window = std::collections::HashMap::<u64, u32>::new();
        for (advance, cost) in steps {
            now += advance * MS;
            let cost = cost.min(limit);
            if cell.acquire(now, cost, None).is_ok() {
                let n = per_window.entry(now / (1000 * MS)).or_default();
                *n += cost;
                proptest::prop_assert!(*n <= limit);
            }
        }
    }

    #[test]
    fn gcra_refunds_restore_the_state(
        burst in 1u32..8,
        taken in 0u32..8,
    ) {
        // Taking then refunding leaves the bucket as if nothing happened.
        let cell: Cell = Cell::new(Algorithm::TokenBucket, &Quota::per_second(10).burst(burst));
        let before = cell.status(0);
        let admits: Vec<_> = (0..taken).filter_map(|_| cell.acquire(0, 1, Some(u64::MAX / 4)).ok()).collect();
        for admit in admits.into_iter().rev() {
            cell.refund(admit, 1, 0);
        }
        proptest::prop_assert_eq!(cell.status(0), before);
    }
}

#[test]
fn fixed_window_resets_at_the_boundary() {
    let cell: Cell = Cell::new(Algorithm::FixedWindow, &Quota::new(2, Duration::from_secs(1)));
    assert!(cell.acquire(900 * MS, 1, None).is_ok());
    assert!(cell.acquire(900 * MS, 1, None).is_ok());
    assert_eq!(cell.acquire(900 * MS, 1, None), retry(100));
    assert!(cell.acquire(1000 * MS, 1, None).is_ok());
    assert!(cell.acquire(1000 * MS, 1, None).is_ok());
}

#[test]
fn a_token_bucket_reservation_made_before_a_quota_change_lapses_when_given_back() {
    // The change rescaled every slot, so the reservation's TAT no longer says where it
    // ends: giving it back could over-credit. It lapses (the refund is a no-op).
    let cell: Cell = Cell::new(Algorithm::TokenBucket, &Quota::per_second(10).burst(2));
    let a = cell.acquire(0, 1, None).unwrap();
    let _b = cell.acquire(0, 1, None).unwrap();
    cell.set_quota(&Quota::per_second(20).burst(2), 0);
    let before = cell.status(0);
    cell.refund(a, 1, 0);
    assert_eq!(cell.status(0), before);
    // One made after the change is given back as usual (the last one: an exact undo).
    let c = cell.acquire(50 * MS, 1, None).unwrap();
    let after = cell.status(50 * MS);
    cell.refund(c, 1, 50 * MS);
    assert_eq!(cell.status(50 * MS).remaining, after.remaining + 1);
}
