//! Retry budgets: a cap on retries (and hedges) so that retrying never turns an outage into
//! a retry storm.
//!
//! A [`RetryBudget`] is a cheap handle to shared state (an `Arc`): every clone of a retry or
//! hedge service built from one layer shares the layer's budget, and the same budget can be
//! handed to several layers (`.budget(budget.clone())`) so that, say, all routes to one
//! backend draw from a single pot.
//!
//! Two kinds are offered:
//!
//! - [`RetryBudget::ratio`] — Finagle's budget: retries may be at most `ratio` of the
//!   requests seen during the last `ttl`, plus a floor of `min_per_sec` retries per second
//!   so that low-traffic clients can still retry. **This is the default**, with Finagle's
//!   values: `ttl` 10 s, `min_per_sec` 10, `ratio` 0.2 (20 %). Under a backend failing every
//!   call, `retries ≤ 0.2 × requests + 10 × 10` within any 10 s.
//! - [`RetryBudget::token_bucket`] — gRPC's retry throttling (gRFC A6): a bucket of
//!   `max_tokens` starts full; each retryable failure takes one token, each success gives
//!   back `token_ratio`; retries and hedges are allowed only while more than half the
//!   tokens remain.
//!
//! [`RetryBudget::unlimited`] turns budgeting off.
//!
//! The check and the withdrawal are two atomic steps, so under heavy contention a budget
//! can be overspent by a few retries; it never underflows into allowing a storm.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use palisade_retry::budget::RetryBudget;
//!
//! // No floor, 50 %: two requests pay for one retry.
//! let budget = RetryBudget::ratio(Duration::from_secs(10), 0, 0.5).unwrap();
//! budget.deposit();
//! budget.deposit();
//! assert!(budget.try_withdraw());
//! assert!(!budget.try_withdraw());
//!
//! let grpc = RetryBudget::token_bucket(10, 0.1).unwrap();
//! for _ in 0..5 { grpc.record(true, false); } // five retryable failures: 5 of 10 tokens left
//! assert!(!grpc.try_withdraw());
//! ```

use crate::sync::{AtomicI64, Ordering};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU32};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade_core::config::{ensure, ConfigError};
use tokio::time::Instant;

use crate::window::SlidingCounter;

mod config;
mod slot;

pub use self::config::BudgetConfig;
use self::slot::SlotTimer;

/// A shared budget for retries and hedges; see the [module docs](self).
///
/// # Clone
///
/// Clones share one budget.
#[derive(Clone)]
pub struct RetryBudget {
    kind: Arc<Kind>,
}

// Lives once, in an `Arc`: the size difference costs nothing.
#[allow(clippy::large_enum_variant)]
enum Kind {
    Unlimited,
    Ratio(RatioBudget),
    Tokens(TokenBucket),
}

struct RatioBudget {
    /// Requests seen (one per deposit), not weighted: the weights are applied in `balance`
    /// with wide arithmetic, so no ratio or floor can overflow or saturate the counters.
    deposits: SlidingCounter,
    /// Retries granted (one per withdrawal).
    withdrawals: SlidingCounter,
    deposit: i64,
    withdraw: i64,
    reserve: i128,
    ttl: Duration,
    min_per_sec: u32,
    ratio: f64,
    /// The epoch of the slot deposits go to while it lasts; 0 when unknown (the next deposit
    /// reads the clock). See [`RetryBudget::deposit`].
    current: AtomicU32,
    /// The timer that clears `current` when its slot ends.
    slot_timer: Mutex<SlotTimer>,
    /// Set once a sleep could not be made (a runtime without timers) or a current-thread
    /// runtime deposited: from then on every deposit reads the clock, and nothing else.
    clock_only: AtomicBool,
}

struct TokenBucket {
    /// Thousandths of a token.
    milli: AtomicI64,
    max_milli: i64,
    ratio_milli: i64,
}

/// Fixed-point scale of a deposit (one request) in a ratio budget.
const DEPOSIT: i64 = 1000;

/// The largest cost of one retry: Finagle's `(1000 / percentCanRetry).toInt`, which
/// saturates at `Int.MaxValue` for a tiny ratio.
const MAX_WITHDRAW: i64 = i32::MAX as i64;

impl RatioBudget {
    /// `reserve + requests × deposit − retries × withdraw`, in `i128`: with every count below
    /// 2^40 and both weights below 2^31 it cannot overflow.
    fn balance(&self, now: Instant) -> i128 {
        self.reserve + i128::from(self.deposits.sum(now)) * i128::from(self.deposit)
            - i128::from(self.withdrawals.sum(now)) * i128::from(self.withdraw)
    }
}

impl RatioBudget {
    fn withdraw_at(&self, now: Instant) -> bool {
        if self.balance(now) >= i128::from(self.withdraw) {
            self.withdrawals.add(now, 1);
            true
        } else {
            false
        }
    }
}

/// A withdrawal for an attempt not sent yet: [`spend`](Self::spend) it when the attempt is
/// sent; dropped unspent, it goes back to the budget (a ratio budget's while its slot is
/// still in the window; a token bucket's withdrawal takes no token).
#[derive(Debug)]
pub(crate) struct Payment {
    refund: Option<(RetryBudget, Instant)>,
}

impl Payment {
    /// The attempt was sent: the withdrawal stays.
    pub(crate) fn spend(mut self) {
        self.refund = None;
    }
}

impl Drop for Payment {
    fn drop(&mut self) {
        if let Some((budget, at)) = self.refund.take() {
            if let Kind::Ratio(r) = &*budget.kind {
                // The slot of `at` is reused a window later: give back only while it is
                // surely still the slot the withdrawal went to.
                let slot = r.ttl / crate::window::SLOTS as u32;
                if Instant::now().saturating_duration_since(at) < r.ttl.saturating_sub(slot) {
                    r.withdrawals.add(at, -1);
                }
            }
        }
    }
}

impl fmt::Debug for RetryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &*self.kind {
            Kind::Unlimited => f.write_str("RetryBudget::Unlimited"),
            Kind::Ratio(r) => f
                .debug_struct("RetryBudget::Ratio")
                .field("ttl", &r.ttl)
                .field("min_per_sec", &r.min_per_sec)
                .field("ratio", &r.ratio)
                .field("remaining", &self.remaining())
                .finish(),
            Kind::Tokens(t) => f
                .debug_struct("RetryBudget::TokenBucket")
                .field("max_tokens", &(t.max_milli / 1000))
                .field("token_ratio", &(t.ratio_milli as f64 / 1000.0))
                .field("tokens", &self.remaining())
                .finish(),
        }
    }
}

impl Default for RetryBudget {
    /// Finagle's defaults: `ttl` 10 s, 10 retries per second, 20 %.
    fn default() -> Self {
        Self::finagle_default()
    }
}

impl RetryBudget {
    /// No limit at all: every retry the other rules allow goes.
    pub fn unlimited() -> Self {
        Self { kind: Arc::new(Kind::Unlimited) }
    }

    /// Finagle's default budget: `ratio(10 s, 10, 0.2)`.
    pub fn finagle_default() -> Self {
        Self::build_ratio(Duration::from_secs(10), 10, 0.2)
    }

    /// A budget allowing retries of at most `ratio` of the requests made in the last `ttl`
    /// (1 s to 60 s), plus `min_per_sec` retries per second whatever the traffic.
    ///
    /// `ratio` may exceed 1 (up to 100) for hedging, where one request may pay for several
    /// extra attempts.
    pub fn ratio(ttl: Duration, min_per_sec: u32, ratio: f64) -> Result<Self, ConfigError> {
        ensure(
            (Duration::from_secs(1)..=Duration::from_secs(60)).contains(&ttl),
            "budget.ttl",
            "must be between 1s and 60s",
        )?;
        ensure(
            ratio.is_finite() && (0.0..=100.0).contains(&ratio),
            "budget.ratio",
            "must be a number from 0.0 to 100.0",
        )?;
        Ok(Self::build_ratio(ttl, min_per_sec, ratio))
    }

    fn build_ratio(ttl: Duration, min_per_sec: u32, ratio: f64) -> Self {
        // Finagle's arithmetic: a request deposits `DEPOSIT`, a retry withdraws DEPOSIT / ratio.
        let (deposit, withdraw) = if ratio == 0.0 {
            (0, DEPOSIT)
        } else {
            (DEPOSIT, ((DEPOSIT as f64 / ratio).round() as i64).clamp(1, MAX_WITHDRAW))
        };
        // `min_per_sec × ttl × withdraw`, exact to the nanosecond of `ttl` (validated to at
        // most 60 s: at most 2^32 × 6·10^10 × 2^31 < 2^127).
        let ttl_nanos = i128::try_from(ttl.as_nanos()).unwrap_or(0);
        let reserve = i128::from(min_per_sec) * ttl_nanos * i128::from(withdraw) / 1_000_000_000;
        Self {
            kind: Arc::new(Kind::Ratio(RatioBudget {
                deposits: SlidingCounter::new(ttl),
                withdrawals: SlidingCounter::new(ttl),
                deposit,
                withdraw,
                reserve,
                ttl,
                min_per_sec,
                ratio,
                current: AtomicU32::new(0),
                slot_timer: Mutex::new(SlotTimer::default()),
                clock_only: AtomicBool::new(false),
            })),
        }
    }

    /// gRPC retry throttling: `max_tokens` (1 to 1000) tokens, `token_ratio` (0 to 1000,
    /// three decimals kept) given back per success.
    pub fn token_bucket(max_tokens: u32, token_ratio: f64) -> Result<Self, ConfigError> {
        ensure((1..=1000).contains(&max_tokens), "budget.max_tokens", "must be between 1 and 1000")?;
        ensure(
            token_ratio.is_finite() && token_ratio > 0.0 && token_ratio <= 1000.0,
            "budget.token_ratio",
            "must be greater than 0 and at most 1000",
        )?;
        let max_milli = i64::from(max_tokens) * 1000;
        Ok(Self {
            kind: Arc::new(Kind::Tokens(TokenBucket {
                milli: AtomicI64::new(max_milli),
                max_milli,
                ratio_milli: ((token_ratio * 1000.0).round() as i64).max(1),
            })),
        })
    }

    /// Records an original request (not a retry). Retry and hedge layers call this for
    /// every request they receive.
    ///
    /// A ratio budget credits the deposit to the slot of the moment it is made, so that a
    /// deposit counts for `ttl` whatever the traffic before it — as tower's `TpsBudget` and
    /// Finagle's `WindowedAdder` do — without reading the clock on every request: the
    /// deposit that finds no current slot reads the clock, publishes its slot and registers
    /// a tokio timer for the slot's end (a tenth of `ttl`), whose waker — run by the timer
    /// driver itself, no task involved — withdraws the slot again. Deposits in between are
    /// one load and one compare-and-swap. The timer's millisecond resolution (or a runtime
    /// too busy to run its timer driver) can credit a deposit made just after a boundary to
    /// the slot just ended; the retry and hedge layers also read the clock every 64
    /// requests of a service value, which bounds that lag. Outside a multi-thread tokio
    /// runtime with timers every deposit reads the clock (a current-thread runtime runs
    /// its timers only inside `block_on`, so a slot it published could outlive its time). (An earlier version cached the slot without a
    /// timer and credited deposits after an idle spell to a slot that had long expired: a
    /// quiet client with no floor got no retries at all.)
    #[inline]
    pub fn deposit(&self) {
        if let Kind::Ratio(r) = &*self.kind {
            if r.deposit != 0 {
                match r.current.load(Ordering::Acquire) {
                    0 => self.deposit_slow(r),
                    epoch => {
                        r.deposits.add_at(epoch, 1);
                    }
                }
            }
        }
    }

    /// A deposit that reads the clock, and publishes the slot anew if the published one
    /// ended (the layers call it every 64 requests of a service value).
    #[inline]
    pub(crate) fn deposit_exact(&self) {
        if let Kind::Ratio(r) = &*self.kind {
            if r.deposit != 0 {
                let epoch = r.deposits.epoch(Instant::now());
                let current = r.current.load(Ordering::Acquire);
                if current != 0 && current != epoch {
                    // Withdraw the stale slot first, so that the next deposit re-publishes.
                    let _ = r.current.compare_exchange(current, 0, Ordering::AcqRel, Ordering::Acquire);
                }
                r.deposits.add_at(epoch, 1);
            }
        }
    }

    /// Records the outcome of one attempt: `retryable_failure` for a failure worth
    /// retrying — or, as gRFC A6 says, a response whose server pushback says not to retry
    /// ([`Classification::is_throttling_failure`](palisade_core::Classification::is_throttling_failure))
    /// — and `success` for an OK answer
    /// ([`Classification::is_throttling_success`](palisade_core::Classification::is_throttling_success):
    /// not a gRPC NOT_FOUND and the like, which A6 and grpc-go do not count). Only the token
    /// bucket uses it: a failure takes one token, a success gives back `token_ratio`.
    #[inline]
    pub fn record(&self, retryable_failure: bool, success: bool) {
        if let Kind::Tokens(t) = &*self.kind {
            if retryable_failure {
                let _ =
                    t.milli.fetch_update(Ordering::AcqRel, Ordering::Acquire, |m| Some((m - 1000).max(0)));
            } else if success && t.milli.load(Ordering::Acquire) < t.max_milli {
                let _ = t.milli.fetch_update(Ordering::AcqRel, Ordering::Acquire, |m| {
                    Some((m + t.ratio_milli).min(t.max_milli))
                });
            }
        }
    }

    /// Asks for one retry (or hedge); `true` when the budget allows it, and then it is spent.
    pub fn try_withdraw(&self) -> bool {
        match &*self.kind {
            Kind::Unlimited => true,
            Kind::Ratio(r) => r.withdraw_at(Instant::now()),
            Kind::Tokens(t) => t.milli.load(Ordering::Acquire) * 2 > t.max_milli,
        }
    }

    /// [`try_withdraw`](Self::try_withdraw) for an attempt that may not be sent after all
    /// (a hedge paid for before its service is ready): dropping the [`Payment`] unspent
    /// gives the withdrawal back.
    pub(crate) fn try_pay(&self) -> Option<Payment> {
        match &*self.kind {
            Kind::Ratio(r) => {
                let now = Instant::now();
                r.withdraw_at(now).then(|| Payment { refund: Some((self.clone(), now)) })
            }
            _ => self.try_withdraw().then_some(Payment { refund: None }),
        }
    }

    /// What is left: retries available now for a ratio budget, tokens for a token bucket,
    /// `f64::INFINITY` when unlimited.
    pub fn remaining(&self) -> f64 {
        match &*self.kind {
            Kind::Unlimited => f64::INFINITY,
            Kind::Ratio(r) => {
                let now = Instant::now();
                (r.balance(now) / i128::from(r.withdraw)).max(0) as f64
            }
            Kind::Tokens(t) => t.milli.load(Ordering::Acquire) as f64 / 1000.0,
        }
    }

    /// `true` for [`RetryBudget::unlimited`].
    pub fn is_unlimited(&self) -> bool {
        matches!(&*self.kind, Kind::Unlimited)
    }

    /// Whether `self` and `other` are the same shared budget.
    pub fn ptr_eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.kind, &other.kind)
    }
}

#[cfg(test)]
mod tests;
