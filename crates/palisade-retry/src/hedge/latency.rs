//! A lock-free estimate of a latency percentile over the last samples.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Samples kept.
const SAMPLES: usize = 128;
/// The percentile is recomputed every this many samples.
const RECOMPUTE_EVERY: u64 = 16;

/// A ring of the last [`SAMPLES`] latencies (atomic slots, no lock) and a cached percentile.
#[derive(Debug)]
pub(crate) struct LatencyTracker {
    ring: [AtomicU64; SAMPLES],
    next: AtomicU64,
    cached: AtomicU64,
    percentile: f64,
    min_samples: u64,
}

impl LatencyTracker {
    pub(crate) fn new(percentile: f64, min_samples: u64) -> Self {
        Self {
            ring: std::array::from_fn(|_| AtomicU64::new(0)),
            next: AtomicU64::new(0),
            cached: AtomicU64::new(u64::MAX),
            percentile,
            min_samples: min_samples.clamp(1, SAMPLES as u64),
        }
    }

    pub(crate) fn record(&self, latency: Duration) {
        let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX).max(1);
        let n = self.next.fetch_add(1, Ordering::AcqRel);
        self.ring[(n % SAMPLES as u64) as usize].store(nanos, Ordering::Release);
        let seen = n + 1;
        if seen >= self.min_samples && (seen == self.min_samples || seen % RECOMPUTE_EVERY == 0) {
            self.recompute();
        }
    }

    fn recompute(&self) {
        let mut buf = [0u64; SAMPLES];
        let mut len = 0;
        for slot in &self.ring {
            let v = slot.load(Ordering::Acquire);
            if v != 0 {
                buf[len] = v;
                len += 1;
            }
        }
        if len == 0 {
            return;
        }
        let samples = &mut buf[..len];
        let rank = ((self.percentile * len as f64).ceil() as usize).clamp(1, len) - 1;
        let (_, value, _) = samples.select_nth_unstable(rank);
        self.cached.store(*value, Ordering::Release);
    }

    /// The percentile, once `min_samples` samples were seen.
    pub(crate) fn estimate(&self) -> Option<Duration> {
        match self.cached.load(Ordering::Acquire) {
            u64::MAX => None,
            n => Some(Duration::from_nanos(n)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimates_the_percentile_of_recent_samples() {
        let t = LatencyTracker::new(0.9, 10);
        for ms in 1..=9 {
            t.record(Duration::from_millis(ms));
        }
        assert_eq!(t.estimate(), None);
        t.record(Duration::from_millis(10));
        assert_eq!(t.estimate(), Some(Duration::from_millis(9)));
        // Old samples leave the ring: after 128 samples of 50 ms only those count.
        for _ in 0..128 {
            t.record(Duration::from_millis(50));
        }
        assert_eq!(t.estimate(), Some(Duration::from_millis(50)));
    }
}
