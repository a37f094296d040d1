#![allow(clippy::unwrap_used, clippy::expect_used, clippy::unnecessary_wraps, missing_docs)]
//! The classifiers: every row of the HTTP and gRPC tables, both Retry-After forms, garbage.

use std::convert::Infallible;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderValue, Response};
use palisade_core::classify::{
    classify_fn, parse_retry_after_at, Classification, Classify, ClassifyExt, DefaultClassifier,
    GrpcClassifier, HttpClassifier, Outcome, RetryHint,
};
use palisade_core::rejection::{
    CircuitOpen, Closed, CostExceedsCapacity, KeyMissing, RateLimited, RejectionKind,
};
use palisade_core::BoxError;
use tonic::{Code, Status};

fn http(status: u16) -> Result<Response<()>, Infallible> {
    Ok(Response::builder().status(status).body(()).unwrap())
}

#[test]
fn default_ok_success_err_retryable() {
    let c = DefaultClassifier;
    assert_eq!(c.classify(&Ok::<_, &str>(1)), Classification::success());
    let v = c.classify(&Err::<(), _>("x"));
    assert_eq!(v.outcome(), Outcome::Failure);
    assert!(v.is_retryable());
    assert_eq!(v.retry_after(), None);
}

#[test]
fn default_reads_rejections_in_box_errors() {
    let c = DefaultClassifier;
    let limited: BoxError = RateLimited::new("api", Duration::from_secs(2)).into();
    let v = c.classify(&Err::<(), _>(limited));
    assert!(v.is_failure() && v.is_retryable());
    assert_eq!(v.hint(), RetryHint::After(Duration::from_secs(2)), "a rejection's retry_after is a floor");
    assert_eq!(v.rejection(), Some(RejectionKind::RateLimited));
    let too_big: BoxError = CostExceedsCapacity::new("api", "global", 9, 3).into();
    let v = c.classify(&Err::<(), _>(too_big));
    assert!(v.is_ignored() && !v.is_retryable(), "the caller's mistake, not the service's");
    let closed: BoxError = Closed::new("pool").into();
    let v = c.classify(&Err::<(), _>(closed));
    assert!(v.is_failure() && !v.is_retryable());
    let no_key: BoxError = KeyMissing::new("per-ip").into();
    let v = c.classify(&Err::<(), _>(no_key));
    assert!(v.is_ignored() && !v.is_retryable(), "a deployment mistake: not the backend's failure, no retry");
    assert_eq!(v.rejection(), Some(RejectionKind::KeyMissing));
}

#[test]
fn http_status_table() {
    let c = HttpClassifier::new();
    for s in [200, 201, 204, 301, 304] {
        let v = c.classify(&http(s));
        assert!(v.is_success() && !v.is_retryable(), "{s}");
    }
    for s in [408, 429, 502, 503, 504] {
        let v = c.classify(&http(s));
        assert!(v.is_failure() && v.is_retryable(), "{s}");
    }
    for s in [500, 501, 505, 511] {
        let v = c.classify(&http(s));
        assert!(v.is_failure() && !v.is_retryable(), "{s}");
    }
    for s in [400, 401, 403, 404, 409, 422] {
        let v = c.classify(&http(s));
        assert!(v.is_success() && !v.is_retryable(), "{s}");
    }
}

#[test]
fn http_errors_are_retryable_failures() {
    let v = HttpClassifier::new().classify(&Err::<Response<()>, _>(std::io::Error::other("reset")));
    assert!(v.is_failure() && v.is_retryable());
}

#[test]
fn retry_after_delta_seconds_and_date() {
    let now = UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
    let at = |s: &'static str| parse_retry_after_at(&HeaderValue::from_static(s), now);
    assert_eq!(at("0"), Some(Duration::ZERO));
    assert_eq!(at("120"), Some(Duration::from_secs(120)));
    assert_eq!(at(" 5 "), Some(Duration::from_secs(5)));
    assert_eq!(at("Sun, 06 Nov 1994 08:49:47 GMT"), Some(Duration::from_secs(10)));
    assert_eq!(at("Sun, 06 Nov 1994 08:49:00 GMT"), Some(Duration::ZERO), "past dates mean now");
    assert_eq!(at("99999999999999999999999"), Some(Duration::from_secs(u64::MAX)));
}

#[test]
fn retry_after_garbage_is_ignored() {
    let now = SystemTime::now();
    for s in ["", "soon", "-5", "1.5", "5s", "Sun, 32 Nov 1994 08:49:37 GMT", "12 monkeys"] {
        assert_eq!(parse_retry_after_at(&HeaderValue::from_static(s), now), None, "{s:?}");
    }
    let bytes = HeaderValue::from_bytes(b"\xff\xfe").unwrap();
    assert_eq!(parse_retry_after_at(&bytes, now), None);
    let res: Result<_, Infallible> =
        Ok(Response::builder().status(503).header("retry-after", "whenever").body(()).unwrap());
    let v = HttpClassifier::new().classify(&res);
    assert!(v.is_retryable());
    assert_eq!(v.retry_after(), None);
}

#[test]
fn http_retry_after_becomes_the_hint() {
    let res: Result<_, Infallible> =
        Ok(Response::builder().status(429).header("retry-after", "4").body(()).unwrap());
    assert_eq!(HttpClassifier::new().classify(&res).retry_after(), Some(Duration::from_secs(4)));
}

fn grpc_header(code: i32) -> Result<Response<()>, Infallible> {
    Ok(Response::builder().status(200).header("grpc-status", code.to_string()).body(()).unwrap())
}

#[test]
fn grpc_code_table_from_headers_and_status() {
    let c = GrpcClassifier::new();
    let rows: &[(Code, Outcome, bool)] = &[
        (Code::Ok, Outcome::Success, false),
        (Code::Cancelled, Outcome::Ignored, false),
        (Code::Unavailable, Outcome::Failure, true),
        (Code::ResourceExhausted, Outcome::Failure, true),
        (Code::DeadlineExceeded, Outcome::Failure, false),
        (Code::Aborted, Outcome::Failure, false),
        (Code::InvalidArgument, Outcome::Success, false),
        (Code::NotFound, Outcome::Success, false),
        (Code::AlreadyExists, Outcome::Success, false),
        (Code::PermissionDenied, Outcome::Success, false),
        (Code::Unauthenticated, Outcome::Success, false),
        (Code::FailedPrecondition, Outcome::Success, false),
        (Code::OutOfRange, Outcome::Success, false),
        (Code::Internal, Outcome::Failure, false),
        (Code::Unknown, Outcome::Failure, false),
        (Code::DataLoss, Outcome::Failure, false),
    ];
    for &(code, outcome, retryable) in rows {
        let v = c.classify(&grpc_header(code as i32));
        assert_eq!((v.outcome(), v.is_retryable()), (outcome, retryable), "header {code:?}");
        let v = c.classify(&Err::<tonic::Response<()>, _>(Status::new(code, "x")));
        assert_eq!((v.outcome(), v.is_retryable()), (outcome, retryable), "status {code:?}");
        let boxed: BoxError = Box::new(Status::new(code, "x"));
        let v = c.classify(&Err::<Response<()>, _>(boxed));
        assert_eq!((v.outcome(), v.is_retryable()), (outcome, retryable), "boxed {code:?}");
    }
}

#[test]
fn grpc_deadline_and_aborted_configurable() {
    let c = GrpcClassifier::new().deadline_exceeded_retryable(true).aborted_retryable(true);
    assert!(c.classify(&grpc_header(Code::DeadlineExceeded as i32)).is_retryable());
    assert!(c.classify(&grpc_header(Code::Aborted as i32)).is_retryable());
}

#[test]
fn grpc_pushback() {
    let c = GrpcClassifier::new();
    let with = |ms: &str| -> Result<Response<()>, Infallible> {
        Ok(Response::builder()
            .header("grpc-status", "14")
            .header("grpc-retry-pushback-ms", ms)
            .body(())
            .unwrap())
    };
    let v = c.classify(&with("250"));
    assert!(v.is_retryable());
    assert_eq!(v.retry_after(), Some(Duration::from_millis(250)));
    assert_eq!(v.hint(), RetryHint::Pushback(Duration::from_millis(250)), "a pushback is exact, not a floor");
    let v = c.classify(&with("-1"));
    assert!(v.is_failure() && !v.is_retryable(), "negative pushback means do not retry");
    assert!(v.is_retry_refused() && v.is_non_fatal_failure(), "UNAVAILABLE stays non-fatal for hedging");
    assert!(v.is_throttling_failure(), "A6: a pushback saying not to retry counts as a failure");
    let v = c.classify(&with("garbage"));
    assert!(!v.is_retryable(), "unparseable pushback means do not retry (gRPC A6)");
    assert!(v.is_throttling_failure());

    let mut status = Status::resource_exhausted("slow down");
    status.metadata_mut().insert("grpc-retry-pushback-ms", "1000".parse().unwrap());
    let v = c.classify(&Err::<tonic::Response<()>, _>(status));
    assert_eq!(v.retry_after(), Some(Duration::from_secs(1)));
}

#[test]
fn grpc_streaming_response_without_status_header() {
    let c = GrpcClassifier::new();
    assert!(c.classify(&http(200)).is_success());
    assert!(c.classify(&http(503)).is_retryable());
    let v = c.classify(&Ok::<_, Infallible>(
        Response::builder().header("grpc-status", "not-a-code").body(()).unwrap(),
    ));
    assert!(v.is_failure(), "unparseable grpc-status is UNKNOWN");
}

#[test]
fn grpc_transport_errors_are_retryable() {
    let v = GrpcClassifier::new().classify(&Err::<Response<()>, _>(std::io::Error::other("refused")));
    assert!(v.is_retryable());
}

#[test]
fn combinators_compose() {
    let c = HttpClassifier::new()
        .retryable_if(|r: &Result<Response<()>, Infallible>| matches!(r, Ok(res) if res.status() == 500))
        .ignore_if(|r: &Result<Response<()>, Infallible>| matches!(r, Ok(res) if res.status() == 499));
    assert!(c.classify(&http(500)).is_retryable());
    assert!(c.classify(&http(499)).is_ignored());
    assert!(c.classify(&http(404)).is_success());

    let c = DefaultClassifier.map(|r: &Result<u32, ()>, v: Classification| match r {
        Ok(n) if *n > 10 => v.with_outcome(Outcome::Failure),
        _ => v,
    });
    assert!(c.classify(&Ok(11)).is_failure());
    assert!(c.classify(&Ok(1)).is_success());

    let slow = classify_fn(|_: &Result<(), ()>| Classification::success())
        .failure_if_slower_than(Duration::from_secs(1));
    assert!(slow.classify_timed(&Ok(()), Duration::from_millis(999)).is_success());
    assert!(slow.classify_timed(&Ok(()), Duration::from_millis(1001)).is_failure());
    assert!(slow.classify(&Ok(())).is_success());
}

#[test]
fn rate_limited_error_carries_hint_through_default() {
    let e: BoxError = RateLimited::new("x", Duration::from_millis(300)).into();
    assert_eq!(DefaultClassifier.classify(&Err::<(), _>(e)).retry_after(), Some(Duration::from_millis(300)));
}

#[test]
fn a_negative_pushback_on_any_failed_code_is_a_throttling_failure_but_not_on_ok() {
    let c = GrpcClassifier::new();
    let with = |code: &str, ms: &str| -> Result<Response<()>, Infallible> {
        Ok(Response::builder()
            .header("grpc-status", code)
            .header("grpc-retry-pushback-ms", ms)
            .body(())
            .unwrap())
    };
    // INTERNAL (fatal) with "do not retry": a throttling failure (grpc-go checks the
    // pushback before the code), and still fatal.
    let v = c.classify(&with("13", "-1"));
    assert!(v.is_throttling_failure() && !v.is_non_fatal_failure() && !v.is_retryable());
    // OK with a pushback: a success, the pushback means nothing.
    let v = c.classify(&with("0", "-1"));
    assert!(v.is_success() && !v.is_throttling_failure() && v.hint() == RetryHint::None);
    // Several values: do not retry (grpc-go).
    let two: Result<Response<()>, Infallible> = Ok(Response::builder()
        .header("grpc-status", "14")
        .header("grpc-retry-pushback-ms", "10")
        .header("grpc-retry-pushback-ms", "20")
        .body(())
        .unwrap());
    assert!(c.classify(&two).is_retry_refused());
    // A pushback of 0 is "retry now", not "no hint".
    assert_eq!(c.classify(&with("14", "0")).hint(), RetryHint::Pushback(Duration::ZERO));
}

#[test]
fn http_retry_after_is_a_floor_hint() {
    let res: Result<_, Infallible> =
        Ok(Response::builder().status(503).header("retry-after", "2").body(()).unwrap());
    assert_eq!(HttpClassifier::new().classify(&res).hint(), RetryHint::After(Duration::from_secs(2)));
}

/// Issue 14.4: a call refused by an open breaker is not retried by default, by every
/// classifier, and says which rejection it was so that a retry layer can opt in to waiting.
#[test]
fn circuit_open_is_not_retryable_in_every_classifier() {
    #[derive(Debug)]
    struct Wrapper(BoxError);
    impl std::fmt::Display for Wrapper {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("wrapped")
        }
    }
    impl std::error::Error for Wrapper {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(self.0.as_ref())
        }
    }
    let open = || -> BoxError { CircuitOpen::new("b", Duration::from_secs(7)).into() };
    let check = |v: Classification| {
        assert!(v.is_failure() && !v.is_retryable(), "{v:?}");
        assert_eq!(v.rejection(), Some(RejectionKind::CircuitOpen));
        assert_eq!(v.retry_after(), Some(Duration::from_secs(7)), "the hint is kept for an opt-in wait");
    };
    check(DefaultClassifier.classify(&Err::<(), _>(open())));
    check(HttpClassifier::new().classify(&Err::<Response<()>, _>(open())));
    check(GrpcClassifier::new().classify(&Err::<Response<()>, _>(open())));
    check(GrpcClassifier::new().classify(&Err::<tonic::Response<()>, _>(open())));
    // Wrapped in another error's source chain too.
    let wrapped: BoxError = Box::new(Wrapper(open()));
    check(DefaultClassifier.classify(&Err::<(), _>(wrapped)));
    // A plain error is not a rejection.
    assert_eq!(DefaultClassifier.classify(&Err::<(), _>("x")).rejection(), None);
}

#[test]
fn retryable_if_overrides_a_do_not_retry_pushback() {
    let c = GrpcClassifier::new().retryable_if(|_: &Result<Response<()>, Infallible>| true);
    let res: Result<Response<()>, Infallible> = Ok(Response::builder()
        .header("grpc-status", "14")
        .header("grpc-retry-pushback-ms", "-1")
        .body(())
        .unwrap());
    assert!(c.classify(&res).is_retryable());
}
