#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
//! palisade-scope through the facade: an axum router bound to a scope answers 503 once the
//! scope closes, and requests cancelled by the scope answer 503 too.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::get;
use axum::Router;
use palisade::prelude::*;
use palisade::scope::Scope;
use tower::{ServiceBuilder, ServiceExt};

fn app(scope: &Scope) -> Router {
    Router::new()
        .route("/fast", get(|| async { "fast" }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                "slow"
            }),
        )
        .route_layer(ServiceBuilder::new().http_rejections().scope(scope.clone()))
}

fn get_req(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).unwrap()
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn graceful_drain_over_http() {
    let scope = Scope::new("server");
    let app = app(&scope);
    assert_eq!(app.clone().oneshot(get_req("/fast")).await.unwrap().status(), StatusCode::OK);
    let slow = tokio::spawn(app.clone().oneshot(get_req("/slow")));
    tokio::task::yield_now().await;
    assert_eq!(scope.in_flight(), 1);
    let close = tokio::spawn({
        let scope = scope.clone();
        async move { scope.close(Duration::from_secs(5)).await }
    });
    tokio::task::yield_now().await;
    // Closing: new requests are refused with 503.
    assert_eq!(
        app.clone().oneshot(get_req("/fast")).await.unwrap().status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    let report = close.await.unwrap();
    assert_eq!((report.finished, report.cancelled), (0, 1));
    // The slow request was cancelled at the deadline: 503.
    assert_eq!(slow.await.unwrap().unwrap().status(), StatusCode::SERVICE_UNAVAILABLE);
}
