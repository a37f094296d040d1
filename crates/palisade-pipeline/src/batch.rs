//! Batches: a collection through any tower service with a concurrency cap, optional pacing
//! and progress reports; results in input order.
//!
//! The runner calls `poll_ready` before every call on the one service it is given, so it
//! composes with any layer that applies backpressure there: wrap the service in a rate
//! limiter (palisade's `RateLimitLayer`, tower's `RateLimitLayer`) or a concurrency limit.
//! For simple pacing without a layer, [`max_per_second`](BatchBuilder::max_per_second) spaces
//! the calls evenly with `tokio::time::interval`.
//!
//! # Example
//!
//! ```
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use std::sync::Arc;
//! use palisade_pipeline::{Batch, Progress};
//! use tower::service_fn;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let last = Arc::new(AtomicUsize::new(0));
//! let seen = last.clone();
//! let batch = Batch::builder()
//!     .max_concurrency(4)
//!     .max_per_second(100)
//!     .on_progress(move |p: Progress| seen.store(p.done, Ordering::Relaxed))
//!     .build()
//!     .unwrap();
//! let send = service_fn(|n: u32| async move {
//!     if n % 10 == 3 { Err("bounced") } else { Ok(n * 2) }
//! });
//! let results = batch.run(send, 0..20).await;
//! assert_eq!(results.len(), 20);
//! assert_eq!(results[1].as_ref().ok(), Some(&2));
//! assert!(results[3].is_err());
//! assert_eq!(last.load(Ordering::Relaxed), 20);
//! # }
//! ```
//!
//! # Cancellation
//!
//! The batch runs inside the returned future; dropping it drops every call in flight.

use std::fmt;
use std::future::poll_fn;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use palisade_core::ConfigError;
use tokio::time::{interval, MissedTickBehavior};
use tower_service::Service;

use palisade_core::panic::{CatchUnwind, Panicked};

use crate::error::BatchError;
use crate::fan::Indexed;

/// How far a batch got; passed to the [progress callback](BatchBuilder::on_progress) after
/// each item completes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Progress {
    /// Items completed (successes and failures).
    pub done: usize,
    /// Items in the batch.
    pub total: usize,
    /// Items that failed.
    pub failures: usize,
}

/// Every option of a [`Batch`]: the builder's storage ([`Batch::builder`]) and, with the
/// feature `serde`, the settings-file form (`{ "max_concurrency": 8, "max_per_second": 100 }`,
/// both optional).
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
#[non_exhaustive]
pub struct BatchConfig {
    /// How many calls run at once (at least 1). Default 16.
    pub max_concurrency: usize,
    /// Calls started per second, evenly spaced (1 to 1,000,000,000). Default: no pacing.
    pub max_per_second: Option<u32>,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self { max_concurrency: DEFAULT_CONCURRENCY, max_per_second: None }
    }
}

/// The highest pacing rate: one call per nanosecond.
const MAX_RATE: u32 = 1_000_000_000;

const DEFAULT_CONCURRENCY: usize = 16;

impl BatchConfig {
    /// Checks every option.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming `max_concurrency` (zero) or `max_per_second` (zero or above
    /// one per nanosecond).
    pub fn validate(&self) -> Result<(), ConfigError> {
        palisade_core::config::ensure(self.max_concurrency >= 1, "max_concurrency", "must be at least 1")?;
        if let Some(n) = self.max_per_second {
            palisade_core::config::ensure(
                (1..=MAX_RATE).contains(&n),
                "max_per_second",
                "must be from 1 to 1000000000",
            )?;
        }
        Ok(())
    }

    /// Validates the settings and builds the batch runner (no progress callback; use
    /// `BatchBuilder::from(config)` to add one).
    ///
    /// # Errors
    ///
    /// As [`validate`](Self::validate).
    pub fn build(self) -> Result<Batch, ConfigError> {
        BatchBuilder::from(self).build()
    }
}

type ProgressFn = Arc<dyn Fn(Progress) + Send + Sync>;

/// Builds a [`Batch`]: a [`BatchConfig`] plus the progress callback.
#[derive(Clone)]
pub struct BatchBuilder {
    config: BatchConfig,
    on_progress: Option<ProgressFn>,
}

impl fmt::Debug for BatchBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BatchBuilder")
            .field("config", &self.config)
            .field("on_progress", &self.on_progress.is_some())
            .finish()
    }
}

impl From<BatchConfig> for BatchBuilder {
    fn from(config: BatchConfig) -> Self {
        Self { config, on_progress: None }
    }
}

impl BatchBuilder {
    /// Sets [`BatchConfig::max_concurrency`].
    pub fn max_concurrency(mut self, n: usize) -> Self {
        self.config.max_concurrency = n;
        self
    }

    /// Sets [`BatchConfig::max_per_second`].
    pub fn max_per_second(mut self, n: u32) -> Self {
        self.config.max_per_second = Some(n);
        self
    }

    /// Calls `f` after each item completes, with the batch's [`Progress`].
    pub fn on_progress<F>(mut self, f: F) -> Self
    where
        F: Fn(Progress) + Send + Sync + 'static,
    {
        self.on_progress = Some(Arc::new(f));
        self
    }

    /// Validates the settings.
    ///
    /// # Errors
    ///
    /// As [`BatchConfig::validate`].
    pub fn build(self) -> Result<Batch, ConfigError> {
        self.config.validate()?;
        Ok(Batch { config: self.config, on_progress: self.on_progress })
    }
}

/// Runs collections through a service; see the [module docs](self).
///
/// # Clone
///
/// Clones share the progress callback.
#[derive(Clone)]
pub struct Batch {
    config: BatchConfig,
    on_progress: Option<ProgressFn>,
}

impl fmt::Debug for Batch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Batch")
            .field("config", &self.config)
            .field("on_progress", &self.on_progress.is_some())
            .finish()
    }
}

impl Batch {
    /// A builder: 16 calls at once, no pacing, no progress callback.
    pub fn builder() -> BatchBuilder {
        BatchBuilder::from(BatchConfig::default())
    }

    /// Runs every item through `service`; the results come back in input order.
    ///
    /// Each call waits for the pacing tick (if any), then for `service.poll_ready`. A
    /// readiness error becomes that item's result, as [`BatchError::Service`].
    ///
    /// The service is user code run by the batch: a panic in its `poll_ready`, its `call`
    /// or a response future fails that item alone with [`BatchError::Panicked`], and the
    /// batch goes on. A progress callback that panics misses that report (the panic is
    /// logged).
    pub async fn run<S, Req, I>(
        &self,
        mut service: S,
        items: I,
    ) -> Vec<Result<S::Response, BatchError<S::Error>>>
    where
        S: Service<Req>,
        I: IntoIterator<Item = Req>,
    {
        let items: Vec<Req> = items.into_iter().collect();
        let total = items.len();
        let mut results: Vec<Option<Result<S::Response, BatchError<S::Error>>>> =
            (0..total).map(|_| None).collect();
        let mut items = items.into_iter().enumerate();
        let mut exhausted = false;
        let mut next: Option<(usize, Req)> = None;
        let mut paced = false;
        let mut ticks = self.config.max_per_second.map(|n| {
            let mut ticks = interval(Duration::from_secs(1) / n);
            ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
            ticks
        });
        let mut in_flight = FuturesUnordered::new();
        let mut progress = Progress { done: 0, total, failures: 0 };

        poll_fn(|cx| loop {
            let mut moved = false;
            let mut record = |index: usize,
                              result: Result<S::Response, BatchError<S::Error>>,
                              progress: &mut Progress| {
                progress.done += 1;
                if result.is_err() {
                    progress.failures += 1;
                }
                if let Some(slot) = results.get_mut(index) {
                    *slot = Some(result);
                }
                if let Some(f) = &self.on_progress {
                    if let Err(e) = crate::panic::catch("progress", || f(*progress)) {
                        tracing::warn!(target: "palisade", error = %e, "a batch progress callback panicked");
                    }
                }
            };

            while let Poll::Ready(Some((index, outcome))) = in_flight.poll_next_unpin(cx) {
                record(index, settle(outcome), &mut progress);
                moved = true;
            }

            if next.is_none() && !exhausted && in_flight.len() < self.config.max_concurrency {
                next = items.next();
                exhausted = next.is_none();
                moved = true;
            }

            if next.is_some() {
                if !paced {
                    paced = match &mut ticks {
                        Some(ticks) => ticks.poll_tick(cx).is_ready(),
                        None => true,
                    };
                }
                if paced {
                    match catch_panic("poll_ready", || service.poll_ready(cx)) {
                        Ok(Poll::Ready(Ok(()))) => {
                            if let Some((index, req)) = next.take() {
                                match catch_panic("call", || service.call(req)) {
                                    Ok(fut) => in_flight.push(Indexed::new(index, CatchUnwind::new(fut))),
                                    Err(e) => record(index, Err(e), &mut progress),
                                }
                            }
                            paced = false;
                            moved = true;
                        }
                        Ok(Poll::Ready(Err(e))) => {
                            if let Some((index, _)) = next.take() {
                                record(index, Err(BatchError::Service(e)), &mut progress);
                            }
                            paced = false;
                            moved = true;
                        }
                        Err(e) => {
                            if let Some((index, _)) = next.take() {
                                record(index, Err(e), &mut progress);
                            }
                            paced = false;
                            moved = true;
                        }
                        Ok(Poll::Pending) => {}
                    }
                }
            }

            if exhausted && next.is_none() && in_flight.is_empty() {
                return Poll::Ready(());
            }
            if !moved {
                return Poll::Pending;
            }
        })
        .await;

        results.into_iter().flatten().collect()
    }
}

fn catch_panic<T, E>(site: &'static str, f: impl FnOnce() -> T) -> Result<T, BatchError<E>> {
    palisade_core::panic::catch(f).map_err(|payload| {
        BatchError::Panicked(Panicked::from_payload("service", "batch", payload).with_site(site))
    })
}

/// A call's outcome through core's [`CatchUnwind`]: its panic, at any poll, is the item's
/// `BatchError::Panicked` (site `"response"`).
fn settle<R, E>(outcome: Result<Result<R, E>, Box<dyn std::any::Any + Send>>) -> Result<R, BatchError<E>> {
    match outcome {
        Ok(result) => result.map_err(BatchError::Service),
        Err(payload) => Err(BatchError::Panicked(
            Panicked::from_payload("service", "batch", payload).with_site("response"),
        )),
    }
}
