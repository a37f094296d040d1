#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
//! Review wave 4: user code that panics inside a [`Supervised`] service (its make future,
//! an incarnation's `poll_ready`, `call` or response future) is a failure the supervisor
//! sees — the service heals instead of panicking forever or never restarting.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::{stream, StreamExt};
use palisade_core::panic::Panicked;
use palisade_core::BoxError;
use palisade_pipeline::supervise::{make_fn, Supervised};
use palisade_pipeline::PipelineService;
use tower::{service_fn, Service, ServiceExt};

/// Where an incarnation panics.
#[derive(Clone, Copy, PartialEq)]
enum PanicAt {
    PollReady,
    Call,
    Response,
}

/// A service that panics at `at` on every call.
#[derive(Clone)]
struct Panicky {
    at: PanicAt,
}

impl Service<u32> for Panicky {
    type Response = u32;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<u32, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        assert!(self.at != PanicAt::PollReady, "poll_ready panics");
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, x: u32) -> Self::Future {
        assert!(self.at != PanicAt::Call, "call panics");
        let at = self.at;
        Box::pin(async move {
            tokio::task::yield_now().await;
            assert!(at != PanicAt::Response, "response panics");
            Ok(x)
        })
    }
}

/// Makes a panicking incarnation first, healthy ones afterwards; counts makes.
fn first_incarnation_panics(
    at: PanicAt,
    made: Arc<AtomicU32>,
) -> impl Service<
    (),
    Response = tower::util::Either<
        Panicky,
        tower::util::ServiceFn<fn(u32) -> std::future::Ready<Result<u32, BoxError>>>,
    >,
    Error = BoxError,
    Future = impl Future<
        Output = Result<
            tower::util::Either<
                Panicky,
                tower::util::ServiceFn<fn(u32) -> std::future::Ready<Result<u32, BoxError>>>,
            >,
            BoxError,
        >,
    > + Send
                 + 'static,
> + Clone
       + Send
       + 'static {
    make_fn(move || {
        let n = made.fetch_add(1, Ordering::SeqCst);
        async move {
            let healthy: fn(u32) -> std::future::Ready<Result<u32, BoxError>> = |x| std::future::ready(Ok(x));
            Ok::<_, BoxError>(if n == 0 {
                tower::util::Either::Left(Panicky { at })
            } else {
                tower::util::Either::Right(service_fn(healthy))
            })
        }
    })
}

async fn one_call<S>(svc: &mut S, x: u32) -> Result<u32, BoxError>
where
    S: Service<u32, Response = u32, Error = BoxError>,
{
    // The test runs under `catch_unwind` semantics of its own: a panic escaping the
    // supervised service fails the test.
    svc.ready().await?.call(x).await
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_panicking_response_future_counts_as_a_failure_and_restarts_the_service() {
    for at in [PanicAt::PollReady, PanicAt::Call, PanicAt::Response] {
        let made = Arc::new(AtomicU32::new(0));
        let mut svc =
            Supervised::builder().restart_after(2).build(first_incarnation_panics(at, made.clone())).unwrap();
        // Two panics: two typed errors, and the supervisor restarts the incarnation.
        for _ in 0..2 {
            let err = one_call(&mut svc, 1).await.unwrap_err();
            assert!(err.is::<Panicked>(), "a typed Panicked, not {err}");
        }
        assert_eq!(svc.restarts(), 1, "two panics in a row are two failures");
        assert_eq!(one_call(&mut svc, 7).await.unwrap(), 7, "the fresh incarnation serves");
        assert_eq!(made.load(Ordering::SeqCst), 2);
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_make_future_that_panics_once_is_a_failed_make_not_a_panic_forever() {
    let makes = Arc::new(AtomicU32::new(0));
    let m = makes.clone();
    let make = make_fn(move || {
        let n = m.fetch_add(1, Ordering::SeqCst);
        async move {
            tokio::task::yield_now().await;
            assert!(n != 0, "the first make panics");
            let ok: fn(u32) -> std::future::Ready<Result<u32, BoxError>> = |x| std::future::ready(Ok(x));
            Ok::<_, BoxError>(service_fn(ok))
        }
    });
    let mut svc = Supervised::builder().restart_after(1).build(make).unwrap();
    let err = svc.ready().await.map(|_| ()).unwrap_err();
    assert!(err.is::<Panicked>(), "a typed Panicked, not {err}");
    // The next `poll_ready` makes again (as after a failed make), it does not poll the
    // panicked future again ("`async fn` resumed after panicking").
    assert_eq!(one_call(&mut svc, 3).await.unwrap(), 3);
    assert_eq!(makes.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_supervised_stage_whose_incarnation_panics_heals_inside_a_pipeline() {
    let made = Arc::new(AtomicU32::new(0));
    let stage = Supervised::builder()
        .restart_after(1)
        .build(first_incarnation_panics(PanicAt::Response, made.clone()))
        .unwrap();
    let pipeline = PipelineService::builder::<u32>().stage("healing", stage).concurrency(1).build().unwrap();
    let out: Vec<Result<u32, _>> = pipeline.process_stream(stream::iter(0..5u32)).collect().await;
    assert!(out[0].is_err(), "the item on the panicking incarnation fails alone");
    let ok: Vec<u32> = out.iter().skip(1).map(|r| *r.as_ref().unwrap()).collect();
    assert_eq!(ok, [1, 2, 3, 4], "later items are served by a fresh incarnation");
    assert_eq!(made.load(Ordering::SeqCst), 2);
}
