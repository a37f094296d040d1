//! `StripedCounter` under the ways a thread's stripe can change hands: counts made from
//! other thread-locals' destructors (before and after the stripe is given back, and from a
//! thread whose first count is made during its teardown), threads that come and go while
//! others count, two counters on one thread, and tokio's blocking pool. Every count is
//! exact once the writers are joined.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use palisade_core::__private::{StripedCounter, OWNED_STRIPES};

/// Counts `n` on `counter` when dropped (a thread-local's destructor).
struct CountOnDrop {
    counter: Arc<StripedCounter>,
    n: u64,
}

impl Drop for CountOnDrop {
    fn drop(&mut self) {
        for _ in 0..self.n {
            self.counter.increment();
        }
    }
}

thread_local! {
    static LATE: Cell<Option<CountOnDrop>> = const { Cell::new(None) };
    static EARLY: Cell<Option<CountOnDrop>> = const { Cell::new(None) };
}

/// Threads that count from destructors of thread-locals initialised before their stripe
/// (so destroyed after it: the shared stripe) and after it (destroyed before: their own
/// stripe), or only from a destructor (the stripe taken during teardown), all while other
/// threads count: no count is lost, and no stripe is written by two threads.
#[test]
fn counts_from_thread_local_destructors_are_exact() {
    let c = Arc::new(StripedCounter::new());
    let mut expected = 0;
    for round in 0..20 {
        // joined one by one (`pthread_join`): a scoped thread counts as finished when its
        // closure returns, before its thread-locals' destructors have run
        let mut threads = Vec::new();
        for t in 0..(OWNED_STRIPES + 5) {
            let c = c.clone();
            let mode = (round + t) % 3;
            expected += 1_000 + 500;
            threads.push(std::thread::spawn(move || match mode {
                // destructor registered before the stripe is taken: runs after the
                // stripe was given back
                0 => {
                    EARLY.with(|e| e.set(Some(CountOnDrop { counter: c.clone(), n: 500 })));
                    for _ in 0..1_000 {
                        c.increment();
                    }
                }
                // registered after: runs while the thread still owns its stripe
                1 => {
                    for _ in 0..1_000 {
                        c.increment();
                    }
                    LATE.with(|e| e.set(Some(CountOnDrop { counter: c.clone(), n: 500 })));
                }
                // the thread's first count is made during its teardown
                _ => {
                    LATE.with(|e| e.set(Some(CountOnDrop { counter: c.clone(), n: 1_500 })));
                }
            }));
        }
        for t in threads {
            t.join().unwrap();
        }
    }
    assert_eq!(c.get(), expected);
}

/// Short-lived threads give their stripes back and take them again while long-lived ones
/// keep counting on theirs (a stripe handed to a second writer would lose counts).
#[test]
fn stripes_changing_hands_under_load_lose_nothing() {
    let c = StripedCounter::new();
    let other = StripedCounter::new();
    let stop = AtomicBool::new(false);
    let mut short = 0u64;
    let long: u64 = std::thread::scope(|s| {
        let long: Vec<_> = (0..3)
            .map(|_| {
                s.spawn(|| {
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        c.increment();
                        other.increment();
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        for _ in 0..300 {
            std::thread::scope(|s2| {
                for _ in 0..OWNED_STRIPES {
                    s2.spawn(|| {
                        for _ in 0..200 {
                            c.increment();
                        }
                    });
                }
            });
            short += 200 * OWNED_STRIPES as u64;
        }
        stop.store(true, Ordering::Relaxed);
        long.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(c.get(), short + long);
    assert_eq!(other.get(), long);
}

/// Counts from tokio's blocking pool and worker threads (threads the runtime starts and
/// retires on its own) are exact once the runtime is shut down.
#[test]
fn counts_from_a_runtimes_threads_are_exact() {
    let c = Arc::new(StripedCounter::new());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(12)
        .thread_keep_alive(std::time::Duration::from_millis(1))
        .build()
        .unwrap();
    rt.block_on(async {
        for _ in 0..10 {
            let mut tasks = Vec::new();
            for _ in 0..12 {
                let b = c.clone();
                tasks.push(tokio::task::spawn_blocking(move || {
                    for _ in 0..1_000 {
                        b.increment();
                    }
                }));
                let a = c.clone();
                tasks.push(tokio::spawn(async move {
                    for i in 0..1_000 {
                        a.increment();
                        if i % 100 == 0 {
                            tokio::task::yield_now().await;
                        }
                    }
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
        }
    });
    rt.shutdown_timeout(std::time::Duration::from_secs(10));
    assert_eq!(c.get(), 10 * 12 * 2_000);
}
