//! Rejections: the typed errors palisade layers return when *they* refuse a call.
//!
//! Each way to refuse is its own small type ([`CircuitOpen`], [`RateLimited`],
//! [`BulkheadFull`], [`Overloaded`], [`TimedOut`], [`Throttled`], [`BudgetExhausted`],
//! [`Closed`], [`CostExceedsCapacity`], [`KeySetFull`], [`KeyMissing`]). They travel as [`tower::BoxError`](crate::BoxError) like every other error in a
//! tower stack; [`find_rejection`] finds one inside any error, through source chains, and
//! [`find`] looks for one concrete type.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use palisade_core::rejection::{find_rejection, RateLimited, RejectionKind};
//! use palisade_core::BoxError;
//!
//! let err: BoxError = RateLimited::new("api", Duration::from_secs(2)).into();
//! let rejection = find_rejection(err.as_ref()).expect("a palisade rejection");
//! assert_eq!(rejection.kind(), RejectionKind::RateLimited);
//! assert_eq!(rejection.retry_after(), Some(Duration::from_secs(2)));
//! assert_eq!(rejection.layer_name(), "api");
//! assert!(err.is::<RateLimited>());
//! ```

use std::error::Error;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Which way a palisade layer refused a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RejectionKind {
    /// A circuit breaker is open (or half-open with no trial slot free).
    CircuitOpen,
    /// A rate limit refused the call.
    RateLimited,
    /// A bulkhead had no permit and its queue was full or the wait ran out.
    BulkheadFull,
    /// Load was shed: an adaptive limit, a full pool queue.
    Overloaded,
    /// A deadline passed.
    TimedOut,
    /// A client throttled itself (adaptive throttling) before sending.
    Throttled,
    /// A retry or hedge budget had nothing left.
    BudgetExhausted,
    /// The service or pool was shut down.
    Closed,
    /// The request can never be admitted: its cost is above the limit's whole capacity.
    ExceedsCapacity,
    /// A keyed layer got a request its key function gave no key for, and its
    /// `when_unkeyed` is [`Unkeyed::Reject`](crate::keyed::Unkeyed::Reject): a deployment
    /// mistake (HTTP 500), not load.
    KeyMissing,
}

impl RejectionKind {
    /// A short stable name (`"circuit_open"`, `"rate_limited"`, …) for logs and metrics.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::CircuitOpen => "circuit_open",
            Self::RateLimited => "rate_limited",
            Self::BulkheadFull => "bulkhead_full",
            Self::Overloaded => "overloaded",
            Self::TimedOut => "timed_out",
            Self::Throttled => "throttled",
            Self::BudgetExhausted => "budget_exhausted",
            Self::Closed => "closed",
            Self::ExceedsCapacity => "exceeds_capacity",
            Self::KeyMissing => "key_missing",
        }
    }
}

impl fmt::Display for RejectionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What every palisade rejection says about itself.
pub trait Rejection: Error + Send + Sync + 'static {
    /// Which way the call was refused.
    fn kind(&self) -> RejectionKind;
    /// How long the caller should wait before trying again, when the layer knows.
    fn retry_after(&self) -> Option<Duration>;
    /// The name of the layer that refused (set with the layer builder's `name`).
    fn layer_name(&self) -> &str;
}

/// Finds a palisade rejection in `err` or anywhere in its source chain.
pub fn find_rejection<'a>(err: &'a (dyn Error + 'static)) -> Option<&'a dyn Rejection> {
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(r) = as_rejection(e) {
            return Some(r);
        }
        current = e.source();
    }
    None
}

/// Finds an error of type `T` in `err` or anywhere in its source chain.
///
/// ```
/// use palisade_core::rejection::{find, TimedOut};
/// use std::time::Duration;
///
/// #[derive(Debug)]
/// struct Wrapper(TimedOut);
/// impl std::fmt::Display for Wrapper {
///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str("wrapped") }
/// }
/// impl std::error::Error for Wrapper {
///     fn source(&self) -> Option<&(dyn std::error::Error + 'static)> { Some(&self.0) }
/// }
///
/// let err = Wrapper(TimedOut::new("db", Duration::from_secs(1)));
/// assert_eq!(find::<TimedOut>(&err).map(TimedOut::after), Some(Duration::from_secs(1)));
/// ```
pub fn find<'a, T: Error + 'static>(err: &'a (dyn Error + 'static)) -> Option<&'a T> {
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(t) = e.downcast_ref::<T>() {
            return Some(t);
        }
        current = e.source();
    }
    None
}

macro_rules! rejections {
    ($($ty:ident),* $(,)?) => {
        fn as_rejection<'a>(e: &'a (dyn Error + 'static)) -> Option<&'a dyn Rejection> {
            $(
                if let Some(r) = e.downcast_ref::<$ty>() {
                    return Some(r);
                }
            )*
            None
        }
    };
}

rejections!(
    CircuitOpen,
    RateLimited,
    BulkheadFull,
    Overloaded,
    TimedOut,
    Throttled,
    BudgetExhausted,
    Closed,
    CostExceedsCapacity,
    KeySetFull,
    KeyMissing
);

macro_rules! rejection_impl {
    ($ty:ident, $kind:ident, $retry:expr) => {
        impl Error for $ty {}

        impl Rejection for $ty {
            fn kind(&self) -> RejectionKind {
                RejectionKind::$kind
            }

            fn retry_after(&self) -> Option<Duration> {
                #[allow(clippy::redundant_closure_call)]
                ($retry)(self)
            }

            fn layer_name(&self) -> &str {
                &self.name
            }
        }
    };
}

/// The circuit breaker `name` is open; it will let a trial call through after `retry_after`.
///
/// A keyed breaker says which key's breaker refused ([`key`](Self::key)); a breaker opened by
/// hand (forced open: Polly's *isolated* circuit) says so with
/// [`is_isolated`](Self::is_isolated), so a client can tell an operator's decision from a
/// failing backend. Both are still a `CircuitOpen`.
#[derive(Clone, Debug)]
pub struct CircuitOpen {
    name: Arc<str>,
    retry_after: Duration,
    key: Option<Arc<str>>,
    isolated: bool,
}

impl CircuitOpen {
    /// A rejection by the breaker `name`, which will try again after `retry_after`.
    pub fn new(name: impl Into<Arc<str>>, retry_after: Duration) -> Self {
        Self { name: name.into(), retry_after, key: None, isolated: false }
    }

    /// The same rejection, by the breaker of `key` in a keyed layer (the key as text).
    #[must_use]
    pub fn with_key(mut self, key: impl Into<Arc<str>>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// The same rejection, by a breaker isolated (forced open) by hand.
    #[must_use]
    pub fn with_isolated(mut self, isolated: bool) -> Self {
        self.isolated = isolated;
        self
    }

    /// Time until the breaker lets a trial call through.
    pub fn retry_after(&self) -> Duration {
        self.retry_after
    }

    /// The breaker's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// For a keyed breaker, the key whose breaker refused (e.g. the host), as text.
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    /// `true` when the breaker was forced open by hand (isolated) rather than opened by
    /// failures; it stays open until someone closes it.
    pub fn is_isolated(&self) -> bool {
        self.isolated
    }
}

impl fmt::Display for CircuitOpen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "circuit breaker `{}`", self.name)?;
        if let Some(key) = &self.key {
            write!(f, " for key `{key}`")?;
        }
        if self.isolated {
            write!(f, " is isolated (forced open); retry after {:?}", self.retry_after)
        } else {
            write!(f, " is open; retry after {:?}", self.retry_after)
        }
    }
}

rejection_impl!(CircuitOpen, CircuitOpen, |s: &CircuitOpen| Some(s.retry_after));

/// The rate limiter `name` refused the call; the next one may pass after `retry_after`.
#[derive(Clone, Debug)]
pub struct RateLimited {
    name: Arc<str>,
    retry_after: Duration,
}

impl RateLimited {
    /// A rejection by the limiter `name`; the next admission is `retry_after` away.
    pub fn new(name: impl Into<Arc<str>>, retry_after: Duration) -> Self {
        Self { name: name.into(), retry_after }
    }

    /// Time until the limiter would admit this call.
    pub fn retry_after(&self) -> Duration {
        self.retry_after
    }

    /// The limiter's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for RateLimited {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rate limit `{}` exceeded; retry after {:?}", self.name, self.retry_after)
    }
}

rejection_impl!(RateLimited, RateLimited, |s: &RateLimited| Some(s.retry_after));

/// Why a bulkhead refused a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BulkheadFullReason {
    /// Every permit was taken and waiting was not allowed (load shedding).
    NoPermit,
    /// Every permit was taken and the wait queue was full.
    QueueFull,
    /// The call waited for a permit as long as it was allowed to.
    WaitTimedOut,
}

/// The bulkhead `name` had no permit for the call.
#[derive(Clone, Debug)]
pub struct BulkheadFull {
    name: Arc<str>,
    reason: BulkheadFullReason,
    retry_after: Option<Duration>,
}

impl BulkheadFull {
    /// A rejection by the bulkhead `name` for `reason`.
    pub fn new(name: impl Into<Arc<str>>, reason: BulkheadFullReason) -> Self {
        Self { name: name.into(), reason, retry_after: None }
    }

    /// The same rejection with a suggested retry delay.
    #[must_use]
    pub fn with_retry_after(mut self, retry_after: Duration) -> Self {
        self.retry_after = Some(retry_after);
        self
    }

    /// Why the call was refused.
    pub fn reason(&self) -> BulkheadFullReason {
        self.reason
    }

    /// The bulkhead's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for BulkheadFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let why = match self.reason {
            BulkheadFullReason::NoPermit => "no permit free",
            BulkheadFullReason::QueueFull => "wait queue full",
            BulkheadFullReason::WaitTimedOut => "wait for a permit timed out",
        };
        write!(f, "bulkhead `{}` is full: {why}", self.name)
    }
}

rejection_impl!(BulkheadFull, BulkheadFull, |s: &BulkheadFull| s.retry_after);

/// The layer `name` shed the call to protect an overloaded service.
#[derive(Clone, Debug)]
pub struct Overloaded {
    name: Arc<str>,
    retry_after: Option<Duration>,
}

impl Overloaded {
    /// A rejection by the layer `name`.
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        Self { name: name.into(), retry_after: None }
    }

    /// The same rejection with a suggested retry delay.
    #[must_use]
    pub fn with_retry_after(mut self, retry_after: Duration) -> Self {
        self.retry_after = Some(retry_after);
        self
    }

    /// The layer's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for Overloaded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` is overloaded; call shed", self.name)
    }
}

rejection_impl!(Overloaded, Overloaded, |s: &Overloaded| s.retry_after);

/// The keyed layer `name` refused a request for a new key: all of its `capacity` keys still
/// constrain someone (see [`KeyedMap`](crate::keyed::KeyedMap)), so none could be forgotten
/// to make room. Its kind is [`RejectionKind::Overloaded`] (HTTP 503).
#[derive(Clone, Debug)]
pub struct KeySetFull {
    name: Arc<str>,
    capacity: usize,
}

impl KeySetFull {
    /// A rejection by the layer `name`, whose key set holds `capacity` keys.
    pub fn new(name: impl Into<Arc<str>>, capacity: usize) -> Self {
        Self { name: name.into(), capacity }
    }

    /// The most keys the layer holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The layer's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for KeySetFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` holds {} keys, all in use; new key refused", self.name, self.capacity)
    }
}

rejection_impl!(KeySetFull, Overloaded, |_: &KeySetFull| None);

/// The keyed layer `name` refused a request because its key function gave no key for it
/// (see [`Unkeyed`](crate::keyed::Unkeyed)). Its kind is [`RejectionKind::KeyMissing`]:
/// HTTP 500 and gRPC INTERNAL, since the request is fine and the deployment is not (a
/// missing `ConnectInfo`, a header a proxy should have set). Retrying does not help.
///
/// ```
/// use palisade_core::rejection::{find_rejection, KeyMissing, RejectionKind};
/// use palisade_core::BoxError;
///
/// let err: BoxError = KeyMissing::new("per-ip").into();
/// assert_eq!(find_rejection(err.as_ref()).map(|r| r.kind()), Some(RejectionKind::KeyMissing));
/// assert_eq!(err.to_string(), "keyed layer `per-ip` got a request without a key");
/// ```
#[derive(Clone, Debug)]
pub struct KeyMissing {
    name: Arc<str>,
}

impl KeyMissing {
    /// A refusal by the keyed layer `name`.
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        Self { name: name.into() }
    }

    /// The layer's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for KeyMissing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "keyed layer `{}` got a request without a key", self.name)
    }
}

rejection_impl!(KeyMissing, KeyMissing, |_: &KeyMissing| None);

/// The layer `name` gave up on the call after `after`.
#[derive(Clone, Debug)]
pub struct TimedOut {
    name: Arc<str>,
    after: Duration,
}

impl TimedOut {
    /// A timeout by the layer `name` after `after`.
    pub fn new(name: impl Into<Arc<str>>, after: Duration) -> Self {
        Self { name: name.into(), after }
    }

    /// How long the call was allowed.
    pub fn after(&self) -> Duration {
        self.after
    }

    /// The layer's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for TimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` timed out after {:?}", self.name, self.after)
    }
}

rejection_impl!(TimedOut, TimedOut, |_: &TimedOut| None);

/// The client-side throttle `name` refused to send the call (adaptive throttling).
#[derive(Clone, Debug)]
pub struct Throttled {
    name: Arc<str>,
    retry_after: Option<Duration>,
}

impl Throttled {
    /// A rejection by the throttle `name`.
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        Self { name: name.into(), retry_after: None }
    }

    /// The same rejection with a suggested retry delay.
    #[must_use]
    pub fn with_retry_after(mut self, retry_after: Duration) -> Self {
        self.retry_after = Some(retry_after);
        self
    }

    /// The throttle's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for Throttled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` throttled the call locally", self.name)
    }
}

rejection_impl!(Throttled, Throttled, |s: &Throttled| s.retry_after);

/// The retry or hedge budget `name` had nothing left for this attempt.
#[derive(Clone, Debug)]
pub struct BudgetExhausted {
    name: Arc<str>,
}

impl BudgetExhausted {
    /// A rejection by the budget `name`.
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        Self { name: name.into() }
    }

    /// The budget's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for BudgetExhausted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "retry budget `{}` exhausted", self.name)
    }
}

rejection_impl!(BudgetExhausted, BudgetExhausted, |_: &BudgetExhausted| None);

/// The service or pool `name` is shut down and takes no more calls.
#[derive(Clone, Debug)]
pub struct Closed {
    name: Arc<str>,
}

impl Closed {
    /// A rejection by the closed service `name`.
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        Self { name: name.into() }
    }

    /// The service's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for Closed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` is closed", self.name)
    }
}

rejection_impl!(Closed, Closed, |_: &Closed| None);

/// The limit `name` (tier `tier`) can never admit this request: its cost is above the
/// tier's whole capacity, so waiting would not help and retrying is pointless.
#[derive(Clone, Debug)]
pub struct CostExceedsCapacity {
    name: Arc<str>,
    tier: Arc<str>,
    cost: u32,
    capacity: u32,
}

impl CostExceedsCapacity {
    /// A refusal by the tier `tier` of the limit `name` of a request costing `cost`.
    pub fn new(name: impl Into<Arc<str>>, tier: impl Into<Arc<str>>, cost: u32, capacity: u32) -> Self {
        Self { name: name.into(), tier: tier.into(), cost, capacity }
    }

    /// The layer's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The tier that cannot admit the request.
    pub fn tier(&self) -> &str {
        &self.tier
    }

    /// The request's cost.
    pub fn cost(&self) -> u32 {
        self.cost
    }

    /// The most the tier admits at once.
    pub fn capacity(&self) -> u32 {
        self.capacity
    }
}

impl fmt::Display for CostExceedsCapacity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rate limit `{}` (tier `{}`) can never admit a request of cost {}: its capacity is {}",
            self.name, self.tier, self.cost, self.capacity
        )
    }
}

rejection_impl!(CostExceedsCapacity, ExceedsCapacity, |_: &CostExceedsCapacity| None);
