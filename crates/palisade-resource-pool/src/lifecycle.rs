//! [`Lifecycle`]: how a pool makes, checks and throws away its resources, and
//! [`lifecycle_fn`], a lifecycle from closures.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use palisade_core::BoxError;

use crate::error::RecycleRefused;

/// How a [`ResourcePool`](crate::ResourcePool) makes, checks and throws away its resources.
///
/// Only `create` is required. `recycle` runs before an idle resource is lent again: return
/// an error to have it destroyed. `destroy` runs once for every resource the pool throws
/// away (broken, idle too long, discarded, pool closed); see the [crate docs](crate).
pub trait Lifecycle: Send + Sync + 'static {
    /// The pooled resource.
    type Resource: Send + 'static;
    /// Why creating or recycling failed.
    type Error: Into<BoxError> + Send + 'static;

    /// Makes a new resource.
    fn create(&self) -> impl Future<Output = Result<Self::Resource, Self::Error>> + Send;

    /// Checks (and resets) an idle resource before it is lent again.
    fn recycle(&self, resource: &mut Self::Resource) -> impl Future<Output = Result<(), Self::Error>> + Send {
        let _ = resource;
        std::future::ready(Ok(()))
    }

    /// Tears a resource down.
    fn destroy(&self, resource: Self::Resource) -> impl Future<Output = ()> + Send {
        drop(resource);
        std::future::ready(())
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
type CreateFn<R> = Box<dyn Fn() -> BoxFuture<Result<R, BoxError>> + Send + Sync>;
type CheckFn<R> = Box<dyn Fn(&mut R) -> bool + Send + Sync>;
type DestroyFn<R> = Box<dyn Fn(R) -> BoxFuture<()> + Send + Sync>;

/// A [`Lifecycle`] from closures: an async `create`, an optional synchronous health check
/// and an optional async `destroy`. Built by [`lifecycle_fn`].
///
/// The closures are erased when they are given (boxed into functions returning boxed
/// futures, one allocation per `create` and per `destroy`), so the type names only the
/// resource: a `ResourcePool<LifecycleFn<Conn>>` can be stored in a struct, and futures awaiting the
/// pool can be spawned even when `create` returns [`BoxError`] (a closure type carrying
/// `E: Into<BoxError>` in the pool's type would hit rustc's "implementation of `From` is
/// not general enough", rust-lang/rust#64552, inside `tokio::spawn` or an axum handler).
///
/// ```
/// use palisade_core::BoxError;
/// use palisade_resource_pool::{lifecycle_fn, LifecycleFn, ResourcePool};
///
/// struct AppState {
///     db: ResourcePool<LifecycleFn<u32>>, // nameable
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let state = AppState {
///     db: ResourcePool::builder(lifecycle_fn(|| async { Ok::<_, BoxError>(7u32) })).build().unwrap(),
/// };
/// let db = state.db.clone();
/// let n = tokio::spawn(async move { db.execute(async |c: &mut u32| *c).await.unwrap() });
/// assert_eq!(n.await.unwrap(), 7);
/// # }
/// ```
pub struct LifecycleFn<R> {
    create: CreateFn<R>,
    check: Option<CheckFn<R>>,
    destroy: Option<DestroyFn<R>>,
}

impl<R> fmt::Debug for LifecycleFn<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LifecycleFn")
            .field("recycle_if", &self.check.is_some())
            .field("on_destroy", &self.destroy.is_some())
            .finish_non_exhaustive()
    }
}

/// A [`Lifecycle`] whose `create` is the closure `create` (returning a future of
/// `Result<R, E>`); add a health check with [`LifecycleFn::recycle_if`] and a teardown with
/// [`LifecycleFn::on_destroy`].
pub fn lifecycle_fn<Create, Fut, R, E>(create: Create) -> LifecycleFn<R>
where
    Create: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<R, E>> + Send + 'static,
    R: Send + 'static,
    E: Into<BoxError> + 'static,
{
    LifecycleFn {
        create: Box::new(move || {
            let fut = create();
            Box::pin(async move { fut.await.map_err(Into::into) })
        }),
        check: None,
        destroy: None,
    }
}

impl<R> LifecycleFn<R> {
    /// Lends an idle resource again only if `check` returns `true`; otherwise it is
    /// destroyed.
    pub fn recycle_if<F>(mut self, check: F) -> Self
    where
        F: Fn(&mut R) -> bool + Send + Sync + 'static,
    {
        self.check = Some(Box::new(check));
        self
    }

    /// Runs `destroy` on every resource the pool throws away.
    pub fn on_destroy<F, Fut>(mut self, destroy: F) -> Self
    where
        F: Fn(R) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.destroy = Some(Box::new(move |resource| Box::pin(destroy(resource))));
        self
    }
}

impl<R: Send + 'static> Lifecycle for LifecycleFn<R> {
    type Resource = R;
    type Error = BoxError;

    fn create(&self) -> impl Future<Output = Result<R, BoxError>> + Send {
        (self.create)()
    }

    fn recycle(&self, resource: &mut R) -> impl Future<Output = Result<(), BoxError>> + Send {
        let ok = self.check.as_ref().is_none_or(|check| check(resource));
        std::future::ready(if ok { Ok(()) } else { Err(RecycleRefused.into()) })
    }

    fn destroy(&self, resource: R) -> impl Future<Output = ()> + Send {
        let fut = self.destroy.as_ref().map(|destroy| destroy(resource));
        async move {
            if let Some(fut) = fut {
                fut.await;
            }
        }
    }
}
