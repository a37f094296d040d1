#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
//! Review wave 4: user code of a provider [`Select`] that panics — the discovery stream, the
//! filter, the ranking, the classifier — fails one `poll_ready` or one request with a typed
//! [`Panicked`], never every later call, and leaves no call counted in flight.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use futures_util::StreamExt;
use palisade_core::classify::{Classification, Classify};
use palisade_core::panic::Panicked;
use palisade_core::BoxError;
use palisade_pool::provider::{Meta, Provider, ProviderSnapshot, Ranking, Select};
use tower::discover::Change;
use tower::{Service, ServiceExt};

type Svc = tower::util::BoxCloneSyncService<u32, u32, BoxError>;

fn echo() -> Provider<Svc, Meta> {
    Provider::new(Svc::new(tower::service_fn(|x: u32| async move { Ok::<_, BoxError>(x) })), Meta::new(1.0))
}

/// One provider `a`, then a discovery stream that panics, then nothing more.
fn panicking_discovery(
) -> impl futures_util::Stream<Item = Result<Change<&'static str, Provider<Svc, Meta>>, Infallible>> + Send {
    futures_util::stream::iter([Ok(Change::Insert("a", echo()))])
        .chain(futures_util::stream::once(async { panic!("discovery panicked") }))
        .chain(futures_util::stream::pending())
}

fn one_provider(
) -> impl futures_util::Stream<Item = Result<Change<&'static str, Provider<Svc, Meta>>, Infallible>> + Send {
    futures_util::stream::iter([Ok(Change::Insert("a", echo()))]).chain(futures_util::stream::pending())
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_discovery_stream_that_panics_fails_one_poll_ready_not_every_later_one() {
    let mut select = Select::builder().build(panicking_discovery()).unwrap();
    let err = futures_util::future::poll_fn(|cx| select.poll_ready(cx)).await.unwrap_err();
    assert!(err.is::<Panicked>(), "a typed Panicked, not {err}");
    // The panicked stream is not polled again ("`async fn` resumed after panicking" at
    // every later poll_ready): discovery is over, the providers found so far serve.
    for x in 0..3 {
        assert_eq!(select.ready().await.unwrap().call(x).await.unwrap(), x);
    }
    assert_eq!(select.providers().len(), 1);
    assert_eq!(select.providers()[0].1.in_flight, 0);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_panicking_filter_or_ranking_fails_that_request_only() {
    let armed = Arc::new(AtomicBool::new(true));
    let a = armed.clone();
    let mut by_filter = Select::builder()
        .filter(move |_: &Meta| {
            assert!(!a.swap(false, Ordering::SeqCst), "filter panicked");
            true
        })
        .build(one_provider())
        .unwrap();
    let err = by_filter.ready().await.unwrap().call(1).await.unwrap_err();
    assert!(err.is::<Panicked>(), "a typed Panicked, not {err}");
    assert_eq!(by_filter.ready().await.unwrap().call(2).await.unwrap(), 2);

    let armed = Arc::new(AtomicBool::new(true));
    let a = armed.clone();
    let mut by_ranking = Select::builder()
        .ranking(Ranking::custom(move |_: &Meta, _: &ProviderSnapshot| {
            assert!(!a.swap(false, Ordering::SeqCst), "ranking panicked");
            0.0
        }))
        .build(one_provider())
        .unwrap();
    let err = by_ranking.ready().await.unwrap().call(1).await.unwrap_err();
    assert!(err.is::<Panicked>(), "a typed Panicked, not {err}");
    assert_eq!(by_ranking.ready().await.unwrap().call(2).await.unwrap(), 2);
}

#[derive(Clone)]
struct PanicOnce(Arc<AtomicBool>);

impl Classify<u32, BoxError> for PanicOnce {
    fn classify(&self, _: &Result<u32, BoxError>) -> Classification {
        assert!(!self.0.swap(false, Ordering::SeqCst), "classifier panicked");
        Classification::success()
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_panicking_classifier_fails_that_request_and_counts_nothing_in_flight() {
    let mut select = Select::builder()
        .classifier(PanicOnce(Arc::new(AtomicBool::new(true))))
        .build(one_provider())
        .unwrap();
    let err = select.ready().await.unwrap().call(1).await.unwrap_err();
    assert!(err.is::<Panicked>(), "a typed Panicked, not {err}");
    let (_, stats) = select.providers().pop().unwrap();
    assert_eq!(stats.in_flight, 0);
    assert!(stats.healthy);
    assert_eq!(select.ready().await.unwrap().call(2).await.unwrap(), 2);
}

/// A pool whose `max_size` is large (growth is lazy, driven by load) and an operator
/// target of `usize::MAX` (an admin endpoint passing a bad number): the target is kept
/// whatever the load, so it is bounded as `min_size` is (4,096 members), not grown towards
/// `max_size` until memory runs out.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_huge_operator_target_is_bounded_like_min_size() {
    let make = palisade_pool::make_fn(|| async {
        Ok::<_, std::io::Error>(tower::service_fn(|n: u32| async move { Ok::<_, std::io::Error>(n) }))
    });
    let pool = palisade_pool::Pool::builder().min_size(1).max_size(1 << 40).build(make).unwrap();
    let handle = pool.handle();
    for scale in [0, 1, 2] {
        match scale {
            0 => handle.scale_to(usize::MAX),
            1 => handle.scale_up(usize::MAX),
            _ => handle.scale_to(1 << 30),
        }
        let mut last = 0;
        let mut stable = 0;
        for _ in 0..200_000 {
            tokio::task::yield_now().await;
            let n = handle.snapshot().members.len();
            assert!(n <= 4096, "{n} members: an operator target grows without bound");
            stable = if n == last { stable + 1 } else { 0 };
            last = n;
            if stable > 64 {
                break;
            }
        }
        assert_eq!(last, 4096, "the bounded target is reached and kept");
    }
    assert_eq!(pool.oneshot(5).await.unwrap(), 5);
}
