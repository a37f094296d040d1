//! Replaying `http::Request` bodies (feature `http`).
//!
//! A request whose body type is `Clone` (`String`, `Bytes`, `http_body_util::Full<Bytes>`)
//! is replayed by the default [`CloneRequest`](crate::replay::CloneRequest). A streaming
//! body (hyper's `Incoming`, axum's `Body`, tonic's `Body`) cannot be cloned; for those:
//!
//! 1. [`BufferBodyLayer`] reads the body ahead, up to `max_bytes`, before the request goes
//!    on, and hands the inner service an `http::Request<ReplayBody<B>>`. A body that ends
//!    within the limit is kept in memory ([`ReplayBody::is_replayable`]); a longer one is
//!    passed on as it comes (the part read ahead first) and is never replayed.
//! 2. [`HttpReplay`], given to the retry or hedge layer with `.replay(HttpReplay)`, copies
//!    buffered requests (method, URI, version, headers, extensions and the same body bytes)
//!    and gives up on the others, which are then sent exactly once.
//!
//! Reading ahead delays the first attempt until the body is read (or the limit reached);
//! memory per request is bounded by `max_bytes` plus one frame.
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), palisade_core::BoxError> {
//! use bytes::Bytes;
//! use http_body_util::{BodyExt, Full};
//! use palisade_core::classify::HttpClassifier;
//! use palisade_retry::http::{BufferBodyLayer, HttpReplay, ReplayBody};
//! use palisade_retry::{Backoff, Jitter, RetryLayer};
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//!
//! let retry = RetryLayer::builder()
//!     .classifier(HttpClassifier::new())
//!     .replay(HttpReplay)
//!     .backoff(Backoff::fixed(std::time::Duration::from_millis(1)))
//!     .jitter(Jitter::None)
//!     .build()?;
//! let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
//! let log = seen.clone();
//! let client = ServiceBuilder::new()
//!     .layer(BufferBodyLayer::new(64 * 1024))
//!     .layer(retry)
//!     .service(service_fn(move |req: http::Request<ReplayBody<Full<Bytes>>>| {
//!         let log = log.clone();
//!         async move {
//!             let body = req.into_body().collect().await?.to_bytes();
//!             let mut log = log.lock().unwrap();
//!             log.push(body);
//!             let status = if log.len() == 1 { 503 } else { 200 };
//!             Ok::<_, palisade_core::BoxError>(http::Response::builder().status(status).body(())?)
//!         }
//!     }));
//! let req = http::Request::post("http://backend/orders").body(Full::new(Bytes::from("order #1")))?;
//! assert_eq!(client.oneshot(req).await?.status(), 200);
//! assert_eq!(*seen.lock().unwrap(), ["order #1", "order #1"]);
//! # Ok(()) }
//! ```

use std::fmt;
use std::future::Future;
use std::mem;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use http::request::Parts;
use http::{HeaderMap, Request};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::replay::Replay;

/// A request body that was read ahead by [`BufferBodyLayer`]: either held in memory
/// (replayable) or streaming.
pub struct ReplayBody<B: Body> {
    kind: Kind<B>,
}

enum Kind<B: Body> {
    Buffered { data: Bytes, trailers: Option<HeaderMap>, data_sent: bool, trailers_sent: bool },
    Streaming { prefix: Option<Bytes>, rest: B },
    Failed { error: Option<B::Error> },
}

// Nothing inside is ever pinned: the inner body is polled through `Pin::new` (it is `Unpin`).
impl<B: Body + Unpin> Unpin for ReplayBody<B> {}

impl<B: Body> fmt::Debug for ReplayBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Buffered { data, .. } => {
                f.debug_struct("ReplayBody::Buffered").field("len", &data.len()).finish()
            }
            Kind::Streaming { .. } => f.write_str("ReplayBody::Streaming"),
            Kind::Failed { .. } => f.write_str("ReplayBody::Failed"),
        }
    }
}

impl<B: Body> ReplayBody<B> {
    /// A body held in memory.
    pub fn buffered(data: Bytes, trailers: Option<HeaderMap>) -> Self {
        Self { kind: Kind::Buffered { data, trailers, data_sent: false, trailers_sent: false } }
    }

    /// A body passed on as it comes, after `prefix` (what was read ahead); not replayable.
    pub fn streaming(prefix: Bytes, rest: B) -> Self {
        let prefix = if prefix.is_empty() { None } else { Some(prefix) };
        Self { kind: Kind::Streaming { prefix, rest } }
    }

    /// Whether the body is held in memory and can be sent again.
    pub fn is_replayable(&self) -> bool {
        matches!(self.kind, Kind::Buffered { .. })
    }

    /// A fresh copy of a buffered body; `None` for a streaming one.
    pub fn try_clone(&self) -> Option<Self> {
        match &self.kind {
            Kind::Buffered { data, trailers, .. } => Some(Self::buffered(data.clone(), trailers.clone())),
            _ => None,
        }
    }
}

impl<B> Body for ReplayBody<B>
where
    B: Body + Unpin,
    B::Data: Buf,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match &mut self.get_mut().kind {
            Kind::Buffered { data, trailers, data_sent, trailers_sent } => {
                if !*data_sent {
                    *data_sent = true;
                    if !data.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(data.clone()))));
                    }
                }
                if !*trailers_sent {
                    *trailers_sent = true;
                    if let Some(t) = trailers.clone() {
                        return Poll::Ready(Some(Ok(Frame::trailers(t))));
                    }
                }
                Poll::Ready(None)
            }
            Kind::Streaming { prefix, rest } => {
                if let Some(p) = prefix.take() {
                    return Poll::Ready(Some(Ok(Frame::data(p))));
                }
                Poll::Ready(
                    ready!(Pin::new(rest).poll_frame(cx))
                        .map(|res| res.map(|frame| frame.map_data(|mut d| d.copy_to_bytes(d.remaining())))),
                )
            }
            Kind::Failed { error } => Poll::Ready(error.take().map(Err)),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Buffered { data, trailers, data_sent, trailers_sent } => {
                (*data_sent || data.is_empty()) && (*trailers_sent || trailers.is_none())
            }
            Kind::Streaming { prefix, rest } => prefix.is_none() && rest.is_end_stream(),
            Kind::Failed { error } => error.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Buffered { data, data_sent, .. } => {
                SizeHint::with_exact(if *data_sent { 0 } else { data.len() as u64 })
            }
            Kind::Streaming { prefix, rest } => {
                let extra = prefix.as_ref().map_or(0, |p| p.len() as u64);
                let inner = rest.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(inner.lower() + extra);
                if let Some(upper) = inner.upper() {
                    hint.set_upper(upper + extra);
                }
                hint
            }
            Kind::Failed { .. } => SizeHint::default(),
        }
    }
}

/// Replays `http::Request<ReplayBody<B>>` whose body is buffered; gives up on streaming
/// ones. See the [module docs](self).
#[derive(Clone, Copy, Debug, Default)]
pub struct HttpReplay;

impl<B: Body> Replay<Request<ReplayBody<B>>> for HttpReplay {
    fn replay(&self, req: &Request<ReplayBody<B>>) -> Option<Request<ReplayBody<B>>> {
        let body = req.body().try_clone()?;
        let mut copy = Request::new(body);
        *copy.method_mut() = req.method().clone();
        *copy.uri_mut() = req.uri().clone();
        *copy.version_mut() = req.version();
        *copy.headers_mut() = req.headers().clone();
        *copy.extensions_mut() = req.extensions().clone();
        Some(copy)
    }
}

/// Reads request bodies ahead up to `max_bytes` so that they can be replayed; see the
/// [module docs](self).
#[derive(Clone, Copy, Debug)]
pub struct BufferBodyLayer {
    max_bytes: usize,
}

impl BufferBodyLayer {
    /// Bodies of at most `max_bytes` are kept in memory and may be retried.
    pub const fn new(max_bytes: usize) -> Self {
        Self { max_bytes }
    }
}

impl<S> Layer<S> for BufferBodyLayer {
    type Service = BufferBody<S>;

    fn layer(&self, inner: S) -> Self::Service {
        BufferBody { inner, max_bytes: self.max_bytes }
    }
}

/// The service made by [`BufferBodyLayer`].
///
/// # Clone
///
/// Holds no shared state. Because the inner call happens after the body is read, `call`
/// takes the service that was polled ready and leaves a fresh clone in its place (the inner
/// service must be `Clone`).
#[derive(Clone, Debug)]
pub struct BufferBody<S> {
    inner: S,
    max_bytes: usize,
}

impl<S> BufferBody<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, consuming this one.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B> Service<Request<B>> for BufferBody<S>
where
    S: Service<Request<ReplayBody<B>>> + Clone,
    B: Body + Unpin,
    B::Data: Buf,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BufferBodyFuture<S, B>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let (parts, body) = req.into_parts();
        let too_big = body.size_hint().lower() > self.max_bytes as u64;
        if body.is_end_stream() || too_big {
            let body = if too_big {
                ReplayBody::streaming(Bytes::new(), body)
            } else {
                ReplayBody::buffered(Bytes::new(), None)
            };
            return BufferBodyFuture {
                state: BufferState::Calling { future: self.inner.call(Request::from_parts(parts, body)) },
            };
        }
        // The polled service is used once the body is read; a clone takes its place.
        let fresh = self.inner.clone();
        let service = mem::replace(&mut self.inner, fresh);
        BufferBodyFuture {
            state: BufferState::Reading {
                read: Some(Reading { service, parts, body, chunks: Vec::new(), len: 0, trailers: None }),
                max_bytes: self.max_bytes,
            },
        }
    }
}

struct Reading<S, B> {
    service: S,
    parts: Parts,
    body: B,
    chunks: Vec<Bytes>,
    len: usize,
    trailers: Option<HeaderMap>,
}

fn concat(chunks: Vec<Bytes>) -> Bytes {
    match chunks.len() {
        0 => Bytes::new(),
        1 => chunks.into_iter().next().unwrap_or_default(),
        _ => {
            let mut buf = BytesMut::with_capacity(chunks.iter().map(Bytes::len).sum());
            for c in chunks {
                buf.extend_from_slice(&c);
            }
            buf.freeze()
        }
    }
}

pin_project! {
    /// The future of [`BufferBody`]: reads the body ahead, then calls the inner service.
    pub struct BufferBodyFuture<S, B>
    where
        S: Service<Request<ReplayBody<B>>>,
        B: Body,
    {
        #[pin]
        state: BufferState<S, B>,
    }
}

pin_project! {
    #[project = BufferStateProj]
    enum BufferState<S, B>
    where
        S: Service<Request<ReplayBody<B>>>,
        B: Body,
    {
        Reading { read: Option<Reading<S, B>>, max_bytes: usize },
        Calling { #[pin] future: S::Future },
    }
}

impl<S, B> fmt::Debug for BufferBodyFuture<S, B>
where
    S: Service<Request<ReplayBody<B>>>,
    B: Body,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BufferBodyFuture").finish_non_exhaustive()
    }
}

impl<S, B> Future for BufferBodyFuture<S, B>
where
    S: Service<Request<ReplayBody<B>>>,
    B: Body + Unpin,
    B::Data: Buf,
{
    type Output = Result<S::Response, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let next = match this.state.as_mut().project() {
                BufferStateProj::Calling { future } => return future.poll(cx),
                BufferStateProj::Reading { read, max_bytes } => {
                    let Some(r) = read.as_mut() else {
                        return Poll::Pending;
                    };
                    let body = loop {
                        match ready!(Pin::new(&mut r.body).poll_frame(cx)) {
                            None => break None,
                            Some(Err(err)) => break Some(Err(err)),
                            Some(Ok(frame)) => match frame.into_data() {
                                Ok(mut data) => {
                                    let chunk = data.copy_to_bytes(data.remaining());
                                    r.len += chunk.len();
                                    r.chunks.push(chunk);
                                    if r.len > *max_bytes {
                                        break Some(Ok(()));
                                    }
                                }
                                Err(frame) => {
                                    if let Ok(t) = frame.into_trailers() {
                                        r.trailers = Some(t);
                                    }
                                }
                            },
                        }
                    };
                    let Some(Reading { mut service, parts, body: rest, chunks, trailers, .. }) = read.take()
                    else {
                        return Poll::Pending;
                    };
                    let body = match body {
                        None => ReplayBody::buffered(concat(chunks), trailers),
                        Some(Ok(())) => ReplayBody::streaming(concat(chunks), rest),
                        Some(Err(error)) => ReplayBody { kind: Kind::Failed { error: Some(error) } },
                    };
                    service.call(Request::from_parts(parts, body))
                }
            };
            this.state.set(BufferState::Calling { future: next });
        }
    }
}
