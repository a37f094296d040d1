#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
//! Model-checks the two lock-free protocols: the backlog's grant/register handshake (a
//! waiter never misses its grant), and the bulkhead pool's shrink debt against releases on
//! other threads (a shrink never leaves free permits beside its debt, so nothing is admitted
//! past the new maximum).
//!
//! `RUSTFLAGS="--cfg loom" cargo test -p palisade-bulkhead --release --test loom`
#![cfg(loom)]

use std::sync::Arc;
use std::task::{Wake, Waker};

use loom::sync::atomic::{AtomicBool, Ordering};
use palisade_bulkhead::__loom::{Pool, Waiter};

struct Flag(AtomicBool);

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[test]
fn a_grant_is_never_missed() {
    loom::model(|| {
        let waiter = Arc::new(Waiter::default());
        let flag = Arc::new(Flag(AtomicBool::new(false)));
        let granter = {
            let waiter = waiter.clone();
            loom::thread::spawn(move || waiter.grant())
        };
        // The caller's poll: register, then look.
        let waker = Waker::from(flag.clone());
        waiter.register(&waker);
        let saw_grant = waiter.is_granted();
        granter.join().unwrap();
        assert!(saw_grant || flag.0.load(Ordering::SeqCst), "grant lost: not seen and not woken");
    });
}

#[test]
fn re_registering_keeps_the_latest_waker() {
    loom::model(|| {
        let waiter = Arc::new(Waiter::default());
        let first = Arc::new(Flag(AtomicBool::new(false)));
        let second = Arc::new(Flag(AtomicBool::new(false)));
        let granter = {
            let waiter = waiter.clone();
            loom::thread::spawn(move || waiter.grant())
        };
        waiter.register(&Waker::from(first.clone()));
        waiter.register(&Waker::from(second.clone()));
        let saw_grant = waiter.is_granted();
        granter.join().unwrap();
        // Woken through the waker registered last, or saw the grant.
        assert!(saw_grant || second.0.load(Ordering::SeqCst) || first.0.load(Ordering::SeqCst));
    });
}

// === the pool's shrink debt ===

const PREEMPTIONS: usize = 5;

/// Once every release and resize is over: permits free + held = limit + debt, and free
/// permits never stand beside a debt (they would admit callers past the limit).
fn assert_settled(pool: &Pool, held: usize, limit: usize) {
    let (free, debt) = (pool.available(), pool.debt());
    assert_eq!(free + held, limit + debt, "permits lost or made: free {free}, debt {debt}");
    assert!(free == 0 || debt == 0, "{free} free permit(s) beside a debt of {debt}");
}

/// Admits callers until refused; returns how many were admitted.
fn admit_all(pool: &Pool) -> usize {
    let mut admitted = 0;
    while pool.try_acquire() {
        admitted += 1;
    }
    admitted
}

#[test]
fn a_release_racing_a_shrink_admits_nobody_past_the_new_maximum() {
    loom::model(|| {
        // max 2, both permits held.
        let pool = Arc::new(Pool::new(2));
        assert!(pool.try_acquire() && pool.try_acquire());
        let release = {
            let pool = pool.clone();
            loom::thread::spawn(move || pool.release_one())
        };
        // set_max_concurrent(1) while one call ends.
        pool.shrink(1);
        release.join().unwrap();
        // One call in flight, maximum 1: nobody more.
        assert_settled(&pool, 1, 1);
        assert_eq!(admit_all(&pool), 0, "admitted past the new maximum of 1");
        // The last call ends: exactly one is admitted again.
        pool.release_one();
        assert_eq!(admit_all(&pool), 1);
    });
}

#[test]
fn two_releases_racing_a_shrink_to_zero_leave_nothing_free() {
    // Three threads: bounded preemptions keep the search to seconds (every interleaving
    // with at most this many forced switches; the two-thread models above are exhaustive).
    let mut model = loom::model::Builder::new();
    model.preemption_bound = Some(PREEMPTIONS);
    model.check(|| {
        let pool = Arc::new(Pool::new(2));
        assert!(pool.try_acquire() && pool.try_acquire());
        let releases: Vec<_> = (0..2)
            .map(|_| {
                let pool = pool.clone();
                loom::thread::spawn(move || pool.release_one())
            })
            .collect();
        pool.shrink(2);
        for r in releases {
            r.join().unwrap();
        }
        assert_settled(&pool, 0, 0);
        assert_eq!(admit_all(&pool), 0, "admitted past the new maximum of 0");
    });
}

#[test]
fn a_release_racing_a_shrink_then_a_grow_keeps_the_count() {
    loom::model(|| {
        let pool = Arc::new(Pool::new(2));
        assert!(pool.try_acquire() && pool.try_acquire());
        let release = {
            let pool = pool.clone();
            loom::thread::spawn(move || pool.release_one())
        };
        // 2 -> 1 -> 2 while one call ends: one call in flight, one permit free.
        pool.shrink(1);
        pool.grow(1);
        release.join().unwrap();
        assert_settled(&pool, 1, 2);
        assert_eq!(admit_all(&pool), 1);
    });
}
