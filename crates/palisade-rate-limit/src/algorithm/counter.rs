//! Sliding window counter.

use std::collections::VecDeque;

use super::{dur, Admit, Status};
use crate::error::Denied;

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
    pub(super) index: u64,
    pub(super) prev: u64,
    pub(super) curr: u64,
    /// Booked into the windows after `index` (`ahead[0]` is the next one).
    pub(super) ahead: VecDeque<u64>,
    /// The time of the latest booking.
    pub(super) tail: u64,
    /// The latest time seen; older readings count as this time (never back a window).
    pub(super) last: u64,
    /// Callers booked at or before `tail` whose window lay beyond the horizon when a new
    /// period renumbered the windows (see [`rebase`](Self::rebase)): counted in `tail`'s
    /// window once it comes within the horizon. Nobody is booked before then (newcomers
    /// follow `tail`, beyond the horizon).
    pub(super) late: u64,
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
    /// A fresh state whose latest time seen is `at` (a key made after others were
    /// forgotten at `at`: an older reading counts as `at`, as for the key forgotten).
    pub(super) fn starting_at(at: u64, window: u64) -> Self {
        Self { index: at / window, last: at, ..Self::default() }
    }

    pub(super) fn can_forget(&mut self, now: u64, window: u64) -> bool {
        self.roll(now, window);
        self.prev == 0 && self.curr == 0 && self.ahead.is_empty() && self.late == 0 && self.tail <= self.last
    }

    /// A new period: the counts of the current and previous windows stay, the window
    /// holding the latest time seen becomes the current one. Callers booked ahead run in
    /// the old windows, at times the new windows do not follow: all of them are counted in
    /// the new window holding the latest booking (`tail`), which none runs after — and
    /// which every newcomer follows, so each newcomer sees them at least as much as it
    /// would where they run (a longer period can only delay newcomers a little).
    pub(super) fn rebase(&mut self, now: u64, old_window: u64, window: u64) {
        self.roll(now, old_window);
        let booked = self.ahead.drain(..).sum::<u64>().saturating_add(std::mem::take(&mut self.late));
        self.index = self.last / window;
        self.late = booked;
        self.place_late(window);
    }

    /// Counts the `late` callers in `tail`'s window if it is within the horizon (or
    /// current, or just past: then the previous window); drops them once their window is
    /// older than that.
    fn place_late(&mut self, window: u64) {
        if self.late == 0 {
            return;
        }
        let at = self.tail / window;
        if at.saturating_add(1) < self.index {
            self.late = 0;
        } else if at.saturating_add(1) == self.index {
            self.prev = self.prev.saturating_add(std::mem::take(&mut self.late));
        } else if at == self.index {
            self.curr = self.curr.saturating_add(std::mem::take(&mut self.late));
        } else if let Ok(j) = usize::try_from(at - self.index) {
            if j <= COUNTER_HORIZON {
                if self.ahead.len() < j {
                    self.ahead.resize(j, 0);
                }
                self.ahead[j - 1] = self.ahead[j - 1].saturating_add(std::mem::take(&mut self.late));
            }
        }
    }

    /// The count of window `index + j` (0: current), with the `late` callers in the latest
    /// booking's window.
    pub(super) fn count(&self, j: usize, window: u64) -> u64 {
        let n = match j {
            0 => self.curr,
            _ => self.ahead.get(j - 1).copied().unwrap_or(0),
        };
        if self.late > 0 && self.index.saturating_add(j as u64) == self.tail / window {
            n.saturating_add(self.late)
        } else {
            n
        }
    }

    /// Moves to the window of `now` (or of the latest time seen, if later) and returns the
    /// time elapsed in it.
    pub(super) fn roll(&mut self, now: u64, window: u64) -> u64 {
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
        self.place_late(window);
        now - index * window
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
        self.roll(now, window);
        let now = self.last;
        let from = self.tail.max(now);
        // Start at the window holding `from`: the ones before it end before `from` (walking
        // them one by one took as many steps as windows lie between, billions for a short
        // window and a distant tail).
        let mut j = usize::try_from((from / window).saturating_sub(self.index)).unwrap_or(usize::MAX);
        let (at, j) = loop {
            let start = self.index.saturating_add(j as u64).saturating_mul(window);
            if from < start.saturating_add(window) {
                let prev = if j == 0 { self.prev } else { self.count(j - 1, window) };
                if let Some(e) =
                    counter_fit(prev, self.count(j, window), cost, limit, window, from.saturating_sub(start))
                {
                    break (start.saturating_add(e), j);
                }
            }
            // Past the bookings two empty windows always admit, so this ends.
            j = j.saturating_add(1);
        };
        let wait = at - now;
        if wait > max_wait || j > COUNTER_HORIZON {
            // Exact: the same request is admitted to wait once `at` is within `max_wait`
            // and its window within the horizon (the current window's index has reached
            // `index + j - COUNTER_HORIZON`), whichever comes later.
            let horizon = (j - j.min(COUNTER_HORIZON)) as u64;
            let within_horizon =
                self.index.saturating_add(horizon).saturating_mul(window).saturating_sub(now);
            return Err(Denied::RetryAfter(dur(wait.saturating_sub(max_wait).max(within_horizon).max(1))));
        }
        if !book {
            // A probe: the same answer, nothing booked.
            return Ok(Admit { ready_at: at, token: 0, mark: 0 });
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
        Ok(Admit { ready_at: at, token: self.index + j as u64, mark: 0 })
    }

    pub(super) fn refund(&mut self, token: u64, cost: u32) {
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

    pub(super) fn status(&mut self, now: u64, window: u64, limit: u32) -> Status {
        let elapsed = self.roll(now, window);
        let weighted = (u128::from(self.prev) * u128::from(window - elapsed)).div_ceil(u128::from(window))
            + u128::from(self.curr);
        let used = u32::try_from(weighted).unwrap_or(u32::MAX);
        let reset = if self.late > 0 {
            // Counted in the latest booking's window once it is within the horizon.
            (self.tail / window).saturating_add(2).saturating_mul(window).saturating_sub(self.last)
        } else if !self.ahead.is_empty() {
            (self.ahead.len() as u64 + 2).saturating_mul(window) - elapsed
        } else if self.curr > 0 {
            2 * window - elapsed
        } else if self.prev > 0 {
            window - elapsed
        } else {
            0
        };
        let queued: u64 = self.ahead.iter().sum::<u64>().saturating_add(self.late);
        Status {
            capacity: limit,
            remaining: limit.saturating_sub(used),
            reset_after: dur(reset),
            queued: u32::try_from(queued).unwrap_or(u32::MAX),
        }
    }
}
