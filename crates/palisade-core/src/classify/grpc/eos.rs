//! The second stage of [`GrpcClassifier`]: a streaming response judged by its trailers.

use std::any::Any;

use http::{Response, StatusCode};
use tonic::{Code, Status};

use super::GrpcClassifier;
use crate::classify::eos::{ClassifyEos, Deferral, EndOfStream};
use crate::classify::Classification;
use crate::BoxError;

/// The end-of-stream stage of [`GrpcClassifier`]: judges a gRPC response whose status
/// arrives in its trailers (see [`eos`](crate::classify::eos)).
///
/// - trailers with a `grpc-status`: by the code, with `grpc-retry-pushback-ms` read from the
///   trailers, exactly as [`GrpcClassifier`] judges a trailers-only response;
/// - a body that ends without trailers, or trailers without `grpc-status`: UNKNOWN, a failure
///   that is not retried. gRPC over HTTP/2 requires the status in the trailers, and tonic's
///   client reports such a stream as UNKNOWN too. (tower-http's `GrpcEosErrorsAsFailures`
///   counts a missing status as a success; palisade follows the protocol and tonic, so a
///   stream cut short by a proxy is not taken for a healthy one.)
/// - a body error: a `tonic::Status` (what tonic bodies fail with) by its code, a `BoxError`
///   holding a `Status` by that code, any other error a retryable failure.
///
/// ```
/// use palisade_core::classify::eos::{ClassifyEos, EndOfStream, GrpcEosClassifier};
/// use palisade_core::classify::GrpcClassifier;
///
/// let eos = GrpcEosClassifier::new(GrpcClassifier::new());
/// let mut trailers = http::HeaderMap::new();
/// trailers.insert("grpc-status", "14".parse().unwrap());
/// assert!(eos.classify_eos(&EndOfStream::Trailers(Some(&trailers))).is_failure());
/// trailers.insert("grpc-status", "0".parse().unwrap());
/// assert!(eos.classify_eos(&EndOfStream::Trailers(Some(&trailers))).is_success());
/// assert!(eos.classify_eos(&EndOfStream::Trailers(None)).is_failure());
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct GrpcEosClassifier {
    classifier: GrpcClassifier,
}

impl GrpcEosClassifier {
    /// The second stage of `classifier`, with its rules.
    pub const fn new(classifier: GrpcClassifier) -> Self {
        Self { classifier }
    }

    fn classify_body_error(self, err: &(dyn Any + Send)) -> Classification {
        if let Some(status) = err.downcast_ref::<Status>() {
            return self.classifier.classify_status(status);
        }
        if let Some(boxed) = err.downcast_ref::<BoxError>() {
            return self.classifier.classify_err(boxed);
        }
        Classification::retryable_failure()
    }
}

impl ClassifyEos for GrpcEosClassifier {
    fn classify_eos(&self, end: &EndOfStream<'_>) -> Classification {
        match *end {
            EndOfStream::Trailers(Some(trailers)) => match trailers.get("grpc-status") {
                Some(v) => self.classifier.classify_with_pushback(Code::from_bytes(v.as_bytes()), trailers),
                None => self.classifier.classify_code(Code::Unknown),
            },
            EndOfStream::Trailers(None) => self.classifier.classify_code(Code::Unknown),
            EndOfStream::Error(err) => self.classify_body_error(err),
        }
    }
}

/// Whether a gRPC response's status comes in its trailers: HTTP 200 without `grpc-status`
/// in the headers (a trailers-only response has it in the headers and is judged at once).
pub(super) fn requires_eos<B>(res: &Response<B>) -> bool {
    res.status() == StatusCode::OK && !res.headers().contains_key("grpc-status")
}

/// Defers a streaming response whose body palisade can wrap in place.
pub(super) fn defer<B: 'static>(classifier: GrpcClassifier, res: &mut Response<B>) -> Option<Deferral<'_>> {
    if !requires_eos(res) {
        return None;
    }
    let any: &mut dyn Any = res;
    let res = any.downcast_mut::<Response<tonic::body::Body>>()?;
    Some(Deferral::new(res, GrpcEosClassifier::new(classifier)))
}
