#![allow(clippy::unwrap_used, clippy::expect_used, clippy::float_cmp, missing_docs)]
//! The retry state machine against a small reference model.

mod support;

use palisade_core::classify::{classify_fn, Classification};
use palisade_core::BoxError;
use palisade_retry::{Backoff, Jitter, RetryBudget, RetryLayer};
use proptest::prelude::*;
use support::{ms, Scripted, Step};
use tower::{Layer, ServiceExt};

#[derive(Clone, Copy, Debug)]
enum Outcome {
    Ok,
    Retryable,
    Fatal,
    Hang,
}

fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![Just(Outcome::Ok), Just(Outcome::Retryable), Just(Outcome::Fatal), Just(Outcome::Hang)]
}

/// What the model says: the result (`Ok(attempt)` or the error text) and the attempts made.
fn model(script: &[Outcome], max_attempts: u32) -> (Result<u32, String>, usize) {
    for attempt in 1..=max_attempts {
        let step = script[(attempt as usize - 1).min(script.len() - 1)];
        let last = attempt == max_attempts;
        match step {
            Outcome::Ok => return (Ok(attempt), attempt as usize),
            Outcome::Fatal => return (Err("fatal".into()), attempt as usize),
            Outcome::Retryable if last => return (Err("retryable".into()), attempt as usize),
            Outcome::Hang if last => return (Err("timed out".into()), attempt as usize),
            Outcome::Retryable | Outcome::Hang => {}
        }
    }
    unreachable!()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn retry_matches_the_model(script in prop::collection::vec(outcome(), 1..6), max_attempts in 1u32..6) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
        rt.block_on(async {
            let steps: Vec<Step> = script
                .iter()
                .enumerate()
                .map(|(i, o)| match o {
                    Outcome::Ok => Step::Ok(i as u32 + 1, ms(0)),
                    Outcome::Retryable => Step::Err("retryable", ms(0)),
                    Outcome::Fatal => Step::Err("fatal", ms(0)),
                    Outcome::Hang => Step::Hang,
                })
                .collect();
            let svc = Scripted::new(steps);
            let classifier = classify_fn(|r: &Result<u32, BoxError>| match r {
                Ok(_) => Classification::success(),
                Err(e) if e.to_string() == "fatal" => Classification::failure(),
                Err(_) => Classification::retryable_failure(),
            });
            let layer = RetryLayer::builder()
                .max_attempts(max_attempts)
                .classifier(classifier)
                .budget(RetryBudget::unlimited())
                .backoff(Backoff::fixed(ms(10)))
                .jitter(Jitter::None)
                .attempt_timeout(ms(100))
                .build()
                .unwrap();
            let handle = layer.handle();
            let got = layer.layer(svc.clone()).oneshot(0).await;
            let (expected, attempts) = model(&script, max_attempts);
            let got = match got {
                Ok(v) => Ok(v),
                Err(e) if e.is::<palisade_core::rejection::TimedOut>() => Err("timed out".to_owned()),
                Err(e) => Err(e.to_string()),
            };
            // Scripted answers `Ok(i + 1)` for step i, so an `Ok` names the step that answered.
            let expected = expected.map(|a| {
                let i = (a as usize - 1).min(script.len() - 1);
                i as u32 + 1
            });
            prop_assert_eq!(got, expected);
            prop_assert_eq!(svc.calls(), attempts);
            let snap = handle.snapshot();
            prop_assert_eq!(snap.attempts, attempts as u64);
            prop_assert_eq!(snap.retries, attempts as u64 - 1);
            // Every attempt that hung was dropped, none other.
            let hung = svc.dropped();
            prop_assert_eq!(hung as u64, snap.attempt_timeouts);
            Ok(())
        })?;
    }
}
