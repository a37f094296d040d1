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
//! - Healing and aggregation: [`supervise`] rebuilds a stage from its `MakeService` after N
//!   failures in a row; [`priority`] merges inputs by priority with inputs added and removed
//!   while merging; [`fan::all_settled`] keeps every success and every error by index.
//! - [`batch`]: a collection through any service with a concurrency cap, pacing and
//!   progress reports, results in input order.
//! - Per-stage numbers from the [`PipelineHandle`]: items in/out, errors, filtered,
//!   dead-lettered, in flight, queue depth, latency; [`PipelineEvent`]s for failures and
//!   dead letters.
//!
//! # Example: a notification pipeline
//!
//! Validate → rate check → deliver → track, with palisade's own layers on single stages:
//! a [`RateLimitLayer`](https://docs.rs/palisade-rate-limit) keyed per user around the rate
//! check, and a [`CircuitBreakerLayer`](https://docs.rs/palisade-circuit-breaker) keyed per
//! channel around delivery, so that a dead SMS gateway opens the SMS breaker only while email
//! and push keep flowing.
//!
//! ```
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! use futures_util::{stream, StreamExt};
//! use palisade_circuit_breaker::{CircuitBreakerLayer, CircuitState};
//! use palisade_core::rejection::{CircuitOpen, RateLimited};
//! use palisade_core::BoxError;
//! use palisade_pipeline::{Order, PipelineService, StageError};
//! use palisade_rate_limit::{Quota, RateLimitLayer};
//! use tower::{service_fn, ServiceExt};
//!
//! #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
//! enum Channel { Email, Sms, Push }
//!
//! #[derive(Clone, Debug)]
//! struct Notification { user: u64, channel: Channel, body: String }
//!
//! #[derive(Debug)]
//! struct Receipt { user: u64, via: Channel }
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() -> Result<(), BoxError> {
//! // Three notifications per user per hour. Over quota, a notification is not dropped
//! // silently: it comes out as the rate check's `StageError`, holding `RateLimited` (with
//! // its `retry_after`) and, thanks to `keep_failed_items`, the notification to reschedule.
//! let per_user = RateLimitLayer::builder()
//!     .name("per-user")
//!     .quota(Quota::per_hour(3))
//!     .keyed(|n: &Notification| Some(n.user))
//!     .build()?;
//! let admit = service_fn(|n: Notification| async move { Ok::<_, BoxError>(n) });
//!
//! // One breaker per channel: three failures in a row open that channel's breaker alone.
//! let per_channel = CircuitBreakerLayer::builder()
//!     .name("deliver")
//!     .consecutive_failures(3)
//!     .wait_in_open(Duration::from_secs(30))
//!     .keyed(|n: &Notification| Some(n.channel))
//!     .build()?;
//! let breakers = per_channel.handle();
//!
//! // The gateways: SMS is down.
//! let sms_attempts = Arc::new(AtomicUsize::new(0));
//! let attempts = sms_attempts.clone();
//! let gateway = service_fn(move |n: Notification| {
//!     let attempts = attempts.clone();
//!     async move {
//!         if n.channel == Channel::Sms {
//!             attempts.fetch_add(1, Ordering::Relaxed);
//!             return Err::<Receipt, BoxError>("SMS gateway down".into());
//!         }
//!         Ok(Receipt { user: n.user, via: n.channel })
//!     }
//! });
//!
//! let tracked = Arc::new(AtomicUsize::new(0));
//! let track = tracked.clone();
//! let pipeline = PipelineService::builder::<Notification>()
//!     .name("notify")
//!     .filter("validate", |n: &Notification| !n.body.is_empty())
//!     .layered("rate-check", per_user, admit)
//!     .keep_failed_items()
//!     .layered("deliver", per_channel, gateway)
//!     .concurrency(8)
//!     .map("track", move |receipt: Receipt| {
//!         track.fetch_add(1, Ordering::Relaxed);
//!         receipt
//!     })
//!     .order(Order::Completion)
//!     .build()?;
//!
//! // Four notifications for each of users 0..4, round the channels; #5 has no body.
//! let channels = [Channel::Email, Channel::Sms, Channel::Push];
//! let notifications = (0..16u64).map(move |i| Notification {
//!     user: i / 4,
//!     channel: channels[(i % 3) as usize],
//!     body: if i == 5 { String::new() } else { format!("hello #{i}") },
//! });
//! let mut results = pipeline.process_stream(stream::iter(notifications));
//! let (mut receipts, mut errors) = (Vec::new(), Vec::<StageError>::new());
//! while let Some(result) = results.next().await {
//!     match result {
//!         Ok(receipt) => receipts.push(receipt),
//!         Err(e) => errors.push(e), // the item's stage and error; the stream goes on
//!     }
//! }
//! let failed_at = |stage: &str| errors.iter().filter(|e| e.stage() == stage).count();
//!
//! // Users 0, 2 and 3 sent a fourth notification (user 1's fourth was invalid).
//! assert_eq!(pipeline.handle().snapshot().stage("validate").unwrap().filtered, 1);
//! assert_eq!(failed_at("rate-check"), 3);
//! let mut limited = Vec::new();
//! for e in errors.iter().filter(|e| e.stage() == "rate-check") {
//!     let rejection = e.error().downcast_ref::<RateLimited>().unwrap();
//!     assert_eq!(rejection.retry_after(), Duration::from_secs(20 * 60)); // the next token
//!     limited.push(e.item::<Notification>().unwrap().body.clone());
//! }
//! limited.sort();
//! assert_eq!(limited, ["hello #11", "hello #15", "hello #3"]);
//!
//! // Of the 12 admitted, the 4 emails and 3 pushes were delivered; the 5 SMS failed:
//! // 3 reached the gateway and opened the SMS breaker, which refused the other 2.
//! assert_eq!(receipts.len(), 7);
//! assert!(receipts.iter().all(|r| r.via != Channel::Sms));
//! assert_eq!(tracked.load(Ordering::Relaxed), 7);
//! assert_eq!(failed_at("deliver"), 5);
//! assert_eq!(sms_attempts.load(Ordering::Relaxed), 3);
//! let refused = errors.iter().filter(|e| e.error().is::<CircuitOpen>()).count();
//! assert_eq!(refused, 2);
//! assert_eq!(breakers.get(&Channel::Sms).unwrap().state(), CircuitState::Open);
//! assert_eq!(breakers.get(&Channel::Email).unwrap().state(), CircuitState::Closed);
//! assert_eq!(breakers.get(&Channel::Push).unwrap().state(), CircuitState::Closed);
//!
//! // The same pipeline is a `Service` for one notification at a time.
//! let push = Notification { user: 7, channel: Channel::Push, body: "hi".into() };
//! assert!(pipeline.clone().oneshot(push).await?.into_item().is_some());
//! let sms = Notification { user: 7, channel: Channel::Sms, body: "hi".into() };
//! let err = pipeline.oneshot(sms).await.unwrap_err();
//! assert_eq!(err.stage(), "deliver");
//! assert!(err.error().is::<CircuitOpen>()); // refused at once, the gateway is spared
//! assert_eq!(sms_attempts.load(Ordering::Relaxed), 3);
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
mod builder;
pub mod chain;
pub mod error;
mod event;
pub mod fan;
mod handle;
pub mod merge;
mod output;
mod panic;
pub mod priority;
mod queue;
mod service;
pub mod stage;
mod stream;
pub mod supervise;
mod worker;

pub use crate::batch::{Batch, BatchBuilder, BatchConfig, Progress};
pub use crate::builder::PipelineBuilder;
pub use crate::error::{BatchError, DeadLetter, FanOutError, NotReady, Panicked, StageError};
pub use crate::event::PipelineEvent;
pub use crate::fan::FanOut;
pub use crate::handle::{PipelineHandle, PipelineSnapshot, StageSnapshot};
pub use crate::output::{Execution, FilterMode, Filtered, NoFilter, Order, Processed, WithFilter};
pub use crate::service::{PipelineService, ResponseFuture};
pub use crate::stream::PipelineStream;
