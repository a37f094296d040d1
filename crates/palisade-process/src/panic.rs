//! Panics of user code (codecs, handlers, listeners) caught where palisade runs it on its own
//! tasks, so that one bad call fails alone and the machinery goes on.

use std::any::Any;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll};

/// The text of a panic payload (`panic!("...")` gives a `&str` or a `String`).
pub(crate) fn message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

/// Runs `f`, turning a panic into `Err(message)`.
pub(crate) fn catch<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|payload| message(&*payload))
}

/// An event listener that cannot unwind into the code publishing the event: a panic is
/// logged (target `palisade`) and the event is dropped for that listener only.
pub(crate) fn guard_listener<E: 'static>(
    listener: impl Fn(&E) + Send + Sync + 'static,
) -> impl Fn(&E) + Send + Sync + 'static {
    move |event: &E| {
        if let Err(message) = catch(|| listener(event)) {
            tracing::warn!(target: "palisade", %message, "an event listener panicked");
        }
    }
}

pin_project_lite::pin_project! {
    /// A future whose panics, at any poll, come out as `Err(message)`.
    pub(crate) struct CatchUnwind<F> {
        #[pin]
        inner: F,
    }
}

impl<F> CatchUnwind<F> {
    pub(crate) fn new(inner: F) -> Self {
        Self { inner }
    }
}

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, String>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.project().inner;
        match catch(|| inner.poll(cx)) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(out)) => Poll::Ready(Ok(out)),
            Err(message) => Poll::Ready(Err(message)),
        }
    }
}
