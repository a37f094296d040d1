#![allow(clippy::unwrap_used, clippy::expect_used, clippy::float_cmp, missing_docs)]

mod support;

use std::time::Duration;

use palisade_core::rejection::{find_rejection, RejectionKind, TimedOut};
use palisade_retry::timeout::TimeoutLayer;
use support::{ms, Scripted, Step};
use tokio::time::Instant;
use tokio_test::{assert_pending, task};
use tower::{Layer, Service, ServiceExt};

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_fixed_timeout_drops_the_call_and_times_out() {
    let start = Instant::now();
    let svc = Scripted::new([Step::Hang]);
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
    let svc = Scripted::new([Step::Ok(4, ms(100))]);
    let layer = TimeoutLayer::new(ms(300)).unwrap();
    assert_eq!(layer.layer(svc).oneshot(1).await.unwrap(), 4);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_timeout_may_be_chosen_per_request() {
    let layer = TimeoutLayer::builder()
        .per_request(|req: &u32| if *req == 0 { None } else { Some(ms(u64::from(*req))) })
        .build()
        .unwrap();
    let svc = Scripted::new([Step::Ok(1, ms(50))]);
    let service = layer.layer(svc.clone());
    assert!(service.clone().oneshot(100).await.is_ok());
    assert!(service.clone().oneshot(10).await.unwrap_err().is::<TimedOut>());
    // `None`: no timeout at all.
    let slow = Scripted::new([Step::Ok(2, Duration::from_secs(3600))]);
    assert_eq!(layer.layer(slow).oneshot(0).await.unwrap(), 2);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn dropping_the_future_drops_the_call() {
    let svc = Scripted::new([Step::Hang]);
    let mut service = TimeoutLayer::new(ms(300)).unwrap().layer(svc.clone());
    service.ready().await.unwrap();
    let mut fut = task::spawn(service.call(1));
    assert_pending!(fut.poll());
    drop(fut);
    assert_eq!(svc.dropped(), 1);
}

#[test]
fn a_zero_timeout_is_refused() {
    assert_eq!(TimeoutLayer::new(Duration::ZERO).unwrap_err().field(), "timeout");
}

#[cfg(feature = "http")]
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn grpc_timeout_header_sets_the_timeout() {
    use palisade_retry::timeout::grpc_timeout;

    let parse = |v: &str| grpc_timeout(&http::Request::builder().header("grpc-timeout", v).body(()).unwrap());
    assert_eq!(parse("1H"), Some(Duration::from_secs(3600)));
    assert_eq!(parse("2M"), Some(Duration::from_secs(120)));
    assert_eq!(parse("3S"), Some(Duration::from_secs(3)));
    assert_eq!(parse("4m"), Some(ms(4)));
    assert_eq!(parse("5u"), Some(Duration::from_micros(5)));
    assert_eq!(parse("6n"), Some(Duration::from_nanos(6)));
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
