#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use palisade_circuit_breaker::{CircuitBreakerLayer, CircuitState};
use palisade_core::BoxError;
use support::rejection;
use tower::{Layer, Service, ServiceExt};

/// A request to `host`, failing or not.
#[derive(Clone, Debug)]
struct Req {
    host: &'static str,
    fail: bool,
}

fn hosts_backend(
    hits: Arc<AtomicUsize>,
) -> impl Service<
    Req,
    Response = (),
    Error = &'static str,
    Future = impl std::future::Future<Output = Result<(), &'static str>> + Send,
> + Clone {
    tower::service_fn(move |req: Req| {
        hits.fetch_add(1, Ordering::SeqCst);
        async move {
            if req.fail {
                Err("boom")
            } else {
                Ok(())
            }
        }
    })
}

async fn send<S>(svc: &S, host: &'static str, fail: bool) -> Result<(), BoxError>
where
    S: Service<Req, Response = (), Error = BoxError> + Clone,
{
    svc.clone().oneshot(Req { host, fail }).await
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn an_open_key_does_not_block_another() {
    let hits = Arc::new(AtomicUsize::new(0));
    let layer = CircuitBreakerLayer::builder()
        .name("hosts")
        .consecutive_failures(2)
        .keyed(|r: &Req| Some(r.host))
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = layer.layer(hosts_backend(hits.clone()));

    send(&svc, "a", true).await.unwrap_err();
    send(&svc, "b", true).await.unwrap_err();
    send(&svc, "a", true).await.unwrap_err();
    assert_eq!(handle.get(&"a").unwrap().state(), CircuitState::Open);
    assert_eq!(handle.get(&"b").unwrap().state(), CircuitState::Closed);
    assert_eq!(handle.get(&"b").unwrap().snapshot().consecutive_failures, 1);

    let res = send(&svc, "a", false).await;
    assert_eq!(rejection(&res).unwrap().name(), "hosts");
    // The rejection says which key is open.
    assert_eq!(rejection(&res).unwrap().key(), Some("a"));
    send(&svc, "b", false).await.unwrap();
    send(&svc, "c", false).await.unwrap();
    assert_eq!(hits.load(Ordering::SeqCst), 5);
    assert_eq!(handle.len(), 3);
    let mut open: Vec<_> =
        handle.snapshots().into_iter().filter(|(_, s)| s.state.rejects()).map(|(k, _)| k).collect();
    open.sort_unstable();
    assert_eq!(open, vec!["a"]);

    // Steering one key leaves the others alone.
    handle.get(&"b").unwrap().force_open();
    assert!(rejection(&send(&svc, "b", false).await).is_some());
    handle.get(&"a").unwrap().reset();
    send(&svc, "a", false).await.unwrap();
    send(&svc, "c", false).await.unwrap();
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn keys_are_bounded_and_only_keys_like_fresh_ones_are_forgotten() {
    let layer = CircuitBreakerLayer::builder()
        .consecutive_failures(1)
        .keyed(|r: &Req| Some(r.host))
        .max_keys(3)
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = layer.layer(hosts_backend(Arc::default()));

    send(&svc, "victim", true).await.unwrap_err();
    assert!(rejection(&send(&svc, "victim", false).await).is_some());
    let flood: [&str; 10] = ["k0", "k1", "k2", "k3", "k4", "k5", "k6", "k7", "k8", "k9"];
    for host in flood {
        // Past the map's scan interval, so that each full insert may look for room.
        tokio::time::advance(Duration::from_millis(101)).await;
        send(&svc, host, false).await.unwrap();
        assert!(handle.len() <= 3);
    }
    assert_eq!(handle.capacity(), 3);
    assert!(handle.evictions() >= 7, "{}", handle.evictions());
    // The open key is never forgotten: a flood of keys cannot reset it.
    assert_eq!(handle.get(&"victim").unwrap().state(), CircuitState::Open);
    let res = send(&svc, "victim", false).await;
    assert_eq!(rejection(&res).unwrap().key(), Some("victim"));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_full_key_set_of_keys_that_matter_refuses_a_new_key_and_resets_nothing() {
    let layer = CircuitBreakerLayer::builder()
        .name("hosts")
        .consecutive_failures(2)
        .keyed(|r: &Req| Some(r.host))
        .max_keys(2)
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = layer.layer(hosts_backend(Arc::default()));
    // One failure each: not open, but a fresh breaker would need two failures again.
    send(&svc, "a", true).await.unwrap_err();
    send(&svc, "b", true).await.unwrap_err();
    tokio::time::advance(Duration::from_secs(1)).await;
    let err = send(&svc, "c", false).await.unwrap_err();
    let full = err.downcast_ref::<palisade_core::rejection::KeySetFull>().expect("KeySetFull");
    assert_eq!((full.name(), full.capacity()), ("hosts", 2));
    assert_eq!(handle.overflows(), 1);
    // Nothing was reset: the next failure of `a` opens it.
    send(&svc, "a", true).await.unwrap_err();
    assert_eq!(handle.get(&"a").unwrap().state(), CircuitState::Open);
    // A success makes `b` like a fresh breaker again: its room goes to `c`.
    send(&svc, "b", false).await.unwrap();
    tokio::time::advance(Duration::from_secs(1)).await;
    send(&svc, "c", false).await.unwrap();
    assert!(handle.get(&"b").is_none());
    assert_eq!(handle.get(&"a").unwrap().state(), CircuitState::Open);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn forgettable_means_indistinguishable_from_a_fresh_breaker() {
    // Time window: forgettable once its calls aged out; count window: never after a call;
    // a state set by hand: never.
    let time = CircuitBreakerLayer::builder()
        .failure_rate(0.5)
        .time_window(Duration::from_secs(10))
        .minimum_calls(2)
        .keyed(|r: &Req| Some(r.host))
        .build()
        .unwrap();
    let handle = time.handle();
    let svc = time.layer(hosts_backend(Arc::default()));
    send(&svc, "t", true).await.unwrap_err();
    send(&svc, "m", false).await.unwrap();
    handle.get(&"m").unwrap().metrics_only();
    assert_eq!(handle.sweep(), 0, "a recorded failure and a manual state are kept");
    tokio::time::advance(Duration::from_secs(11)).await;
    assert_eq!(handle.sweep(), 1, "the failure aged out of the window: like a fresh key");
    assert!(handle.get(&"t").is_none());
    assert!(handle.get(&"m").is_some());

    let count =
        CircuitBreakerLayer::builder().count_window(10).keyed(|r: &Req| Some(r.host)).build().unwrap();
    let handle = count.handle();
    let svc = count.layer(hosts_backend(Arc::default()));
    send(&svc, "c", false).await.unwrap();
    tokio::time::advance(Duration::from_secs(3600)).await;
    assert_eq!(handle.sweep(), 0, "a count window remembers its last calls");
    // A call in flight holds its breaker.
    let consecutive =
        CircuitBreakerLayer::builder().consecutive_failures(3).keyed(|r: &Req| Some(r.host)).build().unwrap();
    let handle = consecutive.handle();
    let (mock, mut ctl) = tower_test::mock::pair::<Req, ()>();
    let mut svc = consecutive.layer(mock);
    ctl.allow(1);
    std::future::poll_fn(|cx| svc.poll_ready(cx)).await.unwrap();
    let in_flight = svc.call(Req { host: "f", fail: false });
    assert_eq!(handle.sweep(), 0);
    drop(in_flight);
    assert_eq!(handle.sweep(), 1);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn clones_share_the_keyed_breakers() {
    let layer =
        CircuitBreakerLayer::builder().consecutive_failures(2).keyed(|r: &Req| Some(r.host)).build().unwrap();
    let a = layer.layer(hosts_backend(Arc::default()));
    let b = layer.clone().layer(hosts_backend(Arc::default()));
    send(&a, "x", true).await.unwrap_err();
    send(&b.clone(), "x", true).await.unwrap_err();
    assert!(rejection(&send(&a, "x", false).await).is_some());
    assert!(rejection(&send(&b, "x", false).await).is_some());
    let handle = layer.handle();
    assert_eq!(handle.keys(), vec!["x"]);
    assert!(handle.remove(&"x"));
    send(&a, "x", false).await.unwrap();
    handle.clear();
    assert!(handle.is_empty());
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn keyed_events_reach_layer_listeners_and_name_the_key() {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = seen.clone();
    let layer = CircuitBreakerLayer::builder()
        .consecutive_failures(1)
        .on_event(move |e| {
            if let palisade_circuit_breaker::CircuitBreakerEvent::StateTransition { to, key, .. } = e {
                sink.lock().unwrap().push((key.as_deref().unwrap_or_default().to_owned(), *to));
            }
        })
        .keyed(|r: &Req| Some(r.host))
        .build()
        .unwrap();
    let svc = layer.layer(hosts_backend(Arc::default()));
    send(&svc, "a", true).await.unwrap_err();
    send(&svc, "b", true).await.unwrap_err();
    let seen = seen.lock().unwrap().clone();
    // The key as text (a string without its quotes).
    assert_eq!(seen, vec![("a".to_owned(), CircuitState::Open), ("b".to_owned(), CircuitState::Open)]);
}

/// A key extractor with a name, so that a library can store the layer and the service.
#[derive(Clone, Copy, Debug)]
struct ByHost;

impl palisade_circuit_breaker::KeyExtractor<Req> for ByHost {
    type Key = &'static str;
    fn key(&self, req: &Req) -> Option<&'static str> {
        Some(req.host)
    }
}

type HostBreakers<S> = palisade_circuit_breaker::KeyedCircuitBreaker<
    S,
    palisade_core::classify::DefaultClassifier,
    &'static str,
    ByHost,
>;

struct Client<S> {
    svc: HostBreakers<S>,
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_named_key_extractor_makes_the_keyed_types_nameable() {
    let layer: palisade_circuit_breaker::KeyedCircuitBreakerLayer<_, &'static str, ByHost> =
        CircuitBreakerLayer::builder().consecutive_failures(1).keyed(ByHost).build().unwrap();
    let handle = layer.handle();
    let client = Client { svc: layer.layer(hosts_backend(Arc::default())) };
    send(&client.svc, "a", true).await.unwrap_err();
    assert_eq!(handle.get(&"a").unwrap().state(), CircuitState::Open);
    assert_eq!(rejection(&send(&client.svc, "a", false).await).unwrap().key(), Some("a"));
}

/// The key of a request to a host; none for the empty host.
fn host_key(r: &Req) -> Option<&'static str> {
    (!r.host.is_empty()).then_some(r.host)
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_request_without_a_key_is_refused_with_key_missing_by_default() {
    let hits = Arc::new(AtomicUsize::new(0));
    let layer =
        CircuitBreakerLayer::builder().name("hosts").consecutive_failures(1).keyed(host_key).build().unwrap();
    let handle = layer.handle();
    let svc = layer.layer(hosts_backend(hits.clone()));
    for _ in 0..3 {
        let err = send(&svc, "", false).await.unwrap_err();
        let missing = err.downcast_ref::<palisade_circuit_breaker::KeyMissing>().expect("KeyMissing");
        assert_eq!(missing.name(), "hosts");
    }
    assert_eq!(hits.load(Ordering::SeqCst), 0, "the inner service is not called");
    assert_eq!((handle.len(), handle.unkeyed().is_none()), (0, true));
    send(&svc, "a", false).await.unwrap();
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn pass_through_lets_a_request_without_a_key_reach_the_service_with_no_breaker() {
    let hits = Arc::new(AtomicUsize::new(0));
    let layer = CircuitBreakerLayer::builder()
        .consecutive_failures(1)
        .keyed(host_key)
        .when_unkeyed(palisade_circuit_breaker::Unkeyed::PassThrough)
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = layer.layer(hosts_backend(hits.clone()));
    // Failures without a key open nothing: every one reaches the service.
    for _ in 0..3 {
        assert_eq!(send(&svc, "", true).await.unwrap_err().to_string(), "boom");
    }
    assert_eq!(hits.load(Ordering::SeqCst), 3);
    assert_eq!((handle.len(), handle.unkeyed().is_none()), (0, true));
    // Keyed requests still have their breakers.
    send(&svc, "a", true).await.unwrap_err();
    assert!(rejection(&send(&svc, "a", false).await).is_some());
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn shared_puts_every_request_without_a_key_under_one_breaker() {
    let hits = Arc::new(AtomicUsize::new(0));
    let layer = CircuitBreakerLayer::builder()
        .name("hosts")
        .consecutive_failures(2)
        .keyed(host_key)
        .when_unkeyed(palisade_circuit_breaker::Unkeyed::Shared)
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = layer.layer(hosts_backend(hits.clone()));
    send(&svc, "", true).await.unwrap_err();
    send(&svc, "", true).await.unwrap_err();
    let unkeyed = handle.unkeyed().expect("a shared breaker");
    assert_eq!(unkeyed.state(), CircuitState::Open);
    let res = send(&svc, "", false).await;
    let open = rejection(&res).expect("CircuitOpen");
    assert_eq!((open.name(), open.key()), ("hosts", None));
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    // Keyed requests are not under the shared breaker, and it is not a key.
    send(&svc, "a", false).await.unwrap();
    assert_eq!(handle.len(), 1);
    assert_eq!(handle.get(&"a").unwrap().state(), CircuitState::Closed);
    unkeyed.reset();
    send(&svc, "", false).await.unwrap();
}
