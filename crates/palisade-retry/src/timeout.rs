//! A timeout layer whose timeout may be chosen per request.
//!
//! [`TimeoutLayer`] bounds each call; when the time runs out the inner future is dropped and
//! the caller gets palisade's [`TimedOut`] rejection, which
//! `palisade_core::respond` turns into HTTP 504 or gRPC DEADLINE_EXCEEDED. The timeout is
//! either fixed or chosen per request by a function `Fn(&Req) -> Option<Duration>`
//! (`None`: no timeout for that request) — for instance from the `grpc-timeout` header the
//! caller sent, with [`grpc_timeout`] (feature `http`).
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), palisade_core::BoxError> {
//! use std::time::Duration;
//! use palisade_core::rejection::TimedOut;
//! use palisade_retry::timeout::TimeoutLayer;
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//!
//! // A request carries its own budget in milliseconds, capped at 100 ms.
//! let layer = TimeoutLayer::builder()
//!     .name("backend")
//!     .per_request(|req: &u64| Some(Duration::from_millis((*req).min(100))))
//!     .build()?;
//! let svc = ServiceBuilder::new().layer(layer).service(service_fn(|_req: u64| async {
//!     tokio::time::sleep(Duration::from_millis(50)).await;
//!     Ok::<_, std::convert::Infallible>("done")
//! }));
//! assert_eq!(svc.clone().oneshot(80).await?, "done");
//! let err = svc.oneshot(10).await.unwrap_err();
//! assert!(err.is::<TimedOut>());
//! # Ok(()) }
//! ```
//!
//! # Clone
//!
//! The layer and its services hold the timeout policy and name; clones are independent and
//! hold no reservation (`poll_ready` is the inner service's).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use palisade_core::config::{ensure_nonzero_duration, ConfigError};
use palisade_core::rejection::TimedOut;
use palisade_core::time::deadline_from_now;
use palisade_core::BoxError;
use pin_project_lite::pin_project;
use tokio::time::Instant;
use tower_layer::Layer;
use tower_service::Service;

use crate::timer::Timer;

/// Chooses the timeout of one request.
pub trait TimeoutPolicy<Req> {
    /// The timeout for `req`; `None` for none.
    fn timeout_for(&self, req: &Req) -> Option<Duration>;
}

/// The same timeout for every request.
#[derive(Clone, Copy, Debug)]
pub struct FixedTimeout(Duration);

impl<Req> TimeoutPolicy<Req> for FixedTimeout {
    #[inline]
    fn timeout_for(&self, _: &Req) -> Option<Duration> {
        Some(self.0)
    }
}

/// A timeout chosen per request by a closure; see [`TimeoutLayerBuilder::per_request`].
#[derive(Clone, Copy)]
pub struct PerRequest<F>(F);

impl<F> fmt::Debug for PerRequest<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PerRequest").finish_non_exhaustive()
    }
}

impl<F, Req> TimeoutPolicy<Req> for PerRequest<F>
where
    F: Fn(&Req) -> Option<Duration>,
{
    #[inline]
    fn timeout_for(&self, req: &Req) -> Option<Duration> {
        (self.0)(req)
    }
}

/// Applies a timeout to every call; see the [module docs](self).
#[derive(Clone)]
pub struct TimeoutLayer<T = FixedTimeout> {
    policy: T,
    name: Arc<str>,
}

impl<T: fmt::Debug> fmt::Debug for TimeoutLayer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimeoutLayer").field("name", &self.name).field("policy", &self.policy).finish()
    }
}

impl TimeoutLayer {
    /// A builder (name `"timeout"`; a timeout or a per-request function must be set).
    pub fn builder() -> TimeoutLayerBuilder<()> {
        TimeoutLayerBuilder { policy: (), name: "timeout".into() }
    }

    /// A layer with the same `timeout` for every call (must not be zero). A huge timeout
    /// (`Duration::MAX`) saturates to "effectively never" (`palisade_core::time`), it never
    /// panics.
    pub fn new(timeout: Duration) -> Result<Self, ConfigError> {
        Self::builder().timeout(timeout).build()
    }
}

impl<T: Clone, S> Layer<S> for TimeoutLayer<T> {
    type Service = Timeout<S, T>;

    fn layer(&self, inner: S) -> Self::Service {
        Timeout { inner, policy: self.policy.clone(), name: self.name.clone() }
    }
}

/// Builds a [`TimeoutLayer`].
#[derive(Clone, Debug)]
#[must_use]
pub struct TimeoutLayerBuilder<T> {
    policy: T,
    name: Arc<str>,
}

impl<T> TimeoutLayerBuilder<T> {
    /// The name in rejections (default `"timeout"`).
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = name.into();
        self
    }

    /// The same timeout for every call.
    pub fn timeout(self, timeout: Duration) -> TimeoutLayerBuilder<FixedTimeout> {
        TimeoutLayerBuilder { policy: FixedTimeout(timeout), name: self.name }
    }

    /// The timeout chosen per request; `None` means no timeout for that request.
    pub fn per_request<F, Req>(self, f: F) -> TimeoutLayerBuilder<PerRequest<F>>
    where
        F: Fn(&Req) -> Option<Duration>,
    {
        TimeoutLayerBuilder { policy: PerRequest(f), name: self.name }
    }
}

impl TimeoutLayerBuilder<FixedTimeout> {
    /// Validates (the timeout must not be zero) and builds.
    pub fn build(self) -> Result<TimeoutLayer<FixedTimeout>, ConfigError> {
        ensure_nonzero_duration("timeout", self.policy.0)?;
        Ok(TimeoutLayer { policy: self.policy, name: self.name })
    }
}

impl<F> TimeoutLayerBuilder<PerRequest<F>> {
    /// Builds the layer.
    pub fn build(self) -> Result<TimeoutLayer<PerRequest<F>>, ConfigError> {
        Ok(TimeoutLayer { policy: self.policy, name: self.name })
    }
}

/// The service made by [`TimeoutLayer`].
#[derive(Clone)]
pub struct Timeout<S, T = FixedTimeout> {
    inner: S,
    policy: T,
    name: Arc<str>,
}

impl<S: fmt::Debug, T: fmt::Debug> fmt::Debug for Timeout<S, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Timeout")
            .field("inner", &self.inner)
            .field("name", &self.name)
            .field("policy", &self.policy)
            .finish()
    }
}

impl<S, T> Timeout<S, T> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, consuming the timeout service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, T, Req> Service<Req> for Timeout<S, T>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    T: TimeoutPolicy<Req>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = TimeoutFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let after = self.policy.timeout_for(&req);
        TimeoutFuture {
            future: self.inner.call(req),
            timer: Timer::Idle,
            deadline: after.map(deadline_from_now),
            after: after.unwrap_or_default(),
            name: after.map(|_| self.name.clone()),
        }
    }
}

pin_project! {
    /// The future of [`Timeout`]; dropping it drops the inner future.
    pub struct TimeoutFuture<F> {
        #[pin]
        future: F,
        #[pin]
        timer: Timer,
        // When to time out; moved into `timer` on the first `Pending`.
        deadline: Option<Instant>,
        after: Duration,
        name: Option<Arc<str>>,
    }
}

impl<F> fmt::Debug for TimeoutFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimeoutFuture").field("after", &self.after).finish_non_exhaustive()
    }
}

impl<F, T, E> Future for TimeoutFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(res) = this.future.poll(cx) {
            return Poll::Ready(res.map_err(Into::into));
        }
        if this.name.is_none() {
            return Poll::Pending; // no timeout for this request
        }
        match this.timer.poll_lazy(this.deadline, cx) {
            Poll::Ready(()) => {
                let name = this.name.take().unwrap_or_else(|| "timeout".into());
                Poll::Ready(Err(TimedOut::new(name, *this.after).into()))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Reads gRPC's `grpc-timeout` header (`"250m"`, `"5S"`, …: at most 8 digits and a unit
/// `H`, `M`, `S`, `m`, `u`, `n`); `None` when absent or malformed.
///
/// ```
/// use std::time::Duration;
/// use palisade_retry::timeout::grpc_timeout;
///
/// let req = http::Request::builder().header("grpc-timeout", "250m").body(()).unwrap();
/// assert_eq!(grpc_timeout(&req), Some(Duration::from_millis(250)));
/// ```
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub fn grpc_timeout<B>(req: &http::Request<B>) -> Option<Duration> {
    let value = req.headers().get("grpc-timeout")?.as_bytes();
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(match unit {
        b"H" => Duration::from_secs(n * 3600),
        b"M" => Duration::from_secs(n * 60),
        b"S" => Duration::from_secs(n),
        b"m" => Duration::from_millis(n),
        b"u" => Duration::from_micros(n),
        b"n" => Duration::from_nanos(n),
        _ => return None,
    })
}
