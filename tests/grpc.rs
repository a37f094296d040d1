#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
//! tonic: a real gRPC server and a `Channel` client wrapped with palisade layers.

mod support;

use std::time::Duration;

use palisade::rejection::RateLimited;
use palisade::respond::GrpcRejectionLayer;
use support::grpc::{say_hello, serve, Answer, Script};
use tonic::transport::Channel;
use tonic::Code;
use tower::ServiceBuilder;

async fn channel(addr: std::net::SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap()
}

#[tokio::test]
async fn rejection_mapping_reaches_the_tonic_client_as_status() {
    let (addr, _server) = serve(Script::default()).await;
    let ch = channel(addr).await;
    assert_eq!(say_hello(ch.clone(), "a").await.unwrap(), "hello a");

    // A client-side layer that refuses: the mapping answers with a trailers-only response,
    // and tonic reads it as a Status with the pushback in its metadata.
    // Its error type is the concrete `RateLimited`, not `BoxError`: a closure whose signature
    // mentions `BoxError` could not be awaited in a spawned task (see `palisade::guide`).
    let refusing = ServiceBuilder::new().layer(GrpcRejectionLayer::new()).service(tower::service_fn(
        |_req: http::Request<tonic::body::Body>| async {
            Err::<http::Response<tonic::body::Body>, _>(RateLimited::new("grpc", Duration::from_millis(750)))
        },
    ));
    let status = tokio::spawn(async move { say_hello(refusing, "b").await }).await.unwrap().unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(status.metadata().get("grpc-retry-pushback-ms").unwrap(), "750");
}

#[tokio::test]
async fn scripted_server_statuses() {
    let script = Script::new([Answer::Fail(Code::Unavailable, Some("10")), Answer::Ok]);
    let (addr, _server) = serve(script.clone()).await;
    let ch = channel(addr).await;
    let status = say_hello(ch.clone(), "x").await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(status.metadata().get("grpc-retry-pushback-ms").unwrap(), "10");
    assert_eq!(say_hello(ch, "x").await.unwrap(), "hello x");
    assert_eq!(script.calls(), 2);
}

// === the full client stack ===

use std::sync::{Arc, Mutex};

use palisade::circuit_breaker::{CircuitBreakerLayer, CircuitState};
use palisade::classify::GrpcClassifier;
use palisade::rate_limit::{Quota, RateLimitLayer};
use palisade::retry::http::{BufferBodyLayer, HttpReplay, ReplayBody};
use palisade::retry::{Backoff, Jitter, RetryEvent, RetryLayer};

#[tokio::test]
async fn channel_with_retry_breaker_and_rate_limit() {
    // UNAVAILABLE with a 40 ms pushback, then OK; later NOT_FOUND (not a failure) and INTERNAL.
    let script = Script::new([
        Answer::Fail(Code::Unavailable, Some("40")),
        Answer::Ok,
        Answer::Fail(Code::NotFound, None),
        Answer::Fail(Code::Internal, None),
        Answer::Fail(Code::Unavailable, Some("-1")),
    ]);
    let (addr, _server) = serve(script.clone()).await;

    let scheduled = Arc::new(Mutex::new(Vec::new()));
    let log = scheduled.clone();
    let retry = RetryLayer::builder()
        .name("greeter")
        .max_attempts(3)
        .backoff(Backoff::fixed(Duration::from_millis(1)))
        .jitter(Jitter::None)
        .classifier(GrpcClassifier::new())
        .replay(HttpReplay)
        .on_event(move |e: &RetryEvent| {
            if let RetryEvent::RetryScheduled { delay, server_hint, .. } = e {
                log.lock().unwrap().push((*delay, *server_hint));
            }
        })
        .build()
        .unwrap();
    let breaker = CircuitBreakerLayer::builder()
        .name("greeter")
        .consecutive_failures(2)
        .wait_in_open(Duration::from_secs(60))
        .classifier(GrpcClassifier::new())
        .build()
        .unwrap();
    let breaker_handle = breaker.handle();
    let limit = RateLimitLayer::builder().name("greeter").quota(Quota::per_hour(1).burst(6)).build().unwrap();

    let client = ServiceBuilder::new()
        .layer(GrpcRejectionLayer::new())
        .layer(BufferBodyLayer::new(64 * 1024))
        .layer(retry)
        .layer(limit)
        .layer(breaker)
        // The channel takes tonic's body type: wrap the replayable body back into it.
        .map_request(|req: http::Request<ReplayBody<tonic::body::Body>>| req.map(tonic::body::Body::new))
        .service(channel(addr).await);

    // Retried after the server's pushback (a floor over the 1 ms backoff), then answered; called
    // from a spawned task, as a server handler would.
    let spawned = client.clone();
    let answer = tokio::spawn(async move { say_hello(spawned, "a").await }).await.unwrap();
    assert_eq!(answer.unwrap(), "hello a");
    assert_eq!(script.calls(), 2);
    assert_eq!(*scheduled.lock().unwrap(), [(Duration::from_millis(40), Some(Duration::from_millis(40)))]);

    // NOT_FOUND is the caller's problem: not retried, not a breaker failure.
    assert_eq!(say_hello(client.clone(), "b").await.unwrap_err().code(), Code::NotFound);
    assert_eq!(script.calls(), 3);
    // INTERNAL fails and is not retried; a negative pushback forbids retrying UNAVAILABLE.
    assert_eq!(say_hello(client.clone(), "c").await.unwrap_err().code(), Code::Internal);
    assert_eq!(say_hello(client.clone(), "d").await.unwrap_err().code(), Code::Unavailable);
    assert_eq!(script.calls(), 5);
    assert_eq!(breaker_handle.state(), CircuitState::Open);

    // The open breaker answers UNAVAILABLE with its wait as pushback, without a server call.
    let status = say_hello(client.clone(), "e").await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    let pushback: u64 =
        status.metadata().get("grpc-retry-pushback-ms").unwrap().to_str().unwrap().parse().unwrap();
    assert!(pushback > 59_000 && pushback <= 60_000, "{pushback}");
    assert_eq!(script.calls(), 5);

    // The rate limit (burst 6, one more per hour: six attempts reached it) refuses the next
    // call: RESOURCE_EXHAUSTED with pushback.
    breaker_handle.force_closed();
    let status = say_hello(client.clone(), "f").await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.metadata().get("grpc-retry-pushback-ms").is_some());
}
