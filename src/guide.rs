//! Guide: whole stacks for the common cases, and how to name, store and spawn them.
//!
//! This module holds documentation only; every example on these pages is compiled and run
//! by `cargo test -p palisade --all-features --doc`.
//!
//! # Recipes
//!
//! | recipe | what it builds | features |
//! |---|---|---|
//! | [`axum_server`] | an axum server: HTTP rejections, a per-IP rate limit, a bulkhead, a timeout and a breaker | `rate-limit`, `bulkhead`, `timeout`, `circuit-breaker`, `http` |
//! | [`http_client`] | a hyper or tonic client: a total timeout, retry with a budget, a breaker, a timeout per attempt | `retry`, `circuit-breaker`, `timeout`, `http` |
//! | [`process_pool`] | a pool of worker processes: [`MakeWorker`](crate::process::MakeWorker) under a [`Pool`](crate::pool::Pool), behind a bulkhead and a retry | `process`, `pool`, `bulkhead`, `retry` |
//! | [`pipeline`] | a staged pipeline over a stream, a layer on one stage | `pipeline`, `retry` |
//!
//! The order of layers in every recipe is the README's "Layer order": rejections → rate limit
//! → bulkhead → timeout (total) → retry → circuit breaker → timeout (per attempt) → service.
//!
//! Every shape in [Naming a stack](#naming-a-stack) below is also built and used inside
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

/// Recipe: an axum server behind HTTP rejections, a per-IP rate limit, a bulkhead, a timeout
/// and a circuit breaker.
///
/// Each layer refuses with a typed rejection; [`with_http_rejections`] outermost turns them
/// into responses (429 + `Retry-After` for the rate limit, 503 for the bulkhead and the open
/// breaker, 504 for the timeout), so the stack's error is `Infallible` and it goes straight
/// into [`Router::route_layer`](https://docs.rs/axum/0.8/axum/struct.Router.html#method.route_layer)
/// with no `HandleErrorLayer`.
///
/// The client's IP comes from axum's `ConnectInfo`, which axum adds only when the server is
/// started with `into_make_service_with_connect_info::<SocketAddr>()`. A request without it
/// has no key: it is refused with [`KeyMissing`](crate::rejection::KeyMissing) (a 500: a
/// deployment mistake, logged once), the default [`Unkeyed::Reject`](crate::keyed::Unkeyed);
/// `when_unkeyed` chooses otherwise. The key map holds at most `max_keys` IPs.
///
/// ```
/// use std::net::{IpAddr, SocketAddr};
/// use std::time::Duration;
///
/// use axum::body::Body;
/// use axum::extract::ConnectInfo;
/// use axum::http::{Request, StatusCode};
/// use axum::routing::get;
/// use axum::Router;
/// use palisade::prelude::*;
/// use tower::{ServiceBuilder, ServiceExt};
///
/// /// The client's IP, put in the request by `into_make_service_with_connect_info`.
/// fn client_ip(req: &Request<Body>) -> Option<IpAddr> {
///     req.extensions().get::<ConnectInfo<SocketAddr>>().map(|info| info.0.ip())
/// }
///
/// fn app() -> Result<Router, ConfigError> {
///     let per_ip = RateLimitLayer::builder()
///         .name("per-ip")
///         .quota(Quota::per_second(2).burst(2))
///         .keyed(client_ip)
///         .max_keys(100_000)
///         .build()?;
///     let bulkhead = BulkheadLayer::builder()
///         .name("orders")
///         .max_concurrent(64)
///         .retry_after(Duration::from_secs(1))
///         .build()?;
///     let breaker = CircuitBreakerLayer::builder()
///         .name("orders")
///         .classifier(HttpClassifier::new()) // 5xx are failures
///         .failure_rate(0.5) // opens at 50 % failures
///         .wait_in_open(Duration::from_secs(10))
///         .build()?;
///     let stack = ServiceBuilder::new()
///         .with_http_rejections()
///         .with_rate_limit(per_ip)
///         .with_bulkhead(bulkhead)
///         .with_timeout(TimeoutLayer::new(Duration::from_secs(2)))
///         .with_circuit_breaker(breaker);
///     Ok(Router::new()
///         .route("/orders", get(|| async { "orders" }))
///         .route("/report", get(|| async {
///             tokio::time::sleep(Duration::from_secs(60)).await; // too slow
///             "report"
///         }))
///         .route_layer(stack))
/// }
///
/// /// Serving it: `ConnectInfo` is there only with `into_make_service_with_connect_info`.
/// async fn serve(app: Router) -> std::io::Result<()> {
///     let listener = tokio::net::TcpListener::bind("0.0.0.0:3000").await?;
///     axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await
/// }
///
/// /// A request as the server hands it to the router.
/// fn from(ip: [u8; 4], path: &str) -> Request<Body> {
///     let mut req = Request::get(path).body(Body::empty()).unwrap();
///     req.extensions_mut().insert(ConnectInfo(SocketAddr::from((ip, 40_000))));
///     req
/// }
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), BoxError> {
/// let app = app()?;
/// # let _ = serve;
/// // Two requests a second per IP, a burst of two: the third is refused with a 429.
/// for _ in 0..2 {
///     assert_eq!(app.clone().oneshot(from([10, 0, 0, 1], "/orders")).await?.status(), StatusCode::OK);
/// }
/// let refused = app.clone().oneshot(from([10, 0, 0, 1], "/orders")).await?;
/// assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
/// assert_eq!(refused.headers()["retry-after"], "1");
/// // Another IP has its own limit (every clone of the router shares the limits).
/// assert_eq!(app.clone().oneshot(from([10, 0, 0, 2], "/orders")).await?.status(), StatusCode::OK);
///
/// // A handler slower than the timeout answers 504 Gateway Timeout.
/// let slow = app.clone().oneshot(from([10, 0, 0, 3], "/report")).await?;
/// assert_eq!(slow.status(), StatusCode::GATEWAY_TIMEOUT);
///
/// // No `ConnectInfo` (served without `into_make_service_with_connect_info`): no key.
/// let unkeyed = app.oneshot(Request::get("/orders").body(Body::empty())?).await?;
/// assert_eq!(unkeyed.status(), StatusCode::INTERNAL_SERVER_ERROR);
/// # Ok(()) }
/// ```
///
/// [`with_http_rejections`]: crate::ServiceBuilderExt::with_http_rejections
#[cfg(all(
    feature = "rate-limit",
    feature = "bulkhead",
    feature = "timeout",
    feature = "circuit-breaker",
    feature = "http"
))]
#[cfg_attr(
    docsrs,
    doc(cfg(all(
        feature = "rate-limit",
        feature = "bulkhead",
        feature = "timeout",
        feature = "circuit-breaker",
        feature = "http"
    )))
)]
pub mod axum_server {}

/// Recipe: a client stack — a total timeout, retry with a budget, a circuit breaker and a
/// timeout per attempt — around a hyper or tonic client.
///
/// The stack does not care what the client is: here a [`service_fn`] stands in for
/// [hyper-util's `Client`](https://docs.rs/hyper-util/0.1/hyper_util/client/legacy/struct.Client.html)
/// (the crate's `tests/hyper.rs` runs this shape against real hyper servers). A request is
/// sent again only when it can be replayed: an `http::Request` whose body is `Clone`
/// (`Full<Bytes>`, `String`) is cloned; a streaming body (tonic's, hyper's `Incoming`) is made
/// replayable with [`BufferBodyLayer`](crate::retry::http::BufferBodyLayer) and
/// [`HttpReplay`](crate::retry::http::HttpReplay), as the README's tonic example does.
///
/// - the **total timeout** bounds the caller's wait, retries included;
/// - **retry** sends a retryable failure (a 503, a 429, a timed-out attempt) again, with
///   backoff, at most `max_attempts` times, and only while the [budget](crate::retry::RetryBudget)
///   (Finagle's: 20 % of recent requests plus 10 a second) has room, so a failing backend is
///   not hit by a retry storm;
/// - the **breaker** opens on the failure rate and refuses at once while open (an open breaker
///   is not retried);
/// - the **per-attempt timeout** turns a hung attempt into a failure the breaker counts.
///
/// ```
/// use std::convert::Infallible;
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use std::sync::Arc;
/// use std::time::Duration;
///
/// use http::{Request, Response, StatusCode};
/// use palisade::prelude::*;
/// use tower::{service_fn, ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), BoxError> {
/// // The backend: answers 503 twice, then 200.
/// let calls = Arc::new(AtomicUsize::new(0));
/// let seen = calls.clone();
/// let client = service_fn(move |_req: Request<String>| {
///     let n = seen.fetch_add(1, Ordering::SeqCst);
///     async move {
///         let status = if n < 2 { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK };
///         Ok::<_, Infallible>(Response::builder().status(status).body(String::from("stock: 7")).unwrap())
///     }
/// });
///
/// let retry = RetryLayer::builder()
///     .name("inventory")
///     .classifier(HttpClassifier::new())
///     .max_attempts(3)
///     .backoff(Backoff::exponential(Duration::from_millis(50)))
///     .jitter(Jitter::Full)
///     .budget(RetryBudget::ratio(Duration::from_secs(10), 10, 0.2)?)
///     .build()?;
/// let retries = retry.handle();
/// let breaker = CircuitBreakerLayer::builder()
///     .name("inventory")
///     .classifier(HttpClassifier::new())
///     .failure_rate(0.5) // opens at 50 % failures
///     .build()?;
/// let inventory = ServiceBuilder::new()
///     .with_timeout(TimeoutLayer::new(Duration::from_secs(5))) // total
///     .with_retry(retry)
///     .with_circuit_breaker(breaker)
///     .with_timeout(TimeoutLayer::new(Duration::from_secs(1))) // per attempt
///     .service(client);
///
/// let req = Request::get("http://inventory.internal/items/42").body(String::new())?;
/// let res = inventory.oneshot(req).await?;
/// assert_eq!(res.status(), StatusCode::OK);
/// assert_eq!(calls.load(Ordering::SeqCst), 3); // two 503s retried
/// assert_eq!(retries.snapshot().retries, 2);
/// # Ok(()) }
/// ```
///
/// [`service_fn`]: https://docs.rs/tower/0.5/tower/fn.service_fn.html
#[cfg(all(feature = "retry", feature = "circuit-breaker", feature = "timeout", feature = "http"))]
#[cfg_attr(
    docsrs,
    doc(cfg(all(feature = "retry", feature = "circuit-breaker", feature = "timeout", feature = "http")))
)]
pub mod http_client {}

/// Recipe: a pool of worker processes behind a bulkhead and a retry.
///
/// A worker is a long-lived child process answering framed requests on stdin/stdout; the
/// worker side is one call to [`serve_stdio`](crate::process::worker::serve_stdio). A
/// [`MakeWorker`](crate::process::MakeWorker) spawns one per call (it is a `MakeService`), and a
/// [`Pool`](crate::pool::Pool) over it keeps between `min_size` and `max_size` of them, grows
/// under load, retires idle ones, and replaces one that crashes. In front:
///
/// - a **bulkhead** bounds the jobs in flight; the rest wait for a permit (here without
///   bound: backpressure) — set [`when_full`](crate::bulkhead::BulkheadBuilder::when_full) to
///   refuse instead;
/// - a **retry** sends a job again only when it was lost *with its worker* (the process died
///   under it), never an error the worker answered, which it would answer again.
///
/// The program below is its own worker: run with `--worker`, it serves; without, it starts a
/// pool of copies of itself (the crate's `examples/worker_pool.rs` is the long form).
///
/// ```
/// use std::convert::Infallible;
/// use std::time::Duration;
///
/// use palisade::classify::{ClassifyExt, DefaultClassifier};
/// use palisade::pool::Pool;
/// use palisade::prelude::*;
/// use palisade::process::codec::LengthPrefixed;
/// use palisade::process::worker::serve_stdio;
/// use palisade::process::{MakeWorker, WorkerError};
/// use tower::{ServiceBuilder, ServiceExt};
///
/// fn main() -> Result<(), BoxError> {
///     let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
///     if std::env::args().any(|arg| arg == "--worker") {
///         // The worker: one request at a time or many, until the pool closes its stdin.
///         let upper = |job: Vec<u8>| async move { Ok::<_, Infallible>(job.to_ascii_uppercase()) };
///         return Ok(runtime.block_on(serve_stdio(LengthPrefixed, upper))?);
///     }
///     runtime.block_on(pool())
/// }
///
/// /// Whether a job failed because its worker went away.
/// fn lost_with_its_worker(result: &Result<Vec<u8>, BoxError>) -> bool {
///     matches!(result, Err(e) if e.downcast_ref::<WorkerError>().is_some_and(WorkerError::is_fatal))
/// }
///
/// async fn pool() -> Result<(), BoxError> {
///     let make = MakeWorker::builder(std::env::current_exe()?)
///         .name("upper")
///         .arg("--worker")
///         .max_in_flight(4) // jobs in flight on one worker
///         .build()?;
///     let workers = make.handle();
///     let pool = Pool::builder()
///         .name("upper")
///         .min_size(1)
///         .max_size(3)
///         .member_concurrency(4)
///         .build(make)?;
///     let members = pool.handle();
///
///     let service = ServiceBuilder::new()
///         .with_bulkhead(
///             BulkheadLayer::builder()
///                 .name("upper")
///                 .max_concurrent(8)
///                 .when_full(WhenFull::wait(Duration::MAX))
///                 .build()?,
///         )
///         .with_retry(
///             RetryLayer::builder()
///                 .name("upper")
///                 .classifier(DefaultClassifier.retryable_if(lost_with_its_worker))
///                 .max_attempts(3)
///                 .build()?,
///         )
///         .service(pool);
///
///     let mut jobs = tokio::task::JoinSet::new();
///     for word in ["tower", "pool", "worker", "process", "bulkhead", "retry"] {
///         jobs.spawn(service.clone().oneshot(word.as_bytes().to_vec()));
///     }
///     let mut answers: Vec<String> = Vec::new();
///     while let Some(answer) = jobs.join_next().await {
///         answers.push(String::from_utf8(answer??)?);
///     }
///     answers.sort();
///     assert_eq!(answers, ["BULKHEAD", "POOL", "PROCESS", "RETRY", "TOWER", "WORKER"]);
///
///     // Shutdown drains the pool: the workers finish their jobs, see stdin close and exit.
///     drop(service);
///     let report = members.shutdown(Duration::from_secs(5)).await;
///     assert!(report.drained);
///     assert!(workers.snapshot().spawned >= 1);
///     Ok(())
/// }
/// ```
#[cfg(all(feature = "process", feature = "pool", feature = "bulkhead", feature = "retry"))]
#[cfg_attr(
    docsrs,
    doc(cfg(all(feature = "process", feature = "pool", feature = "bulkhead", feature = "retry")))
)]
pub mod process_pool {}

/// Recipe: a pipeline of typed stages over a stream, with a layer on one stage.
///
/// [`PipelineService::builder`](crate::pipeline::PipelineService::builder) chains stages, each
/// any tower `Service` (or a closure), each stage's response the next one's request. Over a
/// stream ([`process_stream`](crate::pipeline::PipelineService::process_stream)), every stage
/// runs with its own concurrency and a bounded buffer to the next, so a slow stage slows the
/// source and memory stays bounded; a failed item comes out as a
/// [`StageError`](crate::pipeline::StageError) naming its stage, and the stream goes on.
/// [`layered`](crate::pipeline::PipelineBuilder::layered) puts any layer around one stage:
/// here a retry around the flaky lookup only.
///
/// ```
/// use std::collections::HashSet;
/// use std::sync::{Arc, Mutex};
/// use std::time::Duration;
///
/// use futures_util::{stream, StreamExt};
/// use palisade::pipeline::PipelineService;
/// use palisade::prelude::*;
/// use tower::service_fn;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), BoxError> {
/// // The lookup fails the first time it sees each id (a flaky backend).
/// let seen = Arc::new(Mutex::new(HashSet::new()));
/// let lookup = service_fn(move |id: u32| {
///     let first_time = seen.lock().unwrap().insert(id);
///     async move {
///         if first_time {
///             return Err(std::io::Error::other("connection reset"));
///         }
///         Ok(format!("user-{id}"))
///     }
/// });
/// let retry = RetryLayer::builder()
///     .name("lookup")
///     .max_attempts(2)
///     .backoff(Backoff::fixed(Duration::from_millis(10)))
///     .build()?;
///
/// let pipeline = PipelineService::builder::<u32>()
///     .name("users")
///     .filter("skip-zero", |id: &u32| *id != 0)
///     .layered("lookup", retry, lookup)
///     .concurrency(4) // four lookups at once
///     .map("shout", |name: String| name.to_uppercase())
///     .build()?;
///
/// let mut names: Vec<String> = pipeline
///     .process_stream(stream::iter(0..5u32))
///     .map(|result| result.expect("each lookup succeeds on its retry"))
///     .collect()
///     .await;
/// names.sort();
/// assert_eq!(names, ["USER-1", "USER-2", "USER-3", "USER-4"]);
/// assert_eq!(pipeline.handle().snapshot().stage("skip-zero").unwrap().filtered, 1);
/// # Ok(()) }
/// ```
#[cfg(all(feature = "pipeline", feature = "retry"))]
#[cfg_attr(docsrs, doc(cfg(all(feature = "pipeline", feature = "retry"))))]
pub mod pipeline {}
