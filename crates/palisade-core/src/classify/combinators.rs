//! [`ClassifyExt`]: combinators that rewrite any classifier's verdict.

use std::time::Duration;

use super::{eos, Classification, Classify, Outcome, RetryHint};

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
            Action::RetryableFailure => {
                let hint = if verdict.is_retry_refused() { RetryHint::None } else { verdict.hint() };
                verdict.with_outcome(Outcome::Failure).with_retryable(true).with_hint(hint)
            }
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

    /// Defers to the end of the body only when the rewrite leaves the first stage's verdict
    /// unchanged: a rule that matched the response's headers decides at once.
    fn requires_eos(&self, result: &Result<Res, Err>) -> bool {
        self.inner.requires_eos(result) && {
            let verdict = self.inner.classify(result);
            self.f.reclassify(result, verdict) == verdict
        }
    }

    fn defer_eos<'a>(&self, result: &'a mut Result<Res, Err>) -> Option<eos::Deferral<'a>> {
        if self.requires_eos(result) {
            self.inner.defer_eos(result)
        } else {
            None
        }
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

    fn requires_eos(&self, result: &Result<Res, Err>) -> bool {
        self.inner.requires_eos(result)
    }

    /// The inner classifier's deferral; its end-of-stream verdict gets the same threshold,
    /// measured to the end of the body.
    fn defer_eos<'a>(&self, result: &'a mut Result<Res, Err>) -> Option<eos::Deferral<'a>> {
        let threshold = self.threshold;
        self.inner
            .defer_eos(result)
            .map(|d| d.map_classifier(|inner| Box::new(eos::SlowEos { inner, threshold })))
    }
}
