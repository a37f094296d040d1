#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

//! Compile tests (issue 15, kind 9): pools whose user closures return `BoxError` can be
//! awaited from spawned tasks, a `JoinSet` and an axum-style handler, and their types can be
//! named and stored. Each function here failed to compile with "implementation of `From` is
//! not general enough" (rust-lang/rust#64552). (The resource pool's half is
//! palisade-resource-pool's `tests/spawn.rs`.)

use std::future::Future;
use std::time::Duration;

use palisade_core::BoxError;
use palisade_pool::{make_fn, Pool};
use tower::ServiceExt;

/// A service pool stored in application state: its type is nameable.
#[derive(Clone)]
struct AppState {
    workers: Pool<u32, u32>,
}

fn workers() -> Pool<u32, u32> {
    Pool::builder()
        .min_size(1)
        .max_size(2)
        .build(make_fn(|| async {
            Ok::<_, BoxError>(tower::service_fn(|x: u32| async move { Ok::<_, BoxError>(x * 2) }))
        }))
        .unwrap()
}

/// The shape axum requires of a handler: a `Clone + Send` function of the extracted state
/// returning a `Send + 'static` future.
fn route<H, Fut>(handler: H) -> H
where
    H: Fn(State<AppState>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = String> + Send + 'static,
{
    handler
}

/// axum's `State` extractor, reduced to its shape.
struct State<T>(T);

async fn handler(State(state): State<AppState>) -> String {
    let n = 7;
    let doubled = state.workers.clone().oneshot(n).await.unwrap();
    format!("{doubled}")
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn pool_service_futures_can_be_spawned() {
    let svc = workers();
    let s = svc.clone();
    assert_eq!(tokio::spawn(async move { s.oneshot(4).await.unwrap() }).await.unwrap(), 8);
    let s = svc.clone();
    let batch = tokio::spawn(async move { s.submit_batch(0..3).await }).await.unwrap();
    assert_eq!(batch.into_iter().map(Result::unwrap).collect::<Vec<_>>(), vec![0, 2, 4]);
    let handle = svc.handle();
    let report = tokio::spawn(async move { handle.shutdown(Duration::from_secs(1)).await }).await.unwrap();
    assert!(report.drained);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn pools_serve_an_axum_style_handler() {
    let handler = route(handler);
    let state = AppState { workers: workers() };
    let answer = tokio::spawn(handler(State(state.clone()))).await.unwrap();
    assert_eq!(answer, "14");
    // A closure handler capturing nothing, as `Router::route("/", get(|State(s)| …))`.
    let inline = route(|State(state): State<AppState>| async move {
        state.workers.clone().oneshot(3).await.unwrap().to_string()
    });
    assert_eq!(tokio::spawn(inline(State(state))).await.unwrap(), "6");
}
