//! Merging several result streams into one: [`round_robin`] or [`as_ready`].
//!
//! # Example
//!
//! ```
//! use futures_util::{stream, StreamExt};
//! use palisade_pipeline::merge;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let a = stream::iter(vec![1, 3, 5]);
//! let b = stream::iter(vec![2, 4]);
//! let merged: Vec<_> = merge::round_robin([a, b]).collect().await;
//! assert_eq!(merged, [1, 2, 3, 4, 5]);
//! # }
//! ```

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::{FusedStream, Stream};
use futures_util::stream::{select_all, SelectAll};

/// Takes one item from each stream in turn (skipping the ones that ended), waiting for the
/// stream whose turn it is. Streams that are not `Unpin` go in `Box::pin`.
pub fn round_robin<St>(streams: impl IntoIterator<Item = St>) -> RoundRobin<St>
where
    St: Stream + Unpin,
{
    RoundRobin { streams: streams.into_iter().map(Some).collect(), next: 0 }
}

/// Yields items from every stream as soon as they are ready (fairly polled).
pub fn as_ready<St>(streams: impl IntoIterator<Item = St>) -> AsReady<St>
where
    St: Stream + Unpin,
{
    AsReady { inner: select_all(streams) }
}

/// The stream returned by [`round_robin`].
pub struct RoundRobin<St> {
    streams: Vec<Option<St>>,
    next: usize,
}

impl<St> fmt::Debug for RoundRobin<St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RoundRobin")
            .field("live", &self.streams.iter().filter(|s| s.is_some()).count())
            .field("next", &self.next)
            .finish()
    }
}

impl<St: Stream + Unpin> Stream for RoundRobin<St> {
    type Item = St::Item;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<St::Item>> {
        let this = self.get_mut();
        let n = this.streams.len();
        for _ in 0..n {
            let i = this.next % n;
            let Some(slot) = this.streams.get_mut(i) else { break };
            let Some(stream) = slot.as_mut() else {
                this.next = i + 1;
                continue;
            };
            match Pin::new(stream).poll_next(cx) {
                Poll::Ready(Some(item)) => {
                    this.next = i + 1;
                    return Poll::Ready(Some(item));
                }
                Poll::Ready(None) => {
                    *slot = None;
                    this.next = i + 1;
                }
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(None)
    }
}

impl<St: Stream + Unpin> FusedStream for RoundRobin<St> {
    fn is_terminated(&self) -> bool {
        self.streams.iter().all(Option::is_none)
    }
}

/// The stream returned by [`as_ready`].
pub struct AsReady<St> {
    inner: SelectAll<St>,
}

impl<St: Stream + Unpin> fmt::Debug for AsReady<St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsReady").field("live", &self.inner.len()).finish()
    }
}

impl<St: Stream + Unpin> Stream for AsReady<St> {
    type Item = St::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<St::Item>> {
        Pin::new(&mut self.inner).poll_next(cx)
    }
}
