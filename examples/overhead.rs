//! overhead: requests per second of a bare axum route against the same route behind the full
//! palisade stack (passing path), measured in one run on loopback with an in-process hyper
//! client, alternating the two servers so both see the same machine.
//!
//! ```sh
//! cargo run --release --example overhead --features http           # 4 rounds of 3 s each
//! cargo run --release --example overhead --features http -- 6 5s   # 6 rounds of 5 s each
//! cargo run --release --example overhead --features http -- --serve 120s   # only serve both, for an external load generator
//! ```
//!
//! `--serve` prints `bare http://127.0.0.1:PORT/` and `stacked http://127.0.0.1:PORT/` and serves
//! both routes for the given time (then exits): `scripts/wrk-overhead` drives them with `wrk`,
//! which measures the server side without an in-process client sharing its runtime.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs, clippy::disallowed_methods)]

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use palisade::bulkhead::BulkheadLayer;
use palisade::circuit_breaker::CircuitBreakerLayer;
use palisade::classify::HttpClassifier;
use palisade::prelude::*;
use palisade::rate_limit::{Quota, RateLimitLayer};
use palisade::timeout::TimeoutLayer;
use tower::ServiceBuilder;

const CONNECTIONS: usize = 32;

/// The client's IP address, as a per-client limit keys it in production (the issue's stack:
/// keyed by IP). `None` (no `ConnectInfo`) would be refused as unkeyed: never the case here,
/// both routes are served with `into_make_service_with_connect_info`.
fn client_ip(req: &Request<Body>) -> Option<IpAddr> {
    req.extensions().get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(addr)| addr.ip())
}

async fn serve<S>(app: S) -> SocketAddr
where
    S: tower::Service<Request<Body>, Response = axum::response::Response, Error = std::convert::Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, axum::ServiceExt::into_make_service_with_connect_info::<SocketAddr>(app)).await
    });
    addr
}

fn bare() -> Router {
    Router::new().route("/", get(|| async { "ok" }))
}

/// The same router behind the stack, applied around it as a whole (`ServiceBuilder::service`),
/// as middleware for a whole app usually is: hyper clones the stack per request (a few `Arc`
/// clones), where `Router::route_layer` would also box a clone of the layered route per
/// request.
fn stacked() -> impl tower::Service<
    Request<Body>,
    Response = axum::response::Response,
    Error = std::convert::Infallible,
    Future = impl Send,
> + Clone
       + Send
       + 'static {
    let stack = ServiceBuilder::new()
        .with_http_rejections()
        .layer(
            RateLimitLayer::builder()
                .name("per-client")
                .quota(Quota::per_second(1_000_000).burst(100_000))
                .keyed(client_ip)
                .build()
                .unwrap(),
        )
        .layer(
            // Refuse-at-once (the default) with room for every connection of the load
            // (`wrk -c64`, or the 32 of the in-process client): the pass path is measured,
            // never a refusal or a wait.
            BulkheadLayer::builder().name("api").max_concurrent(1024).build().unwrap(),
        )
        .layer(TimeoutLayer::new(Duration::from_secs(5)))
        .layer(CircuitBreakerLayer::builder().name("api").classifier(HttpClassifier::new()).build().unwrap());
    stack.service(bare())
}

async fn drive(addr: SocketAddr, for_: Duration) -> u64 {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let done = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + for_;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..CONNECTIONS {
        let client = client.clone();
        let done = done.clone();
        tasks.spawn(async move {
            while Instant::now() < until {
                let req = Request::get(format!("http://{addr}/")).body(Empty::new()).unwrap();
                let res = client.request(req).await.unwrap();
                assert!(res.status().is_success());
                res.into_body().collect().await.unwrap();
                done.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    done.load(Ordering::Relaxed)
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1).peekable();
    if args.peek().map(String::as_str) == Some("--serve") {
        args.next();
        let for_ = args
            .next()
            .and_then(|a| palisade::duration::parse_duration(&a).ok())
            .unwrap_or(Duration::from_secs(120));
        let bare_addr = serve(bare()).await;
        let stacked_addr = serve(stacked()).await;
        println!("bare http://{bare_addr}/");
        println!("stacked http://{stacked_addr}/");
        tokio::time::sleep(for_).await;
        return;
    }
    let rounds: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(4);
    let each = args
        .next()
        .and_then(|a| palisade::duration::parse_duration(&a).ok())
        .unwrap_or(Duration::from_secs(3));
    let bare_addr = serve(bare()).await;
    let stacked_addr = serve(stacked()).await;
    drive(bare_addr, Duration::from_millis(500)).await; // warm up both
    drive(stacked_addr, Duration::from_millis(500)).await;
    let (mut bare_n, mut stacked_n) = (0, 0);
    for round in 0..rounds {
        // Alternate which goes first so neither always gets the warmer machine.
        if round % 2 == 0 {
            bare_n += drive(bare_addr, each).await;
            stacked_n += drive(stacked_addr, each).await;
        } else {
            stacked_n += drive(stacked_addr, each).await;
            bare_n += drive(bare_addr, each).await;
        }
    }
    let secs = each.as_secs_f64() * f64::from(rounds);
    let (bare_rps, stacked_rps) = (bare_n as f64 / secs, stacked_n as f64 / secs);
    println!("bare axum route:           {bare_rps:>9.0} req/s");
    println!("behind the palisade stack: {stacked_rps:>9.0} req/s");
    println!("ratio (stacked / bare):    {:>9.3}", stacked_rps / bare_rps);
}
