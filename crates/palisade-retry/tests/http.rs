#![allow(clippy::unwrap_used, clippy::expect_used, clippy::float_cmp, missing_docs)]
#![cfg(feature = "http")]

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use palisade_core::classify::HttpClassifier;
use palisade_core::BoxError;
use palisade_retry::http::{BufferBodyLayer, HttpReplay, ReplayBody};
use palisade_retry::{Backoff, GiveUpReason, Jitter, RetryBudget, RetryEvent, RetryLayer};
use tower::{service_fn, ServiceBuilder, ServiceExt};

type Seen = Arc<Mutex<Vec<(Bytes, Option<String>)>>>;

/// A backend that records each body (and the `x-id` header), answers 503 then 200.
fn backend<B>(
    seen: Seen,
) -> impl tower::Service<
    http::Request<ReplayBody<B>>,
    Response = http::Response<()>,
    Error = BoxError,
    Future = impl std::future::Future<Output = Result<http::Response<()>, BoxError>>,
> + Clone
where
    B: http_body::Body + Unpin + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    service_fn(move |req: http::Request<ReplayBody<B>>| {
        let seen = seen.clone();
        async move {
            let id = req.headers().get("x-id").map(|v| v.to_str().unwrap().to_owned());
            let body = req.into_body().collect().await.map_err(Into::into)?.to_bytes();
            let mut seen = seen.lock().unwrap();
            seen.push((body, id));
            let status = if seen.len() == 1 { 503 } else { 200 };
            Ok(http::Response::builder().status(status).body(()).unwrap())
        }
    })
}

fn retry() -> RetryLayer<HttpClassifier, HttpReplay> {
    RetryLayer::builder()
        .classifier(HttpClassifier::new())
        .replay(HttpReplay)
        .budget(RetryBudget::unlimited())
        .backoff(Backoff::fixed(Duration::from_millis(10)))
        .jitter(Jitter::None)
        .build()
        .unwrap()
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_request_body_is_retried_with_the_same_bytes() {
    let seen = Seen::default();
    let client = ServiceBuilder::new().layer(BufferBodyLayer::new(1024)).layer(retry()).service(backend::<
        Full<Bytes>,
    >(
        seen.clone(),
    ));
    let req =
        http::Request::post("http://x/").header("x-id", "7").body(Full::new(Bytes::from("payload"))).unwrap();
    assert_eq!(client.oneshot(req).await.unwrap().status(), 200);
    let seen = seen.lock().unwrap();
    assert_eq!(
        *seen,
        [(Bytes::from("payload"), Some("7".into())), (Bytes::from("payload"), Some("7".into()))]
    );
}

fn chunked(chunks: &[&'static str]) -> StreamBody<futures_stream::Iter> {
    StreamBody::new(futures_stream::Iter(
        chunks.iter().map(|c| Ok(http_body::Frame::data(Bytes::from_static(c.as_bytes())))).collect(),
    ))
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_streaming_body_within_the_limit_is_buffered_and_replayed() {
    let seen = Seen::default();
    let client =
        ServiceBuilder::new().layer(BufferBodyLayer::new(16)).layer(retry()).service(backend(seen.clone()));
    let req = http::Request::post("http://x/").body(chunked(&["ab", "cd", "ef"])).unwrap();
    assert_eq!(client.oneshot(req).await.unwrap().status(), 200);
    let bodies: Vec<Bytes> = seen.lock().unwrap().iter().map(|(b, _)| b.clone()).collect();
    assert_eq!(bodies, [Bytes::from("abcdef"), Bytes::from("abcdef")]);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_body_over_the_limit_is_sent_whole_once_and_not_retried() {
    let seen = Seen::default();
    let events = Arc::new(Mutex::new(Vec::new()));
    let log = events.clone();
    let retry = RetryLayer::builder()
        .classifier(HttpClassifier::new())
        .replay(HttpReplay)
        .on_event(move |e: &RetryEvent| log.lock().unwrap().push(e.clone()))
        .build()
        .unwrap();
    let client =
        ServiceBuilder::new().layer(BufferBodyLayer::new(3)).layer(retry).service(backend(seen.clone()));
    let req = http::Request::post("http://x/").body(chunked(&["ab", "cd", "ef"])).unwrap();
    assert_eq!(client.oneshot(req).await.unwrap().status(), 503);
    let bodies: Vec<Bytes> = seen.lock().unwrap().iter().map(|(b, _)| b.clone()).collect();
    assert_eq!(bodies, [Bytes::from("abcdef")], "the whole body, once");
    assert!(events
        .lock()
        .unwrap()
        .contains(&RetryEvent::GaveUp { attempts: 1, reason: GiveUpReason::NotReplayable }));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_clone_body_needs_no_buffering() {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let log = calls.clone();
    let svc = service_fn(move |req: http::Request<String>| {
        let log = log.clone();
        async move {
            let mut log = log.lock().unwrap();
            log.push(req.into_body());
            let status = if log.len() == 1 { 502 } else { 204 };
            Ok::<_, Infallible>(http::Response::builder().status(status).body(()).unwrap())
        }
    });
    let layer = RetryLayer::builder()
        .classifier(HttpClassifier::new())
        .backoff(Backoff::fixed(Duration::from_millis(1)))
        .build()
        .unwrap();
    let res = ServiceBuilder::new()
        .layer(layer)
        .service(svc)
        .oneshot(http::Request::new("hi".to_owned()))
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    assert_eq!(*calls.lock().unwrap(), ["hi", "hi"]);
}

/// A tiny `Stream` over a list of frames, enough for `StreamBody` (no futures dependency).
mod futures_stream {
    use std::collections::VecDeque;
    use std::convert::Infallible;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use bytes::Bytes;

    pub(crate) struct Iter(pub(crate) VecDeque<Result<http_body::Frame<Bytes>, Infallible>>);

    impl futures_core::Stream for Iter {
        type Item = Result<http_body::Frame<Bytes>, Infallible>;

        fn poll_next(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            Poll::Ready(self.0.pop_front())
        }
    }
}
