//! Per-stage metrics, the pipeline's handle and its snapshots.

use std::sync::Arc;
use std::time::Duration;

use palisade_core::event::EventBus;
use palisade_core::metric::{Counter, Gauge, Histogram};

use crate::event::PipelineEvent;

/// One stage's numbers and identity, shared by every clone of the pipeline.
#[derive(Debug)]
pub(crate) struct StageShared {
    pub(crate) name: Arc<str>,
    pub(crate) position: usize,
    pub(crate) bus: Arc<EventBus<PipelineEvent>>,
    pub(crate) items_in: Counter,
    pub(crate) items_out: Counter,
    pub(crate) errors: Counter,
    pub(crate) filtered: Counter,
    pub(crate) dead_lettered: Counter,
    pub(crate) in_flight: Gauge,
    pub(crate) queue_depth: Gauge,
    pub(crate) latency: Histogram,
}

impl StageShared {
    pub(crate) fn new(
        pipeline: &str,
        name: Arc<str>,
        position: usize,
        bus: Arc<EventBus<PipelineEvent>>,
    ) -> Self {
        let label = format!("{pipeline}.{name}");
        Self {
            items_in: Counter::new("palisade_pipeline_items_in_total", &label),
            items_out: Counter::new("palisade_pipeline_items_out_total", &label),
            errors: Counter::new("palisade_pipeline_errors_total", &label),
            filtered: Counter::new("palisade_pipeline_filtered_total", &label),
            dead_lettered: Counter::new("palisade_pipeline_dead_lettered_total", &label),
            in_flight: Gauge::new("palisade_pipeline_in_flight", &label),
            queue_depth: Gauge::new("palisade_pipeline_queue_depth", &label),
            latency: Histogram::new("palisade_pipeline_latency_seconds", &label),
            name,
            position,
            bus,
        }
    }

    pub(crate) fn failed(&self, seq: Option<u64>, error: &palisade_core::BoxError) {
        self.errors.increment();
        if self.bus.is_observed() {
            self.bus.publish(PipelineEvent::StageFailed {
                stage: self.name.clone(),
                seq,
                error: error.to_string(),
            });
        }
    }

    pub(crate) fn dead_lettered(&self, seq: Option<u64>) {
        self.dead_lettered.increment();
        if self.bus.is_observed() {
            self.bus.publish(PipelineEvent::DeadLettered { stage: self.name.clone(), seq });
        }
    }

    fn snapshot(&self) -> StageSnapshot {
        StageSnapshot {
            name: self.name.clone(),
            items_in: self.items_in.get(),
            items_out: self.items_out.get(),
            errors: self.errors.get(),
            filtered: self.filtered.get(),
            dead_lettered: self.dead_lettered.get(),
            in_flight: self.in_flight.get(),
            queue_depth: self.queue_depth.get(),
            latency_count: self.latency.count(),
            latency_mean: self.latency.mean(),
            latency_max: self.latency.max(),
        }
    }
}

/// State shared by every clone of one pipeline.
#[derive(Debug)]
pub(crate) struct PipelineShared {
    pub(crate) name: Arc<str>,
    pub(crate) bus: Arc<EventBus<PipelineEvent>>,
    pub(crate) stages: Vec<Arc<StageShared>>,
}

/// Reads a pipeline's numbers and subscribes to its events; shared with every clone of the
/// pipeline it came from ([`PipelineService::handle`](crate::PipelineService::handle)).
#[derive(Clone, Debug)]
pub struct PipelineHandle {
    pub(crate) shared: Arc<PipelineShared>,
}

impl PipelineHandle {
    /// The pipeline's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Every stage's numbers now, in pipeline order.
    pub fn snapshot(&self) -> PipelineSnapshot {
        PipelineSnapshot { stages: self.shared.stages.iter().map(|s| s.snapshot()).collect() }
    }

    /// Calls `listener` with every event from now on. A listener that panics misses that
    /// event (the panic is logged); the stages go on.
    pub fn on_event<F>(&self, listener: F)
    where
        F: Fn(&PipelineEvent) + Send + Sync + 'static,
    {
        self.shared.bus.subscribe(listener);
    }
}

/// A pipeline's numbers at one moment.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct PipelineSnapshot {
    /// One entry per stage, in pipeline order.
    pub stages: Vec<StageSnapshot>,
}

impl PipelineSnapshot {
    /// The stage named `name`.
    pub fn stage(&self, name: &str) -> Option<&StageSnapshot> {
        self.stages.iter().find(|s| &*s.name == name)
    }
}

/// One stage's numbers at one moment. Throughput is `items_out` over the time between two
/// snapshots.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct StageSnapshot {
    /// The stage's name.
    pub name: Arc<str>,
    /// Items handed to the stage's service.
    pub items_in: u64,
    /// Items the stage passed on.
    pub items_out: u64,
    /// Items the stage failed (including readiness errors).
    pub errors: u64,
    /// Items a filter stage dropped.
    pub filtered: u64,
    /// Failed items sent to the dead-letter sink.
    pub dead_lettered: u64,
    /// Calls running now.
    pub in_flight: i64,
    /// Items waiting in the stage's output buffer (streams).
    pub queue_depth: i64,
    /// Calls timed. In a stream a stage reads the clock once per scheduling round, so a call
    /// that completes on its first poll counts as taking no time.
    pub latency_count: u64,
    /// Mean call latency.
    pub latency_mean: Duration,
    /// Longest call.
    pub latency_max: Duration,
}
