//! The algorithms: token bucket (GCRA), leaky bucket, sliding window log, sliding window
//! counter and fixed window, each one limiter's state for one key.
//!
//! All times are nanoseconds since the owning limiter's epoch (a `tokio::time::Instant`), so
//! every algorithm is testable with a paused clock and with plain numbers.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

#[cfg(loom)]
use loom::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
#[cfg(not(loom))]
use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

use crate::quota::Quota;

/// Which algorithm a limit uses.
///
/// | algorithm | admits | memory per key | waits by |
/// |---|---|---|---|
/// | [`TokenBucket`](Self::TokenBucket) (default) | `burst` at once, then `limit / period` | one `u64`, lock-free | reserving a future slot |
/// | [`LeakyBucket`](Self::LeakyBucket) | one every `period / limit`, a queue holds the rest | one `u64`, lock-free | always queues (smooths) |
/// | [`SlidingWindowLog`](Self::SlidingWindowLog) | exactly `limit` in any window of `period` | one entry per admitted or booked request | booking the earliest time that fits |
/// | [`SlidingWindowCounter`](Self::SlidingWindowCounter) | about `limit` per sliding `period` | four integers, plus a count per window booked ahead (at most 64) | booking the earliest time that fits |
/// | [`FixedWindow`](Self::FixedWindow) | `limit` per calendar window of `period` | four integers, plus a count per window booked ahead | booking the first window with room (as Resilience4j's `AtomicRateLimiter` reserves from future cycles, counted per window) |
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize), serde(rename_all = "snake_case"))]
#[non_exhaustive]
pub enum Algorithm {
    /// Token bucket as GCRA (generic cell rate algorithm): one atomic "theoretical arrival
    /// time", updated with compare-and-swap. Bursts of up to the quota's burst.
    #[default]
    TokenBucket,
    /// Leaky bucket that smooths: admitted requests leave one every `period / limit`; up to
    /// `queue` requests wait for their turn, and a request that finds the queue full is
    /// rejected at once, with `retry_after` the time until a place frees. As a layer it
    /// always queues, in either [`Mode`](crate::Mode) (in wait mode up to `max_wait`). The
    /// direct [`RateLimiter::check`](crate::RateLimiter::check) and `try_acquire` admit only
    /// a request that may leave now (their caller proceeds at once), so a weight above 1
    /// is [`Denied::ExceedsCapacity`] there; in general a weight that could not leave
    /// within the wait allowed (the queue, or `max_wait` if shorter) even from an empty
    /// bucket is `ExceedsCapacity`, never a `retry_after` that would not be kept.
    /// [`RateLimiter::reserve`](crate::RateLimiter::reserve) takes a queue place and says
    /// when to leave.
    LeakyBucket {
        /// Requests that may wait for their departure slot.
        queue: u32,
    },
    /// Sliding window log: the exact count of requests in the last `period` (keeps one
    /// timestamp per admitted request, so memory grows with `limit`, which is therefore at
    /// most [`Quota::MAX_LOG_LIMIT`](crate::Quota::MAX_LOG_LIMIT)).
    SlidingWindowLog,
    /// Sliding window counter: two fixed windows, the previous one weighted by how much of
    /// it still overlaps the sliding window. Approximate, O(1) memory.
    SlidingWindowCounter,
    /// Fixed window: `limit` per window of `period` aligned to the limiter's start. Allows
    /// up to twice the limit across a window boundary; here for parity.
    FixedWindow,
}

impl Algorithm {
    /// A short stable name (`"token_bucket"`, `"leaky_bucket"`, …).
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::TokenBucket => "token_bucket",
            Self::LeakyBucket { .. } => "leaky_bucket",
            Self::SlidingWindowLog => "sliding_window_log",
            Self::SlidingWindowCounter => "sliding_window_counter",
            Self::FixedWindow => "fixed_window",
        }
    }
}

/// Why a limiter did not admit a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Denied {
    /// Not now; the same request would be admitted after this long (if nothing else takes
    /// the capacity first).
    RetryAfter(Duration),
    /// The request costs more than the limit can ever admit at once; waiting will not help.
    ExceedsCapacity {
        /// The request's cost.
        cost: u32,
        /// The most the limit admits at once.
        capacity: u32,
    },
    /// A keyed limit holds as many keys as it may, and every one of them still constrains
    /// someone: a *new* key is refused rather than any key's state reset (see
    /// [`LocalStore`](crate::LocalStore)).
    KeySetFull {
        /// The most keys the limit holds.
        capacity: usize,
    },
}

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::RetryAfter(d) => write!(f, "rate limited; retry after {d:?}"),
            Self::ExceedsCapacity { cost, capacity } => {
                write!(f, "request cost {cost} exceeds the limit's capacity {capacity}")
            }
            Self::KeySetFull { capacity } => write!(f, "all {capacity} keys in use; new key refused"),
        }
    }
}

impl std::error::Error for Denied {}

/// What a limit holds for one key right now (from the [handle](crate::RateLimitHandle) or a
/// limiter's `status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Status {
    /// The most the limit admits at once (burst, queue + 1, or window limit).
    pub capacity: u32,
    /// What could be admitted now (tokens, free queue places, room left in the window).
    pub remaining: u32,
    /// Time until the limit is back to full capacity.
    pub reset_after: Duration,
    /// Requests admitted and waiting for their slot (leaky bucket; 0 otherwise).
    pub queued: u32,
}

impl Status {
    /// Capacity used now: for windows, the (weighted) count in the window.
    pub fn used(&self) -> u32 {
        self.capacity.saturating_sub(self.remaining)
    }
}

/// An admission: when it may proceed and what undoing it needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Admit {
    /// Nanoseconds (limiter time) at which the request may go; `<= now` means at once.
    pub(crate) ready_at: u64,
    /// Algorithm data for a refund (window index, log timestamp).
    pub(crate) token: u64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn dur(nanos: u64) -> Duration {
    Duration::from_nanos(nanos)
}

/// One limiter's state for one key.
pub(crate) enum Cell<T = Plain> {
    Gcra(Gcra<T>),
    Leaky { gcra: Gcra<T>, queue: u32 },
    Log(Mutex<Windowed<Log>>),
    Counter(Mutex<Windowed<CounterState>>),
    Fixed(Mutex<Windowed<FixedState>>),
}

/// A window algorithm's state with its settings, all behind one lock (so a quota change
/// is atomic).
#[derive(Debug)]
pub(crate) struct Windowed<S> {
    window: u64,
    limit: u32,
    state: S,
}

impl<S> Windowed<S> {
    fn new(window: u64, limit: u32, state: S) -> Mutex<Self> {
        Mutex::new(Self { window, limit, state })
    }
}

impl<T> fmt::Debug for Cell<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Self::Gcra(_) => "token_bucket",
            Self::Leaky { .. } => "leaky_bucket",
            Self::Log { .. } => "sliding_window_log",
            Self::Counter { .. } => "sliding_window_counter",
            Self::Fixed { .. } => "fixed_window",
        };
        f.debug_tuple("Cell").field(&name).finish()
    }
}

impl<T: Tat> Cell<T> {
    pub(crate) fn new(algorithm: Algorithm, quota: &Quota) -> Self {
        let window = quota.period_nanos();
        let limit = quota.limit();
        if limit == 0 || quota.burst_size() == 0 {
            // A blocked key: nothing is ever admitted.
            return Self::Fixed(Windowed::new(window, 0, FixedState::new()));
        }
        match algorithm {
            Algorithm::TokenBucket => Self::Gcra(Gcra::new(quota.interval_nanos(), quota.burst_size())),
            Algorithm::LeakyBucket { queue } => {
                Self::Leaky { gcra: Gcra::new(quota.interval_nanos(), 1), queue }
            }
            Algorithm::SlidingWindowLog => Self::Log(Windowed::new(window, limit, Log::default())),
            Algorithm::SlidingWindowCounter => {
                Self::Counter(Windowed::new(window, limit, CounterState::default()))
            }
            Algorithm::FixedWindow => Self::Fixed(Windowed::new(window, limit, FixedState::new())),
        }
    }

    /// Changes the quota at once (the algorithm stays): what was admitted stays admitted,
    /// waiters keep their slots, and what comes next is judged by the new quota. A token
    /// bucket keeps the tokens in use (its debt, rescaled to the new interval); a window
    /// keeps its counts (with a new period, counted from the window holding `now`).
    pub(crate) fn set_quota(&self, quota: &Quota, now: u64) {
        match self {
            Self::Gcra(g) => g.set(quota.interval_nanos(), quota.burst_size(), now),
            Self::Leaky { gcra, .. } => gcra.set(quota.interval_nanos(), 1, now),
            Self::Log(w) => {
                let mut w = lock(w);
                (w.window, w.limit) = (quota.period_nanos(), quota.limit());
            }
            Self::Counter(w) => {
                let mut w = lock(w);
                let window = quota.period_nanos();
                if window != w.window {
                    w.state.rebase(now, window);
                }
                (w.window, w.limit) = (window, quota.limit());
            }
            Self::Fixed(w) => {
                // Every window keeps what it used or booked (see `FixedState`).
                let w = &mut *lock(w);
                let window = quota.period_nanos();
                if window != w.window {
                    w.state.rebase(now, w.window, window);
                }
                w.state.relimit();
                (w.window, w.limit) = (window, quota.limit());
            }
        }
    }

    /// Tries to admit `cost` at `now`. `max_wait` is `None` in reject mode; with `Some`, the
    /// bucket algorithms may reserve a slot up to that far ahead.
    #[inline]
    pub(crate) fn acquire(&self, now: u64, cost: u32, max_wait: Option<u64>) -> Result<Admit, Denied> {
        if let (Self::Gcra(g), 1..) = (self, cost) {
            // The common case first.
            return g.acquire(now, cost, max_wait.unwrap_or(0), u64::MAX);
        }
        if cost == 0 {
            return Ok(Admit { ready_at: now, token: 0 });
        }
        let wait = max_wait.unwrap_or(0);
        match self {
            Self::Gcra(g) => g.acquire(now, cost, wait, u64::MAX),
            Self::Leaky { gcra, queue } => {
                // The queue bound: the last place departs `queue` intervals from now. Refused,
                // the queue has room again once the departure slot is within the bound — the
                // wait reported.
                let capacity = queue.saturating_add(1);
                if cost > capacity {
                    return Err(Denied::ExceedsCapacity { cost, capacity });
                }
                gcra.acquire(now, cost, max_wait.unwrap_or(u64::MAX), u64::from(*queue))
            }
            Self::Log(w) => {
                let w = &mut *lock(w);
                check_capacity(cost, w.limit)?;
                w.state.acquire(now, cost, w.window, w.limit, wait)
            }
            Self::Counter(w) => {
                let w = &mut *lock(w);
                check_capacity(cost, w.limit)?;
                w.state.acquire(now, cost, w.window, w.limit, wait)
            }
            Self::Fixed(w) => {
                let w = &mut *lock(w);
                check_capacity(cost, w.limit)?;
                w.state.acquire(now, cost, w.window, w.limit, wait)
            }
        }
    }

    /// Gives back an admission that was never used.
    pub(crate) fn refund(&self, admit: Admit, cost: u32, now: u64) {
        if cost == 0 {
            return;
        }
        match self {
            Self::Gcra(g) | Self::Leaky { gcra: g, .. } => g.refund(admit.token, cost, now),
            Self::Log(w) => lock(w).state.refund(admit.token, cost),
            Self::Counter(w) => lock(w).state.refund(admit.token, cost),
            Self::Fixed(w) => lock(w).state.refund(admit.token, cost),
        }
    }

    /// Whether this state is back to a fresh one's at `now`: forgetting it and starting
    /// afresh would make exactly the same decisions.
    pub(crate) fn can_forget(&self, now: u64) -> bool {
        match self {
            Self::Gcra(g) | Self::Leaky { gcra: g, .. } => g.tat.load(Ordering::Acquire) <= now,
            Self::Log(w) => {
                let w = &mut *lock(w);
                w.state.can_forget(now, w.window)
            }
            Self::Counter(w) => {
                let w = &mut *lock(w);
                w.state.can_forget(now, w.window)
            }
            Self::Fixed(w) => {
                let w = &mut *lock(w);
                w.state.can_forget(now, w.window)
            }
        }
    }

    pub(crate) fn status(&self, now: u64) -> Status {
        match self {
            Self::Gcra(g) => g.status(now),
            Self::Leaky { gcra, queue } => {
                let tat = gcra.tat.load(Ordering::Acquire);
                let ahead = tat.saturating_sub(now);
                let queued = ahead.div_ceil(gcra.params.load().0).saturating_sub(1);
                let queued = u32::try_from(queued).unwrap_or(u32::MAX).min(*queue);
                Status {
                    capacity: queue.saturating_add(1),
                    remaining: queue
                        .saturating_add(1)
                        .saturating_sub(queued.saturating_add(u32::from(ahead > 0))),
                    reset_after: dur(ahead),
                    queued,
                }
            }
            Self::Log(w) => {
                let w = &mut *lock(w);
                w.state.status(now, w.window, w.limit)
            }
            Self::Counter(w) => {
                let w = &mut *lock(w);
                w.state.status(now, w.window, w.limit)
            }
            Self::Fixed(w) => {
                let w = &mut *lock(w);
                w.state.status(now, w.window, w.limit)
            }
        }
    }
}

fn check_capacity(cost: u32, capacity: u32) -> Result<(), Denied> {
    if cost > capacity {
        return Err(Denied::ExceedsCapacity { cost, capacity });
    }
    Ok(())
}

// === impl Params ===

/// Waits a moment for a writer (under loom, lets the model schedule it).
#[inline]
fn spin() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    std::hint::spin_loop();
}

/// A GCRA's emission interval and burst, changeable at run time: a sequence lock, so a
/// reader always sees one consistent pair (two plain loads and a check on the fast path).
#[derive(Debug)]
pub(crate) struct Params {
    /// Odd while a writer is storing.
    version: AtomicU64,
    interval: AtomicU64,
    burst: AtomicU32,
}

impl Params {
    fn new(interval: u64, burst: u32) -> Self {
        Self { version: AtomicU64::new(0), interval: AtomicU64::new(interval), burst: AtomicU32::new(burst) }
    }

    /// `(interval, tau, burst)`.
    #[inline]
    fn load(&self) -> (u64, u64, u32) {
        let (_, interval, tau, burst, ()) = self.read_with(|| ());
        (interval, tau, burst)
    }

    /// `(version, interval, tau, burst)` and what `also` read, all from one consistent
    /// moment (no writer ran meanwhile).
    #[inline]
    fn read_with<R>(&self, also: impl Fn() -> R) -> (u64, u64, u64, u32, R) {
        loop {
            let v1 = self.version.load(Ordering::Acquire);
            let interval = self.interval.load(Ordering::Relaxed);
            let burst = self.burst.load(Ordering::Relaxed);
            let extra = also();
            fence(Ordering::Acquire);
            if v1 & 1 == 0 && self.version.load(Ordering::Relaxed) == v1 {
                return (v1, interval, interval.saturating_mul(u64::from(burst)), burst, extra);
            }
            spin();
        }
    }

    /// Stores new settings; `between` runs while readers are held off (to rescale state
    /// that depends on them).
    fn store(&self, interval: u64, burst: u32, between: impl FnOnce(u64)) {
        // Writers take the version from even to odd one at a time.
        let mut v = self.version.load(Ordering::Relaxed);
        loop {
            if v & 1 == 1 {
                spin();
                v = self.version.load(Ordering::Relaxed);
                continue;
            }
            match self.version.compare_exchange_weak(v, v + 1, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => break,
                Err(actual) => v = actual,
            }
        }
        fence(Ordering::Release);
        between(self.interval.load(Ordering::Relaxed));
        self.interval.store(interval, Ordering::Relaxed);
        self.burst.store(burst, Ordering::Relaxed);
        self.version.store(v + 2, Ordering::Release);
    }
}

// === impl Gcra ===

/// Token bucket as GCRA, lock-free on one atomic.
///
/// GCRA as described by Brandur Leach ("Rate limiting, cells, and GCRA") and implemented by
/// the `governor` crate: instead of a token count refilled by a timer, keep the
/// *theoretical arrival time* (TAT) — the time at which the bucket would be full again. With
/// emission interval `T = period / limit` and tolerance `tau = T * burst`, a request of cost
/// `n` arriving at `now` computes `new_tat = max(tat, now) + n * T`; it conforms when
/// `new_tat - tau <= now` and then stores `new_tat` with a compare-and-swap. Otherwise the
/// same request conforms at exactly `new_tat - tau`, which is the `retry_after` we report.
/// Waiting callers store `new_tat` anyway and proceed at `new_tat - tau`: a reservation of a
/// future slot, so waiters are served in order. A reservation given back subtracts `n * T`.
#[derive(Debug)]
pub(crate) struct Gcra<T> {
    tat: T,
    params: Params,
}

impl<T: Tat> Gcra<T> {
    fn new(interval: u64, burst: u32) -> Self {
        Self { tat: T::new(0), params: Params::new(interval, burst) }
    }

    /// Admits `cost`, waiting at most `max_wait` and at most `queue` intervals (leaky
    /// bucket; `u64::MAX` for none).
    #[inline]
    fn acquire(&self, now: u64, cost: u32, max_wait: u64, queue: u64) -> Result<Admit, Denied> {
        let (mut version, mut interval, mut tau, mut burst, mut tat) =
            self.params.read_with(|| self.tat.load(Ordering::Acquire));
        loop {
            if cost > burst && queue == u64::MAX {
                return Err(Denied::ExceedsCapacity { cost, capacity: burst });
            }
            let max_wait =
                if queue == u64::MAX { max_wait } else { max_wait.min(interval.saturating_mul(queue)) };
            let inc = interval.saturating_mul(u64::from(cost));
            if queue != u64::MAX && inc.saturating_sub(tau) > max_wait {
                // Leaky bucket: even an empty bucket lets this cost leave only
                // `inc - tau` from now, beyond the wait allowed (the queue, or `max_wait`;
                // zero for a direct check). No `retry_after` would ever be kept: say so.
                let capacity = tau.saturating_add(max_wait) / interval.max(1);
                return Err(Denied::ExceedsCapacity {
                    cost,
                    capacity: u32::try_from(capacity).unwrap_or(u32::MAX),
                });
            }
            let new_tat = tat.max(now).saturating_add(inc);
            let allow_at = new_tat.saturating_sub(tau);
            if allow_at > now.saturating_add(max_wait) {
                // Exact: the same request conforms at `allow_at`, so it is admitted (to wait
                // at most `max_wait`) from `allow_at - max_wait` on.
                return Err(Denied::RetryAfter(dur(allow_at - now - max_wait)));
            }
            match self.tat.compare_exchange_weak(tat, new_tat, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Ok(Admit { ready_at: allow_at.max(now), token: new_tat }),
                // Another request went first: its TAT is the one to build on, with the same
                // settings unless a quota change happened meanwhile.
                Err(actual) if self.params.version.load(Ordering::Acquire) == version => tat = actual,
                Err(_) => {
                    (version, interval, tau, burst, tat) =
                        self.params.read_with(|| self.tat.load(Ordering::Acquire));
                }
            }
        }
    }

    /// New settings: the tokens in use (the debt `tat - now`, in intervals) stay in use,
    /// counted at the new interval.
    ///
    /// Callers booked beyond the old burst (waiting for slots up to `tat - tau`) proceed at
    /// those fixed times whatever the new rate, so nobody new is slotted before the last of
    /// them: the TAT is at least that slot plus the new tolerance, and newcomers follow it
    /// at the new interval. (Rescaling alone would, after a raise, slot newcomers among the
    /// booked callers and admit more than the new rate over that span.)
    fn set(&self, interval: u64, burst: u32, now: u64) {
        let new_tau = interval.saturating_mul(u64::from(burst));
        self.params.store(interval, burst, |old| {
            // Readers are held off: the old burst is stable here.
            let old_tau = old.saturating_mul(u64::from(self.params.burst.load(Ordering::Relaxed)));
            let _ = self.tat.fetch_update(Ordering::AcqRel, Ordering::Acquire, |tat| {
                let debt = u128::from(tat.saturating_sub(now));
                let scaled = debt * u128::from(interval) / u128::from(old.max(1));
                let mut new = now.saturating_add(u64::try_from(scaled).unwrap_or(u64::MAX));
                let booked_until = tat.saturating_sub(old_tau);
                if booked_until > now {
                    new = new.max(booked_until.saturating_add(new_tau));
                }
                Some(new)
            });
        });
    }

    /// Gives back `cost` admitted when the TAT became `tat_after`. Exact when nothing was
    /// admitted after it, or when nobody waits (tokens are interchangeable then). Otherwise
    /// later requests hold future slots computed from this one, and moving the TAT back would
    /// let a newcomer share a slot with one of them: the reservation lapses instead, which
    /// never admits more than the rate.
    fn refund(&self, tat_after: u64, cost: u32, now: u64) {
        let (interval, tau, _) = self.params.load();
        let inc = interval.saturating_mul(u64::from(cost));
        // A TAT in the past means a full bucket, so going below `now` gives nothing extra.
        let _ = self.tat.fetch_update(Ordering::AcqRel, Ordering::Acquire, |tat| {
            (tat == tat_after || tat.saturating_sub(tau) <= now).then(|| tat.saturating_sub(inc))
        });
    }

    fn status(&self, now: u64) -> Status {
        let (interval, tau, burst) = self.params.load();
        let tat = self.tat.load(Ordering::Acquire).max(now);
        let used = tat - now;
        let free = tau.saturating_sub(used) / interval.max(1);
        Status {
            capacity: burst,
            remaining: u32::try_from(free).unwrap_or(u32::MAX).min(burst),
            reset_after: dur(used),
            queued: 0,
        }
    }
}

/// Where a GCRA keeps its TAT.
pub(crate) trait Tat: std::ops::Deref<Target = AtomicU64> + fmt::Debug + Send + Sync {
    fn new(v: u64) -> Self;
}

/// The TAT inline: per-key limiters, where memory per key matters.
#[derive(Debug)]
pub(crate) struct Plain(AtomicU64);

/// The TAT on a cache line of its own: for a limiter shared by busy threads, whose
/// compare-and-swap must not also evict the read-only settings next to it.
#[derive(Debug)]
#[repr(align(128))]
pub(crate) struct Padded(AtomicU64);

macro_rules! tat_impl {
    ($ty:ident) => {
        impl Tat for $ty {
            fn new(v: u64) -> Self {
                Self(AtomicU64::new(v))
            }
        }

        impl std::ops::Deref for $ty {
            type Target = AtomicU64;

            fn deref(&self) -> &AtomicU64 {
                &self.0
            }
        }
    };
}

tat_impl!(Plain);
tat_impl!(Padded);

// === impl Log ===

/// Sliding window log: one `(timestamp, cost)` entry per admitted request, in time order.
/// In wait mode a request is booked at the earliest time it fits (an entry in the future),
/// behind every earlier booking.
#[derive(Debug, Default)]
pub(crate) struct Log {
    entries: VecDeque<(u64, u32)>,
    sum: u64,
    /// The latest time seen: a reading older than it (taken before another thread's) is
    /// treated as this time, so entries stay in order and nothing is admitted early.
    last: u64,
}

impl Log {
    fn can_forget(&mut self, now: u64, window: u64) -> bool {
        let now = self.clamp(now);
        self.expire(now, window);
        self.entries.is_empty()
    }

    fn clamp(&mut self, now: u64) -> u64 {
        self.last = self.last.max(now);
        self.last
    }

    fn expire(&mut self, now: u64, window: u64) {
        while let Some(&(ts, cost)) = self.entries.front() {
            if ts.saturating_add(window) > now {
                break;
            }
            self.entries.pop_front();
            self.sum -= u64::from(cost);
        }
    }

    /// The earliest time, not before `now` nor before the last entry, at which `cost` more
    /// keeps every window of `window` within `limit`.
    fn earliest(&self, now: u64, cost: u32, window: u64, limit: u32) -> u64 {
        let from = self.entries.back().map_or(now, |&(ts, _)| ts.max(now));
        let total = self.sum + u64::from(cost);
        if total <= u64::from(limit) {
            return from;
        }
        // Enough of the oldest entries must have left the window.
        let need = total - u64::from(limit);
        let mut freed = 0;
        for &(ts, c) in &self.entries {
            freed += u64::from(c);
            if freed >= need {
                return ts.saturating_add(window).max(from);
            }
        }
        from.saturating_add(window)
    }

    fn acquire(
        &mut self,
        now: u64,
        cost: u32,
        window: u64,
        limit: u32,
        max_wait: u64,
    ) -> Result<Admit, Denied> {
        let now = self.clamp(now);
        self.expire(now, window);
        let at = self.earliest(now, cost, window, limit);
        let wait = at - now;
        if wait > max_wait {
            return Err(Denied::RetryAfter(dur(wait - max_wait)));
        }
        self.entries.push_back((at, cost));
        self.sum += u64::from(cost);
        Ok(Admit { ready_at: at, token: at })
    }

    fn refund(&mut self, token: u64, cost: u32) {
        if let Some(i) = self.entries.iter().rposition(|&(ts, c)| ts == token && c == cost) {
            self.entries.remove(i);
            self.sum -= u64::from(cost);
        }
    }

    fn status(&mut self, now: u64, window: u64, limit: u32) -> Status {
        let now = self.clamp(now);
        self.expire(now, window);
        let used = u32::try_from(self.sum).unwrap_or(u32::MAX);
        let reset = self.entries.back().map_or(0, |&(ts, _)| ts.saturating_add(window) - now);
        let queued = self.entries.iter().rev().take_while(|&&(ts, _)| ts > now).count();
        Status {
            capacity: limit,
            remaining: limit.saturating_sub(used),
            reset_after: dur(reset),
            queued: u32::try_from(queued).unwrap_or(u32::MAX),
        }
    }
}

// === impl CounterState ===

/// Windows ahead a sliding window counter books into, at most.
const COUNTER_HORIZON: usize = 64;

/// Sliding window counter: counts of the previous and current fixed windows, and of the
/// windows ahead that waiting callers booked into.
///
/// In wait mode a request is booked at the earliest time the estimate admits it (up to
/// [`COUNTER_HORIZON`] windows ahead), behind every earlier booking (`tail`): while
/// bookings are pending nobody passes ahead of them, so the counts they were computed from
/// stay true.
#[derive(Debug, Default)]
pub(crate) struct CounterState {
    index: u64,
    prev: u64,
    curr: u64,
    /// Booked into the windows after `index` (`ahead[0]` is the next one).
    ahead: VecDeque<u64>,
    /// The time of the latest booking.
    tail: u64,
    /// The latest time seen; older readings count as this time (never back a window).
    last: u64,
}

/// The smallest elapsed time in a window, not below `from`, at which
/// `prev * (w - e) / w + curr + cost <= limit`; `None` when none in the window.
fn counter_fit(prev: u64, curr: u64, cost: u32, limit: u32, w: u64, from: u64) -> Option<u64> {
    let (prev, curr, c, l, w128) =
        (u128::from(prev), u128::from(curr), u128::from(cost), u128::from(limit), u128::from(w));
    if curr + c > l {
        return None;
    }
    // prev * (w - e) <= (l - curr - c) * w  ⇔  e >= w - (l - curr - c) * w / prev
    let room = (l - curr - c) * w128;
    let e = room.checked_div(prev).map_or(0, |q| w128.saturating_sub(q));
    let e = (e as u64).max(from);
    (e < w).then_some(e)
}

impl CounterState {
    fn can_forget(&mut self, now: u64, window: u64) -> bool {
        self.roll(now, window);
        self.prev == 0 && self.curr == 0 && self.ahead.is_empty() && self.tail <= self.last
    }

    /// A new period: the counts stay, the window holding the latest time seen becomes the
    /// current one.
    fn rebase(&mut self, now: u64, window: u64) {
        self.last = self.last.max(now);
        self.index = self.last / window;
    }

    /// The count of window `index + j` (0: current).
    fn count(&self, j: usize) -> u64 {
        match j {
            0 => self.curr,
            _ => self.ahead.get(j - 1).copied().unwrap_or(0),
        }
    }

    /// Moves to the window of `now` (or of the latest time seen, if later) and returns the
    /// time elapsed in it.
    fn roll(&mut self, now: u64, window: u64) -> u64 {
        self.last = self.last.max(now);
        let now = self.last;
        let index = now / window;
        while self.index < index {
            if self.ahead.is_empty() && self.curr == 0 {
                // Nothing further: jump.
                self.prev = if index == self.index + 1 { self.curr } else { 0 };
                self.index = index;
                break;
            }
            self.prev = self.curr;
            self.curr = self.ahead.pop_front().unwrap_or(0);
            self.index += 1;
        }
        now - index * window
    }

    fn acquire(
        &mut self,
        now: u64,
        cost: u32,
        window: u64,
        limit: u32,
        max_wait: u64,
    ) -> Result<Admit, Denied> {
        self.roll(now, window);
        let now = self.last;
        let from = self.tail.max(now);
        let mut j = 0;
        let (at, j) = loop {
            let start = (self.index + j as u64).saturating_mul(window);
            if from < start.saturating_add(window) {
                let prev = if j == 0 { self.prev } else { self.count(j - 1) };
                if let Some(e) =
                    counter_fit(prev, self.count(j), cost, limit, window, from.saturating_sub(start))
                {
                    break (start.saturating_add(e), j);
                }
            }
            // Past the bookings two empty windows always admit, so this ends.
            j += 1;
        };
        let wait = at - now;
        if wait > max_wait || j > COUNTER_HORIZON {
            return Err(Denied::RetryAfter(dur(wait.saturating_sub(max_wait).max(1))));
        }
        if j == 0 {
            self.curr += u64::from(cost);
        } else {
            if self.ahead.len() < j {
                self.ahead.resize(j, 0);
            }
            self.ahead[j - 1] += u64::from(cost);
        }
        if at > now {
            self.tail = at;
        }
        Ok(Admit { ready_at: at, token: self.index + j as u64 })
    }

    fn refund(&mut self, token: u64, cost: u32) {
        let cost = u64::from(cost);
        if token > self.index {
            if let Some(n) = self.ahead.get_mut((token - self.index - 1) as usize) {
                *n = n.saturating_sub(cost);
            }
        } else if token == self.index {
            self.curr = self.curr.saturating_sub(cost);
        } else if token + 1 == self.index {
            self.prev = self.prev.saturating_sub(cost);
        }
    }

    fn status(&mut self, now: u64, window: u64, limit: u32) -> Status {
        let elapsed = self.roll(now, window);
        let weighted = (u128::from(self.prev) * u128::from(window - elapsed)).div_ceil(u128::from(window))
            + u128::from(self.curr);
        let used = u32::try_from(weighted).unwrap_or(u32::MAX);
        let reset = if !self.ahead.is_empty() {
            (self.ahead.len() as u64 + 2).saturating_mul(window) - elapsed
        } else if self.curr > 0 {
            2 * window - elapsed
        } else if self.prev > 0 {
            window - elapsed
        } else {
            0
        };
        let queued: u64 = self.ahead.iter().sum();
        Status {
            capacity: limit,
            remaining: limit.saturating_sub(used),
            reset_after: dur(reset),
            queued: u32::try_from(queued).unwrap_or(u32::MAX),
        }
    }
}

// === impl FixedState ===

/// Fixed window: `limit` permissions per window. Waiting callers book a later window, as
/// Resilience4j's `AtomicRateLimiter` lets them reserve from future cycles; unlike its single
/// signed counter (which spreads every reservation at the limit in force *now*), each
/// window's bookings are counted on their own, so a limit changed while callers are booked
/// neither double-books a window nor hands a booked window's places to newcomers: a lower
/// limit admits nothing more in a window holding more than it, a higher one adds exactly
/// its difference to each window (issue 13.5).
///
/// A request is booked into the first window, from the current one on, with room for its
/// whole cost (a cost never exceeds the limit: that is `ExceedsCapacity`). Only windows
/// that hold a booking are kept: each was full for some caller when a later one was
/// booked, so their number is bounded by the callers waiting.
#[derive(Debug)]
pub(crate) struct FixedState {
    index: u64,
    /// Used in the current window.
    used: u64,
    /// Booked into the windows after `index` (`ahead[0]` is the next one).
    ahead: VecDeque<u64>,
    /// Windows before `index + full` are full (no room for a cost of 1): the search for a
    /// window with room starts there, so a long queue costs O(1) per booking. Reset by
    /// anything that can free room (a refund, a new limit).
    full: usize,
    /// The latest time seen; older readings count as this time (never back a window).
    last: u64,
}

impl FixedState {
    fn new() -> Self {
        Self { index: 0, used: 0, ahead: VecDeque::new(), full: 0, last: 0 }
    }

    /// A new limit: every window keeps what it used or booked, so a window above a lower
    /// limit admits nothing more and a higher one adds its difference to each window.
    fn relimit(&mut self) {
        self.full = 0;
    }

    fn can_forget(&mut self, now: u64, window: u64) -> bool {
        self.roll(now, window);
        self.used == 0 && self.ahead.is_empty()
    }

    /// A new period: what the current window used stays used in the new current window,
    /// and each booked window's callers (who proceed at its start) are counted in the new
    /// window holding that start — so a shorter period never leaves a window's booked
    /// callers uncounted where they run.
    fn rebase(&mut self, now: u64, old_window: u64, window: u64) {
        self.roll(now, old_window);
        let index = self.last / window;
        let booked: Vec<(u64, u64)> = self
            .ahead
            .iter()
            .enumerate()
            .filter(|&(_, &n)| n > 0)
            .map(|(j, &n)| ((self.index + 1 + j as u64).saturating_mul(old_window) / window, n))
            .collect();
        self.index = index;
        self.ahead.clear();
        self.full = 0;
        for (at, n) in booked {
            match at.saturating_sub(index) {
                0 => self.used = self.used.saturating_add(n),
                j => {
                    let j = usize::try_from(j).unwrap_or(usize::MAX);
                    if self.ahead.len() < j {
                        self.ahead.resize(j, 0);
                    }
                    self.ahead[j - 1] = self.ahead[j - 1].saturating_add(n);
                }
            }
        }
    }

    /// The count of window `index + j` (0: current).
    fn count(&self, j: usize) -> u64 {
        match j {
            0 => self.used,
            _ => self.ahead.get(j - 1).copied().unwrap_or(0),
        }
    }

    /// Moves to the window of `now` (or of the latest time seen, if later); returns the
    /// time used.
    fn roll(&mut self, now: u64, window: u64) -> u64 {
        self.last = self.last.max(now);
        let now = self.last;
        let index = now / window;
        if index > self.index {
            let steps = index - self.index;
            self.full = self.full.saturating_sub(usize::try_from(steps).unwrap_or(usize::MAX));
            if steps > self.ahead.len() as u64 {
                self.used = 0;
                self.ahead.clear();
            } else {
                // `steps >= 1`: the window of `now` was booked ahead (or is empty).
                let skip = usize::try_from(steps - 1).unwrap_or(usize::MAX);
                self.ahead.drain(..skip);
                self.used = self.ahead.pop_front().unwrap_or(0);
            }
            self.index = index;
        }
        now
    }

    fn acquire(
        &mut self,
        now: u64,
        cost: u32,
        window: u64,
        limit: u32,
        max_wait: u64,
    ) -> Result<Admit, Denied> {
        let now = self.roll(now, window);
        let (cost_u, limit_u) = (u64::from(cost), u64::from(limit));
        // The first window with room for the whole cost: one of the booked ones, or the
        // first after them (empty, and `cost <= limit`).
        while self.full <= self.ahead.len() && self.count(self.full) >= limit_u {
            self.full += 1;
        }
        let j = (self.full..=self.ahead.len())
            .find(|&j| self.count(j).saturating_add(cost_u) <= limit_u)
            .unwrap_or(self.ahead.len() + 1);
        let ready_index = self.index.saturating_add(j as u64);
        let at = if j == 0 { now } else { ready_index.saturating_mul(window) };
        let wait = at.saturating_sub(now);
        if wait > max_wait {
            // Exact: every window before `at` is full for this cost, and `at` comes within
            // the wait allowed exactly `wait - max_wait` from now.
            return Err(Denied::RetryAfter(dur(wait - max_wait)));
        }
        if j == 0 {
            self.used += cost_u;
        } else {
            if self.ahead.len() < j {
                self.ahead.resize(j, 0);
            }
            self.ahead[j - 1] += cost_u;
        }
        Ok(Admit { ready_at: at, token: ready_index })
    }

    fn refund(&mut self, token: u64, cost: u32) {
        self.full = 0;
        let cost = u64::from(cost);
        if token == self.index {
            self.used = self.used.saturating_sub(cost);
        } else if token > self.index {
            let Ok(j) = usize::try_from(token - self.index - 1) else { return };
            if let Some(n) = self.ahead.get_mut(j) {
                *n = n.saturating_sub(cost);
            }
            while self.ahead.back() == Some(&0) {
                self.ahead.pop_back();
            }
        }
    }

    fn status(&mut self, now: u64, window: u64, limit: u32) -> Status {
        let now = self.roll(now, window);
        let used = u32::try_from(self.used).unwrap_or(u32::MAX).min(limit);
        let booked: u64 = self.ahead.iter().sum();
        let reset = if self.used > 0 || booked > 0 {
            // When every window used or booked so far has ended.
            let windows = 1 + self.ahead.len() as u64;
            self.index.saturating_add(windows).saturating_mul(window).saturating_sub(now)
        } else {
            0
        };
        Status {
            capacity: limit,
            remaining: limit.saturating_sub(used),
            reset_after: dur(reset),
            queued: u32::try_from(booked).unwrap_or(u32::MAX),
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn retry(ms: u64) -> Result<Admit, Denied> {
        Err(Denied::RetryAfter(Duration::from_millis(ms)))
    }

    #[test]
    fn gcra_admits_burst_then_one_per_interval() {
        // 10 per second, burst 3: interval 100ms.
        let cell: Cell = Cell::new(Algorithm::TokenBucket, &Quota::per_second(10).burst(3));
        for _ in 0..3 {
            assert!(cell.acquire(0, 1, None).is_ok());
        }
        assert_eq!(cell.acquire(0, 1, None), retry(100));
        assert_eq!(cell.acquire(99 * MS, 1, None), retry(1));
        assert!(cell.acquire(100 * MS, 1, None).is_ok());
        assert_eq!(cell.acquire(100 * MS, 1, None), retry(100));
        // Idle for long: back to a full burst, not more.
        for _ in 0..3 {
            assert!(cell.acquire(10_000 * MS, 1, None).is_ok());
        }
        assert!(cell.acquire(10_000 * MS, 1, None).is_err());
    }

    #[test]
    fn gcra_weights_and_capacity() {
        let cell: Cell = Cell::new(Algorithm::TokenBucket, &Quota::per_second(10).burst(5));
        assert!(cell.acquire(0, 3, None).is_ok());
        assert_eq!(cell.acquire(0, 3, None), retry(100));
        assert!(cell.acquire(0, 2, None).is_ok());
        assert_eq!(cell.acquire(0, 6, None), Err(Denied::ExceedsCapacity { cost: 6, capacity: 5 }));
        assert!(cell.acquire(0, 0, None).is_ok(), "free requests always pass");
    }

    #[test]
    fn gcra_reservations_are_spaced_and_refundable() {
        let cell: Cell = Cell::new(Algorithm::TokenBucket, &Quota::per_second(10).burst(1));
        assert_eq!(cell.acquire(0, 1, Some(250 * MS)).map(|a| a.ready_at), Ok(0));
        assert_eq!(cell.acquire(0, 1, Some(250 * MS)).map(|a| a.ready_at), Ok(100 * MS));
        let third = cell.acquire(0, 1, Some(250 * MS)).unwrap();
        assert_eq!(third.ready_at, 200 * MS);
        // The slot at 300ms is beyond a 250ms wait; from 50ms on it is within reach.
        assert_eq!(cell.acquire(0, 1, Some(250 * MS)), retry(50));
        cell.refund(third, 1, 0);
        assert_eq!(cell.acquire(0, 1, Some(250 * MS)).map(|a| a.ready_at), Ok(200 * MS));
    }

    #[test]
    fn a_reservation_given_back_mid_queue_lapses_rather_than_double_booking() {
        let cell: Cell = Cell::new(Algorithm::LeakyBucket { queue: 5 }, &Quota::per_second(10));
        let slots: Vec<_> = (0..3).map(|_| cell.acquire(0, 1, None).unwrap()).collect();
        cell.refund(slots[1], 1, 0); // the slot at 100ms, with 200ms booked after it
        assert_eq!(
            cell.acquire(0, 1, None).map(|a| a.ready_at),
            Ok(300 * MS),
            "no second departure at 200ms"
        );
        // With nobody waiting, tokens are interchangeable and come back.
        let bucket: Cell = Cell::new(Algorithm::TokenBucket, &Quota::per_second(10).burst(2));
        let a = bucket.acquire(0, 1, None).unwrap();
        let _b = bucket.acquire(0, 1, None).unwrap();
        bucket.refund(a, 1, 0);
        assert!(bucket.acquire(0, 1, None).is_ok());
        assert!(bucket.acquire(0, 1, None).is_err());
    }

    #[test]
    fn leaky_bucket_spaces_departures_and_bounds_the_queue() {
        let cell: Cell = Cell::new(Algorithm::LeakyBucket { queue: 2 }, &Quota::per_second(10));
        let slots: Vec<_> = (0..3).map(|_| cell.acquire(0, 1, None).map(|a| a.ready_at)).collect();
        assert_eq!(slots, vec![Ok(0), Ok(100 * MS), Ok(200 * MS)]);
        assert_eq!(cell.status(0).queued, 2);
        // Queue full: the next slot (300ms) is within the queue's reach 100ms from now.
        assert_eq!(cell.acquire(0, 1, None), retry(100));
        assert!(cell.acquire(100 * MS - 1, 1, None).is_err());
        assert_eq!(cell.status(150 * MS).queued, 1);
        assert_eq!(cell.acquire(150 * MS, 1, None).map(|a| a.ready_at), Ok(300 * MS));
    }

    #[test]
    fn sliding_log_is_exact() {
        let cell: Cell = Cell::new(Algorithm::SlidingWindowLog, &Quota::new(3, Duration::from_secs(1)));
        assert!(cell.acquire(0, 1, None).is_ok());
        assert!(cell.acquire(400 * MS, 1, None).is_ok());
        assert!(cell.acquire(800 * MS, 1, None).is_ok());
        assert_eq!(cell.acquire(900 * MS, 1, None), retry(100));
        assert!(cell.acquire(1000 * MS, 1, None).is_ok());
        assert_eq!(cell.acquire(1000 * MS, 2, None), retry(800));
        assert_eq!(cell.status(1000 * MS).used(), 3);
    }

    #[test]
    fn sliding_counter_weights_the_previous_window() {
        let cell: Cell = Cell::new(Algorithm::SlidingWindowCounter, &Quota::new(10, Duration::from_secs(1)));
        for _ in 0..10 {
            assert!(cell.acquire(500 * MS, 1, None).is_ok());
        }
        assert_eq!(cell.acquire(500 * MS, 1, None), retry(600));
        // At 1.5s the previous window (10) weighs half: 5 in the estimate, 5 free.
        for _ in 0..5 {
            assert!(cell.acquire(1500 * MS, 1, None).is_ok());
        }
        // prev 10 * (1 - e) + 5 + 1 <= 10 ⇒ e >= 0.6 ⇒ 100ms later.
        assert_eq!(cell.acquire(1500 * MS, 1, None), retry(100));
        assert!(cell.acquire(1600 * MS, 1, None).is_ok());
    }

    proptest::proptest! {
        #[test]
        fn leaky_bucket_departures_are_spaced_and_the_queue_bounded(
            queue in 0u32..5,
            steps in proptest::collection::vec(0u64..150, 1..200),
        ) {
            let cell: Cell = Cell::new(Algorithm::LeakyBucket { queue }, &Quota::per_second(10));
            let interval = 100 * MS;
            let mut now = 0;
            let mut last: Option<u64> = None;
            for advance in steps {
                now += advance * MS / 3;
                if let Ok(admit) = cell.acquire(now, 1, None) {
                    proptest::prop_assert!(admit.ready_at >= now);
                    proptest::prop_assert!(admit.ready_at - now <= u64::from(queue) * interval, "beyond the queue");
                    if let Some(prev) = last {
                        proptest::prop_assert!(admit.ready_at >= prev + interval, "departures closer than the interval");
                    }
                    last = Some(admit.ready_at);
                }
                proptest::prop_assert!(cell.status(now).queued <= queue);
            }
        }

        #[test]
        fn sliding_counter_never_exceeds_the_limit_in_an_aligned_window(
            limit in 1u32..20,
            steps in proptest::collection::vec((0u64..300, 1u32..3), 1..300),
        ) {
            let cell: Cell = Cell::new(Algorithm::SlidingWindowCounter, &Quota::new(limit, Duration::from_secs(1)));
            let mut now = 0;
            let mut per_window = std::collections::HashMap::<u64, u32>::new();
            for (advance, cost) in steps {
                now += advance * MS;
                let cost = cost.min(limit);
                if cell.acquire(now, cost, None).is_ok() {
                    let n = per_window.entry(now / (1000 * MS)).or_default();
                    *n += cost;
                    proptest::prop_assert!(*n <= limit);
                }
            }
        }

        #[test]
        fn gcra_refunds_restore_the_state(
            burst in 1u32..8,
            taken in 0u32..8,
        ) {
            // Taking then refunding leaves the bucket as if nothing happened.
            let cell: Cell = Cell::new(Algorithm::TokenBucket, &Quota::per_second(10).burst(burst));
            let before = cell.status(0);
            let admits: Vec<_> = (0..taken).filter_map(|_| cell.acquire(0, 1, Some(u64::MAX / 4)).ok()).collect();
            for admit in admits.into_iter().rev() {
                cell.refund(admit, 1, 0);
            }
            proptest::prop_assert_eq!(cell.status(0), before);
        }
    }

    #[test]
    fn fixed_window_resets_at_the_boundary() {
        let cell: Cell = Cell::new(Algorithm::FixedWindow, &Quota::new(2, Duration::from_secs(1)));
        assert!(cell.acquire(900 * MS, 1, None).is_ok());
        assert!(cell.acquire(900 * MS, 1, None).is_ok());
        assert_eq!(cell.acquire(900 * MS, 1, None), retry(100));
        assert!(cell.acquire(1000 * MS, 1, None).is_ok());
        assert!(cell.acquire(1000 * MS, 1, None).is_ok());
    }
}
