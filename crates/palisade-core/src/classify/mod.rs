//! Outcome classification: one vocabulary for "did this call work?".
//!
//! Every palisade layer that has to judge a call (retry, circuit breaker, adaptive
//! concurrency, fallback, metrics) asks a [`Classify`] implementation. A classifier looks at
//! the `&Result<Response, Error>` of one call (and, through [`Classify::classify_timed`],
//! at how long it took) and answers with a [`Classification`]:
//!
//! - its [`Outcome`]: success, failure (counts against the service) or ignored (neither);
//! - whether it is worth retrying;
//! - what the server said about retrying, if anything ([`RetryHint`]): HTTP `Retry-After`
//!   (a floor), a gRPC pushback (retry in exactly that time), or "do not retry";
//! - which palisade rejection caused a failure, when a local layer refused the call
//!   ([`Classification::rejection`]) — a call refused by an open circuit breaker is not
//!   retryable (see [`classify_error`]).
//!
//! # Example
//!
//! ```
//! use palisade_core::classify::{Classify, ClassifyExt, DefaultClassifier, Outcome};
//!
//! // `Ok` is a success, `Err` a retryable failure ...
//! let default = DefaultClassifier;
//! assert!(default.classify(&Err::<(), _>("boom")).is_retryable());
//!
//! // ... but here a response of 0 is a failure, and an error "fatal" is not retried.
//! let custom = default
//!     .failure_if(|res: &Result<u32, &str>| matches!(res, Ok(0)))
//!     .not_retryable_if(|res: &Result<u32, &str>| matches!(res, Err("fatal")));
//! assert_eq!(custom.classify(&Ok(0)).outcome(), Outcome::Failure);
//! assert!(!custom.classify(&Err("fatal")).is_retryable());
//! assert!(custom.classify(&Err("flaky")).is_retryable());
//! ```

use std::time::Duration;

use crate::rejection::{find_rejection, RejectionKind};
use crate::BoxError;

mod combinators;
pub mod eos;
#[cfg(feature = "grpc")]
mod grpc;
#[cfg(feature = "http")]
mod http;

pub use self::combinators::{ClassifyExt, MapClassification, Reclassify, SlowCallFailure, When};
#[cfg(feature = "grpc")]
#[cfg_attr(docsrs, doc(cfg(feature = "grpc")))]
pub use self::grpc::GrpcClassifier;
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub use self::http::{parse_retry_after, parse_retry_after_at, HttpClassifier};

/// What one call means for the health of the service it went to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The call worked (or failed through no fault of the service, like an HTTP 404).
    Success,
    /// The call failed and counts against the service.
    Failure,
    /// The call says nothing about the service (e.g. cancelled by the caller).
    Ignored,
}

/// What the server said about retrying, as a classifier read it.
///
/// The two kinds of delay differ on purpose, following their protocols:
///
/// - [`RetryHint::After`] — HTTP `Retry-After` (and the `retry_after` of a palisade
///   rejection): a **floor**. The next attempt never starts earlier, but a longer backoff
///   still wins; RFC 9110 only says the client "ought to wait" at least that long.
/// - [`RetryHint::Pushback`] — gRPC `grpc-retry-pushback-ms` ≥ 0: **exactly** that delay, and
///   the exponential backoff restarts from its first delay afterwards, as gRFC A6 says ("the
///   client will retry after the specified delay … subsequent retries use the initial
///   backoff") and grpc-go does (`numRetriesSincePushback = 0`).
/// - [`RetryHint::DoNotRetry`] — a negative or malformed pushback: no retry, no new hedge,
///   and the call counts as a failure for gRPC retry throttling (A6).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RetryHint {
    /// The server gave no hint.
    #[default]
    None,
    /// Wait at least this long (HTTP `Retry-After`, a rejection's `retry_after`).
    After(Duration),
    /// Retry after exactly this long and restart the backoff (gRPC pushback).
    Pushback(Duration),
    /// The server asked not to retry (gRPC negative pushback).
    DoNotRetry,
}

/// A classifier's verdict on one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Classification {
    outcome: Outcome,
    retryable: bool,
    hint: RetryHint,
    rejection: Option<RejectionKind>,
    caller_fault: bool,
}

impl Classification {
    const fn of(outcome: Outcome, retryable: bool) -> Self {
        Self { outcome, retryable, hint: RetryHint::None, rejection: None, caller_fault: false }
    }

    /// A success, not retryable.
    pub const fn success() -> Self {
        Self::of(Outcome::Success, false)
    }

    /// A failure that is worth retrying.
    pub const fn retryable_failure() -> Self {
        Self::of(Outcome::Failure, true)
    }

    /// A failure that must not be retried.
    pub const fn failure() -> Self {
        Self::of(Outcome::Failure, false)
    }

    /// Neither success nor failure, not retryable.
    pub const fn ignored() -> Self {
        Self::of(Outcome::Ignored, false)
    }

    /// The same classification with another outcome.
    #[must_use]
    pub const fn with_outcome(mut self, outcome: Outcome) -> Self {
        self.outcome = outcome;
        self
    }

    /// The same classification, retryable or not.
    #[must_use]
    pub const fn with_retryable(mut self, retryable: bool) -> Self {
        self.retryable = retryable;
        self
    }

    /// The same classification with a server-given retry delay hint that is a **floor**
    /// ([`RetryHint::After`]; `None` clears the hint).
    #[must_use]
    pub const fn with_retry_after(mut self, retry_after: Option<Duration>) -> Self {
        self.hint = match retry_after {
            Some(d) => RetryHint::After(d),
            None => RetryHint::None,
        };
        self
    }

    /// The same classification with another [`RetryHint`].
    #[must_use]
    pub const fn with_hint(mut self, hint: RetryHint) -> Self {
        self.hint = hint;
        self
    }

    /// The same classification, marked as caused by a palisade rejection of `kind` (a
    /// refusal by a local layer, not an answer of the service).
    #[must_use]
    pub const fn with_rejection(mut self, kind: Option<RejectionKind>) -> Self {
        self.rejection = kind;
        self
    }

    /// The call's outcome.
    pub const fn outcome(&self) -> Outcome {
        self.outcome
    }

    /// `true` for [`Outcome::Success`].
    pub const fn is_success(&self) -> bool {
        matches!(self.outcome, Outcome::Success)
    }

    /// `true` for [`Outcome::Failure`].
    pub const fn is_failure(&self) -> bool {
        matches!(self.outcome, Outcome::Failure)
    }

    /// `true` for [`Outcome::Ignored`].
    pub const fn is_ignored(&self) -> bool {
        matches!(self.outcome, Outcome::Ignored)
    }

    /// Whether another attempt may be made: the failure is of a retryable kind and the
    /// server did not ask not to retry ([`RetryHint::DoNotRetry`]).
    pub const fn is_retryable(&self) -> bool {
        self.retryable && !matches!(self.hint, RetryHint::DoNotRetry)
    }

    /// A failure of a kind worth retrying, whatever the server's hint: gRFC A6's
    /// "non-fatal" status. A hedge layer lets the other attempts run on after such a
    /// failure even when the server asked not to retry; a fatal failure (a failure that is
    /// not of this kind) ends the call.
    pub const fn is_non_fatal_failure(&self) -> bool {
        self.retryable && matches!(self.outcome, Outcome::Failure)
    }

    /// Whether the server asked not to retry (gRPC negative pushback).
    pub const fn is_retry_refused(&self) -> bool {
        matches!(self.hint, RetryHint::DoNotRetry)
    }

    /// Marks a success that is the caller's fault rather than an OK answer (a gRPC
    /// NOT_FOUND or INVALID_ARGUMENT, as `GrpcClassifier` marks them): it counts as a success for the service's health
    /// (breakers, adaptive limits), but gRPC retry throttling gives a token back only for
    /// OK ([`is_throttling_success`](Self::is_throttling_success)).
    #[must_use]
    pub const fn caller_fault(mut self) -> Self {
        self.caller_fault = true;
        self
    }

    /// Whether this was marked with [`caller_fault`](Self::caller_fault).
    pub const fn is_caller_fault(&self) -> bool {
        self.caller_fault
    }

    /// Whether the call gives a token back to gRPC retry throttling: gRFC A6 refills the
    /// bucket when "the RPC succeeds" (grpc-go: the call ended without an error), so a
    /// success that is the [caller's fault](Self::caller_fault) does not.
    pub const fn is_throttling_success(&self) -> bool {
        matches!(self.outcome, Outcome::Success) && !self.caller_fault
    }

    /// Whether the call counts as a failure for gRPC retry throttling (gRFC A6): a
    /// retryable failure, or a response whose pushback says not to retry.
    pub const fn is_throttling_failure(&self) -> bool {
        (self.retryable && matches!(self.outcome, Outcome::Failure)) || self.is_retry_refused()
    }

    /// The delay the server asked for before the next attempt, if it asked (either kind of
    /// [`RetryHint`]).
    pub const fn retry_after(&self) -> Option<Duration> {
        match self.hint {
            RetryHint::After(d) | RetryHint::Pushback(d) => Some(d),
            RetryHint::None | RetryHint::DoNotRetry => None,
        }
    }

    /// What the server said about retrying.
    pub const fn hint(&self) -> RetryHint {
        self.hint
    }

    /// The palisade rejection that caused this failure, when a local layer refused the call
    /// (see [`classify_error`]).
    pub const fn rejection(&self) -> Option<RejectionKind> {
        self.rejection
    }
}

/// Decides what the result of a call means.
///
/// Implemented by [`DefaultClassifier`], closures wrapped by [`classify_fn`], the combinators
/// of [`ClassifyExt`], and behind features `HttpClassifier` and `GrpcClassifier`.
pub trait Classify<Res, Err> {
    /// Classifies one call's result.
    fn classify(&self, result: &Result<Res, Err>) -> Classification;

    /// Classifies one call's result knowing how long it took.
    ///
    /// Layers that measure calls (circuit breaker, adaptive concurrency) call this; the
    /// default ignores the duration.
    fn classify_timed(&self, result: &Result<Res, Err>, elapsed: Duration) -> Classification {
        let _ = elapsed;
        self.classify(result)
    }

    /// Whether the outcome of `result` is known only at the end of its response body (a
    /// gRPC stream, whose status comes in its trailers). The default: never. See [`eos`].
    fn requires_eos(&self, result: &Result<Res, Err>) -> bool {
        let _ = result;
        false
    }

    /// The second stage: for a result whose outcome waits for the end of its response body,
    /// an [`eos::Deferral`] that wraps the body so that the recording layer learns the
    /// outcome when the body ends. `None` (the default) when [`classify`](Self::classify)
    /// decides now. Layers that record outcomes (circuit breaker, adaptive limit) ask this
    /// first; a retry layer does not (a stream is committed once its headers arrived).
    fn defer_eos<'a>(&self, result: &'a mut Result<Res, Err>) -> Option<eos::Deferral<'a>> {
        let _ = result;
        None
    }
}

impl<C, Res, Err> Classify<Res, Err> for std::sync::Arc<C>
where
    C: Classify<Res, Err> + ?Sized,
{
    fn classify(&self, result: &Result<Res, Err>) -> Classification {
        (**self).classify(result)
    }

    fn classify_timed(&self, result: &Result<Res, Err>, elapsed: Duration) -> Classification {
        (**self).classify_timed(result, elapsed)
    }

    fn requires_eos(&self, result: &Result<Res, Err>) -> bool {
        (**self).requires_eos(result)
    }

    fn defer_eos<'a>(&self, result: &'a mut Result<Res, Err>) -> Option<eos::Deferral<'a>> {
        (**self).defer_eos(result)
    }
}

/// `Ok` is a success; `Err` is a retryable failure.
///
/// Errors that are palisade rejections are judged by what they say (see [`classify_error`]):
/// a rejection that carries a `retry_after` passes it on as the hint; a closed pool or
/// service, and a call refused by an open circuit breaker, are not retryable.
#[derive(Clone, Copy, Debug, Default)]
pub struct DefaultClassifier;

impl<Res, Err: 'static> Classify<Res, Err> for DefaultClassifier {
    fn classify(&self, result: &Result<Res, Err>) -> Classification {
        match result {
            Ok(_) => Classification::success(),
            Err(err) => classify_error(err),
        }
    }
}

/// How [`DefaultClassifier`] (and the protocol classifiers) judge an error value.
///
/// A `BoxError` holding a palisade rejection anywhere in its source chain is marked with the
/// rejection's kind ([`Classification::rejection`]) and gives its `retry_after` as the hint
/// (a floor). Then:
///
/// | rejection | outcome | retryable |
/// |---|---|---|
/// | [`RejectionKind::CircuitOpen`] | failure | **no** |
/// | [`RejectionKind::Closed`] | failure | no |
/// | [`RejectionKind::CostExceedsCapacity`] (more than a limit can ever give) | ignored | no |
/// | [`RejectionKind::KeyMissing`] (a keyed layer found no key: the deployment's mistake, not the backend's) | ignored | no |
/// | any other rejection | failure | yes |
/// | not a rejection | failure | yes |
///
/// A call refused by an open breaker is not retried: the breaker answers at once so that
/// the caller can answer at once (503 with `Retry-After`), instead of a retry layer outside
/// the breaker sleeping on the breaker's remaining open time while it holds the caller's
/// request, connection and permits. Waiting for the breaker to half-open is an explicit
/// opt-in of the retry layer (`RetryBuilder::wait_for_half_open(max_wait)` in
/// palisade-retry), with its own bound; it can tell this failure apart by
/// [`Classification::rejection`].
pub fn classify_error<E: 'static>(err: &E) -> Classification {
    let any: &dyn std::any::Any = err;
    let rejection =
        if let Some(boxed) = any.downcast_ref::<BoxError>() { find_rejection(boxed.as_ref()) } else { None };
    let Some(r) = rejection else {
        return Classification::retryable_failure();
    };
    let verdict = match r.kind() {
        RejectionKind::CircuitOpen | RejectionKind::Closed => Classification::failure(),
        RejectionKind::CostExceedsCapacity | RejectionKind::KeyMissing => Classification::ignored(),
        _ => Classification::retryable_failure(),
    };
    verdict.with_retry_after(r.retry_after()).with_rejection(Some(r.kind()))
}

/// A classifier from a closure `Fn(&Result<Res, Err>) -> Classification`.
///
/// ```
/// use palisade_core::classify::{classify_fn, Classification, Classify};
///
/// let c = classify_fn(|r: &Result<u16, ()>| match r {
///     Ok(s) if *s >= 500 => Classification::retryable_failure(),
///     Ok(_) => Classification::success(),
///     Err(()) => Classification::failure(),
/// });
/// assert!(c.classify(&Ok(503)).is_retryable());
/// ```
pub fn classify_fn<F>(f: F) -> ClassifyFn<F> {
    ClassifyFn { f }
}

/// A classifier from a closure; see [`classify_fn`].
#[derive(Clone, Copy)]
pub struct ClassifyFn<F> {
    f: F,
}

impl<F> std::fmt::Debug for ClassifyFn<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClassifyFn").finish_non_exhaustive()
    }
}

impl<F, Res, Err> Classify<Res, Err> for ClassifyFn<F>
where
    F: Fn(&Result<Res, Err>) -> Classification,
{
    fn classify(&self, result: &Result<Res, Err>) -> Classification {
        (self.f)(result)
    }
}
