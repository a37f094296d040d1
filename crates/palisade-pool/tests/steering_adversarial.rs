#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
//! Hostile steering cases: an operator target of zero with requests waiting.

use std::time::Duration;

use palisade_pool::{make_fn, Pool};
use tower::ServiceExt;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn make() -> impl tower::Service<
    (),
    Response = impl tower::Service<u32, Response = u32, Error = std::io::Error, Future = impl Send> + Send,
    Error = std::io::Error,
    Future = impl Send,
> + Send
       + 'static {
    make_fn(|| async {
        Ok::<_, std::io::Error>(tower::service_fn(|n: u32| async move {
            tokio::time::sleep(ms(10)).await;
            Ok::<_, std::io::Error>(n)
        }))
    })
}

/// `scale_to(0)` on a pool with `min_size(0)`, then a request: it is served (the pool does
/// not sit at zero members with requests waiting), or answered with an error — never a
/// request waiting forever.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn scale_to_zero_then_a_request_is_answered() {
    let pool = Pool::builder().min_size(0).max_size(4).build(make()).unwrap();
    let handle = pool.handle();
    assert_eq!(pool.clone().oneshot(1).await.unwrap(), 1);
    handle.scale_to(0);
    tokio::time::sleep(ms(100)).await;
    assert_eq!(handle.snapshot().members.len(), 0);
    let answer = tokio::time::timeout(Duration::from_secs(3600), pool.clone().oneshot(2)).await;
    assert_eq!(answer.expect("a request must not wait forever at scale 0").unwrap(), 2);
}

/// Operator resizing racing the autoscaler: many scale commands in one turn while a batch
/// runs; the pool stays within bounds and serves everything.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn scale_commands_racing_the_autoscaler_stay_in_bounds() {
    let pool = Pool::builder().min_size(1).max_size(3).build(make()).unwrap();
    let handle = pool.handle();
    let batch = tokio::spawn({
        let pool = pool.clone();
        async move { pool.submit_batch(0..50).await }
    });
    for k in 0..20usize {
        match k % 4 {
            0 => handle.scale_to(k),
            1 => handle.scale_up(k),
            2 => handle.scale_down(k),
            _ => handle.scale_to(usize::MAX),
        }
        tokio::task::yield_now().await;
        let n = handle.snapshot().members.len();
        assert!(n <= 3, "{n} members");
    }
    let results = batch.await.unwrap();
    assert!(results.iter().all(Result::is_ok));
    let n = handle.snapshot().members.len();
    assert!((1..=3).contains(&n), "{n}");
}
