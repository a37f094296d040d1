#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
//! hyper: a hyper-util client wrapped in retry and a per-host keyed breaker, against local
//! hyper servers that fail on a script.

mod support;

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use palisade::circuit_breaker::{CircuitBreakerLayer, CircuitState};
use palisade::classify::HttpClassifier;
use palisade::rejection::CircuitOpen;
use palisade::retry::{Backoff, Jitter, RetryLayer};
use support::http::{client, serve, StatusScript};
use tower::{ServiceBuilder, ServiceExt};

fn authority(req: &Request<Full<Bytes>>) -> Option<String> {
    req.uri().authority().map(ToString::to_string)
}

#[tokio::test]
async fn retry_and_per_host_breaker_around_a_hyper_client() {
    // Host A fails three times then recovers; host B is always fine.
    let script_a = StatusScript::new([503, 503, 503, 503, 503, 503]);
    let script_b = StatusScript::new([]);
    let (addr_a, _a) = serve(script_a.clone()).await;
    let (addr_b, _b) = serve(script_b.clone()).await;

    let breaker = CircuitBreakerLayer::builder()
        .name("upstream")
        .consecutive_failures(4)
        .wait_in_open(Duration::from_secs(60))
        .classifier(HttpClassifier::new())
        .keyed(authority)
        .max_keys(16)
        .build()
        .unwrap();
    let hosts = breaker.handle();
    let retry = RetryLayer::builder()
        .name("upstream")
        .max_attempts(2)
        .backoff(Backoff::fixed(Duration::from_millis(1)))
        .jitter(Jitter::None)
        .classifier(HttpClassifier::new())
        .build()
        .unwrap();
    let retries = retry.handle();
    // No `.map_err(BoxError::from)` over the client: palisade's layers take any error that is
    // `Into<BoxError>`, and a `BoxError::from` function item in the stack's type makes every
    // future awaiting the stack fail the `Send` check (rust-lang/rust#64552) — so it could not
    // be called from `tokio::spawn` or an axum handler. See `palisade::guide`.
    let http = ServiceBuilder::new().layer(retry).layer(breaker).service(client());

    let get = |addr: std::net::SocketAddr| {
        Request::get(format!("http://{addr}/")).body(Full::new(Bytes::new())).unwrap()
    };

    // Two calls to A, from spawned tasks as a server would make them: each is tried twice
    // and answers the last 503 as is.
    for _ in 0..2 {
        let http = http.clone();
        let req = get(addr_a);
        let res = tokio::spawn(async move { http.oneshot(req).await }).await.unwrap().unwrap();
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
    assert_eq!(script_a.calls(), 4);
    assert_eq!(retries.snapshot().retries, 2);
    assert_eq!(hosts.get(&addr_a.to_string()).unwrap().state(), CircuitState::Open);

    // A is now refused without reaching the server (and the open circuit is not retried
    // straight away: its hint is 60 s); B is untouched.
    let err = http.clone().oneshot(get(addr_a)).await.unwrap_err();
    assert!(palisade::rejection::find::<CircuitOpen>(err.as_ref()).is_some(), "{err}");
    assert_eq!(script_a.calls(), 4);
    let res = http.clone().oneshot(get(addr_b)).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "payload");
    assert_eq!(script_b.calls(), 1);
    assert_eq!(hosts.get(&addr_b.to_string()).unwrap().state(), CircuitState::Closed);
}

#[tokio::test]
async fn retry_recovers_from_a_scripted_blip() {
    let script = StatusScript::new([502, 503]);
    let (addr, _server) = serve(script.clone()).await;
    let retry = RetryLayer::builder()
        .max_attempts(3)
        .backoff(Backoff::fixed(Duration::from_millis(1)))
        .jitter(Jitter::None)
        .classifier(HttpClassifier::new())
        .build()
        .unwrap();
    let http = ServiceBuilder::new().layer(retry).service(client());
    let req = Request::get(format!("http://{addr}/")).body(Full::new(Bytes::new())).unwrap();
    let res = tokio::spawn(async move { http.oneshot(req).await }).await.unwrap();
    assert_eq!(res.unwrap().status(), StatusCode::OK);
    assert_eq!(script.calls(), 3);
}
