//! Sliding window log.

use std::collections::VecDeque;

use super::{dur, Admit, Status};
use crate::error::Denied;

// === impl Log ===

/// Sliding window log: one `(timestamp, cost)` entry per admitted request, in time order.
/// In wait mode a request is booked at the earliest time it fits (an entry in the future),
/// behind every earlier booking.
#[derive(Debug, Default)]
pub(crate) struct Log {
    pub(super) entries: VecDeque<(u64, u32)>,
    pub(super) sum: u64,
    /// The latest time seen: a reading older than it (taken before another thread's) is
    /// treated as this time, so entries stay in order and nothing is admitted early.
    pub(super) last: u64,
}

impl Log {
    pub(super) fn can_forget(&mut self, now: u64, window: u64) -> bool {
        let now = self.clamp(now);
        self.expire(now, window);
        self.entries.is_empty()
    }

    pub(super) fn clamp(&mut self, now: u64) -> u64 {
        self.last = self.last.max(now);
        self.last
    }

    pub(super) fn expire(&mut self, now: u64, window: u64) {
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
    pub(super) fn earliest(&self, now: u64, cost: u32, window: u64, limit: u32) -> u64 {
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

    pub(super) fn acquire(
        &mut self,
        now: u64,
        cost: u32,
        window: u64,
        limit: u32,
        max_wait: u64,
        book: bool,
    ) -> Result<Admit, Denied> {
        let now = self.clamp(now);
        self.expire(now, window);
        let at = self.earliest(now, cost, window, limit);
        let wait = at - now;
        if wait > max_wait {
            return Err(Denied::RetryAfter(dur(wait - max_wait)));
        }
        if !book {
            // A probe: the same answer, nothing booked.
            return Ok(Admit { ready_at: at, token: 0, mark: 0 });
        }
        self.entries.push_back((at, cost));
        self.sum += u64::from(cost);
        Ok(Admit { ready_at: at, token: at, mark: 0 })
    }

    pub(super) fn refund(&mut self, token: u64, cost: u32) {
        if let Some(i) = self.entries.iter().rposition(|&(ts, c)| ts == token && c == cost) {
            self.entries.remove(i);
            self.sum -= u64::from(cost);
        }
    }

    pub(super) fn status(&mut self, now: u64, window: u64, limit: u32) -> Status {
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
