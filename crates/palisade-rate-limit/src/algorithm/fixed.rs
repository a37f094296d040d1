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
/// whole cost (a cost never exceeds the limit: that is `ExceedsCapacity`). Only windows
/// that hold a booking are kept: each was full for some caller when a later one was
/// booked, so their number is bounded by the callers waiting.
#[derive(Debug)]
pub(crate) struct FixedState {
    pub(super) index: u64,
    /// Used in the current window.
    pub(super) used: u64,
    /// Booked into the windows after `index` (`ahead[0]` is the next one).
    pub(super) ahead: VecDeque<u64>,
    /// Windows before `index + full` are full (no room for a cost of 1): the search for a
    /// window with room starts there, so a long queue costs O(1) per booking. Reset by
    /// anything that can free room (a refund, a new limit).
    pub(super) full: usize,
    /// The latest time seen; older readings count as this time (never back a window).
    pub(super) last: u64,
}

impl FixedState {
    pub(super) fn new() -> Self {
        Self { index: 0, used: 0, ahead: VecDeque::new(), full: 0, last: 0 }
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
    pub(super) fn count(&self, j: usize) -> u64 {
        match j {
            0 => self.used,
            _ => self.ahead.get(j - 1).copied().unwrap_or(0),
        }
    }

    /// Moves to the window of `now` (or of the latest time seen, if later); returns the
    /// time used.
    pub(super) fn roll(&mut self, now: u64, window: u64) -> u64 {
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

    pub(super) fn acquire(
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

    pub(super) fn refund(&mut self, token: u64, cost: u32) {
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

    pub(super) fn status(&mut self, now: u64, window: u64, limit: u32) -> Status {
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
