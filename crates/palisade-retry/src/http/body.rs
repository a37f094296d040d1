//! `ReplayBody`: a request body read ahead, in memory (replayable) or streaming.

use std::fmt;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};

/// A request body that was read ahead by [`BufferBodyLayer`](super::BufferBodyLayer): either held in memory
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

    /// A body whose reading ahead failed: it yields `error` once.
    pub(crate) fn failed(error: B::Error) -> Self {
        Self { kind: Kind::Failed { error: Some(error) } }
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
