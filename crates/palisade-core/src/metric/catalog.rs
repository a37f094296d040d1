//! Every metric palisade exports, with its kind, labels and HELP text: the one list the
//! recorder's descriptions (`# HELP` lines) and the docs are written from.

/// What kind of metric a [`MetricInfo`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricKind {
    /// A monotonically increasing count (`_total`).
    Counter,
    /// A value that goes up and down.
    Gauge,
    /// A distribution of durations, in seconds (`_seconds`).
    Histogram,
}

/// One metric palisade exports. Every series has the label `name` (the layer's name);
/// `label` is the second label, when the metric has one, with the values it takes.
#[derive(Clone, Copy, Debug)]
pub struct MetricInfo {
    /// The metric's name.
    pub name: &'static str,
    /// Counter, gauge or histogram.
    pub kind: MetricKind,
    /// The second label and its values, if any (`reason`, `outcome`, `state`, …).
    pub label: Option<(&'static str, &'static [&'static str])>,
    /// The HELP text.
    pub help: &'static str,
}

const fn m(name: &'static str, kind: MetricKind, help: &'static str) -> MetricInfo {
    MetricInfo { name, kind, label: None, help }
}

const fn l(
    name: &'static str,
    kind: MetricKind,
    label: &'static str,
    values: &'static [&'static str],
    help: &'static str,
) -> MetricInfo {
    MetricInfo { name, kind, label: Some((label, values)), help }
}

use MetricKind::{Counter as C, Gauge as G, Histogram as H};

const GIVE_UP: &[&str] = &[
    "attempts_exhausted",
    "non_retryable",
    "budget_exhausted",
    "throttled",
    "not_replayable",
    "hint_too_long",
    "deadline_exceeded",
    "not_ready",
];

/// Every metric palisade exports (with the `metrics` feature of the pattern's crate).
pub const METRICS: &[MetricInfo] = &[
    // bulkhead
    m("palisade_bulkhead_waited_total", C, "Calls that waited for a bulkhead permit."),
    l(
        "palisade_bulkhead_rejected_total",
        C,
        "reason",
        &["no_permit", "queue_full", "wait_timed_out", "inner_not_ready"],
        "Calls the bulkhead refused, by reason.",
    ),
    m("palisade_bulkhead_wait_seconds", H, "Time calls waited for a bulkhead permit."),
    m("palisade_bulkhead_queued", G, "Calls waiting for a bulkhead permit."),
    m("palisade_bulkhead_in_flight", G, "Calls holding a bulkhead permit."),
    // adaptive limit
    m("palisade_adaptive_limit_limit", G, "The adaptive limit's current concurrency limit."),
    m("palisade_adaptive_limit_in_flight", G, "Calls holding an adaptive limit permit."),
    m("palisade_adaptive_limit_backlog", G, "Calls waiting for an adaptive limit permit."),
    l(
        "palisade_adaptive_limit_calls_total",
        C,
        "outcome",
        &["acquired", "rejected", "bypassed"],
        "Calls the adaptive limit admitted, refused or let through without a permit.",
    ),
    m(
        "palisade_adaptive_limit_dropped_total",
        C,
        "Samples the adaptive limit dropped (calls cancelled or judged dropped).",
    ),
    m("palisade_adaptive_limit_wait_seconds", H, "Time calls waited for an adaptive limit permit."),
    // chaos
    m("palisade_chaos_considered_total", C, "Calls the chaos layer considered for a fault."),
    l(
        "palisade_chaos_injected_total",
        C,
        "fault",
        &["error", "outcome", "latency", "hang"],
        "Faults the chaos layer injected, by kind.",
    ),
    // circuit breaker
    l(
        "palisade_circuit_breaker_calls_total",
        C,
        "outcome",
        &["success", "failure", "ignored", "rejected"],
        "Calls through the circuit breaker, by outcome (rejected: refused while open).",
    ),
    m("palisade_circuit_breaker_slow_calls_total", C, "Calls slower than the slow-call threshold."),
    m("palisade_circuit_breaker_opened_total", C, "Times the circuit breaker opened."),
    m(
        "palisade_circuit_breaker_open_breakers",
        G,
        "Breakers of the layer that reject calls (keyed breakers count each key).",
    ),
    l(
        "palisade_circuit_breaker_state",
        G,
        "state",
        &["closed", "open", "half_open", "forced_open", "disabled", "metrics_only"],
        "The circuit breaker's state: 1 for the current state, 0 for the others.",
    ),
    // fallback
    m("palisade_fallback_calls_total", C, "Calls through the fallback layer."),
    m("palisade_fallback_triggered_total", C, "Calls whose outcome triggered the fallback."),
    m("palisade_fallback_used_total", C, "Calls answered by a fallback provider."),
    m("palisade_fallback_failed_total", C, "Calls whose every fallback provider failed."),
    m("palisade_fallback_provider_failures_total", C, "Fallback provider attempts that failed."),
    // pipeline
    m("palisade_pipeline_items_in_total", C, "Items that entered the pipeline."),
    m("palisade_pipeline_items_out_total", C, "Items that left the pipeline's last stage."),
    m("palisade_pipeline_errors_total", C, "Stage failures in the pipeline."),
    m("palisade_pipeline_filtered_total", C, "Items a stage filtered out."),
    m("palisade_pipeline_dead_lettered_total", C, "Items sent to the dead-letter sink."),
    m("palisade_pipeline_in_flight", G, "Items inside the pipeline."),
    m("palisade_pipeline_queue_depth", G, "Items queued between the pipeline's stages."),
    m("palisade_pipeline_latency_seconds", H, "Time items took through the pipeline."),
    // pool
    m("palisade_pool_queued", G, "Calls waiting for a pool member."),
    m("palisade_pool_in_flight", G, "Calls running on pool members."),
    m("palisade_pool_members", G, "Members in the pool."),
    m("palisade_pool_members_made_total", C, "Pool members made."),
    m("palisade_pool_members_retired_total", C, "Pool members retired (scaled down)."),
    m("palisade_pool_members_evicted_total", C, "Pool members evicted (unhealthy)."),
    m("palisade_pool_make_failures_total", C, "Failed attempts to make a pool member."),
    m("palisade_pool_rejected_total", C, "Calls the pool refused."),
    l(
        "palisade_pool_calls_total",
        C,
        "outcome",
        &["success", "failure"],
        "Calls the pool's members completed, by outcome.",
    ),
    // process
    m("palisade_process_spawned_total", C, "Child processes spawned."),
    m("palisade_process_spawn_failed_total", C, "Child processes that failed to spawn."),
    l(
        "palisade_process_exited_total",
        C,
        "outcome",
        &["success", "failure"],
        "Child processes that exited by themselves, by exit status.",
    ),
    l(
        "palisade_process_killed_total",
        C,
        "reason",
        &["timeout", "cancelled", "output_limit", "other"],
        "Child processes palisade killed, by reason.",
    ),
    m("palisade_process_crashed_total", C, "Worker processes that died while serving calls."),
    m("palisade_process_running", G, "Child processes running."),
    m("palisade_process_duration_seconds", H, "How long child processes ran."),
    // rate limit
    m("palisade_rate_limit_admitted_total", C, "Calls the rate limit admitted."),
    m("palisade_rate_limit_rejected_total", C, "Calls the rate limit refused."),
    m("palisade_rate_limit_waited_total", C, "Calls that waited for the rate limit."),
    m("palisade_rate_limit_keys_evicted_total", C, "Keys evicted from the keyed rate limit's map."),
    // redis
    m("palisade_redis_calls_total", C, "Calls to Redis."),
    m("palisade_redis_failures_total", C, "Calls to Redis that failed."),
    m("palisade_redis_fallbacks_total", C, "Decisions taken by the local fallback while Redis failed."),
    // resource pool
    m("palisade_resource_pool_waiting", G, "Callers waiting for a resource."),
    m("palisade_resource_pool_resources", G, "Resources in the pool (idle and checked out)."),
    m("palisade_resource_pool_created_total", C, "Resources created."),
    m("palisade_resource_pool_create_failed_total", C, "Resource creations that failed."),
    m("palisade_resource_pool_destroyed_total", C, "Resources destroyed."),
    m("palisade_resource_pool_detached_total", C, "Resources detached from the pool."),
    m("palisade_resource_pool_dropped_total", C, "Resources dropped without being returned."),
    m("palisade_resource_pool_timed_out_total", C, "Checkouts that timed out."),
    m("palisade_resource_pool_refused_total", C, "Checkouts refused at once."),
    // retry
    m("palisade_retry_requests_total", C, "Calls through the retry layer."),
    m("palisade_retry_refused_total", C, "First attempts refused by the retry throttle (never sent)."),
    m("palisade_retry_retries_total", C, "Retry attempts sent."),
    m("palisade_retry_succeeded_after_retry_total", C, "Calls that succeeded after at least one retry."),
    l("palisade_retry_gave_up_total", C, "reason", GIVE_UP, "Calls the retry layer gave up on, by reason."),
    m("palisade_retry_budget_exhausted_total", C, "Retries the retry budget refused."),
    m("palisade_retry_throttled_total", C, "Attempts the retry throttle refused."),
    m("palisade_retry_attempt_timeouts_total", C, "Attempts that timed out."),
    m("palisade_retry_deadline_exceeded_total", C, "Calls whose overall deadline passed."),
    m("palisade_retry_hedges_total", C, "Hedged attempts sent."),
    // hedge
    m("palisade_hedge_requests_total", C, "Calls through the hedge layer."),
    m("palisade_hedge_refused_total", C, "First attempts refused by the throttle (never sent)."),
    m("palisade_hedge_retries_total", C, "Retry attempts sent by the hedge layer."),
    m("palisade_hedge_succeeded_after_retry_total", C, "Calls that succeeded after more than one attempt."),
    l("palisade_hedge_gave_up_total", C, "reason", GIVE_UP, "Calls the hedge layer gave up on, by reason."),
    m("palisade_hedge_budget_exhausted_total", C, "Attempts the budget refused."),
    m("palisade_hedge_throttled_total", C, "Attempts the throttle refused."),
    m("palisade_hedge_attempt_timeouts_total", C, "Attempts that timed out."),
    m("palisade_hedge_deadline_exceeded_total", C, "Calls whose overall deadline passed."),
    m("palisade_hedge_hedges_total", C, "Hedged attempts sent."),
    // timeout
    m("palisade_timeout_timed_out_total", C, "Calls that ran past their timeout (answered TimedOut)."),
];

/// The catalog's entry for `metric`, if it has one.
pub fn find(metric: &str) -> Option<&'static MetricInfo> {
    METRICS.iter().find(|info| info.name == metric)
}

/// The HELP text of `metric`: the catalog's, or one derived from the name
/// (`palisade_demo_calls_total` → "palisade demo: calls total").
#[cfg(feature = "metrics")]
pub(super) fn help(metric: &'static str) -> metrics::SharedString {
    if let Some(info) = find(metric) {
        return metrics::SharedString::const_str(info.help);
    }
    let rest = metric.strip_prefix("palisade_").unwrap_or(metric);
    metrics::SharedString::from_owned(match rest.split_once('_') {
        Some((pattern, what)) => format!("palisade {pattern}: {}", what.replace('_', " ")),
        None => format!("palisade {rest}"),
    })
}
