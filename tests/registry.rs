//! The registry: policies from one file, their stacks, handles, snapshots and reloads
//! (issue 18.3).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::future::Future;
use std::task::Poll;
use std::time::Duration;

use palisade::registry::{PatternHandle, PatternKind, PatternSnapshot, Registry, RegistryConfig};
use palisade::rejection::{BulkheadFull, RateLimited};
use palisade::BoxError;
use tokio_test::{assert_pending, task};
use tower::{service_fn, Layer, Service, ServiceExt};
use tower_test::mock;

const POLICIES: &str = include_str!("fixtures/policies.toml");

type Echo = Registry<&'static str, &'static str>;

fn echo(
) -> impl Service<&'static str, Response = &'static str, Error = BoxError, Future: Send> + Clone + Send + Sync
{
    service_fn(|req: &'static str| async move { Ok::<_, BoxError>(req) })
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn two_policies_from_a_file_make_working_stacks() {
    let registry = Echo::from_toml_str(POLICIES).unwrap();
    assert_eq!(registry.names().collect::<Vec<_>>(), ["payments", "search"]);

    // payments: the first attempt fails, the retry answers.
    let (inner, mut backend) = mock::pair::<&'static str, &'static str>();
    let svc = registry.layer("payments").unwrap().layer(inner);
    let call = tokio::spawn(svc.oneshot("charge"));
    let (req, send) = backend.next_request().await.unwrap();
    assert_eq!(req, "charge");
    send.send_error("connection reset");
    let (req, send) = backend.next_request().await.unwrap();
    assert_eq!(req, "charge");
    send.send_response("charged");
    assert_eq!(call.await.unwrap().unwrap(), "charged");
    let snapshot = registry.snapshot();
    let Some(PatternSnapshot::Retry(retry)) = snapshot.get("payments", PatternKind::Retry) else {
        panic!("payments has a retry: {snapshot:?}")
    };
    assert_eq!((retry.retries, retry.succeeded_after_retry), (1, 1));

    // search: 2 per second, the third call in the same instant is refused.
    let mut search = registry.layer("search").unwrap().layer(echo());
    assert_eq!(search.ready().await.unwrap().call("a").await.unwrap(), "a");
    assert_eq!(search.ready().await.unwrap().call("b").await.unwrap(), "b");
    let err = match search.ready().await {
        Ok(svc) => svc.call("c").await.unwrap_err(),
        Err(e) => e,
    };
    assert!(err.is::<RateLimited>(), "{err}");
}

#[test]
fn a_bad_value_is_named_with_its_full_path() {
    let err = Echo::from_toml_str("[policies.payments.retry]\nmax_attempts = 0").unwrap_err();
    assert_eq!(err.field(), "policies.payments.retry.max_attempts");
    assert_eq!(err.to_string(), "invalid `policies.payments.retry.max_attempts`: must be at least 1");

    // A wrong type: serde's error, under the field's path.
    let err = Echo::from_toml_str("[policies.payments.retry]\nmax_attempts = \"three\"").unwrap_err();
    assert_eq!(err.field(), "policies.payments.retry.max_attempts");
    assert!(err.rule().contains("line 2"), "{err}");

    // A rate limit tier's quota, inside an array (the rate limit names the quota).
    let err = Echo::from_toml_str(
        "[policies.search.rate_limit]\ntiers = [{ name = \"daily\", quota = { limit = 0, period = \"1d\" } }]",
    )
    .unwrap_err();
    assert_eq!(err.field(), "policies.search.rate_limit.tiers[0].quota");

    // What only the build checks is named the same way.
    let err = Echo::from_toml_str("[policies.search.rate_limit]\nname = \"api\"").unwrap_err();
    assert_eq!(err.field(), "policies.search.rate_limit.quota");
}

#[test]
fn unknown_fields_are_refused_with_their_path() {
    let err = Echo::from_toml_str("[policies.payments.retry]\nmax_attemps = 3").unwrap_err();
    assert_eq!(err.field(), "policies.payments.retry.max_attemps");
    assert!(err.rule().contains("unknown field `max_attemps`, expected one of"), "{err}");

    let err = Echo::from_toml_str("[policies.payments.retyr]\nmax_attempts = 3").unwrap_err();
    assert_eq!(err.field(), "policies.payments.retyr");
    assert!(err.rule().contains("unknown field `retyr`"), "{err}");

    let err = Echo::from_toml_str("[policy.payments.retry]").unwrap_err();
    assert_eq!(err.field(), "policy");
    assert!(err.rule().contains("unknown field `policy`"), "{err}");

    // A syntax error: no field to name, the line is in the rule.
    let err = Echo::from_toml_str("[policies.payments.retry]\nmax_attempts = ").unwrap_err();
    assert_eq!(err.field(), "file");
    assert!(err.rule().contains("line 2"), "{err}");
}

#[test]
fn a_conflict_names_both_fields() {
    let err = Echo::from_toml_str(
        "[policies.payments.circuit_breaker]\nconsecutive_failures = 5\nfailure_rate = 0.5",
    )
    .unwrap_err();
    assert_eq!(err.field(), "policies.payments.circuit_breaker.failure_rate");
    assert_eq!(err.conflicting_field(), Some("policies.payments.circuit_breaker.consecutive_failures"));
    assert!(err.to_string().starts_with(
        "conflicting `policies.payments.circuit_breaker.failure_rate` and `policies.payments.circuit_breaker.consecutive_failures`"
    ));
}

#[test]
fn an_unknown_policy_is_an_error_naming_it() {
    let registry = Echo::from_toml_str(POLICIES).unwrap();
    let err = registry.layer("paymnets").unwrap_err();
    assert_eq!(err.field(), "policies.paymnets");
    assert!(err.rule().contains("payments, search"), "{err}");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn json_loads_through_the_generic_path() {
    let json = r#"{ "policies": { "db": {
        "bulkhead": { "max_concurrent": 2 },
        "timeout": { "timeout": "250ms" }
    } } }"#;
    let registry = Echo::from_deserializer(&mut serde_json::Deserializer::from_str(json)).unwrap();
    let svc = registry.layer("db").unwrap().layer(echo());
    assert_eq!(svc.oneshot("q").await.unwrap(), "q");
    let kinds: Vec<_> = registry.handles().iter().map(|h| (h.policy.clone(), h.kind())).collect();
    assert_eq!(kinds, [("db".to_owned(), PatternKind::Bulkhead), ("db".to_owned(), PatternKind::Timeout)]);

    // A serde_json::Value works too, and its errors carry the path.
    let value = serde_json::json!({ "policies": { "db": { "bulkhead": { "max_concurrent": "two" } } } });
    let err = Echo::from_deserializer(value).unwrap_err();
    assert_eq!(err.field(), "policies.db.bulkhead.max_concurrent");
    let err = RegistryConfig::from_deserializer(&mut serde_json::Deserializer::from_str(
        r#"{ "policies": { "db": { "bulkhead": { "max_concurrent": 0 } } } }"#,
    ))
    .unwrap_err();
    assert_eq!(err.field(), "policies.db.bulkhead.max_concurrent");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn reload_raises_a_bulkhead_limit_through_the_built_layer() {
    let registry = Echo::from_toml_str("[policies.api.bulkhead]\nmax_concurrent = 1").unwrap();
    let (inner, mut backend) = mock::pair::<&'static str, &'static str>();
    let svc = registry.layer("api").unwrap().layer(inner);

    let mut first = task::spawn(svc.clone().oneshot("1"));
    assert_pending!(first.poll());
    let err = svc.clone().oneshot("2").await.unwrap_err();
    assert!(err.is::<BulkheadFull>(), "{err}");

    let report = registry.reload("[policies.api.bulkhead]\nmax_concurrent = 2").unwrap();
    assert_eq!(report.applied, ["policies.api.bulkhead.max_concurrent"]);
    assert!(report.is_complete(), "{report:?}");

    // The service built before the reload admits a second call now.
    let mut second = task::spawn(svc.clone().oneshot("3"));
    assert_pending!(second.poll());
    let Some(PatternHandle::Bulkhead(bulkhead)) = registry.handles().first().map(|h| h.handle.clone()) else {
        panic!("api has a bulkhead")
    };
    assert_eq!((bulkhead.max_concurrent(), bulkhead.in_flight()), (2, 2));
    // A third is still refused.
    assert!(svc.clone().oneshot("4").await.unwrap_err().is::<BulkheadFull>());

    // The calls in flight finish normally.
    for _ in 0..2 {
        let (req, send) = backend.next_request().await.unwrap();
        send.send_response(req);
    }
    assert_eq!(first.await.unwrap(), "1");
    assert_eq!(second.await.unwrap(), "3");
    assert_eq!(bulkhead.in_flight(), 0);

    // Reloading the same file again changes nothing.
    let report = registry.reload("[policies.api.bulkhead]\nmax_concurrent = 2").unwrap();
    assert!(report.applied.is_empty() && report.is_complete(), "{report:?}");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn reload_changes_a_rate_limit_quota_and_chaos_rates() {
    let registry = Echo::from_toml_str(
        "[policies.api.rate_limit]\nquota = { limit = 1, period = \"1h\" }\n[policies.api.chaos]\nseed = 1",
    )
    .unwrap();
    let svc = registry.layer("api").unwrap().layer(echo());
    assert_eq!(svc.clone().oneshot("a").await.unwrap(), "a");
    assert!(svc.clone().oneshot("b").await.unwrap_err().is::<RateLimited>());

    let report = registry
        .reload(
            "[policies.api.rate_limit]\nquota = { limit = 1000, period = \"1s\" }\n[policies.api.chaos]\nseed = 1\nfault_rate = 1.0",
        )
        .unwrap();
    let mut applied = report.applied.clone();
    applied.sort();
    assert_eq!(
        applied,
        [
            "policies.api.chaos.fault_rate",
            "policies.api.rate_limit.quota.limit",
            "policies.api.rate_limit.quota.period"
        ]
    );
    assert!(report.is_complete(), "{report:?}");
    // The quota is no longer the limit; every call now gets the injected fault.
    let err = svc.clone().oneshot("c").await.unwrap_err();
    assert!(err.is::<palisade::chaos::InjectedFault>(), "{err}");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_keyed_rate_limit_takes_its_settings_from_the_file_and_its_key_from_code() {
    let file = |limit: u32| {
        format!(
            "[policies.api.rate_limit]\nquota = {{ limit = {limit}, period = \"1h\" }}\nmax_keys = 10\nwhen_unkeyed = \"pass_through\""
        )
    };
    // The client is the part before the `/`; a request without one has no key.
    let registry = Echo::builder()
        .rate_limit_with("api", |limit| {
            limit.keyed(|req: &&'static str| req.split_once('/').map(|(client, _)| client.to_owned()))
        })
        .from_toml_str(&file(1))
        .unwrap();
    let svc = registry.layer("api").unwrap().layer(echo());
    assert_eq!(svc.clone().oneshot("alice/1").await.unwrap(), "alice/1");
    assert_eq!(svc.clone().oneshot("bob/1").await.unwrap(), "bob/1");
    assert!(svc.clone().oneshot("alice/2").await.unwrap_err().is::<RateLimited>());
    // `when_unkeyed = "pass_through"` from the file: no key, no limit.
    for _ in 0..3 {
        assert_eq!(svc.clone().oneshot("anonymous").await.unwrap(), "anonymous");
    }

    // The per-key quota changes at run time.
    let report = registry.reload(&file(3)).unwrap();
    assert_eq!(report.applied, ["policies.api.rate_limit.quota.limit"]);
    assert!(report.is_complete(), "{report:?}");
    assert_eq!(svc.clone().oneshot("alice/3").await.unwrap(), "alice/3");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn reload_moves_an_adaptive_limit_through_its_handle() {
    let file = |initial: usize, max: usize, smoothing: f64| {
        format!(
            "[policies.api.adaptive_limit.algorithm.vegas]\ninitial_limit = {initial}\nmin_limit = 2\nmax_limit = {max}\nsmoothing = {smoothing}"
        )
    };
    let registry = Echo::from_toml_str(&file(10, 50, 1.0)).unwrap();
    let svc = registry.layer("api").unwrap().layer(echo());
    let Some(PatternHandle::AdaptiveLimit(adaptive)) = registry.handles().first().map(|h| h.handle.clone())
    else {
        panic!("api has an adaptive limit")
    };
    assert_eq!((adaptive.limit(), adaptive.bounds()), (10, Some((2, 50))));

    let report = registry.reload(&file(4, 8, 1.0)).unwrap();
    let mut applied = report.applied.clone();
    applied.sort();
    assert_eq!(
        applied,
        [
            "policies.api.adaptive_limit.algorithm.vegas.initial_limit",
            "policies.api.adaptive_limit.algorithm.vegas.max_limit"
        ]
    );
    assert_eq!((adaptive.limit(), adaptive.bounds()), (4, Some((2, 8))));
    assert_eq!(svc.oneshot("x").await.unwrap(), "x");

    // Another parameter of the algorithm needs a rebuild; the limit stays where it is.
    let report = registry.reload(&file(4, 8, 0.5)).unwrap();
    assert!(report.applied.is_empty(), "{report:?}");
    assert_eq!(report.needs_rebuild[0].field, "policies.api.adaptive_limit.algorithm.vegas.smoothing");
    assert_eq!((adaptive.limit(), adaptive.bounds()), (4, Some((2, 8))));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn reload_reports_what_needs_a_rebuild() {
    let registry = Echo::from_toml_str(POLICIES).unwrap();
    let changed = POLICIES
        .replace("max_attempts = 3", "max_attempts = 5")
        .replace("max_concurrent = 8", "max_concurrent = 16")
        .replace(
            "[policies.search.rate_limit]",
            "[policies.search.rate_limit]\nalgorithm = \"fixed_window\"",
        )
        + "\n[policies.reports.timeout]\ntimeout = \"30s\"\n";
    let report = registry.reload(&changed).unwrap();
    assert_eq!(report.applied, ["policies.payments.bulkhead.max_concurrent"]);
    let mut refused: Vec<_> = report.needs_rebuild.iter().map(|n| n.field.as_str()).collect();
    refused.sort_unstable();
    assert_eq!(
        refused,
        ["policies.payments.retry.max_attempts", "policies.reports", "policies.search.rate_limit.algorithm"]
    );
    assert!(report.needs_rebuild.iter().all(|n| n.reason.contains("rebuild")), "{report:?}");

    // What was not applied keeps running as it was, and is reported again.
    let layer = registry.layer("payments").unwrap();
    let Some(PatternHandle::Bulkhead(bulkhead)) = layer.handles().into_iter().next() else { panic!() };
    assert_eq!(bulkhead.max_concurrent(), 16);
    let again = registry.reload(&changed).unwrap();
    assert!(again.applied.is_empty());
    assert_eq!(again.needs_rebuild.len(), 3);

    // A removed section and an invalid file: the first is reported, the second changes nothing.
    let report = registry
        .reload(&POLICIES.replace("[policies.payments.attempt_timeout]\ntimeout = \"1s\"", ""))
        .unwrap();
    assert!(
        report.needs_rebuild.iter().any(|n| n.field == "policies.payments.attempt_timeout"),
        "{report:?}"
    );
    let err = registry.reload(&POLICIES.replace("max_concurrent = 8", "max_concurrent = 0")).unwrap_err();
    assert_eq!(err.field(), "policies.payments.bulkhead.max_concurrent");
    assert_eq!(bulkhead.max_concurrent(), 8);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn snapshot_and_handles_list_every_pattern() {
    let registry = Echo::from_toml_str(
        r#"
        [policies.all.rate_limit]
        quota = { limit = 100, period = "1s" }
        [policies.all.bulkhead]
        [policies.all.adaptive_limit]
        [policies.all.timeout]
        [policies.all.retry]
        [policies.all.circuit_breaker]
        [policies.all.attempt_timeout]
        [policies.all.chaos]
        [policies.other.bulkhead]
        name = "own"
        "#,
    )
    .unwrap();
    let svc = registry.layer("all").unwrap().layer(echo());
    assert_eq!(svc.oneshot("x").await.unwrap(), "x");

    let all = [
        PatternKind::RateLimit,
        PatternKind::Bulkhead,
        PatternKind::AdaptiveLimit,
        PatternKind::Timeout,
        PatternKind::Retry,
        PatternKind::CircuitBreaker,
        PatternKind::AttemptTimeout,
        PatternKind::Chaos,
    ];
    let snapshot = registry.snapshot();
    let kinds: Vec<_> = snapshot.policies["all"].iter().map(PatternSnapshot::kind).collect();
    assert_eq!(kinds, all);
    assert_eq!(snapshot.iter().count(), 9);
    let Some(PatternSnapshot::RateLimit(limit)) = snapshot.get("all", PatternKind::RateLimit) else {
        panic!()
    };
    assert_eq!(limit.admitted, 1);
    let Some(PatternSnapshot::Retry(retry)) = snapshot.get("all", PatternKind::Retry) else { panic!() };
    assert_eq!(retry.retries, 0);

    // Handles by policy and kind; a section without a name takes the policy's.
    let handles: Vec<_> = registry
        .handles()
        .iter()
        .map(|h| (h.policy.clone(), h.kind().as_str(), h.handle.name().to_owned()))
        .collect();
    assert_eq!(handles.len(), 9);
    assert_eq!(handles[0], ("all".to_owned(), "rate_limit", "all".to_owned()));
    assert_eq!(handles[2], ("all".to_owned(), "adaptive_limit", "all".to_owned()));
    assert_eq!(handles[6], ("all".to_owned(), "attempt_timeout", "all.attempt".to_owned()));
    assert_eq!(handles[8], ("other".to_owned(), "bulkhead", "own".to_owned()));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn shutdown_all_has_nothing_to_drain() {
    let registry = Echo::from_toml_str(POLICIES).unwrap();
    let svc = registry.layer("search").unwrap().layer(echo());
    // Nothing runs in the background: the future is ready on its first poll.
    let mut shutdown = task::spawn(registry.shutdown_all());
    assert_eq!(shutdown.poll(), Poll::Ready(()));
    // The layers are untouched.
    assert_eq!(svc.oneshot("after").await.unwrap(), "after");
}

// The registry's types can be stored and shared.
fn _registry_types_are_shareable(r: &Echo) -> impl Future<Output = ()> + Send + '_ {
    fn shared<T: Send + Sync>() {}
    shared::<Echo>();
    shared::<palisade::registry::PolicyLayer<&'static str, &'static str>>();
    r.shutdown_all()
}

#[test]
fn durations_in_sections_keep_their_units() {
    let config = RegistryConfig::from_toml_str(POLICIES).unwrap();
    let payments = &config.policies["payments"];
    assert_eq!(payments.attempt_timeout.as_ref().unwrap().timeout, Duration::from_secs(1));
    assert_eq!(payments.circuit_breaker.as_ref().unwrap().wait_in_open, Duration::from_secs(10));
}

mod reload_model {
    use super::*;
    use proptest::prelude::*;

    fn file(max_concurrent: usize, max_attempts: u32, limit: u32) -> String {
        format!(
            "[policies.p.bulkhead]\nmax_concurrent = {max_concurrent}\n[policies.p.retry]\nmax_attempts = {max_attempts}\n\
             [policies.p.rate_limit]\nquota = {{ limit = {limit}, period = \"1s\" }}"
        )
    }

    proptest! {
        /// Against a model: a changed limit is applied and read back through the handle, a
        /// changed retry setting is reported every time until a rebuild, an unchanged file
        /// reports nothing.
        #[test]
        fn reload_applies_limits_and_reports_the_rest(
            steps in proptest::collection::vec((1usize..64, 1u32..6, 1u32..1000), 1..6),
        ) {
            let registry = Echo::from_toml_str(&file(8, 3, 100)).unwrap();
            let handles = registry.handles();
            let Some(PatternHandle::Bulkhead(bulkhead)) = handles.iter().map(|h| h.handle.clone()).find(|h| h.kind() == PatternKind::Bulkhead) else {
                panic!("p has a bulkhead")
            };
            let (mut running_max, mut running_limit) = (8, 100);
            for (max_concurrent, max_attempts, limit) in steps {
                let report = registry.reload(&file(max_concurrent, max_attempts, limit)).unwrap();
                let mut expected_applied = Vec::new();
                if limit != running_limit {
                    expected_applied.push("policies.p.rate_limit.quota.limit".to_owned());
                }
                if max_concurrent != running_max {
                    expected_applied.push("policies.p.bulkhead.max_concurrent".to_owned());
                }
                let mut applied = report.applied.clone();
                applied.sort();
                expected_applied.sort();
                prop_assert_eq!(applied, expected_applied);
                let refused: Vec<_> = report.needs_rebuild.iter().map(|n| n.field.clone()).collect();
                if max_attempts == 3 {
                    prop_assert!(refused.is_empty(), "{:?}", refused);
                } else {
                    prop_assert_eq!(refused, vec!["policies.p.retry.max_attempts".to_owned()]);
                }
                running_max = max_concurrent;
                running_limit = limit;
                prop_assert_eq!(bulkhead.max_concurrent(), running_max);
            }
        }
    }
}
