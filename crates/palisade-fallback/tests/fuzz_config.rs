#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::unit_arg,
    clippy::format_push_string,
    missing_docs
)]
//! Issue 15.8: every builder setting and serde field with extreme values gives a
//! `ConfigError`, or a layer that serves calls without panicking or hanging (paused clock,
//! every call bounded).

use std::time::Duration;

use palisade_core::BoxError;
use palisade_fallback::{FallbackConfig, FallbackContext, FallbackLayer, TriggerOn};
use proptest::prelude::*;
use tower::util::BoxCloneSyncService;
use tower::{service_fn, Layer, ServiceExt};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap()
}

type Svc = BoxCloneSyncService<u8, u8, BoxError>;

fn inner() -> Svc {
    BoxCloneSyncService::new(service_fn(|x: u8| async move {
        if x % 2 == 0 {
            Err::<u8, BoxError>("even".into())
        } else {
            Ok(x)
        }
    }))
}

async fn serve(svc: impl tower::Service<u8, Response = u8, Error = BoxError> + Clone, script: &[u8]) {
    for &x in script {
        let r = tokio::time::timeout(Duration::from_secs(60), svc.clone().oneshot(x)).await;
        assert!(r.is_ok(), "a call hung");
    }
}

fn trigger() -> impl Strategy<Value = TriggerOn> {
    prop_oneof![
        Just(TriggerOn::FailuresAndRejections),
        Just(TriggerOn::Failures),
        Just(TriggerOn::Rejections)
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn any_builder_gives_an_error_or_a_working_fallback(
        name in prop_oneof![Just(String::new()), Just("f".to_owned()), Just("x".repeat(10_000))],
        trigger_on in trigger(),
        chain in 0usize..4,
        kind in 0u8..3,
        script in proptest::collection::vec(any::<u8>(), 0..16),
    ) {
        runtime().block_on(async {
            let b = FallbackLayer::builder().name(name).trigger_on(trigger_on);
            let result = match kind {
                0 => match b.fallback_fn(|_: FallbackContext<u8, u8>| async { Ok::<_, BoxError>(0) }).build() {
                    Ok(layer) => Ok(serve(layer.layer(inner()), &script).await),
                    Err(e) => Err(e),
                },
                1 => match b.fallback_chain((0..chain).map(|i| (format!("p{i}"), inner()))).build() {
                    Ok(layer) => Ok(serve(layer.layer(inner()), &script).await),
                    Err(e) => Err(e),
                },
                _ => match b
                    .fallback_fn_with_request(|c: FallbackContext<u8, u8>| async move {
                        Ok::<_, BoxError>(c.request().copied().unwrap_or(0))
                    })
                    .build()
                {
                    Ok(layer) => Ok(serve(layer.layer(inner()), &script).await),
                    Err(e) => Err(e),
                },
            };
            if let Err(e) = result {
                assert!(!e.to_string().is_empty());
            }
        });
    }

    #[test]
    fn any_serde_config_gives_an_error_or_a_working_fallback(
        name in prop_oneof![Just(None), Just(Some(String::new())), Just(Some("n".to_owned()))],
        trigger_on in prop_oneof![Just("\"failures\""), Just("\"rejections\""), Just("\"failures_and_rejections\""), Just("\"nope\""), Just("1")],
        script in proptest::collection::vec(any::<u8>(), 0..8),
    ) {
        let mut json = format!("{{\"trigger_on\": {trigger_on}");
        if let Some(n) = name {
            json.push_str(&format!(", \"name\": {n:?}"));
        }
        json.push('}');
        let Ok(config) = serde_json::from_str::<FallbackConfig>(&json) else { return Ok(()) };
        runtime().block_on(async {
            let built = config
                .into_builder()
                .fallback_fn(|_: FallbackContext<u8, u8>| async { Ok::<_, BoxError>(1) })
                .build();
            match built {
                Err(e) => assert!(!e.to_string().is_empty()),
                Ok(layer) => serve(layer.layer(inner()), &script).await,
            }
        });
    }
}
