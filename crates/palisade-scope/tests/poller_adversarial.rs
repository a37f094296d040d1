//! Hostile poller cases: extreme intervals and backoffs, a panicking custom backoff,
//! stop/start races.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use palisade_retry::backoff::Backoff;
use palisade_scope::poller::make_fn;
use palisade_scope::{Poller, Scope};
use tokio::time::advance;

async fn settle() {
    for _ in 0..8 {
        tokio::task::yield_now().await;
    }
}

fn counting(
    fail: bool,
) -> (Arc<AtomicUsize>, impl FnMut() -> std::future::Ready<Result<(), std::io::Error>>) {
    let n = Arc::new(AtomicUsize::new(0));
    let c = n.clone();
    (n, move || {
        c.fetch_add(1, Ordering::SeqCst);
        std::future::ready(if fail { Err(std::io::Error::other("down")) } else { Ok(()) })
    })
}

/// Interval and max backoff `Duration::MAX` with an exponential backoff failing 100 times
/// in a row: no overflow, each wait saturates (~30 years), the poller keeps polling.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn max_interval_and_overflowing_backoff_saturate() {
    let scope = Scope::new("p");
    let (n, f) = counting(true);
    let poller = Poller::builder()
        .interval(Duration::MAX)
        .max_backoff(Duration::MAX)
        .jitter(1.0)
        .immediate(true)
        .backoff(Backoff::exponential(Duration::from_secs(1)))
        .spawn(&scope, make_fn(f))
        .unwrap();
    settle().await;
    for i in 1..=100 {
        assert_eq!(n.load(Ordering::SeqCst), i);
        let next = poller.snapshot().next_poll_in.expect("scheduled");
        advance(next).await;
        settle().await;
    }
    assert_eq!(poller.snapshot().consecutive_failures, 101);
    assert!(poller.snapshot().running);
}

/// A custom backoff that panics does not end the poller: it waits `max_backoff` instead.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_panicking_custom_backoff_does_not_end_the_poller() {
    let scope = Scope::new("p");
    let (n, f) = counting(true);
    let poller = Poller::builder()
        .interval(Duration::from_secs(10))
        .max_backoff(Duration::from_secs(5))
        .immediate(true)
        .backoff(Backoff::custom(|_| panic!("backoff")))
        .spawn(&scope, make_fn(f))
        .unwrap();
    settle().await;
    assert_eq!(n.load(Ordering::SeqCst), 1);
    let status = poller.snapshot();
    assert!(status.running && !status.finished, "{status:?}");
    assert_eq!(status.next_poll_in, Some(Duration::from_secs(5)));
    advance(Duration::from_secs(5)).await;
    settle().await;
    assert_eq!(n.load(Ordering::SeqCst), 2);
}

/// stop/start/stop before the poller's task runs ends stopped; start/stop/start ends
/// running; poll_now while stopped polls once and stays stopped.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn stop_start_races_end_in_the_last_state() {
    let scope = Scope::new("p");
    let (n, f) = counting(false);
    let poller = Poller::builder().interval(Duration::from_secs(10)).spawn(&scope, make_fn(f)).unwrap();
    settle().await;
    poller.stop();
    poller.start();
    poller.stop();
    settle().await;
    advance(Duration::from_secs(100)).await;
    settle().await;
    assert_eq!(n.load(Ordering::SeqCst), 0);
    assert!(!poller.snapshot().running);
    assert_eq!(poller.snapshot().next_poll_in, None);
    poller.poll_now();
    settle().await;
    assert_eq!(n.load(Ordering::SeqCst), 1);
    assert!(!poller.snapshot().running);
    poller.start();
    poller.stop();
    poller.start();
    settle().await;
    assert!(poller.snapshot().running);
    advance(Duration::from_secs(10)).await;
    settle().await;
    assert_eq!(n.load(Ordering::SeqCst), 2);
    // After the scope ends, start does not revive it.
    scope.cancel();
    settle().await;
    poller.start();
    assert!(poller.snapshot().finished && !poller.snapshot().running);
}
