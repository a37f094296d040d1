#![allow(clippy::unwrap_used, clippy::expect_used, clippy::float_cmp, missing_docs)]
//! Model checks of the lock-free parts. Run with
//! `RUSTFLAGS="--cfg loom" cargo test -p palisade-retry --release --test loom`.
#![cfg(loom)]

use loom::sync::Arc;
use loom::thread;
use palisade_retry::loom::Window;
use palisade_retry::RetryBudget;

#[test]
fn concurrent_adds_to_one_slot_are_all_counted() {
    loom::model(|| {
        let w = Arc::new(Window::new());
        let a = {
            let w = w.clone();
            thread::spawn(move || w.add_at(3, 5))
        };
        w.add_at(3, 7);
        a.join().unwrap();
        assert_eq!(w.sum_at(3), 12);
    });
}

#[test]
fn a_new_epoch_and_a_stale_add_never_lose_the_new_epoch() {
    loom::model(|| {
        // Epochs 3 and 13 share a slot. Whatever the order, epoch 13 ends up owning it and
        // the stale add either joins it or was wiped by it.
        let w = Arc::new(Window::new());
        w.add_at(3, 100);
        let a = {
            let w = w.clone();
            thread::spawn(move || w.add_at(13, 1))
        };
        w.add_at(3, 10);
        a.join().unwrap();
        let sum = w.sum_at(13);
        assert!(sum == 1 || sum == 11, "{sum}");
        assert_eq!(w.sum_at(23), 0, "out of the window");
    });
}

#[test]
fn the_token_bucket_takes_one_token_per_failure() {
    loom::model(|| {
        let b = RetryBudget::token_bucket(4, 1.0).unwrap();
        let a = {
            let b = b.clone();
            thread::spawn(move || b.record(true, false))
        };
        b.record(true, false);
        a.join().unwrap();
        assert_eq!(b.remaining(), 2.0);
        assert!(!b.try_withdraw());
    });
}

#[test]
fn concurrent_successes_never_overfill_the_bucket() {
    loom::model(|| {
        let b = RetryBudget::token_bucket(2, 1.0).unwrap();
        b.record(true, false); // 1 of 2
        let a = {
            let b = b.clone();
            thread::spawn(move || b.record(false, true))
        };
        b.record(false, true);
        a.join().unwrap();
        assert_eq!(b.remaining(), 2.0);
    });
}
