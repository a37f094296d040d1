#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade_retry::backoff::Backoff;
use palisade_scope::poller::make_fn;
use palisade_scope::{PollOutcome, Poller, Scope};
use tokio::time::{sleep, Instant};

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

async fn settle() {
    for _ in 0..8 {
        tokio::task::yield_now().await;
    }
}

/// A source that fails its first `fail` polls and records when each poll happened.
fn source(
    fail: usize,
    times: Arc<Mutex<Vec<u64>>>,
) -> impl FnMut() -> std::future::Ready<Result<usize, std::io::Error>> {
    let start = Instant::now();
    let n = Arc::new(AtomicUsize::new(0));
    move || {
        times.lock().unwrap().push(start.elapsed().as_secs());
        let k = n.fetch_add(1, Ordering::SeqCst);
        std::future::ready(if k < fail { Err(std::io::Error::other("down")) } else { Ok(k) })
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn backoff_timeline_and_status() {
    let times = Arc::new(Mutex::new(Vec::new()));
    let scope = Scope::new("config");
    let poller = Poller::builder()
        .interval(secs(10))
        .immediate(true)
        .backoff(Backoff::exponential(secs(1)))
        .max_backoff(secs(8))
        .spawn(&scope, make_fn(source(5, times.clone())))
        .unwrap();
    // Failures back off 1, 2, 4, 8, 8 (capped); the success goes back to the interval.
    sleep(Duration::from_millis(16_500)).await;
    let status = poller.snapshot();
    assert_eq!(status.polls, 5);
    assert_eq!(status.consecutive_failures, 5);
    assert!(status.running && !status.finished);
    assert_eq!(status.next_poll_in, Some(Duration::from_millis(6_500)));
    assert!(
        matches!(status.last_outcome, Some(PollOutcome::Failure { ref error, .. }) if &**error == "down")
    );
    assert!(poller.latest().borrow().is_none());
    sleep(secs(20)).await;
    assert_eq!(*times.lock().unwrap(), [0, 1, 3, 7, 15, 23, 33]);
    let status = poller.snapshot();
    assert_eq!(status.consecutive_failures, 0);
    assert_eq!(status.last_outcome, Some(PollOutcome::Success { took: Duration::ZERO }));
    assert_eq!(*poller.latest().borrow(), Some(6));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn stop_start_and_poll_now() {
    let times = Arc::new(Mutex::new(Vec::new()));
    let scope = Scope::new("config");
    let poller =
        Poller::builder().interval(secs(10)).spawn(&scope, make_fn(source(0, times.clone()))).unwrap();
    settle().await;
    // Not immediate: the first poll is one interval away.
    assert_eq!(poller.snapshot().next_poll_in, Some(secs(10)));
    sleep(secs(25)).await; // t = 25
    assert_eq!(*times.lock().unwrap(), [10, 20]);
    poller.stop();
    settle().await;
    let status = poller.snapshot();
    assert!(!status.running);
    assert_eq!(status.next_poll_in, None);
    sleep(secs(100)).await; // t = 125
    assert_eq!(times.lock().unwrap().len(), 2);
    // poll_now works while stopped, and stays stopped.
    poller.poll_now();
    settle().await;
    assert_eq!(*times.lock().unwrap(), [10, 20, 125]);
    assert!(!poller.snapshot().running);
    // start: the schedule starts over, one interval away.
    poller.start();
    settle().await;
    assert!(poller.snapshot().running);
    assert_eq!(poller.snapshot().next_poll_in, Some(secs(10)));
    sleep(secs(11)).await; // t = 136
    assert_eq!(*times.lock().unwrap(), [10, 20, 125, 135]);
    // poll_now while running polls at once; the next one is one interval after it.
    sleep(secs(2)).await; // t = 138
    poller.poll_now();
    settle().await;
    assert_eq!(*times.lock().unwrap(), [10, 20, 125, 135, 138]);
    assert_eq!(poller.snapshot().next_poll_in, Some(secs(10)));
    assert_eq!(poller.snapshot().polls, 5);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_poller_stops_when_its_scope_ends() {
    let times = Arc::new(Mutex::new(Vec::new()));
    let scope = Scope::new("config");
    let poller =
        Poller::builder().interval(secs(1)).spawn(&scope, make_fn(source(0, times.clone()))).unwrap();
    sleep(Duration::from_millis(3500)).await;
    assert_eq!(times.lock().unwrap().len(), 3);
    // A graceful close does not wait for the poller: it stops as soon as the close begins.
    let started = Instant::now();
    let report = scope.close(secs(60)).await;
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert_eq!(report.cancelled, 0);
    let status = poller.snapshot();
    assert!(status.finished && !status.running);
    sleep(secs(10)).await;
    assert_eq!(times.lock().unwrap().len(), 3);
    poller.start();
    assert!(!poller.snapshot().running);
    // A poller spawned in a closed scope never runs.
    let late = Poller::builder().spawn(&scope, make_fn(source(0, times.clone()))).unwrap();
    assert!(late.snapshot().finished);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn callback_timeout_and_panics() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let scope = Scope::new("health");
    let n = Arc::new(AtomicUsize::new(0));
    let poller = Poller::builder()
        .interval(secs(10))
        .immediate(true)
        .timeout(secs(1))
        .backoff(Backoff::fixed(secs(2)))
        .spawn_with(
            &scope,
            make_fn(move || {
                let k = n.fetch_add(1, Ordering::SeqCst);
                async move {
                    match k {
                        0 => sleep(secs(5)).await, // times out
                        1 => panic!("source panicked"),
                        _ => {}
                    }
                    Ok::<_, std::io::Error>(k)
                }
            }),
            move |r: &Result<usize, palisade_core::BoxError>| {
                s.lock().unwrap().push(r.as_ref().map(|v| *v).map_err(ToString::to_string));
                panic!("callback panicked"); // contained
            },
        )
        .unwrap();
    sleep(Duration::from_millis(5500)).await;
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[0], Err("`health` timed out after 1s".to_string()));
    assert!(seen[1].as_ref().unwrap_err().contains("source panicked"));
    assert_eq!(seen[2], Ok(2));
    assert_eq!(poller.snapshot().polls, 3);
    assert!(!poller.snapshot().finished);
}

#[test]
fn bad_config_is_refused() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    rt.block_on(async {
        let scope = Scope::new("x");
        let svc = || make_fn(|| async { Ok::<_, std::io::Error>(()) });
        assert_eq!(
            Poller::builder().interval(Duration::ZERO).spawn(&scope, svc()).unwrap_err().field(),
            "interval"
        );
        assert_eq!(Poller::builder().jitter(1.5).spawn(&scope, svc()).unwrap_err().field(), "jitter");
        assert_eq!(Poller::builder().jitter(f64::NAN).spawn(&scope, svc()).unwrap_err().field(), "jitter");
        assert_eq!(
            Poller::builder().timeout(Duration::ZERO).spawn(&scope, svc()).unwrap_err().field(),
            "timeout"
        );
        // Huge durations saturate instead of panicking.
        let p = Poller::builder().interval(Duration::MAX).jitter(1.0).spawn(&scope, svc()).unwrap();
        tokio::task::yield_now().await;
        assert!(p.snapshot().next_poll_in.unwrap() > secs(86_400 * 365));
    });
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn jitter_spreads_the_interval() {
    let times = Arc::new(Mutex::new(Vec::new()));
    let scope = Scope::new("x");
    let _p = Poller::builder()
        .interval(secs(10))
        .jitter(0.5)
        .seed(7)
        .spawn(&scope, make_fn(source(0, times.clone())))
        .unwrap();
    sleep(secs(300)).await;
    let times = times.lock().unwrap().clone();
    let gaps: Vec<u64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps.iter().all(|g| (5..=15).contains(g)), "{gaps:?}");
    assert!(gaps.iter().any(|g| *g != gaps[0]), "jitter varies the gaps: {gaps:?}");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_breaker_around_the_source_fails_polls_fast_while_open() {
    use palisade_circuit_breaker::CircuitBreakerLayer;
    use tower::Layer;
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let source = make_fn(move || {
        c.fetch_add(1, Ordering::SeqCst);
        std::future::ready(Err::<(), _>(std::io::Error::other("down")))
    });
    let breaker = CircuitBreakerLayer::builder()
        .name("source")
        .consecutive_failures(3)
        .wait_in_open(secs(60))
        .build()
        .unwrap();
    let scope = Scope::new("config");
    let poller = Poller::builder()
        .interval(secs(10))
        .immediate(true)
        .backoff(Backoff::fixed(secs(1)))
        .spawn(&scope, breaker.layer(source))
        .unwrap();
    sleep(Duration::from_millis(10_500)).await;
    // Polls at 0..=10 s: three reach the source, then the open breaker refuses the rest.
    let status = poller.snapshot();
    assert_eq!(status.polls, 11);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert!(
        matches!(status.last_outcome, Some(PollOutcome::Failure { ref error, .. }) if error.contains("open"))
    );
}

#[test]
fn outside_a_runtime_spawning_is_an_error_not_a_panic() {
    let scope = Scope::new("x");
    let err = Poller::builder().spawn(&scope, make_fn(|| async { Ok::<_, std::io::Error>(()) })).unwrap_err();
    assert_eq!(err.field(), "runtime");
    let task = scope.spawn(async { 1 });
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    assert!(rt.block_on(task).is_err());
}
