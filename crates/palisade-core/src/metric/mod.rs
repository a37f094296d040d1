//! Counters, gauges and histograms readable from a layer's handle.
//!
//! Every layer keeps its numbers in these types: they are plain atomics, read as a snapshot
//! from the layer's handle. Behind the `metrics` feature each one is also exported through
//! the [`metrics`](https://docs.rs/metrics) facade under the name given
//! (`palisade_<pattern>_<what>`, `_total` for counters, `_seconds` for histograms), the label
//! `name` = the layer's name and, for some, one more label (`reason`, `outcome`, `state`, …):
//! [`catalog::METRICS`] lists them all.
//!
//! # Recorder installed late
//!
//! A cell registers with the recorder when it is built; if no recorder is installed yet, it
//! registers at its first update after one is (and brings the export up to its own value):
//! a recorder installed after the layers were built still receives their metrics. Once
//! registered, an update costs one more atomic load than a plain `metrics` handle.
//!
//! Registering describes the metric to that recorder (`describe_counter!` and friends, the
//! `# HELP` line of a Prometheus scrape) with the catalog's text, with the text given to
//! `with_description`, or with one derived from the name (`palisade_demo_calls_total` →
//! "palisade demo: calls total"). Histograms are described in seconds.
//!
//! ```
//! use palisade_core::metric::Counter;
//!
//! let calls = Counter::new("palisade_demo_calls_total", "demo");
//! calls.increment();
//! calls.add(2);
//! assert_eq!(calls.get(), 3);
//! ```

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

pub mod catalog;
#[cfg(feature = "metrics")]
mod export;
mod state;

#[cfg(feature = "metrics")]
use export::{Export, Resolved};
pub use state::StateGauge;

/// The second label of a series, `(key, value)`: `("reason", "queue_full")`.
pub type Label = (&'static str, &'static str);

/// A monotonically increasing count.
pub struct Counter {
    value: AtomicU64,
    #[cfg(feature = "metrics")]
    export: Export<metrics::Counter>,
}

impl std::fmt::Debug for Counter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Counter").field(&self.get()).finish()
    }
}

impl Counter {
    /// A counter exported as `metric` with the label `name` (with the `metrics` feature),
    /// described with the catalog's text (see the [module docs](self)).
    pub fn new(metric: &'static str, name: &str) -> Self {
        Self::build(metric, name, None, None)
    }

    /// A counter exported as `metric` with the labels `name` and `label`
    /// (`("reason", "queue_full")`): one series of a metric with a second label.
    pub fn labeled(metric: &'static str, name: &str, label: Label) -> Self {
        Self::build(metric, name, Some(label), None)
    }

    /// A counter exported as `metric` with the label `name` and the HELP text
    /// `description` (with the `metrics` feature).
    pub fn with_description(metric: &'static str, name: &str, description: &'static str) -> Self {
        Self::build(metric, name, None, Some(description))
    }

    #[allow(unused_variables)]
    fn build(
        metric: &'static str,
        name: &str,
        label: Option<Label>,
        description: Option<&'static str>,
    ) -> Self {
        Self {
            value: AtomicU64::new(0),
            #[cfg(feature = "metrics")]
            export: Export::new(metric, name, label, description),
        }
    }

    /// Adds one.
    #[inline]
    pub fn increment(&self) {
        self.add(1);
    }

    /// Adds `n`.
    #[inline]
    pub fn add(&self, n: u64) {
        self.value.fetch_add(n, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        match self.export.get() {
            Some(handle) => handle.increment(n),
            None => match self.export.resolve() {
                Resolved::Fresh(handle) => handle.absolute(self.get()),
                Resolved::Once(handle) => handle.increment(n),
            },
        }
    }

    /// The current count.
    pub fn get(&self) -> u64 {
        self.value.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down (in-flight calls, current limit, breaker state).
///
/// [`add`](Self::add) exports its delta (an increment or decrement of the recorder's gauge),
/// so concurrent adds leave the exported value equal to the cell's; [`set`](Self::set)
/// exports the absolute value. Use one gauge either for deltas from many threads or for
/// absolute values from one writer at a time: a `set` racing an `add` may be ordered
/// differently in the export than in the cell.
pub struct Gauge {
    value: AtomicI64,
    #[cfg(feature = "metrics")]
    export: Export<metrics::Gauge>,
}

impl std::fmt::Debug for Gauge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Gauge").field(&self.get()).finish()
    }
}

impl Gauge {
    /// A gauge exported as `metric` with the label `name` (with the `metrics` feature),
    /// described with the catalog's text (see the [module docs](self)).
    pub fn new(metric: &'static str, name: &str) -> Self {
        Self::build(metric, name, None, None)
    }

    /// A gauge exported as `metric` with the labels `name` and `label`
    /// (`("reason", "queue_full")`): one series of a metric with a second label.
    pub fn labeled(metric: &'static str, name: &str, label: Label) -> Self {
        Self::build(metric, name, Some(label), None)
    }

    /// A gauge exported as `metric` with the label `name` and the HELP text
    /// `description` (with the `metrics` feature).
    pub fn with_description(metric: &'static str, name: &str, description: &'static str) -> Self {
        Self::build(metric, name, None, Some(description))
    }

    #[allow(unused_variables)]
    fn build(
        metric: &'static str,
        name: &str,
        label: Option<Label>,
        description: Option<&'static str>,
    ) -> Self {
        Self {
            value: AtomicI64::new(0),
            #[cfg(feature = "metrics")]
            export: Export::new(metric, name, label, description),
        }
    }

    /// Sets the value.
    #[inline]
    pub fn set(&self, v: i64) {
        self.value.store(v, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        match self.export.get() {
            Some(handle) => handle.set(v as f64),
            None => match self.export.resolve() {
                Resolved::Fresh(handle) => handle.set(v as f64),
                Resolved::Once(handle) => handle.set(v as f64),
            },
        }
    }

    /// Adds `d` (may be negative) and returns the new value.
    ///
    /// The export is incremented (or decremented) by `d` rather than set to the new value:
    /// two threads' `set`s could land in the other order and leave the exported gauge stale,
    /// while increments commute.
    #[inline]
    pub fn add(&self, d: i64) -> i64 {
        let v = self.value.fetch_add(d, Ordering::Relaxed).wrapping_add(d); // wraps like the atomic
        #[cfg(feature = "metrics")]
        {
            let delta = |handle: &metrics::Gauge| {
                if d >= 0 {
                    handle.increment(d as f64);
                } else {
                    handle.decrement(-(d as f64));
                }
            };
            match self.export.get() {
                Some(handle) => delta(handle),
                None => match self.export.resolve() {
                    // Registered just now: the export starts from the cell's value.
                    Resolved::Fresh(handle) => handle.set(v as f64),
                    Resolved::Once(handle) => delta(&handle),
                },
            }
        }
        v
    }

    /// The current value.
    pub fn get(&self) -> i64 {
        self.value.load(Ordering::Relaxed)
    }
}

/// A distribution of durations (latency, wait time): count, sum and max kept here, every
/// sample sent to the `metrics` histogram (in seconds) with the feature.
pub struct Histogram {
    count: AtomicU64,
    sum_nanos: AtomicU64,
    max_nanos: AtomicU64,
    #[cfg(feature = "metrics")]
    export: Export<metrics::Histogram>,
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram")
            .field("count", &self.count())
            .field("mean", &self.mean())
            .field("max", &self.max())
            .finish()
    }
}

impl Histogram {
    /// A histogram exported as `metric` with the label `name` (with the `metrics` feature),
    /// described with the catalog's text (see the [module docs](self)).
    pub fn new(metric: &'static str, name: &str) -> Self {
        Self::build(metric, name, None, None)
    }

    /// A histogram exported as `metric` with the labels `name` and `label`
    /// (`("reason", "queue_full")`): one series of a metric with a second label.
    pub fn labeled(metric: &'static str, name: &str, label: Label) -> Self {
        Self::build(metric, name, Some(label), None)
    }

    /// A histogram exported as `metric` with the label `name` and the HELP text
    /// `description` (with the `metrics` feature).
    pub fn with_description(metric: &'static str, name: &str, description: &'static str) -> Self {
        Self::build(metric, name, None, Some(description))
    }

    #[allow(unused_variables)]
    fn build(
        metric: &'static str,
        name: &str,
        label: Option<Label>,
        description: Option<&'static str>,
    ) -> Self {
        Self {
            count: AtomicU64::new(0),
            sum_nanos: AtomicU64::new(0),
            max_nanos: AtomicU64::new(0),
            #[cfg(feature = "metrics")]
            export: Export::new(metric, name, label, description),
        }
    }

    /// Records one sample.
    #[inline]
    pub fn record(&self, d: Duration) {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
        self.max_nanos.fetch_max(nanos, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        match self.export.get() {
            Some(handle) => handle.record(d.as_secs_f64()),
            None => match self.export.resolve() {
                Resolved::Fresh(handle) => handle.record(d.as_secs_f64()),
                Resolved::Once(handle) => handle.record(d.as_secs_f64()),
            },
        }
    }

    /// Samples recorded.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Mean of the samples (zero when there are none).
    pub fn mean(&self) -> Duration {
        let n = self.count();
        if n == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(self.sum_nanos.load(Ordering::Relaxed) / n)
    }

    /// Largest sample.
    pub fn max(&self) -> Duration {
        Duration::from_nanos(self.max_nanos.load(Ordering::Relaxed))
    }
}
