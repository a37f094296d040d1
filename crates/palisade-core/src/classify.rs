//! Outcome classification: one vocabulary for "did this call work?".
//!
//! Every palisade layer that has to judge a call (retry, circuit breaker, adaptive
//! concurrency, fallback, metrics) asks a [`Classify`] implementation. A classifier looks at
//! the `&Result<Response, Error>` of one call (and, through [`Classify::classify_timed`],
//! at how long it took) and answers with a [`Classification`]:
//!
//! - its [`Outcome`]: success, failure (counts against the service) or ignored (neither);
//! - whether it is worth retrying;
//! - a server-given retry delay hint (`Retry-After`, `grpc-retry-pushback-ms`), if any.
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

#[cfg(feature = "grpc")]
mod grpc;
#[cfg(feature = "http")]
mod http;

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

/// A classifier's verdict on one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Classification {
    outcome: Outcome,
    retryable: bool,
    retry_after: Option<Duration>,
}

impl Classification {
    /// A success, not retryable.
    pub const fn success() -> Self {
        Self { outcome: Outcome::Success, retryable: false, retry_after: None }
    }

    /// A failure that is worth retrying.
    pub const fn retryable_failure() -> Self {
        Self { outcome: Outcome::Failure, retryable: true, retry_after: None }
    }

    /// A failure that must not be retried.
    pub const fn failure() -> Self {
        Self { outcome: Outcome::Failure, retryable: false, retry_after: None }
    }

    /// Neither success nor failure, not retryable.
    pub const fn ignored() -> Self {
        Self { outcome: Outcome::Ignored, retryable: false, retry_after: None }
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

    /// The same classification with a server-given retry delay hint.
    #[must_use]
    pub const fn with_retry_after(mut self, retry_after: Option<Duration>) -> Self {
        self.retry_after = retry_after;
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

    /// Whether another attempt may succeed.
    pub const fn is_retryable(&self) -> bool {
        self.retryable
    }

    /// The delay the server asked for before the next attempt, if it asked.
    ///
    /// Layers treat it as a floor: the next attempt never fires earlier.
    pub const fn retry_after(&self) -> Option<Duration> {
        self.retry_after
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
}

/// `Ok` is a success; `Err` is a retryable failure.
///
/// Errors that are palisade rejections are judged by what they say: a rejection that carries
/// a `retry_after` passes it on as the hint, and a closed pool or service is not retryable.
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
/// A `BoxError` holding a palisade rejection anywhere in its source chain gives that
/// rejection's `retry_after` as the hint; [`RejectionKind::Closed`] is a failure that is not
/// retryable, and [`RejectionKind::ExceedsCapacity`] (the caller asked for more than a limit
/// can ever give) is ignored and not retryable. Every other error is a retryable failure.
pub fn classify_error<E: 'static>(err: &E) -> Classification {
    let any: &dyn std::any::Any = err;
    let rejection =
        if let Some(boxed) = any.downcast_ref::<BoxError>() { find_rejection(boxed.as_ref()) } else { None };
    match rejection {
        Some(r) if r.kind() == RejectionKind::Closed => Classification::failure(),
        Some(r) if r.kind() == RejectionKind::ExceedsCapacity => Classification::ignored(),
        Some(r) => Classification::retryable_failure().with_retry_after(r.retry_after()),
        None => Classification::retryable_failure(),
    }
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

/// Combinators for every [`Classify`] implementation.
pub trait ClassifyExt<Res, Err>: Classify<Res, Err> + Sized {
    /// Rewrites the verdict: `f` gets the result and this classifier's verdict.
    fn map<F>(self, f: F) -> MapClassification<Self, F>
    where
        F: Fn(&Result<Res, Err>, Classification) -> Classification,
    {
        MapClassification { inner: self, f }
    }

    /// Also treats results matching `pred` as retryable failures.
    fn retryable_if<P>(self, pred: P) -> MapClassification<Self, When<P>>
    where
        P: Fn(&Result<Res, Err>) -> bool,
    {
        MapClassification { inner: self, f: When { pred, action: Action::RetryableFailure } }
    }

    /// Treats results matching `pred` as failures that must not be retried.
    fn failure_if<P>(self, pred: P) -> MapClassification<Self, When<P>>
    where
        P: Fn(&Result<Res, Err>) -> bool,
    {
        MapClassification { inner: self, f: When { pred, action: Action::Failure } }
    }

    /// Keeps the outcome of results matching `pred` but never retries them.
    fn not_retryable_if<P>(self, pred: P) -> MapClassification<Self, When<P>>
    where
        P: Fn(&Result<Res, Err>) -> bool,
    {
        MapClassification { inner: self, f: When { pred, action: Action::NotRetryable } }
    }

    /// Treats results matching `pred` as neither success nor failure.
    fn ignore_if<P>(self, pred: P) -> MapClassification<Self, When<P>>
    where
        P: Fn(&Result<Res, Err>) -> bool,
    {
        MapClassification { inner: self, f: When { pred, action: Action::Ignore } }
    }

    /// Treats calls slower than `threshold` as failures (in
    /// [`classify_timed`](Classify::classify_timed)), even when they succeeded.
    fn failure_if_slower_than(self, threshold: Duration) -> SlowCallFailure<Self> {
        SlowCallFailure { inner: self, threshold }
    }
}

impl<C, Res, Err> ClassifyExt<Res, Err> for C where C: Classify<Res, Err> {}

/// A classifier whose verdict is rewritten by a function; see [`ClassifyExt::map`].
#[derive(Clone, Copy)]
pub struct MapClassification<C, F> {
    inner: C,
    f: F,
}

impl<C: std::fmt::Debug, F> std::fmt::Debug for MapClassification<C, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MapClassification").field("inner", &self.inner).finish_non_exhaustive()
    }
}

/// Rewrites a verdict; implemented by closures and by [`When`].
pub trait Reclassify<Res, Err> {
    /// Returns the new verdict for `result`, given the inner classifier's `verdict`.
    fn reclassify(&self, result: &Result<Res, Err>, verdict: Classification) -> Classification;
}

impl<F, Res, Err> Reclassify<Res, Err> for F
where
    F: Fn(&Result<Res, Err>, Classification) -> Classification,
{
    fn reclassify(&self, result: &Result<Res, Err>, verdict: Classification) -> Classification {
        self(result, verdict)
    }
}

#[derive(Clone, Copy, Debug)]
enum Action {
    RetryableFailure,
    Failure,
    NotRetryable,
    Ignore,
}

/// A predicate and what to do when it matches (built by [`ClassifyExt`]).
#[derive(Clone, Copy)]
pub struct When<P> {
    pred: P,
    action: Action,
}

impl<P> std::fmt::Debug for When<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("When").field("action", &self.action).finish_non_exhaustive()
    }
}

impl<P, Res, Err> Reclassify<Res, Err> for When<P>
where
    P: Fn(&Result<Res, Err>) -> bool,
{
    fn reclassify(&self, result: &Result<Res, Err>, verdict: Classification) -> Classification {
        if !(self.pred)(result) {
            return verdict;
        }
        match self.action {
            Action::RetryableFailure => verdict.with_outcome(Outcome::Failure).with_retryable(true),
            Action::Failure => verdict.with_outcome(Outcome::Failure).with_retryable(false),
            Action::NotRetryable => verdict.with_retryable(false),
            Action::Ignore => verdict.with_outcome(Outcome::Ignored).with_retryable(false),
        }
    }
}

impl<C, F, Res, Err> Classify<Res, Err> for MapClassification<C, F>
where
    C: Classify<Res, Err>,
    F: Reclassify<Res, Err>,
{
    fn classify(&self, result: &Result<Res, Err>) -> Classification {
        self.f.reclassify(result, self.inner.classify(result))
    }

    fn classify_timed(&self, result: &Result<Res, Err>, elapsed: Duration) -> Classification {
        self.f.reclassify(result, self.inner.classify_timed(result, elapsed))
    }
}

/// Counts slow calls as failures; see [`ClassifyExt::failure_if_slower_than`].
#[derive(Clone, Copy, Debug)]
pub struct SlowCallFailure<C> {
    inner: C,
    threshold: Duration,
}

impl<C, Res, Err> Classify<Res, Err> for SlowCallFailure<C>
where
    C: Classify<Res, Err>,
{
    fn classify(&self, result: &Result<Res, Err>) -> Classification {
        self.inner.classify(result)
    }

    fn classify_timed(&self, result: &Result<Res, Err>, elapsed: Duration) -> Classification {
        let verdict = self.inner.classify_timed(result, elapsed);
        if elapsed > self.threshold && verdict.is_success() {
            verdict.with_outcome(Outcome::Failure)
        } else {
            verdict
        }
    }
}
