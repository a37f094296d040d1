//! `palisade::prelude::*` next to `tower_http::ServiceBuilderExt` (issue 18.2): tower-http's
//! trait has the same name as palisade's; the prelude exports palisade's anonymously (`as _`) so
//! the named import cannot shadow it and both traits' methods resolve on one `ServiceBuilder`.
#![cfg(feature = "bulkhead")]

use palisade::prelude::*;
use tower::{service_fn, ServiceBuilder, ServiceExt};
use tower_http::ServiceBuilderExt;

#[derive(Clone, Debug, PartialEq)]
struct Tag(&'static str);

#[tokio::test]
async fn tower_http_and_palisade_builder_methods_in_one_stack() -> Result<(), BoxError> {
    let svc = ServiceBuilder::new()
        // tower-http's ServiceBuilderExt, imported by name
        .add_extension(Tag("ext"))
        // palisade's ServiceBuilderExt, from the glob
        .bulkhead(BulkheadLayer::builder().max_concurrent(4).build()?)
        .service(service_fn(|req: http::Request<()>| async move {
            let tag = req.extensions().get::<Tag>().cloned();
            Ok::<_, BoxError>(http::Response::new(tag))
        }));
    let res = svc.oneshot(http::Request::new(())).await?;
    assert_eq!(res.into_body(), Some(Tag("ext")));
    Ok(())
}

/// The trait is still nameable at the crate root, e.g. in a generic bound.
#[test]
fn the_named_trait_stays_at_the_crate_root() {
    fn takes_ext<B: palisade::ServiceBuilderExt<tower::layer::util::Identity>>(_: B) {}
    takes_ext(ServiceBuilder::new());
}
