//! `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset` response headers (feature
//! `http`), in the style of the IETF draft "RateLimit header fields for HTTP"
//! (draft-ietf-httpapi-ratelimit-headers, the versions with three separate fields).
//!
//! [`RateLimitHeadersLayer`] reads one tier's [`Status`] for the request's key
//! after the response is ready and writes: the tier's capacity (`RateLimit-Limit`), what is
//! left (`RateLimit-Remaining`) and the seconds until it is full again, rounded up
//! (`RateLimit-Reset`). Put it outside
//! [`HttpRejectionLayer`](palisade_core::respond::HttpRejectionLayer) so 429 answers carry
//! them too.
//!
//! # Example
//!
//! ```
//! use palisade_core::respond::HttpRejectionLayer;
//! use palisade_rate_limit::headers::RateLimitHeadersLayer;
//! use palisade_rate_limit::{Quota, RateLimitLayer, Tier};
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//!
//! fn api_key(req: &http::Request<()>) -> Option<String> {
//!     Some(req.headers().get("x-api-key").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned())
//! }
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let limit = RateLimitLayer::builder()
//!     .tier(Tier::keyed(Quota::per_minute(2), api_key).name("per_key"))
//!     .build()
//!     .unwrap();
//! let svc = ServiceBuilder::new()
//!     .layer(RateLimitHeadersLayer::new(limit.handle(), "per_key", api_key))
//!     .layer(HttpRejectionLayer::new())
//!     .layer(limit)
//!     .service(service_fn(|_req: http::Request<()>| async {
//!         Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
//!     }));
//!
//! let res = svc.clone().oneshot(http::Request::new(())).await.unwrap();
//! assert_eq!(res.headers()["ratelimit-limit"], "2");
//! assert_eq!(res.headers()["ratelimit-remaining"], "1");
//! assert_eq!(res.headers()["ratelimit-reset"], "30");
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use http::{HeaderName, HeaderValue, Request, Response};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::handle::RateLimitHandle;
use crate::Status;

/// `RateLimit-Limit`.
pub const RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
/// `RateLimit-Remaining`.
pub const RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
/// `RateLimit-Reset`.
pub const RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");

/// Adds `RateLimit-*` headers from one tier; see the [module docs](self).
///
/// `key` takes the request and returns the tier's key, as the tier's own key function does
/// (`None`: no headers; for a global tier, return `Some(())`).
#[derive(Clone)]
pub struct RateLimitHeadersLayer<F> {
    handle: RateLimitHandle,
    tier: Arc<str>,
    key: F,
}

impl<F> fmt::Debug for RateLimitHeadersLayer<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitHeadersLayer")
            .field("handle", &self.handle)
            .field("tier", &self.tier)
            .finish_non_exhaustive()
    }
}

impl<F> RateLimitHeadersLayer<F> {
    /// Headers from the tier named `tier` of the layer behind `handle`, for the key `key`
    /// returns.
    pub fn new(handle: RateLimitHandle, tier: impl Into<Arc<str>>, key: F) -> Self {
        Self { handle, tier: tier.into(), key }
    }
}

impl<S, F: Clone> Layer<S> for RateLimitHeadersLayer<F> {
    type Service = RateLimitHeaders<S, F>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimitHeaders {
            inner,
            handle: self.handle.clone(),
            tier: self.tier.clone(),
            key: self.key.clone(),
        }
    }
}

/// The service of [`RateLimitHeadersLayer`].
#[derive(Clone)]
pub struct RateLimitHeaders<S, F> {
    inner: S,
    handle: RateLimitHandle,
    tier: Arc<str>,
    key: F,
}

impl<S: fmt::Debug, F> fmt::Debug for RateLimitHeaders<S, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitHeaders")
            .field("inner", &self.inner)
            .field("tier", &self.tier)
            .finish_non_exhaustive()
    }
}

impl<S, F> RateLimitHeaders<S, F> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, F, K, B, ResB> Service<Request<B>> for RateLimitHeaders<S, F>
where
    S: Service<Request<B>, Response = Response<ResB>>,
    F: Fn(&Request<B>) -> Option<K>,
    K: 'static,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = HeadersFuture<S::Future, K>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let lookup =
            (self.key)(&req).map(|key| Lookup { handle: self.handle.clone(), tier: self.tier.clone(), key });
        HeadersFuture { inner: self.inner.call(req), lookup }
    }
}

struct Lookup<K> {
    handle: RateLimitHandle,
    tier: Arc<str>,
    key: K,
}

impl<K: 'static> Lookup<K> {
    fn status(&self) -> Option<Status> {
        let tier = self.handle.tier(&self.tier)?;
        if tier.is_keyed() {
            tier.status_of(&self.key)
        } else {
            tier.status()
        }
    }
}

pin_project! {
    /// The response future of [`RateLimitHeaders`].
    pub struct HeadersFuture<Fut, K> {
        #[pin]
        inner: Fut,
        lookup: Option<Lookup<K>>,
    }
}

impl<Fut, K> fmt::Debug for HeadersFuture<Fut, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeadersFuture").finish_non_exhaustive()
    }
}

impl<Fut, K, ResB, E> Future for HeadersFuture<Fut, K>
where
    Fut: Future<Output = Result<Response<ResB>, E>>,
    K: 'static,
{
    type Output = Result<Response<ResB>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut res = ready!(this.inner.poll(cx))?;
        if let Some(status) = this.lookup.take().and_then(|l| l.status()) {
            let reset = status.reset_after.as_secs() + u64::from(status.reset_after.subsec_nanos() > 0);
            let headers = res.headers_mut();
            headers.insert(RATELIMIT_LIMIT, HeaderValue::from(status.capacity));
            headers.insert(RATELIMIT_REMAINING, HeaderValue::from(status.remaining));
            headers.insert(RATELIMIT_RESET, HeaderValue::from(reset));
        }
        Poll::Ready(Ok(res))
    }
}
