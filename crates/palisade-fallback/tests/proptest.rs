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

/// An inner service refusing in `poll_ready` (like a full bulkhead) or failing in `call`.
#[derive(Clone)]
struct Inner {
    refuse: bool,
    ok: bool,
}

impl tower::Service<u32> for Inner {
    type Response = u32;
    type Error = BoxError;
    type Future = std::future::Ready<Result<u32, BoxError>>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), BoxError>> {
        if self.refuse {
            let full = palisade_core::rejection::BulkheadFull::new(
                "pool",
                palisade_core::rejection::BulkheadFullReason::NoPermit,
            );
            std::task::Poll::Ready(Err(full.into()))
        } else {
            std::task::Poll::Ready(Ok(()))
        }
    }

    fn call(&mut self, x: u32) -> Self::Future {
        std::future::ready(if self.ok { Ok(x) } else { Err("inner failed".into()) })
    }
}

proptest! {
    #[test]
    fn refusals_and_failures_match_model(
        refuse in any::<bool>(),
        inner_ok in any::<bool>(),
        trigger in 0..3u8,
        providers in prop::collection::vec(any::<bool>(), 1..4),
    ) {
        let trigger_on = match trigger {
            0 => TriggerOn::FailuresAndRejections,
            1 => TriggerOn::Failures,
            _ => TriggerOn::Rejections,
        };
        let chain: Vec<_> = providers.iter().enumerate().map(|(i, ok)| (format!("p{i}"), provider(*ok, i))).collect();
        let layer = FallbackLayer::builder().trigger_on(trigger_on).fallback_chain(chain).build().unwrap();
        let handle = layer.handle();
        let svc = layer.layer(Inner { refuse, ok: inner_ok });
        let got = tokio_test::block_on(svc.oneshot(10)).map_err(|e| e.to_string());

        // Reference model.
        let inner_answer: Result<u32, String> = if refuse {
            Err("bulkhead `pool` is full: no permit free".to_owned())
        } else if inner_ok {
            Ok(10)
        } else {
            Err("inner failed".to_owned())
        };
        let triggers = match (&inner_answer, refuse) {
            (Ok(_), _) => false,
            (Err(_), true) => trigger_on != TriggerOn::Failures,
            (Err(_), false) => trigger_on != TriggerOn::Rejections,
        };
        let want = if triggers {
            match providers.iter().position(|ok| *ok) {
                Some(i) => Ok(10 + i as u32 + 1),
                None => Err(format!("provider {} failed", providers.len() - 1)),
            }
        } else {
            inner_answer
        };
        prop_assert_eq!(&got, &want);
        let s = handle.snapshot();
        // A refusal that does not trigger fails `poll_ready`, before any call.
        prop_assert_eq!(s.calls, u64::from(!refuse || triggers));
        prop_assert_eq!(s.triggered, u64::from(triggers));
        prop_assert_eq!(s.fallbacks_used, u64::from(triggers && got.is_ok()));
        prop_assert_eq!(s.fallbacks_failed, u64::from(triggers && got.is_err()));
    }
}
