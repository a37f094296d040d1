//! The fallback with the HTTP classifier: a 503 from the backend is answered from a stale
//! copy; a 404 is the backend's real answer and passes.
#![cfg(feature = "http")]
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use palisade_core::classify::HttpClassifier;
use palisade_core::BoxError;
use palisade_fallback::{FallbackContext, FallbackLayer};
use tower::{service_fn, Layer, ServiceExt};

type Req = http::Request<()>;
type Res = http::Response<String>;

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn failed_http_responses_are_answered_from_the_fallback() {
    let layer = FallbackLayer::builder()
        .name("pages")
        .classifier(HttpClassifier::new())
        .fallback_fn(|ctx: FallbackContext<Req, Res>| async move {
            let failed = ctx.response().map(http::Response::status);
            let mut res = http::Response::new(format!("stale copy (backend said {failed:?})"));
            res.headers_mut().insert("x-fallback", http::HeaderValue::from_static("1"));
            Ok::<_, BoxError>(res)
        })
        .build()
        .unwrap();
    let handle = layer.handle();
    let backend = service_fn(|req: Req| async move {
        let status = if req.uri().path() == "/missing" { 404 } else { 503 };
        Ok::<_, BoxError>(http::Response::builder().status(status).body(String::new()).unwrap())
    });
    let svc = layer.layer(backend);

    let res = svc.clone().oneshot(http::Request::get("/page").body(()).unwrap()).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-fallback"], "1");
    assert_eq!(res.body(), "stale copy (backend said Some(503))");

    let res = svc.oneshot(http::Request::get("/missing").body(()).unwrap()).await.unwrap();
    assert_eq!(res.status(), 404);
    assert_eq!(handle.snapshot().fallbacks_used, 1);
    assert_eq!(handle.snapshot().calls, 2);
}
