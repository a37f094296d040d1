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
        .route_layer(ServiceBuilder::new().with_http_rejections().with_scope(scope.clone()))
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

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn lifecycle_hooks_around_a_pool() {
    use std::sync::{Arc, Mutex};

    use palisade::pool::{make_fn, Pool};
    use palisade::scope::hooks::HooksLayer;
    use tower::Layer;

    let log = Arc::new(Mutex::new(Vec::<String>::new()));
    let (a, b, c) = (log.clone(), log.clone(), log.clone());
    let make = make_fn(|| async {
        Ok::<_, std::io::Error>(tower::service_fn(|n: u32| async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            Ok::<_, std::io::Error>(n * 2)
        }))
    });
    let pool = Pool::builder().max_size(2).build(make).unwrap();
    let hooked = HooksLayer::new()
        .on_request(move |n: &u32| a.lock().unwrap().push(format!("job {n}")))
        .on_response(move |r: &Result<u32, palisade::BoxError>, took: Duration| {
            b.lock().unwrap().push(format!("done {:?} in {}ms", r.as_ref().ok(), took.as_millis()));
        })
        .on_dispose(move || c.lock().unwrap().push("pool service disposed".into()))
        .layer(pool);
    assert_eq!(hooked.clone().oneshot(21).await.unwrap(), 42);
    drop(hooked);
    assert_eq!(*log.lock().unwrap(), ["job 21", "done Some(42) in 100ms", "pool service disposed"]);
}
