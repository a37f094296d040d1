#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
//! Model-checks the backlog's grant/register handshake: a waiter never misses its grant.
//!
//! `RUSTFLAGS="--cfg loom" cargo test -p palisade-bulkhead --release --test loom`
#![cfg(loom)]

use std::sync::Arc;
use std::task::{Wake, Waker};

use loom::sync::atomic::{AtomicBool, Ordering};
use palisade_bulkhead::__loom::Waiter;

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
