//! Review wave 4: a poller over a failing service never polls in a busy loop, whatever the
//! backoff says (a zero delay, a zero multiplier, a zero cap, a custom zero).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use palisade_retry::backoff::Backoff;
use palisade_scope::poller::{make_fn, PollerConfig};
use palisade_scope::{Poller, Scope};
use tokio::time::advance;

async fn settle() {
    for _ in 0..8 {
        tokio::task::yield_now().await;
    }
}

fn failing() -> (Arc<AtomicUsize>, impl FnMut() -> std::future::Ready<Result<(), std::io::Error>>) {
    let n = Arc::new(AtomicUsize::new(0));
    let c = n.clone();
    (n, move || {
        c.fetch_add(1, Ordering::SeqCst);
        std::future::ready(Err(std::io::Error::other("down")))
    })
}

/// A backoff that gives zero after a failure (fixed zero, a zero or negative multiplier, a
/// custom zero, a zero first step): the poller waits its interval instead of polling a
/// failing service again at once, over and over (a busy loop that also kept a paused
/// clock from ever advancing).
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_zero_failure_delay_waits_the_interval_instead_of_spinning() {
    let zero = Duration::ZERO;
    let backoffs = [
        Backoff::fixed(zero),
        Backoff::exponential_with(Duration::from_secs(1), 0.0),
        Backoff::exponential_with(Duration::from_secs(1), -3.0),
        Backoff::custom(|_| Duration::ZERO),
        Backoff::linear(zero, zero),
        Backoff::fibonacci(zero),
    ];
    for backoff in backoffs {
        let scope = Scope::new("p");
        let (n, f) = failing();
        let built = Poller::builder()
            .interval(Duration::from_secs(10))
            .immediate(true)
            .backoff(backoff.clone())
            .spawn(&scope, make_fn(f));
        let poller = match built {
            // Refusing such a backoff at build time is fine too.
            Err(e) => {
                assert_eq!(e.field(), "backoff", "{e}");
                continue;
            }
            Ok(p) => p,
        };
        for polls in 1..=3 {
            settle().await;
            assert_eq!(n.load(Ordering::SeqCst), polls, "{backoff:?}: no busy loop");
            let next = poller.snapshot().next_poll_in.expect("scheduled");
            assert!(next > Duration::ZERO, "{backoff:?}: next poll in {next:?}");
            advance(next).await;
        }
        scope.cancel();
    }
}

/// `max_backoff` zero caps every failure delay at zero: refused at build time (builder and
/// serde config alike), naming the field.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_zero_max_backoff_is_a_config_error() {
    let scope = Scope::new("p");
    let (n, f) = failing();
    let err = Poller::builder()
        .interval(Duration::from_secs(10))
        .immediate(true)
        .max_backoff(Duration::ZERO)
        .spawn(&scope, make_fn(f))
        .map(|_| ())
        .unwrap_err();
    assert_eq!(err.field(), "max_backoff", "{err}");
    settle().await;
    assert_eq!(n.load(Ordering::SeqCst), 0);

    let mut config = PollerConfig { max_backoff: Some(Duration::ZERO), ..PollerConfig::default() };
    assert_eq!(config.validate().unwrap_err().field(), "max_backoff");
    config.max_backoff = Some(Duration::from_nanos(1));
    config.validate().unwrap();
}

/// A NaN or infinite multiplier from a settings file is refused, as palisade-retry refuses
/// it (NaN would read as "wait the cap", -inf as zero).
#[test]
fn a_nan_or_infinite_backoff_multiplier_is_a_config_error() {
    for m in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 0.5] {
        let config = PollerConfig {
            backoff: Backoff::exponential_with(Duration::from_secs(1), m),
            ..PollerConfig::default()
        };
        assert_eq!(config.validate().unwrap_err().field(), "backoff", "multiplier {m}");
    }
}

/// A poller in a scope with a concurrency limit takes a turn of the limit for each poll,
/// not for its whole life: with `limit(1)`, the scope's other work still runs between
/// polls (the poller used to hold the only permit forever, so every task spawned after it
/// waited for ever), and a poll waits its turn like any other work.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_poller_holds_a_turn_of_the_scope_limit_only_while_it_polls() {
    let scope = Scope::builder("limited").limit(1).build().unwrap();
    let polls = Arc::new(AtomicUsize::new(0));
    let p = polls.clone();
    let poller = Poller::builder()
        .interval(Duration::from_secs(10))
        .immediate(true)
        .spawn(
            &scope,
            make_fn(move || {
                p.fetch_add(1, Ordering::SeqCst);
                std::future::ready(Ok::<_, std::io::Error>(()))
            }),
        )
        .unwrap();
    settle().await;
    assert_eq!(polls.load(Ordering::SeqCst), 1);
    // Other work of the scope runs while the poller sleeps.
    let task = scope.spawn(async { 42 });
    let done = tokio::time::timeout(Duration::from_secs(1), task).await;
    assert_eq!(done.expect("a task must not wait for a sleeping poller").unwrap(), 42);
    // A long task holding the only turn delays the next poll until it ends.
    let long = scope.spawn(tokio::time::sleep(Duration::from_secs(30)));
    settle().await;
    advance(Duration::from_secs(10)).await;
    settle().await;
    assert_eq!(polls.load(Ordering::SeqCst), 1, "the poll waits for its turn");
    advance(Duration::from_secs(20)).await;
    long.await.unwrap();
    settle().await;
    assert_eq!(polls.load(Ordering::SeqCst), 2, "and runs once the turn is free");
    assert!(poller.snapshot().running);
    scope.cancel();
}
