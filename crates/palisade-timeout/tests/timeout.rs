#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
//! The timeout layer: moved from palisade-retry with its tests, plus the infallible `new`,
//! the counter and the events.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade_core::rejection::{find_rejection, RejectionKind};
use palisade_timeout::error::TimedOut;
use palisade_timeout::{TimeoutConfig, TimeoutEvent, TimeoutLayer};
use support::{ms, Slow};
use tokio::time::Instant;
use tokio_test::{assert_pending, assert_ready_ok, task};
use tower::{Layer, Service, ServiceExt};

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_fixed_timeout_drops_the_call_and_times_out() {
    let start = Instant::now();
    let svc = Slow::hang();
    let layer = TimeoutLayer::builder().name("db").timeout(ms(300)).build().unwrap();
    let err = layer.layer(svc.clone()).oneshot(1).await.unwrap_err();
    let rejection = find_rejection(err.as_ref()).unwrap();
    assert_eq!(rejection.kind(), RejectionKind::TimedOut);
    assert_eq!(rejection.layer_name(), "db");
    assert_eq!(err.downcast_ref::<TimedOut>().unwrap().after(), ms(300));
    assert_eq!(start.elapsed(), ms(300));
    assert_eq!(svc.dropped(), 1);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_fast_call_passes() {
    let layer = TimeoutLayer::new(ms(300));
    assert_eq!(layer.layer(Slow::after(ms(100))).oneshot(4).await.unwrap(), 4);
    assert_eq!(layer.handle().snapshot().timed_out, 0);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_timeout_may_be_chosen_per_request() {
    let layer = TimeoutLayer::builder()
        .per_request(|req: &u32| if *req == 0 { None } else { Some(ms(u64::from(*req))) })
        .build()
        .unwrap();
    let service = layer.layer(Slow::after(ms(50)));
    assert!(service.clone().oneshot(100).await.is_ok());
    assert!(service.clone().oneshot(10).await.unwrap_err().is::<TimedOut>());
    // `None`: no timeout at all.
    assert_eq!(layer.layer(Slow::after(Duration::from_secs(3600))).oneshot(0).await.unwrap(), 0);
    assert_eq!(layer.handle().snapshot().timed_out, 1);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn dropping_the_future_drops_the_call() {
    let svc = Slow::hang();
    let mut service = TimeoutLayer::new(ms(300)).layer(svc.clone());
    service.ready().await.unwrap();
    let mut fut = task::spawn(service.call(1));
    assert_pending!(fut.poll());
    drop(fut);
    assert_eq!(svc.dropped(), 1);
}

#[test]
fn the_builder_refuses_a_zero_timeout_and_an_empty_name() {
    let err = TimeoutLayer::builder().timeout(Duration::ZERO).build().unwrap_err();
    assert_eq!(err.field(), "timeout");
    assert_eq!(TimeoutLayer::builder().name("").build().unwrap_err().field(), "name");
    let per_request = TimeoutLayer::builder().name("").per_request(|_: &u32| None).build();
    assert_eq!(per_request.unwrap_err().field(), "name");
    // A per-request layer does not use the fixed timeout, so a zero there is no error.
    assert!(TimeoutLayer::builder().timeout(Duration::ZERO).per_request(|_: &u32| None).build().is_ok());
}

#[test]
fn the_defaults_are_resilience4js_time_limiter() {
    let config = TimeoutConfig::default();
    assert_eq!(config.timeout, Duration::from_secs(1));
    assert_eq!(config.name, "timeout");
    assert_eq!(TimeoutLayer::builder().build().unwrap().handle().name(), "timeout");
}

/// As tower's `Timeout`: the inner future is polled first, so with a zero timeout an answer
/// that is ready on the first poll passes, and any other call times out at once.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn new_with_zero_times_out_unless_the_answer_is_ready() {
    let layer = TimeoutLayer::new(Duration::ZERO);
    let ready = tower::service_fn(|x: u32| async move { Ok::<_, std::convert::Infallible>(x) });
    assert_eq!(layer.layer(ready).oneshot(7).await.unwrap(), 7);

    let start = Instant::now();
    let svc = Slow::after(ms(1));
    let err = layer.layer(svc.clone()).oneshot(1).await.unwrap_err();
    assert_eq!(err.downcast_ref::<TimedOut>().unwrap().after(), Duration::ZERO);
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(svc.dropped(), 1);
    assert_eq!(layer.handle().snapshot().timed_out, 1);
}

/// Issue 15.1: a huge timeout saturates ("effectively never"), it never panics.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_huge_timeout_saturates() {
    let layer = TimeoutLayer::new(Duration::MAX);
    assert_eq!(layer.layer(Slow::after(Duration::from_secs(86_400 * 365))).oneshot(3).await.unwrap(), 3);
    let built = TimeoutLayer::builder().timeout(Duration::MAX).build().unwrap();
    assert_eq!(built.layer(Slow::after(ms(5))).oneshot(4).await.unwrap(), 4);
}

/// Issue 18: the timeouts leave a trace — a counter shared by every service and clone of the
/// layer, and an event to listeners registered on the builder and on the handle.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn timeouts_are_counted_and_published() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let from_builder = seen.clone();
    let layer = TimeoutLayer::builder()
        .name("api")
        .timeout(ms(20))
        .on_event(move |e: &TimeoutEvent| from_builder.lock().unwrap().push(("builder", e.clone())))
        .build()
        .unwrap();
    let handle = layer.handle();
    let from_handle = seen.clone();
    handle.on_event(move |e: &TimeoutEvent| from_handle.lock().unwrap().push(("handle", e.clone())));
    handle.on_event(|_: &TimeoutEvent| panic!("a listener that panics is contained"));

    let a = layer.layer(Slow::hang());
    let b = layer.layer(Slow::after(ms(5)));
    assert!(a.clone().oneshot(1).await.unwrap_err().is::<TimedOut>());
    assert!(a.oneshot(2).await.unwrap_err().is::<TimedOut>());
    assert_eq!(b.oneshot(3).await.unwrap(), 3);

    assert_eq!(handle.snapshot().timed_out, 2);
    let seen = seen.lock().unwrap();
    let timed_out = TimeoutEvent::TimedOut { after: ms(20) };
    assert_eq!(
        *seen,
        vec![
            ("builder", timed_out.clone()),
            ("handle", timed_out.clone()),
            ("builder", timed_out.clone()),
            ("handle", timed_out)
        ]
    );
}

/// A timeout reserves nothing: readiness is the inner service's, and an inner `poll_ready`
/// error comes through boxed.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn poll_ready_is_the_inner_services() {
    let (mock, mut handle) = tower_test::mock::pair::<u32, u32>();
    let mut svc = task::spawn(TimeoutLayer::new(ms(100)).layer(mock));
    handle.allow(0);
    assert_pending!(svc.enter(|cx, mut s| s.poll_ready(cx)));
    handle.allow(1);
    assert_ready_ok!(svc.enter(|cx, mut s| s.poll_ready(cx)));
    let fut = svc.call(1);
    let (req, send) = handle.next_request().await.unwrap();
    assert_eq!(req, 1);
    send.send_response(2);
    assert_eq!(fut.await.unwrap(), 2);

    handle.send_error("inner down");
    let err = svc.enter(|cx, mut s| s.poll_ready(cx)).map(|r| r.unwrap_err());
    assert_eq!(err.map(|e| e.to_string()), std::task::Poll::Ready("inner down".to_owned()));
}

#[cfg(feature = "serde")]
#[test]
fn the_config_reads_from_a_settings_file() {
    let config: TimeoutConfig = serde_json::from_str(r#"{ "name": "db", "timeout": "250ms" }"#).unwrap();
    assert_eq!(config.timeout, ms(250));
    config.validate().unwrap();
    let zero: TimeoutConfig = serde_json::from_str(r#"{ "timeout": "0s" }"#).unwrap();
    assert_eq!(zero.validate().unwrap_err().field(), "timeout");
    assert!(serde_json::from_str::<TimeoutConfig>(r#"{ "timout": "1s" }"#).is_err());
    let back: TimeoutConfig = serde_json::from_str(&serde_json::to_string(&config).unwrap()).unwrap();
    assert_eq!(back, config);
}

#[cfg(feature = "http")]
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn grpc_timeout_header_sets_the_timeout() {
    use palisade_timeout::grpc_timeout;

    let parse = |v: &str| grpc_timeout(&http::Request::builder().header("grpc-timeout", v).body(()).unwrap());
    assert_eq!(parse("1H"), Some(Duration::from_secs(3600)));
    assert_eq!(parse("2M"), Some(Duration::from_secs(120)));
    assert_eq!(parse("3S"), Some(Duration::from_secs(3)));
    assert_eq!(parse("4m"), Some(ms(4)));
    assert_eq!(parse("5u"), Some(Duration::from_micros(5)));
    assert_eq!(parse("6n"), Some(Duration::from_nanos(6)));
    assert_eq!(parse("99999999H"), Some(Duration::from_secs(99_999_999 * 3600)));
    for bad in ["", "S", "123456789S", "1x", "-1S", "1.5S"] {
        assert_eq!(parse(bad), None, "{bad}");
    }
    assert_eq!(grpc_timeout(&http::Request::new(())), None);

    let start = Instant::now();
    let layer = TimeoutLayer::builder().per_request(grpc_timeout::<()>).build().unwrap();
    let svc = tower::service_fn(|_req: http::Request<()>| async {
        tokio::time::sleep(Duration::from_secs(10)).await;
        Ok::<_, std::convert::Infallible>(())
    });
    let req = http::Request::builder().header("grpc-timeout", "250m").body(()).unwrap();
    assert!(layer.layer(svc).oneshot(req).await.unwrap_err().is::<TimedOut>());
    assert_eq!(start.elapsed(), ms(250));
}

/// The documented difference from tower's `Timeout`: the time is counted from the first
/// poll at which the inner future is pending, not from `call`.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_time_starts_at_the_first_pending_poll() {
    let svc = Slow::hang();
    let mut service = TimeoutLayer::new(ms(300)).layer(svc.clone());
    service.ready().await.unwrap();
    let mut fut = task::spawn(service.call(1));
    tokio::time::advance(Duration::from_secs(1)).await; // not polled yet: not counted
    assert_pending!(fut.poll());
    tokio::time::advance(ms(299)).await;
    assert_pending!(fut.poll());
    tokio::time::advance(ms(1)).await;
    let err = match fut.poll() {
        std::task::Poll::Ready(r) => r.unwrap_err(),
        std::task::Poll::Pending => panic!("300 ms after the first poll it must have timed out"),
    };
    assert_eq!(err.downcast_ref::<TimedOut>().unwrap().after(), ms(300));
    assert_eq!(svc.dropped(), 0, "the future itself is dropped by its owner");
    drop(fut);
    assert_eq!(svc.dropped(), 1);
}
