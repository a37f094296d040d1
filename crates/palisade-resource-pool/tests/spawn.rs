#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

//! Compile tests (issue 15, kind 9): pools whose user closures return `BoxError` can be
//! awaited from spawned tasks, a `JoinSet` and an axum-style handler, and their types can be
//! named and stored. Each function here failed to compile with "implementation of `From` is
//! not general enough" (rust-lang/rust#64552) while `lifecycle_fn` kept the closure type.
//! (The service pool's half is palisade-pool's `tests/spawn.rs`.)

use std::future::Future;

use palisade_core::BoxError;
use palisade_resource_pool::{lifecycle_fn, Lifecycle, LifecycleFn, ResourcePool};

/// A resource pool stored in application state: its type is nameable.
#[derive(Clone)]
struct AppState {
    db: ResourcePool<LifecycleFn<u32>>,
}

fn db() -> ResourcePool<LifecycleFn<u32>> {
    ResourcePool::builder(
        lifecycle_fn(|| async { Ok::<_, BoxError>(7u32) }).on_destroy(|_conn: u32| async {}),
    )
    .max_size(2)
    .build()
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
    let n = state.db.execute(async |conn: &mut u32| *conn).await.unwrap();
    format!("{}", n * 2)
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn pool_futures_can_be_spawned() {
    let pool = db();
    let p = pool.clone();
    let n = tokio::spawn(async move { p.execute(async |c: &mut u32| *c + 1).await.unwrap() }).await.unwrap();
    assert_eq!(n, 8);
    let p = pool.clone();
    let conn = tokio::spawn(async move { *p.acquire().await.unwrap() }).await.unwrap();
    assert_eq!(conn, 7);
    let p = pool.clone();
    tokio::spawn(async move { p.fill().await.unwrap() }).await.unwrap();
    tokio::spawn(async move { pool.close().await }).await.unwrap();
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn pool_futures_can_join_a_join_set() {
    let pool = db();
    let mut set = tokio::task::JoinSet::new();
    for k in 0..4u32 {
        let p = pool.clone();
        set.spawn(async move { p.execute(async move |c: &mut u32| *c + k).await.unwrap() });
    }
    let mut got = set.join_all().await;
    got.sort_unstable();
    assert_eq!(got, vec![7, 8, 9, 10]);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn pools_serve_an_axum_style_handler() {
    let handler = route(handler);
    let state = AppState { db: db() };
    let answer = tokio::spawn(handler(State(state.clone()))).await.unwrap();
    assert_eq!(answer, "14");
    // A closure handler capturing nothing, as `Router::route("/", get(|State(s)| …))`.
    let inline = route(|State(state): State<AppState>| async move {
        state.db.execute(async |c: &mut u32| c.to_string()).await.unwrap()
    });
    assert_eq!(tokio::spawn(inline(State(state))).await.unwrap(), "7");
}

/// A hand-written `Lifecycle` with `BoxError` as its error: its pool's futures spawn too.
struct Conns;

impl Lifecycle for Conns {
    type Resource = u32;
    type Error = BoxError;

    async fn create(&self) -> Result<u32, BoxError> {
        Ok(5)
    }

    async fn recycle(&self, _: &mut u32) -> Result<(), BoxError> {
        Ok(())
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_hand_written_lifecycle_pool_can_be_spawned() {
    let pool: ResourcePool<Conns> = ResourcePool::builder(Conns).min_size(1).max_size(2).build().unwrap();
    let p = pool.clone();
    assert_eq!(
        tokio::spawn(async move { p.execute(async |c: &mut u32| *c).await.unwrap() }).await.unwrap(),
        5
    );
    tokio::spawn(async move { pool.close().await }).await.unwrap();
}
