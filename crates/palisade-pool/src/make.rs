//! [`make_fn`]: a `MakeService` from a closure, to make a pool's members.

use std::fmt;
use std::future::Future;
use std::task::{Context, Poll};

use tower_service::Service;

/// A [`Service<()>`](tower_service::Service) that makes members by calling a closure; see
/// [`make_fn`].
#[derive(Clone)]
pub struct MakeFn<F> {
    f: F,
}

impl<F> fmt::Debug for MakeFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MakeFn").finish_non_exhaustive()
    }
}

/// Makes pool members with `f`, a closure returning a future of `Result<S, E>`.
///
/// ```
/// use palisade_pool::make_fn;
/// let make = make_fn(|| async { Ok::<_, std::io::Error>(tower::service_fn(|x: u32| async move { Ok::<_, std::io::Error>(x + 1) })) });
/// # let _ = make;
/// ```
pub fn make_fn<F, Fut, S, E>(f: F) -> MakeFn<F>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<S, E>>,
{
    MakeFn { f }
}

impl<F, Fut, S, E> Service<()> for MakeFn<F>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<S, E>>,
{
    type Response = S;
    type Error = E;
    type Future = Fut;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), E>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, (): ()) -> Fut {
        (self.f)()
    }
}
