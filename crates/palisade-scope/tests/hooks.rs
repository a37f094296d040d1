#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade_scope::hooks::HooksLayer;
use tower::{Layer, Service, ServiceExt};
use tower_test::mock;

type Log = Arc<Mutex<Vec<String>>>;

fn layer(
    log: &Log,
) -> HooksLayer<
    impl Fn(&u32) + Clone,
    impl Fn(&Result<u32, palisade_core::BoxError>, Duration) + Clone,
    impl Fn(Duration) + Clone,
    impl Fn() + Clone,
> {
    let (a, b, c, d) = (log.clone(), log.clone(), log.clone(), log.clone());
    HooksLayer::new()
        .on_request(move |r: &u32| a.lock().unwrap().push(format!("request {r}")))
        .on_response(move |r: &Result<u32, palisade_core::BoxError>, took: Duration| {
            b.lock().unwrap().push(format!("response ok={} {}ms", r.is_ok(), took.as_millis()));
        })
        .on_cancel(move |ran: Duration| c.lock().unwrap().push(format!("cancel {}ms", ran.as_millis())))
        .on_dispose(move || d.lock().unwrap().push("dispose".into()))
}

fn take(log: &Log) -> Vec<String> {
    std::mem::take(&mut *log.lock().unwrap())
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn hooks_see_request_response_cancel_and_dispose() {
    let log: Log = Arc::default();
    let (svc, mut handle) = mock::pair::<u32, u32>();
    let mut svc = layer(&log).layer(svc);
    handle.allow(3);

    // A call that succeeds after 250 ms.
    svc.ready().await.unwrap();
    let fut = tokio::spawn(svc.call(1));
    let (_, send) = handle.next_request().await.unwrap();
    tokio::time::advance(Duration::from_millis(250)).await;
    send.send_response(10);
    assert_eq!(fut.await.unwrap().unwrap(), 10);
    assert_eq!(take(&log), ["request 1", "response ok=true 250ms"]);

    // A call that fails.
    svc.ready().await.unwrap();
    let fut = svc.call(2);
    let (_, send) = handle.next_request().await.unwrap();
    send.send_error(std::io::Error::other("no"));
    assert!(fut.await.is_err());
    assert_eq!(take(&log), ["request 2", "response ok=false 0ms"]);

    // A call dropped after 40 ms: on_cancel, no on_response.
    svc.ready().await.unwrap();
    let fut = svc.call(3);
    tokio::time::advance(Duration::from_millis(40)).await;
    drop(fut);
    assert_eq!(take(&log), ["request 3", "cancel 40ms"]);

    // on_dispose once, when the last clone and future are gone.
    let clone = svc.clone();
    drop(svc);
    assert!(take(&log).is_empty());
    drop(clone);
    assert_eq!(take(&log), ["dispose"]);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn dispose_waits_for_futures_in_flight() {
    let log: Log = Arc::default();
    let (svc, mut handle) = mock::pair::<u32, u32>();
    let mut svc = layer(&log).layer(svc);
    handle.allow(1);
    svc.ready().await.unwrap();
    let fut = svc.call(1);
    drop(svc);
    assert_eq!(take(&log), ["request 1"]);
    let (_, send) = handle.next_request().await.unwrap();
    send.send_response(1);
    fut.await.unwrap();
    assert_eq!(take(&log), ["response ok=true 0ms", "dispose"]);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn panicking_hooks_do_not_break_the_call() {
    let svc = tower::service_fn(|n: u32| async move { Ok::<_, std::io::Error>(n + 1) });
    let layer = HooksLayer::new()
        .on_request(|_: &u32| panic!("request hook"))
        .on_response(|_: &Result<u32, std::io::Error>, _: Duration| panic!("response hook"))
        .on_cancel(|_: Duration| panic!("cancel hook"))
        .on_dispose(|| panic!("dispose hook"));
    let mut svc = layer.layer(svc);
    assert_eq!(svc.ready().await.unwrap().call(1).await.unwrap(), 2);
    let fut = svc.ready().await.unwrap().call(2);
    drop(fut); // on_cancel panics inside drop: contained
    drop(svc); // on_dispose panics inside drop: contained
}
