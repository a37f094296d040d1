//! Atomics from `std` or (under `--cfg loom`) from loom, so that the lock-free windows and
//! the token bucket can be model-checked.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicI64, AtomicU64, Ordering};

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
