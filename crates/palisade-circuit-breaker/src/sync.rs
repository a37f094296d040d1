//! Atomics and locks, from `std` or (under `--cfg loom`) from loom, so that the lock-free
//! parts of the breaker can be model-checked.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU64, AtomicU8, Ordering};
#[cfg(loom)]
pub(crate) use loom::sync::{Mutex, MutexGuard};

#[cfg(not(loom))]
pub(crate) use palisade_core::sync::lock;
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::Mutex;

/// Locks loom's mutex with palisade's one poisoning policy ([`palisade_core::sync::lock`]
/// for std's): go on with the data.
#[cfg(loom)]
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Aligns a value to its own cache lines (128 bytes: x86-64 prefetches lines in pairs), so
/// that values read by every call do not share a line with values every call writes.
#[derive(Debug)]
#[repr(align(128))]
pub(crate) struct CachePadded<T>(pub(crate) T);

impl<T> std::ops::Deref for CachePadded<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

/// The stripe of the current thread, among `stripes()`: threads are numbered round-robin
/// on their first call, so up to `stripes()` threads never share a stripe.
#[inline]
pub(crate) fn stripe() -> usize {
    use std::cell::Cell;
    use std::sync::atomic::AtomicUsize;
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static STRIPE: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    STRIPE
        .try_with(|s| {
            let mut i = s.get();
            if i == usize::MAX {
                i = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                s.set(i);
            }
            i
        })
        .unwrap_or(0)
}

/// How many stripes striped counters and windows have: the machine's parallelism, at most 8
/// (bounded memory per breaker: keyed layers hold many).
pub(crate) fn stripes() -> usize {
    static STRIPES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *STRIPES.get_or_init(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get).clamp(1, 8)
    })
}

/// A counter split into stripes (one cache line each): incremented by every call without
/// the threads writing one shared line; read by summing.
#[derive(Debug)]
pub(crate) struct StripedCounter {
    cells: Box<[CachePadded<AtomicU64>]>,
}

impl StripedCounter {
    pub(crate) fn new(stripes: usize) -> Self {
        Self {
            cells: (0..stripes.max(1).next_power_of_two()).map(|_| CachePadded(AtomicU64::new(0))).collect(),
        }
    }

    #[inline]
    pub(crate) fn increment(&self, stripe: usize) {
        self.cells[stripe & (self.cells.len() - 1)].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn get(&self) -> u64 {
        self.cells.iter().map(|c| c.load(Ordering::Relaxed)).fold(0, u64::wrapping_add)
    }
}
