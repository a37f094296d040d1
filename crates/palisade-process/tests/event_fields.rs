#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
#![cfg(target_os = "linux")]
//! The process events as typed `tracing` fields, read through `Event::fields`.
//!
//! A real child runs for a wall-clock time, so `elapsed_ms` is checked for its type only.

mod support;

use palisade_core::event::{Event, FieldValue};
use palisade_process::{OutputLimitAction, ProcessEvent, ProcessRequest, ProcessService};
use tower::ServiceExt;

use support::recorder;

/// The event's fields, with `elapsed_ms` (wall-clock) checked to be a `U64` and zeroed.
fn fields(e: &ProcessEvent) -> Vec<(&'static str, FieldValue)> {
    let mut out = Vec::new();
    e.fields(&mut |k, v| {
        if k == "elapsed_ms" {
            assert!(matches!(v, FieldValue::U64(_)), "elapsed_ms is {v:?}");
            out.push((k, FieldValue::U64(0)));
        } else {
            out.push((k, v));
        }
    });
    out
}

fn kinds_and_fields(events: &[ProcessEvent]) -> Vec<(&'static str, Vec<(&'static str, FieldValue)>)> {
    events.iter().map(|e| (e.kind(), fields(e))).collect()
}

#[tokio::test]
async fn spawned_and_exited_report_pid_outcome_code_and_elapsed() {
    let (events, listener) = recorder();
    let svc = ProcessService::builder("/bin/sh").args(["-c", "exit 3"]).on_event(listener).build().unwrap();
    let out = svc.oneshot(ProcessRequest::new()).await.unwrap();
    let pid = FieldValue::U64(u64::from(out.pid()));
    assert_eq!(
        kinds_and_fields(&events.lock().unwrap()),
        vec![
            ("spawned", vec![("pid", pid.clone())]),
            (
                "exited",
                vec![
                    ("pid", pid),
                    ("outcome", "failure".into()),
                    ("code", FieldValue::I64(3)),
                    ("elapsed_ms", FieldValue::U64(0)),
                ]
            ),
        ]
    );
}

#[tokio::test]
async fn a_kill_reports_outcome_killed_and_its_reason() {
    let (events, listener) = recorder();
    let svc = ProcessService::builder("/bin/sh")
        .args(["-c", "while :; do echo yyyyyyyyyyyyyyyyyyyy; done"])
        .max_stdout(64)
        .on_output_limit(OutputLimitAction::Kill)
        .on_event(listener)
        .build()
        .unwrap();
    let out = svc.oneshot(ProcessRequest::new()).await.unwrap();
    let pid = FieldValue::U64(u64::from(out.pid()));
    let events = events.lock().unwrap();
    assert_eq!(
        kinds_and_fields(&events[1..]),
        vec![(
            "killed",
            vec![
                ("pid", pid),
                ("outcome", "killed".into()),
                ("reason", "output_limit".into()),
                ("elapsed_ms", FieldValue::U64(0)),
            ]
        )]
    );
}

#[tokio::test]
async fn a_failed_spawn_reports_the_error_kind() {
    let (events, listener) = recorder();
    let svc =
        ProcessService::builder("/nonexistent/palisade-no-such-program").on_event(listener).build().unwrap();
    assert!(svc.oneshot(ProcessRequest::new()).await.is_err());
    assert_eq!(
        kinds_and_fields(&events.lock().unwrap()),
        vec![("spawn_failed", vec![("error", "entity not found".into())])]
    );
}
