//! Replaying `http::Request` bodies (feature `http`).
//!
//! A request whose body type is `Clone` (`String`, `Bytes`, `http_body_util::Full<Bytes>`)
//! is replayed by the default [`CloneRequest`](crate::replay::CloneRequest). A streaming
//! body (hyper's `Incoming`, axum's `Body`, tonic's `Body`) cannot be cloned; for those:
//!
//! 1. [`BufferBodyLayer`] reads the body ahead, up to `max_bytes`, before the request goes
//!    on, and hands the inner service an `http::Request<ReplayBody<B>>`. A body that ends
//!    within the limit is kept in memory ([`ReplayBody::is_replayable`]); a longer one is
//!    passed on as it comes (the part read ahead first) and is never replayed.
//! 2. [`HttpReplay`], given to the retry or hedge layer with `.replay(HttpReplay)`, copies
//!    buffered requests (method, URI, version, headers, extensions and the same body bytes)
//!    and gives up on the others, which are then sent exactly once.
//!
//! Reading ahead delays the first attempt until the body is read (or the limit reached);
//! memory per request is bounded by `max_bytes` plus one frame.
//!
//! # Non-idempotent requests
//!
//! A replay copies whatever it is given: a `POST` that timed out or got a 502/504 may have
//! been applied, and sending it again may apply it twice. RFC 9110 §9.2.2 says a client
//! should not retry a request with a non-idempotent method automatically unless it knows
//! the request is idempotent. Wrap the replay in [`IdempotentOnly`] to retry (and hedge)
//! only requests with an idempotent method (`GET`, `HEAD`, `OPTIONS`, `TRACE`, `PUT`,
//! `DELETE`) or an `Idempotency-Key` header (as Go's `net/http` decides what it may resend);
//! every other request is sent exactly once. It is not the default because gRPC calls are
//! all `POST`s and retrying them is what gRFC A6 is about.
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), palisade_core::BoxError> {
//! use bytes::Bytes;
//! use http_body_util::{BodyExt, Full};
//! use palisade_core::classify::HttpClassifier;
//! use palisade_retry::http::{BufferBodyLayer, HttpReplay, ReplayBody};
//! use palisade_retry::{Backoff, Jitter, RetryLayer};
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//!
//! let retry = RetryLayer::builder()
//!     .classifier(HttpClassifier::new())
//!     .replay(HttpReplay)
//!     .backoff(Backoff::fixed(std::time::Duration::from_millis(1)))
//!     .jitter(Jitter::None)
//!     .build()?;
//! let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
//! let log = seen.clone();
//! let client = ServiceBuilder::new()
//!     .layer(BufferBodyLayer::new(64 * 1024))
//!     .layer(retry)
//!     .service(service_fn(move |req: http::Request<ReplayBody<Full<Bytes>>>| {
//!         let log = log.clone();
//!         async move {
//!             let body = req.into_body().collect().await?.to_bytes();
//!             let mut log = log.lock().unwrap();
//!             log.push(body);
//!             let status = if log.len() == 1 { 503 } else { 200 };
//!             Ok::<_, palisade_core::BoxError>(http::Response::builder().status(status).body(())?)
//!         }
//!     }));
//! let req = http::Request::post("http://backend/orders").body(Full::new(Bytes::from("order #1")))?;
//! assert_eq!(client.oneshot(req).await?.status(), 200);
//! assert_eq!(*seen.lock().unwrap(), ["order #1", "order #1"]);
//! # Ok(()) }
//! ```

mod body;
mod buffer;

use http::Request;
use http_body::Body;

pub use self::body::ReplayBody;
pub use self::buffer::{BufferBody, BufferBodyFuture, BufferBodyLayer};
use crate::replay::Replay;

/// Replays `http::Request<ReplayBody<B>>` whose body is buffered; gives up on streaming
/// ones. See the [module docs](self). It replays every method: wrap it in
/// [`IdempotentOnly`] (`IdempotentOnly::new(HttpReplay)`) to retry only requests that may
/// be sent twice.
#[derive(Clone, Copy, Debug, Default)]
pub struct HttpReplay;

impl<B: Body> Replay<Request<ReplayBody<B>>> for HttpReplay {
    fn replay(&self, req: &Request<ReplayBody<B>>) -> Option<Request<ReplayBody<B>>> {
        let body = req.body().try_clone()?;
        let mut copy = Request::new(body);
        *copy.method_mut() = req.method().clone();
        *copy.uri_mut() = req.uri().clone();
        *copy.version_mut() = req.version();
        *copy.headers_mut() = req.headers().clone();
        *copy.extensions_mut() = req.extensions().clone();
        Some(copy)
    }
}

/// Replays a request only when sending it twice is known to be safe: its method is
/// idempotent (RFC 9110 §9.2.2: `GET`, `HEAD`, `OPTIONS`, `TRACE`, `PUT`, `DELETE`) or it
/// carries an `Idempotency-Key` (or `X-Idempotency-Key`) header; the copy itself is made by
/// the wrapped replay. Any other request (`POST`, `PATCH`, …) is sent once and never
/// retried or hedged (the give-up reason is `NotReplayable`). See the
/// [module docs](self#non-idempotent-requests).
///
/// ```
/// use bytes::Bytes;
/// use http_body_util::Full;
/// use palisade_retry::http::IdempotentOnly;
/// use palisade_retry::replay::{CloneRequest, Replay};
///
/// let replay = IdempotentOnly::new(CloneRequest);
/// let get = http::Request::get("http://x/items/1").body(Full::new(Bytes::new())).unwrap();
/// let post = http::Request::post("http://x/orders").body(Full::new(Bytes::from("#1"))).unwrap();
/// let keyed = http::Request::post("http://x/orders")
///     .header("idempotency-key", "8e03978e")
///     .body(Full::new(Bytes::from("#1")))
///     .unwrap();
/// assert!(replay.replay(&get).is_some());
/// assert!(replay.replay(&post).is_none());
/// assert!(replay.replay(&keyed).is_some());
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct IdempotentOnly<R = HttpReplay> {
    inner: R,
}

impl<R> IdempotentOnly<R> {
    /// Replays with `inner`, for idempotent requests only.
    pub fn new(inner: R) -> Self {
        Self { inner }
    }

    /// Whether `req` may be sent twice: an idempotent method or an idempotency key.
    pub fn is_idempotent<B>(req: &Request<B>) -> bool {
        use http::Method;
        let method = req.method();
        [Method::GET, Method::HEAD, Method::OPTIONS, Method::TRACE, Method::PUT, Method::DELETE]
            .contains(method)
            || req.headers().contains_key("idempotency-key")
            || req.headers().contains_key("x-idempotency-key")
    }
}

impl<B, R: Replay<Request<B>>> Replay<Request<B>> for IdempotentOnly<R> {
    fn replay(&self, req: &Request<B>) -> Option<Request<B>> {
        if Self::is_idempotent(req) {
            self.inner.replay(req)
        } else {
            None
        }
    }
}
