//! Bulkheads for tower: a fixed number of permits with a bounded, fair, time-limited wait;
//! per-key bulkheads; and adaptive concurrency limits that learn the limit.
//!
//! tower's `ConcurrencyLimit` waits forever in an unbounded line and `LoadShed` refuses with
//! no line at all. A [`BulkheadLayer`] is either, or the middle: at most `max_concurrent`
//! calls at once; a call that finds every permit taken is refused at once with a typed
//! [`BulkheadFull`] (the default, as Resilience4j's bulkhead), or waits in FIFO order — up
//! to `max_queue` callers, each for at most the wait of
//! [`WhenFull::wait`](palisade_core::WhenFull::wait) — and is refused after. palisade's
//! `HttpRejectionLayer` answers a refusal with 503 (and `Retry-After` when
//! [`retry_after`](BulkheadConfig::retry_after) is set).
//!
//! ```
//! use palisade_bulkhead::BulkheadLayer;
//!
//! // The common case: 32 calls at once, the rest refused.
//! let bulkhead = BulkheadLayer::new(32);
//! # let _ = bulkhead;
//! ```
//!
//! # Defaults
//!
//! [`BulkheadConfig`] holds every option; where Resilience4j's `BulkheadConfig.ofDefaults()`
//! has the option, the default is Resilience4j's (`DEFAULT_MAX_CONCURRENT_CALLS` 25,
//! `DEFAULT_MAX_WAIT_DURATION` 0):
//!
//! | option | default |
//! |---|---|
//! | `max_concurrent` | 25 (`maxConcurrentCalls`) |
//! | `when_full` | `WhenFull::Refuse` (`maxWaitDuration` 0: refuse at once) |
//! | `max_queue` | no bound (used only with `WhenFull::Wait`) |
//! | `retry_after` | none |
//! | `shed_when_inner_not_ready` | off |
//! | `max_keys` / `when_unkeyed` (keyed) | 100,000 / `Unkeyed::Reject` |
//!
//! # Example: protect a slow axum route
//!
//! ```
//! use std::time::Duration;
//! use axum::{routing::get, Router};
//! use palisade_bulkhead::BulkheadLayer;
//! use palisade_core::respond::HttpRejectionLayer;
//! use palisade_core::WhenFull;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! async fn report() -> &'static str {
//!     // An expensive query we never want more than 4 of at once.
//!     "done"
//! }
//!
//! # tokio_test::block_on(async {
//! let bulkhead = BulkheadLayer::builder()
//!     .name("reports")
//!     .max_concurrent(4)
//!     .when_full(WhenFull::wait(Duration::from_millis(500)))
//!     .max_queue(16)
//!     .retry_after(Duration::from_secs(1))
//!     .build()
//!     .unwrap();
//! let reports = bulkhead.handle();
//!
//! let app = Router::new()
//!     .route("/report", get(report))
//!     // Rejections become 503 responses, so axum needs no `HandleErrorLayer`.
//!     .route_layer(ServiceBuilder::new().layer(HttpRejectionLayer::new()).layer(bulkhead));
//!
//! let res = app
//!     .oneshot(http::Request::get("/report").body(axum::body::Body::empty()).unwrap())
//!     .await
//!     .unwrap();
//! assert_eq!(res.status(), 200);
//! assert_eq!(reports.snapshot().rejected(), 0);
//! assert_eq!(reports.in_flight(), 0);
//! # });
//! ```
//!
//! # Backpressure
//!
//! `poll_ready` reserves a permit (waiting in the queue while none is free) and `call`
//! moves it into the response future, as tower's `ConcurrencyLimit` does. A caller that
//! cannot have one — no permit and no wait allowed ([`NoPermit`](BulkheadFullReason::NoPermit),
//! the default), queue full ([`BulkheadFullReason::QueueFull`]) or wait expired
//! ([`WaitTimedOut`](BulkheadFullReason::WaitTimedOut)) — gets `Ready(Ok(()))` from
//! `poll_ready` and the rejection from `call`, so stacks that treat a `poll_ready` error as
//! fatal (`Buffer`, balancers) survive refusals.
//!
//! # What clones share
//!
//! Everything built from one layer value shares one pool of permits: clones of the layer,
//! every service it wraps, every clone of those (axum clones per request). Several routes
//! share a pool through a [`BulkheadHandle`] ([`BulkheadHandle::layer`]). Each clone of a
//! service holds at most its own reserved permit and starts un-ready.
//!
//! # Failure behaviour
//!
//! A permit is given back on every path: the call succeeds or fails, its future panics
//! (the permit is dropped while unwinding), the response future is dropped early, or a
//! service that reserved a permit is dropped without calling. A waiter that is dropped
//! leaves the queue at once; a permit freed meanwhile goes to the next in line.
//!
//! # Changing limits at run time
//!
//! The [`BulkheadHandle`] changes `max_concurrent`, `when_full` and `max_queue` while the
//! bulkhead serves (Resilience4j's `changeConfig`); the [`AdaptiveLimitHandle`] sets an
//! adaptive limit directly or changes its bounds (concurrency-limits' `SettableLimit`).
//! Calls in flight keep their permits: a limit lowered below them lets them finish and
//! admits nothing until fewer than the new limit are in flight.
//!
//! # Shedding when the inner service is not ready
//!
//! By default a caller holding a permit waits for the inner service to be ready, as tower's
//! `ConcurrencyLimit`. With [`BulkheadBuilder::shed_when_inner_not_ready`] (and the same on
//! the adaptive builder) it is refused at once with [`Overloaded`] instead, as tower's
//! `LoadShed`, and the permit goes back.
//!
//! # Bad settings and user code
//!
//! Settings are checked when the layer is built ([`ConfigError`]
//! with the field's name); a wait too long for the clock saturates to "effectively never"
//! ([`palisade_core::time`]); sizes are counters, never allocations. A panicking event
//! listener, limit algorithm or Vegas function is contained: the limit stays where it was
//! and every permit still goes back.
//!
//! # Also here
//!
//! - [`KeyedBulkheadLayer`] (from [`BulkheadBuilder::keyed`]): a pool per key (tenant, IP),
//!   a bounded number of keys, an explicit answer for requests without a key.
//! - [`AdaptiveLimitLayer`]: the limit moved by AIMD, Vegas or Gradient2 from observed
//!   latency and drops, with partitions and a LIFO backlog; see [`adaptive`].
//! - Events ([`BulkheadEvent`], [`AdaptiveLimitEvent`]) to listeners (`on_event`) and
//!   `tracing`; snapshots from the handles; metrics `palisade_bulkhead_*` (every wait counted
//!   in `palisade_bulkhead_waited_total` and `palisade_bulkhead_wait_seconds`, however it
//!   ended) and `palisade_adaptive_limit_*` with feature `metrics`; [`BulkheadConfig`] and
//!   [`AdaptiveLimitConfig`] from config files with feature
//!   `serde`; every error in [`error`].
//!
//! Minimum supported Rust version: 1.85.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod adaptive;
mod builder;
mod compartment;
mod config;
pub mod error;
pub mod event;
pub mod future;
mod handle;
mod keyed;
mod layer;
mod service;

pub use self::adaptive::{
    AdaptiveLimit, AdaptiveLimitBuilder, AdaptiveLimitConfig, AdaptiveLimitHandle, AdaptiveLimitLayer,
    AdaptiveLimitSnapshot,
};
pub use self::builder::{BulkheadBuilder, KeyedBulkheadBuilder};
pub use self::config::{BulkheadConfig, DEFAULT_MAX_CONCURRENT, DEFAULT_MAX_KEYS};
pub use self::error::{BulkheadFull, BulkheadFullReason, ConfigError, KeyMissing, KeySetFull, Overloaded};
pub use self::event::{AdaptiveLimitEvent, BulkheadEvent};
pub use self::handle::{BulkheadHandle, BulkheadSnapshot};
pub use self::keyed::{KeyedBulkhead, KeyedBulkheadHandle, KeyedBulkheadLayer, KeyedBulkheadSnapshot};
pub use self::layer::BulkheadLayer;
pub use self::service::Bulkhead;

/// Internals exposed to the loom model checker only (`--cfg loom`).
#[cfg(loom)]
#[doc(hidden)]
#[allow(missing_docs, missing_debug_implementations)]
pub mod __loom {
    use std::task::Waker;

    use loom::sync::atomic::{AtomicUsize, Ordering};

    use crate::compartment::FreePermits;

    /// The bulkhead's pool of permits and its shrink debt, over a model of tokio's
    /// semaphore counter (same atomic operations and orderings for what the pool uses).
    pub struct Pool(crate::compartment::Pool<SemaphoreModel>);

    impl Pool {
        pub fn new(permits: usize) -> Self {
            Self(crate::compartment::Pool::new(SemaphoreModel(AtomicUsize::new(permits))))
        }

        /// A caller's `try_acquire`: whether it was admitted.
        pub fn try_acquire(&self) -> bool {
            self.0.semaphore().try_acquire()
        }

        /// A held permit's drop.
        pub fn release_one(&self) {
            self.0.release_one();
        }

        /// `set_max_concurrent` lowering the limit by `by` (resizes are serialised).
        pub fn shrink(&self, by: usize) {
            self.0.shrink(by);
        }

        /// `set_max_concurrent` raising the limit by `by` (resizes are serialised).
        pub fn grow(&self, by: usize) {
            self.0.grow(by);
        }

        pub fn available(&self) -> usize {
            self.0.semaphore().0.load(Ordering::Acquire)
        }

        pub fn debt(&self) -> usize {
            self.0.debt()
        }
    }

    /// tokio's `batch_semaphore` counter without its wait list (1.54: `try_acquire` loads
    /// and gives up or CASes `AcqRel`; `release` adds `Release` under the wait-list lock,
    /// left out here, which only makes the model weaker; `forget_permits` CASes `AcqRel`
    /// even when it takes nothing).
    pub struct SemaphoreModel(AtomicUsize);

    impl SemaphoreModel {
        fn try_acquire(&self) -> bool {
            let mut curr = self.0.load(Ordering::Acquire);
            loop {
                if curr == 0 {
                    return false;
                }
                match self.0.compare_exchange(curr, curr - 1, Ordering::AcqRel, Ordering::Acquire) {
                    Ok(_) => return true,
                    Err(actual) => curr = actual,
                }
            }
        }
    }

    impl FreePermits for SemaphoreModel {
        fn add_permits(&self, n: usize) {
            if n != 0 {
                self.0.fetch_add(n, Ordering::Release);
            }
        }

        fn forget_permits(&self, n: usize) -> usize {
            if n == 0 {
                return 0;
            }
            let mut curr = self.0.load(Ordering::Acquire);
            loop {
                match self.0.compare_exchange(
                    curr,
                    curr.saturating_sub(n),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => return curr.min(n),
                    Err(actual) => curr = actual,
                }
            }
        }
    }

    #[derive(Default)]
    pub struct Waiter(crate::adaptive::limiter::Waiter);

    impl Waiter {
        pub fn register(&self, waker: &Waker) {
            self.0.register(waker);
        }

        pub fn is_granted(&self) -> bool {
            self.0.is_granted()
        }

        pub fn grant(&self) {
            self.0.grant();
        }
    }
}
