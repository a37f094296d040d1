//! The shared state of an adaptive limit: the algorithm, in-flight counts per partition
//! and the LIFO backlog.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use std::time::Duration;

use palisade_core::__private::{Counter, Gauge, Histogram};
use palisade_core::config::{ensure, ConfigError};
use palisade_core::event::EventBus;
use palisade_core::rejection::Overloaded;
use palisade_core::WhenFull;

use super::algorithm::{LimitAlgorithm, Sample};
use crate::event::AdaptiveLimitEvent;

mod permit;
mod waiter;

pub(crate) use self::permit::{AdaptivePermit, BacklogSlot};
pub(crate) use self::waiter::Waiter;

pub(crate) struct Metrics {
    pub(crate) limit: Gauge,
    pub(crate) in_flight: Gauge,
    pub(crate) backlog: Gauge,
    pub(crate) acquired: Counter,
    pub(crate) rejected: Counter,
    pub(crate) bypassed: Counter,
    pub(crate) dropped: Counter,
    pub(crate) wait_time: Histogram,
}

pub(crate) struct PartitionShare {
    pub(crate) name: Arc<str>,
    pub(crate) ratio: f64,
}

struct PartitionState {
    limit: usize,
    in_flight: usize,
}

struct BacklogEntry {
    waiter: Arc<Waiter>,
    partition: Option<usize>,
}

struct State {
    algorithm: Box<dyn LimitAlgorithm>,
    limit: usize,
    in_flight: usize,
    partitions: Vec<PartitionState>,
    /// Newest last: grants go to the back first (LIFO).
    backlog: Vec<BacklogEntry>,
    /// Whether, and how long, a call over the limit waits in the backlog (changeable
    /// through the handle: read under this lock, so a change is atomic with admission).
    when_full: WhenFull,
    /// How many calls may wait in the backlog.
    max_queue: usize,
}

impl State {
    fn can_acquire(&self, partition: Option<usize>) -> bool {
        // As concurrency-limits' partitioned limiter: a call passes while the total is
        // under the limit, and a partition may always use its own share.
        self.in_flight < self.limit
            || partition.and_then(|p| self.partitions.get(p)).is_some_and(|p| p.in_flight < p.limit)
    }

    fn take(&mut self, partition: Option<usize>) -> usize {
        self.in_flight += 1;
        if let Some(p) = partition.and_then(|p| self.partitions.get_mut(p)) {
            p.in_flight += 1;
        }
        self.in_flight
    }
}

pub(crate) struct Limiter {
    pub(crate) name: Arc<str>,
    pub(crate) events: EventBus<AdaptiveLimitEvent>,
    pub(crate) metrics: Metrics,
    pub(crate) partitions: Vec<PartitionShare>,
    limit: AtomicUsize,
    state: Mutex<State>,
}

impl fmt::Debug for Limiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Limiter")
            .field("name", &self.name)
            .field("limit", &self.limit())
            .finish_non_exhaustive()
    }
}

fn partition_limit(limit: usize, ratio: f64) -> usize {
    ((limit as f64 * ratio).ceil() as usize).max(1)
}

/// Why an acquisition did not succeed at once.
pub(crate) enum Denied {
    Rejected(Overloaded),
    /// A place in the backlog, and the longest wait in force when it was taken.
    Queued(BacklogSlot, Duration),
}

impl Limiter {
    pub(crate) fn new(
        name: Arc<str>,
        events: EventBus<AdaptiveLimitEvent>,
        algorithm: Box<dyn LimitAlgorithm>,
        partitions: Vec<PartitionShare>,
        when_full: WhenFull,
        max_queue: usize,
    ) -> Self {
        let limit = algorithm.limit().max(1);
        let metrics = Metrics {
            limit: Gauge::new("palisade_adaptive_limit_limit", &name),
            in_flight: Gauge::new("palisade_adaptive_limit_in_flight", &name),
            backlog: Gauge::new("palisade_adaptive_limit_backlog", &name),
            acquired: Counter::labeled("palisade_adaptive_limit_calls_total", &name, ("outcome", "acquired")),
            rejected: Counter::labeled("palisade_adaptive_limit_calls_total", &name, ("outcome", "rejected")),
            bypassed: Counter::labeled("palisade_adaptive_limit_calls_total", &name, ("outcome", "bypassed")),
            dropped: Counter::new("palisade_adaptive_limit_dropped_total", &name),
            wait_time: Histogram::new("palisade_adaptive_limit_wait_seconds", &name),
        };
        metrics.limit.set(limit as i64);
        let part_state = partitions
            .iter()
            .map(|p| PartitionState { limit: partition_limit(limit, p.ratio), in_flight: 0 })
            .collect();
        Self {
            name,
            events,
            metrics,
            partitions,
            limit: AtomicUsize::new(limit),
            state: Mutex::new(State {
                algorithm,
                limit,
                in_flight: 0,
                partitions: part_state,
                backlog: Vec::new(),
                when_full,
                max_queue,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        palisade_core::sync::lock(&self.state)
    }

    pub(crate) fn limit(&self) -> usize {
        self.limit.load(Ordering::Acquire)
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.lock().in_flight
    }

    pub(crate) fn backlog_len(&self) -> usize {
        self.lock().backlog.len()
    }

    /// `(name, limit, in_flight)` per partition.
    pub(crate) fn partition_state(&self) -> Vec<(Arc<str>, usize, usize)> {
        let state = self.lock();
        self.partitions
            .iter()
            .zip(&state.partitions)
            .map(|(p, s)| (p.name.clone(), s.limit, s.in_flight))
            .collect()
    }

    fn reject(&self, partition: Option<usize>) -> Overloaded {
        self.metrics.rejected.increment();
        if self.events.is_observed() {
            let partition = partition.and_then(|p| self.partitions.get(p)).map(|p| p.name.clone());
            crate::event::publish(&self.events, AdaptiveLimitEvent::Rejected { partition });
        }
        Overloaded::new(self.name.clone())
    }

    fn admitted(&self, wait: Duration) {
        self.metrics.acquired.increment();
        if !wait.is_zero() {
            self.metrics.wait_time.record(wait);
        }
        if self.events.is_observed() {
            crate::event::publish(&self.events, AdaptiveLimitEvent::Acquired { wait });
        }
    }

    /// A permit now, a place in the backlog, or a rejection.
    pub(crate) fn acquire(self: &Arc<Self>, partition: Option<usize>) -> Result<AdaptivePermit, Denied> {
        let mut state = self.lock();
        if state.can_acquire(partition) {
            let in_flight = state.take(partition);
            drop(state);
            self.metrics.in_flight.set(in_flight as i64);
            self.admitted(Duration::ZERO);
            return Ok(AdaptivePermit::new(self.clone(), partition, in_flight));
        }
        if state.when_full.waits() && state.backlog.len() < state.max_queue {
            let max_wait = state.when_full.max_wait();
            let waiter = Arc::new(Waiter::default());
            state.backlog.push(BacklogEntry { waiter: waiter.clone(), partition });
            self.metrics.backlog.set(state.backlog.len() as i64);
            drop(state);
            Err(Denied::Queued(BacklogSlot::new(self.clone(), waiter, partition), max_wait))
        } else {
            drop(state);
            Err(Denied::Rejected(self.reject(partition)))
        }
    }

    /// Moves the limit to `to` (at least 1), with the partitions' shares; `(from, to)` when
    /// it changed.
    fn apply_limit(&self, state: &mut State, to: usize) -> Option<(usize, usize)> {
        let to = to.max(1);
        let from = state.limit;
        if to == from {
            return None;
        }
        state.limit = to;
        for (ps, p) in state.partitions.iter_mut().zip(&self.partitions) {
            ps.limit = partition_limit(to, p.ratio);
        }
        self.limit.store(to, Ordering::Release);
        self.metrics.limit.set(to as i64);
        Some((from, to))
    }

    /// Hands free capacity to the newest waiters first.
    fn grant_backlog(&self, state: &mut State) {
        while let Some(i) = state.backlog.iter().rposition(|e| state.can_acquire(e.partition)) {
            let entry = state.backlog.remove(i);
            let n = state.take(entry.partition);
            entry.waiter.in_flight.store(n, Ordering::Release);
            entry.waiter.grant();
        }
        self.metrics.backlog.set(state.backlog.len() as i64);
    }

    /// `(when_full, max_queue)` now.
    pub(crate) fn backlog_settings(&self) -> (WhenFull, usize) {
        let state = self.lock();
        (state.when_full, state.max_queue)
    }

    /// What a call over the limit does from now on (calls already waiting keep their
    /// deadline).
    pub(crate) fn set_when_full(&self, when_full: WhenFull) {
        self.lock().when_full = when_full;
    }

    /// How many calls may wait from now on (calls already waiting keep their place).
    pub(crate) fn set_max_queue(&self, max_queue: usize) {
        self.lock().max_queue = max_queue;
    }

    /// The algorithm's bounds, when it has some.
    pub(crate) fn bounds(&self) -> Option<(usize, usize)> {
        self.lock().algorithm.bounds()
    }

    /// Sets the limit directly; waiters that now fit are admitted at once. Calls in flight
    /// above a lowered limit finish; no new call is admitted until the count is below it.
    pub(crate) fn set_limit(&self, limit: usize) -> Result<(), ConfigError> {
        let changed = {
            let mut state = self.lock();
            let (min, max) = state.algorithm.bounds().unwrap_or((1, usize::MAX));
            ensure(limit >= 1, "limit", "must be at least 1")?;
            ensure(
                (min..=max).contains(&limit),
                "limit",
                format!("must be within the algorithm's bounds {min}..={max}"),
            )?;
            state.algorithm.set_limit(limit);
            let changed = self.apply_limit(&mut state, limit);
            self.grant_backlog(&mut state);
            changed
        };
        if let Some((from, to)) = changed {
            crate::event::publish(&self.events, AdaptiveLimitEvent::LimitChanged { from, to });
        }
        Ok(())
    }

    /// Changes the algorithm's bounds; the limit moves into them.
    pub(crate) fn set_bounds(&self, min_limit: usize, max_limit: usize) -> Result<(), ConfigError> {
        let changed = {
            let mut state = self.lock();
            state.algorithm.set_bounds(min_limit, max_limit)?;
            let to = state.algorithm.limit();
            let changed = self.apply_limit(&mut state, to);
            self.grant_backlog(&mut state);
            changed
        };
        if let Some((from, to)) = changed {
            crate::event::publish(&self.events, AdaptiveLimitEvent::LimitChanged { from, to });
        }
        Ok(())
    }

    /// The refusal of a call whose inner service was not ready (load shedding).
    pub(crate) fn shed_inner_not_ready(&self) -> Overloaded {
        self.reject(None)
    }

    /// A call let through without taking capacity (the layer's bypass predicate).
    pub(crate) fn bypassed(&self) {
        self.metrics.bypassed.increment();
    }

    fn release(&self, partition: Option<usize>, sample: Option<Sample>) {
        let mut changed = None;
        let in_flight = {
            let mut state = self.lock();
            state.in_flight = state.in_flight.saturating_sub(1);
            if let Some(p) = partition.and_then(|p| state.partitions.get_mut(p)) {
                p.in_flight = p.in_flight.saturating_sub(1);
            }
            if let Some(sample) = sample {
                if sample.dropped {
                    self.metrics.dropped.increment();
                }
                let algorithm = &mut state.algorithm;
                // User code (a custom algorithm, Vegas' functions): a panic leaves the limit
                // where it was instead of poisoning the limiter or aborting in a `Drop`.
                let updated =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| algorithm.update(&sample)));
                if let Ok(to) = updated {
                    changed = self.apply_limit(&mut state, to);
                } else {
                    tracing::error!(
                        target: "palisade",
                        name = %self.name,
                        "the adaptive limit algorithm panicked; the limit is unchanged",
                    );
                }
            }
            self.grant_backlog(&mut state);
            state.in_flight
        };
        self.metrics.in_flight.set(in_flight as i64);
        if let Some((from, to)) = changed {
            crate::event::publish(&self.events, AdaptiveLimitEvent::LimitChanged { from, to });
        }
    }
}
