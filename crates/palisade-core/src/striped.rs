//! A counter written on every call by many threads: each thread adds to a stripe (cache
//! line) of its own with a plain load and store, and reading sums the stripes.
//!
//! One shared atomic counter costs a locked read-modify-write per call (~6 ns on an x86-64
//! core, more when two cores take the line in turn), as much as a rate limit's whole
//! decision. So the first [`OWNED`] threads that count at the same time each own a stripe,
//! which only that thread writes: adding is `store(load() + n)`, no lock prefix. A thread that
//! ends gives its stripe back for the next thread. Threads beyond those spread over
//! [`SHARED`] more stripes with atomic adds (by the order they first counted in), so a count
//! is never lost, and many threads do not all meet on one line, whatever their number.
//!
//! Reading sums relaxed loads: exact once the writers are done (joined, or synchronized with
//! the reader otherwise), possibly behind by the adds in flight meanwhile, as any relaxed
//! counter.

#[cfg(loom)]
use loom::sync::atomic::{AtomicU64, AtomicU8, Ordering};
#[cfg(not(loom))]
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};

/// Stripes owned by one thread at a time (a bit each in [`Slots`]).
pub const OWNED: usize = 8;

/// Stripes shared, with atomic adds, by the threads beyond the owners.
pub const SHARED: usize = 8;

/// One stripe, alone on its cache lines (128 bytes: x86-64 prefetches lines in pairs).
#[repr(align(128))]
#[derive(Debug, Default)]
struct Stripe(AtomicU64);

/// The stripes a thread may own: a bit per owned stripe, set while it is free; and the
/// count of threads sent to the shared stripes, which spreads them.
#[derive(Debug)]
pub struct Slots {
    free: AtomicU8,
    overflow: AtomicU8,
}

impl Slots {
    /// Every owned stripe free.
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        Self { free: AtomicU8::new(u8::MAX), overflow: AtomicU8::new(0) }
    }

    /// Every owned stripe free.
    #[cfg(loom)]
    pub fn new() -> Self {
        Self { free: AtomicU8::new(u8::MAX), overflow: AtomicU8::new(0) }
    }

    /// A free owned stripe, now this thread's (until [`give`](Self::give)), or one of the
    /// shared ones (`OWNED..OWNED + SHARED`, in turn). `Acquire`: the stripe's last owner's
    /// adds happened before this.
    pub fn take(&self) -> usize {
        let mut free = self.free.load(Ordering::Relaxed);
        while free != 0 {
            let i = free.trailing_zeros() as usize;
            match self.free.compare_exchange_weak(
                free,
                free & !(1 << i),
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return i,
                Err(now) => free = now,
            }
        }
        OWNED + usize::from(self.overflow.fetch_add(1, Ordering::Relaxed)) % SHARED
    }

    /// Gives back stripe `i` taken with [`take`](Self::take) (a shared one needs nothing).
    /// `Release`: this thread's adds happen before the next owner's.
    pub fn give(&self, i: usize) {
        if i < OWNED {
            self.free.fetch_or(1 << i, Ordering::Release);
        }
    }
}

impl Default for Slots {
    fn default() -> Self {
        Self::new()
    }
}

/// A counter split into stripes: each of the first [`OWNED`] threads that count at once adds on
/// a stripe of its own with a plain load and store; later threads spread over [`SHARED`]
/// stripes with atomic adds. Reading sums relaxed loads: exact once the writers are done.
#[derive(Debug, Default)]
pub struct StripedCounter {
    stripes: [Stripe; OWNED + SHARED],
}

impl StripedCounter {
    /// A counter at zero (2 KiB).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one on the calling thread's stripe.
    #[cfg(not(loom))]
    #[inline]
    pub fn increment(&self) {
        self.add_at(thread_slot(), 1);
    }

    /// Adds one (on a shared stripe: loom's threads are not the OS threads a stripe
    /// belongs to).
    #[cfg(loom)]
    #[inline]
    pub fn increment(&self) {
        self.add_at(OWNED, 1);
    }

    /// Adds `n` on stripe `slot`, which the caller took from [`Slots::take`] and still
    /// holds (or a shared one). Only the slot's owner may call this with an owned slot.
    #[inline]
    pub fn add_at(&self, slot: usize, n: u64) {
        let Some(stripe) = self.stripes.get(slot) else { return };
        if slot >= OWNED {
            stripe.0.fetch_add(n, Ordering::Relaxed);
        } else {
            // this thread is the stripe's only writer: no lock prefix needed
            stripe.0.store(stripe.0.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
        }
    }

    /// The sum of the stripes.
    pub fn get(&self) -> u64 {
        self.stripes.iter().map(|s| s.0.load(Ordering::Relaxed)).fold(0, u64::wrapping_add)
    }
}

/// The process' owned stripes, handed to threads as they first count.
#[cfg(not(loom))]
static SLOTS: Slots = Slots::new();

/// A thread's stripe, given back when the thread ends.
#[cfg(not(loom))]
struct ThreadSlot(usize);

#[cfg(not(loom))]
impl Drop for ThreadSlot {
    fn drop(&mut self) {
        SLOTS.give(self.0);
    }
}

/// The calling thread's stripe (taken on its first count; a shared one while the thread's
/// locals are being torn down).
#[cfg(not(loom))]
#[inline]
pub(crate) fn thread_slot() -> usize {
    thread_local! {
        static SLOT: ThreadSlot = ThreadSlot(SLOTS.take());
    }
    SLOT.try_with(|s| s.0).unwrap_or(OWNED)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn counts_from_many_threads_are_exact() {
        let c = StripedCounter::new();
        // more threads than owned stripes, several rounds: stripes are given back and taken
        // again, and the threads beyond share the last one
        for _ in 0..4 {
            std::thread::scope(|s| {
                for _ in 0..12 {
                    s.spawn(|| {
                        for _ in 0..10_000 {
                            c.increment();
                        }
                    });
                }
            });
        }
        assert_eq!(c.get(), 4 * 12 * 10_000);
    }

    #[test]
    fn slots_are_taken_once_and_given_back() {
        let slots = Slots::new();
        let taken: Vec<usize> = (0..OWNED).map(|_| slots.take()).collect();
        let mut sorted = taken.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), OWNED, "a stripe handed out twice: {taken:?}");
        assert!(taken.iter().all(|&i| i < OWNED), "{taken:?}");
        // the owners all there: later threads go to the shared stripes, in turn
        let shared: Vec<usize> = (0..2 * SHARED).map(|_| slots.take()).collect();
        assert!(shared.iter().all(|&i| (OWNED..OWNED + SHARED).contains(&i)), "{shared:?}");
        assert_eq!(shared[..SHARED], shared[SHARED..], "{shared:?}");
        slots.give(taken[3]);
        assert_eq!(slots.take(), taken[3]);
        slots.give(shared[0]);
        assert!(slots.take() >= OWNED);
    }
}
