#![allow(clippy::unwrap_used, missing_docs)]
//! The pipeline's events as typed `tracing` fields, read through `Event::fields`.

use std::sync::{Arc, Mutex};

use futures_util::{stream, StreamExt};
use palisade_core::event::{Event, FieldValue};
use palisade_core::BoxError;
use palisade_pipeline::{PipelineEvent, PipelineService};

fn fields(e: &PipelineEvent) -> Vec<(&'static str, FieldValue)> {
    let mut out = Vec::new();
    e.fields(&mut |k, v| out.push((k, v)));
    out
}

fn kinds_and_fields(
    events: &Mutex<Vec<PipelineEvent>>,
) -> Vec<(&'static str, Vec<(&'static str, FieldValue)>)> {
    events.lock().unwrap().iter().map(|e| (e.kind(), fields(e))).collect()
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_failed_and_dead_lettered_item_reports_stage_seq_and_error() {
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = events.clone();
    let pipeline = PipelineService::builder::<u64>()
        .stage_fn("deliver", |n: u64| async move {
            if n == 3 {
                Err::<u64, BoxError>("mailbox full".into())
            } else {
                Ok(n)
            }
        })
        .dead_letter(|_| {})
        .on_event(move |e: &PipelineEvent| seen.lock().unwrap().push(e.clone()))
        .build()
        .unwrap();
    let out: Vec<u64> = pipeline.process_stream(stream::iter(0..5)).map(Result::unwrap).collect().await;
    assert_eq!(out, [0, 1, 2, 4]);
    assert_eq!(
        kinds_and_fields(&events),
        vec![
            (
                "stage_failed",
                vec![
                    ("stage", "deliver".into()),
                    ("seq", FieldValue::U64(3)),
                    ("error", "mailbox full".into())
                ]
            ),
            ("dead_lettered", vec![("stage", "deliver".into()), ("seq", FieldValue::U64(3))]),
        ]
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_fail_fast_stop_reports_its_stage() {
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = events.clone();
    let pipeline = PipelineService::builder::<u64>()
        .stage_fn("enrich", |n: u64| async move {
            if n == 2 {
                Err::<u64, BoxError>("backend down".into())
            } else {
                Ok(n)
            }
        })
        .fail_fast(true)
        .on_event(move |e: &PipelineEvent| seen.lock().unwrap().push(e.clone()))
        .build()
        .unwrap();
    let results: Vec<_> = pipeline.process_stream(stream::iter(0..5)).collect().await;
    assert!(results.last().unwrap().is_err(), "{results:?}");
    let got = kinds_and_fields(&events);
    assert_eq!(
        got.last().unwrap(),
        &("stopped_on_error", vec![("stage", FieldValue::from("enrich"))]),
        "{got:?}"
    );
    assert_eq!(
        got[0],
        (
            "stage_failed",
            vec![("stage", "enrich".into()), ("seq", FieldValue::U64(2)), ("error", "backend down".into())]
        )
    );
}
