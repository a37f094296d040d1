//! [`Cell`]: one limiter's state for one key, whichever the algorithm.

use std::fmt;
use std::sync::Mutex;

use super::counter::CounterState;
use super::fixed::FixedState;
use super::gcra::{Gcra, Plain, Tat};
use super::log::Log;
use palisade_core::sync::lock;

use super::{dur, Admit, Algorithm, Status};
use crate::error::Denied;
use crate::quota::Quota;
#[cfg(loom)]
use loom::sync::atomic::Ordering;
#[cfg(not(loom))]
use std::sync::atomic::Ordering;

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
    pub(super) window: u64,
    pub(super) limit: u32,
    pub(super) state: S,
    /// Changes of period so far. Window algorithms name a reservation by its window's
    /// index, and a new period renumbers the windows: an admission carries this in its
    /// `mark`, and one made before a change of period lapses when given back (its index
    /// may name another window now, whose callers still run).
    pub(super) periods: u64,
}

impl<S> Windowed<S> {
    pub(super) fn new(window: u64, limit: u32, state: S) -> Mutex<Self> {
        Mutex::new(Self { window, limit, state, periods: 0 })
    }

    /// `admit`, marked with the period it was counted in.
    fn marked(&self, admit: Result<Admit, Denied>) -> Result<Admit, Denied> {
        admit.map(|a| Admit { mark: self.periods, ..a })
    }

    /// Whether a reservation marked `mark` was counted in the windows of the period now.
    fn same_period(&self, mark: u64) -> bool {
        mark == self.periods
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
        Self::starting_at(algorithm, quota, 0)
    }

    /// A fresh state for which no time before `at` exists: a reading older than `at` counts
    /// as `at` (windows), or finds the bucket full at `at` and no earlier (token and leaky
    /// bucket). A keyed store makes new keys so once it has forgotten keys at `at`: a
    /// reading taken before that forgetting then decides as the key forgotten would have
    /// (or more strictly), never as a key with no past.
    pub(crate) fn starting_at(algorithm: Algorithm, quota: &Quota, at: u64) -> Self {
        let window = quota.period_nanos();
        let limit = quota.limit();
        if limit == 0 || quota.burst_size() == 0 {
            // A blocked key: nothing is ever admitted.
            return Self::Fixed(Windowed::new(window, 0, FixedState::starting_at(at, window)));
        }
        match algorithm {
            Algorithm::TokenBucket => {
                Self::Gcra(Gcra::starting_at(quota.interval_nanos(), quota.burst_size(), at))
            }
            Algorithm::LeakyBucket { queue } => {
                Self::Leaky { gcra: Gcra::starting_at(quota.interval_nanos(), 1, at), queue }
            }
            Algorithm::SlidingWindowLog => {
                Self::Log(Windowed::new(window, limit, Log { last: at, ..Log::default() }))
            }
            Algorithm::SlidingWindowCounter => {
                Self::Counter(Windowed::new(window, limit, CounterState::starting_at(at, window)))
            }
            Algorithm::FixedWindow => {
                Self::Fixed(Windowed::new(window, limit, FixedState::starting_at(at, window)))
            }
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
                // What the old period still counts stays counted, and nothing else: the
                // entries it no longer counts go first (else a new, longer period would
                // count them again or not depending on whether the log was read before).
                let w = &mut *lock(w);
                let now = w.state.clamp(now);
                w.state.expire(now, w.window);
                (w.window, w.limit) = (quota.period_nanos(), quota.limit());
            }
            Self::Counter(w) => {
                let w = &mut *lock(w);
                let window = quota.period_nanos();
                if window != w.window {
                    w.state.rebase(now, w.window, window);
                    w.periods += 1;
                }
                (w.window, w.limit) = (window, quota.limit());
            }
            Self::Fixed(w) => {
                // Every window keeps what it used or booked (see `FixedState`).
                let w = &mut *lock(w);
                let window = quota.period_nanos();
                if window != w.window {
                    w.state.rebase(now, w.window, window);
                    w.periods += 1;
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
            // The common case first, inlined into the caller (a check returns at once).
            return g.acquire(now, cost, max_wait.unwrap_or(0), u64::MAX);
        }
        self.acquire_other(now, cost, max_wait)
    }

    /// [`acquire`](Self::acquire) for every case but a token bucket asked for a cost of at
    /// least one.
    #[inline(never)]
    fn acquire_other(&self, now: u64, cost: u32, max_wait: Option<u64>) -> Result<Admit, Denied> {
        if cost == 0 {
            return Ok(Admit { ready_at: now, token: 0, mark: 0 });
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
                    return Err(Denied::CostExceedsCapacity { cost, capacity });
                }
                gcra.acquire(now, cost, max_wait.unwrap_or(u64::MAX), u64::from(*queue))
            }
            Self::Log(w) => {
                let w = &mut *lock(w);
                check_capacity(cost, w.limit)?;
                w.state.acquire(now, cost, w.window, w.limit, wait, true)
            }
            Self::Counter(w) => {
                let w = &mut *lock(w);
                check_capacity(cost, w.limit)?;
                let admit = w.state.acquire(now, cost, w.window, w.limit, wait, true);
                w.marked(admit)
            }
            Self::Fixed(w) => {
                let w = &mut *lock(w);
                check_capacity(cost, w.limit)?;
                let admit = w.state.acquire(now, cost, w.window, w.limit, wait, true);
                w.marked(admit)
            }
        }
    }

    /// What [`acquire`](Self::acquire) would answer at `now`, booking nothing (the tiers
    /// after one that refused are asked so, for a `retry_after` every tier keeps).
    pub(crate) fn probe(&self, now: u64, cost: u32, max_wait: Option<u64>) -> Result<(), Denied> {
        if cost == 0 {
            return Ok(());
        }
        let wait = max_wait.unwrap_or(0);
        match self {
            Self::Gcra(g) => g.probe(now, cost, wait, u64::MAX),
            Self::Leaky { gcra, queue } => {
                let capacity = queue.saturating_add(1);
                if cost > capacity {
                    return Err(Denied::CostExceedsCapacity { cost, capacity });
                }
                gcra.probe(now, cost, max_wait.unwrap_or(u64::MAX), u64::from(*queue))
            }
            Self::Log(w) => {
                let w = &mut *lock(w);
                check_capacity(cost, w.limit)?;
                w.state.acquire(now, cost, w.window, w.limit, wait, false).map(|_| ())
            }
            Self::Counter(w) => {
                let w = &mut *lock(w);
                check_capacity(cost, w.limit)?;
                w.state.acquire(now, cost, w.window, w.limit, wait, false).map(|_| ())
            }
            Self::Fixed(w) => {
                let w = &mut *lock(w);
                check_capacity(cost, w.limit)?;
                w.state.acquire(now, cost, w.window, w.limit, wait, false).map(|_| ())
            }
        }
    }

    /// Gives back an admission that was never used.
    pub(crate) fn refund(&self, admit: Admit, cost: u32, now: u64) {
        if cost == 0 {
            return;
        }
        match self {
            Self::Gcra(g) | Self::Leaky { gcra: g, .. } => {
                g.refund(admit.token, admit.mark, cost, now);
            }
            Self::Log(w) => lock(w).state.refund(admit.token, cost),
            Self::Counter(w) => {
                let w = &mut *lock(w);
                if w.same_period(admit.mark) {
                    w.state.refund(admit.token, cost);
                }
            }
            Self::Fixed(w) => {
                let w = &mut *lock(w);
                if w.same_period(admit.mark) {
                    w.state.refund(admit.token, cost);
                }
            }
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
        return Err(Denied::CostExceedsCapacity { cost, capacity });
    }
    Ok(())
}
