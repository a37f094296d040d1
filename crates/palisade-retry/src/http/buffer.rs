//! `BufferBodyLayer`: reads request bodies ahead so that they can be replayed.

use std::fmt;
use std::future::Future;
use std::mem;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use http::request::Parts;
use http::{HeaderMap, Request};
use http_body::Body;
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::ReplayBody;

/// Reads request bodies ahead up to `max_bytes` so that they can be replayed; see the
/// [module docs](super).
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
                        Some(Err(error)) => ReplayBody::failed(error),
                    };
                    service.call(Request::from_parts(parts, body))
                }
            };
            this.state.set(BufferState::Calling { future: next });
        }
    }
}
