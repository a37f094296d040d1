#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

//! Random workloads: every request gets exactly one answer, reaches a member at most once,
//! and the stats add up.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use palisade_core::rejection::Overloaded;
use palisade_pool::{Pool, Strategy as Dispatch};
use proptest::prelude::*;
use support::{settle, Factory, Job};
use tower::ServiceExt;

#[derive(Clone, Debug)]
struct Workload {
    min: usize,
    max: usize,
    concurrency: usize,
    queue: usize,
    strategy: u8,
    jobs: Vec<(u64, u64, bool)>,
}

fn workload() -> impl Strategy<Value = Workload> {
    (
        0usize..=2,
        1usize..=3,
        1usize..=2,
        1usize..=4,
        0u8..4,
        prop::collection::vec((0u64..60, 0u64..40, prop::bool::weighted(0.2)), 0..30),
    )
        .prop_map(|(min, extra, concurrency, queue, strategy, jobs)| Workload {
            min,
            max: min.max(1) + extra - 1,
            concurrency,
            queue,
            strategy,
            jobs,
        })
}

fn run(w: &Workload) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
    rt.block_on(async {
        let f = Factory::new();
        let strategy = match w.strategy {
            0 => Dispatch::RoundRobin,
            1 => Dispatch::LeastInFlight,
            2 => Dispatch::PowerOfTwoChoices,
            _ => Dispatch::PeakEwma,
        };
        let pool = Pool::builder()
            .min_size(w.min)
            .max_size(w.max)
            .member_concurrency(w.concurrency)
            .max_queue(w.queue)
            .strategy(strategy)
            .evict_after_failures(2)
            .scale_down(0.2, Duration::from_millis(500))
            .housekeeping_interval(Duration::from_millis(100))
            .seed(1)
            .build(f.make())
            .unwrap();
        let mut tasks = Vec::new();
        for (n, &(at, work, fail)) in w.jobs.iter().enumerate() {
            let svc = pool.clone();
            let mut job = Job::new(n as u32).work(work);
            job.fail = fail;
            tasks.push(tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(at)).await;
                svc.oneshot(job).await
            }));
        }
        let mut answered_by_member = HashSet::new();
        let mut overloaded = 0u64;
        for (n, t) in tasks.into_iter().enumerate() {
            match t.await.unwrap() {
                Ok((_, got)) => {
                    assert_eq!(got, n as u32, "answer for another request");
                    answered_by_member.insert(got);
                }
                Err(e) if e.is::<Overloaded>() => overloaded += 1,
                Err(e) => {
                    assert!(e.to_string().starts_with(&format!("job {n} failed")), "unexpected error {e}");
                    answered_by_member.insert(n as u32);
                }
            }
        }
        // Every dispatched request reached exactly one member exactly once.
        let jobs = f.jobs();
        let reached: HashSet<u32> = jobs.iter().copied().collect();
        assert_eq!(reached.len(), jobs.len(), "a request was dispatched twice");
        assert_eq!(reached, answered_by_member);
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            settle().await;
        }
        let s = pool.snapshot();
        assert_eq!(s.rejected, overloaded);
        assert_eq!(s.queued, 0);
        assert_eq!(s.in_flight, 0);
        assert!(s.members.iter().all(|m| m.in_flight == 0));
        assert!(s.members.len() >= w.min && s.members.len() <= w.max, "{s:?}");
        assert_eq!(s.made - s.retired - s.evicted, s.members.len() as u64, "{s:?}");
        let served: u64 = s.members.iter().map(|m| m.served).sum();
        assert!(served <= jobs.len() as u64);
    });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn every_request_gets_exactly_one_answer(w in workload()) {
        run(&w);
    }
}
