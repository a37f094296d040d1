//! Counters, gauges and histograms readable from a layer's handle.
//!
//! Every layer keeps its numbers in these types: they are plain atomics, read as a snapshot
//! from the layer's handle. Behind the `metrics` feature each one is also registered with the
//! [`metrics`](https://docs.rs/metrics) facade when the layer is built, under the name given
//! (`palisade_<pattern>_<what>`) and the label `name` = the layer's name. Install your
//! recorder before building layers.
//!
//! Registering a cell also describes its metric to the recorder (`describe_counter!` and
//! friends, the `# HELP` line of a Prometheus scrape): with the text given to
//! `with_description`, or with one derived from the metric's name by `new`
//! (`palisade_bulkhead_waited_total` → "palisade bulkhead: waited total"). Histograms are
//! described in seconds.
//!
//! Recording is one relaxed atomic operation (plus the recorder's handle, with `metrics`).
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

/// The HELP text `new` gives a metric: its name without the `palisade_` prefix, the pattern
/// first, underscores as spaces (`palisade_bulkhead_waited_total` →
/// "palisade bulkhead: waited total").
#[cfg(feature = "metrics")]
fn default_description(metric: &str) -> String {
    let rest = metric.strip_prefix("palisade_").unwrap_or(metric);
    match rest.split_once('_') {
        Some((pattern, what)) => format!("palisade {pattern}: {}", what.replace('_', " ")),
        None => format!("palisade {rest}"),
    }
}

/// A monotonically increasing count.
pub struct Counter {
    value: AtomicU64,
    #[cfg(feature = "metrics")]
    handle: metrics::Counter,
}

impl std::fmt::Debug for Counter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Counter").field(&self.get()).finish()
    }
}

impl Counter {
    /// A counter exported as `metric` with the label `name` (with the `metrics` feature),
    /// described with a text derived from `metric` (see the [module docs](self)).
    pub fn new(metric: &'static str, name: &str) -> Self {
        #[cfg(feature = "metrics")]
        metrics::describe_counter!(metric, default_description(metric));
        Self::register(metric, name)
    }

    /// A counter exported as `metric` with the label `name` and the HELP text `description`
    /// (with the `metrics` feature).
    #[allow(unused_variables)]
    pub fn with_description(metric: &'static str, name: &str, description: &'static str) -> Self {
        #[cfg(feature = "metrics")]
        metrics::describe_counter!(metric, description);
        Self::register(metric, name)
    }

    #[allow(unused_variables)]
    fn register(metric: &'static str, name: &str) -> Self {
        Self {
            value: AtomicU64::new(0),
            #[cfg(feature = "metrics")]
            handle: metrics::counter!(metric, "name" => name.to_owned()),
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
        self.handle.increment(n);
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
    handle: metrics::Gauge,
}

impl std::fmt::Debug for Gauge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Gauge").field(&self.get()).finish()
    }
}

impl Gauge {
    /// A gauge exported as `metric` with the label `name` (with the `metrics` feature),
    /// described with a text derived from `metric` (see the [module docs](self)).
    pub fn new(metric: &'static str, name: &str) -> Self {
        #[cfg(feature = "metrics")]
        metrics::describe_gauge!(metric, default_description(metric));
        Self::register(metric, name)
    }

    /// A gauge exported as `metric` with the label `name` and the HELP text `description`
    /// (with the `metrics` feature).
    #[allow(unused_variables)]
    pub fn with_description(metric: &'static str, name: &str, description: &'static str) -> Self {
        #[cfg(feature = "metrics")]
        metrics::describe_gauge!(metric, description);
        Self::register(metric, name)
    }

    #[allow(unused_variables)]
    fn register(metric: &'static str, name: &str) -> Self {
        Self {
            value: AtomicI64::new(0),
            #[cfg(feature = "metrics")]
            handle: metrics::gauge!(metric, "name" => name.to_owned()),
        }
    }

    /// Sets the value.
    #[inline]
    pub fn set(&self, v: i64) {
        self.value.store(v, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        self.handle.set(v as f64);
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
        if d >= 0 {
            self.handle.increment(d as f64);
        } else {
            self.handle.decrement(-(d as f64));
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
    handle: metrics::Histogram,
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
    /// in seconds, described with a text derived from `metric` (see the [module docs](self)).
    pub fn new(metric: &'static str, name: &str) -> Self {
        #[cfg(feature = "metrics")]
        metrics::describe_histogram!(metric, metrics::Unit::Seconds, default_description(metric));
        Self::register(metric, name)
    }

    /// A histogram exported as `metric` with the label `name` and the HELP text
    /// `description`, in seconds (with the `metrics` feature).
    #[allow(unused_variables)]
    pub fn with_description(metric: &'static str, name: &str, description: &'static str) -> Self {
        #[cfg(feature = "metrics")]
        metrics::describe_histogram!(metric, metrics::Unit::Seconds, description);
        Self::register(metric, name)
    }

    #[allow(unused_variables)]
    fn register(metric: &'static str, name: &str) -> Self {
        Self {
            count: AtomicU64::new(0),
            sum_nanos: AtomicU64::new(0),
            max_nanos: AtomicU64::new(0),
            #[cfg(feature = "metrics")]
            handle: metrics::histogram!(metric, "name" => name.to_owned()),
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
        self.handle.record(d.as_secs_f64());
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
