#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
//! axum: a Router with the full stack through `ServiceBuilder` and the palisade HTTP mapping —
//! no `HandleErrorLayer` anywhere.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::get;
use axum::Router;
use palisade::bulkhead::BulkheadLayer;
use palisade::circuit_breaker::{CircuitBreakerLayer, CircuitState};
use palisade::classify::HttpClassifier;
use palisade::prelude::*;
use palisade::rate_limit::{Quota, RateLimitLayer};
use tower::{ServiceBuilder, ServiceExt};

fn client_id(req: &Request<Body>) -> String {
    req.headers().get("x-client").and_then(|v| v.to_str().ok()).unwrap_or("anonymous").to_owned()
}

fn get_as(client: &str) -> Request<Body> {
    Request::get("/orders").header("x-client", client).body(Body::empty()).unwrap()
}

/// The route: healthy until `broken` is set, then 500s.
fn app(broken: Arc<AtomicBool>) -> (Router, palisade::circuit_breaker::CircuitBreakerHandle) {
    let breaker = CircuitBreakerLayer::builder()
        .name("orders")
        .consecutive_failures(3)
        .wait_in_open(Duration::from_secs(30))
        .classifier(HttpClassifier::new())
        .build()
        .unwrap();
    let handle = breaker.handle();
    let rate_limit = RateLimitLayer::builder()
        .name("per-client")
        .quota(Quota::per_second(2).burst(2))
        .keyed(|req: &Request<Body>| Some(client_id(req)))
        .build()
        .unwrap();
    let bulkhead = BulkheadLayer::builder()
        .name("orders")
        .max_concurrent(8)
        .when_full(palisade_core::WhenFull::Refuse)
        .build()
        .unwrap();
    let router = Router::new()
        .route(
            "/orders",
            get(move || {
                let broken = broken.load(Ordering::SeqCst);
                async move {
                    if broken {
                        (StatusCode::INTERNAL_SERVER_ERROR, "db down")
                    } else {
                        (StatusCode::OK, "orders")
                    }
                }
            }),
        )
        .route_layer(
            ServiceBuilder::new().with_http_rejections().layer(rate_limit).layer(bulkhead).layer(breaker),
        );
    (router, handle)
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn rate_limited_client_gets_429_with_retry_after() {
    let (app, _) = app(Arc::default());
    for _ in 0..2 {
        assert_eq!(app.clone().oneshot(get_as("greedy")).await.unwrap().status(), StatusCode::OK);
    }
    let res = app.clone().oneshot(get_as("greedy")).await.unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(res.headers()["retry-after"], "1", "500 ms to the next token, rounded up");
    // Another client is not affected: state is per key, shared by every clone of the router.
    assert_eq!(app.clone().oneshot(get_as("polite")).await.unwrap().status(), StatusCode::OK);
    tokio::time::advance(Duration::from_millis(500)).await;
    assert_eq!(app.clone().oneshot(get_as("greedy")).await.unwrap().status(), StatusCode::OK);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn open_breaker_gives_503_with_retry_after() {
    let broken = Arc::new(AtomicBool::new(true));
    let (app, breaker) = app(broken.clone());
    for (i, client) in ["a", "b", "c"].into_iter().enumerate() {
        let res = app.clone().oneshot(get_as(client)).await.unwrap();
        assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR, "call {i} reaches the handler");
    }
    assert_eq!(breaker.state(), CircuitState::Open);
    let res = app.clone().oneshot(get_as("d")).await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.headers()["retry-after"], "30");

    // After the wait a trial call goes through; the handler is healthy again and it closes.
    broken.store(false, Ordering::SeqCst);
    tokio::time::advance(Duration::from_secs(30)).await;
    let res = app.clone().oneshot(get_as("e")).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn client_errors_do_not_open_the_breaker() {
    let breaker = CircuitBreakerLayer::builder()
        .consecutive_failures(2)
        .classifier(HttpClassifier::new())
        .build()
        .unwrap();
    let handle = breaker.handle();
    let app = Router::new()
        .route("/missing", get(|| async { (StatusCode::NOT_FOUND, "no") }))
        .route_layer(ServiceBuilder::new().with_http_rejections().layer(breaker));
    for _ in 0..5 {
        let req = Request::get("/missing").body(Body::empty()).unwrap();
        assert_eq!(app.clone().oneshot(req).await.unwrap().status(), StatusCode::NOT_FOUND);
    }
    assert_eq!(handle.state(), CircuitState::Closed);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_request_costing_more_than_the_burst_gets_413() {
    let weighted = RateLimitLayer::builder()
        .name("uploads")
        .quota(Quota::per_second(10).burst(10))
        .weight(|req: &Request<Body>| {
            req.headers().get("x-items").and_then(|v| v.to_str().ok()?.parse().ok()).unwrap_or(1)
        })
        .build()
        .unwrap();
    let app = Router::new()
        .route("/batch", get(|| async { "stored" }))
        .route_layer(ServiceBuilder::new().with_http_rejections().layer(weighted));
    let batch = |items: u32| Request::get("/batch").header("x-items", items).body(Body::empty()).unwrap();
    assert_eq!(app.clone().oneshot(batch(10)).await.unwrap().status(), StatusCode::OK);
    let res = app.clone().oneshot(batch(11)).await.unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE, "can never fit: not a 429 to retry");
    assert!(res.headers().get("retry-after").is_none());
    let res = app.clone().oneshot(batch(1)).await.unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS, "the first batch spent the burst");
}
