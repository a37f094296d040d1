#![allow(clippy::unwrap_used, clippy::expect_used, clippy::unnecessary_wraps, missing_docs)]
//! tonic server-streaming calls are judged by their trailers: a stream that sends two
//! messages and then ends with UNAVAILABLE is a failure for the circuit breaker and the
//! adaptive limit, although its response headers said HTTP 200; a stream the caller drops
//! before its end is ignored.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::uri::PathAndQuery;
use palisade::bulkhead::adaptive::Aimd;
use palisade::bulkhead::AdaptiveLimitLayer;
use palisade::circuit_breaker::{CircuitBreakerLayer, CircuitState};
use palisade::classify::GrpcClassifier;
use palisade::rejection::CircuitOpen;
use palisade::BoxError;
use tonic::body::Body;
use tonic::transport::Channel;
use tonic::{Code, Status, Streaming};
use tonic_prost::ProstCodec;
use tower::{Service, ServiceBuilder};

#[derive(Clone, PartialEq, prost::Message)]
pub struct CountRequest {
    /// The status the stream ends with (0 = OK), after two messages.
    #[prost(int32, tag = "1")]
    pub end_with: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct CountReply {
    #[prost(uint32, tag = "1")]
    pub n: u32,
}

type BoxFut<T> = Pin<Box<dyn Future<Output = T> + Send>>;
type ReplyStream = Pin<Box<dyn futures_util::Stream<Item = Result<CountReply, Status>> + Send>>;

/// `Count` sends 1 and 2, then ends with the requested status (in the trailers).
struct Count;

impl tonic::server::ServerStreamingService<CountRequest> for Count {
    type Response = CountReply;
    type ResponseStream = ReplyStream;
    type Future = BoxFut<Result<tonic::Response<ReplyStream>, Status>>;

    fn call(&mut self, request: tonic::Request<CountRequest>) -> Self::Future {
        let code = Code::from_i32(request.into_inner().end_with);
        Box::pin(async move {
            let mut items = vec![Ok(CountReply { n: 1 }), Ok(CountReply { n: 2 })];
            if code != Code::Ok {
                items.push(Err(Status::new(code, "stream failed after two messages")));
            }
            let stream: ReplyStream = Box::pin(futures_util::stream::iter(items));
            Ok(tonic::Response::new(stream))
        })
    }
}

#[derive(Clone, Default)]
struct Counter {
    calls: Arc<AtomicUsize>,
}

impl tonic::server::NamedService for Counter {
    const NAME: &'static str = "palisade.test.Counter";
}

impl Service<http::Request<Body>> for Counter {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFut<Result<http::Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(ProstCodec::<CountReply, CountRequest>::default());
            Ok(grpc.server_streaming(Count, req).await)
        })
    }
}

/// Starts the Counter on a loopback port (chosen by the OS); it stops when the handle drops.
async fn serve(counter: Counter) -> (Channel, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let incoming = futures_util::stream::unfold(listener, |l| async move {
        let conn = l.accept().await.map(|(s, _)| s);
        Some((conn, l))
    });
    let task = tokio::spawn(async move {
        tonic::transport::Server::builder().add_service(counter).serve_with_incoming(incoming).await.unwrap();
    });
    let channel = Channel::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap();
    (channel, task)
}

/// Starts `Count` over any gRPC client service; returns the stream of replies.
async fn count<T>(svc: T, end_with: Code) -> Result<Streaming<CountReply>, Status>
where
    T: tonic::client::GrpcService<Body>,
    T::ResponseBody: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    <T::ResponseBody as http_body::Body>::Error: Into<BoxError>,
    T::Error: Into<BoxError>,
{
    let mut grpc = tonic::client::Grpc::new(svc);
    grpc.ready().await.map_err(|e| Status::from_error(e.into()))?;
    let path = PathAndQuery::from_static("/palisade.test.Counter/Count");
    let request = tonic::Request::new(CountRequest { end_with: end_with as i32 });
    Ok(grpc.server_streaming(request, path, ProstCodec::default()).await?.into_inner())
}

/// Reads a stream to its end: the messages, and the status it ended with.
async fn read_to_end(mut stream: Streaming<CountReply>) -> (Vec<u32>, Code) {
    let mut seen = Vec::new();
    loop {
        match stream.message().await {
            Ok(Some(reply)) => seen.push(reply.n),
            Ok(None) => return (seen, Code::Ok),
            Err(status) => return (seen, status.code()),
        }
    }
}

#[tokio::test]
async fn a_stream_failing_after_two_messages_opens_the_breaker() {
    let counter = Counter::default();
    let (channel, _server) = serve(counter.clone()).await;
    let breaker = CircuitBreakerLayer::builder()
        .name("counter")
        .consecutive_failures(2)
        .wait_in_open(Duration::from_secs(60))
        .classifier(GrpcClassifier::new())
        .build()
        .unwrap();
    let handle = breaker.handle();
    let client = ServiceBuilder::new().layer(breaker).service(channel);

    // The first stream: two messages, then UNAVAILABLE in the trailers. Its headers said 200.
    let stream = count(client.clone(), Code::Unavailable).await.unwrap();
    assert_eq!(handle.snapshot().failures, 0, "nothing is judged before the stream ends");
    assert_eq!(read_to_end(stream).await, (vec![1, 2], Code::Unavailable));
    assert_eq!(handle.snapshot().failures, 1, "the trailers made it a failure");
    assert_eq!(handle.snapshot().successes, 0);
    assert_eq!(handle.state(), CircuitState::Closed);

    // The second one (INTERNAL) opens the breaker ...
    let stream = count(client.clone(), Code::Internal).await.unwrap();
    assert_eq!(read_to_end(stream).await, (vec![1, 2], Code::Internal));
    assert_eq!(handle.snapshot().failures, 2);
    assert_eq!(handle.state(), CircuitState::Open);

    // ... and the third call is refused without reaching the server.
    let status = count(client.clone(), Code::Ok).await.unwrap_err();
    let refusal = std::error::Error::source(&status).and_then(|e| e.downcast_ref::<CircuitOpen>());
    assert!(refusal.is_some(), "refused by the open breaker: {status:?}");
    assert_eq!(counter.calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_stream_ending_ok_is_a_success_and_a_dropped_one_is_ignored() {
    let (channel, _server) = serve(Counter::default()).await;
    let breaker = CircuitBreakerLayer::builder()
        .name("counter")
        .consecutive_failures(1)
        .wait_in_open(Duration::from_secs(60))
        .classifier(GrpcClassifier::new())
        .build()
        .unwrap();
    let handle = breaker.handle();
    let client = ServiceBuilder::new().layer(breaker).service(channel);

    let stream = count(client.clone(), Code::Ok).await.unwrap();
    assert_eq!(read_to_end(stream).await, (vec![1, 2], Code::Ok));
    let s = handle.snapshot();
    assert_eq!((s.successes, s.failures, s.ignored), (1, 0, 0));

    // The caller reads one message of a stream that would fail, then walks away.
    let mut stream = count(client.clone(), Code::Unavailable).await.unwrap();
    assert_eq!(stream.message().await.unwrap().unwrap().n, 1);
    drop(stream);
    let s = handle.snapshot();
    assert_eq!((s.successes, s.failures, s.ignored), (1, 0, 1), "dropped: neither success nor failure");
    assert_eq!(handle.state(), CircuitState::Closed);
}

#[tokio::test]
async fn the_adaptive_limit_holds_a_stream_to_its_end_and_counts_its_failure() {
    let (channel, _server) = serve(Counter::default()).await;
    let layer = AdaptiveLimitLayer::builder()
        .name("counter")
        .algorithm(Aimd::default().initial_limit(20).min_limit(1))
        .classifier(GrpcClassifier::new())
        .build()
        .unwrap();
    let limit = layer.handle();
    let client = ServiceBuilder::new().layer(layer).service(channel);

    let stream = count(client.clone(), Code::Unavailable).await.unwrap();
    // The headers are in, the stream is not over: the call still holds its capacity.
    assert_eq!(limit.in_flight(), 1);
    assert_eq!(read_to_end(stream).await, (vec![1, 2], Code::Unavailable));
    assert_eq!(limit.in_flight(), 0);
    assert_eq!(limit.snapshot().dropped, 1, "UNAVAILABLE in the trailers is a drop");
    assert_eq!(limit.limit(), 18, "AIMD backs off: 20 × 0.9");

    // A stream ending OK is a sample too, but no drop.
    let stream = count(client.clone(), Code::Ok).await.unwrap();
    assert_eq!(read_to_end(stream).await, (vec![1, 2], Code::Ok));
    assert_eq!(limit.in_flight(), 0);
    assert_eq!(limit.snapshot().dropped, 1);
}

// === deterministic: a scripted channel and paused time ===

use bytes::Bytes;
use http_body::Frame;
use http_body_util::BodyExt;
use palisade::rejection::find_rejection;
use tokio::sync::mpsc;
use tower::ServiceExt;

type FrameResult = Result<Frame<Bytes>, Status>;

/// A response body the test feeds frame by frame; it ends when its sender is dropped.
struct FedBody(mpsc::UnboundedReceiver<FrameResult>);

impl http_body::Body for FedBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<FrameResult>> {
        self.0.poll_recv(cx)
    }
}

/// Stands in for a `Channel`: every call answers HTTP 200 without `grpc-status` (a stream),
/// and hands the test the sender that feeds that call's body.
fn scripted_channel() -> (
    impl Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible, Future: Send> + Clone,
    mpsc::UnboundedReceiver<mpsc::UnboundedSender<FrameResult>>,
) {
    let (feeds_tx, feeds) = mpsc::unbounded_channel();
    let svc = tower::service_fn(move |_req: http::Request<Body>| {
        let (tx, rx) = mpsc::unbounded_channel();
        feeds_tx.send(tx).unwrap();
        std::future::ready(Ok::<_, Infallible>(http::Response::new(Body::new(FedBody(rx)))))
    });
    (svc, feeds)
}

fn trailers(code: Code) -> FrameResult {
    let mut map = http::HeaderMap::new();
    map.insert("grpc-status", (code as i32).to_string().parse().unwrap());
    Ok(Frame::trailers(map))
}

/// Reads a body up to its trailers (the last frame of a gRPC stream); true when it had them.
async fn drain(body: &mut Body) -> bool {
    while let Some(frame) = body.frame().await {
        if frame.unwrap().is_trailers() {
            return true;
        }
    }
    false
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_half_open_trial_stream_holds_its_slot_to_its_end_and_gives_it_back_when_dropped() {
    let (channel, mut feeds) = scripted_channel();
    let breaker = CircuitBreakerLayer::builder()
        .consecutive_failures(1)
        .wait_in_open(Duration::from_secs(10))
        .half_open_trials(1)
        .classifier(GrpcClassifier::new())
        .build()
        .unwrap();
    let handle = breaker.handle();
    let client = ServiceBuilder::new().layer(breaker).service(channel);
    let call = || client.clone().oneshot(http::Request::new(Body::empty()));

    // A stream ending UNAVAILABLE opens the breaker.
    let mut res = call().await.unwrap();
    let feed = feeds.recv().await.unwrap();
    feed.send(Ok(Frame::data(Bytes::from_static(b"one")))).unwrap();
    feed.send(trailers(Code::Unavailable)).unwrap();
    assert!(drain(res.body_mut()).await);
    assert_eq!(handle.state(), CircuitState::Open);

    // After the wait, one trial stream: while it streams, its slot stays taken.
    tokio::time::advance(Duration::from_secs(10)).await;
    let mut trial = call().await.unwrap();
    let trial_feed = feeds.recv().await.unwrap();
    trial_feed.send(Ok(Frame::data(Bytes::from_static(b"one")))).unwrap();
    assert!(trial.body_mut().frame().await.unwrap().unwrap().is_data());
    let refused = call().await.unwrap_err();
    assert!(find_rejection(refused.as_ref()).is_some(), "{refused:?}");
    assert!(refused.is::<CircuitOpen>(), "{refused:?}");

    // Dropped before its end: ignored, the slot comes back for the next trial.
    let ignored = handle.snapshot().ignored;
    drop(trial);
    assert_eq!(handle.snapshot().ignored, ignored + 1);
    let mut trial = call().await.unwrap();
    let feed = feeds.recv().await.unwrap();
    feed.send(trailers(Code::Ok)).unwrap();
    assert!(drain(trial.body_mut()).await);
    assert_eq!(handle.state(), CircuitState::Closed);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_stream_is_timed_to_its_end() {
    let (channel, mut feeds) = scripted_channel();
    let breaker = CircuitBreakerLayer::builder()
        .slow_calls(Duration::from_secs(1), 1.0)
        .classifier(GrpcClassifier::new())
        .build()
        .unwrap();
    let handle = breaker.handle();
    let client = ServiceBuilder::new().layer(breaker).service(channel);

    // Headers at once; the trailers two seconds later: a slow call, although OK.
    let mut res = client.clone().oneshot(http::Request::new(Body::empty())).await.unwrap();
    let feed = feeds.recv().await.unwrap();
    tokio::time::advance(Duration::from_secs(2)).await;
    feed.send(trailers(Code::Ok)).unwrap();
    assert!(drain(res.body_mut()).await);
    let s = handle.snapshot();
    assert_eq!((s.successes, s.slow_calls), (1, 1));

    // A stream that ends within the threshold is not slow.
    let mut res = client.oneshot(http::Request::new(Body::empty())).await.unwrap();
    let feed = feeds.recv().await.unwrap();
    tokio::time::advance(Duration::from_millis(500)).await;
    feed.send(trailers(Code::Ok)).unwrap();
    assert!(drain(res.body_mut()).await);
    let s = handle.snapshot();
    assert_eq!((s.successes, s.slow_calls), (2, 1));
}
