//! Retries, deadlines, retry budgets, hedging and adaptive throttling for tower services.
//!
//! [`RetryLayer::new(3)`](AttemptLayer::new) is a retry policy that is right by default: three
//! attempts, exponential backoff with full jitter, every error retried, and a budget that
//! keeps retries from turning an outage into a retry storm. [`RetryLayer::builder`]
//! (`AttemptLayer::builder`) sets the rest — the options live in [`RetryConfig`], which is
//! also the config-file form (feature `serde`): a classifier that says what is worth
//! retrying, server hints honoured as their protocols say (HTTP `Retry-After` as a floor,
//! gRPC pushback exactly, as gRFC A6), deadlines.
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), palisade_core::BoxError> {
//! use std::time::Duration;
//! use palisade_retry::{Backoff, Jitter, RetryLayer};
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//!
//! let layer = RetryLayer::builder()
//!     .max_attempts(4)
//!     .backoff(Backoff::exponential(Duration::from_millis(1)))
//!     .jitter(Jitter::Equal)
//!     .max_delay(Duration::from_millis(20))
//!     .deadline(Duration::from_secs(2))
//!     .build()?;
//! let handle = layer.handle();
//!
//! let calls = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
//! let svc = ServiceBuilder::new().layer(layer).service(service_fn(move |name: &'static str| {
//!     let n = calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
//!     async move { if n < 2 { Err("flaky") } else { Ok(format!("hello {name}")) } }
//! }));
//! assert_eq!(svc.oneshot("world").await?, "hello world");
//! assert_eq!(handle.snapshot().retries, 2);
//! # Ok(()) }
//! ```
//!
//! # Example: an HTTP client call from an axum handler
//!
//! An axum handler that calls a backend builds the client stack once (in its state) and
//! calls it per request. Here a `tower::service_fn` stands in for hyper-util's `Client`
//! (`Service<http::Request<Full<Bytes>>>`, which it is): it answers 503 with
//! `Retry-After: 1` once, then 200. [`HttpClassifier`](palisade_core::classify) retries
//! 408/429/502/503/504 and honours `Retry-After` as a floor; `Full<Bytes>` bodies are
//! `Clone`, so the default replay serves.
//!
//! The stand-in's error type is `http::Error`, not `BoxError`: a closure whose signature
//! names `BoxError` makes rustc reject any future awaiting the stack inside `tokio::spawn`
//! or an axum handler ("implementation of `From` is not general enough",
//! rust-lang/rust#64552 — tower's own `Timeout` hits it too). An error type without a
//! trait object, an `async fn` instead of a closure, or boxing the finished stack avoid it.
//! This example compiles inside `tokio::spawn` and an axum route (`tests/spawn.rs`).
//!
//! ```
//! # #[cfg(not(feature = "http"))] fn main() {}
//! # #[cfg(feature = "http")]
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), palisade_core::BoxError> {
//! use std::time::Duration;
//! use bytes::Bytes;
//! use http_body_util::Full;
//! use palisade_core::classify::HttpClassifier;
//! use palisade_timeout::TimeoutLayer; // the palisade-timeout crate
//! use palisade_retry::{Backoff, RetryLayer};
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//!
//! # let calls = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
//! // Stands in for `hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http()`.
//! let http_client = service_fn(move |_req: http::Request<Full<Bytes>>| {
//! #   let first = calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed) == 0;
//!     async move {
//!         let res = if first {
//!             http::Response::builder().status(503).header("retry-after", "1")
//!         } else {
//!             http::Response::builder().status(200)
//!         };
//!         res.body(Full::new(Bytes::from("ok"))) // Result<_, http::Error>
//!     }
//! });
//!
//! let retry = RetryLayer::builder()
//!     .name("inventory")
//!     .classifier(HttpClassifier::new())
//!     .max_attempts(3)
//!     .backoff(Backoff::exponential(Duration::from_millis(50)))
//!     .deadline(Duration::from_secs(5))
//!     .build()?;
//! let client = ServiceBuilder::new()
//!     .layer(retry)
//!     .layer(TimeoutLayer::new(Duration::from_secs(2))) // per attempt
//!     .service(http_client);
//!
//! // In the handler: `async fn handler(State(client): State<Client>) -> ... { client.oneshot(req).await }`
//! let start = tokio::time::Instant::now();
//! let req = http::Request::get("http://inventory/items/42").body(Full::new(Bytes::new()))?;
//! let res = tokio::spawn(client.clone().oneshot(req)).await??; // Send: spawnable
//! assert_eq!(res.status(), 200);
//! assert!(start.elapsed() >= Duration::from_secs(1), "Retry-After is a floor");
//! # Ok(()) }
//! ```
//!
//! # Example: a tonic client
//!
//! A tonic `Channel` is a `Service<http::Request<tonic::body::Body>, Response =
//! http::Response<tonic::body::Body>>`; here a `service_fn` of that shape stands in for it
//! and answers UNAVAILABLE with `grpc-retry-pushback-ms: 200` once. `tonic::body::Body` is a
//! stream, so [`http::BufferBodyLayer`] reads the (small) request message ahead and
//! [`http::HttpReplay`] replays it; [`GrpcClassifier`](palisade_core::classify) retries
//! UNAVAILABLE and RESOURCE_EXHAUSTED and follows the pushback exactly (gRFC A6). The stack
//! is a `GrpcService`: pass it to a generated client, `GreeterClient::new(stack)`.
//!
//! ```
//! # #[cfg(not(feature = "grpc"))] fn main() {}
//! # #[cfg(feature = "grpc")]
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), palisade_core::BoxError> {
//! use std::time::Duration;
//! use palisade_core::classify::GrpcClassifier;
//! use palisade_retry::http::{BufferBodyLayer, HttpReplay, ReplayBody};
//! use palisade_retry::{RetryBudget, RetryLayer};
//! use tonic::body::Body;
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//!
//! # let calls = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
//! // Stands in for `tonic::transport::Channel::from_static("http://[::1]:50051").connect().await?`.
//! let channel = service_fn(move |_req: http::Request<Body>| {
//! #   let first = calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed) == 0;
//!     async move {
//!         let res = http::Response::builder().header("content-type", "application/grpc");
//!         let res = if first {
//!             res.header("grpc-status", "14").header("grpc-retry-pushback-ms", "200")
//!         } else {
//!             res.header("grpc-status", "0")
//!         };
//!         Ok::<_, palisade_core::BoxError>(res.body(Body::empty())?)
//!     }
//! });
//!
//! let retry = RetryLayer::builder()
//!     .name("greeter")
//!     .classifier(GrpcClassifier::new())
//!     .replay(HttpReplay)
//!     .budget(RetryBudget::token_bucket(10, 0.1)?) // gRPC retry throttling
//!     .build()?;
//! let stack = ServiceBuilder::new()
//!     .layer(BufferBodyLayer::new(64 * 1024))
//!     .layer(retry)
//!     .map_request(|req: http::Request<ReplayBody<Body>>| req.map(Body::new))
//!     .service(channel);
//! // let mut client = GreeterClient::new(stack);
//!
//! let start = tokio::time::Instant::now();
//! let req = http::Request::post("http://[::1]:50051/helloworld.Greeter/SayHello")
//!     .header("content-type", "application/grpc")
//!     .body(Body::new(http_body_util::Full::new(bytes::Bytes::from_static(b"\0\0\0\0\0"))))?;
//! let res = stack.oneshot(req).await?;
//! assert_eq!(res.headers()["grpc-status"], "0");
//! assert_eq!(start.elapsed(), Duration::from_millis(200), "retried exactly at the pushback");
//! # Ok(()) }
//! ```
//!
//! # What is retried
//!
//! Each attempt's `Result` goes to a [`palisade_core` classifier](palisade_core::classify)
//! (`.classifier(..)`; default [`DefaultClassifier`](palisade_core::DefaultClassifier): every
//! `Err` is a retryable failure). A result that is not a retryable failure is returned at
//! once. When the attempts are used up, the caller gets the **last** attempt's result as the
//! inner service gave it: an error stays that error (boxed), and a response classified as a
//! failure (an HTTP 503, a gRPC UNAVAILABLE) is returned as a response, not turned into an
//! error. Nothing is swallowed. Opt in to
//! [`retries_exhausted_error`](RetryConfig::retries_exhausted_error) to get a typed
//! [`RetriesExhausted`] (attempt count, reason, the last error as
//! its source) instead.
//!
//! A call refused by an open circuit breaker ([`CircuitOpen`](palisade_core::rejection::CircuitOpen))
//! is **not** retried: the default classifiers call it a non-retryable failure, so it
//! reaches the caller at once (→ 503 with `Retry-After`). Put the retry outside the breaker
//! (`ServiceBuilder::new().layer(retry).layer(breaker)`) so that each attempt is judged by
//! the breaker and an open breaker ends the call; sleeping on the breaker's open time would
//! hold the caller's request (and any timeout or bulkhead permit above it) for that long.
//! [`wait_for_half_open`](RetryConfig::wait_for_half_open) opts in to waiting, with
//! its own bound.
//!
//! A retry needs the request again. By default the request must be `Clone`
//! ([`CloneRequest`](replay::CloneRequest)); a "clone or give up" hook
//! ([`replay_fn`](RetryBuilder::replay_fn)) serves requests that cannot always be
//! copied, and with feature `http` [`http::BufferBodyLayer`] reads streaming bodies ahead up
//! to a size limit so that [`http::HttpReplay`] can replay them; larger bodies are sent
//! once and never retried. See [`replay`].
//!
//! # Delays and server hints
//!
//! The delay before retry `n` comes from the [`Backoff`] strategy (fixed, linear,
//! exponential, Fibonacci or custom), capped at `max_delay` (before the jitter by default,
//! after it with `.cap_after_jitter(true)`; `.no_max_delay()` for no cap), then spread by
//! [`Jitter`] (none, full, equal or decorrelated as AWS defines them, or proportional ±25 %
//! as Polly v8 does for constant and linear backoff); `.seed(..)` makes it reproducible.
//! When the classifier reports a server hint, it is applied as its protocol says:
//!
//! - HTTP `Retry-After` ([`HttpClassifier`](palisade_core::classify)) is a **floor**: the
//!   next attempt never starts earlier, and a longer backoff still wins. (RFC 9110 asks the
//!   client to wait at least that long; a floor keeps the jitter that spreads clients.)
//! - gRPC `grpc-retry-pushback-ms` (`GrpcClassifier`) is followed **exactly**, as gRFC A6
//!   and grpc-go do: the retry goes out after the pushback, even when it is shorter than
//!   the backoff, and the exponential backoff restarts from its first delay afterwards. A
//!   negative pushback means "do not retry", and counts as a failure for the token bucket.
//!
//! A hint above `max_retry_after` (default 30 s), or one that would end after the total
//! deadline, makes the layer give up at once and return the last result.
//!
//! # Deadlines
//!
//! `.attempt_timeout(d)` bounds each attempt: an attempt that runs past it is dropped and
//! counts as a retryable failure (it does not go through the classifier, which cannot see a
//! value of the inner error type). `.deadline(d)` bounds the whole call; when it passes
//! during an attempt the attempt is dropped and the caller gets
//! [`TimedOut`] (HTTP 504 / DEADLINE_EXCEEDED through
//! `palisade_core::respond`); a backoff that would end after it is not started. Both count
//! from `call` (the first attempt's bound and the deadline read the clock there; the timer
//! is registered only once an attempt is pending), unlike `TimeoutLayer`, which counts from
//! the first poll at which the call is pending. The
//! `palisade-timeout` crate's `TimeoutLayer` (`palisade::timeout`) times out single calls,
//! with a timeout that may be chosen per request (e.g. from gRPC's `grpc-timeout` header).
//!
//! # Budget and throttling
//!
//! Every retry is paid for from a [`RetryBudget`], on by default with
//! Finagle's values (retries ≤ 20 % of the requests of the last 10 s, plus 10 retries per
//! second); gRPC's token bucket is the other choice. When it is spent, the caller gets the
//! last result, and the event [`RetryEvent::BudgetExhausted`] and the snapshot's
//! `budget_exhausted` counter record it. An optional
//! [`AdaptiveThrottle`] (Google SRE client-side throttling)
//! refuses attempts locally with [`Throttled`] once the backend refuses
//! most calls.
//!
//! # Hedging
//!
//! [`hedge::HedgeLayer`] sends a second attempt when the first has not answered after a
//! delay (fixed or an observed latency percentile), or all attempts at once (parallel), or
//! the next only after a failure (fallback), as Polly v8 does. Retry and hedging are one
//! attempt [`engine`]: the same layer, service, handle, budget, counters and events, with a
//! strategy of their own ([`RetryStrategy`](engine::RetryStrategy) runs one attempt at a
//! time, [`HedgeStrategy`](engine::HedgeStrategy) several).
//!
//! # Tower contract
//!
//! `poll_ready` is the inner service's. `call` sends the first attempt on the service that
//! was polled and keeps a clone for the retries, polling its readiness before each retry
//! (the service must be `Clone`, as for tower's `Retry`; wrap it in `tower::buffer::Buffer`
//! otherwise). Dropping the response future drops the attempt in flight (cancelling it) or
//! the backoff sleep. A call whose first attempt succeeds allocates nothing, registers no
//! timer, publishes no event and touches no shared counter (each service value tallies its
//! requests and adds them to the shared counter every 64, see [`RetrySnapshot::requests`]):
//! its costs are one request copy (skipped when `max_attempts` is 1), clones of the inner
//! service, classifier and replay hook, one reference count, and the budget's deposit. With
//! the default ratio budget on a multi-thread runtime the deposit is one load and one
//! compare-and-swap into the slot a tokio timer keeps current (one request in 64 of a
//! service value reads the clock); on a current-thread runtime it reads the clock, as
//! tower's `TpsBudget` does (see [`RetryBudget::deposit`]); the token bucket and `RetryBudget::unlimited()` deposit
//! nothing. A deadline or attempt timeout reads the clock.
//!
//! # Errors
//!
//! The service's error is [`BoxError`](palisade_core::BoxError): the inner service's error
//! (boxed), [`TimedOut`] or [`Throttled`].
//!
//! # Events and counters
//!
//! [`RetryEvent`]s go to listeners registered with `.on_event(..)` on the builder or
//! [`RetryHandle::on_event`](AttemptHandle::on_event), and to `tracing`.
//! [`RetryLayer::handle`](AttemptLayer::handle) reads the counters as a [`RetrySnapshot`].
//! Errors are in [`error`], re-exported here.
//!
//! This crate is part of [palisade](https://docs.rs/palisade); its minimum supported Rust
//! version is 1.85.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod backoff;
pub mod budget;
mod builder;
mod config;
pub mod engine;
pub mod error;
pub mod event;
pub mod future;
mod handle;
pub mod hedge;
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod http;
mod layer;
pub mod replay;
mod service;
mod sync;
mod tally;
pub mod throttle;
mod timer;
mod window;

#[cfg(loom)]
#[doc(hidden)]
pub mod loom;

pub use backoff::{Backoff, Jitter};
pub use budget::{BudgetConfig, RetryBudget};
pub use builder::RetryBuilder;
pub use config::RetryConfig;
pub use error::{BudgetExhausted, RetriesExhausted, Throttled, TimedOut};
pub use event::{GiveUpReason, RetryEvent, RetryReason};
pub use handle::{AttemptHandle, HedgeHandle, RetryHandle, RetrySnapshot};
pub use layer::{AttemptLayer, RetryLayer};
pub use service::{AttemptService, Retry};
pub use throttle::AdaptiveThrottle;
