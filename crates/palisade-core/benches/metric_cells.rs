//! The cost of updating a metric cell with the `metrics` feature, against the cell as it was
//! (an atomic plus a `metrics` handle bound at build time): the lazily bound cell adds one
//! atomic load to find its handle. Run with `--features metrics`; a Prometheus recorder is
//! this thread's recorder while the cells are built and updated.
#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};

use criterion::{criterion_group, criterion_main, Criterion};

/// The cell before lazy binding: the handle taken from the recorder at build time.
struct Bound {
    value: AtomicU64,
    #[cfg(feature = "metrics")]
    handle: metrics::Counter,
}

impl Bound {
    fn increment(&self) {
        self.value.fetch_add(1, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        self.handle.increment(1);
    }
}

fn cells(c: &mut Criterion) {
    #[cfg(feature = "metrics")]
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    #[cfg(feature = "metrics")]
    let _guard = metrics::set_default_local_recorder(&recorder);
    let lazy = palisade_core::metric::Counter::new("palisade_bench_calls_total", "bench");
    let bound = Bound {
        value: AtomicU64::new(0),
        #[cfg(feature = "metrics")]
        handle: metrics::counter!("palisade_bench_bound_total", "name" => "bench"),
    };
    let mut group = c.benchmark_group("counter_increment");
    group.bench_function("palisade_lazy_cell", |b| b.iter(|| black_box(&lazy).increment()));
    group.bench_function("bound_at_build", |b| b.iter(|| black_box(&bound).increment()));
    group.finish();
}

criterion_group!(benches, cells);
criterion_main!(benches);
