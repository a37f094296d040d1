//! Chaos on an HTTP service: requests are not `Clone`, substitute responses are 503s, and the
//! predicate spares the health check.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use palisade_chaos::ChaosLayer;
use palisade_core::BoxError;
use tower::{service_fn, Layer, Service, ServiceExt};

type Req = http::Request<()>;
type Res = http::Response<String>;

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn outcomes_replace_responses_except_for_spared_paths() {
    let layer: ChaosLayer<Req, Res> = ChaosLayer::builder()
        .name("backend")
        .seed(11)
        .outcome_rate(1.0)
        .outcome_with(|_req: &Req| http::Response::builder().status(503).body("chaos".to_owned()).unwrap())
        .inject_when(|req: &Req| req.uri().path() != "/health")
        .build()
        .unwrap();
    let backend = service_fn(|_req: Req| async { Ok::<Res, BoxError>(http::Response::new("ok".to_owned())) });
    let mut svc = layer.layer(backend);

    let get = |path: &str| http::Request::get(path).body(()).unwrap();
    let res = svc.ready().await.unwrap().call(get("/api")).await.unwrap();
    assert_eq!((res.status().as_u16(), res.body().as_str()), (503, "chaos"));
    let res = svc.ready().await.unwrap().call(get("/health")).await.unwrap();
    assert_eq!((res.status().as_u16(), res.body().as_str()), (200, "ok"));

    layer.handle().set_outcome_rate(0.0).unwrap();
    let res = svc.oneshot(get("/api")).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(layer.handle().snapshot().outcomes, 1);
}
