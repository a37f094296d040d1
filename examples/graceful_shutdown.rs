//! Graceful shutdown of an axum server with a palisade scope.
//!
//! Every request belongs to the scope "server" (`ScopeLayer`). On the shutdown signal (a
//! ctrl-c, or — so that the example ends by itself — a oneshot sent after a short load this
//! program drives at itself), the scope stops admitting (new requests get 503), waits up to
//! one second for requests in flight, then cancels the rest (they get 503 too, and their
//! handlers stop), tears the scoped resources down, and axum's `with_graceful_shutdown`
//! lets the connections close.
//!
//! ```text
//! cargo run --example graceful_shutdown --features scope,http
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::net::SocketAddr;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use palisade::prelude::*;
use palisade::scope::hooks::HooksLayer;
use palisade::scope::Scope;
use tokio::sync::oneshot;
use tower::ServiceBuilder;

async fn get_status(addr: SocketAddr, path: &str) -> u16 {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let uri = format!("http://{addr}{path}").parse().unwrap();
    match client.get(uri).await {
        Ok(res) => {
            let status = res.status().as_u16();
            let _ = res.into_body().collect().await;
            status
        }
        Err(_) => 0, // connection refused: the listener is gone
    }
}

#[tokio::main]
async fn main() {
    let scope = Scope::new("server");
    // A scoped resource: torn down after the requests are done.
    scope
        .provide(
            String::from("db connection"),
            |conn| async move { println!("teardown: closing the {conn}") },
        )
        .unwrap();

    let app = Router::new()
        .route("/fast", get(|| async { "fast" }))
        .route(
            "/medium",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(300)).await;
                "medium"
            }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                "slow"
            }),
        )
        .route_layer(
            ServiceBuilder::new().with_http_rejections().with_scope(scope.clone()).layer(
                HooksLayer::new()
                    .on_cancel(|ran: Duration| println!("hook: a request was cancelled after {ran:?}")),
            ),
        );

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();

    // The SIGTERM-style trigger: ctrl-c, or the self-driven load below when it is done.
    let (trigger, triggered) = oneshot::channel::<()>();
    let drained = {
        let scope = scope.clone();
        async move {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => println!("ctrl-c"),
                _ = triggered => println!("shutdown requested"),
            }
            let report = scope.close(Duration::from_secs(1)).await;
            println!(
                "drain: {} finished, {} cancelled, {} resources torn down",
                report.finished, report.cancelled, report.torn_down
            );
        }
    };
    let (drain_done_tx, drain_done) = oneshot::channel::<()>();
    tokio::spawn(async move {
        drained.await;
        let _ = drain_done_tx.send(());
    });
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = drain_done.await;
            })
            .await
            .unwrap();
    });

    // A short load: fast requests succeed; at the signal, a medium request (finishes
    // within the deadline) and two slow ones (cancelled at the deadline) are in flight.
    for _ in 0..5 {
        assert_eq!(get_status(addr, "/fast").await, 200);
    }
    let medium = tokio::spawn(get_status(addr, "/medium"));
    let slow: Vec<_> = (0..2).map(|_| tokio::spawn(get_status(addr, "/slow"))).collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    trigger.send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // While draining, new requests are refused with 503.
    let refused = get_status(addr, "/fast").await;
    println!("a new request while draining: {refused}");
    println!("a medium request in flight at shutdown: {}", medium.await.unwrap());
    for s in slow {
        println!("a slow request in flight at shutdown: {}", s.await.unwrap());
    }
    server.await.unwrap();
    println!("server stopped");
}
