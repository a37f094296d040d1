//! A circuit breaker for [tower](https://docs.rs/tower) services, as complete as
//! Resilience4j's and lock-free on its pass path.
//!
//! A breaker watches the results of the calls going through it. When they go bad it
//! *opens*: calls are rejected at once with [`CircuitOpen`], without
//! reaching the service, so that a failing backend gets room to recover and callers fail
//! fast. After a wait it lets a few *trial* calls through (*half-open*); their results
//! close it again or re-open it.
//!
//! # Example
//!
//! [`CircuitBreakerLayer::new()`] is a breaker with Resilience4j's defaults; the
//! [builder](CircuitBreakerLayer::builder) sets anything else:
//!
//! ```
//! use std::time::Duration;
//! use palisade_circuit_breaker::{CircuitBreakerLayer, CircuitState};
//! use palisade_circuit_breaker::error::CircuitOpen;
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let breaker = CircuitBreakerLayer::builder()
//!     .name("inventory")
//!     .consecutive_failures(3)
//!     .wait_in_open(Duration::from_secs(10))
//!     .build()?;
//! let handle = breaker.handle();
//!
//! let svc = ServiceBuilder::new()
//!     .layer(breaker)
//!     .service(service_fn(|_: ()| async { Err::<(), _>("backend down") }));
//!
//! for _ in 0..3 {
//!     assert!(svc.clone().oneshot(()).await.is_err()); // three failures ...
//! }
//! assert_eq!(handle.state(), CircuitState::Open); // ... open the breaker
//! let err = svc.clone().oneshot(()).await.unwrap_err();
//! let open = err.downcast_ref::<CircuitOpen>().expect("rejected by the breaker");
//! assert!(open.retry_after() <= Duration::from_secs(10));
//! # Ok(()) }
//! ```
//!
//! # When it opens
//!
//! One mode per breaker, picked on the [builder](CircuitBreakerBuilder) (every option, its
//! default and its bounds: [`CircuitBreakerConfig`], also the form read from a config file):
//!
//! - [`consecutive_failures(n)`](CircuitBreakerBuilder::consecutive_failures): `n`
//!   failures in a row. Cheapest: one atomic counter.
//! - [`failure_count(n, within)`](CircuitBreakerBuilder::failure_count): `n` failures
//!   within a time window, whatever the number of successes ("5 failures per minute").
//! - [`failure_rate(r)`](CircuitBreakerBuilder::failure_rate) (the default, 50 %):
//!   failures / calls reaches `r` over a sliding window, [count-based](CircuitBreakerBuilder::count_window)
//!   (last N calls, default 100) or [time-based](CircuitBreakerBuilder::time_window)
//!   (last N seconds, in buckets), once it holds [`minimum_calls`](CircuitBreakerBuilder::minimum_calls).
//!
//! In any mode, [slow calls](CircuitBreakerBuilder::slow_calls) open it too when their
//! rate in the window reaches a threshold, even if they succeeded; and, optionally, a failed
//! call carrying a server hint (503 + `Retry-After`, gRPC pushback) [opens it for that
//! long](CircuitBreakerBuilder::open_on_retry_after).
//!
//! A count window keeps a running total, so judging it costs one atomic read; a time window
//! sums its buckets (and stripes) when a call may change a decision.
//!
//! # What counts as a failure
//!
//! A palisade-core [`Classify`](palisade_core::Classify) decides: by default `Err` fails and
//! `Ok` succeeds; with `HttpClassifier` (palisade-core feature `http`) 5xx and 408/429 fail
//! while other 4xx succeed (the client's fault says nothing of the server's health);
//! `GrpcClassifier` does the same for gRPC codes. An *ignored* verdict, or a response future
//! dropped before it ended, counts neither way. A gRPC stream (HTTP 200, its status in the
//! trailers) is recorded when its body ends, by its trailers and timed to that end
//! ([end-of-stream classification](palisade_core::classify::eos)); a stream dropped before
//! its end is ignored and gives back a half-open trial slot.
//!
//! # Open, half-open, closed
//!
//! Open, every call is rejected with the time left until the breaker tries again. The wait
//! is [fixed](CircuitBreakerBuilder::wait_in_open) or [grows
//! exponentially](CircuitBreakerBuilder::exponential_wait_in_open) with each re-open,
//! starting over once the breaker closes (by itself or by hand, as Resilience4j and Polly).
//! There is no timer task by default: the first call after the wait moves the breaker to
//! half-open, so an idle breaker costs nothing; [`automatic_transition_to_half_open`](CircuitBreakerBuilder::automatic_transition_to_half_open)
//! moves it on a timer instead (for dashboards).
//!
//! Half-open, [`half_open_trials`](CircuitBreakerBuilder::half_open_trials) calls are
//! let through and the rest rejected, with a positive `retry_after` (never a
//! `Retry-After: 0` that would invite a stampede). Each trial holds a slot that its response
//! future gives back if it is dropped or panics, so half-open cannot admit more trials than
//! configured. Enough successes close the breaker; a failure re-opens it (or, with
//! [`half_open_failure_ratio`](CircuitBreakerBuilder::half_open_failure_ratio), a ratio
//! of failed trials); [`wait_for_all_trials`](CircuitBreakerBuilder::wait_for_all_trials)
//! judges only once every trial ended, as Resilience4j.
//!
//! A trial that never ends cannot pin the breaker half-open: after
//! [`max_wait_in_half_open`](CircuitBreakerBuilder::max_wait_in_half_open) (60 s by
//! default) it re-opens and tries again after the next wait. **Put the timeout inside the
//! breaker** (`ServiceBuilder::new().layer(breaker).timeout(d)`), so that a hung call fails,
//! counts as a failure and frees its trial slot at once; a timeout outside the breaker
//! cancels the call, which then counts neither way.
//!
//! A call counts only in the state period that admitted it: a call let through while
//! closed that fails after the breaker opened does not count against the half-open trials.
//!
//! # Backpressure
//!
//! `poll_ready` is the inner service's; the breaker only acts in `call`, where a rejected
//! call gets a response future that is ready at once and the inner service is not called.
//! Stack a `palisade_core::respond::HttpRejectionLayer` on top to answer rejections with
//! 503 + `Retry-After` in a server.
//!
//! # Sharing
//!
//! The breaker lives in the layer: every service the layer wraps and all their clones (axum
//! clones a service per request) share it. A [`CircuitBreakerHandle`] reads its state and
//! [`CircuitBreakerSnapshot`] (rates, counters, rejections in the current state) and sets manual states
//! (forced open — rejections then say [`is_isolated`](CircuitOpen::is_isolated) —,
//! open for a time, forced closed, disabled, metrics only, reset); the
//! [initial state](CircuitBreakerBuilder::initial_state) is part of the config.
//!
//! # Keyed breakers
//!
//! [`keyed(key_fn)`](CircuitBreakerBuilder::keyed) gives one breaker per key taken from
//! the request (`key_fn: Fn(&Req) -> Option<K>`): per host, per tenant, per notification
//! channel. A breaker is created on its key's first call; at most
//! [`max_keys`](KeyedCircuitBreakerBuilder::max_keys) (default 100 000) are held, and a key
//! is forgotten only when that is indistinguishable from a fresh key (see
//! [`KeyedCircuitBreakerLayer`]), so request data can neither grow memory nor reset an open
//! breaker. A request without a key is refused with [`KeyMissing`] by default, or let
//! through, or put under one shared breaker ([`when_unkeyed`](KeyedCircuitBreakerBuilder::when_unkeyed)).
//! A rejection names the key ([`CircuitOpen::key`]); a named
//! [`KeyExtractor`] makes the layer's type nameable. Here, one breaker per host around an
//! HTTP client, where 5xx responses fail and 4xx do not:
//!
//! ```
//! use std::time::Duration;
//! use http::{Request, Response, StatusCode};
//! use palisade_circuit_breaker::{CircuitBreakerLayer, CircuitState};
//! use palisade_core::classify::HttpClassifier;
//! use tower::{service_fn, BoxError, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BoxError> {
//! // Stands for a hyper client (`hyper_util::client::legacy::Client`): `a.example` is down.
//! let client = service_fn(|req: Request<String>| async move {
//!     let status = match req.uri().host() {
//!         Some("a.example") => StatusCode::BAD_GATEWAY,
//!         _ => StatusCode::NOT_FOUND,
//!     };
//!     Response::builder().status(status).body(String::new())
//! });
//!
//! let per_host = CircuitBreakerLayer::builder()
//!     .name("upstream")
//!     .consecutive_failures(2)
//!     .wait_in_open(Duration::from_secs(30))
//!     .classifier(HttpClassifier::new())
//!     .keyed(|req: &Request<String>| req.uri().host().map(str::to_owned))
//!     .max_keys(1_000)
//!     .build()?;
//! let hosts = per_host.handle();
//! let client = ServiceBuilder::new().layer(per_host).service(client);
//!
//! let get = |uri: &str| Request::get(uri).body(String::new()).unwrap();
//! for _ in 0..2 {
//!     let res = client.clone().oneshot(get("http://a.example/")).await?;
//!     assert_eq!(res.status(), StatusCode::BAD_GATEWAY);
//!     let res = client.clone().oneshot(get("http://b.example/missing")).await?;
//!     assert_eq!(res.status(), StatusCode::NOT_FOUND); // 4xx: not the server's fault
//! }
//! // a.example is cut off; b.example is not.
//! assert_eq!(hosts.get(&"a.example".to_owned()).unwrap().state(), CircuitState::Open);
//! assert_eq!(hosts.get(&"b.example".to_owned()).unwrap().state(), CircuitState::Closed);
//! assert!(client.clone().oneshot(get("http://a.example/")).await.is_err());
//! assert!(client.clone().oneshot(get("http://b.example/")).await.is_ok());
//! # Ok(()) }
//! ```
//!
//! And a breaker in an axum server, in front of a handler whose 5xx answers trip it; open,
//! it answers 503 with `Retry-After` through `HttpRejectionLayer`:
//!
//! ```
//! use std::time::Duration;
//! use axum::{http::StatusCode, routing::get, Router};
//! use palisade_circuit_breaker::CircuitBreakerLayer;
//! use palisade_core::classify::HttpClassifier;
//! use palisade_core::respond::HttpRejectionLayer;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! async fn report() -> (StatusCode, &'static str) {
//!     (StatusCode::INTERNAL_SERVER_ERROR, "database unavailable")
//! }
//!
//! let breaker = CircuitBreakerLayer::builder()
//!     .name("reports")
//!     .failure_rate(0.5)
//!     .count_window(20)
//!     .minimum_calls(4)
//!     .wait_in_open(Duration::from_secs(5))
//!     .classifier(HttpClassifier::new())
//!     .build()?;
//! let app = Router::new()
//!     .route("/report", get(report))
//!     .layer(ServiceBuilder::new().layer(HttpRejectionLayer::new()).layer(breaker));
//!
//! let request = || axum::http::Request::get("/report").body(axum::body::Body::empty()).unwrap();
//! for _ in 0..4 {
//!     let res = app.clone().oneshot(request()).await?;
//!     assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
//! }
//! let res = app.clone().oneshot(request()).await?;
//! assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
//! assert_eq!(res.headers()["retry-after"], "5");
//! // Serve it as usual: axum::serve(listener, app).await
//! # Ok(()) }
//! ```
//!
//! # Events and metrics
//!
//! Every transition (from, to, [why](TransitionReason)), rejection, recorded call, reset and
//! threshold crossing (failure-rate and slow-call-rate exceeded, as Resilience4j) is a
//! [`CircuitBreakerEvent`] for listeners and `tracing`; no event is published for a manual
//! "transition" to the state the breaker is already in. A listener that panics is caught
//! and logged. With the `metrics` feature, the
//! counters `palisade_circuit_breaker_calls_total` (label `outcome`: `success`, `failure`,
//! `ignored`, `rejected`), `palisade_circuit_breaker_slow_calls_total` and
//! `palisade_circuit_breaker_opened_total`, the state gauge `palisade_circuit_breaker_state`
//! (label `state`: 1 for the current state, 0 for the others, as Resilience4j's) and the gauge
//! `palisade_circuit_breaker_open_breakers` (rejecting breakers of a layer, useful for keyed
//! ones) are exported with the label `name`.
//!
//! # Performance
//!
//! Closed, a call reads the state word once and writes no cache line that another thread
//! writes on every call: it holds its breaker through a reference counted per stripe of
//! threads, counts its success in its stripe, and records into a window that is striped
//! (time window: one atomic addition into the thread's stripe) or left untouched when the
//! outcome does not change (count window: a success replacing a success claims a position
//! and writes nothing else). A plain success in a window that already holds the minimum
//! number of calls is not judged (it cannot open the breaker); failures and slow calls are.
//! No lock, no allocation; only transitions take a lock. Durations are only measured when
//! slow calls are detected or when [asked
//! for](CircuitBreakerBuilder::measure_call_duration); a time window reads the clock
//! once per call, when it ends — most of its overhead with tokio's clock, a few
//! nanoseconds with [`Clock::quanta`](Clock) (feature `quanta`).
//!
//! Minimum supported Rust version: 1.85.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod breaker;
mod builder;
mod config;
pub mod error;
pub mod event;
pub mod future;
mod handle;
mod keyed;
mod layer;
mod service;
mod settings;
mod state;
mod sync;
mod window;

#[cfg(loom)]
#[doc(hidden)]
pub mod loom;

pub use builder::{CircuitBreakerBuilder, KeyedCircuitBreakerBuilder};
pub use config::CircuitBreakerConfig;
pub use error::{CircuitOpen, ConfigError, KeyMissing, KeySetFull};
pub use event::{CircuitBreakerEvent, TransitionReason};
pub use handle::{CircuitBreakerHandle, CircuitBreakerSnapshot, KeyedCircuitBreakerHandle};
pub use keyed::KeyExtractor;
pub use layer::{CircuitBreakerLayer, KeyedCircuitBreakerLayer};
/// Where a breaker reads the time: tokio's clock (default, controlled by a paused test
/// clock) or, with the `quanta` feature, the CPU's time-stamp counter.
pub use palisade_core::clock::Clock;
/// What a keyed layer does with a request without a key.
pub use palisade_core::keyed::Unkeyed;
pub use service::{CircuitBreaker, KeyedCircuitBreaker};
pub use state::CircuitState;
