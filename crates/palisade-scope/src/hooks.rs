//! Lifecycle hooks for any service: before a request, after it (outcome and duration), on
//! cancel (its response future dropped before completion), on dispose (the last service,
//! clone and response future of one [`HooksLayer::layer`] call dropped).
//!
//! Modelled on tower-http's `trace` callbacks: each hook is a trait implemented for
//! closures, and [`NoHook`] leaves a hook out. Hooks are plain synchronous functions run on
//! the caller's task: they never wait on anything palisade owns, so a hook costs what its
//! body costs (keep it short; hand heavy work to a channel). A panicking hook is contained
//! (`catch_unwind`, logged through `tracing`): the call goes on as if the hook were absent.
//!
//! # Example
//!
//! ```
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use std::sync::Arc;
//! use std::time::Duration;
//! use palisade_scope::hooks::HooksLayer;
//! use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), std::io::Error> {
//! let ok = Arc::new(AtomicUsize::new(0));
//! let seen = ok.clone();
//! let mut svc = ServiceBuilder::new()
//!     .layer(
//!         HooksLayer::new()
//!             .on_request(|req: &u32| tracing::debug!(req, "starting"))
//!             .on_response(move |res: &Result<u32, std::io::Error>, took: Duration| {
//!                 if res.is_ok() { seen.fetch_add(1, Ordering::Relaxed); }
//!                 tracing::debug!(?took, "done");
//!             }),
//!     )
//!     .service(service_fn(|n: u32| async move { Ok::<_, std::io::Error>(n + 1) }));
//! assert_eq!(svc.ready().await?.call(1).await?, 2);
//! assert_eq!(ok.load(Ordering::Relaxed), 1);
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::Instant;
use tower_layer::Layer;
use tower_service::Service;

/// Runs a hook, containing a panic.
fn guarded(hook: &'static str, f: impl FnOnce()) {
    if palisade_core::panic::catch(f).is_err() {
        tracing::warn!(target: "palisade", hook, "a lifecycle hook panicked; the call goes on");
    }
}

// === hook traits ===

/// Called before a request is passed to the inner service.
pub trait OnRequest<Req> {
    /// Sees the request.
    fn on_request(&self, request: &Req);
}

/// Called when a response future completes, with its result and how long the call took
/// (from `call`).
pub trait OnResponse<Res, E> {
    /// Sees the result.
    fn on_response(&self, result: &Result<Res, E>, latency: Duration);
}

/// Called when a response future is dropped before it completed, with how long it ran.
pub trait OnCancel {
    /// The call was abandoned.
    fn on_cancel(&self, elapsed: Duration);
}

/// Called once, when the last service, clone and response future built from one
/// [`HooksLayer::layer`] (or [`Hooked::new`]) call are dropped.
pub trait OnDispose {
    /// The service is gone.
    fn on_dispose(&self);
}

/// A hook that does nothing (the default for every hook).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoHook;

impl<Req> OnRequest<Req> for NoHook {
    fn on_request(&self, _: &Req) {}
}
impl<Res, E> OnResponse<Res, E> for NoHook {
    fn on_response(&self, _: &Result<Res, E>, _: Duration) {}
}
impl OnCancel for NoHook {
    fn on_cancel(&self, _: Duration) {}
}
impl OnDispose for NoHook {
    fn on_dispose(&self) {}
}

impl<Req, F: Fn(&Req)> OnRequest<Req> for F {
    fn on_request(&self, request: &Req) {
        self(request);
    }
}
impl<Res, E, F: Fn(&Result<Res, E>, Duration)> OnResponse<Res, E> for F {
    fn on_response(&self, result: &Result<Res, E>, latency: Duration) {
        self(result, latency);
    }
}
impl<F: Fn(Duration)> OnCancel for F {
    fn on_cancel(&self, elapsed: Duration) {
        self(elapsed);
    }
}
impl<F: Fn()> OnDispose for F {
    fn on_dispose(&self) {
        self();
    }
}

// === impl HooksLayer ===

/// A layer calling lifecycle hooks around every request; see the [module docs](self).
#[derive(Clone, Copy, Debug, Default)]
#[allow(clippy::struct_field_names)] // named after the hooks
pub struct HooksLayer<Rq = NoHook, Rs = NoHook, Cn = NoHook, Dp = NoHook> {
    on_request: Rq,
    on_response: Rs,
    on_cancel: Cn,
    on_dispose: Dp,
}

impl HooksLayer {
    /// A layer with no hooks yet.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<Rq, Rs, Cn, Dp> HooksLayer<Rq, Rs, Cn, Dp> {
    /// Sets the hook called before each request.
    pub fn on_request<T>(self, hook: T) -> HooksLayer<T, Rs, Cn, Dp> {
        HooksLayer {
            on_request: hook,
            on_response: self.on_response,
            on_cancel: self.on_cancel,
            on_dispose: self.on_dispose,
        }
    }

    /// Sets the hook called with each result and its latency.
    pub fn on_response<T>(self, hook: T) -> HooksLayer<Rq, T, Cn, Dp> {
        HooksLayer {
            on_request: self.on_request,
            on_response: hook,
            on_cancel: self.on_cancel,
            on_dispose: self.on_dispose,
        }
    }

    /// Sets the hook called when a response future is dropped before completing.
    pub fn on_cancel<T>(self, hook: T) -> HooksLayer<Rq, Rs, T, Dp> {
        HooksLayer {
            on_request: self.on_request,
            on_response: self.on_response,
            on_cancel: hook,
            on_dispose: self.on_dispose,
        }
    }

    /// Sets the hook called when the service is disposed of.
    pub fn on_dispose<T>(self, hook: T) -> HooksLayer<Rq, Rs, Cn, T> {
        HooksLayer {
            on_request: self.on_request,
            on_response: self.on_response,
            on_cancel: self.on_cancel,
            on_dispose: hook,
        }
    }
}

impl<S, Rq: Clone, Rs: Clone, Cn: Clone + OnCancel, Dp: Clone + OnDispose> Layer<S>
    for HooksLayer<Rq, Rs, Cn, Dp>
{
    type Service = Hooked<S, Rq, Rs, Cn, Dp>;

    fn layer(&self, inner: S) -> Self::Service {
        Hooked::new(inner, self.clone())
    }
}

// === impl Hooked ===

#[allow(clippy::struct_field_names)] // named after the hooks
struct Hooks<Rq, Rs, Cn: OnCancel, Dp: OnDispose> {
    on_request: Rq,
    on_response: Rs,
    on_cancel: Cn,
    on_dispose: Dp,
}

impl<Rq, Rs, Cn: OnCancel, Dp: OnDispose> Drop for Hooks<Rq, Rs, Cn, Dp> {
    fn drop(&mut self) {
        let hook = &self.on_dispose;
        guarded("on_dispose", || hook.on_dispose());
    }
}

/// A service calling lifecycle hooks (built by [`HooksLayer`]).
///
/// # Clone
///
/// Clones share the hooks; `on_dispose` runs when the last clone and response future are
/// gone.
pub struct Hooked<S, Rq, Rs, Cn: OnCancel, Dp: OnDispose> {
    inner: S,
    hooks: Arc<Hooks<Rq, Rs, Cn, Dp>>,
}

impl<S: Clone, Rq, Rs, Cn: OnCancel, Dp: OnDispose> Clone for Hooked<S, Rq, Rs, Cn, Dp> {
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone(), hooks: self.hooks.clone() }
    }
}

impl<S: fmt::Debug, Rq, Rs, Cn: OnCancel, Dp: OnDispose> fmt::Debug for Hooked<S, Rq, Rs, Cn, Dp> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hooked").field("inner", &self.inner).finish_non_exhaustive()
    }
}

impl<S, Rq, Rs, Cn: OnCancel, Dp: OnDispose> Hooked<S, Rq, Rs, Cn, Dp> {
    /// Wraps `inner` with the hooks of `layer`.
    pub fn new(inner: S, layer: HooksLayer<Rq, Rs, Cn, Dp>) -> Self {
        let HooksLayer { on_request, on_response, on_cancel, on_dispose } = layer;
        Self { inner, hooks: Arc::new(Hooks { on_request, on_response, on_cancel, on_dispose }) }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }
}

impl<S, Req, Rq, Rs, Cn, Dp> Service<Req> for Hooked<S, Rq, Rs, Cn, Dp>
where
    S: Service<Req>,
    Rq: OnRequest<Req>,
    Rs: OnResponse<S::Response, S::Error>,
    Cn: OnCancel,
    Dp: OnDispose,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, Rq, Rs, Cn, Dp>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let hooks = &self.hooks;
        guarded("on_request", || hooks.on_request.on_request(&request));
        let started = Instant::now();
        ResponseFuture { inner: self.inner.call(request), hooks: self.hooks.clone(), started, done: false }
    }
}

pin_project! {
    /// The response future of [`Hooked`].
    pub struct ResponseFuture<F, Rq, Rs, Cn: OnCancel, Dp: OnDispose> {
        #[pin]
        inner: F,
        hooks: Arc<Hooks<Rq, Rs, Cn, Dp>>,
        started: Instant,
        done: bool,
    }

    impl<F, Rq, Rs, Cn: OnCancel, Dp: OnDispose> PinnedDrop for ResponseFuture<F, Rq, Rs, Cn, Dp> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if !*this.done {
                // Dropped before completion: the call was cancelled.
                let hooks = &**this.hooks;
                let elapsed = this.started.elapsed();
                guarded("on_cancel", || hooks.on_cancel.on_cancel(elapsed));
            }
        }
    }
}

impl<F, Rq, Rs, Cn: OnCancel, Dp: OnDispose> fmt::Debug for ResponseFuture<F, Rq, Rs, Cn, Dp> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").field("started", &self.started).finish_non_exhaustive()
    }
}

impl<F, T, E, Rq, Rs, Cn, Dp> Future for ResponseFuture<F, Rq, Rs, Cn, Dp>
where
    F: Future<Output = Result<T, E>>,
    Rs: OnResponse<T, E>,
    Cn: OnCancel,
    Dp: OnDispose,
{
    type Output = Result<T, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = std::task::ready!(this.inner.poll(cx));
        *this.done = true;
        let latency = this.started.elapsed();
        let hooks = &**this.hooks;
        guarded("on_response", || hooks.on_response.on_response(&result, latency));
        Poll::Ready(result)
    }
}
