#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
//! tonic: a real gRPC server and a `Channel` client wrapped with palisade layers.

mod support;

use std::time::Duration;

use palisade::core::rejection::RateLimited;
use palisade::core::respond::GrpcRejectionLayer;
use palisade::core::BoxError;
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
    let refusing = ServiceBuilder::new().layer(GrpcRejectionLayer::new()).service(tower::service_fn(
        |_req: http::Request<tonic::body::Body>| async {
            Err::<http::Response<tonic::body::Body>, BoxError>(
                RateLimited::new("grpc", Duration::from_millis(750)).into(),
            )
        },
    ));
    let status = say_hello(refusing, "b").await.unwrap_err();
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
