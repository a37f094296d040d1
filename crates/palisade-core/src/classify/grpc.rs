use std::error::Error;
use std::time::Duration;

use http::{HeaderMap, Response};
use tonic::{Code, Status};

use super::{classify_error, Classification, Classify, HttpClassifier, RetryHint};
use crate::BoxError;

mod eos;
pub use self::eos::GrpcEosClassifier;

/// Classifies gRPC calls by status code, from `grpc-status` headers (trailers-only
/// responses), from `tonic::Status` errors, or from a `Status` anywhere in a `BoxError`'s
/// source chain.
///
/// | code | outcome | retryable |
/// |---|---|---|
/// | OK | success | no |
/// | UNAVAILABLE, RESOURCE_EXHAUSTED | failure | yes (`grpc-retry-pushback-ms` is the hint: [`RetryHint::Pushback`], retry in exactly that time; a negative or malformed pushback is [`RetryHint::DoNotRetry`]) |
/// | DEADLINE_EXCEEDED, ABORTED | failure | configurable, off by default |
/// | INVALID_ARGUMENT, NOT_FOUND, ALREADY_EXISTS, PERMISSION_DENIED, UNAUTHENTICATED, FAILED_PRECONDITION, OUT_OF_RANGE, UNIMPLEMENTED | success (the caller's fault: [`Classification::caller_fault`], no token back to retry throttling) | no |
/// | CANCELLED | ignored | no |
/// | INTERNAL, UNKNOWN, DATA_LOSS | failure | no |
///
/// A negative pushback on any failed call forbids retrying it and, as in gRFC A6 and grpc-go,
/// makes it count as a failure for retry throttling
/// ([`Classification::is_throttling_failure`]), whatever its code.
///
/// A response whose headers carry no `grpc-status` is a streaming response whose status
/// arrives in trailers: at the headers it counts as a success when its HTTP status is 200,
/// otherwise by [`HttpClassifier`]. Layers that record outcomes (circuit breaker, adaptive
/// limit) judge a 200 stream at its end instead, by its trailers: see
/// [`defer_eos`](Classify::defer_eos), [`eos`](super::eos) and [`GrpcEosClassifier`].
///
/// ```
/// use palisade_core::classify::{Classify, GrpcClassifier};
/// use tonic::{Code, Status};
///
/// let c = GrpcClassifier::new();
/// let unavailable: Result<tonic::Response<()>, Status> = Err(Status::unavailable("down"));
/// assert!(c.classify(&unavailable).is_retryable());
/// let not_found: Result<tonic::Response<()>, Status> = Err(Status::not_found("no"));
/// assert!(c.classify(&not_found).is_success());
/// assert!(c.deadline_exceeded_retryable(true)
///     .classify(&Err::<tonic::Response<()>, _>(Status::deadline_exceeded("slow")))
///     .is_retryable());
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct GrpcClassifier {
    deadline_exceeded_retryable: bool,
    aborted_retryable: bool,
}

impl GrpcClassifier {
    /// The classifier with the rules in the table above.
    pub const fn new() -> Self {
        Self { deadline_exceeded_retryable: false, aborted_retryable: false }
    }

    /// Whether DEADLINE_EXCEEDED may be retried.
    #[must_use]
    pub const fn deadline_exceeded_retryable(mut self, yes: bool) -> Self {
        self.deadline_exceeded_retryable = yes;
        self
    }

    /// Whether ABORTED may be retried.
    #[must_use]
    pub const fn aborted_retryable(mut self, yes: bool) -> Self {
        self.aborted_retryable = yes;
        self
    }

    /// Classifies a status code alone (no hint).
    #[allow(clippy::match_same_arms)] // one arm per row of the table above
    pub fn classify_code(self, code: Code) -> Classification {
        match code {
            Code::Ok => Classification::success(),
            Code::Cancelled => Classification::ignored(),
            Code::Unavailable | Code::ResourceExhausted => Classification::retryable_failure(),
            Code::DeadlineExceeded => {
                Classification::failure().with_retryable(self.deadline_exceeded_retryable)
            }
            Code::Aborted => Classification::failure().with_retryable(self.aborted_retryable),
            Code::InvalidArgument
            | Code::NotFound
            | Code::AlreadyExists
            | Code::PermissionDenied
            | Code::Unauthenticated
            | Code::FailedPrecondition
            | Code::OutOfRange
            | Code::Unimplemented => Classification::success().caller_fault(),
            Code::Internal | Code::Unknown | Code::DataLoss => Classification::failure(),
        }
    }

    fn classify_with_pushback(self, code: Code, headers: &HeaderMap) -> Classification {
        let verdict = self.classify_code(code);
        if code == Code::Ok {
            return verdict; // pushback only means something on a failed call
        }
        match pushback(headers) {
            Some(Pushback::After(d)) if verdict.is_retryable() => verdict.with_hint(RetryHint::Pushback(d)),
            // gRFC A6 / grpc-go: "do not retry", and a failure for retry throttling.
            Some(Pushback::Never) => verdict.with_hint(RetryHint::DoNotRetry),
            _ => verdict,
        }
    }

    fn classify_status(self, status: &Status) -> Classification {
        self.classify_with_pushback(status.code(), status.metadata().as_ref())
    }

    fn classify_err<E: 'static>(self, err: &E) -> Classification {
        let any: &dyn std::any::Any = err;
        if let Some(status) = any.downcast_ref::<Status>() {
            return self.classify_status(status);
        }
        if let Some(boxed) = any.downcast_ref::<BoxError>() {
            if let Some(status) = crate::rejection::find::<Status>(boxed.as_ref() as &(dyn Error + 'static)) {
                return self.classify_status(status);
            }
        }
        classify_error(err)
    }
}

enum Pushback {
    After(Duration),
    Never,
}

/// Reads `grpc-retry-pushback-ms`: a non-negative integer is a delay, a negative one (or any
/// unparseable value, or several values, as grpc-go does) means "do not retry".
fn pushback(headers: &HeaderMap) -> Option<Pushback> {
    let mut values = headers.get_all("grpc-retry-pushback-ms").iter();
    let v = values.next()?;
    if values.next().is_some() {
        return Some(Pushback::Never);
    }
    match v.to_str().ok().and_then(|s| s.trim().parse::<i64>().ok()) {
        Some(ms) if ms >= 0 => Some(Pushback::After(Duration::from_millis(ms.unsigned_abs()))),
        _ => Some(Pushback::Never),
    }
}

impl<B: 'static, E: 'static> Classify<Response<B>, E> for GrpcClassifier {
    fn classify(&self, result: &Result<Response<B>, E>) -> Classification {
        match result {
            Ok(res) => match res.headers().get("grpc-status") {
                Some(v) => self.classify_with_pushback(Code::from_bytes(v.as_bytes()), res.headers()),
                None if res.status() == http::StatusCode::OK => Classification::success(),
                None => HttpClassifier::classify_status(res.status()),
            },
            Err(e) => self.classify_err(e),
        }
    }

    fn requires_eos(&self, result: &Result<Response<B>, E>) -> bool {
        matches!(result, Ok(res) if eos::requires_eos(res))
    }

    fn defer_eos<'a>(&self, result: &'a mut Result<Response<B>, E>) -> Option<super::eos::Deferral<'a>> {
        eos::defer(*self, result.as_mut().ok()?)
    }
}

impl<T, E: 'static> Classify<tonic::Response<T>, E> for GrpcClassifier {
    fn classify(&self, result: &Result<tonic::Response<T>, E>) -> Classification {
        match result {
            Ok(_) => Classification::success(),
            Err(e) => self.classify_err(e),
        }
    }
}
