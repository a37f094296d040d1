#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
//! Compile tests: every stack shape the guide (`palisade::guide`) documents is used inside
//! `tokio::spawn`, a `JoinSet` and an axum handler — the three places where rustc checks a
//! future for `Send` and where rust-lang/rust#64552 ("implementation of `From` is not general
//! enough") bites. The uses are written out with concrete types (macros, not generic helper
//! functions: a generic function would prove `Send` from its where-clauses and hide the bug).
//! Each test also runs its calls, so a shape that compiles but misbehaves fails too.

use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::routing::get;
use axum::Router;
use futures_util::future::BoxFuture;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use palisade::circuit_breaker::CircuitBreaker;
use palisade::classify::DefaultClassifier;
use palisade::prelude::*;
use palisade::retry::replay::CloneRequest;
use palisade::retry::Retry;
use palisade::timeout::{FixedTimeout, Timeout};
use tower::util::BoxCloneSyncService;
use tower::{service_fn, Service, ServiceBuilder, ServiceExt};

// === the uses ===

/// Calls `$svc` (a `Service<u32, Response = u32>`, `Clone`) from an async block in
/// `tokio::spawn`, from async blocks in a `JoinSet`, and from an axum handler.
macro_rules! use_in_tasks_and_handlers {
    ($svc:expr) => {{
        let svc = $svc;

        let s = svc.clone();
        let answer = tokio::spawn(async move { s.oneshot(1).await }).await.unwrap();
        assert_eq!(answer.unwrap(), 2);

        let mut set = tokio::task::JoinSet::new();
        for n in 0..3u32 {
            let s = svc.clone();
            set.spawn(async move { s.oneshot(n).await });
        }
        let mut answers: Vec<u32> = set.join_all().await.into_iter().map(Result::unwrap).collect();
        answers.sort_unstable();
        assert_eq!(answers, [1, 2, 3]);

        let s = svc.clone();
        let app: Router = Router::new().route(
            "/",
            get(move || {
                let s = s.clone();
                async move {
                    match s.oneshot(41).await {
                        Ok(n) => (StatusCode::OK, n.to_string()),
                        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
                    }
                }
            }),
        );
        assert_eq!(get_body(app).await, "42");
    }};
}

/// The same with the `oneshot` future handed to `spawn` as is (no async block around it).
macro_rules! spawn_oneshot_directly {
    ($svc:expr) => {{
        let svc = $svc;

        let answer = tokio::spawn(svc.clone().oneshot(1)).await.unwrap();
        assert_eq!(answer.unwrap(), 2);

        let mut set = tokio::task::JoinSet::new();
        for n in 0..3u32 {
            set.spawn(svc.clone().oneshot(n));
        }
        let mut answers: Vec<u32> = set.join_all().await.into_iter().map(Result::unwrap).collect();
        answers.sort_unstable();
        assert_eq!(answers, [1, 2, 3]);

        // In a handler: the handler's own future only holds the JoinHandle.
        let s = svc.clone();
        let app: Router = Router::new().route(
            "/",
            get(move || {
                let call = tokio::spawn(s.clone().oneshot(41));
                async move {
                    match call.await {
                        Ok(Ok(n)) => (StatusCode::OK, n.to_string()),
                        Ok(Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
                        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
                    }
                }
            }),
        );
        assert_eq!(get_body(app).await, "42");
    }};
}

async fn get_body(app: Router) -> String {
    let res = app.oneshot(Request::get("/").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
}

// === the layers ===

fn timeout() -> TimeoutLayer {
    TimeoutLayer::new(Duration::from_secs(5))
}

fn retry() -> RetryLayer {
    RetryLayer::builder().max_attempts(3).build().unwrap()
}

fn breaker() -> CircuitBreakerLayer {
    CircuitBreakerLayer::builder().consecutive_failures(5).build().unwrap()
}

// === shape 1: the inner service's error type has no lifetime ===

/// A lifetime-free error (unlike `BoxError`, whose `dyn Error` carries a `'static` bound).
#[derive(Debug)]
struct BackendError;

impl std::fmt::Display for BackendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("backend failed")
    }
}

impl std::error::Error for BackendError {}

#[tokio::test]
async fn closure_with_a_concrete_error_type() {
    use_in_tasks_and_handlers!(ServiceBuilder::new()
        .layer(timeout())
        .layer(retry())
        .layer(breaker())
        .service(service_fn(|x: u32| async move { Ok::<_, BackendError>(x + 1) })));
}

#[tokio::test]
async fn closure_with_io_error() {
    use_in_tasks_and_handlers!(ServiceBuilder::new()
        .layer(retry())
        .layer(breaker())
        .service(service_fn(|x: u32| async move { Ok::<_, std::io::Error>(x + 1) })));
}

// === shape 2: an `async fn` instead of a closure ===

async fn add_one(x: u32) -> Result<u32, BoxError> {
    Ok(x + 1)
}

#[tokio::test]
async fn async_fn_returning_box_error() {
    use_in_tasks_and_handlers!(ServiceBuilder::new()
        .layer(timeout())
        .layer(retry())
        .layer(breaker())
        .service(service_fn(add_one)));
}

// === shape 3: the outermost stack boxed as BoxCloneSyncService ===

/// The name to store: one allocation per call buys a short, stable type.
type BoxedStack = BoxCloneSyncService<u32, u32, BoxError>;

fn boxed_stack() -> BoxedStack {
    BoxCloneSyncService::new(
        ServiceBuilder::new()
            .layer(timeout())
            .layer(retry())
            .layer(breaker())
            .service(service_fn(|x: u32| async move { Ok::<_, BoxError>(x + 1) })),
    )
}

#[tokio::test]
async fn closure_returning_box_error_boxed_outermost() {
    use_in_tasks_and_handlers!(boxed_stack());
}

// === shape 4: the oneshot future spawned as is ===

#[tokio::test]
async fn closure_returning_box_error_spawned_directly() {
    spawn_oneshot_directly!(ServiceBuilder::new()
        .layer(timeout())
        .layer(retry())
        .layer(breaker())
        .service(service_fn(|x: u32| async move { Ok::<_, BoxError>(x + 1) })));
}

// === shape 5: a named stack (type alias) stored in a struct and in axum's state ===

/// The inner service as a named type: a struct implementing `Service`.
#[derive(Clone, Debug)]
struct Backend;

impl Service<u32> for Backend {
    type Response = u32;
    type Error = BoxError;
    type Future = std::future::Ready<Result<u32, BoxError>>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), BoxError>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, x: u32) -> Self::Future {
        std::future::ready(Ok(x + 1))
    }
}

/// The stack's type, outermost layer first, every type parameter spelled out.
type BackendStack =
    Timeout<Retry<CircuitBreaker<Backend, DefaultClassifier>, DefaultClassifier, CloneRequest>, FixedTimeout>;

fn backend_stack() -> BackendStack {
    ServiceBuilder::new().layer(timeout()).layer(retry()).layer(breaker()).service(Backend)
}

#[derive(Clone)]
struct AppState {
    backend: BackendStack,
}

async fn handler(State(state): State<AppState>) -> Result<String, (StatusCode, String)> {
    let n = state.backend.oneshot(41).await.map_err(|e| (StatusCode::BAD_GATEWAY, e.to_string()))?;
    Ok(n.to_string())
}

#[tokio::test]
async fn named_stack_in_a_struct_and_in_axum_state() {
    let state = AppState { backend: backend_stack() };
    let app = Router::new().route("/", get(handler)).with_state(state.clone());
    assert_eq!(get_body(app).await, "42");
    use_in_tasks_and_handlers!(state.backend);
}

// === shape 6: a closure returning BoxError, with the future boxed at the call ===

#[tokio::test]
async fn closure_returning_box_error_with_the_call_boxed() {
    let svc = ServiceBuilder::new()
        .layer(timeout())
        .layer(retry())
        .layer(breaker())
        .service(service_fn(|x: u32| async move { Ok::<_, BoxError>(x + 1) }));
    // Coercing to `dyn Future + Send` proves `Send` for the concrete future type, outside of
    // any async block, so the blocks below only hold a `Pin<Box<dyn Future + Send>>`.
    let mut set = tokio::task::JoinSet::new();
    for n in 0..3u32 {
        let call: BoxFuture<'static, Result<u32, BoxError>> = Box::pin(svc.clone().oneshot(n));
        set.spawn(async move { (n, call.await) });
    }
    for (n, answer) in set.join_all().await {
        assert_eq!(answer.unwrap(), n + 1);
    }

    let app: Router = Router::new().route(
        "/",
        get(move || {
            let call: BoxFuture<'static, Result<u32, BoxError>> = Box::pin(svc.clone().oneshot(41));
            async move {
                match call.await {
                    Ok(n) => (StatusCode::OK, n.to_string()),
                    Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
                }
            }
        }),
    );
    assert_eq!(get_body(app).await, "42");
}

// === shape 7: a concrete client error mapped with a named function ===

/// A named function's type carries no lifetime, unlike `BoxError::from` or a closure.
fn to_box_error(e: BackendError) -> BoxError {
    Box::new(e)
}

#[tokio::test]
async fn concrete_error_mapped_by_a_named_function() {
    use_in_tasks_and_handlers!(ServiceBuilder::new()
        .layer(retry())
        .layer(breaker())
        .map_err(to_box_error)
        .service(service_fn(|x: u32| async move { Ok::<_, BackendError>(x + 1) })));
}
