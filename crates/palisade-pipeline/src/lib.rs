//! Typed pipelines of tower services: chained stages with backpressure, stream processing,
//! fan-out/fan-in and batches.
//!
//! - [`PipelineService`]: stages chained by a builder, each any tower `Service` (or an async
//!   closure), typed so that each stage's response is the next stage's request. The
//!   pipeline is itself a `Service<In>` — put it behind axum, in a `ServiceBuilder`, in a
//!   batch — and runs streams with [`process_stream`](PipelineService::process_stream):
//!   every stage with its own concurrency and a bounded buffer to the next, so a slow stage
//!   slows the source and memory stays bounded whatever the input length. Stages run on
//!   their own tasks, or inside the output stream ([`Execution::Inline`]).
//! - Filter stages drop items without an error; any layer wraps a single stage (retry only
//!   the enrich stage, a breaker around delivery).
//! - Per-stage error isolation: a failed item becomes a [`StageError`] naming the stage (with
//!   the item if you [keep them](PipelineBuilder::keep_failed_items)), or goes to a
//!   [dead-letter sink](PipelineBuilder::dead_letter), and the stream goes on — or stops,
//!   with [`fail_fast`](PipelineBuilder::fail_fast).
//! - [`fan`]: one request to several services (or split into parts) at once, merged by
//!   strategy: all, first success, quorum, custom reducer; [`merge`]: several result streams
//!   into one, round-robin or as ready.
//! - [`batch`]: a collection through any service with a concurrency cap, pacing and
//!   progress reports, results in input order.
//! - Per-stage numbers from the [`PipelineHandle`]: items in/out, errors, filtered,
//!   dead-lettered, in flight, queue depth, latency; [`PipelineEvent`]s for failures and
//!   dead letters.
//!
//! # Example: a notification pipeline
//!
//! Validate → rate check → deliver through a breaker per channel → track. Here the
//! per-channel protection is tower's `TimeoutLayer`; with palisade's circuit breaker and rate
//! limiter, `CircuitBreakerLayer` goes where the timeout is and `RateLimitLayer` can wrap the
//! delivery stage (or the whole pipeline) in the same way.
//!
//! ```
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use std::sync::{Arc, Mutex};
//! use std::time::Duration;
//!
//! use futures_util::{stream, StreamExt};
//! use palisade_core::BoxError;
//! use palisade_pipeline::{PipelineService, Order};
//! use tower::steer::Steer;
//! use tower::timeout::TimeoutLayer;
//! use tower::util::BoxCloneService;
//! use tower::{service_fn, Layer};
//!
//! #[derive(Clone, Debug)]
//! enum Channel { Email, Sms, Push }
//!
//! #[derive(Clone, Debug)]
//! struct Notification { user: u64, channel: Channel, body: String }
//!
//! #[derive(Debug)]
//! struct Receipt { user: u64, via: &'static str }
//!
//! /// A delivery backend for one channel, behind its own breaker (a timeout here).
//! fn channel(name: &'static str, fails: bool) -> BoxCloneService<Notification, Receipt, BoxError> {
//!     let send = service_fn(move |n: Notification| async move {
//!         if fails { return Err::<_, BoxError>(format!("{name} gateway down").into()); }
//!         Ok(Receipt { user: n.user, via: name })
//!     });
//!     // palisade: CircuitBreakerLayer::builder().name(name).build()?.layer(send)
//!     BoxCloneService::new(TimeoutLayer::new(Duration::from_secs(2)).layer(send))
//! }
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() -> Result<(), BoxError> {
//! // One delivery service per channel, picked by the notification's channel.
//! let deliver = Steer::new(
//!     vec![channel("email", false), channel("sms", true), channel("push", false)],
//!     |n: &Notification, _: &[_]| match n.channel { Channel::Email => 0, Channel::Sms => 1, Channel::Push => 2 },
//! );
//!
//! // A per-user quota: over-quota notifications are dropped, not failed.
//! let sent_per_user = Arc::new(Mutex::new([0u32; 8]));
//! let quota = service_fn(move |n: Notification| {
//!     let sent = sent_per_user.clone();
//!     async move {
//!         let mut sent = sent.lock().unwrap();
//!         let count = &mut sent[(n.user % 8) as usize];
//!         *count += 1;
//!         Ok::<_, BoxError>((*count <= 2).then_some(n))
//!     }
//! });
//!
//! let delivered = Arc::new(AtomicUsize::new(0));
//! let tracked = delivered.clone();
//! let failed = Arc::new(Mutex::new(Vec::new()));
//! let dead_letters = failed.clone();
//!
//! let pipeline = PipelineService::builder::<Notification>()
//!     .name("notify")
//!     .filter("validate", |n: &Notification| !n.body.is_empty())
//!     .filter_map("rate-check", quota)
//!     .stage("deliver", deliver)
//!     .concurrency(8)
//!     .dead_letter(move |letter| dead_letters.lock().unwrap().push(letter.into_parts().0))
//!     .map("track", move |receipt: Receipt| {
//!         tracked.fetch_add(1, Ordering::Relaxed);
//!         receipt
//!     })
//!     .order(Order::Completion)
//!     .build()?;
//!
//! let notifications = (0..12u64).map(|i| Notification {
//!     user: i % 4,
//!     channel: [Channel::Email, Channel::Sms, Channel::Push][(i % 3) as usize].clone(),
//!     body: if i == 5 { String::new() } else { format!("hello #{i}") },
//! });
//! let receipts: Vec<Receipt> = pipeline
//!     .process_stream(stream::iter(notifications))
//!     .filter_map(|r| async move { r.ok() })
//!     .collect()
//!     .await;
//!
//! let snapshot = pipeline.handle().snapshot();
//! assert_eq!(snapshot.stage("validate").unwrap().filtered, 1);   // the empty body
//! assert_eq!(snapshot.stage("rate-check").unwrap().filtered, 3); // over quota
//! let undelivered = failed.lock().unwrap().len();                 // SMS gateway down
//! assert_eq!(receipts.len() + undelivered, 12 - 1 - 3);
//! assert_eq!(delivered.load(Ordering::Relaxed), receipts.len());
//! assert!(receipts.iter().all(|r| r.via != "sms"));
//!
//! // The same pipeline is a `Service` for one notification at a time.
//! use tower::ServiceExt;
//! let one = Notification { user: 6, channel: Channel::Push, body: "hi".into() };
//! assert!(pipeline.oneshot(one).await?.into_item().is_some());
//! # Ok(()) }
//! ```
//!
//! # Backpressure and memory
//!
//! In a stream, stage `i` holds at most `concurrency_i` items (waiting for its service, in
//! flight, or done and waiting for room) and its output buffer at most `buffer_i`; it reads
//! from the previous buffer (the first stage from the input stream) only when it has a free
//! slot. So the input is read no further than `Σ (concurrency_i + buffer_i)` items ahead of
//! the consumer, and a slow stage slows everything before it. As a `Service`, the pipeline's
//! `poll_ready` is the first stage's; later stages are polled ready inside the response
//! future.
//!
//! # Cancellation
//!
//! A stream's stage tasks live in a `JoinSet` owned by the returned [`PipelineStream`]
//! (with [`Execution::Inline`], the stages live in the stream itself): dropping it aborts
//! them, dropping every call and item in flight. A call through the
//! pipeline as a `Service` runs in the caller's task; dropping its future drops it. Batches
//! and fan-outs run inside their futures. Nothing is spawned detached.
//!
//! # Performance
//!
//! Items move between stages in batches under one short lock, and a call that completes on
//! its first poll (a cheap stage) skips the in-flight set and reuses its allocation. On the
//! repository's bench (`benches/pipeline.rs`: three stages, 16 calls at once each), a
//! pipeline runs no-op stages faster than a hand-written
//! `StreamExt::buffered` chain, and stages that really wait (each call parked and woken)
//! about 2× slower, the price of running each stage on its own task (use
//! [`Execution::Inline`] to keep them in one).
//!
//! # Clone
//!
//! Clones of a pipeline share its metrics and event listeners and hold clones of the stage
//! services.
//!
//! This crate is part of [palisade](https://docs.rs/palisade); its minimum supported Rust
//! version is 1.85.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod batch;
pub mod chain;
mod config;
pub mod error;
pub mod fan;
mod handle;
pub mod merge;
mod output;
mod queue;
mod service;
pub mod stage;
mod stream;
mod worker;

#[cfg(feature = "serde")]
#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
pub use crate::batch::BatchConfig;
pub use crate::batch::{Batch, BatchBuilder, Progress};
pub use crate::config::PipelineBuilder;
pub use crate::error::{DeadLetter, FanOutError, StageError};
pub use crate::fan::FanOut;
pub use crate::handle::{PipelineEvent, PipelineHandle, PipelineSnapshot, StageSnapshot};
pub use crate::output::{Execution, FilterMode, Filtered, NoFilter, Order, Processed, WithFilter};
pub use crate::service::{PipelineService, ResponseFuture};
pub use crate::stream::PipelineStream;
