#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
//! Rejections become HTTP and gRPC responses (status + headers).

use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use palisade_core::rejection::{
    BudgetExhausted, BulkheadFull, BulkheadFullReason, CircuitOpen, Closed, CostExceedsCapacity, KeyMissing,
    Overloaded, RateLimited, Throttled, TimedOut,
};
use palisade_core::respond::{GrpcRejectionLayer, HttpRejectionLayer};
use palisade_core::BoxError;
use tower::{service_fn, Layer, Service, ServiceExt};

fn failing(
    err: fn() -> BoxError,
) -> impl Service<Request<()>, Response = Response<String>, Error = BoxError> + Clone {
    service_fn(move |_req: Request<()>| async move { Err::<Response<String>, _>(err()) })
}

async fn http_answer(err: fn() -> BoxError) -> Response<String> {
    HttpRejectionLayer::new().layer(failing(err)).oneshot(Request::new(())).await.unwrap()
}

async fn grpc_answer(err: fn() -> BoxError) -> Response<String> {
    GrpcRejectionLayer::new().layer(failing(err)).oneshot(Request::new(())).await.unwrap()
}

#[tokio::test]
async fn http_mapping_table() {
    let res = http_answer(|| RateLimited::new("api", Duration::from_millis(2500)).into()).await;
    assert_eq!(res.status(), 429);
    assert_eq!(res.headers()["retry-after"], "3", "rounded up to whole seconds");

    let res = http_answer(|| Throttled::new("api").into()).await;
    assert_eq!(res.status(), 429);
    assert!(res.headers().get("retry-after").is_none());

    let res = http_answer(|| CircuitOpen::new("db", Duration::from_secs(30)).into()).await;
    assert_eq!(res.status(), 503);
    assert_eq!(res.headers()["retry-after"], "30");

    for err in [
        (|| BulkheadFull::new("db", BulkheadFullReason::QueueFull).into()) as fn() -> BoxError,
        || Overloaded::new("db").into(),
        || BudgetExhausted::new("db").into(),
        || Closed::new("db").into(),
    ] {
        let res = http_answer(err).await;
        assert_eq!(res.status(), 503);
        assert!(res.headers().get("retry-after").is_none());
    }
    let res = http_answer(|| Overloaded::new("db").with_retry_after(Duration::from_secs(1)).into()).await;
    assert_eq!(res.headers()["retry-after"], "1");

    let res = http_answer(|| TimedOut::new("db", Duration::from_secs(1)).into()).await;
    assert_eq!(res.status(), 504);

    let res = http_answer(|| CostExceedsCapacity::new("api", "global", 500, 100).into()).await;
    assert_eq!(res.status(), 413, "never admissible: not a 429 the client would retry");
    assert!(res.headers().get("retry-after").is_none());

    let res = http_answer(|| KeyMissing::new("per-ip").into()).await;
    assert_eq!(res.status(), 500, "a keyed layer without a key is the deployment's mistake");
    assert!(res.headers().get("retry-after").is_none());
    assert!(res.body().is_empty());
}

#[tokio::test]
async fn http_other_errors_are_500_without_internals() {
    let res = http_answer(|| "password=hunter2 connection refused".into()).await;
    assert_eq!(res.status(), 500);
    assert!(res.body().is_empty());
    assert!(res.headers().is_empty());
}

#[tokio::test]
async fn responses_pass_through() {
    let svc = HttpRejectionLayer::new()
        .layer(service_fn(|_req: Request<()>| async { Ok::<_, BoxError>(Response::new("hi".to_owned())) }));
    let res = svc.oneshot(Request::new(())).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.body(), "hi");
}

/// A service whose `poll_ready` fails with a rejection (as a waiting bulkhead does).
#[derive(Clone)]
struct NotReady;

impl Service<Request<()>> for NotReady {
    type Response = Response<String>;
    type Error = BoxError;
    type Future = std::future::Ready<Result<Response<String>, BoxError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Err(BulkheadFull::new("slow", BulkheadFullReason::WaitTimedOut).into()))
    }

    fn call(&mut self, _req: Request<()>) -> Self::Future {
        panic!("must not be called after a failed poll_ready")
    }
}

#[tokio::test]
async fn poll_ready_rejections_are_answered() {
    let res = HttpRejectionLayer::new().layer(NotReady).oneshot(Request::new(())).await.unwrap();
    assert_eq!(res.status(), 503);
}

#[tokio::test]
async fn grpc_mapping_table() {
    let res = grpc_answer(|| CircuitOpen::new("db", Duration::from_millis(1500)).into()).await;
    assert_eq!(res.status(), 200, "gRPC errors are trailers-only 200 responses");
    assert_eq!(res.headers()["grpc-status"], "14");
    assert_eq!(res.headers()["grpc-retry-pushback-ms"], "1500");
    assert_eq!(res.headers()["content-type"], "application/grpc");

    let res = grpc_answer(|| RateLimited::new("api", Duration::from_millis(20)).into()).await;
    assert_eq!(res.headers()["grpc-status"], "8");
    assert_eq!(res.headers()["grpc-retry-pushback-ms"], "20");

    let res = grpc_answer(|| BulkheadFull::new("db", BulkheadFullReason::NoPermit).into()).await;
    assert_eq!(res.headers()["grpc-status"], "8");
    assert!(res.headers().get("grpc-retry-pushback-ms").is_none());

    let res = grpc_answer(|| TimedOut::new("db", Duration::from_secs(1)).into()).await;
    assert_eq!(res.headers()["grpc-status"], "4");

    let res = grpc_answer(|| CostExceedsCapacity::new("api", "global", 500, 100).into()).await;
    assert_eq!(res.headers()["grpc-status"], "8");
    assert!(res.headers().get("grpc-retry-pushback-ms").is_none());

    let res = grpc_answer(|| Closed::new("db").into()).await;
    assert_eq!(res.headers()["grpc-status"], "14");

    let res = grpc_answer(|| KeyMissing::new("per-ip").into()).await;
    assert_eq!(res.headers()["grpc-status"], "13", "INTERNAL");
    assert!(res.headers().get("grpc-retry-pushback-ms").is_none());

    let res = grpc_answer(|| "secret internals".into()).await;
    assert_eq!(res.headers()["grpc-status"], "13");
    assert!(!res.headers()["grpc-message"].to_str().unwrap().contains("secret"));

    let res = grpc_answer(|| Box::new(tonic::Status::not_found("no such user"))).await;
    assert_eq!(res.headers()["grpc-status"], "5", "a Status in the chain is kept as is");
}
