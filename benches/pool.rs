//! Placeholder: the pool bench is written by its issue.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, Criterion};

fn placeholder(c: &mut Criterion) {
    c.bench_function("pool/placeholder", |b| b.iter(|| std::hint::black_box(1) + 1));
}

criterion_group!(benches, placeholder);
criterion_main!(benches);
