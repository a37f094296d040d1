//! Rate limiting for tower services: token bucket (GCRA), smoothing leaky bucket, sliding
//! window log and counter, fixed window — global or per key, several tiers at once, rejecting
//! at once or waiting.
//!
//! [`RateLimitLayer`] keeps its limits in an `Arc` shared by every service it makes and every
//! clone of those, so it limits behind axum and hyper, which clone the service per request or
//! build it per connection (tower's own `RateLimit` keeps its window in each service value,
//! so there it limits each connection, not the server). All time comes from `tokio::time`, so
//! tests run with a paused clock.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use palisade_core::rejection::RateLimited;
//! use palisade_rate_limit::{Quota, RateLimitLayer};
//! use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let layer = RateLimitLayer::new(Quota::per_second(10).burst(2));
//! let mut svc = ServiceBuilder::new()
//!     .layer(layer)
//!     .service(service_fn(|req: u32| async move { Ok::<_, std::convert::Infallible>(req) }));
//!
//! assert_eq!(svc.ready().await?.call(1).await?, 1);
//! assert_eq!(svc.ready().await?.call(2).await?, 2);
//! // Refused: `poll_ready` is ready and `call` answers with the rejection.
//! let err = svc.ready().await?.call(3).await.unwrap_err();
//! let limited = err.downcast_ref::<RateLimited>().unwrap();
//! assert_eq!(limited.retry_after(), Duration::from_millis(100));
//! # Ok(()) }
//! ```
//!
//! # Algorithms
//!
//! Chosen per layer or per tier with [`Algorithm`]; see its table. The token bucket is the
//! default and the fast one: one atomic compare-and-swap per request, no lock.
//!
//! # Refuse or wait
//!
//! With [`WhenFull::Refuse`](palisade_core::when_full::WhenFull::Refuse) (default) a request
//! that cannot be admitted now fails at once with
//! [`RateLimited`], whose `retry_after` is the exact
//! time until the same request would be admitted. With
//! `.when_full(WhenFull::wait(max_wait))` it is admitted if its slot is at most `max_wait` away — it then waits for that slot — and fails at once
//! otherwise; `retry_after` is then the time until the same request would be admitted to
//! wait. Every algorithm books the slot (token and leaky bucket: a future arrival time;
//! windows: a place in a future window, counting earlier waiters as Resilience4j's
//! `AtomicRateLimiter` does), so waiters go in arrival order at exactly the computed time
//! and nobody is held only to be refused at the end. With several tiers that would admit
//! at different times, the request holds nothing and asks again when the slowest tier is
//! ready — holding nothing meanwhile, so if others took the capacity in between it waits
//! again or, past its `max_wait`, is refused then (the one case where a waiting caller can
//! be held and refused). A refusal's `retry_after` is the time until *every* tier admits
//! the request (the tiers after the refusing one are asked without booking anything).
//!
//! A request weighing more than a tier can ever admit at once (its burst, queue or window
//! limit) fails with [`error::CostExceedsCapacity`] in either mode, as governor's
//! `InsufficientCapacity`. Resilience4j instead reserves such a request across several
//! periods; palisade does not, because the burst is the most a limit lets through at once.
//!
//! Clock readings may reach a limit out of order (read before a lock, applied after a later
//! one): every algorithm treats a reading older than the latest it has seen as that latest
//! time, so a stale reading never reopens a window nor admits early.
//!
//! # Backpressure and the tower contract
//!
//! With global tiers only (no key, weight or condition), admission happens in `poll_ready`:
//! a reservation is taken there (and `poll_ready` stays pending while it waits), `call`
//! spends it, and a service dropped after `poll_ready` without `call` gives it back. A
//! refusal never fails `poll_ready` (which `Buffer` or hyper would take as a dead service):
//! as with tower's `LoadShed`, `poll_ready` is ready and `call` answers with the rejection.
//! Keys, weights and conditions need the request, so such layers admit in `call`; a waiting
//! request then waits in its response future, holding the inner service it will call, and
//! dropping that future gives its reservation back. A request refused by a later tier gives
//! back what earlier tiers admitted, so a refusal never spends tokens.
//!
//! A reservation given back returns its tokens exactly when nothing was reserved after it.
//! Otherwise, with nobody waiting, a token bucket gets back the part of its debt that time
//! has not repaid yet (at most its tokens, less when it was given back late or other
//! reservations were given back since); a future slot in the middle of a queue of waiters
//! lapses instead (giving it back would let a newcomer share a later waiter's slot), and so
//! does a token bucket reservation made before its quota changed (set to other settings:
//! its slot was rescaled). Refunds never admit more than the rate.
//!
//! # Keyed limits
//!
//! [`RateLimitBuilder::keyed`] keeps the quota per key taken from the request (user id, API
//! key, client IP), as [`Tier::keyed`] does for a tier; [`Tier::keyed_by`] chooses the quota
//! per key (by plan). The key function returns `Option<K>`: a request without a key is
//! refused with [`KeyMissing`] (the default), passed
//! through unlimited, or put under one shared limit, as `.when_unkeyed(Unkeyed::…)` says;
//! the first one logs a warning. Keys live in a bounded map
//! of exactly `max_keys` keys, and a key is forgotten only when its limit is back to a fresh
//! key's (and only when room is needed) — so forgetting never lets a client past its limit.
//! When every held key still constrains someone, a request for a *new* key is refused with
//! [`KeySetFull`] (HTTP 503) rather than any state
//! reset; see [`LocalStore`]. [`RateLimitHandle::sweep`] trims unused keys at once. The state
//! sits behind [`KeyedStore`], the seam for a shared backend.
//!
//! # Changing limits at run time
//!
//! [`RateLimitHandle::set_quota`] (or [`RateLimiter::set_quota`],
//! [`KeyedRateLimiter::set_quota`]) changes a tier's quota at once and atomically, as
//! Resilience4j's `changeLimitForPeriod`: what was admitted stays admitted, waiters keep
//! their slots, the next requests are judged by the new quota. (Deliberate deviation: a
//! fixed window counts each future window's bookings on its own, where Resilience4j keeps
//! one signed counter of permissions reserved ahead. After a limit change that counter
//! spreads the earlier reservations at the new limit, so a raised limit could put more
//! than the limit into one booked window; palisade's windows each get exactly the
//! difference. And a new limit applies at once, to the current window too, where
//! Resilience4j applies it from the next cycle: an operator raising a limit under load
//! expects relief now.)
//!
//! # Clock
//!
//! Limits read tokio's clock by default, so paused-clock tests control them. With the
//! `quanta` feature, [`Clock::quanta`] (builder method `clock`) reads the CPU's time-stamp
//! counter as governor does — several times cheaper than a system clock read, but a paused
//! tokio clock no longer controls the limit (use [`Clock::from_quanta`] with
//! `quanta::Clock::mock()` in tests). The clock is palisade-core's, shared with the breaker.
//!
//! # Configuration
//!
//! [`RateLimitConfig`] holds every option a file can (name, quota, algorithm, `when_full`,
//! `max_keys`, `when_unkeyed`, more global tiers; serde with the `serde` feature) and is the
//! builder's storage: `config.into_builder().keyed(f).build()` keys a quota read from a file.
//!
//! # Per-IP limiting in axum with a 429 response
//!
//! `palisade_core::respond::HttpRejectionLayer` (palisade-core, feature
//! `http`) answers the rejection with `429 Too Many Requests` and `Retry-After`. The key
//! is the peer address from axum's `ConnectInfo` (serve with
//! `into_make_service_with_connect_info::<SocketAddr>()`); behind a proxy, read a forwarded
//! header you trust instead.
//!
//! ```
//! use std::net::{IpAddr, SocketAddr};
//! use axum::{body::Body, extract::ConnectInfo, http::Request, routing::get, Router};
//! use palisade_core::respond::HttpRejectionLayer;
//! use palisade_rate_limit::{Quota, RateLimitLayer};
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! fn client_ip(req: &Request<Body>) -> Option<IpAddr> {
//!     req.extensions().get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(addr)| addr.ip())
//! }
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let per_ip = RateLimitLayer::builder()
//!     .name("per_ip")
//!     .quota(Quota::per_second(5).burst(1))
//!     .keyed(client_ip)
//!     .max_keys(10_000)
//!     .build()?;
//! let app = Router::new()
//!     .route("/", get(|| async { "hello" }))
//!     .layer(ServiceBuilder::new().layer(HttpRejectionLayer::new()).layer(per_ip));
//! // axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
//!
//! let from = |ip: [u8; 4]| {
//!     let mut req = Request::new(Body::empty());
//!     req.extensions_mut().insert(ConnectInfo(SocketAddr::from((ip, 4000))));
//!     req
//! };
//! assert_eq!(app.clone().oneshot(from([10, 0, 0, 1])).await?.status(), 200);
//! let limited = app.clone().oneshot(from([10, 0, 0, 1])).await?;
//! assert_eq!(limited.status(), 429);
//! assert_eq!(limited.headers()["retry-after"], "1"); // 200ms, rounded up to whole seconds
//! assert_eq!(app.clone().oneshot(from([10, 0, 0, 2])).await?.status(), 200); // another IP
//! # Ok(()) }
//! ```
//!
//! # Several tiers
//!
//! Every tier that applies must admit the request: here 100 per minute per user, 10 writes
//! per second per user, and 10,000 per minute overall.
//!
//! ```
//! use palisade_rate_limit::{Quota, RateLimitLayer, Tier};
//!
//! struct Request { user: u64, write: bool }
//!
//! let layer = RateLimitLayer::builder()
//!     .name("api")
//!     .tier(Tier::keyed(Quota::per_minute(100), |r: &Request| Some(r.user)).name("per_user"))
//!     .tier(Tier::keyed(Quota::per_second(10), |r: &Request| Some(r.user)).name("writes").when(|r: &Request| r.write))
//!     .tier(Tier::new(Quota::per_minute(10_000)).name("global"))
//!     .build()
//!     .unwrap();
//! let handle = layer.handle();
//! assert_eq!(handle.tiers().map(|t| t.name().to_owned()).collect::<Vec<_>>(), ["per_user", "writes", "global"]);
//! ```
//!
//! # Observability
//!
//! [`RateLimitLayer::handle`] gives a [`RateLimitHandle`]: counters ([`RateLimitSnapshot`]: admitted,
//! rejected, waited, keys, keys evicted), per-key [`Status`] (tokens left, queue length,
//! window count) and [`RateLimitEvent`]s (rejected, delayed, evicted). With the `metrics`
//! feature the counters are exported as `palisade_rate_limit_*_total` with label `name`.
//! With the `http` feature, `headers::RateLimitHeadersLayer` writes the IETF draft's
//! `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset` headers from one tier.
//!
//! Minimum supported Rust version: 1.85.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod algorithm;
pub mod async_store;
mod builder;
mod config;
pub mod error;
pub mod event;
pub mod future;
mod handle;
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod headers;
mod layer;
mod limiter;
mod quota;
mod service;
mod shared;
pub mod store;
mod tier;

pub use algorithm::{Algorithm, Status};
pub use builder::RateLimitBuilder;
pub use config::{RateLimitConfig, TierConfig, DEFAULT_MAX_KEYS};
pub use error::{ConfigError, CostExceedsCapacity, Denied, KeyMissing, KeySetFull, RateLimited};
pub use event::RateLimitEvent;
pub use handle::{RateLimitHandle, RateLimitSnapshot, TierHandle};
pub use layer::RateLimitLayer;
pub use limiter::{KeyedRateLimiter, KeyedRateLimiterBuilder, RateLimiter, RateLimiterBuilder};
pub use palisade_core::clock::Clock;
pub use quota::Quota;
pub use service::RateLimit;
pub use store::{Grant, KeyedStore, LocalStore};
pub use tier::Tier;
