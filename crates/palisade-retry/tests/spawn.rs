#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
#![cfg(feature = "http")]
//! Issue 15.9: the crate-level axum example, used literally, compiles inside `tokio::spawn`
//! and inside an axum route handler (its futures are `Send`), and serves there.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use http_body_util::Full;
use palisade_core::classify::HttpClassifier;
use palisade_core::BoxError;
use palisade_retry::timeout::TimeoutLayer;
use palisade_retry::{Backoff, RetryLayer};
use tower::{service_fn, Service, ServiceBuilder, ServiceExt};

/// The example's stack, as the crate docs write it.
fn client() -> Result<
    impl Service<
            http::Request<Full<Bytes>>,
            Response = http::Response<Full<Bytes>>,
            Error = BoxError,
            Future = impl Send,
        > + Clone
        + Send
        + Sync
        + 'static,
    BoxError,
> {
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
        .build()?;
    let client = ServiceBuilder::new()
        .layer(retry)
        .layer(TimeoutLayer::new(Duration::from_secs(2))?) // per attempt
        .service(http_client);
    Ok(client)
}

fn request() -> http::Request<Full<Bytes>> {
    http::Request::get("http://inventory/items/42").body(Full::new(Bytes::new())).unwrap()
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_example_runs_inside_tokio_spawn() {
    let client = client().unwrap();
    let res = tokio::spawn(async move { client.oneshot(request()).await }).await.unwrap().unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_example_runs_inside_an_axum_handler() {
    // The stack without any naming: the handler is generic over it.
    async fn handler<C>(State(client): State<C>) -> StatusCode
    where
        C: Service<http::Request<Full<Bytes>>, Response = http::Response<Full<Bytes>>, Error = BoxError>
            + Clone,
        C::Future: Send,
    {
        match client.oneshot(request()).await {
            Ok(res) => res.status(),
            Err(_) => StatusCode::BAD_GATEWAY,
        }
    }
    fn app<C>(client: C) -> Router
    where
        C: Service<http::Request<Full<Bytes>>, Response = http::Response<Full<Bytes>>, Error = BoxError>
            + Clone
            + Send
            + Sync
            + 'static,
        C::Future: Send,
    {
        Router::new().route("/items", get(handler::<C>)).with_state(client)
    }
    let app = app(client().unwrap());
    let res =
        app.oneshot(http::Request::get("/items").body(axum::body::Body::empty()).unwrap()).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}
