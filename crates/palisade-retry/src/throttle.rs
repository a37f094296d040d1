//! Adaptive client-side throttling, as described in Google's SRE book ("Handling Overload",
//! client-side throttling).
//!
//! The client counts, over a sliding window, the `requests` it tried to send and the
//! `accepts` the backend answered without refusing (a call the classifier does not call a
//! failure). Before each attempt it refuses locally with probability
//!
//! ```text
//! max(0, (requests − K × accepts) / (requests + 1))
//! ```
//!
//! so that once the backend refuses most calls, the client stops sending most of them
//! instead of spending the backend's capacity on rejections. `K` (default 2) sets how much
//! more than the accepted load the client may send; the window defaults to 2 minutes.
//! Requests refused locally count as requests, as in the book.
//!
//! An [`AdaptiveThrottle`] is a handle to shared state: give it to a retry or hedge layer
//! with `.throttle(..)`; clones (and several layers) share it.
//!
//! # Example
//!
//! ```
//! use palisade_retry::throttle::AdaptiveThrottle;
//!
//! let throttle = AdaptiveThrottle::builder().k(2.0).seed(7).build().unwrap();
//! assert_eq!(throttle.probability(), 0.0);
//! for _ in 0..9 {
//!     if throttle.try_acquire().is_ok() {
//!         throttle.record(false); // sent, and the backend refused
//!     }
//! }
//! assert!((throttle.probability() - 0.9).abs() < 1e-9); // (9 - 0) / (9 + 1)
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use palisade_core::config::{ensure, ensure_nonzero_duration, ConfigError};
use palisade_core::rejection::Throttled;
use palisade_core::rng::AtomicRng;
use tokio::time::Instant;

use crate::window::SlidingCounter;

/// Adaptive client-side throttling; see the [module docs](self).
///
/// # Clone
///
/// Clones share the same counters.
#[derive(Clone)]
pub struct AdaptiveThrottle {
    state: Arc<State>,
}

struct State {
    name: Arc<str>,
    k: f64,
    window: Duration,
    requests: SlidingCounter,
    accepts: SlidingCounter,
    rng: AtomicRng,
}

impl fmt::Debug for AdaptiveThrottle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdaptiveThrottle")
            .field("name", &self.state.name)
            .field("k", &self.state.k)
            .field("window", &self.state.window)
            .field("probability", &self.probability())
            .finish()
    }
}

impl AdaptiveThrottle {
    /// A builder with `K` = 2, a 2-minute window and the name `"throttle"`.
    pub fn builder() -> AdaptiveThrottleBuilder {
        AdaptiveThrottleBuilder {
            name: "throttle".into(),
            k: 2.0,
            window: Duration::from_secs(120),
            seed: None,
        }
    }

    /// The current probability that the next attempt is refused locally.
    pub fn probability(&self) -> f64 {
        self.probability_at(Instant::now())
    }

    fn probability_at(&self, now: Instant) -> f64 {
        let requests = self.state.requests.sum(now) as f64;
        let accepts = self.state.accepts.sum(now) as f64;
        ((requests - self.state.k * accepts) / (requests + 1.0)).max(0.0)
    }

    /// Counts one attempt and decides whether it may be sent: `Err(Throttled)` when it is
    /// refused locally.
    pub fn try_acquire(&self) -> Result<(), Throttled> {
        let now = Instant::now();
        let p = self.probability_at(now);
        self.state.requests.add(now, 1);
        if p > 0.0 && self.state.rng.chance(p) {
            Err(Throttled::new(self.state.name.clone()))
        } else {
            Ok(())
        }
    }

    /// Records whether the backend accepted an attempt that was sent.
    pub fn record(&self, accepted: bool) {
        if accepted {
            self.state.accepts.add(Instant::now(), 1);
        }
    }

    /// The throttle's name (used in its rejections).
    pub fn name(&self) -> &str {
        &self.state.name
    }
}

/// Builds an [`AdaptiveThrottle`].
#[derive(Debug, Clone)]
pub struct AdaptiveThrottleBuilder {
    name: Arc<str>,
    k: f64,
    window: Duration,
    seed: Option<u64>,
}

impl AdaptiveThrottleBuilder {
    /// The name in rejections (default `"throttle"`).
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = name.into();
        self
    }

    /// The multiplier `K` (≥ 1; default 2). Lower is more aggressive.
    pub fn k(mut self, k: f64) -> Self {
        self.k = k;
        self
    }

    /// The window requests and accepts are counted over (default 2 minutes).
    pub fn window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// Seeds the random draws, for reproducible tests.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Validates and builds.
    pub fn build(self) -> Result<AdaptiveThrottle, ConfigError> {
        ensure(self.k.is_finite() && self.k >= 1.0, "throttle.k", "must be a finite number >= 1.0")?;
        ensure_nonzero_duration("throttle.window", self.window)?;
        Ok(AdaptiveThrottle {
            state: Arc::new(State {
                name: self.name,
                k: self.k,
                window: self.window,
                requests: SlidingCounter::new(self.window),
                accepts: SlidingCounter::new(self.window),
                rng: self.seed.map_or_else(AtomicRng::from_entropy, AtomicRng::seeded),
            }),
        })
    }
}

#[cfg(test)]
#[allow(clippy::float_cmp)] // exact values are the point
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn rejects_with_the_sre_probability() {
        let t = AdaptiveThrottle::builder().seed(42).build().unwrap();
        // 100 requests, 10 accepted: p = (100 - 20) / 101.
        for i in 0..100 {
            let _ = t.try_acquire();
            t.record(i < 10);
        }
        let p = t.probability();
        assert!((p - 80.0 / 101.0).abs() < 1e-9);
        // Draw many decisions at a frozen probability: the refusal rate follows it.
        let t2 = AdaptiveThrottle::builder().seed(42).build().unwrap();
        for i in 0..1000 {
            let _ = t2.try_acquire();
            t2.record(i % 10 == 0);
        }
        let p = t2.probability();
        let refused = (0..10_000).filter(|_| t2.state.rng.chance(p)).count();
        assert!((refused as f64 / 10_000.0 - p).abs() < 0.02, "p={p} refused={refused}");
        // The window forgets.
        tokio::time::advance(Duration::from_secs(121)).await;
        assert_eq!(t.probability(), 0.0);
    }

    #[test]
    fn healthy_backend_is_never_throttled() {
        let t = AdaptiveThrottle::builder().seed(1).build().unwrap();
        for _ in 0..1000 {
            assert!(t.try_acquire().is_ok());
            t.record(true);
        }
        assert_eq!(t.probability(), 0.0);
    }

    #[test]
    fn bad_k_is_refused() {
        assert_eq!(AdaptiveThrottle::builder().k(0.5).build().unwrap_err().field(), "throttle.k");
        assert!(AdaptiveThrottle::builder().window(Duration::ZERO).build().is_err());
    }
}
