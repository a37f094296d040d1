//! End-of-stream classification: the second stage for responses whose outcome arrives at
//! the end of their body.
//!
//! A gRPC server-streaming call (or any gRPC response that is not trailers-only) answers
//! with HTTP 200 and headers that say nothing about the outcome: its `grpc-status` comes in
//! the trailers, after the messages. Judged at the headers such a stream is a success even
//! when it ends with UNAVAILABLE or INTERNAL. The second stage, modelled on tower-http's
//! `ClassifyResponse` / `ClassifyEos` / `ClassifiedResponse::RequiresEos`, judges it when
//! its body ends:
//!
//! 1. A layer that records outcomes (circuit breaker, adaptive concurrency limit) asks its
//!    classifier [`defer_eos`](super::Classify::defer_eos) with the call's result. For
//!    most results the answer is `None` and the first stage
//!    ([`classify`](super::Classify::classify)) decides, as before.
//! 2. For a response whose outcome waits for its trailers the classifier answers with a
//!    [`Deferral`]; the layer hands it a one-shot recorder ([`RecordEos`]) and
//!    [`Deferral::attach`] wraps the response body in an [`EosBody`] that carries the
//!    recorder and a second-stage classifier ([`ClassifyEos`]).
//! 3. When the body ends — its trailers arrive, it ends without trailers, or reading it
//!    fails — the body calls the recorder once with an [`Eos`], from which the layer takes
//!    the verdict ([`Eos::classify`], or [`Eos::classify_timed`] with the time the whole
//!    call took) and records it its own way.
//!
//! # A stream dropped before its end
//!
//! If the caller drops the body before it ends, the recorder is dropped without being
//! called; what that means is up to the layer (its recorder's `Drop`). palisade's layers
//! count it as **ignored** — neither success nor failure: the caller walked away (a client
//! cancel, which gRPC reports as CANCELLED and [`GrpcClassifier`](super) ignores), so the
//! stream says nothing about the server. This matches tower-http's trace layer (a dropped
//! body fires neither `on_eos` nor `on_failure`), Netflix concurrency-limits' gRPC
//! interceptor (a cancelled call is `onIgnore`) and palisade's own rule for a dropped
//! response future. A half-open trial that is dropped gives its slot back.
//!
//! # Which responses are deferred
//!
//! Only responses whose body can be wrapped without changing the response type: the body
//! is replaced in place, so the layers keep their `Response` types. With feature `grpc`
//! that is `http::Response<tonic::body::Body>` — what a tonic `Channel` answers and what
//! tonic's server routes produce. A response with another body type keeps its first-stage
//! verdict; a layer of your own can still wrap such a body with [`EosBody::new`].
//!
//! # Example
//!
//! ```
//! # #[cfg(feature = "grpc")] {
//! use palisade_core::classify::eos::Eos;
//! use palisade_core::classify::{Classify, GrpcClassifier};
//!
//! // A streaming response: HTTP 200, no grpc-status in the headers.
//! let res = http::Response::new(tonic::body::Body::default());
//! let mut result = Ok::<_, tonic::Status>(res);
//!
//! let classifier = GrpcClassifier::new();
//! // The first stage cannot know yet ...
//! assert!(classifier.classify(&result).is_success());
//! // ... so a recording layer defers to the end of the body.
//! let deferral = classifier.defer_eos(&mut result).expect("a streaming response");
//! deferral.attach(|eos: Eos<'_>| {
//!     // Called once when the body ends; an empty body ends at once, without a status.
//!     assert!(eos.classify().is_failure());
//! });
//! # }
//! ```

use std::any::Any;
use std::fmt;
use std::time::Duration;

use super::Classification;

/// How a response body ended.
#[non_exhaustive]
pub enum EndOfStream<'a> {
    /// The body ended, with its trailers if it sent any.
    #[cfg(feature = "http")]
    #[cfg_attr(docsrs, doc(cfg(feature = "http")))]
    Trailers(Option<&'a http::HeaderMap>),
    /// Reading the body failed; the body's error, to downcast to its type
    /// (`tonic::Status` for tonic bodies).
    Error(&'a (dyn Any + Send)),
}

impl fmt::Debug for EndOfStream<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            #[cfg(feature = "http")]
            Self::Trailers(t) => f.debug_tuple("Trailers").field(t).finish(),
            Self::Error(_) => f.write_str("Error"),
        }
    }
}

/// The second stage of a classifier: judges a response at the end of its body.
///
/// Returned (boxed, inside a [`Deferral`]) by
/// [`Classify::defer_eos`](super::Classify::defer_eos); implemented for gRPC by
/// [`GrpcEosClassifier`] (feature `grpc`).
pub trait ClassifyEos: Send + Sync + 'static {
    /// Classifies the end of a response body.
    fn classify_eos(&self, end: &EndOfStream<'_>) -> Classification;

    /// Classifies the end of a response body knowing how long the whole call took (from
    /// the request to the end of the body). The default ignores the duration.
    fn classify_eos_timed(&self, end: &EndOfStream<'_>, elapsed: Duration) -> Classification {
        let _ = elapsed;
        self.classify_eos(end)
    }
}

impl<C: ClassifyEos + ?Sized> ClassifyEos for Box<C> {
    fn classify_eos(&self, end: &EndOfStream<'_>) -> Classification {
        (**self).classify_eos(end)
    }

    fn classify_eos_timed(&self, end: &EndOfStream<'_>, elapsed: Duration) -> Classification {
        (**self).classify_eos_timed(end, elapsed)
    }
}

/// The end of a deferred response, handed once to its [`RecordEos`].
pub struct Eos<'a> {
    classifier: &'a dyn ClassifyEos,
    end: EndOfStream<'a>,
}

impl fmt::Debug for Eos<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Eos").field("end", &self.end).finish_non_exhaustive()
    }
}

impl<'a> Eos<'a> {
    /// The end of `end`, judged by `classifier`.
    pub fn new(classifier: &'a dyn ClassifyEos, end: EndOfStream<'a>) -> Self {
        Self { classifier, end }
    }

    /// How the body ended.
    pub fn end(&self) -> &EndOfStream<'a> {
        &self.end
    }

    /// The verdict of the second-stage classifier.
    pub fn classify(&self) -> Classification {
        self.classifier.classify_eos(&self.end)
    }

    /// The verdict of the second-stage classifier, knowing how long the call took.
    pub fn classify_timed(&self, elapsed: Duration) -> Classification {
        self.classifier.classify_eos_timed(&self.end, elapsed)
    }
}

/// Records the outcome of a deferred response: called at most once, when its body ends.
///
/// Dropped without being called when the body is dropped before its end; implement `Drop`
/// on what the recorder holds for what that means to the layer (palisade's layers: ignored).
/// Implemented by every `FnOnce(Eos<'_>) + Send + 'static`.
pub trait RecordEos: Send + 'static {
    /// Records the end of the response body.
    fn record_eos(self, eos: Eos<'_>);
}

impl<F> RecordEos for F
where
    F: FnOnce(Eos<'_>) + Send + 'static,
{
    fn record_eos(self, eos: Eos<'_>) {
        self(eos);
    }
}

/// A boxed recorder, as [`WrapBody`] receives it.
pub type BoxRecordEos = Box<dyn FnOnce(Eos<'_>) + Send>;

/// A response type whose body can be wrapped in an [`EosBody`] in place, its type
/// unchanged (a type-erased body).
///
/// Implemented for `http::Response<tonic::body::Body>` (feature `grpc`).
pub trait WrapBody {
    /// Wraps the body so that `recorder` is called with `classifier` when it ends.
    fn wrap_body(&mut self, classifier: Box<dyn ClassifyEos>, recorder: BoxRecordEos);
}

/// A response whose outcome waits for the end of its body; see the [module docs](self).
///
/// Returned by [`Classify::defer_eos`](super::Classify::defer_eos). Dropping it without
/// [`attach`](Self::attach) leaves the response untouched (and unjudged).
pub struct Deferral<'a> {
    response: &'a mut dyn WrapBody,
    classifier: Box<dyn ClassifyEos>,
}

impl fmt::Debug for Deferral<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Deferral").finish_non_exhaustive()
    }
}

impl<'a> Deferral<'a> {
    /// Defers `response` to `classifier`, judging its end.
    pub fn new<C: ClassifyEos>(response: &'a mut dyn WrapBody, classifier: C) -> Self {
        Self { response, classifier: Box::new(classifier) }
    }

    /// The same deferral with its second-stage classifier rewritten by `f` (used by
    /// classifier wrappers such as [`SlowCallFailure`](super::SlowCallFailure)).
    #[must_use]
    pub fn map_classifier<F>(self, f: F) -> Self
    where
        F: FnOnce(Box<dyn ClassifyEos>) -> Box<dyn ClassifyEos>,
    {
        Self { response: self.response, classifier: f(self.classifier) }
    }

    /// Wraps the response body so that `recorder` is called once when it ends (or dropped
    /// if the body is dropped first). A body that has already ended calls it at once.
    pub fn attach<R: RecordEos>(self, recorder: R) {
        self.response.wrap_body(self.classifier, Box::new(move |eos: Eos<'_>| recorder.record_eos(eos)));
    }
}

#[cfg(feature = "http")]
pub use self::body::EosBody;

#[cfg(feature = "http")]
mod body {
    use std::any::Any;
    use std::fmt;
    use std::pin::Pin;
    use std::task::{ready, Context, Poll};

    use http_body::{Body, Frame, SizeHint};
    use pin_project_lite::pin_project;

    use super::{ClassifyEos, EndOfStream, Eos, RecordEos};

    pin_project! {
        /// A response body that reports its end: forwards every frame, size hint and
        /// `is_end_stream` of the body it wraps, and calls its recorder once — with the
        /// trailers when they arrive, with `None` when the body ends without them, with the
        /// error when reading fails. Dropped before its end, it drops the recorder uncalled.
        ///
        /// ```
        /// use palisade_core::classify::eos::{ClassifyEos, EndOfStream, EosBody, Eos};
        /// use palisade_core::classify::Classification;
        ///
        /// struct TrailersOrFail;
        /// impl ClassifyEos for TrailersOrFail {
        ///     fn classify_eos(&self, end: &EndOfStream<'_>) -> Classification {
        ///         match end {
        ///             EndOfStream::Trailers(Some(_)) => Classification::success(),
        ///             _ => Classification::failure(),
        ///         }
        ///     }
        /// }
        ///
        /// let mut body = EosBody::new(String::from("hello"), TrailersOrFail, |eos: Eos<'_>| {
        ///     assert!(eos.classify().is_failure()); // a String has no trailers
        /// });
        ///
        /// // Read it to the end: the recorder is called once, with the last frame.
        /// use http_body::Body;
        /// use std::task::{Context, Poll, Waker};
        /// let mut cx = Context::from_waker(Waker::noop());
        /// while let Poll::Ready(Some(_)) = std::pin::Pin::new(&mut body).poll_frame(&mut cx) {}
        /// assert!(!body.is_pending());
        /// ```
        pub struct EosBody<B, C, R> {
            #[pin]
            inner: B,
            pending: Option<(C, R)>,
        }
    }

    impl<B, C, R> EosBody<B, C, R> {
        /// Wraps `inner`; `recorder` gets `classifier` and the end of `inner`.
        pub fn new(inner: B, classifier: C, recorder: R) -> Self {
            Self { inner, pending: Some((classifier, recorder)) }
        }

        /// The wrapped body.
        pub fn get_ref(&self) -> &B {
            &self.inner
        }

        /// Whether the end was not reported yet.
        pub fn is_pending(&self) -> bool {
            self.pending.is_some()
        }
    }

    impl<B: fmt::Debug, C, R> fmt::Debug for EosBody<B, C, R> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("EosBody")
                .field("inner", &self.inner)
                .field("pending", &self.pending.is_some())
                .finish()
        }
    }

    fn report<C: ClassifyEos, R: RecordEos>(pending: &mut Option<(C, R)>, end: EndOfStream<'_>) {
        if let Some((classifier, recorder)) = pending.take() {
            recorder.record_eos(Eos::new(&classifier, end));
        }
    }

    impl<B, C, R> Body for EosBody<B, C, R>
    where
        B: Body,
        B::Error: Send + 'static,
        C: ClassifyEos,
        R: RecordEos,
    {
        type Data = B::Data;
        type Error = B::Error;

        fn poll_frame(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
            let mut this = self.project();
            let frame = ready!(this.inner.as_mut().poll_frame(cx));
            if this.pending.is_none() {
                return Poll::Ready(frame);
            }
            match &frame {
                Some(Ok(f)) => {
                    if let Some(trailers) = f.trailers_ref() {
                        report(this.pending, EndOfStream::Trailers(Some(trailers)));
                    } else if this.inner.is_end_stream() {
                        // The last data frame: the consumer may not poll again.
                        report(this.pending, EndOfStream::Trailers(None));
                    }
                }
                Some(Err(e)) => report(this.pending, EndOfStream::Error(e as &(dyn Any + Send))),
                None => report(this.pending, EndOfStream::Trailers(None)),
            }
            Poll::Ready(frame)
        }

        fn is_end_stream(&self) -> bool {
            self.inner.is_end_stream()
        }

        fn size_hint(&self) -> SizeHint {
            self.inner.size_hint()
        }
    }

    /// Wraps a body that has not ended yet; reports a body that already has at once (a
    /// type-erasing constructor may drop an ended body).
    #[cfg(feature = "grpc")]
    pub(crate) fn wrap_tonic(
        body: tonic::body::Body,
        classifier: Box<dyn ClassifyEos>,
        recorder: super::BoxRecordEos,
    ) -> tonic::body::Body {
        if body.is_end_stream() {
            recorder(Eos::new(&classifier, EndOfStream::Trailers(None)));
            return body;
        }
        tonic::body::Body::new(EosBody::new(body, classifier, recorder))
    }
}

#[cfg(feature = "grpc")]
impl WrapBody for http::Response<tonic::body::Body> {
    fn wrap_body(&mut self, classifier: Box<dyn ClassifyEos>, recorder: BoxRecordEos) {
        let body = std::mem::take(self.body_mut());
        *self.body_mut() = body::wrap_tonic(body, classifier, recorder);
    }
}

#[cfg(feature = "grpc")]
#[cfg_attr(docsrs, doc(cfg(feature = "grpc")))]
pub use super::grpc::GrpcEosClassifier;

/// The end-of-stream stage of [`SlowCallFailure`](super::SlowCallFailure).
pub(super) struct SlowEos {
    pub(super) inner: Box<dyn ClassifyEos>,
    pub(super) threshold: Duration,
}

impl ClassifyEos for SlowEos {
    fn classify_eos(&self, end: &EndOfStream<'_>) -> Classification {
        self.inner.classify_eos(end)
    }

    fn classify_eos_timed(&self, end: &EndOfStream<'_>, elapsed: Duration) -> Classification {
        let verdict = self.inner.classify_eos_timed(end, elapsed);
        if elapsed > self.threshold && verdict.is_success() {
            verdict.with_outcome(super::Outcome::Failure)
        } else {
            verdict
        }
    }
}
