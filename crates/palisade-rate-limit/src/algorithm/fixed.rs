//! Fixed window.

use std::collections::VecDeque;

use super::{dur, Admit, Status};
use crate::error::Denied;

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
/// whole cost (a cost never exceeds the limit: that is `CostExceedsCapacity`). Only windows
/// that hold a booking are kept: each was full for some caller when a later one was
/// booked, so their number is bounded by the callers waiting.
#[derive(Debug)]
pub(crate) struct FixedState {
    pub(super) index: u64,
    /// Used in the current window.
    pub(super) used: u64,
    /// The booked windows after `index`, as `(window index, count)` in index order, each
    /// count above zero. Sparse: after a shorter period (see [`rebase`](Self::rebase)) the
    /// booked windows may lie far apart, and memory must follow the callers, never the
    /// distance between them.
    pub(super) ahead: VecDeque<(u64, u64)>,
    /// Windows before `index + full` are full (no room for a cost of 1): the search for a
    /// window with room starts there, so a long queue costs O(log n) per booking. Reset by
    /// anything that can free room (a refund, a new limit).
    pub(super) full: u64,
    /// The latest time seen; older readings count as this time (never back a window).
    pub(super) last: u64,
}

impl FixedState {
    /// A fresh state whose latest time seen is `at` (see `Cell::starting_at`).
    pub(super) fn starting_at(at: u64, window: u64) -> Self {
        Self { index: at / window.max(1), used: 0, ahead: VecDeque::new(), full: 0, last: at }
    }

    /// A new limit: every window keeps what it used or booked, so a window above a lower
    /// limit admits nothing more and a higher one adds its difference to each window.
    pub(super) fn relimit(&mut self) {
        self.full = 0;
    }

    pub(super) fn can_forget(&mut self, now: u64, window: u64) -> bool {
        self.roll(now, window);
        self.used == 0 && self.ahead.is_empty()
    }

    /// A new period: what the current window used stays used in the new current window,
    /// and each booked window's callers (who proceed at its start) are counted in the new
    /// window holding that start — so a shorter period never leaves a window's booked
    /// callers uncounted where they run.
    pub(super) fn rebase(&mut self, now: u64, old_window: u64, window: u64) {
        self.roll(now, old_window);
        let index = self.last / window;
        let booked = std::mem::take(&mut self.ahead);
        self.index = index;
        self.full = 0;
        for (at, n) in booked {
            // The mapping keeps the order, so the new list stays sorted.
            let at = at.saturating_mul(old_window) / window;
            if at <= index {
                self.used = self.used.saturating_add(n);
            } else {
                match self.ahead.back_mut() {
                    Some((last, m)) if *last == at => *m = m.saturating_add(n),
                    _ => self.ahead.push_back((at, n)),
                }
            }
        }
    }

    /// The position in `ahead` of the first booked window at or after `at`.
    fn position(&self, at: u64) -> usize {
        self.ahead.partition_point(|&(w, _)| w < at)
    }

    /// Moves to the window of `now` (or of the latest time seen, if later); returns the
    /// time used.
    pub(super) fn roll(&mut self, now: u64, window: u64) -> u64 {
        self.last = self.last.max(now);
        let now = self.last;
        let index = now / window;
        if index > self.index {
            self.full = self.full.saturating_sub(index - self.index);
            let past = self.position(index);
            self.ahead.drain(..past);
            self.used = match self.ahead.front() {
                Some(&(w, n)) if w == index => {
                    self.ahead.pop_front();
                    n
                }
                _ => 0,
            };
            self.index = index;
        }
        now
    }

    pub(super) fn acquire(
        &mut self,
        now: u64,
        cost: u32,
        window: u64,
        limit: u32,
        max_wait: u64,
        book: bool,
    ) -> Result<Admit, Denied> {
        let now = self.roll(now, window);
        let (cost_u, limit_u) = (u64::from(cost), u64::from(limit));
        // Skip the windows known full (for a cost of 1), then find the first window with
        // room for the whole cost: a booked one, or the first empty one after or between
        // them (empty windows have room: `cost <= limit`).
        let mut at = self.index.saturating_add(self.full);
        let mut pos = self.position(at);
        loop {
            let n = if at == self.index {
                self.used
            } else {
                match self.ahead.get(pos) {
                    Some(&(w, n)) if w == at => n,
                    _ => 0,
                }
            };
            if n.saturating_add(cost_u) <= limit_u {
                break;
            }
            if n >= limit_u && at == self.index.saturating_add(self.full) {
                self.full += 1;
            }
            if at != self.index {
                pos += 1;
            }
            at = at.saturating_add(1);
        }
        let start = if at == self.index { now } else { at.saturating_mul(window) };
        let wait = start.saturating_sub(now);
        if wait > max_wait {
            // Exact: every window before `start` is full for this cost, and `start` comes
            // within the wait allowed exactly `wait - max_wait` from now.
            return Err(Denied::RetryAfter(dur(wait - max_wait)));
        }
        if !book {
            // A probe: the same answer, nothing booked.
            return Ok(Admit { ready_at: start, token: 0, mark: 0 });
        }
        if at == self.index {
            self.used += cost_u;
        } else {
            match self.ahead.get_mut(pos) {
                Some((w, n)) if *w == at => *n += cost_u,
                _ => self.ahead.insert(pos, (at, cost_u)),
            }
        }
        Ok(Admit { ready_at: start, token: at, mark: 0 })
    }

    pub(super) fn refund(&mut self, token: u64, cost: u32) {
        self.full = 0;
        let cost = u64::from(cost);
        if token == self.index {
            self.used = self.used.saturating_sub(cost);
        } else if token > self.index {
            let pos = self.position(token);
            if let Some((w, n)) = self.ahead.get_mut(pos) {
                if *w == token {
                    *n = n.saturating_sub(cost);
                    if *n == 0 {
                        self.ahead.remove(pos);
                    }
                }
            }
        }
    }

    pub(super) fn status(&mut self, now: u64, window: u64, limit: u32) -> Status {
        let now = self.roll(now, window);
        let used = u32::try_from(self.used).unwrap_or(u32::MAX).min(limit);
        let booked: u64 = self.ahead.iter().map(|&(_, n)| n).sum();
        let reset = if self.used > 0 || booked > 0 {
            // When every window used or booked so far has ended.
            let last = self.ahead.back().map_or(self.index, |&(w, _)| w);
            last.saturating_add(1).saturating_mul(window).saturating_sub(now)
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
