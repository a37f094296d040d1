//! Token bucket and leaky bucket as GCRA, lock-free on one atomic.

use std::fmt;

use super::{dur, Admit, Status};
use crate::error::Denied;
#[cfg(loom)]
use loom::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
#[cfg(not(loom))]
use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

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
    pub(super) version: AtomicU64,
    pub(super) interval: AtomicU64,
    pub(super) burst: AtomicU32,
}

impl Params {
    pub(super) fn new(interval: u64, burst: u32) -> Self {
        Self { version: AtomicU64::new(0), interval: AtomicU64::new(interval), burst: AtomicU32::new(burst) }
    }

    /// `(interval, tau, burst)`.
    #[inline]
    pub(super) fn load(&self) -> (u64, u64, u32) {
        let (_, interval, tau, burst, ()) = self.read_with(|| ());
        (interval, tau, burst)
    }

    /// `(version, interval, tau, burst)` and what `also` read, all from one consistent
    /// moment (no writer ran meanwhile).
    #[inline]
    pub(super) fn read_with<R>(&self, also: impl Fn() -> R) -> (u64, u64, u64, u32, R) {
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
    pub(super) fn store(&self, interval: u64, burst: u32, between: impl FnOnce(u64)) {
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
    pub(super) tat: T,
    pub(super) params: Params,
    /// Every nanosecond of debt given back by refunds so far, plus, at each change of
    /// settings, the span the TAT then reached beyond the present (every slot was
    /// rescaled: that jump makes every reservation made before the change lapse, see
    /// [`refund`](Self::refund)); saturating, never wrapping (a wrapped count could
    /// understate what was credited since an admission, so that its refund over-credits;
    /// once saturated, refunds of later admissions lapse). An admission notes it in its
    /// `mark` so that its own refund can tell how far its slot may have moved since.
    /// Written only by refunds and changes of settings.
    credited: AtomicU64,
}

/// Adds to `credited`, saturating.
fn credit(credited: &AtomicU64, n: u64) {
    let _ = credited.fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| Some(c.saturating_add(n)));
}

impl<T: Tat> Gcra<T> {
    /// A full bucket at `at` (the TAT there: no earlier reading finds it fuller).
    pub(super) fn starting_at(interval: u64, burst: u32, at: u64) -> Self {
        Self { tat: T::new(at), params: Params::new(interval, burst), credited: AtomicU64::new(0) }
    }

    /// Admits `cost`, waiting at most `max_wait` and at most `queue` intervals (leaky
    /// bucket; `u64::MAX` for none).
    #[inline]
    pub(super) fn acquire(&self, now: u64, cost: u32, max_wait: u64, queue: u64) -> Result<Admit, Denied> {
        let (mut version, mut interval, mut tau, mut burst, mut tat) =
            self.params.read_with(|| self.tat.load(Ordering::Acquire));
        // Read before the compare-and-swap: a refund counted here had already moved the
        // TAT this admission builds on (it moves the TAT, then counts), so `mark` never
        // misses a refund that moved this admission's slot.
        let mut credited = self.credited.load(Ordering::Acquire);
        loop {
            if cost > burst && queue == u64::MAX {
                return Err(Denied::CostExceedsCapacity { cost, capacity: burst });
            }
            let max_wait =
                if queue == u64::MAX { max_wait } else { max_wait.min(interval.saturating_mul(queue)) };
            let inc = interval.saturating_mul(u64::from(cost));
            if queue != u64::MAX && inc.saturating_sub(tau) > max_wait {
                // Leaky bucket: even an empty bucket lets this cost leave only
                // `inc - tau` from now, beyond the wait allowed (the queue, or `max_wait`;
                // zero for a direct check). No `retry_after` would ever be kept: say so.
                let capacity = tau.saturating_add(max_wait) / interval.max(1);
                return Err(Denied::CostExceedsCapacity {
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
                Ok(_) => return Ok(Admit { ready_at: allow_at.max(now), token: new_tat, mark: credited }),
                // Another request went first: its TAT is the one to build on, with the same
                // settings unless a quota change happened meanwhile.
                Err(actual) if self.params.version.load(Ordering::Acquire) == version => tat = actual,
                Err(_) => {
                    (version, interval, tau, burst, (tat, credited)) = self.params.read_with(|| {
                        (self.tat.load(Ordering::Acquire), self.credited.load(Ordering::Acquire))
                    });
                }
            }
        }
    }

    /// What [`acquire`](Self::acquire) would answer at `now`, storing nothing (the same
    /// arithmetic on the TAT read now).
    pub(super) fn probe(&self, now: u64, cost: u32, max_wait: u64, queue: u64) -> Result<(), Denied> {
        let (_, interval, tau, burst, tat) = self.params.read_with(|| self.tat.load(Ordering::Acquire));
        if cost > burst && queue == u64::MAX {
            return Err(Denied::CostExceedsCapacity { cost, capacity: burst });
        }
        let max_wait =
            if queue == u64::MAX { max_wait } else { max_wait.min(interval.saturating_mul(queue)) };
        let inc = interval.saturating_mul(u64::from(cost));
        if queue != u64::MAX && inc.saturating_sub(tau) > max_wait {
            let capacity = tau.saturating_add(max_wait) / interval.max(1);
            return Err(Denied::CostExceedsCapacity {
                cost,
                capacity: u32::try_from(capacity).unwrap_or(u32::MAX),
            });
        }
        let allow_at = tat.max(now).saturating_add(inc).saturating_sub(tau);
        if allow_at > now.saturating_add(max_wait) {
            return Err(Denied::RetryAfter(dur(allow_at - now - max_wait)));
        }
        Ok(())
    }

    /// New settings: the tokens in use (the debt `tat - now`, in intervals) stay in use,
    /// counted at the new interval.
    ///
    /// Callers booked beyond the old burst (waiting for slots up to `tat - tau`) proceed at
    /// those fixed times whatever the new rate, so nobody new is slotted before the last of
    /// them: the TAT is at least that slot plus the new tolerance, and newcomers follow it
    /// at the new interval. (Rescaling alone would, after a raise, slot newcomers among the
    /// booked callers and admit more than the new rate over that span.)
    pub(super) fn set(&self, interval: u64, burst: u32, now: u64) {
        // The settings it already has (a reload of an unchanged configuration): nothing to
        // rescale, and a change would make every outstanding reservation lapse (see
        // `refund`). A change racing this one is ordered after it.
        let (old_interval, _, old_burst) = self.params.load();
        if (old_interval, old_burst) == (interval, burst) {
            return;
        }
        let new_tau = interval.saturating_mul(u64::from(burst));
        self.params.store(interval, burst, |old| {
            // Readers are held off: the old burst is stable here.
            let old_tau = old.saturating_mul(u64::from(self.params.burst.load(Ordering::Relaxed)));
            let before = self.tat.fetch_update(Ordering::AcqRel, Ordering::Acquire, |tat| {
                let debt = u128::from(tat.saturating_sub(now));
                let scaled = debt * u128::from(interval) / u128::from(old.max(1));
                let mut new = now.saturating_add(u64::try_from(scaled).unwrap_or(u64::MAX));
                let booked_until = tat.saturating_sub(old_tau);
                if booked_until > now {
                    new = new.max(booked_until.saturating_add(new_tau));
                }
                Some(new)
            });
            // Every reservation outstanding ends by the old TAT: a jump past the span from
            // `now` to it puts each one's `ends_by` before `now`, so each lapses when given
            // back (its slot was rescaled; its `tat_after` no longer says where it ends).
            // Inside the change: an admission that reads the new settings reads this too.
            let old_tat = before.unwrap_or_else(|tat| tat);
            credit(&self.credited, old_tat.saturating_sub(now).saturating_add(1));
        });
    }

    /// Gives back `cost` admitted when the TAT became `tat_after`, with `mark` the total
    /// credited when it was admitted: only the debt the reservation still holds at `now`,
    /// never more, so a reservation given back never lets more than the rate through.
    ///
    /// - Time has repaid part of the reservation by `now`: only the part of its
    ///   `cost × T` that lies ahead of `now` goes back (admissions made after it were built
    ///   on at least that much; giving back the whole would over-credit).
    /// - Refunds made since it was admitted may have moved its slot earlier, by at most
    ///   what they credited (`credited − mark`): its slot ends at least that much before
    ///   `tat_after`, and the unpaid part is measured from there.
    /// - A change of settings since it was admitted rescaled every slot: it lapses (the
    ///   change added to `credited` the whole span its slot could end in).
    /// - Later requests hold future slots (callers waiting, `tat − tau > now`) and it was
    ///   not the last admission: moving the TAT back would let a newcomer share a slot with
    ///   one of them, so it lapses.
    ///
    /// With nothing admitted or given back since (the last admission), this is the same as
    /// never having reserved (a TAT at or below `now` means a full bucket either way). `now` is the
    /// limiter's clock when the refund is made: a reading stale by `d` could give back up
    /// to `d` more (a fraction of a token for a reading a few microseconds old).
    pub(super) fn refund(&self, tat_after: u64, mark: u64, cost: u32, now: u64) {
        let (version, interval, tau, _, credited) =
            self.params.read_with(|| self.credited.load(Ordering::Acquire));
        if credited == u64::MAX {
            return;
        }
        let moved = credited.saturating_sub(mark);
        let ends_by = tat_after.saturating_sub(moved);
        let unpaid = interval.saturating_mul(u64::from(cost)).min(ends_by.saturating_sub(now));
        if unpaid == 0 {
            return;
        }
        let given = self.tat.fetch_update(Ordering::AcqRel, Ordering::Acquire, |tat| {
            // A change of settings that rescaled the TAT just read (it moves the version
            // before the TAT): `unpaid` and `tau` are of the old scale, so the reservation
            // lapses, as for a change made before the refund started. (Without this check,
            // a refund losing its compare-and-swap to a raise gave back its old-scale debt
            // on the new scale: ten tokens for one after a tenfold raise.)
            if self.params.version.load(Ordering::Acquire) != version {
                return None;
            }
            (tat == tat_after || tat.saturating_sub(tau) <= now).then(|| tat.saturating_sub(unpaid))
        });
        match given {
            // The last admission, with nothing given back since: an exact undo that moves
            // nobody else's slot (there is nobody after it), so nothing to count.
            Ok(tat) if tat == tat_after && moved == 0 => {}
            // Later admissions' slots moved earlier by up to `unpaid`: counted (after the
            // TAT moved, so an admission that reads this total has built on it).
            Ok(_) => credit(&self.credited, unpaid),
            Err(_) => {}
        }
    }

    pub(super) fn status(&self, now: u64) -> Status {
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
