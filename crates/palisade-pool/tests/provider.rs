#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
//! Issue 17.6: provider discovery and selection.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade_core::BoxError;
use palisade_pool::error::NoProvider;
use palisade_pool::provider::{Meta, Provider, ProviderSnapshot, Ranking, Select};
use tokio::sync::mpsc;
use tokio::time::sleep;
use tower::discover::Change;
use tower::{Service, ServiceExt};

type Svc = tower::util::BoxCloneSyncService<u32, String, BoxError>;
type Log = Arc<Mutex<Vec<&'static str>>>;

/// A provider named `name` that answers after `ms` and fails while `*down` is set.
fn provider(
    name: &'static str,
    ms: u64,
    cost: f64,
    down: Arc<Mutex<bool>>,
    log: &Log,
) -> Provider<Svc, Meta> {
    let log = log.clone();
    let svc = tower::service_fn(move |q: u32| {
        log.lock().unwrap().push(name);
        let down = *down.lock().unwrap();
        async move {
            sleep(Duration::from_millis(ms)).await;
            if down {
                Err::<String, BoxError>("down".into())
            } else {
                Ok(format!("{name}:{q}"))
            }
        }
    });
    Provider::new(Svc::new(svc), Meta::new(cost).capability(if cost > 5.0 { "premium" } else { "basic" }))
}

fn discovery() -> (
    mpsc::UnboundedSender<Change<&'static str, Provider<Svc, Meta>>>,
    impl futures_util::Stream<Item = Result<Change<&'static str, Provider<Svc, Meta>>, Infallible>>,
) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx).map(|c| c.map(Ok)));
    (tx, stream)
}

fn up() -> Arc<Mutex<bool>> {
    Arc::new(Mutex::new(false))
}

async fn ask<S: Service<u32, Response = String, Error = BoxError>>(
    svc: &mut S,
    q: u32,
) -> Result<String, BoxError> {
    svc.ready().await?.call(q).await
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn built_in_rankings_pick_their_provider() {
    let log = Log::default();
    for (ranking, expected) in [
        (Ranking::Cheapest, "cheap-slow"),
        (Ranking::Fastest, "fast-dear"),
        // No failures yet: a tie on failure rate and latency goes to discovery order.
        (Ranking::Best, "cheap-slow"),
        (
            Ranking::custom(|m: &Meta, _: &ProviderSnapshot| if m.has("premium") { 0.0 } else { 1.0 }),
            "fast-dear",
        ),
    ] {
        let (tx, stream) = discovery();
        tx.send(Change::Insert("cheap-slow", provider("cheap-slow", 300, 1.0, up(), &log))).unwrap();
        tx.send(Change::Insert("fast-dear", provider("fast-dear", 10, 9.0, up(), &log))).unwrap();
        let mut select = Select::builder().ranking(ranking.clone()).build(stream).unwrap();
        if matches!(ranking, Ranking::Fastest) {
            // Before any call both have the default latency: the tie goes to discovery
            // order, and that call teaches the ranking that cheap-slow takes 300 ms.
            assert_eq!(ask(&mut select, 0).await.unwrap(), "cheap-slow:0");
        }
        let answer = ask(&mut select, 1).await.unwrap();
        assert_eq!(answer, format!("{expected}:1"), "{ranking:?}");
        log.lock().unwrap().clear();
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn falls_back_down_the_ranking_and_skips_unhealthy_providers() {
    let log = Log::default();
    let (tx, stream) = discovery();
    let a_down = up();
    tx.send(Change::Insert("a", provider("a", 10, 1.0, a_down.clone(), &log))).unwrap();
    tx.send(Change::Insert("b", provider("b", 10, 2.0, up(), &log))).unwrap();
    tx.send(Change::Insert("c", provider("c", 10, 3.0, up(), &log))).unwrap();
    let mut select = Select::builder()
        .ranking(Ranking::Cheapest)
        .unhealthy_after(2)
        .down_for(Duration::from_secs(30))
        .build(stream)
        .unwrap();
    assert_eq!(ask(&mut select, 1).await.unwrap(), "a:1");
    *a_down.lock().unwrap() = true;
    // a fails: fall back to b.
    assert_eq!(ask(&mut select, 2).await.unwrap(), "b:2");
    assert_eq!(ask(&mut select, 3).await.unwrap(), "b:3");
    assert_eq!(*log.lock().unwrap(), ["a", "a", "b", "a", "b"]);
    // Two failures in a row: a is down, skipped.
    log.lock().unwrap().clear();
    assert_eq!(ask(&mut select, 4).await.unwrap(), "b:4");
    assert_eq!(*log.lock().unwrap(), ["b"]);
    let stats = select.providers();
    assert_eq!(stats[0].0, "a");
    assert!(!stats[0].1.healthy);
    assert_eq!((stats[0].1.calls, stats[0].1.failures, stats[0].1.failures_in_a_row), (3, 2, 2));
    // After down_for it is tried first again (and it recovered).
    *a_down.lock().unwrap() = false;
    sleep(Duration::from_secs(30)).await;
    log.lock().unwrap().clear();
    assert_eq!(ask(&mut select, 5).await.unwrap(), "a:5");
    assert!(select.providers()[0].1.healthy);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn every_provider_failing_answers_the_last_error_and_none_answers_no_provider() {
    let log = Log::default();
    let (tx, stream) = discovery();
    let down = Arc::new(Mutex::new(true));
    tx.send(Change::Insert("a", provider("a", 10, 1.0, down.clone(), &log))).unwrap();
    tx.send(Change::Insert("b", provider("b", 10, 2.0, down.clone(), &log))).unwrap();
    let mut select = Select::builder().ranking(Ranking::Cheapest).max_attempts(1).build(stream).unwrap();
    assert_eq!(ask(&mut select, 1).await.unwrap_err().to_string(), "down");
    assert_eq!(*log.lock().unwrap(), ["a"], "max_attempts 1");
    let (tx2, stream2) = discovery();
    tx2.send(Change::Insert("a", provider("a", 10, 1.0, up(), &log))).unwrap();
    let mut filtered = Select::builder().filter(|m: &Meta| m.has("gpu")).build(stream2).unwrap();
    assert!(ask(&mut filtered, 1).await.unwrap_err().is::<NoProvider>());
    assert_eq!(
        Select::<(), (), (), Meta>::builder().max_attempts(0).build(discovery().1).unwrap_err().field(),
        "max_attempts"
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn providers_come_and_go_while_requests_run() {
    let log = Log::default();
    let (tx, stream) = discovery();
    tx.send(Change::Insert("old", provider("old", 1000, 1.0, up(), &log))).unwrap();
    let mut select = Select::builder().ranking(Ranking::Cheapest).build(stream).unwrap();
    select.ready().await.unwrap();
    let running = tokio::spawn(select.call(1));
    tokio::task::yield_now().await;
    // Removed while its call runs: the call finishes; new requests go elsewhere.
    tx.send(Change::Remove("old")).unwrap();
    tx.send(Change::Insert("new", provider("new", 10, 2.0, up(), &log))).unwrap();
    assert_eq!(ask(&mut select, 2).await.unwrap(), "new:2");
    assert_eq!(running.await.unwrap().unwrap(), "old:1");
    assert_eq!(select.providers().iter().map(|p| p.0).collect::<Vec<_>>(), ["new"]);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn balanced_spreads_calls_by_load() {
    let log = Log::default();
    let (tx, stream) = discovery();
    tx.send(Change::Insert("x", provider("x", 100, 1.0, up(), &log))).unwrap();
    tx.send(Change::Insert("y", provider("y", 100, 1.0, up(), &log))).unwrap();
    let mut select = Select::builder().ranking(Ranking::Balanced).build(stream).unwrap();
    select.ready().await.unwrap();
    let first = tokio::spawn(select.call(1));
    tokio::task::yield_now().await;
    // x has a call in flight: its load doubled, so y takes the next one.
    let second = tokio::spawn(select.call(2));
    tokio::task::yield_now().await;
    assert_eq!(select.providers().iter().map(|p| p.1.in_flight).collect::<Vec<_>>(), [1, 1]);
    assert_eq!(first.await.unwrap().unwrap(), "x:1");
    assert_eq!(second.await.unwrap().unwrap(), "y:2");
    assert_eq!(select.providers().iter().map(|p| p.1.in_flight).collect::<Vec<_>>(), [0, 0]);
}

/// A provider removed by discovery while the call tries a better-ranked one is not used as
/// that call's fallback; with every candidate gone the call answers the last error.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_provider_removed_mid_call_is_not_a_fallback() {
    let log = Log::default();
    let (tx, stream) = discovery();
    let down = Arc::new(Mutex::new(true));
    tx.send(Change::Insert("first", provider("first", 1000, 1.0, down, &log))).unwrap();
    tx.send(Change::Insert("second", provider("second", 10, 2.0, up(), &log))).unwrap();
    let mut select = Select::builder().ranking(Ranking::Cheapest).build(stream).unwrap();
    select.ready().await.unwrap();
    let running = tokio::spawn(select.call(1));
    tokio::task::yield_now().await;
    tx.send(Change::Remove("second")).unwrap();
    select.ready().await.unwrap(); // discovery sees the removal
    let err = running.await.unwrap().unwrap_err();
    assert_eq!(err.to_string(), "down");
    assert_eq!(*log.lock().unwrap(), ["first"]);
    // No provider left that is up; an empty set answers NoProvider.
    tx.send(Change::Remove("first")).unwrap();
    assert!(ask(&mut select, 2).await.unwrap_err().is::<NoProvider>());
}

/// `SelectConfig::into_builder` (CONTRIBUTING §5): the settings move into the builder whole,
/// and `build` validates them.
#[tokio::test]
async fn a_select_config_turns_into_its_builder() {
    let mut config = palisade_pool::provider::SelectConfig::default();
    config.unhealthy_after = 0;
    let (_tx, stream) = discovery();
    let err = config.clone().into_builder::<Meta>().build(stream).unwrap_err();
    assert_eq!(err.field(), "unhealthy_after");
    config.unhealthy_after = 1;
    let (_tx, stream) = discovery();
    assert!(config.into_builder::<Meta>().build(stream).is_ok());
}
