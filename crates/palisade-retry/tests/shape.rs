#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
//! The one shape (issue 19): infallible `new`, the config as the builder's storage (defaults,
//! validation, serde round trip), one engine for retry and hedging.

mod support;

use std::time::Duration;

use palisade_retry::hedge::{HedgeConfig, HedgeLayer, HedgeMode};
use palisade_retry::{Backoff, BudgetConfig, Jitter, RetryBudget, RetryConfig, RetryLayer};
use support::{err, ms, Scripted, Step};
use tokio::time::Instant;
use tower::{Layer, ServiceExt};

/// `RetryLayer::new(n)` makes `n` attempts with the default backoff; `0` is read as `1`.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn retry_new_takes_the_attempts_and_the_defaults() {
    let svc = Scripted::new([err("a"), err("b"), Step::Ok(3, Duration::ZERO)]);
    let layer = RetryLayer::new(3);
    assert_eq!(layer.handle().name(), "retry");
    assert_eq!(layer.layer(svc.clone()).oneshot(1).await.unwrap(), 3);
    assert_eq!(svc.calls(), 3);

    for n in [0, 1] {
        let svc = Scripted::new([err("a"), Step::Ok(2, Duration::ZERO)]);
        let layer = RetryLayer::new(n);
        assert_eq!(layer.layer(svc.clone()).oneshot(1).await.unwrap_err().to_string(), "a", "new({n})");
        assert_eq!(svc.calls(), 1, "new({n}) sends once");
    }
}

/// `RetryLayer::new(n)` is `builder().max_attempts(n).build()`: the same config.
#[test]
fn retry_new_is_the_default_config() {
    let config = RetryLayer::builder().max_attempts(5).config().clone();
    assert_eq!(config, RetryConfig { max_attempts: 5, ..RetryConfig::default() });
    assert_eq!(RetryConfig::default().budget, BudgetConfig::default());
    assert!(RetryLayer::new(5).handle().budget().remaining() > 0.0);
}

/// `HedgeLayer::new(d)`: two attempts, the second after `d`; a zero delay sends both at once.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn hedge_new_hedges_after_the_delay() {
    let start = Instant::now();
    let svc = Scripted::new([Step::Ok(1, ms(1000)), Step::Ok(2, ms(10))]);
    let layer = HedgeLayer::new(ms(50));
    assert_eq!(layer.handle().current_delay(), Some(ms(50)));
    assert_eq!(layer.layer(svc.clone()).oneshot(1).await.unwrap(), 2);
    assert_eq!(start.elapsed(), ms(60));
    assert_eq!(svc.call_times(), [ms(0), ms(50)]);

    let svc = Scripted::new([Step::Ok(1, ms(1000)), Step::Ok(2, ms(10))]);
    let parallel = HedgeLayer::new(Duration::ZERO);
    assert_eq!(parallel.handle().current_delay(), None, "zero delay is parallel mode");
    assert_eq!(parallel.layer(svc.clone()).oneshot(1).await.unwrap(), 2);
    assert_eq!(svc.call_times(), [ms(0), ms(0)]);
}

/// Each config names the bad field; conflicts between the builder's parts do not exist
/// (a shared budget takes the place of the config's).
#[test]
fn configs_name_the_bad_field() {
    let bad = |c: RetryConfig| c.validate().unwrap_err().field().to_owned();
    assert_eq!(bad(RetryConfig { max_attempts: 0, ..RetryConfig::default() }), "max_attempts");
    assert_eq!(bad(RetryConfig { max_delay: Duration::ZERO, ..RetryConfig::default() }), "max_delay");
    assert_eq!(
        bad(RetryConfig { jitter: Jitter::Proportional { percent: 101 }, ..RetryConfig::default() }),
        "jitter.percent"
    );
    assert_eq!(
        bad(RetryConfig { backoff: Backoff::exponential_with(ms(1), 0.5), ..RetryConfig::default() }),
        "backoff"
    );
    let ttl0 = BudgetConfig::Ratio { ttl: Duration::ZERO, min_per_sec: 1, ratio: 0.1 };
    assert_eq!(bad(RetryConfig { budget: ttl0, ..RetryConfig::default() }), "budget.ttl");
    // A shared budget is used instead of the config's, but the config is still checked.
    let err = RetryConfig { budget: ttl0, ..RetryConfig::default() }
        .into_builder()
        .budget(RetryBudget::unlimited())
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "budget.ttl");

    let hedge = |c: HedgeConfig| c.validate().unwrap_err().field().to_owned();
    assert_eq!(hedge(HedgeConfig { max_attempts: 0, ..HedgeConfig::default() }), "max_attempts");
    assert_eq!(hedge(HedgeConfig { max_attempts: 101, ..HedgeConfig::default() }), "max_attempts");
    let p = HedgeMode::Percentile { percentile: 1.5, fallback: ms(10), min_samples: 4 };
    assert_eq!(hedge(HedgeConfig { mode: p, ..HedgeConfig::default() }), "latency_percentile");
    assert!(HedgeConfig::default().validate().is_ok());
}

/// A shared budget given to the builder is the layer's budget; without one each layer gets
/// its own from the config.
#[test]
fn a_shared_budget_replaces_the_configs_own() {
    let shared = RetryBudget::unlimited();
    let a = RetryLayer::builder().budget(shared.clone()).build().unwrap();
    let b = HedgeLayer::builder().budget(shared.clone()).build().unwrap();
    assert!(a.handle().budget().ptr_eq(&shared));
    assert!(b.handle().budget().ptr_eq(&shared));
    let c = RetryLayer::builder().build().unwrap();
    let d = RetryLayer::builder().build().unwrap();
    assert!(!c.handle().budget().ptr_eq(d.handle().budget()));
}

#[cfg(feature = "serde")]
mod serde_form {
    use super::*;

    /// Every field written out reads back the same (and builds).
    #[test]
    fn configs_round_trip() {
        let retry = RetryConfig {
            name: "payments".into(),
            max_attempts: 4,
            backoff: Backoff::linear(ms(100), ms(50)),
            jitter: Jitter::proportional(),
            max_delay: Duration::from_secs(2),
            cap_after_jitter: true,
            max_retry_after: Duration::from_secs(5),
            wait_for_half_open: Some(ms(300)),
            retries_exhausted_error: true,
            attempt_timeout: Some(ms(200)),
            deadline: Some(Duration::from_secs(3)),
            budget: BudgetConfig::TokenBucket { max_tokens: 10, token_ratio: 0.1 },
            seed: Some(7),
        };
        let json = serde_json::to_string(&retry).unwrap();
        assert_eq!(serde_json::from_str::<RetryConfig>(&json).unwrap(), retry, "{json}");
        assert_eq!(retry.build().unwrap().handle().name(), "payments");

        for mode in [
            HedgeMode::Delay(ms(30)),
            HedgeMode::Parallel,
            HedgeMode::Fallback,
            HedgeMode::Percentile { percentile: 0.95, fallback: ms(100), min_samples: 16 },
        ] {
            let hedge = HedgeConfig { name: "h".into(), max_attempts: 3, mode, ..HedgeConfig::default() };
            let json = serde_json::to_string(&hedge).unwrap();
            assert_eq!(serde_json::from_str::<HedgeConfig>(&json).unwrap(), hedge, "{json}");
        }
        let defaults = serde_json::to_string(&RetryConfig::default()).unwrap();
        assert_eq!(serde_json::from_str::<RetryConfig>(&defaults).unwrap(), RetryConfig::default());
    }

    /// The forms a config file uses; unknown fields are refused; a custom backoff (code) has
    /// no config form.
    #[test]
    fn config_file_forms() {
        let hedge: HedgeConfig =
            serde_json::from_str(r#"{"mode": {"delay": "50ms"}, "budget": "unlimited"}"#).unwrap();
        assert_eq!(hedge.mode, HedgeMode::Delay(ms(50)));
        assert_eq!(hedge.budget, BudgetConfig::Unlimited);
        let parallel: HedgeConfig = serde_json::from_str(r#"{"mode": "parallel"}"#).unwrap();
        assert_eq!(parallel.mode, HedgeMode::Parallel);
        assert!(serde_json::from_str::<RetryConfig>(r#"{"max_attempt": 3}"#).is_err());
        assert!(serde_json::from_str::<HedgeConfig>(r#"{"delay": "1s"}"#).is_err());
        let custom = RetryConfig { backoff: Backoff::custom(|_| ms(1)), ..RetryConfig::default() };
        assert!(serde_json::to_string(&custom).is_err());
    }
}
