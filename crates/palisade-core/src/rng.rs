//! A small, fast, seedable random number generator shared by every layer that needs chance
//! (jitter, chaos injection, sampling) — no `rand` dependency.
//!
//! [`SplitMix64`](https://prng.di.unimi.it/splitmix64.c) is counter based, so one atomic
//! `fetch_add` draws a number: [`AtomicRng`] is lock-free and can sit in shared layer state.
//! Seeded, it gives the same sequence on every run (tests assert exact jittered delays).
//!
//! ```
//! use palisade_core::rng::AtomicRng;
//!
//! let a = AtomicRng::seeded(42);
//! let b = AtomicRng::seeded(42);
//! assert_eq!(a.next_u64(), b.next_u64());
//! let x = a.next_f64();
//! assert!((0.0..1.0).contains(&x));
//! ```

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A lock-free SplitMix64 generator.
#[derive(Debug)]
pub struct AtomicRng {
    state: AtomicU64,
}

impl AtomicRng {
    /// A generator that gives the same sequence for the same seed.
    pub fn seeded(seed: u64) -> Self {
        Self { state: AtomicU64::new(seed) }
    }

    /// A generator seeded from the process's random hasher keys (different every run).
    pub fn from_entropy() -> Self {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(GOLDEN);
        Self::seeded(h.finish())
    }

    /// The next 64 random bits.
    #[inline]
    pub fn next_u64(&self) -> u64 {
        mix(self.state.fetch_add(GOLDEN, Ordering::Relaxed).wrapping_add(GOLDEN))
    }

    /// A number uniformly drawn from `[0, 1)`.
    #[inline]
    pub fn next_f64(&self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// A number uniformly drawn from `[0, bound)`; zero when `bound` is zero.
    #[inline]
    pub fn below(&self, bound: u64) -> u64 {
        if bound == 0 {
            return 0;
        }
        ((u128::from(self.next_u64()) * u128::from(bound)) >> 64) as u64
    }

    /// `true` with probability `p` (clamped to `0..=1`).
    #[inline]
    pub fn chance(&self, p: f64) -> bool {
        self.next_f64() < p
    }
}

impl Default for AtomicRng {
    fn default() -> Self {
        Self::from_entropy()
    }
}
