//! Turning palisade rejections into HTTP and gRPC responses.
//!
//! [`HttpRejectionLayer`] wraps any service answering `http::Response<B>` whose error
//! converts into `BoxError`, and answers instead of failing, so an axum `Router` needs no
//! `HandleErrorLayer`:
//!
//! | rejection | HTTP |
//! |---|---|
//! | `RateLimited`, `Throttled` | 429 Too Many Requests + `Retry-After` |
//! | `CircuitOpen`, `BulkheadFull`, `Overloaded`, `BudgetExhausted`, `Closed` | 503 Service Unavailable (+ `Retry-After` when known) |
//! | `TimedOut` | 504 Gateway Timeout |
//! | `CostExceedsCapacity` | 413 Content Too Large (the request can never fit the limit: no `Retry-After`) |
//! | `KeyMissing` | 500 Internal Server Error (a keyed layer found no key: a deployment mistake) |
//! | any other error | 500 Internal Server Error, with nothing of the error in the response (it is logged through `tracing`) |
//!
//! `Retry-After` is whole seconds, rounded up. A rejection raised from `poll_ready` (a
//! bulkhead or rate limit waiting) is answered the same way on the next `call`.
//!
//! [`GrpcRejectionLayer`] (feature `grpc`) does the same for gRPC, answering trailers-only
//! responses (HTTP 200, `content-type: application/grpc`, `grpc-status`, `grpc-message`):
//! circuit open / closed → UNAVAILABLE; rate limited, bulkhead full, overloaded, throttled,
//! budget exhausted, cost exceeds capacity → RESOURCE_EXHAUSTED; timed out →
//! DEADLINE_EXCEEDED; key missing and other errors → INTERNAL. Known retry delays travel as
//! `grpc-retry-pushback-ms`. It works on a tonic server (`Server::builder().layer(..)`) and
//! around a client `Channel`, where tonic turns the answer into a `tonic::Status`.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use palisade_core::rejection::RateLimited;
//! use palisade_core::respond::HttpRejectionLayer;
//! use palisade_core::BoxError;
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//!
//! # tokio_test::block_on(async {
//! let svc = ServiceBuilder::new().layer(HttpRejectionLayer::new()).service(service_fn(
//!     |_req: http::Request<()>| async {
//!         Err::<http::Response<String>, BoxError>(RateLimited::new("api", Duration::from_millis(1500)).into())
//!     },
//! ));
//! let res = svc.oneshot(http::Request::new(())).await.unwrap();
//! assert_eq!(res.status(), 429);
//! assert_eq!(res.headers()["retry-after"], "2");
//! # });
//! ```

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use http::{header, HeaderValue, Response, StatusCode};
use tower_layer::Layer;
use tower_service::Service;

use crate::rejection::{find_rejection, RejectionKind};
use crate::BoxError;

/// How rejections become responses: one implementation per protocol.
pub trait RejectionMapping: Clone + Send + Sync + 'static {
    /// The response for `err`.
    fn response<B: Default>(&self, err: &BoxError) -> Response<B>;
}

/// The HTTP mapping (see the [module docs](self)).
#[derive(Clone, Copy, Debug, Default)]
pub struct HttpMapping;

/// The status and `Retry-After` for an error, as [`HttpRejectionLayer`] answers it.
pub fn http_response_for<B: Default>(err: &BoxError) -> Response<B> {
    let Some(rejection) = find_rejection(err.as_ref()) else {
        tracing::error!(target: "palisade", error = %err, "unhandled error answered with 500");
        return status_only(StatusCode::INTERNAL_SERVER_ERROR);
    };
    let status = match rejection.kind() {
        RejectionKind::RateLimited | RejectionKind::Throttled => StatusCode::TOO_MANY_REQUESTS,
        RejectionKind::TimedOut => StatusCode::GATEWAY_TIMEOUT,
        RejectionKind::CostExceedsCapacity => StatusCode::PAYLOAD_TOO_LARGE,
        RejectionKind::KeyMissing => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    let mut res = status_only(status);
    if let Some(after) = rejection.retry_after() {
        res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(ceil_secs(after)));
    }
    res
}

impl RejectionMapping for HttpMapping {
    fn response<B: Default>(&self, err: &BoxError) -> Response<B> {
        http_response_for(err)
    }
}

fn status_only<B: Default>(status: StatusCode) -> Response<B> {
    let mut res = Response::new(B::default());
    *res.status_mut() = status;
    res
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs().saturating_add(u64::from(d.subsec_nanos() > 0))
}

/// The gRPC mapping (see the [module docs](self)).
#[cfg(feature = "grpc")]
#[cfg_attr(docsrs, doc(cfg(feature = "grpc")))]
#[derive(Clone, Copy, Debug, Default)]
pub struct GrpcMapping;

/// The `tonic::Status` for an error, as [`GrpcRejectionLayer`] answers it (with
/// `grpc-retry-pushback-ms` in its metadata when a retry delay is known). A `Status` already
/// in the error's source chain is returned as is.
#[cfg(feature = "grpc")]
#[cfg_attr(docsrs, doc(cfg(feature = "grpc")))]
pub fn grpc_status_for(err: &BoxError) -> tonic::Status {
    use tonic::Code;
    if let Some(status) = crate::rejection::find::<tonic::Status>(err.as_ref()) {
        return status.clone();
    }
    let Some(rejection) = find_rejection(err.as_ref()) else {
        tracing::error!(target: "palisade", error = %err, "unhandled error answered with INTERNAL");
        return tonic::Status::internal("internal error");
    };
    let code = match rejection.kind() {
        RejectionKind::CircuitOpen | RejectionKind::Closed => Code::Unavailable,
        RejectionKind::TimedOut => Code::DeadlineExceeded,
        RejectionKind::KeyMissing => Code::Internal,
        _ => Code::ResourceExhausted,
    };
    let mut status = tonic::Status::new(code, rejection.to_string());
    if let Some(after) = rejection.retry_after() {
        let ms = u64::try_from(after.as_millis()).unwrap_or(u64::MAX);
        if let Ok(v) = ms.to_string().parse() {
            status.metadata_mut().insert("grpc-retry-pushback-ms", v);
        }
    }
    status
}

#[cfg(feature = "grpc")]
impl RejectionMapping for GrpcMapping {
    fn response<B: Default>(&self, err: &BoxError) -> Response<B> {
        // `into_http` writes grpc-status, grpc-message, the metadata and the content type.
        grpc_status_for(err).into_http()
    }
}

/// Answers palisade rejections (and other errors) with HTTP responses; see the
/// [module docs](self).
pub type HttpRejectionLayer = RejectionLayer<HttpMapping>;

/// Answers palisade rejections (and other errors) with gRPC trailers-only responses; see the
/// [module docs](self).
#[cfg(feature = "grpc")]
#[cfg_attr(docsrs, doc(cfg(feature = "grpc")))]
pub type GrpcRejectionLayer = RejectionLayer<GrpcMapping>;

/// A layer that answers errors with responses by a [`RejectionMapping`].
#[derive(Clone, Copy, Debug, Default)]
pub struct RejectionLayer<M> {
    mapping: M,
}

impl<M: Default> RejectionLayer<M> {
    /// The layer.
    pub fn new() -> Self {
        Self { mapping: M::default() }
    }
}

impl<S, M: Clone> Layer<S> for RejectionLayer<M> {
    type Service = MapRejection<S, M>;

    fn layer(&self, inner: S) -> Self::Service {
        MapRejection { inner, mapping: self.mapping.clone(), pending: None }
    }
}

/// The service made by [`RejectionLayer`]: never fails, answers errors with responses.
pub struct MapRejection<S, M> {
    inner: S,
    mapping: M,
    /// An error from `poll_ready`, answered by the next `call`.
    pending: Option<BoxError>,
}

impl<S: fmt::Debug, M: fmt::Debug> fmt::Debug for MapRejection<S, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MapRejection")
            .field("inner", &self.inner)
            .field("mapping", &self.mapping)
            .field("pending", &self.pending)
            .finish()
    }
}

impl<S: Clone, M: Clone> Clone for MapRejection<S, M> {
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone(), mapping: self.mapping.clone(), pending: None }
    }
}

impl<S, M> MapRejection<S, M> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consumes `self`, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, M, Req, B> Service<Req> for MapRejection<S, M>
where
    S: Service<Req, Response = Response<B>>,
    S::Error: Into<BoxError>,
    M: RejectionMapping,
    B: Default,
{
    type Response = Response<B>;
    type Error = Infallible;
    type Future = MapRejectionFuture<S::Future, M, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.pending.is_none() {
            if let Err(e) = ready!(self.inner.poll_ready(cx)) {
                self.pending = Some(e.into());
            }
        }
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Req) -> Self::Future {
        if let Some(err) = self.pending.take() {
            return MapRejectionFuture::ready(self.mapping.response(&err));
        }
        MapRejectionFuture::inner(self.inner.call(req), self.mapping.clone())
    }
}

pin_project_lite::pin_project! {
    /// Response future of [`MapRejection`].
    pub struct MapRejectionFuture<F, M, B> {
        #[pin]
        state: State<F, M, B>,
    }
}

pin_project_lite::pin_project! {
    #[project = StateProj]
    enum State<F, M, B> {
        Inner { #[pin] fut: F, mapping: M },
        Ready { res: Option<Response<B>> },
    }
}

impl<F, M, B> fmt::Debug for MapRejectionFuture<F, M, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MapRejectionFuture").finish_non_exhaustive()
    }
}

impl<F, M, B> MapRejectionFuture<F, M, B> {
    fn inner(fut: F, mapping: M) -> Self {
        Self { state: State::Inner { fut, mapping } }
    }

    fn ready(res: Response<B>) -> Self {
        Self { state: State::Ready { res: Some(res) } }
    }
}

impl<F, M, B, E> Future for MapRejectionFuture<F, M, B>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
    M: RejectionMapping,
    B: Default,
{
    type Output = Result<Response<B>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Inner { fut, mapping } => Poll::Ready(Ok(match ready!(fut.poll(cx)) {
                Ok(res) => res,
                Err(e) => mapping.response(&e.into()),
            })),
            StateProj::Ready { res } => {
                Poll::Ready(Ok(res.take().unwrap_or_else(|| status_only(StatusCode::INTERNAL_SERVER_ERROR))))
            }
        }
    }
}
