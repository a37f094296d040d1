#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
#![cfg(feature = "http")]
//! Issue 15.9: the crate-level axum example, pasted literally into a `tokio::spawn`ed task
//! and into an axum route handler, compiles (the futures are `Send`) and serves there.
//!
//! With the earlier version of the example (a `service_fn` closure returning
//! `Ok::<_, BoxError>(..)`), neither compiled: rustc's "implementation of `From` is not
//! general enough" (rust-lang/rust#64552), because the closure's type appears in a future
//! checked for `Send`.

use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use tower::ServiceExt;

/// The crate docs' example, literally (with its hidden lines), as a macro so that each test
/// pastes it into its own async context.
macro_rules! example {
    () => {{
        use bytes::Bytes;
        use http_body_util::Full;
        use palisade_core::classify::HttpClassifier;
        use palisade_retry::{Backoff, RetryLayer};
        use palisade_timeout::TimeoutLayer;
        use std::time::Duration;
        use tower::{service_fn, ServiceBuilder, ServiceExt};

        let calls = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        // Stands in for `hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http()`.
        let http_client = service_fn(move |_req: http::Request<Full<Bytes>>| {
            let first = calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed) == 0;
            async move {
                let res = if first {
                    http::Response::builder().status(503).header("retry-after", "1")
                } else {
                    http::Response::builder().status(200)
                };
                res.body(Full::new(Bytes::from("ok"))) // Result<_, http::Error>
            }
        });

        let retry = RetryLayer::builder()
            .name("inventory")
            .classifier(HttpClassifier::new())
            .max_attempts(3)
            .backoff(Backoff::exponential(Duration::from_millis(50)))
            .deadline(Duration::from_secs(5))
            .build()
            .unwrap();
        let client = ServiceBuilder::new()
            .layer(retry)
            .layer(TimeoutLayer::new(Duration::from_secs(2))) // per attempt
            .service(http_client);

        let req = http::Request::get("http://inventory/items/42").body(Full::new(Bytes::new())).unwrap();
        client.oneshot(req).await
    }};
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_example_runs_inside_tokio_spawn() {
    let res = tokio::spawn(async move { example!() }).await.unwrap().unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_example_runs_inside_an_axum_handler() {
    async fn handler() -> StatusCode {
        match example!() {
            Ok(res) => res.status(),
            Err(_) => StatusCode::BAD_GATEWAY,
        }
    }
    let app = Router::new().route("/items", get(handler));
    let res =
        app.oneshot(http::Request::get("/items").body(axum::body::Body::empty()).unwrap()).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}
