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
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::AtomicU32;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Wake, Waker};
use std::time::Duration;

use palisade_core::config::{ensure, ConfigError};
use tokio::time::{Instant, Sleep};

use crate::window::SlidingCounter;

/// The settings of a retry budget, as [`RetryConfig::budget`](crate::RetryConfig::budget)
/// and [`HedgeConfig::budget`](crate::hedge::HedgeConfig::budget) hold them: each layer
/// built from them gets a budget of its own (give the builders one [`RetryBudget`] to
/// share it). In a config file (feature `serde`): `"unlimited"`,
/// `{"ratio": {"ttl": "10s", "min_per_sec": 10, "ratio": 0.2}}` or
/// `{"token_bucket": {"max_tokens": 10, "token_ratio": 0.1}}`.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case", deny_unknown_fields))]
#[non_exhaustive]
pub enum BudgetConfig {
    /// [`RetryBudget::unlimited`].
    Unlimited,
    /// [`RetryBudget::ratio`].
    Ratio {
        /// The window (1 s to 60 s).
        #[cfg_attr(feature = "serde", serde(with = "palisade_core::duration::serde"))]
        ttl: Duration,
        /// Retries per second whatever the traffic.
        min_per_sec: u32,
        /// Retries per request (0 to 100).
        ratio: f64,
    },
    /// [`RetryBudget::token_bucket`].
    TokenBucket {
        /// Bucket size (1 to 1000).
        max_tokens: u32,
        /// Tokens given back per success.
        token_ratio: f64,
    },
}

impl Default for BudgetConfig {
    /// Finagle's: `ratio(10 s, 10, 0.2)`.
    fn default() -> Self {
        Self::Ratio { ttl: Duration::from_secs(10), min_per_sec: 10, ratio: 0.2 }
    }
}

impl BudgetConfig {
    /// A new budget with these settings (`budget.…` names a bad field).
    pub fn build(&self) -> Result<RetryBudget, ConfigError> {
        match *self {
            Self::Unlimited => Ok(RetryBudget::unlimited()),
            Self::Ratio { ttl, min_per_sec, ratio } => RetryBudget::ratio(ttl, min_per_sec, ratio),
            Self::TokenBucket { max_tokens, token_ratio } => {
                RetryBudget::token_bucket(max_tokens, token_ratio)
            }
        }
    }
}

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
    /// requests of a service value, which bounds that lag. Outside a tokio runtime with
    /// timers every deposit reads the clock. (An earlier version cached the slot without a
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

    #[cold]
    fn deposit_slow(&self, r: &RatioBudget) {
        let now = Instant::now();
        let epoch = r.deposits.epoch(now);
        r.deposits.add_at(epoch, 1);
        // One thread publishes; the others read the clock meanwhile.
        let Ok(mut timer) = r.slot_timer.try_lock() else { return };
        if timer.no_timers || tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let end = r.deposits.slot_end(now);
        // A runtime without timers panics when a sleep is made: never publish there.
        let Ok(sleep) = std::panic::catch_unwind(|| Box::pin(tokio::time::sleep_until(end))) else {
            timer.no_timers = true;
            return;
        };
        let waker = timer
            .waker
            .get_or_insert_with(|| Waker::from(Arc::new(ClearSlot(Arc::downgrade(&self.kind)))))
            .clone();
        let sleep = timer.sleep.insert(sleep);
        if sleep.as_mut().poll(&mut Context::from_waker(&waker)).is_ready() {
            return; // the slot already ended
        }
        r.current.store(epoch, Ordering::Release);
        // The timer may have fired between the poll and the store (another thread drives it).
        if sleep.is_elapsed() {
            r.current.store(0, Ordering::Release);
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
            Kind::Ratio(r) => {
                let now = Instant::now();
                if r.balance(now) >= i128::from(r.withdraw) {
                    r.withdrawals.add(now, 1);
                    true
                } else {
                    false
                }
            }
            Kind::Tokens(t) => t.milli.load(Ordering::Acquire) * 2 > t.max_milli,
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

/// The timer of a ratio budget's published slot.
#[derive(Default)]
struct SlotTimer {
    sleep: Option<Pin<Box<Sleep>>>,
    waker: Option<Waker>,
    /// Set once a sleep could not be made (a runtime without timers).
    no_timers: bool,
}

/// The timer's waker: the slot ended, deposits read the clock again.
struct ClearSlot(Weak<Kind>);

impl Wake for ClearSlot {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if let Some(kind) = self.0.upgrade() {
            if let Kind::Ratio(r) = &*kind {
                r.current.store(0, Ordering::Release);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::float_cmp)] // exact values are the point
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn ratio_budget_has_a_floor_and_a_ratio() {
        // Floor: 2/s over 10 s = 20 retries with no traffic at all.
        let b = RetryBudget::ratio(Duration::from_secs(10), 2, 0.1).unwrap();
        let floor = (0..100).filter(|_| b.try_withdraw()).count();
        assert_eq!(floor, 20);
        // 100 requests buy 10 more.
        for _ in 0..100 {
            b.deposit();
        }
        assert_eq!((0..100).filter(|_| b.try_withdraw()).count(), 10);
        // After the window, withdrawals and deposits are forgotten.
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(b.remaining(), 20.0);
    }

    fn published(b: &RetryBudget) -> u32 {
        match &*b.kind {
            Kind::Ratio(r) => r.current.load(Ordering::Acquire),
            _ => 0,
        }
    }

    /// The slot a deposit publishes is withdrawn by its timer at the slot's end, so a
    /// deposit after it reads the clock again (and counts for its full ttl).
    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn the_published_slot_ends_with_its_timer() {
        let b = RetryBudget::ratio(Duration::from_secs(1), 0, 1.0).unwrap();
        assert_eq!(published(&b), 0);
        b.deposit();
        let first = published(&b);
        assert_ne!(first, 0, "the first deposit publishes its slot");
        tokio::time::advance(Duration::from_millis(99)).await;
        assert_eq!(published(&b), first, "still the same 100 ms slot");
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(published(&b), 0, "the slot's timer withdrew it");
        b.deposit();
        assert_eq!(published(&b), first + 1);
        // 0.9 s later the second deposit still counts, the first has expired.
        tokio::time::advance(Duration::from_millis(950)).await;
        assert_eq!(b.remaining(), 1.0);
    }

    /// The layers' every-64th deposit reads the clock: a published slot that ended (its
    /// timer not run yet, as on a starved runtime) is withdrawn and the deposit counts now.
    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn an_exact_deposit_withdraws_a_stale_slot() {
        let b = RetryBudget::ratio(Duration::from_secs(1), 0, 1.0).unwrap();
        b.deposit();
        let Kind::Ratio(r) = &*b.kind else { unreachable!() };
        // Stand in for a timer that has not run: publish a slot 0.9 s old.
        tokio::time::advance(Duration::from_millis(900)).await;
        r.current.store(r.deposits.epoch(Instant::now()) - 9, Ordering::Release);
        b.deposit_exact();
        assert_eq!(published(&b), 0);
        tokio::time::advance(Duration::from_millis(500)).await;
        assert_eq!(b.remaining(), 1.0, "the exact deposit counts from its true time");
    }

    /// A runtime without timers cannot publish a slot: every deposit reads the clock, and
    /// nothing panics.
    #[test]
    fn a_runtime_without_timers_reads_the_clock() {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let b = RetryBudget::ratio(Duration::from_secs(1), 0, 1.0).unwrap();
        rt.block_on(async {
            b.deposit();
            b.deposit();
        });
        assert_eq!(published(&b), 0);
        assert_eq!(b.remaining(), 2.0);
    }

    #[test]
    fn zero_ratio_leaves_only_the_floor() {
        let b = RetryBudget::ratio(Duration::from_secs(1), 3, 0.0).unwrap();
        for _ in 0..1000 {
            b.deposit();
        }
        assert_eq!((0..10).filter(|_| b.try_withdraw()).count(), 3);
    }

    #[test]
    fn token_bucket_follows_grpc_a6() {
        let b = RetryBudget::token_bucket(4, 0.5).unwrap();
        assert!(b.try_withdraw()); // 4 > 2
        b.record(true, false); // 3
        assert!(b.try_withdraw());
        b.record(true, false); // 2: not more than half
        assert!(!b.try_withdraw());
        b.record(false, true); // 2.5
        assert!(b.try_withdraw());
        for _ in 0..10 {
            b.record(false, true);
        }
        assert_eq!(b.remaining(), 4.0);
        for _ in 0..10 {
            b.record(true, false);
        }
        assert_eq!(b.remaining(), 0.0);
    }

    #[test]
    fn bad_settings_are_refused() {
        assert_eq!(RetryBudget::ratio(Duration::ZERO, 1, 0.2).unwrap_err().field(), "budget.ttl");
        assert_eq!(RetryBudget::ratio(Duration::from_secs(10), 1, -1.0).unwrap_err().field(), "budget.ratio");
        assert_eq!(RetryBudget::token_bucket(0, 0.1).unwrap_err().field(), "budget.max_tokens");
        assert_eq!(RetryBudget::token_bucket(10, f64::NAN).unwrap_err().field(), "budget.token_ratio");
    }
}
