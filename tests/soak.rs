#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs, unreachable_pub, dead_code)]
//! Soak: every request through the full stack gets exactly one answer, permits come back,
//! no task is left behind, memory stays flat.

#[path = "../examples/storm/soak.rs"]
mod soak;

fn check(report: &soak::SoakReport) {
    assert_eq!(report.not_answered_once, 0, "{report:?}");
    assert_eq!(report.ok + report.errors + report.panicked + report.cancelled, report.requests, "{report:?}");
    assert!(report.panicked > 0, "the workload panics 0.1 % of the time: {report:?}");
    assert!(report.cancelled > 0, "5 % of clients give up: {report:?}");
    assert_eq!(report.bulkhead_in_flight_after, 0, "{report:?}");
    assert_eq!(report.bulkhead_queued_after, 0, "{report:?}");
    assert_eq!(report.tasks_alive_after, report.tasks_alive_before, "{report:?}");
}

/// 20,000 requests on a paused clock: hangs and timeouts resolve as soon as the runtime idles.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn soak_smoke() {
    let report = soak::run(20_000, 256, 3).await.unwrap();
    check(&report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a million requests in real time: cargo test --release --all-features --test soak -- --ignored"]
async fn soak_million_requests() {
    let report = soak::run(1_000_000, 512, 7).await.unwrap();
    check(&report);
    assert!(report.memory_ratio() <= 1.10, "memory grew: {report:?}");
}
