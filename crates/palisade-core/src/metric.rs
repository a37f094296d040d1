//! Counters, gauges and histograms readable from a layer's handle.
//!
//! Every layer keeps its numbers in these types: they are plain atomics, read as a snapshot
//! from the layer's handle. Behind the `metrics` feature each one is also registered with the
//! [`metrics`](https://docs.rs/metrics) facade when the layer is built, under the name given
//! (`palisade_<pattern>_<what>`) and the label `name` = the layer's name. Install your
//! recorder before building layers.
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
    /// A counter exported as `metric` with the label `name` (with the `metrics` feature).
    #[allow(unused_variables)]
    pub fn new(metric: &'static str, name: &str) -> Self {
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
    /// A gauge exported as `metric` with the label `name` (with the `metrics` feature).
    #[allow(unused_variables)]
    pub fn new(metric: &'static str, name: &str) -> Self {
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
    #[inline]
    pub fn add(&self, d: i64) -> i64 {
        let v = self.value.fetch_add(d, Ordering::Relaxed).wrapping_add(d); // wraps like the atomic
        #[cfg(feature = "metrics")]
        self.handle.set(v as f64);
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
    /// A histogram exported as `metric` with the label `name` (with the `metrics` feature).
    #[allow(unused_variables)]
    pub fn new(metric: &'static str, name: &str) -> Self {
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
