//! The chain against a reference model: the answer is the first provider that succeeds, else
//! the last provider's error; counters follow.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use palisade_core::BoxError;
use palisade_fallback::{FallbackLayer, TriggerOn};
use proptest::prelude::*;
use tower::util::BoxCloneSyncService;
use tower::{service_fn, Layer, ServiceExt};

fn provider(ok: bool, i: usize) -> BoxCloneSyncService<u32, u32, BoxError> {
    BoxCloneSyncService::new(service_fn(move |x: u32| async move {
        if ok {
            Ok(x + i as u32 + 1)
        } else {
            Err(BoxError::from(format!("provider {i} failed")))
        }
    }))
}

proptest! {
    #[test]
    fn chain_matches_model(inner_ok in any::<bool>(), providers in prop::collection::vec(any::<bool>(), 1..5)) {
        let chain: Vec<_> = providers.iter().enumerate().map(|(i, ok)| (format!("p{i}"), provider(*ok, i))).collect();
        let layer = FallbackLayer::builder().trigger_on(TriggerOn::Failures).fallback_chain(chain).build().unwrap();
        let handle = layer.handle();
        let svc = layer.layer(service_fn(move |x: u32| async move {
            if inner_ok { Ok(x) } else { Err(BoxError::from("inner failed")) }
        }));
        let got = tokio_test::block_on(svc.oneshot(10)).map_err(|e| e.to_string());

        // Reference model.
        let (want, tried) = if inner_ok {
            (Ok(10), 0)
        } else {
            match providers.iter().position(|ok| *ok) {
                Some(i) => (Ok(10 + i as u32 + 1), i + 1),
                None => (Err(format!("provider {} failed", providers.len() - 1)), providers.len()),
            }
        };
        prop_assert_eq!(got.clone(), want);
        let s = handle.snapshot();
        prop_assert_eq!(s.calls, 1);
        prop_assert_eq!(s.triggered, u64::from(!inner_ok));
        prop_assert_eq!(s.fallbacks_used, u64::from(!inner_ok && got.is_ok()));
        prop_assert_eq!(s.fallbacks_failed, u64::from(got.is_err()));
        prop_assert_eq!(s.provider_failures, (tried - usize::from(!inner_ok && got.is_ok())) as u64);
    }
}
