#![cfg(feature = "grpc")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::unnecessary_wraps, missing_docs)]
//! End-of-stream classification: a gRPC stream is judged by its trailers, its body error, or
//! not at all when it is dropped; other responses and classifiers are unaffected.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use http::{HeaderMap, Response};
use http_body::{Body, Frame, SizeHint};
use palisade_core::classify::eos::{ClassifyEos, EndOfStream, Eos, EosBody, GrpcEosClassifier};
use palisade_core::classify::{
    Classification, Classify, ClassifyExt, DefaultClassifier, GrpcClassifier, HttpClassifier, Outcome,
    RetryHint,
};
use tonic::Status;

type Bytes = <tonic::body::Body as Body>::Data;

fn bytes(s: &'static str) -> Bytes {
    Bytes::from_static(s.as_bytes())
}

/// A body that yields its frames one per poll; `ends_early` makes `is_end_stream` true as
/// soon as no frame is left (as a body with an exact length does), otherwise the end is only
/// seen when a poll returns `None`.
struct MockBody {
    frames: VecDeque<Result<Frame<Bytes>, Status>>,
    ends_early: bool,
}

impl MockBody {
    fn new(frames: Vec<Result<Frame<Bytes>, Status>>) -> Self {
        Self { frames: frames.into(), ends_early: false }
    }
}

impl Body for MockBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Poll::Ready(self.frames.pop_front())
    }

    fn is_end_stream(&self) -> bool {
        self.ends_early && self.frames.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(7)
    }
}

fn trailers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (k, v) in pairs {
        map.append(*k, v.parse().unwrap());
    }
    map
}

/// Two data frames, then trailers.
fn stream_ending_with(pairs: &[(&'static str, &'static str)]) -> MockBody {
    MockBody::new(vec![
        Ok(Frame::data(bytes("one"))),
        Ok(Frame::data(bytes("two"))),
        Ok(Frame::trailers(trailers(pairs))),
    ])
}

fn streaming_response(body: MockBody) -> Result<Response<tonic::body::Body>, Status> {
    Ok(Response::new(tonic::body::Body::new(body)))
}

/// Records every verdict it is given, and counts how often its recorder was dropped uncalled.
#[derive(Clone, Default)]
struct Log {
    verdicts: Arc<Mutex<Vec<Classification>>>,
    dropped: Arc<AtomicUsize>,
}

struct Recorder {
    log: Log,
    called: bool,
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if !self.called {
            self.log.dropped.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl Log {
    fn recorder(&self) -> impl FnOnce(Eos<'_>) + Send + 'static {
        let mut r = Recorder { log: self.clone(), called: false };
        move |eos: Eos<'_>| {
            r.called = true;
            r.log.verdicts.lock().unwrap().push(eos.classify());
        }
    }

    fn verdicts(&self) -> Vec<Classification> {
        self.verdicts.lock().unwrap().clone()
    }

    fn dropped(&self) -> usize {
        self.dropped.load(Ordering::SeqCst)
    }
}

fn poll_frame<B: Body + Unpin>(body: &mut B) -> Option<Result<Frame<B::Data>, B::Error>> {
    let mut cx = Context::from_waker(Waker::noop());
    match Pin::new(body).poll_frame(&mut cx) {
        Poll::Ready(frame) => frame,
        Poll::Pending => panic!("the mock body is always ready"),
    }
}

/// Reads a body to its end (or first error); returns its data frames and its trailers.
fn read_all<B: Body + Unpin>(body: &mut B) -> (Vec<B::Data>, Option<HeaderMap>, bool) {
    let (mut data, mut trailers, mut failed) = (Vec::new(), None, false);
    while let Some(frame) = poll_frame(body) {
        let Ok(frame) = frame else {
            failed = true;
            break;
        };
        match frame.into_data() {
            Ok(d) => data.push(d),
            Err(f) => trailers = f.into_trailers().ok(),
        }
    }
    (data, trailers, failed)
}

/// Defers `result` with the gRPC classifier, attaches a recorder, reads the body to its end.
fn judge_stream(mut result: Result<Response<tonic::body::Body>, Status>) -> Log {
    let log = Log::default();
    let c = GrpcClassifier::new();
    assert!(c.classify(&result).is_success(), "the first stage cannot know yet");
    assert!(c.requires_eos(&result));
    c.defer_eos(&mut result).expect("a streaming response is deferred").attach(log.recorder());
    assert!(log.verdicts().is_empty(), "nothing is recorded before the end");
    let _ = read_all(result.as_mut().unwrap().body_mut());
    log
}

// === the stream's end decides ===

#[test]
fn two_messages_then_unavailable_is_a_failure() {
    let log = judge_stream(streaming_response(stream_ending_with(&[("grpc-status", "14")])));
    let v = log.verdicts();
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].outcome(), Outcome::Failure);
    assert!(v[0].is_retryable());
    assert_eq!(log.dropped(), 0);
}

#[test]
fn two_messages_then_ok_is_a_success() {
    let log = judge_stream(streaming_response(stream_ending_with(&[("grpc-status", "0")])));
    assert_eq!(log.verdicts(), vec![Classification::success()]);
}

#[test]
fn trailers_are_judged_by_the_grpc_table() {
    let cases = [
        ("13", Outcome::Failure, false), // INTERNAL
        ("2", Outcome::Failure, false),  // UNKNOWN
        ("8", Outcome::Failure, true),   // RESOURCE_EXHAUSTED
        ("5", Outcome::Success, false),  // NOT_FOUND: the caller's fault
        ("1", Outcome::Ignored, false),  // CANCELLED
        ("4", Outcome::Failure, false),  // DEADLINE_EXCEEDED
    ];
    for (code, outcome, retryable) in cases {
        let v = judge_stream(streaming_response(stream_ending_with(&[("grpc-status", code)]))).verdicts();
        assert_eq!(v.len(), 1, "code {code}");
        assert_eq!(v[0].outcome(), outcome, "code {code}");
        assert_eq!(v[0].is_retryable(), retryable, "code {code}");
    }
}

#[test]
fn pushback_is_read_from_the_trailers() {
    let v = judge_stream(streaming_response(stream_ending_with(&[
        ("grpc-status", "14"),
        ("grpc-retry-pushback-ms", "200"),
    ])))
    .verdicts();
    assert_eq!(v[0].hint(), RetryHint::Pushback(Duration::from_millis(200)));

    let v = judge_stream(streaming_response(stream_ending_with(&[
        ("grpc-status", "14"),
        ("grpc-retry-pushback-ms", "-1"),
    ])))
    .verdicts();
    assert!(v[0].is_failure());
    assert!(!v[0].is_retryable());
}

#[test]
fn a_body_error_is_judged_by_its_status() {
    let body = MockBody::new(vec![Ok(Frame::data(bytes("one"))), Err(Status::internal("boom"))]);
    let v = judge_stream(streaming_response(body)).verdicts();
    assert_eq!(v.len(), 1);
    assert!(v[0].is_failure());
    assert!(!v[0].is_retryable());

    let body = MockBody::new(vec![Ok(Frame::data(bytes("one"))), Err(Status::unavailable("reset"))]);
    let v = judge_stream(streaming_response(body)).verdicts();
    assert!(v[0].is_failure() && v[0].is_retryable());
}

#[test]
fn a_stream_without_a_status_is_unknown() {
    // Ends (a poll returns None) without trailers.
    let body = MockBody::new(vec![Ok(Frame::data(bytes("one"))), Ok(Frame::data(bytes("two")))]);
    let v = judge_stream(streaming_response(body)).verdicts();
    assert_eq!(v, vec![Classification::failure()]);

    // Ends with trailers that carry no grpc-status.
    let v = judge_stream(streaming_response(stream_ending_with(&[("x-other", "1")]))).verdicts();
    assert_eq!(v, vec![Classification::failure()]);

    // An already ended body (an empty tonic body): judged at once.
    let log = Log::default();
    let mut result: Result<_, Status> = Ok(Response::new(tonic::body::Body::default()));
    GrpcClassifier::new().defer_eos(&mut result).unwrap().attach(log.recorder());
    assert_eq!(log.verdicts(), vec![Classification::failure()]);
}

#[test]
fn the_end_is_reported_with_the_last_frame_when_the_body_says_it_ended() {
    // The consumer stops after the last data frame, as it may when is_end_stream() is true.
    let log = Log::default();
    let body = MockBody { frames: vec![Ok(Frame::data(bytes("only")))].into(), ends_early: true };
    let mut eos = EosBody::new(body, GrpcEosClassifier::new(GrpcClassifier::new()), log.recorder());
    assert!(poll_frame(&mut eos).is_some());
    assert!(eos.is_end_stream());
    assert_eq!(log.verdicts(), vec![Classification::failure()]); // no status: UNKNOWN
    drop(eos);
    assert_eq!(log.dropped(), 0);
}

// === a dropped stream is ignored ===

#[test]
fn a_stream_dropped_before_its_end_is_not_recorded() {
    let log = Log::default();
    let mut result = streaming_response(stream_ending_with(&[("grpc-status", "14")]));
    GrpcClassifier::new().defer_eos(&mut result).unwrap().attach(log.recorder());
    let mut res = result.unwrap();
    assert!(poll_frame(res.body_mut()).is_some()); // one message read
    drop(res);
    assert!(log.verdicts().is_empty(), "neither success nor failure");
    assert_eq!(log.dropped(), 1, "the recorder is dropped uncalled: the layer counts it as ignored");
}

#[test]
fn a_deferral_never_attached_leaves_the_response_alone() {
    let mut result = streaming_response(stream_ending_with(&[("grpc-status", "14")]));
    drop(GrpcClassifier::new().defer_eos(&mut result));
    let (data, trailers, failed) = read_all(result.as_mut().unwrap().body_mut());
    assert_eq!(data.len(), 2);
    assert!(trailers.is_some() && !failed);
}

// === the wrapper forwards everything ===

#[test]
fn the_wrapper_forwards_frames_hints_and_end_once() {
    let log = Log::default();
    let body = stream_ending_with(&[("grpc-status", "0"), ("x-extra", "yes")]);
    let mut eos = EosBody::new(body, GrpcEosClassifier::new(GrpcClassifier::new()), log.recorder());
    assert_eq!(eos.size_hint().exact(), Some(7));
    assert!(!eos.is_end_stream());
    assert!(eos.is_pending());
    let (data, trailers, failed) = read_all(&mut eos);
    assert_eq!(data, vec![bytes("one"), bytes("two")]);
    let trailers = trailers.unwrap();
    assert_eq!(trailers["x-extra"], "yes");
    assert!(!failed);
    assert!(!eos.is_pending());
    // Polling past the end records nothing more.
    assert!(poll_frame(&mut eos).is_none());
    assert_eq!(log.verdicts(), vec![Classification::success()]);
}

#[test]
fn a_custom_second_stage_sees_how_the_body_ended() {
    struct Seen(Arc<Mutex<Vec<&'static str>>>);
    impl ClassifyEos for Seen {
        fn classify_eos(&self, end: &EndOfStream<'_>) -> Classification {
            let what = match end {
                EndOfStream::Trailers(Some(_)) => "trailers",
                EndOfStream::Trailers(None) => "end",
                EndOfStream::Error(e) => {
                    assert!(e.downcast_ref::<Status>().is_some());
                    "error"
                }
                _ => "other",
            };
            self.0.lock().unwrap().push(what);
            Classification::ignored()
        }
    }
    let seen = Arc::new(Mutex::new(Vec::new()));
    let bodies = [
        stream_ending_with(&[("grpc-status", "0")]),
        MockBody::new(vec![Ok(Frame::data(bytes("x")))]),
        MockBody::new(vec![Err(Status::internal("x"))]),
    ];
    for body in bodies {
        let mut eos =
            EosBody::new(body, Seen(seen.clone()), |eos: Eos<'_>| assert!(eos.classify().is_ignored()));
        let _ = read_all(&mut eos);
    }
    assert_eq!(*seen.lock().unwrap(), vec!["trailers", "end", "error"]);
}

// === what is not deferred ===

#[test]
fn trailers_only_responses_keep_the_header_verdict() {
    let c = GrpcClassifier::new();
    let mut result: Result<_, Status> = Ok(Response::builder()
        .header("grpc-status", "14")
        .body(tonic::body::Body::new(MockBody::new(vec![])))
        .unwrap());
    assert!(!c.requires_eos(&result));
    assert!(c.defer_eos(&mut result).is_none());
    assert!(c.classify(&result).is_retryable());
}

#[test]
fn non_200_and_errors_are_not_deferred() {
    let c = GrpcClassifier::new();
    let mut result: Result<_, Status> =
        Ok(Response::builder().status(503).body(tonic::body::Body::default()).unwrap());
    assert!(c.defer_eos(&mut result).is_none());
    assert!(c.classify(&result).is_failure());
    let mut result: Result<Response<tonic::body::Body>, Status> = Err(Status::unavailable("down"));
    assert!(c.defer_eos(&mut result).is_none());
}

#[test]
fn other_body_types_keep_the_first_stage_verdict() {
    let c = GrpcClassifier::new();
    let mut result = Ok::<_, Infallible>(Response::new(String::from("stream")));
    assert!(c.requires_eos(&result), "its status would come in trailers ...");
    assert!(c.defer_eos(&mut result).is_none(), "... but its body cannot be wrapped in place");
    assert!(c.classify(&result).is_success());
}

#[test]
fn http_and_default_classifiers_are_unaffected() {
    let mut result = streaming_response(stream_ending_with(&[("grpc-status", "14")]));
    assert!(!HttpClassifier::new().requires_eos(&result));
    assert!(HttpClassifier::new().defer_eos(&mut result).is_none());
    assert!(HttpClassifier::new().classify(&result).is_success());
    assert!(!DefaultClassifier.requires_eos(&result));
    assert!(DefaultClassifier.defer_eos(&mut result).is_none());
    let mut http: Result<Response<String>, Infallible> =
        Ok(Response::builder().status(503).body(String::new()).unwrap());
    assert!(HttpClassifier::new().defer_eos(&mut http).is_none());
    assert!(HttpClassifier::new().classify(&http).is_retryable());
}

// === wrappers ===

#[test]
fn a_rule_that_matched_the_headers_decides_at_once() {
    let c = GrpcClassifier::new().failure_if(|r: &Result<Response<tonic::body::Body>, Status>| {
        r.as_ref().is_ok_and(|res| res.headers().contains_key("x-degraded"))
    });
    let mut degraded = streaming_response(stream_ending_with(&[("grpc-status", "0")]));
    degraded.as_mut().unwrap().headers_mut().insert("x-degraded", "1".parse().unwrap());
    assert!(!c.requires_eos(&degraded));
    assert!(c.defer_eos(&mut degraded).is_none());
    assert!(c.classify(&degraded).is_failure());

    let log = Log::default();
    let mut plain = streaming_response(stream_ending_with(&[("grpc-status", "13")]));
    c.defer_eos(&mut plain).expect("no rule matched: deferred").attach(log.recorder());
    let _ = read_all(plain.as_mut().unwrap().body_mut());
    assert_eq!(log.verdicts(), vec![Classification::failure()]);
}

#[test]
fn a_slow_stream_is_a_failure_measured_to_its_end() {
    let c = Arc::new(ClassifyExt::<Response<tonic::body::Body>, Status>::failure_if_slower_than(
        GrpcClassifier::new(),
        Duration::from_secs(1),
    ));
    let timed = Arc::new(Mutex::new(Vec::new()));
    for elapsed in [Duration::from_millis(999), Duration::from_millis(1001)] {
        let mut result = streaming_response(stream_ending_with(&[("grpc-status", "0")]));
        let timed = timed.clone();
        c.defer_eos(&mut result)
            .expect("the wrapper forwards the deferral")
            .attach(move |eos: Eos<'_>| timed.lock().unwrap().push(eos.classify_timed(elapsed).outcome()));
        let _ = read_all(result.as_mut().unwrap().body_mut());
    }
    assert_eq!(*timed.lock().unwrap(), vec![Outcome::Success, Outcome::Failure]);
}

/// Review: the end is reported once, at the first end seen. A body that errors and then
/// (misbehaving) yields trailers saying OK is judged by its error only; dropped after the
/// end, its recorder is not reported as dropped; trailers without `grpc-status` after data
/// are UNKNOWN, and an error frame after such trailers changes nothing.
#[test]
fn the_first_end_decides_once_whatever_follows() {
    let log = Log::default();
    let body = MockBody::new(vec![
        Ok(Frame::data(bytes("one"))),
        Err(Status::internal("boom")),
        Ok(Frame::trailers(trailers(&[("grpc-status", "0")]))),
    ]);
    let mut eos = EosBody::new(body, GrpcEosClassifier::new(GrpcClassifier::new()), log.recorder());
    while poll_frame(&mut eos).is_some() {}
    drop(eos);
    assert_eq!(log.verdicts().len(), 1);
    assert!(log.verdicts()[0].is_failure(), "INTERNAL, not the OK that followed");
    assert_eq!(log.dropped(), 0);

    let log = Log::default();
    let body = MockBody::new(vec![
        Ok(Frame::data(bytes("one"))),
        Ok(Frame::trailers(trailers(&[("x-other", "1")]))),
        Err(Status::ok("late")),
    ]);
    let mut eos = EosBody::new(body, GrpcEosClassifier::new(GrpcClassifier::new()), log.recorder());
    while poll_frame(&mut eos).is_some() {}
    assert_eq!(log.verdicts(), vec![GrpcClassifier::new().classify_code(tonic::Code::Unknown)]);
    drop(eos);
    assert_eq!(log.dropped(), 0);
}
