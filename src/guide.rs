//! Guide: naming and storing a stack, and calling it from `tokio::spawn`, a `JoinSet` or an
//! axum handler.
//!
//! This module holds documentation only. Every shape shown here is also built and used inside
//! `tokio::spawn`, a `JoinSet` and an axum handler by the crate's `tests/spawn.rs`.
//!
//! # Naming a stack
//!
//! A stack built with [`tower::ServiceBuilder`] has a nested type, outermost layer first:
//! `.layer(a).layer(b).service(s)` is `A<B<S>>`. There are three ways to name it, for a struct
//! field, an axum `State` or a function's return type:
//!
//! | way | cost | works when |
//! |---|---|---|
//! | a type alias spelling the layers out | none | the inner service has a name (a struct, not a closure or an `async fn`) |
//! | [`BoxCloneSyncService<Req, Res, BoxError>`](https://docs.rs/tower/0.5/tower/util/struct.BoxCloneSyncService.html) | one allocation and a dynamic call per request | always; `Clone + Send + Sync`, fits axum's `State` |
//! | `-> impl Service<Req, …> + Clone` from a function | none | you only pass it on (it cannot be a struct field on stable Rust) |
//!
//! Spell every type parameter out in an alias (service, then classifier, then the layer's own
//! policy): the alias then keeps compiling when a default is added or changed.
//!
//! ```
//! use std::future::{ready, Ready};
//! use std::task::{Context, Poll};
//! use std::time::Duration;
//!
//! use palisade::circuit_breaker::CircuitBreaker;
//! use palisade::classify::DefaultClassifier;
//! use palisade::prelude::*;
//! use palisade::retry::replay::CloneRequest;
//! use palisade::timeout::{FixedTimeout, Timeout};
//! use palisade::retry::Retry;
//! use tower::{Service, ServiceBuilder, ServiceExt};
//!
//! /// The inner service, as a named type.
//! #[derive(Clone, Debug)]
//! struct Inventory;
//!
//! impl Service<u32> for Inventory {
//!     type Response = u32;
//!     type Error = BoxError;
//!     type Future = Ready<Result<u32, BoxError>>;
//!     fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
//!         Poll::Ready(Ok(()))
//!     }
//!     fn call(&mut self, item: u32) -> Self::Future {
//!         ready(Ok(item * 10))
//!     }
//! }
//!
//! /// Timeout, then retry, then the breaker, then the service: outermost first.
//! type InventoryClient = Timeout<
//!     Retry<CircuitBreaker<Inventory, DefaultClassifier>, DefaultClassifier, CloneRequest>,
//!     FixedTimeout,
//! >;
//!
//! #[derive(Clone)]
//! struct AppState {
//!     inventory: InventoryClient,
//! }
//!
//! fn inventory_client() -> Result<InventoryClient, BoxError> {
//!     Ok(ServiceBuilder::new()
//!         .layer(TimeoutLayer::new(Duration::from_secs(2)))
//!         .layer(RetryLayer::new(3))
//!         .layer(CircuitBreakerLayer::builder().consecutive_failures(5).build()?)
//!         .service(Inventory))
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BoxError> {
//! let state = AppState { inventory: inventory_client()? };
//! let client = state.inventory.clone();
//! let stock = tokio::spawn(async move { client.oneshot(4).await }).await??;
//! assert_eq!(stock, 40);
//! # Ok(()) }
//! ```
//!
//! Every service built from one layer value shares the layer's state (breaker, budget,
//! limits): build the stack once and clone it per request or per task, do not build it per
//! request.
//!
//! # "implementation of `From` is not general enough"
//!
//! A stack over a **closure whose signature mentions [`BoxError`]** (most often
//! `service_fn(|req| async move { …; Ok::<_, BoxError>(res) })`, or `.map_err(BoxError::from)`)
//! works when awaited directly, but the same `await` inside `tokio::spawn`, a `JoinSet` or an
//! axum handler fails to compile:
//!
//! ```text
//! error: implementation of `From` is not general enough
//! ```
//!
//! This is a compiler limitation, rust-lang/rust#64552 (also #110338), not a palisade bug, and
//! tower's own layers hit it the same way. Where rustc must prove that a future is `Send` and
//! that future *holds* the stack (an `async` block passed to `spawn`, an axum handler's
//! future), it forgets the lifetimes inside the types it holds, including the `'static` of
//! `BoxError = Box<dyn Error + Send + Sync + 'static>` inside the closure's type, and can then no
//! longer show that the inner error converts `Into<BoxError>` for every lifetime. A layer's
//! `S::Error: Into<BoxError>` bound is all it takes.
//!
//! ```compile_fail
//! # use std::time::Duration;
//! # use palisade::prelude::*;
//! # use tower::{service_fn, ServiceBuilder, ServiceExt};
//! # async fn demo() -> Result<(), BoxError> {
//! let svc = ServiceBuilder::new()
//!     .layer(RetryLayer::builder().max_attempts(3).build()?)
//!     .service(service_fn(|x: u32| async move { Ok::<_, BoxError>(x + 1) }));
//! // error: implementation of `From` is not general enough
//! tokio::spawn(async move { svc.oneshot(1).await });
//! # Ok(()) }
//! ```
//!
//! # What works
//!
//! Each of these makes the example above compile; pick the one that fits.
//!
//! **1. An error type without a lifetime in the inner service.** Return a concrete error
//! (`std::io::Error`, hyper's or tonic's error, your own enum) instead of `BoxError`; palisade's
//! layers box it themselves. Over a client whose error is already concrete, do not add
//! `.map_err(BoxError::from)`: the layers take any `Into<BoxError>` error as it is.
//!
//! ```
//! # use palisade::prelude::*;
//! # use tower::{service_fn, ServiceBuilder, ServiceExt};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BoxError> {
//! let svc = ServiceBuilder::new()
//!     .layer(RetryLayer::builder().max_attempts(3).build()?)
//!     .service(service_fn(|x: u32| async move { Ok::<_, std::io::Error>(x + 1) }));
//! assert_eq!(tokio::spawn(async move { svc.oneshot(1).await }).await??, 2);
//! # Ok(()) }
//! ```
//!
//! **2. An `async fn` instead of a closure.** A function's type carries no lifetimes, so the
//! same body written as an `async fn` may return `BoxError`. (Capture state by implementing
//! `Service` on a struct instead, which also makes the stack nameable.)
//!
//! ```
//! # use palisade::prelude::*;
//! # use tower::{service_fn, ServiceBuilder, ServiceExt};
//! async fn add_one(x: u32) -> Result<u32, BoxError> {
//!     Ok(x + 1)
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BoxError> {
//! let svc = ServiceBuilder::new()
//!     .layer(RetryLayer::builder().max_attempts(3).build()?)
//!     .service(service_fn(add_one));
//! assert_eq!(tokio::spawn(async move { svc.oneshot(1).await }).await??, 2);
//! # Ok(()) }
//! ```
//!
//! **3. Box the outermost stack** as a [`BoxCloneSyncService`](https://docs.rs/tower/0.5/tower/util/struct.BoxCloneSyncService.html)
//! (or `BoxCloneService` when the stack is not `Sync`). The closure's type disappears from the
//! stack's type, and the stack gets a short name to store. One allocation per call.
//!
//! ```
//! # use palisade::prelude::*;
//! use tower::util::BoxCloneSyncService;
//! # use tower::{service_fn, ServiceBuilder, ServiceExt};
//!
//! type Client = BoxCloneSyncService<u32, u32, BoxError>;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BoxError> {
//! let svc: Client = BoxCloneSyncService::new(
//!     ServiceBuilder::new()
//!         .layer(RetryLayer::new(3))
//!         .service(service_fn(|x: u32| async move { Ok::<_, BoxError>(x + 1) })),
//! );
//! assert_eq!(tokio::spawn(async move { svc.oneshot(1).await }).await??, 2);
//! # Ok(()) }
//! ```
//!
//! **4. Spawn `svc.oneshot(req)` itself**, not an `async` block awaiting it: `spawn` then
//! checks the concrete future type, where nothing is forgotten. The same holds for
//! `JoinSet::spawn`; in an axum handler, spawn the call and await its `JoinHandle` (a task per
//! call), or box the call's future first — `let call: BoxFuture<'static, _> =
//! Box::pin(svc.oneshot(req));` — and await `call` in the handler.
//!
//! ```
//! # use palisade::prelude::*;
//! # use tower::{service_fn, ServiceBuilder, ServiceExt};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BoxError> {
//! let svc = ServiceBuilder::new()
//!     .layer(RetryLayer::builder().max_attempts(3).build()?)
//!     .service(service_fn(|x: u32| async move { Ok::<_, BoxError>(x + 1) }));
//! assert_eq!(tokio::spawn(svc.clone().oneshot(1)).await??, 2);
//!
//! let mut calls = tokio::task::JoinSet::new();
//! for x in 0..3 {
//!     calls.spawn(svc.clone().oneshot(x));
//! }
//! let mut answers: Vec<u32> = calls.join_all().await.into_iter().collect::<Result<_, _>>()?;
//! answers.sort_unstable();
//! assert_eq!(answers, [1, 2, 3]);
//! # Ok(()) }
//! ```
//!
//! What does **not** help: writing the closure's return type out (`|x| -> … BoxError`), or
//! mapping errors with `BoxError::from` or a closure into `BoxError` — each puts a type that
//! mentions `BoxError` back into the stack. If you must map an error, map it with a named
//! function (`fn to_box_error(e: MyError) -> BoxError { Box::new(e) }`), whose type carries no
//! lifetime.
//!
//! # In an axum handler
//!
//! An axum route built from palisade layers (`Router::route_layer(ServiceBuilder::new()
//! .with_http_rejections().layer(…))`) is not affected: axum erases the handler's type. The
//! workarounds above matter for a *client* stack the handler calls, stored in the router's
//! state:
//!
//! ```
//! # use palisade::prelude::*;
//! use axum::extract::State;
//! use axum::routing::get;
//! use axum::Router;
//! use tower::util::BoxCloneSyncService;
//! # use tower::{service_fn, ServiceBuilder, ServiceExt};
//!
//! type Backend = BoxCloneSyncService<u32, u32, BoxError>;
//!
//! async fn handler(State(backend): State<Backend>) -> Result<String, String> {
//!     let n = backend.oneshot(41).await.map_err(|e| e.to_string())?;
//!     Ok(n.to_string())
//! }
//!
//! # fn main() -> Result<(), BoxError> {
//! let backend: Backend = BoxCloneSyncService::new(
//!     ServiceBuilder::new()
//!         .layer(RetryLayer::new(3))
//!         .service(service_fn(|x: u32| async move { Ok::<_, BoxError>(x + 1) })),
//! );
//! let app: Router = Router::new().route("/", get(handler)).with_state(backend);
//! # let _ = app;
//! # Ok(()) }
//! ```
//!
//! [`BoxError`]: crate::BoxError
