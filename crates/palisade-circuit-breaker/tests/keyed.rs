#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use palisade_circuit_breaker::{CircuitBreakerLayer, State};
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
        .build_keyed(|r: &Req| r.host)
        .unwrap();
    let handle = layer.handle();
    let svc = layer.layer(hosts_backend(hits.clone()));

    send(&svc, "a", true).await.unwrap_err();
    send(&svc, "b", true).await.unwrap_err();
    send(&svc, "a", true).await.unwrap_err();
    assert_eq!(handle.get(&"a").unwrap().state(), State::Open);
    assert_eq!(handle.get(&"b").unwrap().state(), State::Closed);
    assert_eq!(handle.get(&"b").unwrap().snapshot().consecutive_failures, 1);

    let res = send(&svc, "a", false).await;
    assert_eq!(rejection(&res).unwrap().name(), "hosts");
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
async fn keys_are_bounded_and_evicted_keys_start_fresh() {
    let layer = CircuitBreakerLayer::builder()
        .consecutive_failures(1)
        .max_keys(3)
        .build_keyed(|r: &Req| r.host)
        .unwrap();
    let handle = layer.handle();
    let svc = layer.layer(hosts_backend(Arc::default()));

    send(&svc, "victim", true).await.unwrap_err();
    assert!(rejection(&send(&svc, "victim", false).await).is_some());
    let flood: [&str; 10] = ["k0", "k1", "k2", "k3", "k4", "k5", "k6", "k7", "k8", "k9"];
    for host in flood {
        tokio::time::advance(Duration::from_millis(1)).await;
        send(&svc, host, false).await.unwrap();
        assert!(handle.len() <= 3);
    }
    assert_eq!(handle.capacity(), 3);
    assert_eq!(handle.evictions(), 8);
    assert!(handle.get(&"victim").is_none(), "the least recently used key went first");
    // Its breaker is forgotten: a fresh, closed one is made.
    send(&svc, "victim", false).await.unwrap();
    assert_eq!(handle.get(&"victim").unwrap().state(), State::Closed);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn clones_share_the_keyed_breakers() {
    let layer = CircuitBreakerLayer::builder().consecutive_failures(2).build_keyed(|r: &Req| r.host).unwrap();
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
        .build_keyed(|r: &Req| r.host)
        .unwrap();
    let svc = layer.layer(hosts_backend(Arc::default()));
    send(&svc, "a", true).await.unwrap_err();
    send(&svc, "b", true).await.unwrap_err();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen, vec![("\"a\"".to_owned(), State::Open), ("\"b\"".to_owned(), State::Open)]);
}
