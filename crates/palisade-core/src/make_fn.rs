//! [`make_fn`]: a `Service<()>` from a closure returning a future — the `MakeService` a
//! pool or a supervised stage calls to make a fresh inner service, the source a poller
//! polls. Written once for every crate that takes one.
//!
//! ```
//! use palisade_core::make_fn::make_fn;
//! use tower::ServiceExt;
//!
//! # tokio_test::block_on(async {
//! let make = make_fn(|| async { Ok::<_, std::io::Error>(String::from("fresh")) });
//! assert_eq!(make.oneshot(()).await.unwrap(), "fresh");
//! # });
//! ```

use std::fmt;
use std::future::Future;
use std::task::{Context, Poll};

use tower_service::Service;

/// A `Service<()>` that calls `f` for every request; see the [module docs](self).
pub fn make_fn<F, Fut, T, E>(f: F) -> MakeFn<F>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    MakeFn { f }
}

/// The service made by [`make_fn`]: always ready, each call runs the closure's future.
#[derive(Clone, Copy)]
pub struct MakeFn<F> {
    f: F,
}

impl<F> fmt::Debug for MakeFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MakeFn").finish_non_exhaustive()
    }
}

impl<F, Fut, T, E> Service<()> for MakeFn<F>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    type Response = T;
    type Error = E;
    type Future = Fut;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), E>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, (): ()) -> Fut {
        (self.f)()
    }
}
