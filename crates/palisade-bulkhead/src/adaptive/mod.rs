//! Adaptive concurrency limits: a limit that learns how much the service can take.
//!
//! [`AdaptiveLimitLayer`] measures every call — its latency and
//! its [classification](palisade_core::classify) — and lets an algorithm move the limit
//! between its minimum and maximum: [`Vegas`] (the default), [`Aimd`] or [`Gradient2`]
//! (or [`Fixed`]), computing what Netflix's concurrency-limits computes with its defaults
//! (see [`algorithm`] for the few deliberate deviations and why). A call over the limit is shed with
//! [`Overloaded`](palisade_core::rejection::Overloaded), or waits in an optional LIFO
//! backlog. Partitions guarantee shares of the limit to classes of traffic. The current
//! limit is in the [handle](crate::AdaptiveLimitHandle) and in the gauge
//! `palisade_adaptive_limit_limit`.
//!
//! # Example: around a gRPC client
//!
//! A tonic `Channel` is a `Service<http::Request<B>>`; `GrpcClassifier` (feature `grpc`)
//! judges its responses by `grpc-status`, so `UNAVAILABLE`, `RESOURCE_EXHAUSTED` and
//! `DEADLINE_EXCEEDED` count as drops and shrink the limit:
//!
//! ```
//! use std::time::Duration;
//! use palisade_bulkhead::adaptive::Gradient2;
//! use palisade_bulkhead::AdaptiveLimitLayer;
//! use palisade_core::classify::GrpcClassifier;
//! use palisade_core::WhenFull;
//! use tower::{service_fn, Layer, ServiceExt};
//!
//! # tokio_test::block_on(async {
//! // Stands in for `tonic::transport::Channel`: same request and response types.
//! let channel = service_fn(|_req: http::Request<String>| async {
//!     let res = http::Response::builder()
//!         .header("content-type", "application/grpc")
//!         .header("grpc-status", "14") // UNAVAILABLE
//!         .body(String::new())
//!         .unwrap();
//!     Ok::<_, std::convert::Infallible>(res)
//! });
//!
//! let layer = AdaptiveLimitLayer::builder()
//!     .name("inventory")
//!     .algorithm(Gradient2::default().initial_limit(50).min_limit(5).max_limit(500))
//!     .classifier(GrpcClassifier::new())
//!     .when_full(WhenFull::wait(Duration::from_millis(50)))
//!     .max_queue(100)
//!     .build()
//!     .unwrap();
//! let limit = layer.handle();
//! let client = layer.layer(channel);
//!
//! // With tonic: `InventoryClient::new(client)`.
//! let res = client.oneshot(http::Request::new(String::new())).await.unwrap();
//! assert_eq!(res.headers()["grpc-status"], "14");
//! assert_eq!(limit.limit(), 45); // UNAVAILABLE was a drop: 50 × 0.9
//! # });
//! ```
//!
//! # Partitions and backlog
//!
//! ```
//! use std::time::Duration;
//! use palisade_bulkhead::adaptive::Aimd;
//! use palisade_bulkhead::AdaptiveLimitLayer;
//! use palisade_core::WhenFull;
//!
//! let layer = AdaptiveLimitLayer::builder()
//!     .algorithm(Aimd::default())
//!     .partition("live", 0.9)
//!     .partition("batch", 0.1)
//!     .partition_by(|req: &http::Request<()>| {
//!         if req.headers().contains_key("x-batch") { "batch" } else { "live" }
//!     })
//!     .when_full(WhenFull::wait(Duration::from_millis(100)))
//!     .max_queue(50)
//!     .build()
//!     .unwrap();
//! assert_eq!(layer.handle().snapshot().partitions[0].limit, 18); // 90 % of 20
//! ```
//!
//! # Backpressure and failure behaviour
//!
//! `poll_ready` only readies the inner service; admission happens in `call`, because the
//! partition comes from the request. By default ([`WhenFull::Refuse`](palisade_core::WhenFull))
//! a call over the limit fails at once; with `when_full(WhenFull::wait(d))` its response
//! future waits in the backlog (newest first, at most `max_queue` calls) up to `d`, holding
//! the ready inner service. Capacity goes back when the response future finishes or is dropped;
//! a finished call is a sample for the algorithm, a dropped future is not. A response whose
//! outcome comes at the end of its body — a gRPC stream with `GrpcClassifier`, its status in
//! the trailers (see [`palisade_core::classify::eos`]) — holds its capacity until the body
//! ends and is judged then, its latency measured to the end, as concurrency-limits' gRPC
//! interceptor releases its listener in `onClose`; a stream dropped before its end gives the
//! capacity back without a sample (`onIgnore`, as a cancelled call).
//!
//! Put timeouts *inside* the limit (`ServiceBuilder::new().layer(adaptive).layer(timeout)`):
//! a timeout then reaches the classifier as an error — a drop that shrinks the limit. A
//! timeout layer outside drops the response future instead, and a dropped future counts as
//! a cancelled call, which says nothing about the service (as concurrency-limits treats
//! cancellation).
//!
//! State is behind one `Mutex` (the algorithm's update must be serialised, as in
//! concurrency-limits); it is held for a few comparisons per call. A panic in user code run
//! by the limiter (a custom algorithm, Vegas' functions, an event listener) is contained:
//! the limit stays where it was and capacity is still given back.
//!
//! # Changing the limit at run time
//!
//! The [handle](crate::AdaptiveLimitHandle) sets the limit directly
//! ([`set_limit`](crate::AdaptiveLimitHandle::set_limit), concurrency-limits'
//! `SettableLimit`) or changes the algorithm's bounds
//! ([`set_bounds`](crate::AdaptiveLimitHandle::set_bounds)). Calls in flight keep their
//! capacity; a limit lowered below them admits nothing until they are fewer than it. The
//! backlog's wait and length change too ([`set_when_full`](crate::AdaptiveLimitHandle::set_when_full),
//! [`set_max_queue`](crate::AdaptiveLimitHandle::set_max_queue)), for calls arriving from
//! then on, as the bulkhead's handle does.
//!
//! # Partitions and LIFO backlog, against the reference
//!
//! Admission is concurrency-limits' `AbstractPartitionedLimiter`: a call passes while the
//! total is under the limit, and otherwise only if its partition is under its share
//! `max(1, ceil(limit × ratio))`; a call in no partition only passes under the limit. The
//! backlog is its `LifoBlockingLimiter` (newest first, bounded length and wait), with one
//! deliberate deviation: freed capacity goes to the newest waiter *that fits* (the reference
//! only tries the newest and stops, so a waiting `batch` call could hold back `live` calls
//! that have room in their share), and as many waiters as fit are admitted at once (the
//! reference admits one per released call, so a raised limit would sit unused). The
//! reference's `partitionRejectDelay` (sleeping a rejected thread) has no equivalent: an
//! async caller is refused at once. The backlog is off unless asked for
//! (`when_full(WhenFull::wait(d))`: the wait has no default, the reference's is 1 s); its
//! length defaults to the reference's 100 (`max_queue`), and its wait is one duration (the
//! reference also takes a function of the request). concurrency-limits' `WindowedLimit` and
//! the first `GradientLimit` are not ported: every call is a sample.

pub mod algorithm;
mod builder;
mod config;
pub(crate) mod future;
mod handle;
mod layer;
pub(crate) mod limiter;
mod partition;
mod service;

pub use self::algorithm::{functions, Aimd, Fixed, FloatFn, Gradient2, IntFn, LimitAlgorithm, Sample, Vegas};
pub use self::builder::AdaptiveLimitBuilder;
pub use self::config::{
    AdaptiveLimitConfig, AimdConfig, AlgorithmConfig, Gradient2Config, PartitionConfig, VegasConfig,
    DEFAULT_MAX_QUEUE,
};
pub use self::handle::{AdaptiveLimitHandle, AdaptiveLimitSnapshot, PartitionSnapshot};
pub use self::layer::AdaptiveLimitLayer;
pub use self::partition::{Bypass, NoPartitions, PartitionBy, Partitioner};
pub use self::service::AdaptiveLimit;
