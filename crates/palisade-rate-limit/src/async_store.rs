//! An asynchronous storage seam for keyed limits whose state lives elsewhere (Redis, a
//! database): [`AsyncKeyedStore`], and [`AsyncRateLimitLayer`], the layer that asks it.
//!
//! [`KeyedStore`](crate::store::KeyedStore) is synchronous so that the in-memory path stays a
//! few atomic operations; a network store cannot answer synchronously without blocking a
//! runtime thread. This second seam is separate and additive: [`RateLimitLayer`](crate::RateLimitLayer)
//! and its in-memory stores are unchanged (and exactly as fast), and a network store plugs
//! into [`AsyncRateLimitLayer`] instead.
//!
//! # Tower contract
//!
//! Nothing is reserved in `poll_ready` (which only readies the inner service): admission runs
//! in the response future, before the inner service is called (the ready inner service is
//! moved into the future, tower's clone-and-swap, so `S: Clone`). A refused call ends with
//! [`RateLimited`]; a request the key function gives no key for (`None`) with
//! [`KeyMissing`] (this layer has no other `when_unkeyed` policy: a shared state would be a
//! key of the store's own, which the key function can return). A store must give back an admission whose response future was dropped
//! before the inner call started (see [`AsyncKeyedStore::admit`]).
//!
//! # Example
//!
//! ```
//! use std::future::Future;
//! use std::pin::Pin;
//! use std::sync::atomic::{AtomicU32, Ordering};
//! use std::time::Duration;
//! use palisade_rate_limit::async_store::{Admission, AsyncKeyedStore, AsyncRateLimitLayer};
//! use tower::{service_fn, Layer, ServiceExt};
//!
//! /// Admits the first `n` calls of every key (a stand-in for a network store).
//! struct FirstN(AtomicU32);
//! impl AsyncKeyedStore<String> for FirstN {
//!     fn admit(&self, _key: &String, cost: u32) -> Pin<Box<dyn Future<Output = Admission> + Send>> {
//!         let ok = self.0.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(cost)).is_ok();
//!         Box::pin(std::future::ready(if ok { Admission::Admitted } else { Admission::Limited(Duration::from_secs(1)) }))
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let layer = AsyncRateLimitLayer::new("api", FirstN(AtomicU32::new(1)), |req: &String| Some(req.clone()));
//! let svc = layer.layer(service_fn(|req: String| async move { Ok::<_, std::io::Error>(req) }));
//! assert!(svc.clone().oneshot("alice".to_owned()).await.is_ok());
//! assert!(svc.oneshot("alice".to_owned()).await.is_err());
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use palisade_core::rejection::{CostExceedsCapacity, KeyMissing, RateLimited};
use tower_layer::Layer;
use tower_service::Service;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A store's answer to one admission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Admission {
    /// The call may go.
    Admitted,
    /// Refused; the same call may pass after this long.
    Limited(Duration),
    /// Refused for ever: the cost is above the limit's capacity.
    CostExceedsCapacity {
        /// The capacity the cost exceeds.
        capacity: u32,
    },
}

/// Where an [`AsyncRateLimitLayer`] keeps its state. See the [module docs](self).
pub trait AsyncKeyedStore<K>: Send + Sync + 'static {
    /// Admits `cost` for `key`. When the returned future is dropped before it completes, the
    /// store must not keep an admission it made for it (give it back once it is known).
    fn admit(&self, key: &K, cost: u32) -> Pin<Box<dyn Future<Output = Admission> + Send>>;
}

impl<K, T: AsyncKeyedStore<K> + ?Sized> AsyncKeyedStore<K> for Arc<T> {
    fn admit(&self, key: &K, cost: u32) -> Pin<Box<dyn Future<Output = Admission> + Send>> {
        (**self).admit(key, cost)
    }
}

struct Shared<Store, F> {
    name: Arc<str>,
    store: Store,
    key_fn: F,
}

/// A keyed rate limit over an [`AsyncKeyedStore`]; every request costs 1.
pub struct AsyncRateLimitLayer<Store, F> {
    shared: Arc<Shared<Store, F>>,
}

impl<Store, F> Clone for AsyncRateLimitLayer<Store, F> {
    fn clone(&self) -> Self {
        Self { shared: self.shared.clone() }
    }
}

impl<Store, F> fmt::Debug for AsyncRateLimitLayer<Store, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncRateLimitLayer").field("name", &self.shared.name).finish_non_exhaustive()
    }
}

impl<Store, F> AsyncRateLimitLayer<Store, F> {
    /// A layer named `name` (the name of its [`RateLimited`] rejections) asking `store` for
    /// the key `key_fn` extracts from each request (`None`: refused with [`KeyMissing`]).
    pub fn new(name: impl Into<Arc<str>>, store: Store, key_fn: F) -> Self {
        Self { shared: Arc::new(Shared { name: name.into(), store, key_fn }) }
    }
}

impl<S, Store, F> Layer<S> for AsyncRateLimitLayer<Store, F> {
    type Service = AsyncRateLimit<S, Store, F>;
    fn layer(&self, inner: S) -> Self::Service {
        AsyncRateLimit { inner, shared: self.shared.clone() }
    }
}

/// The service built by [`AsyncRateLimitLayer`].
pub struct AsyncRateLimit<S, Store, F> {
    inner: S,
    shared: Arc<Shared<Store, F>>,
}

impl<S: Clone, Store, F> Clone for AsyncRateLimit<S, Store, F> {
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone(), shared: self.shared.clone() }
    }
}

impl<S, Store, F> fmt::Debug for AsyncRateLimit<S, Store, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncRateLimit").field("name", &self.shared.name).finish_non_exhaustive()
    }
}

impl<S, Store, F, K, Req> Service<Req> for AsyncRateLimit<S, Store, F>
where
    S: Service<Req> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    Store: AsyncKeyedStore<K>,
    F: Fn(&Req) -> Option<K> + Send + Sync + 'static,
    Req: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let Some(key) = (self.shared.key_fn)(&req) else {
            let missing = KeyMissing::new(self.shared.name.clone());
            return Box::pin(async move { Err(missing.into()) });
        };
        let admission = self.shared.store.admit(&key, 1);
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let name = self.shared.name.clone();
        Box::pin(async move {
            match admission.await {
                Admission::Admitted => inner.call(req).await.map_err(Into::into),
                Admission::Limited(retry_after) => Err(RateLimited::new(name, retry_after).into()),
                Admission::CostExceedsCapacity { capacity } => {
                    Err(CostExceedsCapacity::new(name.clone(), name, 1, capacity).into())
                }
            }
        })
    }
}
