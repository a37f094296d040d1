#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

//! Random pipelines (stages, concurrency, buffers, delays, failures, filters) against a
//! reference model: what comes out, in which order, and how many items are alive at most.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use futures_util::{stream, StreamExt};
use palisade_core::BoxError;
use palisade_pipeline::{Execution, Order, PipelineService};
use proptest::prelude::*;
use support::{AliveCounter, Tracked};

#[derive(Clone, Debug)]
struct StageSpec {
    concurrency: usize,
    buffer: usize,
}

#[derive(Clone, Debug)]
struct Case {
    stages: [StageSpec; 2],
    delays: Vec<u64>,
    ordered: bool,
    inline: bool,
    /// Items with `value % fail_every == fail_every - 1` fail the second stage.
    fail_every: u64,
    /// Items with `value % drop_every == 0` are filtered out (0: none).
    drop_every: u64,
}

fn stage_spec() -> impl Strategy<Value = StageSpec> {
    (1usize..5, 1usize..5).prop_map(|(concurrency, buffer)| StageSpec { concurrency, buffer })
}

fn case() -> impl Strategy<Value = Case> {
    (
        stage_spec(),
        stage_spec(),
        prop::collection::vec(0u64..20, 0..60),
        any::<bool>(),
        any::<bool>(),
        2u64..7,
        prop_oneof![Just(0u64), 3u64..6],
    )
        .prop_map(|(a, b, delays, ordered, inline, fail_every, drop_every)| Case {
            stages: [a, b],
            delays,
            ordered,
            inline,
            fail_every,
            drop_every,
        })
}

/// What the model says comes out: `Ok(value)` or `Err(value)` in input order.
fn model(case: &Case) -> Vec<Result<u64, u64>> {
    (0..case.delays.len() as u64)
        .filter(|v| case.drop_every == 0 || v % case.drop_every != 0)
        .map(|v| if v % case.fail_every == case.fail_every - 1 { Err(v) } else { Ok(v * 2) })
        .collect()
}

fn run(case: &Case) -> (Vec<Result<u64, u64>>, usize) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
    rt.block_on(async {
        let alive = AliveCounter::new();
        let counter = alive.clone();
        let delays = case.delays.clone();
        let (fail_every, drop_every) = (case.fail_every, case.drop_every);
        let source = stream::iter(0..case.delays.len() as u64).map(move |v| Tracked::new(v, &counter));
        let pipeline = PipelineService::builder::<Tracked>()
            .filter("drop", move |t: &Tracked| drop_every == 0 || t.value % drop_every != 0)
            .stage_fn("slow", move |t: Tracked| {
                let delay = delays[t.value as usize];
                async move {
                    tokio::time::sleep(Duration::from_millis(delay)).await;
                    Ok::<_, BoxError>(t)
                }
            })
            .concurrency(case.stages[0].concurrency)
            .buffer(case.stages[0].buffer)
            .stage_fn("check", move |mut t: Tracked| async move {
                if t.value % fail_every == fail_every - 1 {
                    Err::<Tracked, BoxError>(format!("{}", t.value).into())
                } else {
                    t.value *= 2;
                    Ok(t)
                }
            })
            .concurrency(case.stages[1].concurrency)
            .buffer(case.stages[1].buffer)
            .order(if case.ordered { Order::Preserved } else { Order::Completion })
            .execution(if case.inline { Execution::Inline } else { Execution::Tasks })
            .build()
            .unwrap();
        let out: Vec<Result<u64, u64>> = pipeline
            .process_stream(source)
            .map(|r| r.map(|t| t.value).map_err(|e| e.error().to_string().parse().unwrap()))
            .collect()
            .await;
        assert_eq!(alive.alive(), 0);
        (out, alive.max_alive())
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn pipelines_match_the_model(case in case()) {
        let expected = model(&case);
        let (got, max_alive) = run(&case);
        if case.ordered {
            prop_assert_eq!(&got, &expected);
        } else {
            let key = |r: &Result<u64, u64>| match r { Ok(v) => (0, *v), Err(v) => (1, *v) };
            let got_set: BTreeSet<_> = got.iter().map(key).collect();
            let expected_set: BTreeSet<_> = expected.iter().map(key).collect();
            prop_assert_eq!(got.len(), expected.len());
            prop_assert_eq!(got_set, expected_set);
        }
        // filter stage (concurrency 1, buffer 16) + the two stages + one held by the consumer.
        let bound = (1 + 16)
            + case.stages.iter().map(|s| s.concurrency + s.buffer).sum::<usize>()
            + 1;
        prop_assert!(max_alive <= bound, "max alive {} > bound {}", max_alive, bound);
    }
}
