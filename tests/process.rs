#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
//! Child processes: `ProcessService` behind palisade's retry, timeout and bulkhead.

use std::path::PathBuf;
use std::time::Duration;

use palisade::bulkhead::BulkheadLayer;
use palisade::process::{ExitClassifier, ProcessRequest, ProcessService};
use palisade::rejection::{find, BulkheadFull, BulkheadFullReason, TimedOut};
use palisade::retry::{Backoff, Jitter, RetryLayer};
use palisade::timeout::TimeoutLayer;
use tower::{Service, ServiceBuilder, ServiceExt};

fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("palisade-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test]
async fn exit_75_is_retried_until_the_program_succeeds() {
    let dir = scratch_dir("retry");
    // A program that fails with EX_TEMPFAIL on its first run and succeeds on the second.
    let script =
        format!("if [ -e '{0}/ran' ]; then echo ok; else touch '{0}/ran'; exit 75; fi", dir.display());
    let program = ProcessService::builder("/bin/sh").arg("-c").arg(script).build().unwrap();
    let retry = RetryLayer::builder()
        .name("program")
        .max_attempts(3)
        .backoff(Backoff::fixed(Duration::from_millis(1)))
        .jitter(Jitter::None)
        .classifier(ExitClassifier::new().retryable_codes([75]))
        .build()
        .unwrap();
    let retries = retry.handle();
    let svc = ServiceBuilder::new()
        .layer(TimeoutLayer::new(Duration::from_secs(20)))
        .layer(retry)
        .layer(
            BulkheadLayer::builder()
                .max_concurrent(2)
                .when_full(palisade_core::WhenFull::wait(Duration::MAX))
                .build()
                .unwrap(),
        )
        .service(program);
    let output = svc.oneshot(ProcessRequest::new()).await.unwrap();
    assert!(output.success());
    assert_eq!(output.stdout(), b"ok\n");
    assert_eq!(retries.snapshot().retries, 1);
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn timeout_rejects_and_kills_the_child() {
    let program = ProcessService::builder("/bin/sh").arg("-c").arg("sleep 30").build().unwrap();
    let children = program.handle();
    let svc = ServiceBuilder::new()
        .layer(TimeoutLayer::new(Duration::from_millis(50)))
        .layer(
            BulkheadLayer::builder()
                .max_concurrent(1)
                .when_full(palisade_core::WhenFull::wait(Duration::MAX))
                .build()
                .unwrap(),
        )
        .service(program);
    let err = svc.oneshot(ProcessRequest::new()).await.unwrap_err();
    assert!(find::<TimedOut>(err.as_ref()).is_some(), "{err}");
    // The timeout dropped the call, and dropping the call killed the child's process group.
    let seen = children.snapshot();
    assert_eq!((seen.spawned, seen.killed_cancelled), (1, 1), "{seen:?}");
}

#[tokio::test]
async fn bulkhead_sheds_a_second_child_while_one_runs() {
    let program = ProcessService::builder("/bin/sh").arg("-c").arg("sleep 0.05; echo done").build().unwrap();
    let bulkhead = BulkheadLayer::builder()
        .name("children")
        .max_concurrent(1)
        .when_full(palisade_core::WhenFull::Refuse)
        .build()
        .unwrap();
    let permits = bulkhead.handle();
    let mut first = ServiceBuilder::new().layer(bulkhead).service(program);
    let mut second = first.clone();

    let running = first.ready().await.unwrap().call(ProcessRequest::new());
    assert_eq!(permits.in_flight(), 1);
    // Shedding answers the call at once with the rejection (as tower's `LoadShed` does).
    let err = second.ready().await.unwrap().call(ProcessRequest::new()).await.unwrap_err();
    let full = find::<BulkheadFull>(err.as_ref()).expect("shed by the bulkhead");
    assert_eq!(full.reason(), BulkheadFullReason::NoPermit);

    let output = running.await.unwrap();
    assert_eq!(output.stdout(), b"done\n");
    assert_eq!(permits.in_flight(), 0);
}
